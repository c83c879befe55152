//! PVH, the x86/HVM direct boot ABI: an uncompressed ELF kernel (a `vmlinux`)
//! entered at the address of its `XEN_ELFNOTE_PHYS32_ENTRY` note, in 32-bit
//! protected mode with paging off, EBX pointing at an `hvm_start_info`.
//!
//! QEMU loads the ELF's segments into RAM itself and hands over, through fw_cfg,
//! the lowest segment address (`KERNEL_ADDR`), the span (`KERNEL_SIZE`), the
//! entry (`KERNEL_ENTRY`, cut to 32 bits), the command line, the initrd and the
//! first 8 KiB of the file (`SETUP_DATA`). This module reads the ELF header and
//! the entry note itself (QEMU drops the entry's upper half without a word),
//! checks where the segments are, and builds the start info.
//!
//! Layouts: Xen's `public/arch-x86/hvm/start_info.h`; the ELF header and
//! program header of the System V gABI. Pure logic, tested on the host.

use core::mem::{offset_of, size_of};

use crate::bootparams::E820_MAX_ENTRIES_ZEROPAGE;
use crate::e820::MemoryMap;
use crate::error::Error;
use crate::mem::Range;

/// `hvm_start_info.magic`: "xEn3" with the top bit of the 'E' set.
pub const START_INFO_MAGIC: u32 = 0x336E_C578;
/// Version 1 adds the memory map, which a non-Xen Linux guest requires.
pub const START_INFO_VERSION: u32 = 1;
/// The ELF note type of the 32-bit physical entry (`XEN_ELFNOTE_PHYS32_ENTRY`).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// How much of the file QEMU hands over in SETUP_DATA.
pub const HEAD_BYTES: usize = 8192;
/// Linux's x86 `COMMAND_LINE_SIZE`: PVH has no setup header to say otherwise,
/// and Linux cuts a longer command line without a word.
pub const CMDLINE_MAX: u64 = 2047;
/// Notes are read from RAM when they lie beyond the first 8 KiB of the file;
/// Linux's note segment is a few hundred bytes.
pub const MAX_NOTES: usize = 4096;

/// `struct hvm_start_info` (56 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartInfo {
    pub magic: u32,          // 0x00
    pub version: u32,        // 0x04
    pub flags: u32,          // 0x08
    pub nr_modules: u32,     // 0x0C
    pub modlist_paddr: u64,  // 0x10
    pub cmdline_paddr: u64,  // 0x18
    pub rsdp_paddr: u64,     // 0x20
    pub memmap_paddr: u64,   // 0x28
    pub memmap_entries: u32, // 0x30
    pub reserved: u32,       // 0x34
}

/// `struct hvm_modlist_entry` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModlistEntry {
    pub paddr: u64,         // 0x00
    pub size: u64,          // 0x08
    pub cmdline_paddr: u64, // 0x10
    pub reserved: u64,      // 0x18
}

/// `struct hvm_memmap_table_entry` (24 bytes, e820 types).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemmapEntry {
    pub addr: u64,     // 0x00
    pub size: u64,     // 0x08
    pub typ: u32,      // 0x10
    pub reserved: u32, // 0x14
}

/// Everything the kernel is handed, in one block at a fixed place (ferrite puts
/// it where the zero page goes on the bzImage path): the start info, the one
/// module (the initrd) and the memory map.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StartBlock {
    pub info: StartInfo,                                  // 0x000
    pub module: ModlistEntry,                             // 0x038
    pub memmap: [MemmapEntry; E820_MAX_ENTRIES_ZEROPAGE], // 0x058
}

const _: () = {
    assert!(size_of::<StartInfo>() == 56);
    assert!(offset_of!(StartInfo, nr_modules) == 0x0C);
    assert!(offset_of!(StartInfo, modlist_paddr) == 0x10);
    assert!(offset_of!(StartInfo, cmdline_paddr) == 0x18);
    assert!(offset_of!(StartInfo, rsdp_paddr) == 0x20);
    assert!(offset_of!(StartInfo, memmap_paddr) == 0x28);
    assert!(offset_of!(StartInfo, memmap_entries) == 0x30);
    assert!(size_of::<ModlistEntry>() == 32);
    assert!(offset_of!(ModlistEntry, cmdline_paddr) == 0x10);
    assert!(size_of::<MemmapEntry>() == 24);
    assert!(offset_of!(MemmapEntry, typ) == 0x10);
    assert!(offset_of!(StartBlock, module) == 0x38);
    assert!(offset_of!(StartBlock, memmap) == 0x58);
    // it fits the 4 KiB the zero page has on the bzImage path
    assert!(size_of::<StartBlock>() <= 4096);
};

impl StartBlock {
    pub const fn zeroed() -> StartBlock {
        StartBlock {
            info: StartInfo {
                magic: 0,
                version: 0,
                flags: 0,
                nr_modules: 0,
                modlist_paddr: 0,
                cmdline_paddr: 0,
                rsdp_paddr: 0,
                memmap_paddr: 0,
                memmap_entries: 0,
                reserved: 0,
            },
            module: ModlistEntry {
                paddr: 0,
                size: 0,
                cmdline_paddr: 0,
                reserved: 0,
            },
            memmap: [MemmapEntry {
                addr: 0,
                size: 0,
                typ: 0,
                reserved: 0,
            }; E820_MAX_ENTRIES_ZEROPAGE],
        }
    }

    /// Fills the block, which lives at physical address `base`. A memory map
    /// of more entries than the block holds goes to `room`, a table elsewhere
    /// and its address.
    pub fn build(
        &mut self,
        base: u64,
        cmdline: u64,
        initrd: Option<Range>,
        rsdp: Option<u64>,
        memory: &MemoryMap,
        room: Option<(&mut [MemmapEntry], u64)>,
    ) -> Result<(), Error> {
        let regions = memory.regions();
        *self = StartBlock::zeroed();
        let (table, memmap_paddr) = match room {
            Some((table, at)) if regions.len() > self.memmap.len() => (table, at),
            _ => (
                &mut self.memmap[..],
                base + offset_of!(StartBlock, memmap) as u64,
            ),
        };
        if regions.len() > table.len() {
            return Err(Error::MemoryMap(crate::e820::E820Error::TooManyEntries));
        }
        for (slot, r) in table.iter_mut().zip(regions) {
            *slot = MemmapEntry {
                addr: r.range.start,
                size: r.range.len(),
                typ: r.typ,
                reserved: 0,
            };
        }
        if let Some(initrd) = initrd {
            self.module = ModlistEntry {
                paddr: initrd.start,
                size: initrd.len(),
                cmdline_paddr: 0,
                reserved: 0,
            };
        }
        self.info = StartInfo {
            magic: START_INFO_MAGIC,
            version: START_INFO_VERSION,
            flags: 0,
            nr_modules: initrd.is_some() as u32,
            modlist_paddr: if initrd.is_some() {
                base + offset_of!(StartBlock, module) as u64
            } else {
                0
            },
            cmdline_paddr: cmdline,
            rsdp_paddr: rsdp.unwrap_or(0),
            memmap_paddr,
            memmap_entries: regions.len() as u32,
            reserved: 0,
        };
        Ok(())
    }
}

/// Is this the start of an ELF file (QEMU's SETUP_DATA for a PVH kernel)?
pub fn is_elf(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF")
}

/// Guest memory that QEMU loaded the kernel's segments into.
pub trait Memory {
    /// The bytes of `range`, which lies inside the kernel's segments; `None`
    /// when they cannot be read.
    fn bytes(&mut self, range: Range) -> Option<&[u8]>;
}

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const FOUR_GIB: u64 = 1 << 32;

/// One program header, either class, widened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    typ: u32,
    offset: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

impl Segment {
    /// A PT_LOAD that holds `addr` in memory.
    fn loads(&self, addr: u64) -> bool {
        self.typ == PT_LOAD && self.paddr <= addr && addr < self.paddr.saturating_add(self.memsz)
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn bad(what: &'static str) -> Error {
    Error::NoPvhEntry(what)
}

/// An ELF class: where its header keeps the program header table, and how a
/// program header reads. The walk is generic over the class, so each copy
/// reads its fields at fixed offsets of fixed-size headers, with no class
/// branch and no bounds check left in; only the kernel's class runs, and so
/// only its copy is translated under TCG.
trait Class: 'static {
    /// `e_phoff`; `e_phentsize` (`e_phnum` follows it).
    const PHOFF: usize;
    const PHENTSIZE: usize;
    /// The size of a program header.
    const SIZE: usize;
    fn phoff(head: &[u8]) -> Option<u64>;
    /// `p` is one program header, `SIZE` bytes.
    fn segment(p: &[u8]) -> Segment;
}

struct Elf32;
struct Elf64;

impl Class for Elf32 {
    const PHOFF: usize = 0x1C;
    const PHENTSIZE: usize = 0x2A;
    const SIZE: usize = 32;
    fn phoff(head: &[u8]) -> Option<u64> {
        u32_at(head, Self::PHOFF).map(u64::from)
    }
    fn segment(p: &[u8]) -> Segment {
        let n = |at| u32_at(p, at).unwrap_or(0);
        Segment {
            typ: n(0),
            offset: n(0x04).into(),
            paddr: n(0x0C).into(),
            filesz: n(0x10).into(),
            memsz: n(0x14).into(),
        }
    }
}

impl Class for Elf64 {
    const PHOFF: usize = 0x20;
    const PHENTSIZE: usize = 0x36;
    const SIZE: usize = 56;
    fn phoff(head: &[u8]) -> Option<u64> {
        u64_at(head, Self::PHOFF)
    }
    fn segment(p: &[u8]) -> Segment {
        let w = |at| u64_at(p, at).unwrap_or(0);
        Segment {
            typ: u32_at(p, 0).unwrap_or(0),
            offset: w(0x08),
            paddr: w(0x18),
            filesz: w(0x20),
            memsz: w(0x28),
        }
    }
}

/// The program header table of an ELF of class `C` whose first bytes are
/// `head`: it must lie within `head`.
fn program_headers<C: Class>(head: &[u8]) -> Result<&[u8], Error> {
    let short = || bad("ELF header cut short");
    let phoff = C::phoff(head).ok_or_else(short)?;
    let phentsize = u16_at(head, C::PHENTSIZE).ok_or_else(short)?;
    let phnum = u16_at(head, C::PHENTSIZE + 2).ok_or_else(short)?;
    if phentsize as usize != C::SIZE {
        return Err(bad("unexpected program header size"));
    }
    if phnum == 0 {
        return Err(bad("no program headers"));
    }
    usize::try_from(phoff)
        .ok()
        .and_then(|at| head.get(at..)?.get(..phnum as usize * C::SIZE))
        .ok_or(bad("program headers beyond the first 8 KiB of the file"))
}

/// The segments of a program header table of class `C`.
fn segments<C: Class>(table: &[u8]) -> impl Iterator<Item = Segment> + '_ {
    table.chunks_exact(C::SIZE).map(C::segment)
}

/// The PVH entry among the notes in `notes`: `Ok(None)` when there is none.
/// Names and descriptors are padded to 4 bytes (what Linux and Xen emit in
/// both ELF classes).
fn entry_note(mut notes: &[u8]) -> Result<Option<u64>, Error> {
    while notes.len() >= 12 {
        let namesz = u32_at(notes, 0).unwrap_or(0) as usize;
        let descsz = u32_at(notes, 4).unwrap_or(0) as usize;
        let typ = u32_at(notes, 8).unwrap_or(0);
        let name_end = namesz
            .checked_add(3)
            .map(|n| 12 + (n & !3))
            .filter(|&e| e <= notes.len())
            .ok_or(bad("an ELF note runs past its segment"))?;
        let desc_end = descsz
            .checked_add(3)
            .map(|n| name_end + (n & !3))
            .filter(|&e| e <= notes.len())
            .ok_or(bad("an ELF note runs past its segment"))?;
        let name = &notes[12..12 + namesz];
        let desc = &notes[name_end..name_end + descsz];
        if name == b"Xen\0" && typ == XEN_ELFNOTE_PHYS32_ENTRY {
            return match descsz {
                4 => Ok(u32_at(desc, 0).map(u64::from)),
                8 => Ok(u64_at(desc, 0)),
                _ => Err(bad("the PVH entry note is neither 4 nor 8 bytes")),
            };
        }
        notes = &notes[desc_end..];
    }
    Ok(None)
}

/// The PVH entry in the notes of segment `seg`, read from `head` when they lie
/// there, else from memory when they lie in `loaded`; `Ok(None)` when there is
/// none or they lie in neither.
fn notes_entry(
    seg: &Segment,
    head: &[u8],
    loaded: Range,
    memory: &mut impl Memory,
) -> Result<Option<u64>, Error> {
    let in_head = usize::try_from(seg.offset)
        .ok()
        .zip(usize::try_from(seg.filesz).ok())
        .and_then(|(at, len)| head.get(at..)?.get(..len));
    if let Some(notes) = in_head {
        return entry_note(notes);
    }
    let range = seg
        .paddr
        .checked_add(seg.filesz)
        .map(|e| Range::new(seg.paddr, e));
    let Some(range) = range.filter(|r| loaded.contains(r)) else {
        return Ok(None);
    };
    if range.len() > MAX_NOTES as u64 {
        return Err(bad("the ELF note segment is larger than 4 KiB"));
    }
    match memory.bytes(range) {
        Some(notes) => entry_note(notes),
        None => Ok(None),
    }
}

/// Finds the PVH entry of the ELF whose first bytes are `head` and whose
/// segments QEMU loaded into `loaded` (KERNEL_ADDR, KERNEL_SIZE). A note
/// segment is read from `head` when it lies there, else from memory when it
/// lies in `loaded`. The entry must be below 4 GiB and inside a loaded segment.
///
/// `expected`: the entry QEMU read from the same note (KERNEL_ENTRY, cut to 32
/// bits). The one walk of the program headers checks it against the PT_LOADs
/// as it looks for the note; the headers are walked again only when the note
/// says otherwise. The result never depends on it.
pub fn find_entry(
    head: &[u8],
    loaded: Range,
    expected: u32,
    memory: &mut impl Memory,
) -> Result<u32, Error> {
    if !is_elf(head) || head.len() < 52 {
        return Err(bad("not an ELF file"));
    }
    if head[5] != ELFDATA2LSB {
        return Err(bad("not a little-endian ELF"));
    }
    match head[4] {
        ELFCLASS32 => entry_of::<Elf32>(head, loaded, expected, memory),
        ELFCLASS64 => entry_of::<Elf64>(head, loaded, expected, memory),
        _ => Err(bad("unknown ELF class")),
    }
}

/// [`find_entry`] for an ELF of class `C`.
fn entry_of<C: Class>(
    head: &[u8],
    loaded: Range,
    expected: u32,
    memory: &mut impl Memory,
) -> Result<u32, Error> {
    let table = program_headers::<C>(head)?;
    let mut found = None;
    let mut expected_loaded = false;
    for seg in segments::<C>(table) {
        expected_loaded |= seg.loads(expected as u64);
        if seg.typ == PT_NOTE && found.is_none() {
            found = notes_entry(&seg, head, loaded, memory)?;
        }
    }
    let entry = found.ok_or(Error::NoPvhEntry(
        "no XEN_ELFNOTE_PHYS32_ENTRY note; build Linux with CONFIG_PVH=y",
    ))?;
    if entry >= FOUR_GIB {
        return Err(Error::PvhEntryOutside { entry });
    }
    let in_segment = if entry == expected as u64 {
        expected_loaded
    } else {
        segments::<C>(table).any(|s| s.loads(entry))
    };
    if !in_segment || !loaded.contains(&Range::new(entry, entry + 1)) {
        return Err(Error::PvhEntryOutside { entry });
    }
    Ok(entry as u32)
}

/// Checks where QEMU put the kernel's segments: RAM, and clear of ferrite's own
/// memory (the start info, command line, ferrite itself and the BIOS segment,
/// all in the first MiB).
pub fn check_segments(loaded: Range, memory: &MemoryMap, firmware: Range) -> Result<(), Error> {
    if loaded.is_empty() {
        return Err(bad("the ELF has no loadable segment"));
    }
    if loaded.overlaps(&firmware) {
        return Err(Error::SegmentsOverlapFirmware {
            start: loaded.start,
            end: loaded.end,
        });
    }
    if !memory.is_ram(loaded) {
        return Err(Error::KernelDoesNotFit {
            size: loaded.len(),
            at: loaded.start,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
