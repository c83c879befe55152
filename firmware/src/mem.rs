//! The memory layer under both the Linux and the platform parts: physical
//! ranges and alignment, where ferrite puts things in guest-physical memory,
//! the high zone for the tables it hands over, and the ranges the final map
//! reserves. The e820 map itself is `crate::e820`.
//!
//! ```text
//! 0x0000_0000  IVT and BIOS data area            left as QEMU set them
//! 0x0000_1000  zero page (boot_params)           4 KiB     } Linux keeps its first 64 KiB
//! 0x0000_2000  kernel command line               56 KiB    } to itself and copies these early
//! 0x0001_0000  ferrite in RAM: code, data, bss,  572 KiB   free RAM once the kernel runs
//!              stack, heap (see linker.ld)
//! 0x0009_FC00  extended BIOS data area (pc, q35) 1 KiB     e820 reserved
//! 0x000A_0000  legacy VGA / option ROM / BIOS    not RAM in the e820 map
//! 0x000F_0000  BIOS segment (pc, q35): the other CPUs' start page, RSDP,
//!              SMBIOS entry point, MP table; shadow RAM, write-protected
//! 0x0010_0000  free RAM: the kernel at its pref_address (16 MiB for most kernels)
//!      ...
//! low top - N  initrd, as high as it fits below initrd_addr_max
//! low top      ferrite's high zone: ACPI tables, RSDP, setup_data   e820 reserved
//! 4 GiB - 64K  the ROM (reset vector, page tables, the RAM image)   e820 reserved
//! ```
//!
//! "low top" is the end of the RAM below the PCI hole (the RAM region holding 1 MiB).

/// A half-open physical range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    pub const fn new(start: u64, end: u64) -> Range {
        Range { start, end }
    }
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
    pub fn overlaps(&self, other: &Range) -> bool {
        self.start < other.end && other.start < self.end
    }
    pub fn contains(&self, other: &Range) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

/// `value` rounded up to `align` (a power of two); None past 2^64.
pub fn align_up(value: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// `cond`, as one branch: LLVM turns a branch on an or (an and) of
/// comparisons back into a branch per comparison, each of which ends a block
/// that TCG translates; passed through an empty `asm!` that LLVM cannot see
/// into, the combined test stays one. (In a register: `black_box` sent it
/// through the stack, a store and a load for TCG to translate at each use.)
#[inline(always)]
pub fn one_test(cond: bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let mut byte = cond as u8;
        // SAFETY: an empty instruction sequence: it reads and writes nothing
        // but the register that holds `byte`, which it leaves as it was.
        unsafe {
            core::arch::asm!(
                "/* {0} */",
                inout(reg_byte) byte,
                options(pure, nomem, nostack, preserves_flags)
            )
        };
        byte != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    core::hint::black_box(cond)
}

/// Ends the translation block that TCG is building at this point of a loop
/// body's top: a jump to the next instruction.
///
/// TCG translates a block from where execution enters it to its first jump.
/// A loop entered by falling into it from the code before (a loop that always
/// runs has no test in front) is translated twice: once at the end of the
/// block it falls in from, and again from its top when the back edge jumps
/// there. With this first in the body, the first block ends at the jump, the
/// body is one block of its own, and the back edge lands on a one-instruction
/// block. Worth it where the body is longer than a translated block's cost,
/// about seven instructions (README, "The cost model"). At run time it is one
/// jump per iteration.
#[inline(always)]
pub fn block_boundary() {
    // SAFETY: a jump to the very next instruction: it touches no memory, no
    // stack, no register and no flag.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::asm!("jmp 2f", "2:", options(nomem, nostack, preserves_flags))
    }
}

/// [`block_boundary`] that `index` passes through (returned unchanged), so
/// that what the body computes from it stays below the boundary: LLVM may
/// schedule a boundary that depends on nothing into the middle of the body,
/// and leave the part above it translated twice.
#[inline(always)]
pub fn block_boundary_for(index: usize) -> usize {
    let mut i = index;
    // SAFETY: a jump to the very next instruction, with `i` in a register it
    // leaves as it was: it touches no memory, no stack, no other register
    // and no flag.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::asm!(
            "jmp 2f",
            "2: /* {0} */",
            inout(reg) i,
            options(nomem, nostack, preserves_flags)
        )
    }
    i
}

/// [`block_boundary`] that `item` passes through (returned unchanged), so
/// that the body's reads of it stay below the boundary.
#[inline(always)]
pub fn block_boundary_ref<T>(item: &T) -> &T {
    let p = block_boundary_for(item as *const T as usize);
    // SAFETY: `p` is `item`'s address, which the boundary leaves as it was:
    // the reference is `item` itself, with its lifetime.
    unsafe { &*(p as *const T) }
}

/// Zeroes `bytes` eight at a time with one `rep stosq`, then the bytes after
/// the last whole word in a loop: for a few KiB (the zero page, the EBDA).
/// `fill(0)` was an indirect call to `memset` and its three `rep stos`
/// blocks, translated for this one use (0.5 M host instructions on
/// microvm); a loop of word stores ran two translated blocks per word, and
/// TCG runs a `rep stosq` iteration for less. (The 64 KiB BIOS segment goes
/// to fw_cfg: `FwCfg::zero_guest`.)
pub fn zero(bytes: &mut [u8]) {
    let (words, tail) = bytes.as_chunks_mut::<8>();
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `rep stosq` stores `words.len()` zero qwords from the start of
    // `words`, which is that long, and nothing else; DF is clear (boot.s
    // runs `cld` and nothing sets it; the System V ABI on the host).
    unsafe {
        core::arch::asm!(
            "rep stosq",
            inout("rcx") words.len() => _,
            inout("rdi") words.as_mut_ptr() => _,
            in("rax") 0u64,
            options(nostack, preserves_flags)
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    for word in words {
        *word = [0; 8];
    }
    for b in tail {
        block_boundary();
        *b = 0;
    }
}

/// Copies `src` into `dst` (of the same length) a byte at a time, in a loop
/// TCG translates once: for a copy of a few hundred bytes done once, as
/// [`zero`] is for `memset`, in place of a call to `memcpy`.
pub fn copy(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        block_boundary();
        *d = *s;
    }
}

pub const ZERO_PAGE: u64 = 0x1000;
pub const CMDLINE: u64 = 0x2000;
/// Room for the command line including its NUL.
pub const CMDLINE_ROOM: u64 = FIRMWARE_RAM.start - CMDLINE;
/// ferrite's RAM image, bss, stack and heap; must match `RAM` in linker.ld.
pub const FIRMWARE_RAM: Range = Range::new(0x1_0000, 0x9_F000);
/// The legacy hole, never RAM.
pub const LEGACY_HOLE: Range = Range::new(0xA_0000, 0x10_0000);
/// The BIOS segment: reserved like every PC BIOS does.
pub const BIOS_AREA: Range = Range::new(0xF_0000, 0x10_0000);
/// What microvm reserves as the BIOS's below 1 MiB: the whole legacy hole,
/// as Linux's own PVH entry reserves it. microvm has no VGA, QEMU maps the
/// ROM's last 128 KiB at 0xE0000 (ROM there, no PAM), and the tables' zone
/// below it is RAM that is reserved anyway. With the EBDA below it, the
/// first MiB from 0x9FC00 up is then one e820 entry, not three, and each
/// entry costs Linux's direct-map set-up about 60,000 instructions: it
/// walks the e820 table for every page-table slot past what it maps
/// (`e820__mapped_any`), some 2,000 times. The ROM's alias alone joined to
/// the tables brought the small kernel's bzImage to `kernel_init` 0.59 ms
/// of its clock sooner (icount, 2026-12-03).
pub const MICROVM_LEGACY: Range = LEGACY_HOLE;
/// The high zone never grows beyond this.
pub const HIGH_ZONE_MAX: u64 = 16 << 20;
/// Where microvm's tables go when they fit: RAM in the legacy hole (microvm
/// has no VGA and maps only the ROM's last 128 KiB there, at 0xE0000), below
/// 1 MiB as qboot keeps its own (0xD0000-0xEFFFF, with its 64 KiB ROM).
/// Linux reaches the first MiB through its direct mapping; tables at the top
/// of RAM it maps and unmaps again at every access.
pub const LOW_TABLES: Range = Range::new(0xC_0000, 0xE_0000);
/// Where pc's and q35's tables go when they fit: the shadow RAM below the
/// BIOS segment, which the chipset's PAM set-up makes RAM before the tables
/// are installed and leaves RAM (as the S3 resume script does again before
/// it reads the FACS there). Room for QEMU's 128 KiB table blob. Below
/// 1 MiB, the RAM below 4 GiB ends on a 2 MiB boundary, which Linux maps
/// with 2 MiB pages to its end: the small kernel's own work to
/// `kernel_init`, counted exactly under icount, shrank by 3.4 to 4.2 ms
/// against tables at the top of that RAM (2026-12-03).
pub const LOW_TABLES_PC: Range = Range::new(0xC_0000, 0xF_0000);
/// What a low zone keeps free beside QEMU's files (the table loader's and
/// SMBIOS's) and the kernel's `setup_data`, which are counted: for the MP
/// table on microvm and room for a long memory map. When those leave less,
/// the zone goes to the top of low RAM.
pub const LOW_TABLES_SPARE: u64 = 48 << 10;

const _: () = {
    assert!(ZERO_PAGE + 4096 <= CMDLINE);
    assert!(CMDLINE + CMDLINE_ROOM <= FIRMWARE_RAM.start);
    assert!(FIRMWARE_RAM.end <= LEGACY_HOLE.start);
};

/// A downward bump allocator for tables handed to the kernel, below the top of
/// low RAM. Everything it hands out is reported as e820 reserved.
#[derive(Clone, Copy, Debug)]
pub struct HighZone {
    top: u64,
    next: u64,
    limit: u64,
}

impl HighZone {
    pub fn new(low_ram_top: u64) -> HighZone {
        let top = low_ram_top & !0xFFF;
        HighZone {
            top,
            next: top,
            limit: top.saturating_sub(HIGH_ZONE_MAX).max(0x10_0000),
        }
    }

    /// The zone in `range` instead, from its top down.
    pub const fn within(range: Range) -> HighZone {
        HighZone {
            top: range.end,
            next: range.end,
            limit: range.start,
        }
    }

    /// `size` bytes aligned to `align` (a power of two), or None when full.
    pub fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        let (below, under) = self.next.overflowing_sub(size);
        let start = below & !(align.max(16) - 1);
        if one_test(!align.is_power_of_two() | under | (start < self.limit)) {
            return None;
        }
        self.next = start;
        Some(start)
    }

    /// Keeps the zone from growing into `busy` (memory already in use below
    /// the top of low RAM, e.g. kernel segments QEMU loaded there). False when
    /// `busy` overlaps what the zone has already handed out.
    pub fn avoid(&mut self, busy: Range) -> bool {
        if busy.is_empty() || busy.end <= self.limit || busy.start >= self.top {
            return true;
        }
        if busy.end > self.next {
            return false;
        }
        self.limit = busy.end;
        true
    }

    /// Everything handed out so far, rounded out to pages.
    pub fn used(&self) -> Range {
        Range::new(self.next & !0xFFF, self.top)
    }
}

/// The ranges the final memory map reserves beside the high zone, laid there
/// by the parts that use them: the BIOS segment and the ROM from the start,
/// the chipset's (EBDA, MMCONFIG, RCBA) as the set-up claims them. The
/// kernel, the initrd and the tables are placed clear of them, and of the
/// two ranges [`Reservations::busy`] lays beside them.
#[derive(Clone, Copy, Debug)]
pub struct Reservations {
    /// The BIOS segment first, then the zone's slot, the ROM, the chipset's
    /// in the order they were reserved, and last the slot for one more range
    /// to go clear of; unused slots are empty ranges. One array, so that
    /// the placement code and the final map get their lists without a copy.
    ranges: [Range; Reservations::SLOTS],
    chipset: usize,
}

impl Reservations {
    /// The BIOS segment, the ROM, and three of the chipset's.
    pub const CAPACITY: usize = 5;
    const CHIPSET: usize = Reservations::CAPACITY - 2;
    /// The reservations and the two placement slots beside them.
    pub const SLOTS: usize = Reservations::CAPACITY + 2;
    const BIOS: usize = 0;
    const ZONE: usize = 1;
    const ROM: usize = 2;
    const ALSO: usize = Reservations::SLOTS - 1;

    /// `bios`: what below 1 MiB is the BIOS's, [`BIOS_AREA`] or on microvm
    /// [`MICROVM_LEGACY`].
    pub fn new(rom: Range, bios: Range) -> Reservations {
        let mut ranges = [Range::new(0, 0); Reservations::SLOTS];
        ranges[Reservations::BIOS] = bios;
        ranges[Reservations::ROM] = rom;
        Reservations { ranges, chipset: 0 }
    }

    /// Reserves one of the chipset's ranges. More than three is a bug in
    /// ferrite (the parts that reserve are fixed), and panics.
    pub fn add(&mut self, range: Range) {
        assert!(
            self.chipset < Reservations::CHIPSET,
            "too many reservations"
        );
        self.ranges[Reservations::ROM + 1 + self.chipset] = range;
        self.chipset += 1;
    }

    /// What a kernel blob goes clear of: `zone` (the high zone as it is
    /// now), `also`, and every reservation; a fixed-size list, the unused
    /// slots empty ranges.
    pub fn busy(&mut self, zone: Range, also: Range) -> &[Range; Reservations::SLOTS] {
        self.ranges[Reservations::ZONE] = zone;
        self.ranges[Reservations::ALSO] = also;
        &self.ranges
    }

    /// What the final memory map reserves: `tables` (the high zone) and
    /// every reservation, no unused slot among them, the BIOS segment first.
    pub fn reserved(&mut self, tables: Range) -> &[Range] {
        self.ranges[Reservations::ZONE] = tables;
        // (`add` keeps the count in bounds; the `min` tells the compiler so,
        // with no check to translate.)
        &self.ranges[..(Reservations::ROM + 1 + self.chipset).min(Reservations::SLOTS)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boundaries hand back what they were given: the index, and the
    /// very reference (not a copy of what it points at).
    #[test]
    fn block_boundaries_pass_their_operand_through() {
        for i in [0, 1, 7, usize::MAX] {
            assert_eq!(block_boundary_for(i), i);
        }
        let items = [3u32, 5, 9];
        for item in &items {
            assert!(core::ptr::eq(block_boundary_ref(item), item));
        }
    }

    #[test]
    fn zero_and_copy_cover_every_byte_and_no_more() {
        for len in [0, 1, 7, 8, 9, 64, 4096, 4099] {
            let mut buf = std::vec![0xA5u8; len + 2];
            zero(&mut buf[1..=len]);
            assert_eq!(buf[0], 0xA5);
            assert!(buf[1..=len].iter().all(|&b| b == 0), "{len}");
            assert_eq!(buf[len + 1], 0xA5);
            let src: std::vec::Vec<u8> = (0..len).map(|i| i as u8 ^ 0x3C).collect();
            copy(&mut buf[1..=len], &src);
            assert_eq!(&buf[1..=len], &src[..]);
            assert_eq!((buf[0], buf[len + 1]), (0xA5, 0xA5));
        }
    }

    #[test]
    fn high_zone_grows_down_aligned_and_stops_at_its_limit() {
        let mut z = HighZone::new(128 << 20);
        let a = z.alloc(100, 16).unwrap();
        assert_eq!(a, (128 << 20) - 112);
        let b = z.alloc(4096, 4096).unwrap();
        assert_eq!(b % 4096, 0);
        assert!(b + 4096 <= a);
        assert_eq!(z.used(), Range::new(b, 128 << 20));
        assert!(z.alloc(HIGH_ZONE_MAX, 16).is_none());
        assert!(z.alloc(16, 3).is_none());
        assert!(z.alloc(u64::MAX, 16).is_none());
        // memory in use below the zone's top: the zone stops above it
        let mut z = HighZone::new(128 << 20);
        assert!(z.avoid(Range::new(16 << 20, 120 << 20)));
        assert!(z.alloc(8 << 20, 16).is_some());
        assert!(z.alloc(16, 16).is_none());
        assert!(z.avoid(Range::new(0, 1 << 20)));
        assert!(!z.avoid(Range::new(127 << 20, 129 << 20)));
        // a tiny machine: the zone never reaches below 1 MiB
        let mut z = HighZone::new(0x11_0000);
        assert!(z.alloc(0x1_0000, 16).is_some());
        assert!(z.alloc(16, 16).is_none());
    }

    #[test]
    fn a_zone_within_a_range_stays_in_it() {
        let mut z = HighZone::within(LOW_TABLES);
        assert_eq!(z.alloc(0x24, 16), Some(LOW_TABLES.end - 0x30));
        assert_eq!(
            z.used(),
            Range::new(LOW_TABLES.end - 0x1000, LOW_TABLES.end)
        );
        assert!(z.alloc(LOW_TABLES.len(), 16).is_none());
        let rest = z.next - LOW_TABLES.start;
        assert_eq!(z.alloc(rest, 16), Some(LOW_TABLES.start));
        assert!(z.alloc(16, 16).is_none());
    }
}
