//! Multiboot v1 (unikernels, hobby and research kernels): QEMU reads the
//! kernel, its modules and their command lines into one buffer and hands the
//! firmware that buffer (`KERNEL_DATA`, to go at `KERNEL_ADDR`), the entry
//! (`KERNEL_ENTRY`) and a multiboot information block (`INITRD_DATA`, to go at
//! `INITRD_ADDR`) whose memory fields are left to the firmware: `mem_lower`,
//! `mem_upper` and the memory map (QEMU's `hw/i386/multiboot.c`; its option ROM
//! fills them from int 15h).
//!
//! This module checks the kernel's multiboot header for what ferrite cannot
//! honour and fills in the memory fields. Layouts: the Multiboot 0.6.96
//! specification. Pure logic, tested on the host.

use core::mem::{offset_of, size_of};

use crate::bootparams::{E820_MAX_ENTRIES_ZEROPAGE, e820_type};
use crate::e820::MemoryMap;
use crate::error::Error;
use crate::mem::Range;

/// The header's magic, in the first 8 KiB of the file, 4-byte aligned.
pub const HEADER_MAGIC: u32 = 0x1BAD_B002;
/// What the kernel finds in EAX.
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;
/// Where QEMU looks for the header, and so where ferrite looks in the image.
pub const SEARCH_BYTES: usize = 8192;

/// Header flags: bits 0-15 are requirements a loader must refuse if it cannot
/// meet them.
pub mod header_flags {
    /// Modules page-aligned (QEMU does).
    pub const PAGE_ALIGN: u32 = 1 << 0;
    /// mem_* and the memory map wanted (ferrite provides them).
    pub const MEMORY_INFO: u32 = 1 << 1;
    /// A video mode wanted (ferrite sets up no display).
    pub const VIDEO_MODE: u32 = 1 << 2;
    pub const REQUIRED: u32 = 0xFFFF;
    /// The a.out kludge: load addresses in the header.
    pub const AOUT_KLUDGE: u32 = 1 << 16;
}

/// `multiboot_info.flags` bits ferrite sets on top of QEMU's.
pub mod info_flags {
    pub const MEMORY: u32 = 1 << 0;
    pub const MEM_MAP: u32 = 1 << 6;
}

/// The multiboot header (48 bytes with the video fields).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub magic: u32,         // 0x00
    pub flags: u32,         // 0x04
    pub checksum: u32,      // 0x08
    pub header_addr: u32,   // 0x0C
    pub load_addr: u32,     // 0x10
    pub load_end_addr: u32, // 0x14
    pub bss_end_addr: u32,  // 0x18
    pub entry_addr: u32,    // 0x1C
    pub mode_type: u32,     // 0x20
    pub width: u32,         // 0x24
    pub height: u32,        // 0x28
    pub depth: u32,         // 0x2C
}

/// The multiboot information block (88 bytes, up to the VBE fields).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Info {
    pub flags: u32,             // 0x00
    pub mem_lower: u32,         // 0x04
    pub mem_upper: u32,         // 0x08
    pub boot_device: u32,       // 0x0C
    pub cmdline: u32,           // 0x10
    pub mods_count: u32,        // 0x14
    pub mods_addr: u32,         // 0x18
    pub syms: [u32; 4],         // 0x1C
    pub mmap_length: u32,       // 0x2C
    pub mmap_addr: u32,         // 0x30
    pub drives_length: u32,     // 0x34
    pub drives_addr: u32,       // 0x38
    pub config_table: u32,      // 0x3C
    pub boot_loader_name: u32,  // 0x40
    pub apm_table: u32,         // 0x44
    pub vbe_control_info: u32,  // 0x48
    pub vbe_mode_info: u32,     // 0x4C
    pub vbe_mode: u16,          // 0x50
    pub vbe_interface_seg: u16, // 0x52
    pub vbe_interface_off: u16, // 0x54
    pub vbe_interface_len: u16, // 0x56
}

/// One memory-map entry; `size` (20) counts the bytes after itself.
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmapEntry {
    pub size: u32, // 0x00
    pub addr: u64, // 0x04
    pub len: u64,  // 0x0C
    pub typ: u32,  // 0x14
}

/// The memory map ferrite hands over, at a fixed place.
pub type Mmap = [MmapEntry; E820_MAX_ENTRIES_ZEROPAGE];

const _: () = {
    assert!(size_of::<Header>() == 48);
    assert!(offset_of!(Header, entry_addr) == 0x1C);
    assert!(size_of::<Info>() == 88);
    assert!(offset_of!(Info, mmap_length) == 0x2C);
    assert!(offset_of!(Info, mmap_addr) == 0x30);
    assert!(offset_of!(Info, boot_loader_name) == 0x40);
    assert!(offset_of!(Info, vbe_mode) == 0x50);
    assert!(size_of::<MmapEntry>() == 24);
    assert!(offset_of!(MmapEntry, typ) == 0x14);
};

fn word(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The multiboot header in the first bytes of the loaded image, and its offset.
pub fn find_header(image: &[u8]) -> Option<(usize, Header)> {
    let image = &image[..image.len().min(SEARCH_BYTES)];
    (0..image.len().saturating_sub(size_of::<Header>() - 1))
        .step_by(4)
        .find(|&at| {
            word(image, at) == HEADER_MAGIC
                && HEADER_MAGIC
                    .wrapping_add(word(image, at + 4))
                    .wrapping_add(word(image, at + 8))
                    == 0
        })
        .map(|at| {
            let w = |i: usize| word(image, at + 4 * i);
            let header = Header {
                magic: w(0),
                flags: w(1),
                checksum: w(2),
                header_addr: w(3),
                load_addr: w(4),
                load_end_addr: w(5),
                bss_end_addr: w(6),
                entry_addr: w(7),
                mode_type: w(8),
                width: w(9),
                height: w(10),
                depth: w(11),
            };
            (at, header)
        })
}

fn bad(what: &'static str) -> Error {
    Error::BadMultiboot(what)
}

/// Checks what QEMU hands over for a multiboot kernel: the image (`KERNEL_DATA`
/// loaded at `image`), the entry, and the header when it lies in the image's
/// first 8 KiB (`head`, `None` when it does not: an ELF kernel's header can lie
/// outside its segments).
pub fn check(head: &[u8], image: Range, entry: u32) -> Result<Option<Header>, Error> {
    let entry = entry as u64;
    if !(image.start <= entry && entry < image.end) {
        return Err(bad("the entry point lies outside the image"));
    }
    let Some((at, h)) = find_header(head) else {
        return Ok(None);
    };
    if h.flags & header_flags::VIDEO_MODE != 0 {
        return Err(bad(
            "the header asks for a video mode and ferrite sets up no display (clear flag 2)",
        ));
    }
    let known = header_flags::PAGE_ALIGN | header_flags::MEMORY_INFO;
    if h.flags & header_flags::REQUIRED & !known != 0 {
        return Err(bad(
            "the header requires features multiboot 0.6.96 does not define",
        ));
    }
    if h.flags & header_flags::AOUT_KLUDGE != 0 {
        let load = h.load_addr as u64;
        let load_end = match h.load_end_addr {
            0 => image.end,
            e => e as u64,
        };
        let end = match h.bss_end_addr {
            0 => load_end,
            e => e as u64,
        };
        let sane = load == image.start
            && h.header_addr >= h.load_addr
            && (h.header_addr - h.load_addr) as usize == at
            && load < load_end
            && load_end <= end
            && end <= image.end
            && (h.entry_addr as u64) >= load
            && (h.entry_addr as u64) < end
            && h.entry_addr as u64 == entry;
        if !sane {
            return Err(bad(
                "the header's a.out addresses (header, load, load_end, bss_end, entry) are inconsistent",
            ));
        }
    }
    Ok(Some(h))
}

/// Fills in what QEMU leaves to the firmware: `mem_lower` and `mem_upper` (KiB
/// of RAM from 0 and from 1 MiB up to the first hole) and the memory map,
/// written to `mmap` (any length) at physical address `mmap_addr`.
pub fn finish_info(
    info: &mut Info,
    memory: &MemoryMap,
    mmap: &mut [MmapEntry],
    mmap_addr: u64,
) -> Result<(), Error> {
    let regions = memory.regions();
    if regions.len() > mmap.len() {
        return Err(Error::MemoryMap(crate::e820::E820Error::TooManyEntries));
    }
    for (slot, r) in mmap.iter_mut().zip(regions) {
        *slot = MmapEntry {
            size: 20,
            addr: r.range.start,
            len: r.range.len(),
            typ: r.typ,
        };
    }
    let ram_from = |at: u64, cap: u64| {
        regions
            .iter()
            .find(|r| r.typ == e820_type::RAM && r.range.start <= at && at < r.range.end)
            .map_or(0, |r| (r.range.end.min(cap) - at) / 1024)
    };
    info.mem_lower = ram_from(0, 0xA_0000) as u32;
    info.mem_upper = ram_from(0x10_0000, 1 << 32) as u32;
    info.mmap_addr = mmap_addr as u32;
    info.mmap_length = (regions.len() * size_of::<MmapEntry>()) as u32;
    info.flags |= info_flags::MEMORY | info_flags::MEM_MAP;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootparams::e820_type::{RAM, RESERVED};
    use std::vec::Vec;

    const LOAD: u64 = 0xFF_F000;

    fn header(flags: u32, fields: [u32; 5]) -> Vec<u8> {
        let mut h = Vec::new();
        for w in [
            HEADER_MAGIC,
            flags,
            0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(flags),
        ]
        .into_iter()
        .chain(fields)
        .chain([0; 4])
        {
            h.extend_from_slice(&w.to_le_bytes());
        }
        h
    }

    fn image_with(header: &[u8], at: usize) -> Vec<u8> {
        let mut img = std::vec![0u8; 0x4000];
        img[at..at + header.len()].copy_from_slice(header);
        img
    }

    fn image() -> Range {
        Range::new(LOAD, LOAD + 0x4000)
    }

    const KLUDGE: u32 =
        header_flags::AOUT_KLUDGE | header_flags::PAGE_ALIGN | header_flags::MEMORY_INFO;
    const ENTRY: u32 = LOAD as u32 + 0x1600;

    #[test]
    fn a_sane_aout_kludge_header_passes() {
        let h = header(KLUDGE, [LOAD as u32, LOAD as u32, 0, 0, ENTRY]);
        let found = check(&image_with(&h, 0), image(), ENTRY).unwrap().unwrap();
        assert_eq!(found.entry_addr, ENTRY);
        // the header further in, its address saying so
        let h = header(
            KLUDGE,
            [
                LOAD as u32 + 0x40,
                LOAD as u32,
                LOAD as u32 + 0x3000,
                LOAD as u32 + 0x4000,
                ENTRY,
            ],
        );
        assert!(
            check(&image_with(&h, 0x40), image(), ENTRY)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn no_header_in_the_image_is_not_an_error_but_the_entry_is_checked() {
        let img = std::vec![0u8; 0x4000];
        assert_eq!(check(&img, image(), ENTRY), Ok(None));
        assert!(check(&img, image(), LOAD as u32 - 1).is_err());
        assert!(check(&img, image(), (LOAD + 0x4000) as u32).is_err());
        // a bad checksum is no header
        let mut h = header(header_flags::VIDEO_MODE, [0; 5]);
        h[8] ^= 1;
        assert_eq!(check(&image_with(&h, 0), image(), ENTRY), Ok(None));
    }

    #[test]
    fn video_mode_and_unknown_requirements_are_refused() {
        let h = header(header_flags::VIDEO_MODE, [0; 5]);
        let r = check(&image_with(&h, 8), image(), ENTRY);
        assert!(
            matches!(r, Err(Error::BadMultiboot(m)) if m.contains("video mode")),
            "{r:?}"
        );
        let h = header(1 << 9, [0; 5]);
        assert!(matches!(
            check(&image_with(&h, 8), image(), ENTRY),
            Err(Error::BadMultiboot(_))
        ));
        // optional bits (16-31) other than the kludge are fine
        let h = header(1 << 20, [0; 5]);
        assert!(check(&image_with(&h, 8), image(), ENTRY).unwrap().is_some());
    }

    #[test]
    fn nonsensical_aout_kludge_values_are_refused() {
        let l = LOAD as u32;
        for fields in [
            [l, l, 0, 0, l + 0x5000],              // entry beyond the image
            [l, l, 0, 0, ENTRY + 4],               // entry differs from QEMU's
            [l + 8, l, 0, 0, ENTRY],               // header_addr vs its offset
            [l - 8, l, 0, 0, ENTRY],               // header below load
            [l, l + 0x1000, 0, 0, ENTRY],          // load_addr is not where QEMU put it
            [l, l, l, 0, ENTRY],                   // empty load
            [l, l, l + 0x3000, l + 0x2000, ENTRY], // bss ends before load_end
            [l, l, 0, l + 0x8000, ENTRY],          // bss beyond the image
        ] {
            let h = header(KLUDGE, fields);
            let r = check(&image_with(&h, 0), image(), ENTRY);
            assert!(
                matches!(r, Err(Error::BadMultiboot(m)) if m.contains("a.out")),
                "{fields:x?}: {r:?}"
            );
        }
    }

    #[test]
    fn a_header_cut_by_the_end_of_the_image_is_not_read() {
        let h = header(0, [0; 5]);
        let mut img = std::vec![0u8; 0x20];
        img[..0x20].copy_from_slice(&h[..0x20]);
        assert_eq!(find_header(&img), None);
        assert_eq!(find_header(&[]), None);
    }

    #[test]
    fn memory_fields_from_the_final_map() {
        let mut map = MemoryMap::new();
        map.insert(Range::new(0, 0x9_FC00), RAM).unwrap();
        map.insert(Range::new(0x9_FC00, 0xA_0000), RESERVED)
            .unwrap();
        map.insert(Range::new(0xF_0000, 0x10_0000), RESERVED)
            .unwrap();
        map.insert(Range::new(0x10_0000, 0x7F0_0000), RAM).unwrap();
        map.insert(Range::new(0x7F0_0000, 0x800_0000), RESERVED)
            .unwrap();
        let mut info = Info {
            flags: 0x24F,
            ..Info::default()
        };
        let mut mmap = [MmapEntry::default(); E820_MAX_ENTRIES_ZEROPAGE];
        finish_info(&mut info, &map, &mut mmap, 0x2000).unwrap();
        assert_eq!(info.mem_lower, 639);
        assert_eq!(info.mem_upper, (0x7F0_0000 - 0x10_0000) / 1024);
        assert_eq!((info.mmap_addr, info.mmap_length), (0x2000, 5 * 24));
        assert_eq!(info.flags, 0x24F);
        let e = mmap[3];
        assert_eq!(
            (e.size, e.addr, e.len, e.typ),
            (20, 0x10_0000, 0x7E0_0000, RAM)
        );
        // no RAM at 0 or 1 MiB: zero, not garbage
        let mut map = MemoryMap::new();
        map.insert(Range::new(0x20_0000, 0x800_0000), RAM).unwrap();
        finish_info(&mut info, &map, &mut mmap, 0x2000).unwrap();
        assert_eq!((info.mem_lower, info.mem_upper), (0, 0));
    }

    #[test]
    fn a_map_of_300_entries_is_written_whole_where_it_fits() {
        let map = crate::test_support::many_ranges(300);
        let mut info = Info::default();
        let mut mmap = std::vec![MmapEntry::default(); 300];
        finish_info(&mut info, &map, &mut mmap, 0x80_0000).unwrap();
        assert_eq!((info.mmap_addr, info.mmap_length), (0x80_0000, 300 * 24));
        let last = mmap[299];
        assert_eq!(
            (last.addr, last.len, last.typ),
            (299 << 21, 1 << 20, RESERVED)
        );
        let mut short = [MmapEntry::default(); E820_MAX_ENTRIES_ZEROPAGE];
        assert_eq!(
            finish_info(&mut info, &map, &mut short, 0x2000),
            Err(Error::MemoryMap(crate::e820::E820Error::TooManyEntries))
        );
    }
}
