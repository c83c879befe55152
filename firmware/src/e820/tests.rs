//! Unit tests of the memory map: QEMU's `etc/e820` parsed (in order or
//! not, overlapping, malformed, longer than the zero page), amended, written
//! out, and searched for room.

use super::*;
use crate::bootparams::e820_type::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn qemu_e820(entries: &[(u64, u64, u32)]) -> std::vec::Vec<u8> {
    let mut v = std::vec::Vec::new();
    for &(a, s, t) in entries {
        v.extend_from_slice(&a.to_le_bytes());
        v.extend_from_slice(&s.to_le_bytes());
        v.extend_from_slice(&t.to_le_bytes());
    }
    v
}

fn list(map: &MemoryMap) -> std::vec::Vec<(u64, u64, u32)> {
    map.regions()
        .iter()
        .map(|r| (r.range.start, r.range.end, r.typ))
        .collect()
}

#[test]
fn parses_a_pc_map_with_high_ram() {
    // -M pc -m 6G: 3 GiB below 4 GiB, 3 GiB above, KVM's reserved page.
    let bytes = qemu_e820(&[
        (0, 3 * GIB, RAM),
        (0xFEFF_C000, 0x4000, RESERVED),
        (4 * GIB, 3 * GIB, RAM),
    ]);
    let map = MemoryMap::from_qemu(&bytes).unwrap();
    assert_eq!(map.low_ram_top().unwrap(), 3 * GIB);
    assert_eq!(map.ram_bytes(), 6 * GIB);
    assert_eq!(map.regions().len(), 3);
}

#[test]
fn takes_qemu_7_2s_pc_map_in_its_own_order() {
    // QEMU 7.2's pc and q35 list the reserved range above 1 TiB first.
    let bytes = qemu_e820(&[
        (0xFD_0000_0000, 0x3_0000_0000, RESERVED),
        (0, 0x2000_0000, RAM),
    ]);
    let map = MemoryMap::from_qemu(&bytes).unwrap();
    assert_eq!(
        list(&map),
        [
            (0, 0x2000_0000, RAM),
            (0xFD_0000_0000, 0x100_0000_0000, RESERVED)
        ]
    );
    // touching entries of one type merge, whatever their order
    let bytes = qemu_e820(&[(MIB, MIB, RAM), (0, MIB, RAM), (4 * MIB, MIB, RAM)]);
    let map = MemoryMap::from_qemu(&bytes).unwrap();
    assert_eq!(list(&map), [(0, 2 * MIB, RAM), (4 * MIB, 5 * MIB, RAM)]);
}

#[test]
fn rejects_malformed_files() {
    assert_eq!(
        MemoryMap::from_qemu(&[]).err(),
        Some(E820Error::BadLength(0))
    );
    assert_eq!(
        MemoryMap::from_qemu(&[0; 19]).err(),
        Some(E820Error::BadLength(19))
    );
    let wrap = qemu_e820(&[(u64::MAX - 10, 100, RAM)]);
    assert!(matches!(
        MemoryMap::from_qemu(&wrap),
        Err(E820Error::Wraps { .. })
    ));
    let no_ram = qemu_e820(&[(0, MIB, RESERVED)]);
    assert_eq!(MemoryMap::from_qemu(&no_ram).err(), Some(E820Error::NoRam));
    // only zero-sized entries
    let empty = qemu_e820(&[(0, 0, RAM), (MIB, 0, RAM)]);
    assert_eq!(MemoryMap::from_qemu(&empty).err(), Some(E820Error::NoRam));
}

#[test]
fn overlapping_input_never_hands_out_reserved_memory() {
    // reserved listed first, RAM overlapping it afterwards
    let bytes = qemu_e820(&[(16 * MIB, MIB, RESERVED), (0, 128 * MIB, RAM)]);
    let map = MemoryMap::from_qemu(&bytes).unwrap();
    assert_eq!(
        list(&map),
        [
            (0, 16 * MIB, RAM),
            (16 * MIB, 17 * MIB, RESERVED),
            (17 * MIB, 128 * MIB, RAM)
        ]
    );
    // and the other order gives the same map
    let bytes = qemu_e820(&[(0, 128 * MIB, RAM), (16 * MIB, MIB, RESERVED)]);
    assert_eq!(list(&MemoryMap::from_qemu(&bytes).unwrap()), list(&map));
}

#[test]
fn carving_the_legacy_hole_and_reservations() {
    let bytes = qemu_e820(&[(0, 128 * MIB, RAM)]);
    let mut map = MemoryMap::from_qemu(&bytes).unwrap();
    map.remove(Range::new(0xA_0000, 0x10_0000)).unwrap();
    map.insert(Range::new(0xF_0000, 0x10_0000), RESERVED)
        .unwrap();
    map.insert(Range::new(128 * MIB - 0x3_0000, 128 * MIB), RESERVED)
        .unwrap();
    assert_eq!(
        list(&map),
        [
            (0, 0xA_0000, RAM),
            (0xF_0000, 0x10_0000, RESERVED),
            (0x10_0000, 128 * MIB - 0x3_0000, RAM),
            (128 * MIB - 0x3_0000, 128 * MIB, RESERVED),
        ]
    );
    // adjacent reservations of one type merge
    map.insert(
        Range::new(128 * MIB - 0x4_0000, 128 * MIB - 0x3_0000),
        RESERVED,
    )
    .unwrap();
    assert_eq!(map.regions().len(), 4);
    assert!(!map.is_ram(Range::new(128 * MIB - 0x4_0000, 128 * MIB - 0x3_F000)));
}

/// 300 entries of alternating types (nothing merges), as QEMU lists them.
fn many(n: u64) -> std::vec::Vec<(u64, u64, u32)> {
    (0..n)
        .map(|i| (i * 2 * MIB, MIB, if i % 2 == 0 { RAM } else { NVS }))
        .collect()
}

#[test]
fn a_map_of_300_entries_is_taken_whole() {
    let entries = many(300);
    let map = MemoryMap::from_qemu(&qemu_e820(&entries)).unwrap();
    assert!(map.on_heap());
    assert_eq!(
        list(&map),
        entries
            .iter()
            .map(|&(a, s, t)| (a, a + s, t))
            .collect::<std::vec::Vec<_>>()
    );
    // the zero page takes the first 128 ...
    let mut table = [E820Entry::default(); 128];
    assert_eq!(map.write_zero_page(&mut table), 128);
    for (e, &(a, s, t)) in table.iter().zip(&entries) {
        assert_eq!(
            *e,
            E820Entry {
                addr: a,
                size: s,
                typ: t
            }
        );
    }
    // ... and SETUP_E820_EXT the other 172, linked to the list's old head
    assert_eq!(map.extended().len(), 172);
    let mut node = std::vec![0u8; ext_node_len(172)];
    assert_eq!(
        map.write_ext_node(&mut node, 0xABCD_0000),
        Some(16 + 172 * 20)
    );
    assert_eq!(node[0..8], 0xABCD_0000u64.to_le_bytes());
    assert_eq!(node[8..12], setup_data_type::E820_EXT.to_le_bytes());
    assert_eq!(node[12..16], (172u32 * 20).to_le_bytes());
    assert_eq!(node[16..], qemu_e820(&entries[128..])[..]);
    // a node one byte short is refused, not cut
    assert_eq!(map.write_ext_node(&mut node[..16 + 172 * 20 - 1], 0), None);
    // unsorted, the same map (the slow path grows on the heap too)
    let mut shuffled = entries.clone();
    shuffled.reverse();
    assert_eq!(
        list(&MemoryMap::from_qemu(&qemu_e820(&shuffled)).unwrap()),
        list(&map)
    );
    // and amendments keep working on the heap
    let mut map = map;
    map.insert(Range::new(599 * MIB, 700 * MIB), RESERVED)
        .unwrap();
    map.remove(Range::new(0, 4 * MIB)).unwrap();
    assert_eq!(map.regions().len(), 300 + 1 - 2);
}

#[test]
fn a_map_that_fits_the_zero_page_stays_off_the_heap() {
    let map = MemoryMap::from_qemu(&qemu_e820(&many(128))).unwrap();
    assert!(!map.on_heap());
    let mut table = [E820Entry::default(); 128];
    assert_eq!(map.write_zero_page(&mut table), 128);
    assert!(map.extended().is_empty());
    assert_eq!(map.write_ext_node(&mut [0; 64], 0), None);
}

#[test]
fn a_map_beyond_the_heap_is_an_error_not_a_truncation() {
    let n = crate::heap::HEAP_SIZE / core::mem::size_of::<Region>() + 1;
    let entries = many(n as u64);
    assert!(matches!(
        MemoryMap::from_qemu(&qemu_e820(&entries)).err(),
        Some(E820Error::OutOfHeap(_))
    ));
    assert!(matches!(
        Error::from(E820Error::OutOfHeap(1)),
        Error::OutOfHeap { .. }
    ));
}

fn highest(
    map: &MemoryMap,
    size: u64,
    align: u64,
    floor: u64,
    ceiling: u64,
    busy: &[Range],
) -> Option<u64> {
    map.fit(
        size,
        align,
        Range::new(floor, ceiling),
        busy,
        Prefer::Highest,
    )
}

fn lowest(
    map: &MemoryMap,
    size: u64,
    align: u64,
    floor: u64,
    ceiling: u64,
    busy: &[Range],
) -> Option<u64> {
    map.fit(
        size,
        align,
        Range::new(floor, ceiling),
        busy,
        Prefer::Lowest,
    )
}

#[test]
fn fits() {
    let bytes = qemu_e820(&[(0, 128 * MIB, RAM), (4 * GIB, GIB, RAM)]);
    let map = MemoryMap::from_qemu(&bytes).unwrap();
    let busy = [
        Range::new(16 * MIB, 80 * MIB),
        Range::new(120 * MIB, 128 * MIB),
    ];
    // highest below 4 GiB: just under the busy top
    assert_eq!(
        highest(&map, 10 * MIB, 4096, MIB, 4 * GIB, &busy),
        Some(110 * MIB)
    );
    // too big for the gap above 80 MiB, fits below 16 MiB
    assert_eq!(highest(&map, 41 * MIB, 4096, MIB, 4 * GIB, &busy), None);
    assert_eq!(
        highest(&map, 14 * MIB, 4096, MIB, 4 * GIB, &busy),
        Some(106 * MIB)
    );
    assert_eq!(
        highest(&map, 14 * MIB, 4096, MIB, 16 * MIB, &busy),
        Some(2 * MIB)
    );
    // above 4 GiB when allowed
    assert_eq!(
        highest(&map, 100 * MIB, 4096, 4 * GIB, u64::MAX, &busy),
        Some(5 * GIB - 100 * MIB)
    );
    // lowest aligned fit skips busy ranges
    assert_eq!(
        lowest(&map, 8 * MIB, 2 * MIB, 16 * MIB, 4 * GIB, &busy),
        Some(80 * MIB)
    );
    assert_eq!(
        lowest(&map, 64 * MIB, 2 * MIB, 16 * MIB, 4 * GIB, &busy),
        None
    );
    assert_eq!(
        lowest(&map, 64 * MIB, 2 * MIB, 16 * MIB, u64::MAX, &busy),
        Some(4 * GIB)
    );
    // a window that holds nothing
    assert_eq!(map.fit(0, 1, NOWHERE, &[], Prefer::Lowest), None);
    assert_eq!(map.fit(0, 1, NOWHERE, &[], Prefer::Highest), None);
}

#[path = "model.rs"]
mod model;
