//! The Linux boot protocol decisions: is this a kernel ferrite can boot, through
//! which entry, and where do the kernel and the initrd go.
//!
//! Pure logic over the setup header and the memory map, tested on the host.

use core::hint::select_unpredictable;

use crate::bootparams::{BOOT_FLAG, HDRS_MAGIC, SetupHeader, loadflags, xloadflags};
use crate::e820::{MemoryMap, NOWHERE, Prefer};
use crate::error::Error;
use crate::mem::{Range, one_test};

/// Oldest protocol ferrite boots: 2.06 (Linux 2.6.22) brings `cmdline_size`, and
/// everything older also lacks a trustworthy `initrd_addr_max`.
pub const MIN_PROTOCOL: u16 = 0x0206;
/// `initrd_addr_max` before protocol 2.03.
const LEGACY_INITRD_ADDR_MAX: u32 = 0x37FF_FFFF;
/// Lowest address the kernel may be put at: the protected-mode load address of
/// every bzImage.
pub const KERNEL_FLOOR: u64 = 0x10_0000;
const FOUR_GIB: u64 = 1 << 32;
const PAGE: u64 = 4096;
/// Where the initrd ends when it can. Linux maps its RAM with 2 MiB pages,
/// and with 4 KiB ones where the RAM below 4 GiB ends off a 2 MiB boundary:
/// with the table zone at the top of low RAM (tables too large for below
/// 1 MiB, and before 2026-12-03 on pc and q35 always). An initrd there cost
/// the small kernel 2.8 to 3.1 ms of its own clock to `kernel_init`,
/// counted exactly under icount (`cargo xtask host-cost --kernel-init`; the
/// performance history, 2026-12-03). Where the RAM ends on a boundary, the
/// second search finds the first's place again.
pub const INITRD_END_ALIGN: u64 = 2 << 20;

/// Which entry point the kernel is entered through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Long mode, paging on, at load address + 0x200 (XLF_KERNEL_64).
    Bits64,
    /// Protected mode, paging off, at the load address (`code32_start`).
    Bits32,
}

/// What ferrite needs to know about a kernel, validated.
///
/// The header's 32-bit fields stay 32-bit: at 32 bytes the description is
/// moved in registers rather than copied with a `rep movs` (a translation
/// block of its own under TCG) and a run of stack loads and stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelInfo {
    pub version: u16,
    pub entry: Entry,
    pub relocatable: bool,
    /// Where a non-relocatable kernel must run, and where a relocatable one runs best.
    pub pref_address: u64,
    /// A power of two, at least 4096.
    pub alignment: u32,
    /// Contiguous memory the kernel needs from its run-time start.
    pub init_size: u32,
    /// Longest command line the kernel accepts, without the NUL.
    pub cmdline_max: u32,
    /// Highest address the initrd may occupy (inclusive), below 4 GiB.
    pub initrd_addr_max: u32,
    /// Kernel, initrd, zero page and command line may be placed above 4 GiB.
    pub above_4g: bool,
}

const _: () = assert!(core::mem::size_of::<KernelInfo>() <= 32);

impl KernelInfo {
    /// Validates a setup header (as read from QEMU's SETUP_DATA item).
    pub fn from_header(hdr: &SetupHeader) -> Result<KernelInfo, Error> {
        let mut info = KernelInfo::EMPTY;
        info.read_header(hdr)?;
        Ok(info)
    }

    /// Nothing known yet.
    pub const EMPTY: KernelInfo = KernelInfo {
        version: 0,
        entry: Entry::Bits64,
        relocatable: false,
        pref_address: 0,
        alignment: 0,
        init_size: 0,
        cmdline_max: 0,
        initrd_addr_max: 0,
        above_4g: false,
    };

    /// [`KernelInfo::from_header`] in place: the description is written
    /// where it stays, then the checks are tested (on an error it holds
    /// the refused header's fields). Returned through a `Result`, the
    /// description was copied twice on its way (stack loads and stores,
    /// which under TCG are the costly instructions).
    #[inline(always)]
    pub fn read_header(&mut self, hdr: &SetupHeader) -> Result<(), Error> {
        let SetupHeader {
            header,
            boot_flag,
            version,
            loadflags,
            xloadflags,
            relocatable_kernel,
            kernel_alignment,
            pref_address,
            init_size,
            cmdline_size,
            initrd_addr_max,
            ..
        } = *hdr;
        let xlf = if version >= 0x020C { xloadflags } else { 0 };
        let entry = if xlf & xloadflags::KERNEL_64 != 0 {
            Entry::Bits64
        } else {
            Entry::Bits32
        };
        let relocatable = (version >= 0x0205) & (relocatable_kernel != 0);
        let alignment = if version >= 0x0205 {
            kernel_alignment
        } else {
            PAGE as u32
        };
        let v2_10 = version >= 0x020A;
        let pref_address = select_unpredictable(v2_10, pref_address, KERNEL_FLOOR);
        let init_size = select_unpredictable(v2_10, init_size, 0);
        let initrd_addr_max = if version >= 0x0203 {
            initrd_addr_max
        } else {
            LEGACY_INITRD_ADDR_MAX
        };
        // Every check in one test (a boot takes none of them); which one
        // failed is worked out only then, in the order they are listed.
        let failed = [
            (header != HDRS_MAGIC) | (boot_flag != BOOT_FLAG),
            version < MIN_PROTOCOL,
            // A zImage: its protected-mode code runs at 0x10000 and needs real mode.
            loadflags & loadflags::LOADED_HIGH == 0,
            relocatable & (!alignment.is_power_of_two() | (alignment < PAGE as u32)),
            pref_address < KERNEL_FLOOR,
        ];
        *self = KernelInfo {
            version,
            entry,
            relocatable,
            pref_address,
            alignment: alignment.max(PAGE as u32),
            init_size,
            cmdline_max: cmdline_size,
            initrd_addr_max,
            above_4g: (entry == Entry::Bits64) & (xlf & xloadflags::CAN_BE_LOADED_ABOVE_4G != 0),
        };
        if one_test(failed[0] | failed[1] | failed[2] | failed[3] | failed[4]) {
            return Err(header_error(failed, version));
        }
        Ok(())
    }

    /// Checks a command line of `len` bytes (without its NUL).
    pub fn check_cmdline(&self, len: u64) -> Result<(), Error> {
        if len > self.cmdline_max as u64 {
            return Err(Error::CmdlineTooLong {
                len,
                max: self.cmdline_max as u64,
            });
        }
        Ok(())
    }
}

/// The first of [`KernelInfo::from_header`]'s checks that `failed`.
#[cold]
#[inline(never)]
fn header_error(failed: [bool; 5], version: u16) -> Error {
    let errors = [
        Error::NotBzImage,
        Error::ProtocolTooOld { version },
        Error::NotBzImage,
        Error::BadHeader("kernel_alignment is not a power of two >= 4096"),
        Error::BadHeader("pref_address is below 1 MiB"),
    ];
    let first = failed.iter().position(|&f| f).unwrap_or(0);
    errors[first]
}

/// Chooses the kernel's load address and returns the memory it occupies while it
/// decompresses and starts: `[load, load + max(init_size, kernel_size))`.
///
/// * A non-relocatable kernel goes to `pref_address`, or the boot fails.
/// * A relocatable one goes to the lowest `alignment`-aligned address at or above
///   `pref_address` where that much RAM is free (below 4 GiB first, above it when
///   the kernel allows). A 64-bit kernel never runs below `pref_address` anyway:
///   its decompressor moves itself up there.
///
/// `busy` lists the ranges already taken (firmware tables and the like).
pub fn place_kernel(
    info: &KernelInfo,
    kernel_size: u64,
    map: &MemoryMap,
    busy: &[Range],
) -> Result<Range, Error> {
    let needed = (info.init_size as u64).max(kernel_size);
    let does_not_fit = Error::KernelDoesNotFit {
        size: needed,
        at: info.pref_address,
    };
    // One search for both kinds (a fixed kernel's window is its own
    // footprint, at any alignment), and one test for every way the numbers
    // can overflow: a kernel that fits nowhere, with the same error.
    let footprint = needed.wrapping_add(PAGE - 1) & !(PAGE - 1);
    let align = select_unpredictable(info.relocatable, info.alignment as u64, 1);
    let floor = info.pref_address.wrapping_add(align - 1) & !(align - 1);
    let (end, wraps) = floor.overflowing_add(footprint);
    let overflows = (footprint < needed) | (floor < info.pref_address) | wraps;
    let window = Range::new(floor, select_unpredictable(info.relocatable, FOUR_GIB, end));
    let found = map.fit(footprint, align, window, busy, Prefer::Lowest);
    if one_test(found.is_none() | overflows) {
        return place_kernel_above_4g(info, footprint, floor, overflows, map, busy)
            .ok_or(does_not_fit);
    }
    let start = found.unwrap_or(0);
    Ok(Range::new(start, start + footprint))
}

/// Where a relocatable kernel goes above 4 GiB when it fits nowhere below
/// and may go there (not on an ordinary boot: out of line).
#[cold]
#[inline(never)]
fn place_kernel_above_4g(
    info: &KernelInfo,
    footprint: u64,
    floor: u64,
    overflows: bool,
    map: &MemoryMap,
    busy: &[Range],
) -> Option<Range> {
    if overflows || !info.relocatable || !info.above_4g {
        return None;
    }
    let window = Range::new(FOUR_GIB.max(floor), u64::MAX);
    let start = map.fit(
        footprint,
        info.alignment as u64,
        window,
        busy,
        Prefer::Lowest,
    )?;
    Some(Range::new(start, start + footprint))
}

/// Chooses where the initrd goes: as high as possible below `initrd_addr_max`, as
/// QEMU and SeaBIOS place it; above 4 GiB only if it fits nowhere below and the
/// kernel allows it. `busy` must include the kernel's range.
#[inline]
pub fn place_initrd(
    info: &KernelInfo,
    initrd_size: u64,
    map: &MemoryMap,
    busy: &[Range],
) -> Result<Option<Range>, Error> {
    let addr_max = info.initrd_addr_max as u64;
    place_initrd_below(initrd_size, addr_max, info.above_4g, map, busy)
}

/// [`place_initrd`] for a kernel without a setup header (PVH): as high as
/// possible at or below `addr_max` (inclusive) while ending at a 2 MiB
/// boundary ([`INITRD_END_ALIGN`]), as high as possible when it cannot end at
/// one, above 4 GiB only when it fits nowhere below and `above_4g` allows. (Inline: its `Result` folds into
/// the caller's test rather than going through memory.)
#[inline]
pub fn place_initrd_below(
    initrd_size: u64,
    addr_max: u64,
    above_4g: bool,
    map: &MemoryMap,
    busy: &[Range],
) -> Result<Option<Range>, Error> {
    let ceiling = addr_max.saturating_add(1).min(FOUR_GIB);
    // No initrd: nowhere to look, and no error for finding nothing.
    let window = select_unpredictable(initrd_size == 0, NOWHERE, Range::new(KERNEL_FLOOR, ceiling));
    let found = map
        .fit(initrd_size, PAGE, window, busy, Prefer::Highest)
        .map(|start| {
            // Lower, to end at a 2 MiB boundary, when it fits there.
            let below = (start + initrd_size) & !(INITRD_END_ALIGN - 1);
            let window = Range::new(window.start, below.max(window.start));
            map.fit(initrd_size, PAGE, window, busy, Prefer::Highest)
                .unwrap_or(start)
        });
    if one_test(found.is_none() & (initrd_size != 0)) {
        return place_initrd_above_4g(initrd_size, ceiling, above_4g, map, busy).map(Some);
    }
    Ok(found.map(|start| Range::new(start, start + initrd_size)))
}

/// Where an initrd goes above 4 GiB when it fits nowhere below and may go
/// there (not on an ordinary boot: out of line).
#[cold]
#[inline(never)]
fn place_initrd_above_4g(
    size: u64,
    ceiling: u64,
    above_4g: bool,
    map: &MemoryMap,
    busy: &[Range],
) -> Result<Range, Error> {
    let window = Range::new(FOUR_GIB, u64::MAX);
    above_4g
        .then(|| map.fit(size, PAGE, window, busy, Prefer::Highest))
        .flatten()
        .map(|start| Range::new(start, start + size))
        .ok_or(Error::InitrdDoesNotFit {
            size,
            limit: ceiling,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootparams::e820_type::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn header() -> SetupHeader {
        crate::test_support::setup_header()
    }

    /// Kernel first, then the initrd next to it, as the firmware does.
    fn place(
        info: &KernelInfo,
        kernel_size: u64,
        initrd_size: u64,
        map: &MemoryMap,
        busy: &[Range],
    ) -> Result<(u64, Range, Option<Range>), Error> {
        let k = place_kernel(info, kernel_size, map, busy)?;
        let mut taken = busy.to_vec();
        taken.push(k);
        let i = place_initrd(info, initrd_size, map, &taken)?;
        Ok((k.start, k, i))
    }

    fn map(entries: &[(u64, u64, u32)]) -> MemoryMap {
        let mut m = MemoryMap::new();
        for &(s, e, t) in entries {
            m.insert(Range::new(s, e), t).unwrap();
        }
        m
    }

    #[test]
    fn a_modern_kernel_uses_the_64_bit_entry() {
        let info = KernelInfo::from_header(&header()).unwrap();
        assert_eq!(info.entry, Entry::Bits64);
        assert!(info.relocatable && info.above_4g);
        assert_eq!(info.pref_address, 16 * MIB);
    }

    #[test]
    fn entry_and_flags_depend_on_the_protocol_version() {
        let mut h = header();
        h.xloadflags = 0;
        assert_eq!(KernelInfo::from_header(&h).unwrap().entry, Entry::Bits32);
        // xloadflags does not exist before 2.12: garbage there is ignored
        let mut h = header();
        h.version = 0x020B;
        let info = KernelInfo::from_header(&h).unwrap();
        assert_eq!(info.entry, Entry::Bits32);
        assert!(!info.above_4g);
        // before 2.10 there is no pref_address/init_size
        h.version = 0x0209;
        let info = KernelInfo::from_header(&h).unwrap();
        assert_eq!((info.pref_address, info.init_size), (KERNEL_FLOOR, 0));
        h.version = 0x0206;
        h.relocatable_kernel = 0;
        assert!(!KernelInfo::from_header(&h).unwrap().relocatable);
    }

    #[test]
    fn rejects_what_it_cannot_boot() {
        let mut h = header();
        h.header = 0x1234_5678;
        assert_eq!(KernelInfo::from_header(&h), Err(Error::NotBzImage));
        let mut h = header();
        h.boot_flag = 0;
        assert_eq!(KernelInfo::from_header(&h), Err(Error::NotBzImage));
        let mut h = header();
        h.version = 0x0204;
        assert_eq!(
            KernelInfo::from_header(&h),
            Err(Error::ProtocolTooOld { version: 0x0204 })
        );
        let mut h = header();
        h.loadflags = 0; // zImage
        assert_eq!(KernelInfo::from_header(&h), Err(Error::NotBzImage));
        let mut h = header();
        h.kernel_alignment = 3 * MIB as u32;
        assert!(matches!(
            KernelInfo::from_header(&h),
            Err(Error::BadHeader(_))
        ));
        let mut h = header();
        h.kernel_alignment = 0;
        assert!(matches!(
            KernelInfo::from_header(&h),
            Err(Error::BadHeader(_))
        ));
        let mut h = header();
        h.pref_address = 0x1000;
        assert!(matches!(
            KernelInfo::from_header(&h),
            Err(Error::BadHeader(_))
        ));
    }

    #[test]
    fn cmdline_limit() {
        let mut h = header();
        h.cmdline_size = 255;
        let info = KernelInfo::from_header(&h).unwrap();
        assert!(info.check_cmdline(255).is_ok());
        assert_eq!(
            info.check_cmdline(256),
            Err(Error::CmdlineTooLong { len: 256, max: 255 })
        );
    }

    #[test]
    fn places_kernel_at_pref_and_initrd_at_the_top() {
        let info = KernelInfo::from_header(&header()).unwrap();
        let m = map(&[(0, 0xA_0000, RAM), (MIB, 128 * MIB, RAM)]);
        let high_zone = Range::new(128 * MIB - 256 * 1024, 128 * MIB);
        let p = place(&info, 10 * MIB, 5 * MIB + 3, &m, &[high_zone]).unwrap();
        assert_eq!(p.0, 16 * MIB);
        assert_eq!(p.1, Range::new(16 * MIB, 56 * MIB));
        let initrd = p.2.unwrap();
        assert_eq!(initrd.start % 4096, 0);
        assert_eq!(initrd.len(), 5 * MIB + 3);
        // the highest place that ends at (a page at most below) a 2 MiB
        // boundary under the zone
        assert!(initrd.end <= 126 * MIB && 126 * MIB - initrd.end < 4096);
    }

    #[test]
    fn initrd_ends_at_a_2mib_boundary_when_it_can() {
        let info = KernelInfo::from_header(&header()).unwrap();
        // SeaBIOS's layout for 512 MiB: the RAM ends 132 KiB short of 512 MiB
        let m = map(&[(MIB, 0x1FFD_F000, RAM), (0x1FFD_F000, 512 * MIB, 2)]);
        let i = place_initrd(&info, 0x1E_7000, &m, &[]).unwrap().unwrap();
        assert_eq!(i, Range::new(510 * MIB - 0x1E_7000, 510 * MIB));
        // already on a boundary: as high as it goes
        let m = map(&[(MIB, 64 * MIB, RAM)]);
        let i = place_initrd(&info, 3 * MIB, &m, &[]).unwrap().unwrap();
        assert_eq!(i, Range::new(61 * MIB, 64 * MIB));
        // no room below the boundary (busy memory): as high as it goes
        let busy = [Range::new(MIB, 64 * MIB - 0x4000)];
        let m = map(&[(MIB, 64 * MIB + 0x8000, RAM)]);
        let i = place_initrd(&info, 0x8000, &m, &busy).unwrap().unwrap();
        assert_eq!(i, Range::new(64 * MIB, 64 * MIB + 0x8000));
        // the kernel's ceiling still holds
        let mut h = header();
        h.initrd_addr_max = 0x3F_FFFF; // 4 MiB
        let info = KernelInfo::from_header(&h).unwrap();
        let i = place_initrd(&info, 0x1000, &m, &[]).unwrap().unwrap();
        assert_eq!(i.end, 4 * MIB);
    }

    #[test]
    fn relocatable_kernel_moves_past_busy_memory_and_above_4g() {
        let info = KernelInfo::from_header(&header()).unwrap();
        let m = map(&[(MIB, 3 * GIB, RAM), (4 * GIB, 6 * GIB, RAM)]);
        let busy = [Range::new(20 * MIB, 21 * MIB)];
        let p = place(&info, 10 * MIB, 0, &m, &busy).unwrap();
        assert_eq!(p.0, 22 * MIB); // next 2 MiB boundary after the busy range
        assert_eq!(p.2, None);
        // no room below 4 GiB: goes above, since the kernel allows it
        let m = map(&[(MIB, 32 * MIB, RAM), (4 * GIB, 6 * GIB, RAM)]);
        let p = place(&info, 10 * MIB, 0, &m, &[]).unwrap();
        assert_eq!(p.0, 4 * GIB);
    }

    #[test]
    fn fixed_kernel_must_get_its_address() {
        let mut h = header();
        h.relocatable_kernel = 0;
        let info = KernelInfo::from_header(&h).unwrap();
        let m = map(&[(MIB, 40 * MIB, RAM)]);
        assert_eq!(
            place(&info, 10 * MIB, 0, &m, &[]),
            Err(Error::KernelDoesNotFit {
                size: 40 * MIB,
                at: 16 * MIB
            })
        );
        let m = map(&[(MIB, 128 * MIB, RAM)]);
        assert_eq!(place(&info, 10 * MIB, 0, &m, &[]).unwrap().0, 16 * MIB);
        let busy = [Range::new(30 * MIB, 31 * MIB)];
        assert!(place(&info, 10 * MIB, 0, &m, &busy).is_err());
    }

    #[test]
    fn initrd_respects_initrd_addr_max_and_4g_rules() {
        let mut h = header();
        h.initrd_addr_max = 64 * MIB as u32 - 1;
        let info = KernelInfo::from_header(&h).unwrap();
        let m = map(&[(MIB, 3 * GIB, RAM), (4 * GIB, 5 * GIB, RAM)]);
        let p = place(&info, 10 * MIB, 4 * MIB, &m, &[]).unwrap();
        assert_eq!(p.2.unwrap(), Range::new(60 * MIB, 64 * MIB));
        // 20 MiB does not fit between the kernel (16..56 MiB) and 64 MiB, nor below
        // 16 MiB: above 4 GiB it goes
        let p = place(&info, 10 * MIB, 20 * MIB, &m, &[]).unwrap();
        assert_eq!(p.2.unwrap().start, 5 * GIB - 20 * MIB);
        // a kernel that cannot take it above 4 GiB: clear error
        h.xloadflags = xloadflags::KERNEL_64;
        let info = KernelInfo::from_header(&h).unwrap();
        assert_eq!(
            place(&info, 10 * MIB, 20 * MIB, &m, &[]),
            Err(Error::InitrdDoesNotFit {
                size: 20 * MIB,
                limit: 64 * MIB
            })
        );
    }

    #[test]
    fn hostile_sizes_do_not_overflow() {
        let mut h = header();
        h.init_size = u32::MAX;
        h.pref_address = u64::MAX - MIB;
        h.relocatable_kernel = 0;
        let info = KernelInfo::from_header(&h).unwrap();
        let m = map(&[(MIB, 128 * MIB, RAM)]);
        assert!(matches!(
            place(&info, 1, 0, &m, &[]),
            Err(Error::KernelDoesNotFit { .. })
        ));
        h.relocatable_kernel = 1;
        let info = KernelInfo::from_header(&h).unwrap();
        assert!(place(&info, 1, 0, &m, &[]).is_err());
        let info = KernelInfo::from_header(&header()).unwrap();
        assert!(matches!(
            place(&info, 10 * MIB, u64::MAX - 5, &m, &[]),
            Err(Error::InitrdDoesNotFit { .. })
        ));
    }
}
