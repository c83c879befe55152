//! Fuzz target `pvh`: the ELF header, program headers and PVH entry note
//! (pvh::find_entry), from the file's first 8 KiB and, for a note further in,
//! from loaded memory.

use std::format;
use std::string::String;
use std::vec::Vec;

use proptest::prelude::*;

use super::{frames, le64, unframe, value64};
use crate::mem::Range;

/// An ELF (either class) with a PT_LOAD at `load` and a PT_NOTE holding the
/// PVH entry note, in the head or in loaded memory; fields fuzzed.
pub(super) fn gen_pvh() -> BoxedStrategy<Vec<u8>> {
    (
        any::<bool>(),
        prop_oneof![3 => Just(18u32), 1 => any::<u32>()],
        prop_oneof![3 => Just(4usize), 1 => Just(8usize), 1 => 0..16usize],
        value64(),
        (value64(), value64(), value64(), value64()),
        (
            any::<bool>(),
            0..3u16,
            prop::collection::vec(any::<u8>(), 0..64),
        ),
    )
        .prop_map(
            |(
                wide,
                typ,
                descsz,
                entry,
                (load, memsz, note_off, loaded_len),
                (in_head, extra, junk),
            )| {
                let (ehsize, phsize) = if wide { (64, 56) } else { (52, 32) };
                let phnum = 2 + extra;
                let mut h = vec![0u8; ehsize];
                h[..4].copy_from_slice(b"\x7fELF");
                h[4] = if wide { 2 } else { 1 };
                h[5] = 1;
                let phoff = ehsize as u64;
                if wide {
                    h[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
                    h[0x36..0x38].copy_from_slice(&(phsize as u16).to_le_bytes());
                    h[0x38..0x3A].copy_from_slice(&phnum.to_le_bytes());
                } else {
                    h[0x1C..0x20].copy_from_slice(&(phoff as u32).to_le_bytes());
                    h[0x2A..0x2C].copy_from_slice(&(phsize as u16).to_le_bytes());
                    h[0x2C..0x2E].copy_from_slice(&phnum.to_le_bytes());
                }
                let mut note = Vec::new();
                note.extend_from_slice(&4u32.to_le_bytes());
                note.extend_from_slice(&(descsz as u32).to_le_bytes());
                note.extend_from_slice(&typ.to_le_bytes());
                note.extend_from_slice(b"Xen\0");
                let mut desc = entry.to_le_bytes().to_vec();
                desc.resize(descsz.div_ceil(4) * 4, 0);
                note.extend_from_slice(&desc);
                let notes_at = ehsize + phsize * phnum as usize;
                let note_offset = if in_head { notes_at as u64 } else { note_off };
                let seg = |typ: u32, off: u64, paddr: u64, filesz: u64, memsz: u64| {
                    let mut p = vec![0u8; phsize];
                    p[..4].copy_from_slice(&typ.to_le_bytes());
                    if wide {
                        p[0x08..0x10].copy_from_slice(&off.to_le_bytes());
                        p[0x18..0x20].copy_from_slice(&paddr.to_le_bytes());
                        p[0x20..0x28].copy_from_slice(&filesz.to_le_bytes());
                        p[0x28..0x30].copy_from_slice(&memsz.to_le_bytes());
                    } else {
                        p[0x04..0x08].copy_from_slice(&(off as u32).to_le_bytes());
                        p[0x0C..0x10].copy_from_slice(&(paddr as u32).to_le_bytes());
                        p[0x10..0x14].copy_from_slice(&(filesz as u32).to_le_bytes());
                        p[0x14..0x18].copy_from_slice(&(memsz as u32).to_le_bytes());
                    }
                    p
                };
                h.extend(seg(1, 0, load, memsz, memsz));
                h.extend(seg(
                    4,
                    note_offset,
                    load.wrapping_add(0x100),
                    note.len() as u64,
                    0,
                ));
                for _ in 2..phnum {
                    h.extend(seg(4, note_off, note_off, loaded_len & 0x1FFF, 0));
                }
                h.extend_from_slice(&note);
                h.extend_from_slice(&junk);
                let mut memory = vec![0u8; 0x100];
                memory.extend_from_slice(&note);
                // QEMU's entry: the note's, cut to 32 bits, or anything
                let qemu = if junk.len() % 2 == 0 { entry } else { note_off };
                let loaded = [
                    load.to_le_bytes(),
                    (loaded_len & 0xFFFF_FFFF).to_le_bytes(),
                    (qemu & 0xFFFF_FFFF).to_le_bytes(),
                ]
                .concat();
                frames(&[&h, &loaded, &memory])
            },
        )
        .boxed()
}

/// Guest memory for `find_entry`: `bytes` from `base`; every range asked for
/// lies inside the loaded segments (asserted), and one beyond the bytes given
/// cannot be read.
struct LoadedMemory<'a> {
    base: u64,
    loaded: Range,
    bytes: &'a [u8],
}

impl crate::pvh::Memory for LoadedMemory<'_> {
    fn bytes(&mut self, range: Range) -> Option<&[u8]> {
        assert!(
            self.loaded.contains(&range),
            "read {range:x?} outside the segments {:x?}",
            self.loaded
        );
        let at = usize::try_from(range.start - self.base).ok()?;
        self.bytes.get(at..)?.get(..range.len() as usize)
    }
}

/// Also checks that QEMU's entry (`KERNEL_ENTRY`), which `find_entry` takes
/// to spare itself a walk, never changes the answer: none, the note's own, or
/// a fuzzed one (the loaded frame's third word).
pub(super) fn check_pvh(input: &[u8]) -> String {
    let [head, loaded, memory] = unframe::<3>(input);
    let head = &head[..head.len().min(crate::pvh::HEAD_BYTES)];
    let start = le64(loaded, 0);
    let qemu_guess = le64(loaded, 16) as u32;
    let loaded = Range::new(start, start.saturating_add(le64(loaded, 8)));
    let mut mem = LoadedMemory {
        base: start,
        loaded,
        bytes: memory,
    };
    let result = crate::pvh::find_entry(head, loaded, 0, &mut mem);
    let right = *result.as_ref().unwrap_or(&0);
    for qemu in [right, qemu_guess] {
        let again = crate::pvh::find_entry(head, loaded, qemu, &mut mem);
        assert_eq!(again, result, "with QEMU's entry {qemu:#x}");
    }
    match result {
        Ok(entry) => {
            let entry = entry as u64;
            assert!(
                loaded.contains(&Range::new(entry, entry + 1)),
                "entry {entry:#x} outside {loaded:x?}"
            );
            "ok".into()
        }
        Err(e) => format!("{:#x}", e.status()),
    }
}
