//! ferrite: from the reset vector to a Linux kernel, through QEMU's fw_cfg.
//!
//! `asm/boot.s` brings the CPU to long mode and calls [`rust_main`], which runs the
//! boot sequence in [`boot`] step by step and jumps to the kernel.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod bios;
#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod cpus;
#[cfg(target_os = "none")]
mod gdt;
#[cfg(target_os = "none")]
mod kernel;
#[cfg(target_os = "none")]
mod logger;
#[cfg(target_os = "none")]
mod paging;
#[cfg(target_os = "none")]
mod pc;
#[cfg(target_os = "none")]
mod phys;
#[cfg(target_os = "none")]
mod pio;
#[cfg(target_os = "none")]
mod tables;
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

    use ferrite::bootparams::e820_type::RESERVED;
    use ferrite::e820::{MemoryMap, Range};
    use ferrite::error::{Error, STATUS_PANIC, STATUS_PORT};
    use ferrite::fwcfg::FwCfg;
    use ferrite::io::PortIo;
    use ferrite::layout::{self, HighZone};
    use ferrite::linux::{self, Entry};

    use crate::boot::{self, ROM_BASE};
    use crate::kernel::Kernel;
    use crate::pc::Pc;
    use crate::pio::Pio;
    use crate::timeline::{Step, Timeline};
    use crate::{logger, tables, timeline};

    /// Entered from boot.s: long mode, ferrite's stack, .bss clear, interrupts off.
    /// `reset_tsc` is the time-stamp counter at the reset vector.
    #[unsafe(no_mangle)]
    pub extern "C" fn rust_main(reset_tsc: u64) -> ! {
        logger::init();
        match boot(Timeline::new(reset_tsc)) {
            Ok(handoff) => handoff.enter(),
            Err(error) => fail(error),
        }
    }

    /// The boot sequence.
    fn boot(mut time: Timeline) -> Result<Handoff, Error> {
        // SAFETY: this is the boot path, the only code running.
        let mut io = unsafe { Pio::new() };

        // 1. QEMU's configuration device, and the log level the user asked for.
        let mut fw_cfg = FwCfg::probe(io)?;
        set_log_level(&mut fw_cfg)?;
        let report_timeline = timeline::requested(&mut fw_cfg)?;
        time.mark(Step::FwCfg);

        // 2. Memory: QEMU's map, and the zone below the top of low RAM where the
        //    tables handed to the kernel go.
        let mut memory = MEMORY.lock();
        memory.read_from(&mut fw_cfg)?;
        let mut zone = HighZone::new(memory.low_ram_top()?);
        time.mark(Step::MemoryMap);

        // 3. The PC around the CPU as SeaBIOS leaves it (pc and q35; nothing on
        //    microvm): PCI, the BIOS segment, legacy devices, the MTRRs, and the
        //    other CPUs sent to copy them. Before ACPI: QEMU builds its tables
        //    from what the firmware programmed.
        let mut pc = Pc::setup(&mut io, &mut fw_cfg, &memory)?;
        log::debug!("machine: {:?}", pc.machine);
        time.mark(Step::Hardware);

        // 4. The kernel's setup header: can we boot it, and how.
        let kernel = Kernel::from_fw_cfg(&mut fw_cfg)?;
        time.mark(Step::KernelHeader);

        // 5. ACPI tables, through QEMU's table-loader script, and SMBIOS.
        let rsdp = tables::install(&mut fw_cfg, &mut zone, pc.bios_area())?;
        pc.install_smbios(&mut fw_cfg, &mut zone)?;
        time.mark(Step::Acpi);

        // 6. The kernel, straight to its run-time address, and its setup_data,
        //    clear of every range the final map reserves.
        let [c0, c1, c2] = pc.reserved().map(|r| r.unwrap_or(Range::new(0, 0)));
        let busy = [zone.used(), layout::BIOS_AREA, ROM, c0, c1, c2];
        let kernel_range = linux::place_kernel(&kernel.info, kernel.size, &memory, &busy)?;
        kernel.load(&mut fw_cfg, kernel_range)?;
        let setup_data = kernel.move_setup_data(&mut fw_cfg, kernel_range, &mut zone)?;
        time.mark(Step::KernelLoaded);

        // 7. The initrd, as high as the kernel allows, and the command line.
        let busy = [
            zone.used(),
            kernel_range,
            layout::BIOS_AREA,
            ROM,
            c0,
            c1,
            c2,
        ];
        let initrd = linux::place_initrd(&kernel.info, kernel.initrd_size, &memory, &busy)?;
        kernel.load_initrd(&mut fw_cfg, initrd)?;
        kernel.load_cmdline(&mut fw_cfg)?;
        time.mark(Step::InitrdLoaded);
        log::debug!(
            "kernel {:#x}..{:#x}, initrd {:x?}, {:?} entry, {} DMA requests",
            kernel_range.start,
            kernel_range.end,
            initrd,
            kernel.info.entry,
            fw_cfg.stats.dma_requests
        );

        // 8. The other CPUs checked in, the MP table, the BIOS segment locked.
        let chipset_ranges = pc.finish(&mut io, &mut fw_cfg)?;
        time.mark(Step::Cpus);

        // 9. The final memory map and the zero page.
        reserve_firmware_memory(&mut memory, zone.used(), &chipset_ranges)?;
        let zero_page = kernel.build_zero_page(kernel_range, initrd, setup_data, rsdp, &memory)?;
        let (entry, address) = kernel.entry_point(kernel_range);
        time.mark(Step::ZeroPage);
        if report_timeline {
            time.report(io);
        }
        Ok(Handoff {
            io,
            entry,
            address,
            zero_page,
        })
    }

    fn set_log_level(fw_cfg: &mut FwCfg<Pio>) -> Result<(), Error> {
        if let Some(file) = fw_cfg.find(logger::LEVEL_FILE) {
            let mut buf = [MaybeUninit::uninit(); 16];
            logger::set_level(fw_cfg.read_file(logger::LEVEL_NAME, file, &mut buf)?);
        }
        Ok(())
    }

    /// The ROM below 4 GiB, reserved in the final map.
    const ROM: Range = Range::new(ROM_BASE, 1 << 32);

    /// The memory map lives in .bss: cleared by boot.s's one `rep stosq`.
    static MEMORY: spin::Mutex<MemoryMap> = spin::Mutex::new(MemoryMap::new());

    /// What the kernel must not use: the legacy hole (QEMU's first RAM entry spans
    /// it), the BIOS segment, ferrite's tables, the chipset's ranges (EBDA,
    /// MMCONFIG, RCBA) and the ROM.
    fn reserve_firmware_memory(
        memory: &mut MemoryMap,
        tables: Range,
        chipset: &[Option<Range>],
    ) -> Result<(), Error> {
        memory.remove(layout::LEGACY_HOLE)?;
        memory.insert(layout::BIOS_AREA, RESERVED)?;
        memory.insert(tables, RESERVED)?;
        for range in chipset.iter().flatten() {
            memory.insert(*range, RESERVED)?;
        }
        memory.insert(ROM, RESERVED)?;
        Ok(())
    }

    struct Handoff {
        io: Pio,
        entry: Entry,
        address: u64,
        zero_page: u64,
    }

    impl Handoff {
        fn enter(mut self) -> ! {
            self.io
                .outb(boot::MARKER_KERNEL_PORT, boot::MARKER_KERNEL_BZIMAGE);
            // SAFETY: the kernel, its initrd, command line and zero page are in
            // place and identity-mapped; nothing of ferrite is needed any more.
            unsafe {
                match self.entry {
                    Entry::Bits64 => boot::enter_linux64(self.address, self.zero_page),
                    Entry::Bits32 => {
                        boot::enter_linux32(self.address as u32, self.zero_page as u32)
                    }
                }
            }
        }
    }

    /// One line on COM1, the status on the debug-exit port, and stop.
    fn fail(error: Error) -> ! {
        log::error!("{error}");
        stop(error.status())
    }

    fn stop(status: u8) -> ! {
        // SAFETY: the boot path is over; this is the last thing ferrite does.
        unsafe { Pio::new() }.outb(STATUS_PORT, status);
        loop {
            x86_64::instructions::interrupts::disable();
            x86_64::instructions::hlt();
        }
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
        log::error!("internal error: CPU exception at {rip:#x}");
        stop(STATUS_PANIC)
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        log::error!("internal error: {info}");
        stop(STATUS_PANIC)
    }
}
