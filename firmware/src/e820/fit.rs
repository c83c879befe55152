//! Finding room in the memory map: the highest or lowest aligned block of RAM
//! within bounds that overlaps none of the ranges already taken (the kernel,
//! the initrd, the firmware's own allocations).

use super::MemoryMap;
use crate::mem::{Range, align_up};

impl MemoryMap {
    /// The highest `align`-aligned start of a `size`-byte block that is RAM, lies
    /// within `[floor, ceiling)` and overlaps none of `busy`.
    pub fn highest_fit(
        &self,
        size: u64,
        align: u64,
        floor: u64,
        ceiling: u64,
        busy: &[Range],
    ) -> Option<u64> {
        let mut best = None;
        for ram in self.ram() {
            let lo = ram.start.max(floor);
            let hi = ram.end.min(ceiling);
            if hi <= lo || hi - lo < size {
                continue;
            }
            let mut top = hi; // candidate block is [top - size, top)
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

    /// The lowest `align`-aligned start at or above `floor` of a `size`-byte
    /// block that is RAM below `ceiling` and overlaps none of `busy`.
    pub fn lowest_fit(
        &self,
        size: u64,
        align: u64,
        floor: u64,
        ceiling: u64,
        busy: &[Range],
    ) -> Option<u64> {
        for ram in self.ram() {
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
}
