//! Helpers shared by the unit tests of several modules.

use crate::bootparams::e820_type::{RAM, RESERVED};
use crate::bootparams::{BOOT_FLAG, HDRS_MAGIC, SetupHeader, loadflags, xloadflags};
use crate::e820::MemoryMap;
use crate::mem::Range;

/// A small deterministic generator (xorshift64*) for the tests that check
/// code against a model on inputs drawn at random.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

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

/// A modern kernel's setup header (protocol 2.15): 64-bit entry, loadable
/// above 4 GiB, relocatable with 2 MiB alignment, 16 MiB preferred, 40 MiB to
/// run in.
pub(crate) fn setup_header() -> SetupHeader {
    let mut img = [0u8; 0x400];
    img[0x1FE..0x200].copy_from_slice(&BOOT_FLAG.to_le_bytes());
    img[0x202..0x206].copy_from_slice(&HDRS_MAGIC.to_le_bytes());
    let mut h = *SetupHeader::in_image(&img).unwrap();
    h.version = 0x020F;
    h.loadflags = loadflags::LOADED_HIGH;
    h.xloadflags = xloadflags::KERNEL_64 | xloadflags::CAN_BE_LOADED_ABOVE_4G;
    h.relocatable_kernel = 1;
    h.kernel_alignment = 2 << 20;
    h.pref_address = 16 << 20;
    h.init_size = 40 << 20;
    h.cmdline_size = 2047;
    h.initrd_addr_max = 0x7FFF_FFFF;
    h
}
