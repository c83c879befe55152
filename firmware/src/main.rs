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
extern crate alloc;

#[cfg(target_os = "none")]
mod arena;
#[cfg(target_os = "none")]
mod kernel;
#[cfg(target_os = "none")]
mod logger;
#[cfg(target_os = "none")]
mod mb_kernel;
#[cfg(target_os = "none")]
mod paging;
#[cfg(target_os = "none")]
mod pc;
#[cfg(target_os = "none")]
mod phys;
#[cfg(target_os = "none")]
mod pio;
#[cfg(target_os = "none")]
mod resume;
#[cfg(target_os = "none")]
mod stop;
#[cfg(target_os = "none")]
mod tables;
#[cfg(target_os = "none")]
mod timeline;
#[cfg(target_os = "none")]
mod vmlinux;

#[cfg(target_os = "none")]
pub use firmware::{cpu_exception, rust_main};

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("ferrite is a firmware image for QEMU's -bios: build it with `cargo xtask build`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod firmware {
    use core::mem::{MaybeUninit, size_of};

    use ferrite::bootparams::E820_MAX_ENTRIES_ZEROPAGE;
    use ferrite::bootparams::e820_type::RESERVED;
    use ferrite::chipset;
    use ferrite::e820::{MemoryMap, Range};
    use ferrite::error::{Error, STATUS_PANIC};
    use ferrite::fwcfg::FwCfg;
    use ferrite::io::PortIo;
    use ferrite::layout::{self, HighZone};
    use ferrite::linux::{self, Entry};
    use ferrite::multiboot::{self, MmapEntry};
    use ferrite::pvh::MemmapEntry;
    use ferrite::s3;

    use crate::boot::{self, ROM_BASE};
    use crate::kernel::{self, Kernel, Payload};
    use crate::mb_kernel::MultibootKernel;
    use crate::pc::Pc;
    use crate::pio::Pio;
    use crate::stop::{self, stop};
    use crate::timeline::{Step, Timeline};
    use crate::vmlinux::Vmlinux;
    use crate::{logger, resume, tables, timeline};

    /// Entered from boot.s: long mode, ferrite's stack, .bss clear, interrupts off.
    /// `reset_tsc` is the time-stamp counter at the reset vector; `wake_failure`
    /// says why a wake-up from S3 could not resume the OS (0: this is no wake-up).
    #[unsafe(no_mangle)]
    pub extern "C" fn rust_main(reset_tsc: u64, wake_failure: u32) -> ! {
        logger::init();
        if let Some(why) = s3::wake_failure(wake_failure) {
            log::error!("{why}");
        }
        // Borrowed by every step rather than moved along with them: moved by
        // value, each move of its stamps is a rep movs, a translation block
        // of its own under TCG.
        let mut time = Timeline::new(reset_tsc);
        match boot(&mut time) {
            Ok(handoff) => handoff.enter(),
            Err(error) => fail(error),
        }
    }

    /// The boot sequence.
    fn boot(time: &mut Timeline) -> Result<Handoff, Error> {
        // SAFETY: this is the boot path, the only code running.
        let mut io = unsafe { Pio::new() };

        // 1. QEMU's configuration device, the log level the user asked for, and
        //    what a failed boot does.
        let mut fw_cfg = FwCfg::probe(io)?;
        set_log_level(&mut fw_cfg)?;
        stop::read_policy(&mut fw_cfg)?;
        let report_timeline = timeline::requested(&mut fw_cfg)?;
        time.mark(Step::FwCfg);

        // 2. Memory: QEMU's map, and the zone below the top of low RAM where the
        //    tables handed to the kernel go.
        let mut memory = MEMORY.lock();
        memory.read_from(&mut fw_cfg)?;
        let zone = HighZone::new(memory.low_ram_top()?);
        time.mark(Step::MemoryMap);

        // 3. The PC around the CPU as SeaBIOS leaves it (pc and q35; nothing on
        //    microvm): PCI, the BIOS segment, legacy devices, the MTRRs, and the
        //    other CPUs sent to copy them. Before ACPI: QEMU builds its tables
        //    from what the firmware programmed.
        let pc = Pc::setup(&mut io, &mut fw_cfg, &memory)?;
        log::debug!("machine: {:?}", pc.machine);
        time.mark(Step::Hardware);

        // 4. The kernel: which kind, validated. Then that kind's steps.
        let payload = kernel::identify(&mut fw_cfg, &memory)?;
        time.mark(Step::KernelHeader);
        let booting = Booting {
            io,
            fw_cfg: &mut fw_cfg,
            memory: &mut memory,
            zone,
            pc,
            time,
            report_timeline,
            acpi: tables::Installed::default(),
        };
        match payload {
            Payload::BzImage(kernel) => boot_bzimage(booting, kernel),
            Payload::Pvh(vmlinux) => boot_pvh(booting, vmlinux),
            Payload::Multiboot(kernel) => boot_multiboot(booting, kernel),
        }
    }

    /// What every kind of kernel's steps work with.
    struct Booting<'m> {
        io: Pio,
        /// Borrowed: moved by value, its file directory is kilobytes of copies.
        fw_cfg: &'m mut FwCfg<Pio>,
        memory: &'m mut MemoryMap,
        zone: HighZone,
        pc: Pc,
        time: &'m mut Timeline,
        report_timeline: bool,
        /// What the ACPI step left for the S3 resume data.
        acpi: tables::Installed,
    }

    impl<'m> Booting<'m> {
        /// ACPI tables, through QEMU's table-loader script, and SMBIOS.
        /// Returns the RSDP's address.
        fn install_tables(&mut self) -> Result<Option<u64>, Error> {
            self.acpi = tables::install(self.fw_cfg, &mut self.zone, self.pc.bios_area())?;
            self.pc.install_smbios(self.fw_cfg, &mut self.zone)?;
            Ok(self.acpi.rsdp)
        }

        /// The other CPUs checked in, the MP table, the BIOS segment locked,
        /// where a wake-up from S3 finds the OS's waking vector (from `rsdp`),
        /// and the final memory map.
        fn finish(mut self, rsdp: Option<u64>) -> Result<Ready<'m>, Error> {
            let machine = self.pc.machine;
            let microvm_mp = self.pc.microvm_mptable(self.fw_cfg, &mut self.zone, rsdp)?;
            let [a, b, c] = self.pc.finish(&mut self.io, self.fw_cfg)?;
            resume::arm(machine, rsdp, self.acpi.tables, self.zone.used());
            self.time.mark(Step::Cpus);
            reserve_firmware_memory(self.memory, self.zone.used(), &[a, b, c, microvm_mp])?;
            Ok(Ready {
                io: self.io,
                memory: self.memory,
                time: self.time,
                report_timeline: self.report_timeline,
            })
        }
    }

    /// Everything set up but the kernel's boot information.
    struct Ready<'m> {
        io: Pio,
        memory: &'m MemoryMap,
        time: &'m mut Timeline,
        report_timeline: bool,
    }

    impl Ready<'_> {
        fn handoff(self, kind: Kind, entry: u64, boot_info: u64) -> Handoff {
            self.time.mark(Step::ZeroPage);
            if self.report_timeline {
                self.time.report(self.io);
            }
            Handoff {
                io: self.io,
                kind,
                entry,
                boot_info,
            }
        }
    }

    /// A bzImage through the Linux boot protocol.
    fn boot_bzimage(mut b: Booting, kernel: Kernel) -> Result<Handoff, Error> {
        // 5. ACPI and SMBIOS.
        let rsdp = b.install_tables()?;
        b.time.mark(Step::Acpi);

        // 6. The kernel, straight to its run-time address, and its setup_data,
        //    clear of every range the final map reserves.
        let [c0, c1, c2] = b.pc.reserved().map(|r| r.unwrap_or(Range::new(0, 0)));
        let busy = [b.zone.used(), layout::BIOS_AREA, ROM, c0, c1, c2];
        let kernel_range = linux::place_kernel(&kernel.info, kernel.size, b.memory, &busy)?;
        kernel.load(b.fw_cfg, kernel_range)?;
        let setup_data = kernel.move_setup_data(b.fw_cfg, kernel_range, &mut b.zone)?;
        let e820_ext =
            kernel::reserve_e820_ext(b.memory, &mut b.zone, kernel_range, FINAL_MAP_GROWTH)?;
        b.time.mark(Step::KernelLoaded);

        // 7. The initrd, as high as the kernel allows, and the command line.
        let busy = [
            b.zone.used(),
            kernel_range,
            layout::BIOS_AREA,
            ROM,
            c0,
            c1,
            c2,
        ];
        let initrd = linux::place_initrd(&kernel.info, kernel.initrd_size, b.memory, &busy)?;
        kernel.load_initrd(b.fw_cfg, initrd)?;
        kernel.load_cmdline(b.fw_cfg)?;
        b.time.mark(Step::InitrdLoaded);
        log::debug!(
            "kernel {:#x}..{:#x}, initrd {:x?}, {:?} entry, {} DMA requests",
            kernel_range.start,
            kernel_range.end,
            initrd,
            kernel.info.entry,
            b.fw_cfg.stats.dma_requests
        );

        // 8. The other CPUs, the MP table, the S3 resume data, the final memory map.
        let r = b.finish(rsdp)?;

        // 9. The zero page.
        let zero_page =
            kernel.build_zero_page(kernel_range, initrd, setup_data, e820_ext, rsdp, r.memory)?;
        let (entry, address) = kernel.entry_point(kernel_range);
        let kind = match entry {
            Entry::Bits64 => Kind::Linux64,
            Entry::Bits32 => Kind::Linux32,
        };
        Ok(r.handoff(kind, address, zero_page))
    }

    /// An ELF kernel (vmlinux) through its PVH entry. QEMU loaded its segments.
    fn boot_pvh(mut b: Booting, kernel: Vmlinux) -> Result<Handoff, Error> {
        // 5. The tables kept clear of the segments QEMU loaded.
        kernel.keep_clear(&mut b.zone)?;

        // 6. ACPI and SMBIOS (nothing to load: the kernel is in place).
        let rsdp = b.install_tables()?;
        b.time.mark(Step::Acpi);
        b.time.mark(Step::KernelLoaded);

        // 7. Room for a memory map longer than the start info's own table
        //    (taken before the initrd is placed below the zone), the initrd,
        //    placed as for a bzImage, and the command line.
        let memmap_room = kernel::reserve_map_room(
            b.memory,
            &mut b.zone,
            E820_MAX_ENTRIES_ZEROPAGE,
            size_of::<MemmapEntry>(),
            FINAL_MAP_GROWTH,
            kernel.segments,
            "the PVH memory map",
        )?;
        let [c0, c1, c2] = b.pc.reserved().map(|r| r.unwrap_or(Range::new(0, 0)));
        let busy = [
            b.zone.used(),
            kernel.segments,
            layout::BIOS_AREA,
            ROM,
            c0,
            c1,
            c2,
        ];
        let initrd = kernel.place_initrd(b.memory, &busy)?;
        kernel::load_initrd(b.fw_cfg, initrd)?;
        kernel.load_cmdline(b.fw_cfg)?;
        b.time.mark(Step::InitrdLoaded);
        log::debug!(
            "pvh: segments {:#x}..{:#x}, entry {:#x}, initrd {initrd:x?}, {} DMA requests",
            kernel.segments.start,
            kernel.segments.end,
            kernel.entry,
            b.fw_cfg.stats.dma_requests
        );

        // 8. The other CPUs, the MP table, the S3 resume data, the final memory map.
        let r = b.finish(rsdp)?;

        // 9. The start info: memory map, command line, initrd module, RSDP.
        let start_info = kernel.build_start_info(initrd, rsdp, r.memory, memmap_room)?;
        Ok(r.handoff(Kind::Pvh, kernel.entry as u64, start_info))
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

    /// The most entries [`reserve_firmware_memory`] adds to a map: a range
    /// cut out of one entry or laid inside it adds two at most (the hole one),
    /// and it lays seven ranges.
    const FINAL_MAP_GROWTH: usize = 1 + 2 * 7;

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

    /// A multiboot v1 kernel: QEMU's image and information block, finished.
    fn boot_multiboot(mut b: Booting, kernel: MultibootKernel) -> Result<Handoff, Error> {
        // 5. The tables kept clear of the image.
        kernel.keep_clear(&mut b.zone)?;

        // 6. ACPI and SMBIOS.
        let rsdp = b.install_tables()?;
        b.time.mark(Step::Acpi);

        // 7. The image (kernel, modules, command lines) in one transfer, and
        //    the kernel's multiboot header checked.
        kernel.load(b.fw_cfg)?;
        b.time.mark(Step::KernelLoaded);

        // 8. QEMU's information block.
        kernel.load_info(b.fw_cfg)?;
        b.time.mark(Step::InitrdLoaded);
        log::debug!(
            "multiboot: image {:#x}..{:#x}, entry {:#x}, {} DMA requests",
            kernel.image.start,
            kernel.image.end,
            kernel.entry,
            b.fw_cfg.stats.dma_requests
        );

        // 9. The other CPUs, the MP table, the S3 resume data, the final
        //    memory map (with room for it when it is longer than the fixed
        //    table).
        let mmap_room = kernel::reserve_map_room(
            b.memory,
            &mut b.zone,
            E820_MAX_ENTRIES_ZEROPAGE,
            size_of::<MmapEntry>(),
            FINAL_MAP_GROWTH,
            kernel.image,
            "the multiboot memory map",
        )?;
        let r = b.finish(rsdp)?;

        // 10. What QEMU leaves to the firmware: mem_lower/upper, the memory map.
        let info = kernel.finish_info(r.memory, mmap_room)?;
        Ok(r.handoff(Kind::Multiboot, kernel.entry as u64, info))
    }

    /// How the kernel is entered.
    enum Kind {
        Linux64,
        Linux32,
        Pvh,
        Multiboot,
    }

    struct Handoff {
        io: Pio,
        kind: Kind,
        entry: u64,
        /// The zero page (bzImage) or the start info (PVH).
        boot_info: u64,
    }

    impl Handoff {
        fn enter(mut self) -> ! {
            let marker = match self.kind {
                Kind::Linux64 | Kind::Linux32 => boot::MARKER_KERNEL_BZIMAGE,
                Kind::Pvh => boot::MARKER_KERNEL_PVH,
                Kind::Multiboot => boot::MARKER_KERNEL_MULTIBOOT,
            };
            if matches!(self.kind, Kind::Pvh | Kind::Multiboot) {
                chipset::mask_pics(&mut self.io);
            }
            self.io.outb(boot::MARKER_KERNEL_PORT, marker);
            // SAFETY: the kernel, its initrd, command line and boot information
            // are in place and identity-mapped (both below 4 GiB for the 32-bit
            // entries); nothing of ferrite is needed any more.
            unsafe {
                match self.kind {
                    Kind::Linux64 => boot::enter_linux64(self.entry, self.boot_info),
                    Kind::Linux32 => boot::enter_linux32(self.entry as u32, self.boot_info as u32),
                    Kind::Pvh => boot::enter_flat32(self.entry as u32, self.boot_info as u32, 0),
                    Kind::Multiboot => boot::enter_flat32(
                        self.entry as u32,
                        self.boot_info as u32,
                        multiboot::BOOTLOADER_MAGIC,
                    ),
                }
            }
        }
    }

    /// One line on COM1, the status on the debug-exit port, then power-off,
    /// reset or halt as `opt/ferrite/on-error` says.
    fn fail(error: Error) -> ! {
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
        log::error!("internal error: CPU exception at {rip:#x}");
        stop(STATUS_PANIC)
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        log::error!("internal error: {info}");
        stop(STATUS_PANIC)
    }
}
