//! Finding room in the memory map: the highest or lowest aligned block of RAM
//! within bounds that overlaps none of the ranges already taken (the kernel,
//! the initrd, the firmware's own allocations).

use core::hint::select_unpredictable;

use super::MemoryMap;
use crate::bootparams::e820_type;
use crate::mem::{Range, one_test};

/// A window that holds nothing, not even an empty block.
pub const NOWHERE: Range = Range::new(u64::MAX, 0);

/// Which end of a window [`MemoryMap::fit`] prefers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefer {
    Lowest,
    Highest,
}

impl MemoryMap {
    /// The lowest or the highest `align`-aligned (a power of two) start of a
    /// `size`-byte block that is RAM, lies within `window` and overlaps none
    /// of `busy`.
    ///
    /// One loop for both searches (its code is what TCG translates, once):
    /// in each RAM entry the candidate moves up past the busy ranges it hits
    /// (lowest) or down below them (highest); one test for whether it still
    /// fits, the entry's type among the conditions.
    pub fn fit(
        &self,
        size: u64,
        align: u64,
        window: Range,
        busy: &[Range],
        prefer: Prefer,
    ) -> Option<u64> {
        let highest = prefer == Prefer::Highest;
        let mask = !(align - 1);
        let mut found = None;
        for r in self.regions() {
            let lo = r.range.start.max(window.start);
            let hi = r.range.end.min(window.end);
            // Where the search stands: the top of the block when going
            // down, its bottom when going up.
            let mut at = select_unpredictable(highest, hi, lo);
            loop {
                crate::mem::block_boundary();
                let (below, under) = at.overflowing_sub(size);
                let (above, over) = at.overflowing_add(align - 1);
                let start = select_unpredictable(highest, below, above) & mask;
                let (end, wraps) = start.overflowing_add(size);
                let out = (r.typ != e820_type::RAM)
                    | (hi < lo)
                    | (highest & (hi == lo))
                    | select_unpredictable(highest, under, over)
                    | wraps
                    | (start < lo)
                    | (end > hi);
                if one_test(out) {
                    break;
                }
                // The busy ranges the block hits: the lowest start and
                // the highest end among them (0 when none).
                let block = Range::new(start, end);
                let (mut first, mut last) = (u64::MAX, 0);
                for b in busy {
                    let b = crate::mem::block_boundary_ref(b);
                    let hit = b.overlaps(&block);
                    first = first.min(select_unpredictable(hit, b.start, u64::MAX));
                    last = last.max(select_unpredictable(hit, b.end, 0));
                }
                if last == 0 {
                    found = Some(start);
                    break;
                }
                at = select_unpredictable(highest, first, last);
            }
            // The lowest is the first found; the highest, the last (the
            // entries are in ascending order).
            if found.is_some() & !highest {
                break;
            }
        }
        // (One way out, a block of its own: the return's code was
        // translated again for each way to it.)
        crate::mem::block_boundary();
        found
    }
}
