//! Helpers shared by the unit tests of several modules.

use crate::bootparams::e820_type::{RAM, RESERVED};
use crate::e820::MemoryMap;
use crate::mem::Range;

/// A memory map of `n` entries that nothing merges: 1 MiB every 2 MiB, RAM
/// and reserved in turn. 300 of them is more than QEMU ever lists but what
/// the heap takes, and more than the 128 entries of a boot-information page
/// (PVH's start block, multiboot's table in the zero page's place).
pub(crate) fn many_ranges(n: u64) -> MemoryMap {
    let mut map = MemoryMap::new();
    for i in 0..n {
        let typ = if i % 2 == 0 { RAM } else { RESERVED };
        map.insert(Range::new(i << 21, (i << 21) + (1 << 20)), typ)
            .unwrap();
    }
    map
}
