//! ferrite: from the reset vector to a Linux kernel, through QEMU's fw_cfg.
//!
//! `asm/boot.s` brings the CPU to long mode and calls [`rust_main`], which runs
//! the boot sequence (`ferrite::boot`, on this machine's [`Board`]) and jumps to
//! the kernel. The binary keeps what only the machine has: the assembly, the
//! page tables, the port, memory and CPU access behind the board's traits, the
//! logger, the timeline and what a failed boot does.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod arena;
#[cfg(target_os = "none")]
mod cpu;
#[cfg(target_os = "none")]
mod entry;
#[cfg(target_os = "none")]
mod gdt;
#[cfg(target_os = "none")]
mod logger;
#[cfg(target_os = "none")]
mod paging;
#[cfg(target_os = "none")]
mod phys;
#[cfg(target_os = "none")]
mod pio;
#[cfg(target_os = "none")]
mod s3_scripts;
#[cfg(target_os = "none")]
mod stop;
#[cfg(target_os = "none")]
mod timeline;

#[cfg(target_os = "none")]
pub use firmware::{cpu_exception, rust_main};

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("ferrite is a firmware image for QEMU's -bios: build it with `cargo xtask build`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod firmware {
    use core::mem::MaybeUninit;

    use ferrite::board::{Board, Step};
    use ferrite::boot::{self, Handoff, Kind, Storage};
    use ferrite::chipset;
    use ferrite::error::{Error, STATUS_PANIC};
    use ferrite::fwcfg::{self, File, FwCfg};
    use ferrite::io::PortIo;
    use ferrite::mem::Range;
    use ferrite::multiboot;
    use ferrite::on_error;
    use ferrite::s3;

    use crate::cpu::RealCpu;
    use crate::entry::{self, ROM_BASE};
    use crate::logger;
    use crate::phys::PhysMemory;
    use crate::pio::{PhysMmio, Pio};
    use crate::stop::{self, stop};
    use crate::timeline;

    /// Entered from boot.s: long mode, ferrite's stack, .bss clear, interrupts off.
    /// `reset_tsc` is the time-stamp counter at the reset vector; `wake_failure`
    /// says why a wake-up from S3 could not resume the OS (0: this is no wake-up).
    #[unsafe(no_mangle)]
    pub extern "C" fn rust_main(reset_tsc: u64, wake_failure: u32) -> ! {
        // No logger yet (`logger::init`): nothing on this path logs unless
        // it fails, and a failure installs it first.
        // One test for the usual boot (the reasons are a jump table).
        if wake_failure != s3::WAKE_OK {
            report_wake_failure(wake_failure);
        }
        timeline::start(reset_tsc);
        // In .bss, cleared by boot.s: made on the stack, its zeroing was a
        // rep stos, a translation block of its own under TCG. Borrowed by
        // every step rather than moved along with them, for the same
        // reason. Taken once per reset, never held: `try_lock` is one test,
        // where `lock`'s spin loop added a translation block.
        let mut storage = STORAGE.try_lock().expect("the boot state is taken once");
        // SAFETY: this is the boot path, the only code running: one of each.
        let mut machine = unsafe {
            Hardware {
                io: Pio::new(),
                mmio: PhysMmio::new(),
                memory: PhysMemory::new(),
                cpu: RealCpu::new(),
                report_timeline: false,
            }
        };
        match boot::boot(&mut machine, &mut storage) {
            Ok(handoff) => {
                // One test for the usual end, a 64-bit Linux entry and no
                // timeline report (two branches, a translation block each
                // under TCG, as `&&` or `if`s).
                let other =
                    (handoff.kind as u8 ^ Kind::Linux64 as u8) | machine.report_timeline as u8;
                if other == 0 {
                    enter_linux64(machine.io, handoff)
                }
                finish_other(machine, handoff)
            }
            Err(error) => fail(error),
        }
    }

    /// The end of a boot with the timeline report asked for or another kind
    /// of entry than the 64-bit Linux one.
    #[cold]
    #[inline(never)]
    fn finish_other(machine: Hardware, handoff: Handoff) -> ! {
        if machine.report_timeline {
            timeline::report(machine.io);
        }
        enter_other(machine.io, handoff)
    }

    /// Says why a wake-up from S3 could not resume the OS.
    #[cold]
    #[inline(never)]
    fn report_wake_failure(code: u32) {
        logger::init();
        if let Some(why) = s3::wake_failure(code) {
            log::error!("{why}");
        }
    }

    /// What the boot keeps, in .bss: cleared by boot.s's one `rep stosq`.
    static STORAGE: spin::Mutex<Storage> = spin::Mutex::new(Storage::new());

    /// The machine ferrite runs on, as the boot sequence sees it.
    struct Hardware {
        io: Pio,
        mmio: PhysMmio,
        memory: PhysMemory,
        cpu: RealCpu,
        /// `opt/ferrite/timeline` asked for the report.
        report_timeline: bool,
    }

    impl Board for Hardware {
        type Io = Pio;
        type Mmio = PhysMmio;
        type Memory = PhysMemory;
        type Cpu = RealCpu;

        const ROM: Range = Range::new(ROM_BASE, 1 << 32);

        fn io(&self) -> Pio {
            self.io
        }
        fn mmio(&mut self) -> &mut PhysMmio {
            &mut self.mmio
        }
        fn memory(&mut self) -> &mut PhysMemory {
            &mut self.memory
        }
        fn cpu(&mut self) -> &mut RealCpu {
            &mut self.cpu
        }
        fn cpu_and_memory(&mut self) -> (&mut RealCpu, &mut PhysMemory) {
            (&mut self.cpu, &mut self.memory)
        }

        #[inline(always)]
        fn mark(&mut self, step: Step) {
            timeline::mark(step);
        }

        fn configure(&mut self, fw_cfg: &mut FwCfg<Pio>) -> Result<(), Error> {
            // The three files tested together: a usual boot has none of them
            // (one branch, a translation block under TCG, rather than three).
            let level = fw_cfg.find_padded(&const { fwcfg::file_key(logger::LEVEL_FILE) });
            let policy = fw_cfg.find_padded(&const { fwcfg::file_key(on_error::FILE) });
            let report = fw_cfg.find_padded(&const { fwcfg::file_key(timeline::TIMELINE_FILE) });
            if level.is_some() | policy.is_some() | report.is_some() {
                self.apply_configuration(fw_cfg, [level, policy, report])?;
            }
            Ok(())
        }
    }

    impl Hardware {
        /// The log level, the error policy and the timeline report, from
        /// those of their files fw_cfg has.
        #[cold]
        #[inline(never)]
        fn apply_configuration(
            &mut self,
            fw_cfg: &mut FwCfg<Pio>,
            [level, policy, report]: [Option<File>; 3],
        ) -> Result<(), Error> {
            // Each file may log a warning about its value.
            logger::init();
            if let Some(file) = level {
                let mut buf = [MaybeUninit::uninit(); 16];
                logger::set_level(fw_cfg.read_file(logger::LEVEL_NAME, file, &mut buf)?);
            }
            if let Some(file) = policy {
                stop::read_policy(fw_cfg, file)?;
            }
            if let Some(file) = report {
                self.report_timeline = timeline::requested(fw_cfg, file)?;
            }
            Ok(())
        }
    }

    /// The marker on the debug-exit port and the jump to a bzImage's 64-bit
    /// entry. Inlined: no call, and no return block, under TCG.
    #[inline(always)]
    fn enter_linux64(mut io: Pio, handoff: Handoff) -> ! {
        io.outb(entry::MARKER_KERNEL_PORT, entry::MARKER_KERNEL_BZIMAGE);
        // SAFETY: the kernel, its zero page, initrd and command line are in
        // place and identity-mapped; nothing of ferrite is needed any more.
        unsafe { entry::enter_linux64(handoff.entry, handoff.boot_info) }
    }

    /// The marker, the PICs masked for the 32-bit flat entries, and the jump,
    /// for any kind of entry.
    #[cold]
    #[inline(never)]
    fn enter_other(mut io: Pio, handoff: Handoff) -> ! {
        let Handoff {
            kind,
            entry,
            boot_info,
        } = handoff;
        let marker = match kind {
            Kind::Linux64 | Kind::Linux32 => entry::MARKER_KERNEL_BZIMAGE,
            Kind::Pvh => entry::MARKER_KERNEL_PVH,
            Kind::Multiboot => entry::MARKER_KERNEL_MULTIBOOT,
        };
        if matches!(kind, Kind::Pvh | Kind::Multiboot) {
            chipset::mask_pics(&mut io);
        }
        io.outb(entry::MARKER_KERNEL_PORT, marker);
        // SAFETY: the kernel, its initrd, command line and boot information
        // are in place and identity-mapped (both below 4 GiB for the 32-bit
        // entries); nothing of ferrite is needed any more.
        unsafe {
            match kind {
                Kind::Linux64 => entry::enter_linux64(entry, boot_info),
                Kind::Linux32 => entry::enter_linux32(entry as u32, boot_info as u32),
                Kind::Pvh => entry::enter_flat32(entry as u32, boot_info as u32, 0),
                Kind::Multiboot => {
                    entry::enter_flat32(entry as u32, boot_info as u32, multiboot::BOOTLOADER_MAGIC)
                }
            }
        }
    }

    /// One line on COM1, the status on the debug-exit port, then power-off,
    /// reset or halt as `opt/ferrite/on-error` says.
    fn fail(error: Error) -> ! {
        logger::init();
        log::error!("{error}");
        stop(error.status())
    }

    /// Reached from boot.s's IDT on any CPU exception: a bug in ferrite, never
    /// the guest's fault. `stack` points at the exception frame.
    #[unsafe(no_mangle)]
    pub extern "C" fn cpu_exception(stack: *const u64) -> ! {
        // SAFETY: the CPU pushed at least RIP, CS, RFLAGS, RSP, SS (five words),
        // maybe after an error code, on ferrite's only stack (no IST); the sixth
        // word is then the error code's frame or, without one, a word of the
        // interrupted code's frames above it (every Rust frame lies below
        // rust_main's return address), so all six are mapped stack RAM.
        let words = unsafe { core::ptr::read_unaligned(stack.cast::<[u64; 6]>()) };
        // With an error code, RIP is the second word; the word after RIP is CS (0x10).
        let rip = if words[2] == 0x10 { words[1] } else { words[0] };
        logger::init();
        log::error!("internal error: CPU exception at {rip:#x}");
        stop(STATUS_PANIC)
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        logger::init();
        log::error!("internal error: {info}");
        stop(STATUS_PANIC)
    }
}
