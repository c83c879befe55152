//! The boot sequence, step by step, on any [`Board`]: the firmware binary runs
//! it on the machine, the host tests on a model of QEMU's pc, q35 and microvm.
//!
//! [`boot`] reads QEMU's configuration, sets up the PC, identifies the kernel
//! and runs that kind's steps; it returns the [`Handoff`] the binary jumps
//! through.

mod bios;
mod bzimage;
mod cpus;
mod mb_kernel;
mod pc;
mod resume;
mod tables;
mod vmlinux;

#[cfg(test)]
mod tests;

use core::mem::size_of;

pub use bios::{EBDA, F_SEGMENT, MP_POINTER};
pub use cpus::{AP_COUNT_OFFSET, AP_IDS_OFFSET, AP_MSRS_OFFSET, TRAMPOLINE};
pub use resume::RESUME_BLOCK;

use crate::acpi;
use crate::board::{Board, Step};
use crate::bootparams::E820_MAX_ENTRIES_ZEROPAGE;
use crate::chipset::{self, Machine};
use crate::e820::MemoryMap;
use crate::error::Error;
use crate::fwcfg::{FILE_NAME_LEN, File, FwCfg};
use crate::io::PortIo;
use crate::linux::{self, Entry};
use crate::mem::Range;
use crate::mem::{self, HighZone, Reservations};
use crate::multiboot::MmapEntry;
use crate::pci::Pci;
use crate::pvh::MemmapEntry;

use bzimage::{Kernel, Payload};
use mb_kernel::MultibootKernel;
use pc::Pc;
use vmlinux::Vmlinux;

/// What the boot keeps for its whole length, too large for the stack: the
/// binary has it in `.bss`, a host test on the heap.
pub struct Storage {
    memory: MemoryMap,
    pci: Pci,
    /// The kernel's setup header and its validated description.
    kernel: Kernel,
    /// The ACPI table loader's list of files.
    acpi_files: acpi::Files,
}

impl Storage {
    pub const fn new() -> Storage {
        Storage {
            memory: MemoryMap::new(),
            pci: Pci::new(),
            kernel: Kernel::new(),
            acpi_files: acpi::Files::new(),
        }
    }
}

impl Default for Storage {
    fn default() -> Storage {
        Storage::new()
    }
}

/// The boot sequence, on QEMU's configuration device. A transfer from it that
/// failed is the boot's error, whatever followed from it: the device
/// records such failures, and they are looked at once, here
/// ([`FwCfg::check`]).
pub fn boot<B: Board>(board: &mut B, storage: &mut Storage) -> Result<Handoff, Error> {
    // Probed in place: its directory is kilobytes.
    let mut fw_cfg = FwCfg::unprobed(board.io());
    let handoff = boot_steps(board, storage, &mut fw_cfg);
    fw_cfg.verdict(handoff)
}

/// The steps of the boot sequence.
fn boot_steps<B: Board>(
    board: &mut B,
    storage: &mut Storage,
    fw_cfg: &mut FwCfg<B::Io>,
) -> Result<Handoff, Error> {
    let Storage {
        memory,
        pci,
        kernel,
        acpi_files,
    } = storage;

    // 1. QEMU's configuration device, and what the user set through it.
    fw_cfg.probe_device()?;
    board.configure(fw_cfg)?;
    // QEMU's ACPI table-loader script, looked up once: whether there is one
    // decides the PM base (step 4), and the ACPI step runs it.
    let loader = fw_cfg.find_padded(&const { crate::fwcfg::file_key(acpi::LOADER_FILE) });
    board.mark(Step::FwCfg);

    // 2. Memory: QEMU's map.
    memory.read_from(fw_cfg)?;
    let machine = chipset::identify(&mut board.io());
    board.mark(Step::MemoryMap);

    // 3. The kernel: which kind, validated, before any hardware is set up
    //    for it (a kernel that cannot boot costs no PCI set-up). Then the
    //    zone where the tables handed to the kernel go: below 1 MiB, or
    //    below the top of low RAM when what goes there (with the kernel's
    //    `setup_data`) is too large for that.
    let payload = bzimage::identify(board, fw_cfg, memory, kernel)?;
    let setup_data = match &payload {
        Payload::BzImage(kernel) => kernel.setup_data_bound(fw_cfg),
        _ => 0,
    };
    let zone = table_zone(machine, fw_cfg, memory, setup_data)?;
    board.mark(Step::KernelHeader);

    // 4. The PC around the CPU as SeaBIOS leaves it (pc and q35; nothing on
    //    microvm): PCI, the BIOS segment, legacy devices, the MTRRs, and the
    //    other CPUs sent to copy them. Before ACPI: QEMU builds its tables
    //    from what the firmware programmed. What the chipset uses is reserved.
    // A select, not a branch: one block under TCG.
    let bios = if machine == Machine::NoPci {
        mem::MICROVM_LEGACY
    } else {
        mem::BIOS_AREA
    };
    let mut reserved = Reservations::new(B::ROM, bios);
    let pc = Pc::setup(
        board,
        fw_cfg,
        memory,
        pci,
        machine,
        loader.is_some(),
        &mut reserved,
    )?;
    log::debug!("machine: {:?}", pc.machine);
    board.mark(Step::Hardware);

    // Then that kind's steps.
    let booting = Booting {
        board,
        fw_cfg,
        memory,
        pci,
        zone,
        reserved: &mut reserved,
        pc,
        loader,
        acpi: tables::Installed::default(),
        acpi_files,
    };
    match payload {
        Payload::BzImage(kernel) => boot_bzimage(booting, kernel),
        Payload::Pvh(vmlinux) => boot_pvh(booting, vmlinux),
        Payload::Multiboot(kernel) => boot_multiboot(booting, kernel),
    }
}

/// QEMU's files that go to the zone (QEMU 7.2 to 10.0): those its
/// table-loader script allocates there (its ACPI tables, the TPM's event
/// log, the VM generation ID, the NVDIMM methods' buffer; the RSDP is a few
/// bytes in the BIOS segment), and the SMBIOS tables.
const ZONE_FILES: [[u8; FILE_NAME_LEN]; 5] = [
    crate::fwcfg::file_key(acpi::TABLES_FILE),
    crate::fwcfg::file_key(b"etc/tpm/log"),
    crate::fwcfg::file_key(b"etc/vmgenid_guid"),
    crate::fwcfg::file_key(b"etc/acpi/nvdimm-mem"),
    crate::fwcfg::file_key(crate::smbios::TABLES_FILE),
];

/// Where the tables for the kernel go: below 1 MiB as qboot places them,
/// when QEMU's files for them (those the table loader allocates, and
/// SMBIOS's) and the kernel's `setup_data` (at most `setup_data` bytes,
/// copied there) leave [`mem::LOW_TABLES_SPARE`] of the zone free: on microvm
/// in [`mem::LOW_TABLES`], on pc and q35 in the shadow RAM
/// [`mem::LOW_TABLES_PC`]. Larger ones (an `-acpitable` file, a TPM, many
/// CPUs) go to the top of low RAM, as SeaBIOS places them. Under TCG,
/// Linux's ACPI set-up took 2 to 5 ms longer with microvm's tables at the
/// top of RAM, each access a mapping made and unmade (the kernel's own
/// timestamps, 2026-12-02); on pc and q35 the RAM below 4 GiB then ends off
/// a 2 MiB boundary, which cost the small kernel 3.4 to 4.2 ms of its own
/// clock to `kernel_init` (icount, 2026-12-03).
fn table_zone(
    machine: Machine,
    fw_cfg: &FwCfg<impl PortIo>,
    memory: &MemoryMap,
    setup_data: u64,
) -> Result<HighZone, Error> {
    // A select, not a branch: one block under TCG.
    let low = if machine == Machine::NoPci {
        mem::LOW_TABLES
    } else {
        mem::LOW_TABLES_PC
    };
    let mut size = setup_data;
    for name in &ZONE_FILES {
        size += fw_cfg.find_padded(name).map_or(0, |f| f.size as u64);
    }
    if size + crate::smbios::TYPE0_ROOM as u64 + mem::LOW_TABLES_SPARE > low.len() {
        return Ok(HighZone::new(memory.low_ram_top()?));
    }
    Ok(HighZone::within(low))
}

/// What every kind of kernel's steps work with.
struct Booting<'m, B: Board> {
    board: &'m mut B,
    /// Borrowed: moved by value, its file directory is kilobytes of copies.
    fw_cfg: &'m mut FwCfg<B::Io>,
    memory: &'m mut MemoryMap,
    pci: &'m Pci,
    zone: HighZone,
    /// What the final map reserves beside the zone: the ROM, the BIOS
    /// segment, the chipset's ranges. The kernel and initrd go clear of it.
    /// Borrowed: moved in, its copy was a rep movs (a translation block of
    /// its own under TCG).
    reserved: &'m mut Reservations,
    pc: Pc,
    /// QEMU's table-loader script, if it gave one.
    loader: Option<File>,
    /// What the ACPI step left for the S3 resume data.
    acpi: tables::Installed,
    acpi_files: &'m mut acpi::Files,
}

impl<'m, B: Board> Booting<'m, B> {
    /// ACPI tables, through QEMU's table-loader script, and SMBIOS; on
    /// microvm, an MP table. All before the kernel and the
    /// initrd are placed clear of the zone. Returns the RSDP's address.
    fn install_tables(&mut self) -> Result<Option<u64>, Error> {
        let memory = self.board.memory();
        self.acpi = tables::install(
            self.fw_cfg,
            self.loader,
            memory,
            &mut self.zone,
            self.pc.bios_area(),
            self.acpi_files,
        )?;
        self.pc
            .install_smbios(self.fw_cfg, memory, &mut self.zone)?;
        self.pc
            .microvm_mptable(self.board, self.fw_cfg, &mut self.zone, self.reserved)?;
        Ok(self.acpi.rsdp)
    }

    /// Room in the high zone for a PVH or multiboot memory map of `E`s, when
    /// the final map may be longer than the fixed table for it (the zero
    /// page's 128 entries), clear of `keep_clear`. None on an ordinary VM.
    fn reserve_map_room<E>(
        &mut self,
        keep_clear: Range,
        what: &'static str,
    ) -> Result<Option<Range>, Error> {
        bzimage::reserve_map_room(
            self.memory,
            &mut self.zone,
            E820_MAX_ENTRIES_ZEROPAGE,
            size_of::<E>(),
            FINAL_MAP_GROWTH,
            keep_clear,
            what,
        )
    }

    /// The other CPUs checked in, the MP table, the BIOS segment locked,
    /// where a wake-up from S3 finds the OS's waking vector (from `rsdp`),
    /// and the final memory map.
    fn finish(self, rsdp: Option<u64>) -> Result<Ready<'m, B>, Error> {
        let machine = self.pc.machine;
        self.pc.finish(self.board, self.fw_cfg, self.pci)?;
        resume::arm(
            self.board.memory(),
            machine,
            rsdp,
            self.acpi.tables,
            self.zone.used(),
        );
        self.board.mark(Step::Cpus);
        reserve_firmware_memory(self.memory, self.zone.used(), self.reserved)?;
        Ok(Ready {
            board: self.board,
            memory: self.memory,
        })
    }
}

/// Everything set up but the kernel's boot information.
struct Ready<'m, B: Board> {
    board: &'m mut B,
    memory: &'m MemoryMap,
}

/// The most entries [`reserve_firmware_memory`] adds to a map: a range cut
/// out of one entry or laid inside it adds two at most (the hole one), and
/// it lays the zone and up to [`Reservations::CAPACITY`] ranges.
const FINAL_MAP_GROWTH: usize = 1 + 2 * (1 + Reservations::CAPACITY);

/// What the kernel must not use: the legacy hole (QEMU's first RAM entry
/// spans it), the BIOS segment, ferrite's tables, the chipset's ranges (EBDA,
/// MMCONFIG, RCBA) and the ROM.
fn reserve_firmware_memory(
    memory: &mut MemoryMap,
    tables: Range,
    reserved: &mut Reservations,
) -> Result<(), Error> {
    Ok(memory.reserve(mem::LEGACY_HOLE, reserved.reserved(tables))?)
}

/// A bzImage through the Linux boot protocol.
fn boot_bzimage<B: Board>(mut b: Booting<B>, kernel: &Kernel) -> Result<Handoff, Error> {
    // 5. ACPI and SMBIOS.
    let rsdp = b.install_tables()?;
    b.board.mark(Step::Acpi);

    // 6. The kernel, straight to its run-time address, and its setup_data,
    //    clear of every range the final map reserves.
    let busy = b.reserved.busy(b.zone.used(), Range::new(0, 0));
    let kernel_range = linux::place_kernel(&kernel.info, kernel.size, b.memory, busy)?;
    kernel.load(b.fw_cfg, b.board.memory(), kernel_range)?;
    let setup_data =
        kernel.move_setup_data(b.fw_cfg, b.board.memory(), kernel_range, &mut b.zone)?;
    let e820_ext =
        bzimage::reserve_e820_ext(b.memory, &mut b.zone, kernel_range, FINAL_MAP_GROWTH)?;
    b.board.mark(Step::KernelLoaded);

    // 7. The initrd, as high as the kernel allows, and the command line.
    let busy = b.reserved.busy(b.zone.used(), kernel_range);
    let initrd = linux::place_initrd(&kernel.info, kernel.initrd_size, b.memory, busy)?;
    bzimage::load_initrd(b.fw_cfg, b.board.memory(), initrd)?;
    kernel.load_cmdline(b.fw_cfg, b.board.memory())?;
    b.board.mark(Step::InitrdLoaded);
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
    let zero_page = kernel.build_zero_page(
        r.board.memory(),
        kernel_range,
        initrd,
        setup_data,
        e820_ext,
        rsdp,
        r.memory,
    )?;
    let (entry, address) = kernel.entry_point(kernel_range);
    let kind = match entry {
        Entry::Bits64 => Kind::Linux64,
        Entry::Bits32 => Kind::Linux32,
    };
    Ok(Handoff::new(r.board, kind, address, zero_page))
}

/// An ELF kernel (vmlinux) through its PVH entry. QEMU loaded its segments.
fn boot_pvh<B: Board>(mut b: Booting<B>, kernel: Vmlinux) -> Result<Handoff, Error> {
    // 5. The tables kept clear of the segments QEMU loaded.
    kernel.keep_clear(&mut b.zone)?;

    // 6. ACPI and SMBIOS (nothing to load: the kernel is in place).
    let rsdp = b.install_tables()?;
    b.board.mark(Step::Acpi);
    b.board.mark(Step::KernelLoaded);

    // 7. Room for a memory map longer than the start info's own table
    //    (taken before the initrd is placed below the zone), the initrd,
    //    placed as for a bzImage, and the command line.
    let memmap_room = b.reserve_map_room::<MemmapEntry>(kernel.segments, "the PVH memory map")?;
    let busy = b.reserved.busy(b.zone.used(), kernel.segments);
    let initrd = kernel.place_initrd(b.memory, busy)?;
    bzimage::load_initrd(b.fw_cfg, b.board.memory(), initrd)?;
    kernel.load_cmdline(b.fw_cfg, b.board.memory())?;
    b.board.mark(Step::InitrdLoaded);
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
    let start_info =
        kernel.build_start_info(r.board.memory(), initrd, rsdp, r.memory, memmap_room)?;
    Ok(Handoff::new(
        r.board,
        Kind::Pvh,
        kernel.entry as u64,
        start_info,
    ))
}

/// A multiboot v1 kernel: QEMU's image and information block, finished.
fn boot_multiboot<B: Board>(mut b: Booting<B>, kernel: MultibootKernel) -> Result<Handoff, Error> {
    // 5. The tables kept clear of the image.
    kernel.keep_clear(&mut b.zone)?;

    // 6. ACPI and SMBIOS.
    let rsdp = b.install_tables()?;
    b.board.mark(Step::Acpi);

    // 7. The image (kernel, modules, command lines) in one transfer, and
    //    the kernel's multiboot header checked.
    kernel.load(b.fw_cfg, b.board.memory())?;
    b.board.mark(Step::KernelLoaded);

    // 8. QEMU's information block.
    kernel.load_info(b.fw_cfg, b.board.memory())?;
    b.board.mark(Step::InitrdLoaded);
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
    let mmap_room = b.reserve_map_room::<MmapEntry>(kernel.image, "the multiboot memory map")?;
    let r = b.finish(rsdp)?;

    // 10. What QEMU leaves to the firmware: mem_lower/upper, the memory map.
    let info = kernel.finish_info(r.board.memory(), r.memory, mmap_room)?;
    Ok(Handoff::new(
        r.board,
        Kind::Multiboot,
        kernel.entry as u64,
        info,
    ))
}

/// How the kernel is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A bzImage's 64-bit entry (the zero page in RSI).
    Linux64,
    /// A bzImage's 32-bit entry (the zero page in ESI).
    Linux32,
    /// The PVH entry (the start info in EBX).
    Pvh,
    /// The multiboot entry (EAX: the magic, EBX: the information).
    Multiboot,
}

/// Where the boot hands over: the binary writes the marker and jumps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handoff {
    pub kind: Kind,
    pub entry: u64,
    /// The zero page (bzImage), the start info (PVH) or the multiboot information.
    pub boot_info: u64,
}

impl Handoff {
    fn new<B: Board>(board: &mut B, kind: Kind, entry: u64, boot_info: u64) -> Handoff {
        board.mark(Step::ZeroPage);
        Handoff {
            kind,
            entry,
            boot_info,
        }
    }
}
