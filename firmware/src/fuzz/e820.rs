//! Fuzz target `e820`: `etc/e820` (`MemoryMap::from_qemu`), the firmware's
//! amendments, the zero page's table and the `SETUP_E820_EXT` node.

use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use proptest::prelude::*;

use super::{e820_bytes, e820_strategy, frames, le64, unframe, value64};
use crate::bootparams::{E820_MAX_ENTRIES_ZEROPAGE, E820Entry, e820_type};
use crate::e820::{MemoryMap, RECORD_SIZE};
use crate::mem::Range;
use crate::mem::{self, HighZone};

pub(super) fn gen_e820() -> BoxedStrategy<Vec<u8>> {
    (
        e820_strategy(150),
        prop::collection::vec((value64(), value64(), 1..4u32), 0..4),
    )
        .prop_map(|(file, amend)| frames(&[&file, &e820_bytes(&amend)]))
        .boxed()
}

/// Sorted, disjoint, non-empty, touching entries of one type merged.
fn assert_map_invariants(map: &MemoryMap) {
    let r = map.regions();
    for w in r.windows(2) {
        assert!(
            w[0].range.end <= w[1].range.start,
            "overlap or unsorted: {r:x?}"
        );
        assert!(
            !(w[0].range.end == w[1].range.start && w[0].typ == w[1].typ),
            "unmerged: {r:x?}"
        );
    }
    assert!(
        r.iter().all(|x| x.range.start < x.range.end),
        "empty entry: {r:x?}"
    );
}

fn type_at(map: &MemoryMap, p: u64) -> Option<u32> {
    map.regions()
        .iter()
        .find(|r| r.range.start <= p && p < r.range.end)
        .map(|r| r.typ)
}

pub(super) fn check_e820(input: &[u8]) -> String {
    let [file, amend] = unframe::<2>(input);
    let mut map = match MemoryMap::from_qemu(file) {
        Ok(m) => m,
        Err(e) => {
            return format!("{e:?}")
                .split(['(', ' '])
                .next()
                .unwrap()
                .to_string();
        }
    };
    assert_map_invariants(&map);
    // Every input range keeps its meaning: a reserved byte is never RAM, a RAM
    // byte stays RAM unless something reserved it, nothing appears from nowhere.
    let records: Vec<(u64, u64, u32)> = file
        .chunks_exact(RECORD_SIZE)
        .map(|r| {
            (
                le64(r, 0),
                le64(r, 8),
                u32::from_le_bytes(r[16..20].try_into().unwrap()),
            )
        })
        .filter(|r| r.1 != 0)
        .collect();
    for &(a, s, _) in &records {
        for p in [a, a + (s - 1)] {
            let covering = records.iter().filter(|r| r.0 <= p && p - r.0 < r.1);
            let (mut ram, mut other) = (false, false);
            for r in covering {
                if r.2 == e820_type::RAM {
                    ram = true
                } else {
                    other = true
                }
            }
            match type_at(&map, p) {
                Some(t) if other => assert_ne!(t, e820_type::RAM, "reserved {p:#x} became RAM"),
                Some(t) => assert!(ram && t == e820_type::RAM),
                None => panic!("{p:#x} lost from the map"),
            }
        }
    }
    for r in map.regions() {
        assert!(
            records
                .iter()
                .any(|x| x.0 <= r.range.start && r.range.start - x.0 < x.1),
            "{r:x?} is in no input record"
        );
    }
    // The firmware's amendments, then the zero page's table.
    let mut zone = map.low_ram_top().ok().map(HighZone::new);
    let mut result = "ok";
    let mut amendments = vec![(mem::LEGACY_HOLE, 0), (mem::BIOS_AREA, e820_type::RESERVED)];
    if let Some(z) = &mut zone {
        z.alloc(0x1_0000, 4096);
        amendments.push((z.used(), e820_type::RESERVED));
    }
    for r in amend.chunks_exact(RECORD_SIZE) {
        let (a, s) = (le64(r, 0), le64(r, 8));
        amendments.push((Range::new(a, a.saturating_add(s)), r[16] as u32 % 4));
    }
    for (range, typ) in amendments {
        let before = map.regions().to_vec();
        let done = if typ == 0 {
            map.remove(range)
        } else {
            map.insert(range, typ)
        };
        if done.is_err() {
            result = "amend-too-many";
            break;
        }
        assert_map_invariants(&map);
        // Every byte at an edge of the old map or of `range` (and its
        // neighbour) has the type the amendment gives it: outside `range`
        // nothing changes; inside, a reservation or hole overrides, RAM only
        // fills holes.
        let edges = before
            .iter()
            .flat_map(|r| [r.range.start, r.range.end])
            .chain([range.start, range.end]);
        for e in edges {
            for p in [e.wrapping_sub(1), e] {
                let old = before
                    .iter()
                    .find(|r| r.range.start <= p && p < r.range.end)
                    .map(|r| r.typ);
                let want = if range.start <= p && p < range.end {
                    match typ {
                        0 => None,
                        1 => old.or(Some(1)),
                        t => Some(t),
                    }
                } else {
                    old
                };
                assert_eq!(type_at(&map, p), want, "{p:#x} after {range:x?} as {typ}");
            }
        }
        if typ > 1 && !range.is_empty() {
            assert_eq!(type_at(&map, range.start), Some(typ));
            assert_eq!(type_at(&map, range.end - 1), Some(typ));
        } else if typ == 0 && !range.is_empty() {
            assert_eq!(type_at(&map, range.start), None);
        }
    }
    // The zero page's table and the SETUP_E820_EXT node hold every entry,
    // in order, and nothing else.
    let mut table = [E820Entry::default(); E820_MAX_ENTRIES_ZEROPAGE];
    let n = map.write_zero_page(&mut table) as usize;
    let all = map.regions();
    assert_eq!(n, all.len().min(E820_MAX_ENTRIES_ZEROPAGE));
    for (entry, r) in table.iter().zip(&all[..n]) {
        assert_eq!(*entry, r.entry());
    }
    let extra = all.len() - n;
    let mut node = vec![0xA5u8; crate::e820::ext_node_len(extra) + 8];
    match map.write_ext_node(&mut node, 0x1234) {
        None => assert_eq!(extra, 0),
        Some(len) => {
            assert_eq!(len, crate::e820::ext_node_len(extra));
            assert!(
                node[len..].iter().all(|&b| b == 0xA5),
                "wrote past the node"
            );
            assert_eq!(le64(&node, 0), 0x1234);
            assert_eq!(&node[8..12], &1u32.to_le_bytes());
            assert_eq!(&node[12..16], &((extra * RECORD_SIZE) as u32).to_le_bytes());
            for (rec, r) in node[16..len].chunks_exact(RECORD_SIZE).zip(&all[n..]) {
                assert_eq!(rec, r.entry().to_bytes());
            }
            // one byte short: refused, not cut
            assert_eq!(map.write_ext_node(&mut node[..len - 1], 0), None);
            result = if result == "ok" { "ok-ext" } else { result };
        }
    }
    result.to_string()
}
