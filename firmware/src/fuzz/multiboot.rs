//! Fuzz target `multiboot`: the multiboot v1 header in the image's first 8 KiB
//! (multiboot::check, multiboot::find_header).

use std::format;
use std::string::String;
use std::vec::Vec;

use proptest::prelude::*;

use super::{frames, le64, unframe, value32};
use crate::mem::Range;

pub(super) fn gen_multiboot() -> BoxedStrategy<Vec<u8>> {
    (
        (0..2100usize).prop_map(|w| w * 4),
        prop_oneof![
            2 => Just(crate::multiboot::header_flags::MEMORY_INFO),
            2 => Just(crate::multiboot::header_flags::AOUT_KLUDGE | 3),
            1 => any::<u32>(),
        ],
        any::<bool>(),
        (value32(), value32(), value32(), value32(), value32()),
        (0x10_0000..0x20_0000u64, 0..0x4_0000u64, value32()),
        prop::collection::vec(any::<u8>(), 0..32),
    )
        .prop_map(
            |(
                at,
                flags,
                good_sum,
                (header_addr, load, load_end, bss_end, entry_addr),
                (start, len, entry),
                junk,
            )| {
                let mut img = vec![0u8; at];
                let magic = 0x1BAD_B002u32;
                let sum = if good_sum {
                    0u32.wrapping_sub(magic).wrapping_sub(flags)
                } else {
                    flags
                };
                // a consistent a.out kludge now and then
                let (header_addr, load, entry_addr) = if good_sum && header_addr % 2 == 0 {
                    (
                        start as u32 + at as u32,
                        start as u32,
                        start as u32 + (entry_addr % 64),
                    )
                } else {
                    (header_addr, load, entry_addr)
                };
                for w in [
                    magic,
                    flags,
                    sum,
                    header_addr,
                    load,
                    load_end,
                    bss_end,
                    entry_addr,
                    0,
                    0,
                    0,
                    0,
                ] {
                    img.extend_from_slice(&w.to_le_bytes());
                }
                img.extend_from_slice(&junk);
                let image = [start.to_le_bytes(), len.to_le_bytes()].concat();
                let entry = if entry % 2 == 0 { entry_addr } else { entry };
                frames(&[&img, &image, &entry.to_le_bytes()])
            },
        )
        .boxed()
}

pub(super) fn check_multiboot(input: &[u8]) -> String {
    use crate::multiboot::{self, header_flags};
    let [head, image, entry] = unframe::<3>(input);
    let start = le64(image, 0);
    let image = Range::new(start, start.saturating_add(le64(image, 8)));
    let entry = le64(entry, 0) as u32;
    if let Some((at, h)) = multiboot::find_header(head) {
        assert!(
            at % 4 == 0 && at < multiboot::SEARCH_BYTES,
            "header at {at}"
        );
        assert_eq!(h.magic.wrapping_add(h.flags).wrapping_add(h.checksum), 0);
    }
    match multiboot::check(head, image, entry) {
        Ok(header) => {
            assert!(image.start <= entry as u64 && (entry as u64) < image.end);
            if let Some(h) = header {
                assert_eq!(h.flags & header_flags::VIDEO_MODE, 0);
                if h.flags & header_flags::AOUT_KLUDGE != 0 {
                    assert_eq!(h.entry_addr, entry);
                    assert_eq!(h.load_addr as u64, image.start);
                    return "ok-aout".into();
                }
                return "ok-header".into();
            }
            "ok-no-header".into()
        }
        Err(e) => format!("{:#x}", e.status()),
    }
}
