//! The memory map and the placement searches checked against plain models
//! of what they must do (the map as a type per elementary interval; the
//! searches as they were written before they shared one loop), on
//! pseudo-random maps, ranges and busy lists, edge cases included.

use super::*;
use crate::linux::{self, KernelInfo};
use crate::mem::align_up;
use crate::test_support::Rng;
use std::vec::Vec;

/// The generator, with the draws of maps and ranges.
trait Draws {
    fn addr(&mut self) -> u64;
    fn range(&mut self) -> Range;
    fn typ(&mut self) -> u32;
}

impl Draws for Rng {
    /// An address on a coarse grid (so that ranges touch and overlap
    /// often), now and then one near the top of the address space.
    fn addr(&mut self) -> u64 {
        match self.below(16) {
            0 => u64::MAX - self.below(3) * 0x1000,
            1 => 1 << 32,
            _ => self.below(40) * 0x1000,
        }
    }
    fn range(&mut self) -> Range {
        let a = self.addr();
        let b = self.addr();
        Range::new(a.min(b), a.max(b))
    }
    fn typ(&mut self) -> u32 {
        [RAM, RAM, RESERVED, NVS][self.below(4) as usize]
    }
}

type Entries = Vec<(u64, u64, u32)>;

fn entries(map: &MemoryMap) -> Entries {
    map.regions()
        .iter()
        .map(|r| (r.range.start, r.range.end, r.typ))
        .collect()
}

/// The model's operation on a map: every elementary interval gets the type
/// `op` gives it from the one it had (None: not in the map); then the
/// canonical list (sorted, touching intervals of one type merged).
fn apply(
    map: &[(u64, u64, u32)],
    range: Range,
    op: impl Fn(Option<u32>) -> Option<u32>,
) -> Entries {
    let mut cuts: Vec<u64> = map.iter().flat_map(|&(s, e, _)| [s, e]).collect();
    cuts.extend([range.start, range.end]);
    cuts.sort_unstable();
    cuts.dedup();
    let mut out: Entries = Vec::new();
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let old = map.iter().find(|&&(s, e, _)| s <= a && b <= e).map(|e| e.2);
        let t = if range.start <= a && b <= range.end {
            op(old)
        } else {
            old
        };
        let Some(t) = t else { continue };
        match out.last_mut() {
            Some(last) if last.1 == a && last.2 == t => last.1 = b,
            _ => out.push((a, b, t)),
        }
    }
    out
}

/// `MemoryMap::insert` as specified: RAM fills holes, any other type wins.
fn model_insert(map: &[(u64, u64, u32)], range: Range, typ: u32) -> Entries {
    apply(map, range, |old| {
        if typ == RAM {
            old.or(Some(RAM))
        } else {
            Some(typ)
        }
    })
}

#[test]
fn insert_and_remove_match_the_model() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let mut map = MemoryMap::new();
        let mut model = Entries::new();
        for _ in 0..rng.below(12) {
            let range = rng.range();
            if rng.below(4) == 0 {
                map.remove(range).unwrap();
                model = apply(&model, range, |_| None);
            } else {
                let typ = rng.typ();
                map.insert(range, typ).unwrap();
                model = model_insert(&model, range, typ);
            }
            assert_eq!(entries(&map), model, "after {range:x?}");
        }
    }
}

/// The splice itself, as `reserve` and QEMU's entries use it: ranges taken
/// as they come (empty and inverted ones too), its answer to whether the
/// range covered part of an entry checked as well.
#[test]
fn the_splice_matches_the_model() {
    let mut rng = Rng(0x3C6E_F372_FE94_F82B);
    for _ in 0..3000 {
        let mut map = MemoryMap::new();
        let mut model = Entries::new();
        for _ in 0..rng.below(14) {
            let (a, b) = (rng.addr(), rng.addr());
            let range = Range::new(a, b);
            let typ = [None, Some(RAM), Some(RESERVED)][rng.below(3) as usize];
            let covered = a < b && model.iter().any(|&(s, e, _)| s < b && a < e);
            assert_eq!(
                map.overwrite(range, typ),
                Ok(covered as usize),
                "{range:x?}"
            );
            if a < b {
                model = apply(&model, range, |_| typ);
            }
            assert_eq!(entries(&map), model, "after {range:x?} {typ:?}");
        }
    }
}

/// `reserve`: the hole taken out first, then each reserved range (empty
/// and inverted ones too) laid as reserved, in one loop.
#[test]
fn reserve_matches_the_model() {
    let mut rng = Rng(0xA076_1D64_78BD_642F);
    for _ in 0..3000 {
        let mut map = MemoryMap::new();
        for _ in 0..rng.below(8) {
            map.insert(rng.range(), rng.typ()).unwrap();
        }
        let mut model = entries(&map);
        let hole = rng.range();
        let reserved: Vec<Range> = (0..rng.below(8))
            .map(|_| Range::new(rng.addr(), rng.addr()))
            .collect();
        map.reserve(hole, &reserved).unwrap();
        model = apply(&model, hole, |_| None);
        for &r in &reserved {
            if r.start < r.end {
                model = apply(&model, r, |_| Some(RESERVED));
            }
        }
        assert_eq!(entries(&map), model, "{hole:x?} {reserved:x?}");
    }
}

#[test]
fn loading_qemus_records_matches_the_model() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for _ in 0..3000 {
        let mut records = Vec::new();
        for _ in 0..1 + rng.below(8) {
            let (a, b) = (rng.addr(), rng.addr());
            let size = if rng.below(8) == 0 {
                b
            } else {
                b.saturating_sub(a)
            };
            records.push((a, size, rng.typ()));
        }
        let mut model = Entries::new();
        let mut wraps = false;
        for &(a, size, typ) in &records {
            match a.checked_add(size) {
                Some(end) => model = model_insert(&model, Range::new(a, end), typ),
                None => wraps = true,
            }
        }
        let got = MemoryMap::from_qemu(&qemu_e820(&records));
        if wraps {
            assert!(matches!(got, Err(E820Error::Wraps { .. })), "{records:x?}");
        } else if !model.iter().any(|e| e.2 == RAM) {
            assert_eq!(got.err(), Some(E820Error::NoRam), "{records:x?}");
        } else {
            assert_eq!(entries(&got.unwrap()), model, "{records:x?}");
        }
    }
}

/// The highest fit as it was written before it shared a loop.
fn old_highest_fit(
    map: &MemoryMap,
    size: u64,
    align: u64,
    floor: u64,
    ceiling: u64,
    busy: &[Range],
) -> Option<u64> {
    let mut best = None;
    for ram in map.ram() {
        let lo = ram.start.max(floor);
        let hi = ram.end.min(ceiling);
        if hi <= lo || hi - lo < size {
            continue;
        }
        let mut top = hi;
        while let Some(start) = top.checked_sub(size).map(|s| s & !(align - 1)) {
            if start < lo {
                break;
            }
            let cand = Range::new(start, start + size);
            match busy
                .iter()
                .filter(|b| b.overlaps(&cand))
                .map(|b| b.start)
                .min()
            {
                None => {
                    best = best.max(Some(start));
                    break;
                }
                Some(b) => top = b,
            }
        }
    }
    best
}

/// The lowest fit as it was written before it shared a loop.
fn old_lowest_fit(
    map: &MemoryMap,
    size: u64,
    align: u64,
    floor: u64,
    ceiling: u64,
    busy: &[Range],
) -> Option<u64> {
    for ram in map.ram() {
        let lo = ram.start.max(floor);
        let hi = ram.end.min(ceiling);
        let mut start = align_up(lo, align)?;
        loop {
            let end = start.checked_add(size)?;
            if end > hi {
                break;
            }
            let cand = Range::new(start, end);
            match busy
                .iter()
                .filter(|b| b.overlaps(&cand))
                .map(|b| b.end)
                .max()
            {
                None => return Some(start),
                Some(b) => start = align_up(b, align)?,
            }
        }
    }
    None
}

fn random_map(rng: &mut Rng) -> MemoryMap {
    let mut map = MemoryMap::new();
    for _ in 0..rng.below(6) {
        map.insert(rng.range(), rng.typ()).unwrap();
    }
    map
}

#[test]
fn fit_matches_the_searches_it_replaced() {
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    for _ in 0..20000 {
        let map = random_map(&mut rng);
        let busy: Vec<Range> = (0..rng.below(4)).map(|_| rng.range()).collect();
        let size =
            [0, 1, 0x1000, 0x3000, 0x8000, rng.below(0x20000), u64::MAX][rng.below(7) as usize];
        let align = 1 << [0, 12, 13, 15][rng.below(4) as usize];
        let window = rng.range();
        let old = old_lowest_fit(&map, size, align, window.start, window.end, &busy);
        assert_eq!(map.fit(size, align, window, &busy, Prefer::Lowest), old);
        let old = old_highest_fit(&map, size, align, window.start, window.end, &busy);
        assert_eq!(map.fit(size, align, window, &busy, Prefer::Highest), old);
    }
}

/// Kernel placement as it was written before it used one search for both
/// kinds of kernel.
fn old_place_kernel(
    info: &KernelInfo,
    kernel_size: u64,
    map: &MemoryMap,
    busy: &[Range],
) -> Result<Range, Error> {
    let needed = u64::from(info.init_size).max(kernel_size);
    let does_not_fit = Error::KernelDoesNotFit {
        size: needed,
        at: info.pref_address,
    };
    let footprint = align_up(needed, 4096).ok_or(does_not_fit)?;
    let alignment = u64::from(info.alignment);
    let start = if info.relocatable {
        let floor = align_up(info.pref_address, alignment).ok_or(does_not_fit)?;
        old_lowest_fit(map, footprint, alignment, floor, 1 << 32, busy)
            .or_else(|| {
                info.above_4g
                    .then(|| {
                        old_lowest_fit(
                            map,
                            footprint,
                            alignment,
                            floor.max(1 << 32),
                            u64::MAX,
                            busy,
                        )
                    })
                    .flatten()
            })
            .ok_or(does_not_fit)?
    } else {
        let at = info.pref_address;
        let end = at.checked_add(footprint).ok_or(does_not_fit)?;
        let range = Range::new(at, end);
        if !map.is_ram(range) || busy.iter().any(|b| b.overlaps(&range)) {
            return Err(does_not_fit);
        }
        at
    };
    Ok(Range::new(start, start + footprint))
}

#[test]
fn placement_matches_what_it_replaced() {
    let mut rng = Rng(0x5851_F42D_4C95_7F2D);
    for _ in 0..20000 {
        let map = random_map(&mut rng);
        let busy: Vec<Range> = (0..rng.below(4)).map(|_| rng.range()).collect();
        let mut h = crate::test_support::setup_header();
        h.relocatable_kernel = rng.below(2) as u8;
        h.kernel_alignment = [0x1000, 0x2000, 0x8000][rng.below(3) as usize];
        h.pref_address =
            [0x10_0000, rng.addr().max(0x10_0000), u64::MAX - 0x1000][rng.below(3) as usize];
        h.init_size = [0, 0x3000, u32::MAX][rng.below(3) as usize];
        if rng.below(2) == 0 {
            h.xloadflags = xloadflags_kernel_64();
        }
        let Ok(info) = KernelInfo::from_header(&h) else {
            continue;
        };
        let size = [0, 0x1000, 0x5000, u64::MAX - 10][rng.below(4) as usize];
        assert_eq!(
            linux::place_kernel(&info, size, &map, &busy),
            old_place_kernel(&info, size, &map, &busy),
            "{info:x?} {size:#x} {busy:x?} {:x?}",
            entries(&map)
        );
        let initrd = [0, 1, 0x1000, 0x7000, u64::MAX - 5][rng.below(5) as usize];
        let ceiling = u64::from(info.initrd_addr_max)
            .saturating_add(1)
            .min(1 << 32);
        let old = old_highest_fit(&map, initrd, 4096, 0x10_0000, ceiling, &busy)
            .map(|s| {
                // ending at a 2 MiB boundary when it fits there
                let below = (s + initrd) & !(linux::INITRD_END_ALIGN - 1);
                old_highest_fit(&map, initrd, 4096, 0x10_0000, below.max(0x10_0000), &busy)
                    .unwrap_or(s)
            })
            .or_else(|| {
                info.above_4g
                    .then(|| old_highest_fit(&map, initrd, 4096, 1 << 32, u64::MAX, &busy))
                    .flatten()
            });
        let old = match (initrd, old) {
            (0, _) => Ok(None),
            (_, Some(s)) => Ok(Some(Range::new(s, s + initrd))),
            (_, None) => Err(Error::InitrdDoesNotFit {
                size: initrd,
                limit: ceiling,
            }),
        };
        assert_eq!(linux::place_initrd(&info, initrd, &map, &busy), old);
    }
}

fn xloadflags_kernel_64() -> u16 {
    crate::bootparams::xloadflags::KERNEL_64
}
