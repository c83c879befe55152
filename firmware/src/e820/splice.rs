//! Laying a range into the sorted map: one splice for QEMU's entries, the
//! reservations and the holes, then touching entries of a type merged.

use core::cell::Cell;
use core::hint::select_unpredictable;

use super::{E820Error, MemoryMap, Region};
use crate::bootparams::e820_type;
use crate::mem::Range;

/// An empty entry, where one is needed before it is written.
const NONE: Region = Region {
    range: Range::new(0, 0),
    typ: 0,
};

/// A stand-in past the last entry: it ends at or below no range's start,
/// and starts below no range's end.
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
        self.overwrite(hole, None)?;
        for &range in reserved {
            self.overwrite(range, Some(e820_type::RESERVED))?;
        }
        Ok(())
    }

    /// Clears `range` out of the map and, with a type, puts it back as one
    /// entry of that type (an empty range changes nothing); returns whether
    /// `range` covered part of an entry (QEMU's entries must not: see
    /// [`MemoryMap::load_disjoint`]).
    ///
    /// One splice, no sort: a single pass finds the entries `range` covers
    /// (`i..j`) and the parts of the two at its edges that stay; those and
    /// the new entry (three pieces at most) take the place of `i..j`, the
    /// entries above moving by the difference; then touching entries merge.
    /// Its code is what QEMU's entries and the reservations make TCG
    /// translate on every boot, so the pass has no branch in its body, and
    /// the entries move element by element (`copy_within` would bring
    /// memmove's two paths); a boot only ever makes room, so the other
    /// direction (a range swallowing whole entries, those above moving
    /// down) is not even translated.
    pub(super) fn overwrite(&mut self, range: Range, typ: Option<u32>) -> Result<bool, E820Error> {
        // An empty range covers nothing and cuts nothing.
        let some = !range.is_empty();
        // One pass, run once more than there are entries (the last time on
        // a stand-in that counts for nothing) so that no test skips it.
        let regions = self.regions();
        let (mut i, mut j, mut k) = (0, 0, 0);
        loop {
            let r = regions.get(k).unwrap_or(&END);
            i += (some & (r.range.end <= range.start)) as usize;
            j += (some & (r.range.start < range.end)) as usize;
            k += 1;
            if k > regions.len() {
                break;
            }
        }
        // The entries at the edges, which keep what lies outside `range`
        // (`get` with a stand-in: a select, not a branch).
        let first = *regions.get(i).unwrap_or(&END);
        let last = *regions.get(j.wrapping_sub(1)).unwrap_or(&END);
        let has_left = some & (i < j) & (first.range.start < range.start);
        let has_new = some & typ.is_some();
        let has_right = some & (i < j) & (range.end < last.range.end);
        // The new pieces, packed: the part of the first entry left of
        // `range`, the new entry, the part of the last one right of it,
        // those there are (an absent one is written over by the next).
        let right = Region {
            range: Range::new(range.end, last.range.end),
            typ: last.typ,
        };
        let pieces = [const { Cell::new(NONE) }; 3];
        pieces[0].set(Region {
            range: Range::new(first.range.start, range.start),
            typ: first.typ,
        });
        pieces[has_left as usize].set(Region {
            range,
            typ: typ.unwrap_or(0),
        });
        pieces[has_left as usize + has_new as usize].set(right);
        let new = has_left as usize + has_new as usize + has_right as usize;
        let (len, gone) = (regions.len(), j - i);
        for _ in gone..new {
            self.push(NONE)?;
        }
        // Entries i.. are rewritten: the pieces, then those from j up.
        // Downwards unless the map shrank (each read at or below the writes
        // still to come), upwards when it did. Each from a pointer chosen by
        // a select.
        let new_len = len + new - gone;
        let regions = Cell::from_mut(self.regions.as_mut_slice()).as_slice_of_cells();
        let spliced = &regions[i.min(regions.len())..];
        let at = |k: usize| {
            let moved = &regions[(i + k + gone).saturating_sub(new).min(regions.len() - 1)];
            select_unpredictable(k < new, &pieces[k.min(2)], moved).get()
        };
        if new >= gone {
            for k in (0..spliced.len()).rev() {
                spliced[k].set(at(k));
            }
        } else {
            for (k, slot) in spliced.iter().enumerate() {
                slot.set(at(k));
            }
        }
        self.regions.truncate(new_len);
        self.merge();
        Ok(gone > 0)
    }

    pub(super) fn push(&mut self, region: Region) -> Result<(), E820Error> {
        Ok(self.regions.push(region)?)
    }

    /// Sorts by start and merges touching entries of the same type.
    pub(super) fn normalize(&mut self) {
        self.regions
            .as_mut_slice()
            .sort_unstable_by_key(|r| r.range.start);
        self.merge();
    }

    /// Merges touching entries of the same type of the sorted map: each
    /// entry either extends the last one kept or is kept, chosen by a
    /// select rather than a branch.
    fn merge(&mut self) {
        let regions = Cell::from_mut(self.regions.as_mut_slice()).as_slice_of_cells();
        let mut kept = 0;
        let mut last = NONE;
        for n in 0..regions.len() {
            let r = regions[n].get();
            let joins = (kept > 0) & (last.typ == r.typ) & (last.range.end == r.range.start);
            let at = kept - joins as usize;
            last = Region {
                range: Range::new(
                    select_unpredictable(joins, last.range.start, r.range.start),
                    r.range.end,
                ),
                typ: r.typ,
            };
            regions[at.min(n)].set(last);
            kept = at + 1;
        }
        self.regions.truncate(kept);
    }
}
