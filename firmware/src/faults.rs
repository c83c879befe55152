//! Fault injection on the host: the fake fw_cfg device fails transfers, files
//! are truncated, missing or oversized, the table loader points outside its
//! file, the initrd is larger than the RAM below its limit. Each fault must give
//! its documented error: the one line ferrite prints and the status it writes
//! to the debug-exit port (README, "Markers and error statuses").

use std::string::ToString;
use std::vec::Vec;

use crate::acpi::{self, LoaderEnv, LoaderError, Zone};
use crate::bootparams::e820_type::{RAM, RESERVED};
use crate::e820::{E820Error, MemoryMap};
use crate::error::Error;
use crate::fwcfg::fake::FakeDevice;
use crate::fwcfg::{FwCfg, Item};
use crate::linux::{self, Entry, KernelInfo};
use crate::mem::Range;

const MIB: u64 = 1 << 20;

fn e820(entries: &[(u64, u64, u32)]) -> Vec<u8> {
    let mut v = Vec::new();
    for &(a, s, t) in entries {
        v.extend_from_slice(&a.to_le_bytes());
        v.extend_from_slice(&s.to_le_bytes());
        v.extend_from_slice(&t.to_le_bytes());
    }
    v
}

fn machine(dma: bool, e820_file: Option<&[u8]>) -> FakeDevice {
    let mut d = FakeDevice::new(dma);
    if let Some(bytes) = e820_file {
        d.add_file("etc/e820", bytes);
    }
    d.add_file("opt/ferrite/log-level", b"debug");
    d
}

fn read_map(dev: &mut FakeDevice) -> Result<MemoryMap, Error> {
    let mut fw = FwCfg::probe(dev)?;
    let mut map = MemoryMap::new();
    map.read_from(&mut fw)?;
    Ok(map)
}

/// The status a fault ends with, checked against the documented table, and
/// its line saying what is wrong.
fn assert_fault(e: Error, status: u8, line: &str) {
    assert_eq!(e.status(), status, "{e:?}");
    let text = e.to_string();
    assert!(text.contains(line), "{text:?} does not say {line:?}");
}

#[test]
fn a_good_map_is_read_whole() {
    let map = read_map(&mut machine(true, Some(&e820(&[(0, 512 * MIB, RAM)])))).unwrap();
    assert_eq!(map.ram_bytes(), 512 * MIB);
}

#[test]
fn dma_error_bit_on_a_file_is_a_fw_cfg_failure() {
    let mut dev = machine(true, Some(&e820(&[(0, 512 * MIB, RAM)])));
    dev.fail_item = Some(0x20); // etc/e820, the first file
    let e = read_map(&mut dev).err().unwrap();
    assert_eq!(e, Error::FwCfgDma { selector: 0x20 });
    assert_fault(e, 0x21, "fw_cfg DMA transfer of item 0x0020 failed");
}

#[test]
fn dma_error_bit_on_the_directory_is_a_fw_cfg_failure() {
    let mut dev = machine(true, None);
    dev.fail_item = Some(Item::FileDir as u16);
    let e = FwCfg::probe(&mut dev).err().unwrap();
    assert_fault(e, 0x21, "fw_cfg DMA transfer of item 0x0019 failed");
}

#[test]
fn missing_e820_is_reported_by_name() {
    let e = read_map(&mut machine(true, None)).err().unwrap();
    assert_fault(e, 0x21, "fw_cfg has no file \"etc/e820\"");
}

#[test]
fn truncated_e820_is_a_malformed_map() {
    let mut bytes = e820(&[(0, 512 * MIB, RAM), (0xFEFF_C000, 0x4000, RESERVED)]);
    bytes.truncate(bytes.len() - 3);
    for dma in [true, false] {
        let e = read_map(&mut machine(dma, Some(&bytes))).err().unwrap();
        assert_eq!(e, Error::MemoryMap(E820Error::BadLength(37)));
        assert_fault(e, 0x28, "bad memory map from QEMU");
    }
}

/// `read_e820` used to refuse more than 128 entries, and the fw_cfg
/// directory was cut at 96 files: a VM with many memory ranges and files now
/// boots. boot()'s first two steps (`FwCfg::probe`, `MemoryMap::read_from`)
/// take a 300-entry map and a 500-file directory whole, with and without DMA.
#[test]
fn a_300_entry_e820_and_a_500_file_directory_are_taken_whole() {
    use crate::bootparams::{E820Entry, e820_type::NVS};
    let entries: Vec<_> = (0..300u64)
        .map(|i| (i * 2 * MIB, MIB, if i % 2 == 0 { RAM } else { NVS }))
        .collect();
    for dma in [true, false] {
        let mut dev = FakeDevice::new(dma);
        for i in 0..250 {
            dev.add_file(&std::format!("opt/x/{i}"), b"x");
        }
        dev.add_file("etc/e820", &e820(&entries));
        for i in 250..499 {
            dev.add_file(&std::format!("opt/x/{i}"), b"x");
        }
        let mut fw = FwCfg::probe(&mut dev).unwrap();
        assert_eq!(fw.file_count(), 500);
        assert!(fw.find(b"opt/x/0").is_some() && fw.find(b"opt/x/498").is_some());
        let mut map = MemoryMap::new();
        map.read_from(&mut fw).unwrap();
        assert_eq!(map.regions().len(), 300);
        let got: Vec<_> = map
            .regions()
            .iter()
            .map(|r| (r.range.start, r.range.len(), r.typ))
            .collect();
        assert_eq!(got, entries);
        // 128 for the zero page, 172 for SETUP_E820_EXT
        let mut table = [E820Entry::default(); 128];
        assert_eq!(map.write_zero_page(&mut table), 128);
        assert_eq!(map.extended().len(), 172);
    }
}

/// An `etc/e820` larger than the heap can hold: the heap's error, not a shorter map.
#[test]
fn e820_beyond_the_heap_is_an_error_not_a_shorter_map() {
    let n = crate::heap::HEAP_SIZE / 20 + 1;
    let entries: Vec<_> = (0..n as u64)
        .map(|i| (i * 2 * MIB, MIB, if i == 0 { RAM } else { RESERVED }))
        .collect();
    let e = read_map(&mut machine(true, Some(&e820(&entries))))
        .err()
        .unwrap();
    assert_fault(e, 0x32, "more than ferrite's 256 KiB heap holds");
    // a file of 4 GiB - 1 (a huge count): refused before any transfer
    let mut dev = machine(true, Some(&[0u8; 20]));
    let dir = dev.items.get_mut(&(Item::FileDir as u16)).unwrap();
    dir[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let e = read_map(&mut dev).err().unwrap();
    assert_fault(e, 0x32, "QEMU's e820 map needs 4294967295 bytes");
}

/// `phys::read_file` used to cut a file to its buffer.
#[test]
fn a_file_larger_than_its_buffer_is_an_error_unless_a_prefix_is_asked_for() {
    let mut dev = machine(true, None);
    dev.add_file("opt/ferrite/timeline", b"1234567890");
    for dma in [true, false] {
        dev.dma = dma;
        let mut fw = FwCfg::probe(&mut dev).unwrap();
        let f = fw.find(b"opt/ferrite/timeline").unwrap();
        let mut buf = [core::mem::MaybeUninit::uninit(); 8];
        let e = fw
            .read_file("opt/ferrite/timeline", f, &mut buf)
            .unwrap_err();
        assert_eq!(
            e,
            Error::FileTooLarge {
                name: "opt/ferrite/timeline",
                size: 10,
                max: 8
            }
        );
        assert_fault(e, 0x21, "is 10 bytes, more than the 8 ferrite reads");
        assert_eq!(fw.read_prefix(f, &mut buf).unwrap(), b"12345678");
        let mut big = [core::mem::MaybeUninit::uninit(); 16];
        assert_eq!(
            fw.read_file("opt/ferrite/timeline", f, &mut big).unwrap(),
            b"1234567890"
        );
    }
}

/// A table-loader whose commands point outside their file: each is refused
/// before any byte outside the file is touched.
#[test]
fn table_loader_pointing_outside_its_file_is_refused() {
    struct Env {
        mem: Vec<u8>,
    }
    impl LoaderEnv for Env {
        type File = ();
        fn file(&mut self, name: &crate::acpi::Name) -> Option<((), u32)> {
            (name.bytes() == b"etc/acpi/tables").then_some(((), 64))
        }
        fn allocate(&mut self, size: u32, _: u32, _: Zone) -> Option<u64> {
            self.mem = vec![0; size as usize];
            Some(0x7000_0000)
        }
        fn read_file(&mut self, _: (), _: u64, _: u32) -> Result<(), LoaderError> {
            Ok(())
        }
        fn memory(&mut self, addr: u64, len: u32) -> &mut [u8] {
            assert_eq!((addr, len as usize), (0x7000_0000, self.mem.len()));
            &mut self.mem
        }
        fn write_file(&mut self, _: (), _: u32, _: &[u8]) -> Result<(), LoaderError> {
            Err(LoaderError::Transfer)
        }
    }
    let cmd = |kind: u32, fields: &[(usize, &[u8])]| {
        let mut c = [0u8; 128];
        c[..4].copy_from_slice(&kind.to_le_bytes());
        for (at, b) in fields {
            c[*at..at + b.len()].copy_from_slice(b);
        }
        c
    };
    let name = b"etc/acpi/tables";
    let alloc = cmd(1, &[(4, name), (60, &16u32.to_le_bytes()), (64, &[1])]);
    let bad = [
        // ADD_POINTER at offset 62 of a 64-byte file, 4 bytes wide
        cmd(
            2,
            &[
                (4, name),
                (60, name),
                (116, &62u32.to_le_bytes()),
                (120, &[4]),
            ],
        ),
        // ADD_CHECKSUM over [60, 60 + 8)
        cmd(
            3,
            &[
                (4, name),
                (60, &0u32.to_le_bytes()),
                (64, &60u32.to_le_bytes()),
                (68, &8u32.to_le_bytes()),
            ],
        ),
        // ADD_CHECKSUM with its checksum byte past the end
        cmd(
            3,
            &[
                (4, name),
                (60, &64u32.to_le_bytes()),
                (68, &1u32.to_le_bytes()),
            ],
        ),
        // ADD_CHECKSUM whose start + length wraps around 2^32
        cmd(
            3,
            &[
                (4, name),
                (64, &u32::MAX.to_le_bytes()),
                (68, &2u32.to_le_bytes()),
            ],
        ),
    ];
    for c in bad {
        let script = [alloc, c].concat();
        let e = acpi::run(&script, &mut Env { mem: Vec::new() }).unwrap_err();
        assert_eq!(e, LoaderError::OutOfBounds);
        assert_fault(Error::Acpi(e), 0x29, "points outside its file");
    }
}

fn bzimage_info() -> KernelInfo {
    KernelInfo {
        version: 0x020F,
        entry: Entry::Bits64,
        relocatable: true,
        pref_address: 16 * MIB,
        alignment: 2 << 20,
        init_size: 32 << 20,
        cmdline_max: 2047,
        initrd_addr_max: 0x7FFF_FFFF,
        above_4g: false,
    }
}

#[test]
fn initrd_larger_than_the_ram_below_its_limit_is_refused() {
    let map = MemoryMap::from_qemu(&e820(&[(0, 128 * MIB, RAM)])).unwrap();
    let info = bzimage_info();
    let kernel = linux::place_kernel(&info, 10 * MIB, &map, &[]).unwrap();
    // the kernel takes 16-48 MiB: 80 MiB are left above it and 15 below, not 101
    let e = linux::place_initrd(&info, 101 * MIB, &map, &[kernel]).unwrap_err();
    assert_fault(e, 0x26, "does not fit in free RAM below 0x80000000");
    assert!(e.to_string().contains("give the guest more memory (-m)"));
    // RAM above the limit does not help a kernel that cannot use it
    let map = MemoryMap::from_qemu(&e820(&[(0, 128 * MIB, RAM), (1 << 32, 1 << 30, RAM)])).unwrap();
    let e = linux::place_initrd(&info, 200 * MIB, &map, &[kernel]).unwrap_err();
    assert_eq!(
        e,
        Error::InitrdDoesNotFit {
            size: 200 * MIB,
            limit: 0x8000_0000
        }
    );
    // it does help one that can, and the initrd lands above 4 GiB
    let info = KernelInfo {
        above_4g: true,
        ..info
    };
    let r = linux::place_initrd(&info, 200 * MIB, &map, &[kernel])
        .unwrap()
        .unwrap();
    assert!(r.start >= 1 << 32 && map.is_ram(r));
    assert!(!r.overlaps(&Range::new(kernel.start, kernel.end)));
}
