//! Unit tests of the PVH boot path: the entry note found in 64- and 32-bit
//! ELF heads (and hostile ones refused), where the segments may lie, and the
//! start block with its memory map.

use super::*;
use crate::bootparams::e820_type::{RAM, RESERVED};
use crate::test_support::many_ranges;
use std::vec::Vec;

const LOAD: u64 = 0x100_0000;
const ENTRY: u64 = 0x100_0400;

/// RAM from LOAD on, as a byte vector (index = address - LOAD).
struct Ram(Vec<u8>);
impl Memory for Ram {
    fn bytes(&mut self, range: Range) -> Option<&[u8]> {
        let at = (range.start - LOAD) as usize;
        self.0.get(at..at + range.len() as usize)
    }
}

fn note(name: &[u8], typ: u32, desc: &[u8]) -> Vec<u8> {
    let mut n = Vec::new();
    n.extend_from_slice(&(name.len() as u32).to_le_bytes());
    n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    n.extend_from_slice(&typ.to_le_bytes());
    n.extend_from_slice(name);
    n.resize(n.len().next_multiple_of(4), 0);
    n.extend_from_slice(desc);
    n.resize(n.len().next_multiple_of(4), 0);
    n
}

/// The first 0x100 bytes of a little-endian ELF file of `class`: its
/// identification, and zeros for the rest of the header to fill in.
fn elf_head(class: u8) -> Vec<u8> {
    let mut h = std::vec![0u8; 0x100];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = class;
    h[5] = ELFDATA2LSB;
    h
}

/// A 64-bit ELF head: one PT_LOAD of `size` at LOAD, one PT_NOTE holding
/// `notes` at file offset 0x100 (paddr `note_paddr`).
fn elf64(notes: &[u8], note_paddr: u64, size: u64) -> Vec<u8> {
    let mut h = elf_head(ELFCLASS64);
    h[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
    h[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    h[0x38..0x3A].copy_from_slice(&2u16.to_le_bytes());
    let ph = |h: &mut Vec<u8>, at: usize, typ: u32, off: u64, paddr: u64, len: u64| {
        h[at..at + 4].copy_from_slice(&typ.to_le_bytes());
        h[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
        h[at + 0x18..at + 0x20].copy_from_slice(&paddr.to_le_bytes());
        h[at + 0x20..at + 0x28].copy_from_slice(&len.to_le_bytes());
        h[at + 0x28..at + 0x30].copy_from_slice(&len.to_le_bytes());
    };
    ph(&mut h, 64, PT_LOAD, 0x1000, LOAD, size);
    ph(&mut h, 120, PT_NOTE, 0x100, note_paddr, notes.len() as u64);
    h.extend_from_slice(notes);
    h
}

fn loaded() -> Range {
    Range::new(LOAD, LOAD + 0x10000)
}

fn ram() -> Ram {
    Ram(std::vec![0; 0x10000])
}

/// `find_entry` given QEMU's entry: the right one, and wrong ones (none, a
/// loaded address that is not the entry, an address outside); the answers
/// must agree, as QEMU's only spares a walk of the program headers.
fn entry_of(head: &[u8], mem: &mut Ram) -> Result<u32, Error> {
    let r = find_entry(head, loaded(), ENTRY as u32, mem);
    for qemu in [0, LOAD as u32, u32::MAX] {
        let other = find_entry(head, loaded(), qemu, mem);
        assert_eq!(other, r, "QEMU's entry {qemu:#x}");
    }
    r
}

#[test]
fn entry_from_a_note_in_the_head_4_or_8_bytes() {
    let n = note(b"Xen\0", 18, &(ENTRY as u32).to_le_bytes());
    assert_eq!(
        entry_of(&elf64(&n, 0, 0x10000), &mut ram()),
        Ok(ENTRY as u32)
    );
    let mut notes = note(b"GNU\0", 3, &[1, 2, 3, 4, 5]);
    notes.extend(note(b"Xen\0", 1, b"xen-3.0\0"));
    notes.extend(note(b"Xen\0", 18, &ENTRY.to_le_bytes()));
    assert_eq!(
        entry_of(&elf64(&notes, 0, 0x10000), &mut ram()),
        Ok(ENTRY as u32)
    );
}

#[test]
fn entry_from_a_note_in_loaded_memory() {
    let n = note(b"Xen\0", 18, &ENTRY.to_le_bytes());
    let mut head = elf64(&n, LOAD + 0x800, 0x10000);
    // the note segment's file offset lies beyond the head
    head[120 + 8..120 + 16].copy_from_slice(&0x10_0000u64.to_le_bytes());
    let mut mem = ram();
    mem.0[0x800..0x800 + n.len()].copy_from_slice(&n);
    assert_eq!(entry_of(&head, &mut mem), Ok(ENTRY as u32));
    // ... and outside the loaded segments, it is not looked for
    head[120 + 0x18..120 + 0x20].copy_from_slice(&(LOAD + 0x20000).to_le_bytes());
    assert!(matches!(
        entry_of(&head, &mut mem),
        Err(Error::NoPvhEntry(_))
    ));
}

#[test]
fn no_note_or_wrong_name_or_type() {
    for n in [
        Vec::new(),
        note(b"Xen\0", 17, &ENTRY.to_le_bytes()),
        note(b"Xe\0", 18, &ENTRY.to_le_bytes()),
        note(b"GNU\0", 18, &ENTRY.to_le_bytes()),
    ] {
        let r = entry_of(&elf64(&n, 0, 0x10000), &mut ram());
        assert!(
            matches!(r, Err(Error::NoPvhEntry(m)) if m.contains("CONFIG_PVH")),
            "{r:?}"
        );
    }
}

#[test]
fn entry_above_4g_or_outside_the_segments() {
    for entry in [ENTRY | 1 << 32, u64::MAX, LOAD - 1, LOAD + 0x10000] {
        let n = note(b"Xen\0", 18, &entry.to_le_bytes());
        assert_eq!(
            entry_of(&elf64(&n, 0, 0x10000), &mut ram()),
            Err(Error::PvhEntryOutside { entry })
        );
    }
}

#[test]
fn hostile_notes_and_headers_are_refused() {
    let good = note(b"Xen\0", 18, &ENTRY.to_le_bytes());
    // descriptor of an odd size
    let n = note(b"Xen\0", 18, &[0; 6]);
    assert!(entry_of(&elf64(&n, 0, 0x10000), &mut ram()).is_err());
    // namesz / descsz running past the segment, or wrapping
    for (field, value) in [(0, 0xFFFF_FFFFu32), (4, 0xFFFF_FFFD), (0, 100), (4, 100)] {
        let mut n = good.clone();
        n[field..field + 4].copy_from_slice(&value.to_le_bytes());
        let r = entry_of(&elf64(&n, 0, 0x10000), &mut ram());
        assert!(matches!(r, Err(Error::NoPvhEntry(_))), "{r:?}");
    }
    let elf = elf64(&good, 0, 0x10000);
    let mut cases: Vec<Vec<u8>> = Vec::new();
    cases.push(elf[..40].to_vec()); // cut short
    let mut e = elf.clone();
    e[5] = 2; // big-endian
    cases.push(e);
    let mut e = elf.clone();
    e[4] = 9; // unknown class
    cases.push(e);
    let mut e = elf.clone();
    e[0x36] = 55; // wrong phentsize
    cases.push(e);
    let mut e = elf.clone();
    e[0x38..0x3A].copy_from_slice(&0u16.to_le_bytes()); // no program headers
    cases.push(e);
    let mut e = elf.clone();
    e[0x38..0x3A].copy_from_slice(&0xFFFFu16.to_le_bytes()); // beyond the head
    cases.push(e);
    let mut e = elf.clone();
    e[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes()); // phoff wraps
    cases.push(e);
    let mut e = elf.clone();
    e[120 + 0x20..120 + 0x28].copy_from_slice(&u64::MAX.to_le_bytes()); // huge note
    cases.push(e);
    for (i, e) in cases.iter().enumerate() {
        let r = entry_of(e, &mut ram());
        assert!(matches!(r, Err(Error::NoPvhEntry(_))), "case {i}: {r:?}");
    }
}

#[test]
fn a_load_after_the_note_counts_and_a_second_note_is_not_read() {
    let n = note(b"Xen\0", 18, &ENTRY.to_le_bytes());
    let mut h = elf64(&n, 0, 0x10000);
    // the two program headers swapped: the note first, then the PT_LOAD
    let (load, notes) = (h[64..120].to_vec(), h[120..176].to_vec());
    h[64..120].copy_from_slice(&notes);
    h[120..176].copy_from_slice(&load);
    assert_eq!(entry_of(&h, &mut ram()), Ok(ENTRY as u32));
    // a third header, a note segment that runs past its end: once the entry
    // is found, later notes are not parsed (as before, they only could fail)
    h[0x38..0x3A].copy_from_slice(&3u16.to_le_bytes());
    let mut broken = notes.clone();
    broken[0x08..0x10].copy_from_slice(&0x138u64.to_le_bytes());
    broken[0x20..0x28].copy_from_slice(&(n.len() as u64 - 1).to_le_bytes());
    h.splice(176..176, broken.iter().copied());
    // the notes moved by 56 bytes
    h[64 + 8..64 + 16].copy_from_slice(&0x138u64.to_le_bytes());
    assert_eq!(entry_of(&h, &mut ram()), Ok(ENTRY as u32));
    // ... and when it comes first, it is parsed and refused
    h[64..120].copy_from_slice(&broken);
    h[176..232].copy_from_slice(&notes);
    h[176 + 8..176 + 16].copy_from_slice(&0x138u64.to_le_bytes());
    assert!(
        matches!(entry_of(&h, &mut ram()), Err(Error::NoPvhEntry(m)) if m.contains("runs past"))
    );
}

#[test]
fn a_32_bit_elf_works_too() {
    let n = note(b"Xen\0", 18, &(ENTRY as u32).to_le_bytes());
    let mut h = elf_head(ELFCLASS32);
    h[0x1C..0x20].copy_from_slice(&52u32.to_le_bytes());
    h[0x2A..0x2C].copy_from_slice(&32u16.to_le_bytes());
    h[0x2C..0x2E].copy_from_slice(&2u16.to_le_bytes());
    let words = |h: &mut Vec<u8>, at: usize, w: [u32; 6]| {
        for (i, v) in w.iter().enumerate() {
            h[at + 4 * i..at + 4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
    };
    // type, offset, vaddr, paddr, filesz, memsz
    words(
        &mut h,
        52,
        [PT_LOAD, 0x1000, 0, LOAD as u32, 0x10000, 0x10000],
    );
    words(
        &mut h,
        84,
        [PT_NOTE, 0x100, 0, 0, n.len() as u32, n.len() as u32],
    );
    h.extend_from_slice(&n);
    assert_eq!(entry_of(&h, &mut ram()), Ok(ENTRY as u32));
}

#[test]
fn segments_must_be_ram_clear_of_the_first_mib() {
    let mut map = MemoryMap::new();
    map.insert(Range::new(0, 0x9_FC00), RAM).unwrap();
    map.insert(Range::new(0x10_0000, 128 << 20), RAM).unwrap();
    map.insert(Range::new(0xFFFC_0000, 1 << 32), RESERVED)
        .unwrap();
    let low = Range::new(0, 0x10_0000);
    assert_eq!(
        check_segments(Range::new(LOAD, LOAD + 0x10000), &map, low),
        Ok(())
    );
    assert_eq!(
        check_segments(Range::new(0x2_0000, 0x3_0000), &map, low),
        Err(Error::SegmentsOverlapFirmware {
            start: 0x2_0000,
            end: 0x3_0000
        })
    );
    assert_eq!(
        check_segments(Range::new(0xF_F000, 0x20_0000), &map, low),
        Err(Error::SegmentsOverlapFirmware {
            start: 0xF_F000,
            end: 0x20_0000
        })
    );
    assert!(matches!(
        check_segments(Range::new(120 << 20, 130 << 20), &map, low),
        Err(Error::KernelDoesNotFit { .. })
    ));
    assert!(check_segments(Range::new(LOAD, LOAD), &map, low).is_err());
}

#[test]
fn start_block_points_at_its_own_parts() {
    let mut map = MemoryMap::new();
    map.insert(Range::new(0, 0x9_FC00), RAM).unwrap();
    map.insert(Range::new(0x10_0000, 128 << 20), RAM).unwrap();
    map.insert(Range::new(0xF_0000, 0x10_0000), RESERVED)
        .unwrap();
    let mut b = StartBlock::zeroed();
    let initrd = Range::new(100 << 20, (100 << 20) + 12345);
    b.build(0x1000, 0x2000, Some(initrd), Some(0xF_5000), &map, None)
        .unwrap();
    assert_eq!(b.info.magic, START_INFO_MAGIC);
    assert_eq!(b.info.version, 1);
    assert_eq!(b.info.nr_modules, 1);
    assert_eq!(b.info.modlist_paddr, 0x1038);
    assert_eq!(b.module.paddr, 100 << 20);
    assert_eq!(b.module.size, 12345);
    assert_eq!(b.info.cmdline_paddr, 0x2000);
    assert_eq!(b.info.rsdp_paddr, 0xF_5000);
    assert_eq!(b.info.memmap_paddr, 0x1058);
    assert_eq!(b.info.memmap_entries, 3);
    assert_eq!(
        b.memmap[1],
        MemmapEntry {
            addr: 0xF_0000,
            size: 0x1_0000,
            typ: RESERVED,
            reserved: 0
        }
    );
    // no initrd, no ACPI: no module, no RSDP
    b.build(0x1000, 0x2000, None, None, &map, None).unwrap();
    assert_eq!(
        (b.info.nr_modules, b.info.modlist_paddr, b.info.rsdp_paddr),
        (0, 0, 0)
    );
    assert_eq!(b.module, ModlistEntry::default());
}

/// 300 entries, as QEMU never lists but the heap takes: beyond the
/// block's 128 they go to the room handed in, whole; without room, or
/// with too little, the boot stops rather than cut the map.
#[test]
fn a_map_longer_than_the_block_goes_to_the_room_handed_in() {
    let map = many_ranges(300);
    assert_eq!(map.regions().len(), 300);
    let mut b = StartBlock::zeroed();
    let mut room = std::vec![MemmapEntry::default(); 310];
    b.build(
        0x1000,
        0x2000,
        None,
        None,
        &map,
        Some((&mut room, 0x80_0000)),
    )
    .unwrap();
    assert_eq!(
        (b.info.memmap_paddr, b.info.memmap_entries),
        (0x80_0000, 300)
    );
    for (e, r) in room.iter().zip(map.regions()) {
        assert_eq!(
            (e.addr, e.size, e.typ),
            (r.range.start, r.range.len(), r.typ)
        );
    }
    // a short map stays in the block even with room offered
    let short = many_ranges(5);
    b.build(
        0x1000,
        0x2000,
        None,
        None,
        &short,
        Some((&mut room, 0x80_0000)),
    )
    .unwrap();
    assert_eq!((b.info.memmap_paddr, b.info.memmap_entries), (0x1058, 5));
    let too_many = Err(Error::MemoryMap(crate::e820::E820Error::TooManyEntries));
    assert_eq!(b.build(0x1000, 0x2000, None, None, &map, None), too_many);
    let mut small = std::vec![MemmapEntry::default(); 200];
    assert_eq!(
        b.build(
            0x1000,
            0x2000,
            None,
            None,
            &map,
            Some((&mut small, 0x80_0000))
        ),
        too_many
    );
}
