//! Laying a range into the sorted map: one splice for QEMU's entries, the
//! reservations and the holes, then touching entries of a type merged.

use core::cell::Cell;
use core::hint::select_unpredictable;

use super::{E820Error, MemoryMap, Region};
use crate::bootparams::e820_type;
use crate::heap::OutOfHeap;
use crate::mem::Range;

/// An empty entry: a spare slot before it is written, the stand-in below
/// every entry.
const NONE: Region = Region {
    range: Range::new(0, 0),
    typ: 0,
};

/// Past every entry: no entry starts where it ends, and as a range it
/// cuts nothing.
const END: Region = Region {
    range: Range::new(u64::MAX, u64::MAX),
    typ: 0,
};

impl MemoryMap {
    /// What the final map reserves: `hole` taken out, whatever was there (the
    /// legacy hole), then each of `reserved` marked reserved, overriding RAM.
    /// The map does not depend on the order of `reserved` (each range
    /// overrides RAM, touching entries of a type merge).
    pub fn reserve(&mut self, hole: Range, reserved: &[Range]) -> Result<(), E820Error> {
        // One call site in one loop, the hole its first pass (`k` 0), not
        // a call of its own before it (each is blocks for TCG).
        let mut k = 0usize;
        loop {
            let range = reserved.get(k.wrapping_sub(1)).map_or(hole, |&r| r);
            let typ = (k != 0).then_some(e820_type::RESERVED);
            self.overwrite(range, typ)?;
            if k == reserved.len() {
                return Ok(());
            }
            k += 1;
        }
    }

    /// Clears `range` out of the map and, with a type, puts it back as one
    /// entry of that type (an empty range changes nothing); returns 1 when
    /// `range` covered part of an entry (QEMU's entries must not: see
    /// [`MemoryMap::load_disjoint`]), else 0. (A `usize` beside the heap's
    /// error, its only one: the `Result` is two registers, where a `bool`
    /// would send it through memory.)
    ///
    /// One pass, downwards, no sort: each entry, read into registers, is
    /// written back as its part above `range`, then its part below it,
    /// those there are, packed from the top of three spare slots down, a
    /// slot left for `range` itself between the last part above it and the
    /// first below; then the merge moves them to the bottom, joining
    /// touching entries of a type. Its code is what QEMU's entries and the
    /// reservations make TCG translate on every boot, so the pass has no
    /// branch in its body (a part that is not there is written all the
    /// same, to a slot the next one takes) and keeps what it builds in
    /// registers, not in the map or on the stack.
    pub(super) fn overwrite(&mut self, range: Range, typ: Option<u32>) -> Result<usize, OutOfHeap> {
        // The two entries a range can add (cut out of the middle of one, it
        // leaves a part on each side) and one slot for a part not there.
        // (One capacity test for the three, no call per slot, nothing
        // written: every slot the pass reads it writes first.)
        self.regions.extend_unwritten(3, NONE)?;
        // An empty range cuts nothing: as one past the top of memory.
        let some = !range.is_empty();
        let range = select_unpredictable(some, range, END.range);
        let slots = Cell::from_mut(self.regions.as_mut_slice()).as_slice_of_cells();
        // (One test here and the reads and writes below need none.)
        let Some((entries, _)) = slots.split_last_chunk::<3>() else {
            unreachable!("three slots were just pushed");
        };
        // What is written is `slots[w..]`: at most two more entries than
        // those read, so a write (at `w - 1`, before `w` moves) never
        // reaches an entry not yet read.
        let mut w = slots.len();
        let put = |w: usize, part: Region| {
            slots[select_unpredictable(w - 1 < slots.len(), w - 1, 0)].set(part);
            w - !part.range.is_empty() as usize
        };
        // Whether `range` is still to be laid, and its slot once it is not
        // (with nothing to lay, a slot below those written).
        let (mut lay, mut at) = (some & typ.is_some(), 0);
        let mut covered = false;
        // Once more than there are entries, the last time on a stand-in
        // below them all, where `range` goes if no entry lies below it (a
        // loop that always runs: no test to skip it, no second copy of
        // what follows it).
        let mut k = entries.len();
        loop {
            // (No branch in the body but the loop's own: with one, LLVM
            // rotates the loop there, and the first pass, fallen into from
            // the code before, was translated again for the jump back.)
            crate::mem::block_boundary();
            let r = entries.get(k.wrapping_sub(1)).map_or(NONE, Cell::get);
            covered |= (r.range.start < range.end) & (range.start < r.range.end);
            let above = Range::new(r.range.start.max(range.end), r.range.end);
            w = put(w, Region { range: above, ..r });
            let here = lay & (r.range.start < range.end);
            at = select_unpredictable(here, w - 1, at);
            w -= here as usize;
            lay &= !here;
            let below = Range::new(r.range.start, r.range.end.min(range.start));
            w = put(w, Region { range: below, ..r });
            if k == 0 {
                break;
            }
            k -= 1;
        }
        slots[select_unpredictable(at < slots.len(), at, 0)].set(Region {
            range,
            typ: typ.unwrap_or(0),
        });
        self.merge(w);
        Ok(covered as usize)
    }

    pub(super) fn push(&mut self, region: Region) -> Result<(), E820Error> {
        Ok(self.regions.push(region)?)
    }

    /// Sorts by start and merges touching entries of the same type.
    pub(super) fn normalize(&mut self) {
        self.regions
            .as_mut_slice()
            .sort_unstable_by_key(|r| r.range.start);
        self.merge(0);
    }

    /// Merges touching entries of the same type of the sorted entries
    /// `from..`, moving them to the bottom of the map, which ends with
    /// them: each entry either extends the last one kept or is kept,
    /// chosen by a select rather than a branch. (Inlined: called once on
    /// the boot path, its call and its saved registers cost more.)
    #[inline(always)]
    fn merge(&mut self, from: usize) {
        let regions = Cell::from_mut(self.regions.as_mut_slice()).as_slice_of_cells();
        let mut kept = 0;
        // Joins nothing: no entry starts where it ends.
        let mut last = END;
        for n in from..regions.len() {
            crate::mem::block_boundary();
            let r = regions[n].get();
            let joins = (last.typ == r.typ) & (last.range.end == r.range.start);
            let at = kept - joins as usize;
            last = Region {
                range: Range::new(
                    select_unpredictable(joins, last.range.start, r.range.start),
                    r.range.end,
                ),
                typ: r.typ,
            };
            regions[at].set(last);
            kept = at + 1;
        }
        self.regions.truncate(kept);
    }
}
