//! The whole boot on the host: [`boot`] against a model of QEMU's pc, q35 and
//! microvm ([`machine`], [`qemu`]), checked for what the kernel would be
//! handed: the zero page, the e820 map, the ACPI tables, the MP table, the S3
//! resume data, and the order of the steps.

mod machine;
mod qemu;

use super::*;
use crate::board::GuestMemory;
use crate::bootparams::{BootParams, LOADER_TYPE_QEMU, e820_type};
use crate::fwcfg::Item;
use crate::s3::ResumeBlock;
use machine::*;
use qemu::*;
use std::string::String;
use std::vec::Vec;

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b))
}

/// The final e820 map from the zero page.
fn e820(zp: &BootParams) -> Vec<(Range, u32)> {
    zp.e820_table[..zp.e820_entries as usize]
        .iter()
        .map(|e| {
            let (addr, size, typ) = (e.addr, e.size, e.typ);
            (Range::new(addr, addr + size), typ)
        })
        .collect()
}

fn covered_by(map: &[(Range, u32)], r: Range, typ: u32) -> bool {
    map.iter()
        .any(|&(m, t)| t == typ && m.start <= r.start && r.end <= m.end)
}

/// Boots a bzImage on `kind` and checks everything the kernel is handed.
/// The zero page the boot left for the kernel.
fn zero_page(board: &FakeBoard) -> BootParams {
    let page = board.ram.read(mem::ZERO_PAGE, size_of::<BootParams>());
    // SAFETY: 4096 bytes read from the zero page; BootParams is plain data
    // with alignment 1.
    unsafe { core::ptr::read_unaligned(page.as_ptr().cast()) }
}

fn boot_bzimage_on(kind: Vm) {
    boot_bzimage_with(kind, None)
}

/// [`boot_bzimage_on`], with ACPI tables on microvm too, `padding` bytes
/// longer than the miniature ones, if `microvm_acpi` is `Some(padding)`.
fn boot_bzimage_with(kind: Vm, microvm_acpi: Option<usize>) {
    let kernel = pattern(300 * 1024, 7);
    let initrd = pattern(200 * 1024, 99);
    let mut fw_cfg = fw_cfg(kind, &kernel, &initrd);
    if let Some(padding) = microvm_acpi {
        add_acpi_padded(&mut fw_cfg, padding);
        fw_cfg.files.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let mut board = board(kind, fw_cfg);
    let mut storage = std::boxed::Box::new(Storage::new());
    let handoff = boot(&mut board, &mut storage).expect("the boot succeeds");

    // the steps, in the timeline's order
    assert_eq!(board.steps, Step::BOOT, "{kind:?}");

    // the zero page and what it points at
    assert_eq!(handoff.kind, Kind::Linux64);
    assert_eq!(handoff.boot_info, mem::ZERO_PAGE);
    let zp = zero_page(&board);
    let hdr = zp.hdr;
    let (code32_start, cmd_line_ptr) = (hdr.code32_start, hdr.cmd_line_ptr);
    let (ramdisk_image, ramdisk_size) = (hdr.ramdisk_image, hdr.ramdisk_size);
    assert_eq!(hdr.type_of_loader, LOADER_TYPE_QEMU);
    assert_eq!(
        code32_start as u64,
        16 * MIB,
        "the preferred address is free"
    );
    assert_eq!(handoff.entry, 16 * MIB + 0x200);
    assert!(board.ram.read(code32_start as u64, kernel.len()) == kernel);
    assert_eq!(ramdisk_size as usize, initrd.len());
    let loaded = board.ram.read(ramdisk_image as u64, initrd.len());
    let first_difference = loaded.iter().zip(&initrd).position(|(a, b)| a != b);
    assert_eq!(first_difference, None, "initrd at {ramdisk_image:#x}");
    assert_eq!(
        board.ram.read(cmd_line_ptr as u64, CMDLINE.len()),
        CMDLINE,
        "the command line with its NUL"
    );

    // the memory map: sorted, disjoint, the legacy hole gone, the firmware's
    // ranges reserved, the kernel and initrd in RAM that stays RAM
    let map = e820(&zp);
    for pair in map.windows(2) {
        assert!(pair[0].0.end <= pair[1].0.start, "{map:x?}");
    }
    assert!(
        !map.iter()
            .any(|&(r, t)| t == e820_type::RAM && r.overlaps(&mem::LEGACY_HOLE)),
        "{map:x?}"
    );
    assert!(covered_by(&map, ROM, e820_type::RESERVED), "{map:x?}");
    assert!(covered_by(&map, mem::BIOS_AREA, e820_type::RESERVED));
    let kernel_range = Range::new(code32_start as u64, code32_start as u64 + 8 * MIB);
    assert!(covered_by(&map, kernel_range, e820_type::RAM), "{map:x?}");
    let initrd_range = Range::new(
        ramdisk_image as u64,
        ramdisk_image as u64 + ramdisk_size as u64,
    );
    assert!(covered_by(&map, initrd_range, e820_type::RAM), "{map:x?}");
    assert!(!initrd_range.overlaps(&kernel_range));

    let rsdp = zp.acpi_rsdp_addr;
    // The MP table's floating pointer in the EBDA's first KiB, reserved,
    // on every machine
    assert_eq!(board.ram.read(MP_POINTER, 4), b"_MP_");
    assert_eq!(sum(&board.ram.read(MP_POINTER, 16)), 0);
    assert!(covered_by(&map, EBDA, e820_type::RESERVED), "{map:x?}");
    let mp_table = board.ram.u32_at(MP_POINTER + 4) as u64;
    assert_eq!(board.ram.read(mp_table, 4), b"PCMP");
    if kind == Vm::Microvm {
        // the MP table, with or without ACPI, and the ACPI tables below
        // 1 MiB, reserved; RAM up to its end. ACPI tables too large for
        // that go to the top of RAM, and everything else with them.
        let high = microvm_acpi.is_some_and(|p| ACPI_TABLES_LEN + p > low_room(mem::LOW_TABLES));
        let zone = if high {
            Range::new(RAM - mem::HIGH_ZONE_MAX, RAM)
        } else {
            mem::LOW_TABLES
        };
        assert!(
            zone.contains(&Range::new(mp_table, mp_table + 16)),
            "{mp_table:#x}"
        );
        assert!(covered_by(
            &map,
            Range::new(mp_table, mp_table + 16),
            e820_type::RESERVED
        ));
        if microvm_acpi.is_some() {
            assert!(zone.contains(&Range::new(rsdp, rsdp + 20)), "{rsdp:#x}");
            assert_eq!(&board.ram.read(rsdp, 8)[..], b"RSD PTR ");
            assert!(covered_by(
                &map,
                Range::new(rsdp, rsdp + 20),
                e820_type::RESERVED
            ));
        } else {
            assert_eq!(rsdp, 0);
        }
        if !high {
            assert!(
                covered_by(&map, Range::new(MIB, RAM), e820_type::RAM),
                "{map:x?}"
            );
        }
        // The EBDA, the legacy hole and the tables' reservation in it are
        // one entry: each e820 entry costs Linux's direct-map set-up.
        let low: Vec<_> = map
            .iter()
            .filter(|&&(r, _)| r.end > EBDA.start && r.start < MIB)
            .collect();
        assert_eq!(
            low,
            [&(Range::new(EBDA.start, MIB), e820_type::RESERVED)],
            "{map:x?}"
        );
        assert!(board.cpu.msrs.is_empty(), "microvm has no MTRR set-up");
        return;
    }
    assert!(F_SEGMENT.contains(&Range::new(mp_table, mp_table + 4)));

    // ACPI: the RSDP in the BIOS segment, checksummed, pointing at the RSDT
    // in reserved memory; the S3 resume block points at the FACS
    assert!(
        F_SEGMENT.contains(&Range::new(rsdp, rsdp + 20)),
        "{rsdp:#x}"
    );
    let rsdp_bytes = board.ram.read(rsdp, 20);
    assert_eq!(&rsdp_bytes[..8], b"RSD PTR ");
    assert_eq!(sum(&rsdp_bytes), 0);
    let rsdt = board.ram.u32_at(rsdp + 16) as u64;
    let rsdt_bytes = board.ram.read(rsdt, 36);
    assert_eq!(&rsdt_bytes[..4], b"RSDT");
    assert_eq!(sum(&rsdt_bytes), 0);
    assert!(covered_by(
        &map,
        Range::new(rsdt, rsdt + 36),
        e820_type::RESERVED
    ));
    // the tables below 1 MiB, in the shadow RAM, and the RAM from 1 MiB to
    // the end of low RAM in one entry
    assert!(
        mem::LOW_TABLES_PC.contains(&Range::new(rsdt, rsdt + 36)),
        "{rsdt:#x}"
    );
    assert!(
        covered_by(&map, Range::new(MIB, RAM), e820_type::RAM),
        "{map:x?}"
    );
    let block = board.ram.read(RESUME_BLOCK, size_of::<ResumeBlock>());
    let facs = u32::from_le_bytes(block[4..8].try_into().unwrap()) as u64;
    assert_eq!(
        u32::from_le_bytes(block[..4].try_into().unwrap()),
        crate::s3::RESUME_MAGIC
    );
    assert_eq!(facs, rsdt - 64, "the FACS, first in etc/acpi/tables");

    // the BIOS segment: the EBDA in the BDA, the MP table; MTRRs on every CPU
    assert_eq!(
        u16::from_le_bytes(board.ram.read(0x40E, 2).try_into().unwrap()) as u64,
        EBDA.start >> 4
    );
    assert!(covered_by(&map, EBDA, e820_type::RESERVED));
    let fseg = board.ram.read(F_SEGMENT.start, F_SEGMENT.len() as usize);
    assert!(
        !fseg.chunks(16).any(|c| c.starts_with(b"_MP_")),
        "one floating pointer, in the EBDA"
    );
    assert_eq!(&fseg[..2], &[0xFA, 0xF4], "the start-up code on its page");
    assert!(
        board.cpu.msrs.iter().any(|&(msr, _)| msr == 0x2FF),
        "MTRRdefType written: {:x?}",
        board.cpu.msrs
    );
    assert!(board.cpu.started, "the other CPU was woken");
    // the other CPUs' copy of the list: the same writes, then a zero index;
    // nobody checked in yet on the page, the bitmap theirs to fill
    let ap = &fseg[super::AP_MSRS_OFFSET..];
    for (i, &(msr, value)) in board.cpu.msrs.iter().enumerate() {
        let slot = &ap[12 * i..12 * i + 12];
        assert_eq!(u32::from_le_bytes(slot[..4].try_into().unwrap()), msr);
        assert_eq!(u64::from_le_bytes(slot[4..].try_into().unwrap()), value);
    }
    let end = 12 * board.cpu.msrs.len();
    assert_eq!(&ap[end..end + 4], &[0; 4], "the list's end marker");
    assert_eq!(
        &fseg[super::AP_COUNT_OFFSET..super::AP_COUNT_OFFSET + 2],
        &[0; 2]
    );
    assert_eq!(fseg[super::AP_IDS_OFFSET], 0);
    // the MP table lists both CPUs enabled, CPU 0 as the bootstrap one
    assert_eq!(mp_processors(&fseg), [(0, 0b11), (1, 0b01)]);

    // PCI: every BAR assigned, without overlaps; q35's MMCONFIG reserved
    crate::pci::tests::assert_no_overlap(&board.devices.borrow().pci);
    if kind == Vm::Q35 {
        assert!(covered_by(
            &map,
            Range::new(MMCONFIG, MMCONFIG + 256 * MIB),
            e820_type::RESERVED
        ));
    }
    let others: String = std::format!("{:x?}", board.devices.borrow().others);
    assert!(!others.is_empty());
}

#[test]
fn end_to_end_bzimage_on_pc() {
    boot_bzimage_on(Vm::Pc);
}

#[test]
fn end_to_end_bzimage_on_q35() {
    boot_bzimage_on(Vm::Q35);
}

#[test]
fn end_to_end_bzimage_on_microvm() {
    boot_bzimage_on(Vm::Microvm);
}

/// How many bytes of QEMU's files a low zone takes: what leaves it
/// [`mem::LOW_TABLES_SPARE`] free beside SMBIOS's type 0 room.
fn low_room(zone: Range) -> usize {
    (zone.len() - mem::LOW_TABLES_SPARE) as usize - crate::smbios::TYPE0_ROOM
}

/// microvm with ACPI and a TPM whose event log (which the table loader
/// allocates too) leaves the tables no room below 1 MiB: they go high.
#[test]
fn microvm_tables_with_a_large_tpm_log_go_to_the_top_of_ram() {
    let (kernel, initrd) = (pattern(64 * 1024, 7), pattern(1024, 99));
    let mut fw_cfg = fw_cfg(Vm::Microvm, &kernel, &initrd);
    add_acpi(&mut fw_cfg);
    let room = low_room(mem::LOW_TABLES);
    fw_cfg.add_file("etc/tpm/log", &vec![0; room - ACPI_TABLES_LEN + 1]);
    fw_cfg.files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut board = board(Vm::Microvm, fw_cfg);
    let mut storage = std::boxed::Box::new(Storage::new());
    boot(&mut board, &mut storage).expect("the boot succeeds");
    let zp = zero_page(&board);
    let rsdp = zp.acpi_rsdp_addr;
    assert!((RAM - mem::HIGH_ZONE_MAX..RAM).contains(&rsdp), "{rsdp:#x}");
    let mp_table = board.ram.u32_at(MP_POINTER + 4) as u64;
    assert!(mp_table >= RAM - mem::HIGH_ZONE_MAX, "{mp_table:#x}");
}

/// pc and q35 whose files for the zone leave too little of the shadow RAM
/// free: the tables go to the top of low RAM, reserved there, as SeaBIOS
/// places them; and up to that size they stay below 1 MiB. The S3 resume
/// block names the FACS wherever it is.
#[test]
fn pc_tables_too_large_for_the_shadow_ram_go_to_the_top_of_ram() {
    for kind in [Vm::Pc, Vm::Q35] {
        for (extra, high) in [(0, false), (1, true)] {
            let (kernel, initrd) = (pattern(64 * 1024, 7), pattern(1024, 99));
            let mut fw_cfg = fw_cfg(kind, &kernel, &initrd);
            let room = low_room(mem::LOW_TABLES_PC);
            fw_cfg.add_file("etc/tpm/log", &vec![0; room - ACPI_TABLES_LEN + extra]);
            fw_cfg.files.sort_by(|a, b| a.0.cmp(&b.0));
            let mut board = board(kind, fw_cfg);
            let mut storage = std::boxed::Box::new(Storage::new());
            boot(&mut board, &mut storage).expect("the boot succeeds");
            let zp = zero_page(&board);
            let rsdt = board.ram.u32_at(zp.acpi_rsdp_addr + 16) as u64;
            assert_eq!(&board.ram.read(rsdt, 4)[..], b"RSDT");
            let zone = if high {
                Range::new(RAM - mem::HIGH_ZONE_MAX, RAM)
            } else {
                mem::LOW_TABLES_PC
            };
            assert!(
                zone.contains(&Range::new(rsdt, rsdt + 36)),
                "{kind:?} {rsdt:#x}"
            );
            let map = e820(&zp);
            assert!(
                covered_by(&map, Range::new(rsdt, rsdt + 36), e820_type::RESERVED),
                "{map:x?}"
            );
            assert_eq!(
                covered_by(&map, Range::new(MIB, RAM), e820_type::RAM),
                !high,
                "{map:x?}"
            );
            let block = board.ram.read(RESUME_BLOCK, size_of::<ResumeBlock>());
            let facs = u32::from_le_bytes(block[4..8].try_into().unwrap()) as u64;
            assert_eq!(facs, rsdt - 64, "the FACS, first in etc/acpi/tables");
        }
    }
}

/// microvm with ACPI, as QEMU starts it by default: its tables below 1 MiB,
/// and an MP table all the same (without one Linux scans for it).
#[test]
fn end_to_end_bzimage_on_microvm_with_acpi() {
    boot_bzimage_with(Vm::Microvm, Some(0));
    // as large as fits below 1 MiB, and larger (an `-acpitable` file)
    let room = low_room(mem::LOW_TABLES);
    boot_bzimage_with(Vm::Microvm, Some(room - ACPI_TABLES_LEN));
    boot_bzimage_with(Vm::Microvm, Some(room - ACPI_TABLES_LEN + 1));
}

/// The MP table's processor entries in `fseg` (the BIOS segment): each
/// one's APIC ID and flags (bit 0 enabled, bit 1 the bootstrap CPU).
fn mp_processors(fseg: &[u8]) -> Vec<(u8, u8)> {
    let at = fseg
        .windows(4)
        .position(|w| w == b"PCMP")
        .expect("an MP table in the BIOS segment");
    let count = u16::from_le_bytes([fseg[at + 34], fseg[at + 35]]);
    let mut entry = at + 44;
    let mut cpus = Vec::new();
    for _ in 0..count {
        if fseg[entry] == 0 {
            cpus.push((fseg[entry + 1], fseg[entry + 3]));
            entry += 20;
        } else {
            entry += 8;
        }
    }
    cpus
}

/// One CPU: its MSRs written, no other CPU woken, no trampoline written
/// (its page stays as `BiosArea::open` cleared it), and the MP table lists
/// this CPU, enabled, though nothing set its bit on the page.
#[test]
fn end_to_end_with_one_cpu() {
    for kind in [Vm::Pc, Vm::Q35] {
        let (kernel, initrd) = (pattern(64 * 1024, 7), pattern(1024, 99));
        let mut fw_cfg = fw_cfg(kind, &kernel, &initrd);
        fw_cfg
            .items
            .insert(Item::NbCpus as u16, 1u16.to_le_bytes().to_vec());
        fw_cfg.items.insert(0x0F, 1u16.to_le_bytes().to_vec()); // FW_CFG_MAX_CPUS
        let mut board = board(kind, fw_cfg);
        board.cpu.others = 0;
        let mut storage = std::boxed::Box::new(Storage::new());
        boot(&mut board, &mut storage).expect("the boot succeeds");
        assert!(
            board.cpu.msrs.iter().any(|&(msr, _)| msr == 0x2FF),
            "MTRRdefType written: {:x?}",
            board.cpu.msrs
        );
        assert!(!board.cpu.started, "no other CPU to wake");
        assert!(
            !board.cpu.lapic.iter().any(|&(reg, _)| reg == 0x300),
            "no INIT or start-up IPI: {:x?}",
            board.cpu.lapic
        );
        let fseg = board.ram.read(F_SEGMENT.start, F_SEGMENT.len() as usize);
        assert!(fseg[..4096].iter().all(|&b| b == 0), "no trampoline");
        assert_eq!(mp_processors(&fseg), [(0, 0b11)]);
    }
}

/// More possible CPUs than SeaBIOS's 600 bytes describe: no MP table, and
/// nothing of it (it is built in the segment) left there.
#[test]
fn end_to_end_with_too_many_cpus_for_an_mp_table() {
    let (kernel, initrd) = (pattern(64 * 1024, 7), pattern(1024, 99));
    let mut fw_cfg = fw_cfg(Vm::Pc, &kernel, &initrd);
    fw_cfg.items.insert(0x0F, 64u16.to_le_bytes().to_vec()); // FW_CFG_MAX_CPUS
    let mut board = board(Vm::Pc, fw_cfg);
    let mut storage = std::boxed::Box::new(Storage::new());
    boot(&mut board, &mut storage).expect("the boot succeeds");
    let fseg = board
        .ram
        .read(F_SEGMENT.start + 4096, F_SEGMENT.len() as usize - 4096);
    assert!(!fseg.windows(4).any(|w| w == b"_MP_" || w == b"PCMP"));
    assert_eq!(
        board.ram.read(MP_POINTER, 16),
        [0; 16],
        "no floating pointer"
    );
    // the processor entries' CPUID signature (family 6 model 6)
    assert!(!fseg.windows(4).any(|w| w == [0x63, 0x06, 0, 0]));
}

/// A reboot finds the previous boot's tables in the BIOS segment (the RAM
/// PAM makes of it keeps them): the boot clears the segment, with DMA by a
/// fw_cfg read of an item it does not have (QEMU fills the destination with
/// zeros), without DMA by the CPU. Nothing of the old contents is left.
#[test]
fn end_to_end_the_bios_segment_is_cleared_with_and_without_dma() {
    for dma in [true, false] {
        let (kernel, initrd) = (pattern(64 * 1024, 7), pattern(1024, 99));
        let mut fw_cfg = fw_cfg(Vm::Pc, &kernel, &initrd);
        fw_cfg.dma = dma;
        let id: u32 = if dma { 3 } else { 1 };
        fw_cfg
            .items
            .insert(Item::Id as u16, id.to_le_bytes().to_vec());
        let mut board = board(Vm::Pc, fw_cfg);
        let stale = F_SEGMENT.len() as usize;
        board.ram.bytes(F_SEGMENT.start, stale).unwrap().fill(0xA5);
        let mut storage = std::boxed::Box::new(Storage::new());
        boot(&mut board, &mut storage).expect("the boot succeeds");
        let fseg = board.ram.read(F_SEGMENT.start, stale);
        assert!(
            !fseg.windows(8).any(|w| w == [0xA5; 8]),
            "stale bytes left in the BIOS segment (dma {dma})"
        );
        assert!(fseg.chunks(16).any(|c| c.starts_with(b"PCMP")), "dma {dma}");
    }
}

/// A transfer that fails is the boot's error, whatever the boot went on to
/// make of the bytes it did not get: never a handoff, and never the error
/// those bytes led to (no kernel size reads as no kernel, no setup header as
/// no bzImage, no ACPI tables as checksums over stale memory).
#[test]
fn end_to_end_a_failed_transfer_is_the_boot_s_error() {
    let (kernel, initrd) = (pattern(64 * 1024, 7), pattern(1024, 99));
    for kind in [Vm::Pc, Vm::Q35, Vm::Microvm] {
        let files = fw_cfg(kind, &kernel, &initrd).files;
        let file = |name: &str| files.iter().find(|f| f.0 == name).map(|f| f.1);
        let mut items = std::vec![
            Item::KernelSize as u16,
            Item::SetupData as u16,
            Item::CmdlineSize as u16,
            Item::KernelData as u16,
            Item::InitrdData as u16,
            Item::CmdlineData as u16,
            file("etc/e820").unwrap(),
        ];
        // (the model's microvm has no ACPI)
        items.extend(file("etc/table-loader"));
        items.extend(file("etc/acpi/tables"));
        assert_eq!(items.len(), if kind == Vm::Microvm { 7 } else { 9 });
        for item in items {
            let mut fw_cfg = fw_cfg(kind, &kernel, &initrd);
            fw_cfg.fail_item = Some(item);
            let mut board = board(kind, fw_cfg);
            let mut storage = std::boxed::Box::new(Storage::new());
            assert_eq!(
                boot(&mut board, &mut storage).map(|h| h.kind),
                Err(Error::FwCfgDma { selector: item }),
                "{kind:?}, item {item:#x}"
            );
        }
    }
}

#[test]
fn end_to_end_without_a_kernel_stops_with_its_status() {
    let mut fw_cfg = fw_cfg(Vm::Q35, &[], &[]);
    fw_cfg
        .items
        .insert(Item::KernelSize as u16, 0u32.to_le_bytes().to_vec());
    let mut board = board(Vm::Q35, fw_cfg);
    let mut storage = std::boxed::Box::new(Storage::new());
    assert_eq!(boot(&mut board, &mut storage), Err(Error::NoKernel));
    // the kernel is looked at before any hardware is set up for it
    assert_eq!(board.steps, [Step::FwCfg, Step::MemoryMap]);
    assert!(board.cpu.msrs.is_empty());
}

/// The e820-style map a kernel is handed (from a start info or multiboot
/// information), checked as on the bzImage path: sorted, disjoint, no RAM in
/// the legacy hole, the ROM and the BIOS segment reserved, `kernel` in RAM.
fn check_map(kind: Vm, map: &[(Range, u32)], kernel: Range) {
    for pair in map.windows(2) {
        assert!(pair[0].0.end <= pair[1].0.start, "{kind:?}: {map:x?}");
    }
    assert!(
        !map.iter()
            .any(|&(r, t)| t == e820_type::RAM && r.overlaps(&mem::LEGACY_HOLE)),
        "{kind:?}: {map:x?}"
    );
    assert!(
        covered_by(map, ROM, e820_type::RESERVED),
        "{kind:?}: {map:x?}"
    );
    assert!(covered_by(map, mem::BIOS_AREA, e820_type::RESERVED));
    if kind == Vm::Microvm {
        assert!(
            covered_by(map, mem::MICROVM_LEGACY, e820_type::RESERVED),
            "{kind:?}: {map:x?}"
        );
    }
    assert!(
        covered_by(map, kernel, e820_type::RAM),
        "{kind:?}: {map:x?}"
    );
}

#[test]
fn end_to_end_pvh_on_every_machine() {
    for kind in [Vm::Pc, Vm::Q35, Vm::Microvm] {
        let initrd = pattern(100 * 1024, 5);
        let mut board = board(kind, fw_cfg_pvh(kind, &initrd));
        // QEMU loaded the segments itself
        let segments = pattern(PVH_SIZE as usize, 77);
        board
            .ram
            .bytes(PVH_LOAD, segments.len())
            .unwrap()
            .copy_from_slice(&segments);
        let mut storage = std::boxed::Box::new(Storage::new());
        let handoff = boot(&mut board, &mut storage).expect("the boot succeeds");
        assert_eq!(board.steps, Step::BOOT, "{kind:?}");
        assert_eq!(handoff.kind, Kind::Pvh);
        assert_eq!(handoff.entry, PVH_ENTRY as u64);
        let info = handoff.boot_info;
        let word = |at: u64| board.ram.u32_at(at);
        let quad = |at: u64| board.ram.u32_at(at) as u64 | (board.ram.u32_at(at + 4) as u64) << 32;
        assert_eq!(word(info), crate::pvh::START_INFO_MAGIC);
        assert_eq!(word(info + 4), 1, "version 1, with a memory map");
        // the initrd as the one module, the command line, the RSDP
        assert_eq!(word(info + 0x0C), 1);
        let module = quad(info + 0x10);
        let (paddr, size) = (quad(module), quad(module + 8));
        assert_eq!(size as usize, initrd.len());
        assert!(board.ram.read(paddr, initrd.len()) == initrd, "{kind:?}");
        assert!(
            !Range::new(paddr, paddr + size).overlaps(&Range::new(PVH_LOAD, PVH_LOAD + PVH_SIZE))
        );
        assert_eq!(board.ram.read(quad(info + 0x18), CMDLINE.len()), CMDLINE);
        let rsdp = quad(info + 0x20);
        assert_eq!(rsdp != 0, kind != Vm::Microvm, "{kind:?}");
        if rsdp != 0 {
            assert_eq!(board.ram.read(rsdp, 8), b"RSD PTR ");
        }
        // the segments untouched, the memory map
        assert!(
            board.ram.read(PVH_LOAD, segments.len()) == segments,
            "{kind:?}"
        );
        let (table, entries) = (quad(info + 0x28), word(info + 0x30) as u64);
        let map: Vec<(Range, u32)> = (0..entries)
            .map(|i| {
                let at = table + i * 24;
                (Range::new(quad(at), quad(at) + quad(at + 8)), word(at + 16))
            })
            .collect();
        check_map(kind, &map, Range::new(PVH_LOAD, PVH_LOAD + PVH_SIZE));
        assert!(covered_by(
            &map,
            Range::new(paddr, paddr + size),
            e820_type::RAM
        ));
    }
}

#[test]
fn end_to_end_multiboot_on_every_machine() {
    for kind in [Vm::Pc, Vm::Q35, Vm::Microvm] {
        let mut image = pattern(64 * 1024, 3);
        let mut board = board(kind, fw_cfg_multiboot(kind, &mut image));
        let mut storage = std::boxed::Box::new(Storage::new());
        let handoff = boot(&mut board, &mut storage).expect("the boot succeeds");
        assert_eq!(board.steps, Step::BOOT, "{kind:?}");
        assert_eq!(handoff.kind, Kind::Multiboot);
        assert_eq!(handoff.entry, MB_ENTRY as u64);
        assert_eq!(handoff.boot_info, MB_INFO);
        assert!(board.ram.read(MB_LOAD, image.len()) == image, "{kind:?}");
        // what QEMU leaves to the firmware: the memory fields and the map
        let word = |at: u64| board.ram.u32_at(MB_INFO + at);
        assert_eq!(word(0) & 0x41, 0x41, "MEMORY and MEM_MAP flags");
        assert_eq!(word(4), 639, "mem_lower: KiB below the EBDA or 640 KiB");
        assert!(
            word(8) as u64 >= (RAM - 2 * MIB) / 1024 - 16 * 1024,
            "mem_upper {}",
            word(8)
        );
        let (length, at) = (word(0x2C) as u64, word(0x30) as u64);
        let map: Vec<(Range, u32)> = (0..length / 24)
            .map(|i| {
                let e = at + i * 24;
                let addr = board.ram.u32_at(e + 4) as u64 | (board.ram.u32_at(e + 8) as u64) << 32;
                let len = board.ram.u32_at(e + 12) as u64 | (board.ram.u32_at(e + 16) as u64) << 32;
                assert_eq!(board.ram.u32_at(e), 20, "each entry's size field");
                (Range::new(addr, addr + len), board.ram.u32_at(e + 20))
            })
            .collect();
        assert!(!map.is_empty());
        check_map(
            kind,
            &map,
            Range::new(MB_LOAD, MB_LOAD + image.len() as u64),
        );
    }
}

/// The wait for the other CPUs: done at once with one CPU, without reading
/// the clock (the timeline's stamps are then its only reads); done once they
/// have checked in; given up after its time-out when they never do.
#[test]
fn the_wait_for_the_other_cpus_reads_the_clock_only_while_it_waits() {
    let mut cpu = FakeCpu::default();
    assert!(cpus::Cpus { count: 1 }.wait(&mut cpu));
    assert_eq!(cpu.ticks, 0, "one CPU: the clock is not read");

    let mut cpu = FakeCpu {
        others: 3,
        started: true,
        ..FakeCpu::default()
    };
    assert!(cpus::Cpus { count: 4 }.wait(&mut cpu));
    assert_eq!(cpu.ticks, 0, "all checked in: the clock is not read");

    let mut cpu = FakeCpu {
        others: 3,
        ..FakeCpu::default()
    };
    assert!(!cpus::Cpus { count: 4 }.wait(&mut cpu), "never checked in");
    assert!(cpu.ticks > cpus::WAIT_TICKS, "given up after the time-out");
    assert!(cpu.ticks <= cpus::WAIT_TICKS + 2000, "and not much later");
}
