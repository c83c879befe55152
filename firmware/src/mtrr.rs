//! Memory type range registers as SeaBIOS programs them (`src/fw/mtrr.c`,
//! rel-1.16.2): RAM write-back, the legacy VGA hole uncached, the BIOS area
//! write-protected, the 32-bit PCI window uncached, `MTRRdefType` enabled with
//! write-back as the default. Without this Linux finds MTRRs disabled and turns
//! PAT off ("x86/PAT: MTRRs disabled, skipping PAT initialization too.").
//!
//! The same list is written on the bootstrap CPU and, by `smp.rs`, on every
//! application processor: Linux checks that all CPUs agree.

pub const MTRR_CAP: u32 = 0xFE;
pub const MTRR_DEF_TYPE: u32 = 0x2FF;
const FIX64K_00000: u32 = 0x250;
const FIX16K_80000: u32 = 0x258;
const FIX16K_A0000: u32 = 0x259;
const FIX4K_C0000: u32 = 0x268;
/// IA32_FEATURE_CONTROL, from fw_cfg `etc/msr_feature_control` (nested VMX).
pub const FEATURE_CONTROL: u32 = 0x3A;

const fn phys_base(n: u32) -> u32 {
    0x200 + 2 * n
}
const fn phys_mask(n: u32) -> u32 {
    0x200 + 2 * n + 1
}

const UC: u64 = 0;
const WB: u64 = 6;
const ALL_WB: u64 = 0x0606_0606_0606_0606;
const ALL_WP: u64 = 0x0505_0505_0505_0505;
const MASK_VALID: u64 = 1 << 11;
/// MTRRdefType: E (MTRRs on) | FE (fixed ranges on) | default type.
const DEF_TYPE_ENABLED_WB: u64 = 0xC00 | WB;

/// How the list starts, as SeaBIOS's mtrr_setup writes it: MTRRs off, the
/// fixed ranges (below 640 KiB: RAM, write-back; 640-768 KiB: VGA, uncached;
/// 768 KiB-1 MiB: option ROMs and BIOS, write-protected), then the eight
/// variable ranges cleared (only as many as the CPU has are used).
const TEMPLATE: [(u32, u64); TEMPLATE_FIXED + 16] = {
    let mut t = [(0u32, 0u64); TEMPLATE_FIXED + 16];
    t[0] = (MTRR_DEF_TYPE, 0);
    t[1] = (FIX64K_00000, ALL_WB);
    t[2] = (FIX16K_80000, ALL_WB);
    t[3] = (FIX16K_A0000, 0);
    let mut i = 0;
    while i < 8 {
        t[4 + i] = (FIX4K_C0000 + i as u32, ALL_WP);
        t[TEMPLATE_FIXED + 2 * i] = (phys_base(i as u32), 0);
        t[TEMPLATE_FIXED + 2 * i + 1] = (phys_mask(i as u32), 0);
        i += 1;
    }
    t
};
/// Entries of [`TEMPLATE`] before the variable ranges.
const TEMPLATE_FIXED: usize = 12;

/// The most MSR writes a list holds.
pub const MAX_MSRS: usize = TEMPLATE.len() + TAIL;
/// Entries after the template's: the PCI window's base and mask, MTRRs on,
/// feature control.
const TAIL: usize = 4;

/// MSR writes in order; enough for 8 variable ranges and feature control.
///
/// Not an array of every entry: a prefix of [`TEMPLATE`] (a constant, read
/// where it is) and the few computed entries after it. Under TCG, copying the
/// whole template into each list was a 768-byte copy of its own, and reading
/// the list back added its loads.
#[derive(Clone, Copy, Debug)]
pub struct MsrList {
    /// Entries taken from [`TEMPLATE`], at most all of it.
    prefix: usize,
    /// The index `tail[0]` has in the list (wrapping: may be "before 0").
    tail_start: usize,
    tail: [(u32, u64); TAIL],
    len: usize,
}

impl MsrList {
    /// How many MSR writes, at most [`MAX_MSRS`].
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Entry `i`, for `i < len()`. Both candidates are read within bounds
    /// and one selected: no branch (a translated block each under TCG) in
    /// the loops that write the list.
    #[inline(always)]
    pub fn get(&self, i: usize) -> (u32, u64) {
        let fixed = &TEMPLATE[i.min(TEMPLATE.len() - 1)];
        let tail = &self.tail[i.wrapping_sub(self.tail_start).min(TAIL - 1)];
        *core::hint::select_unpredictable(i < self.prefix, fixed, tail)
    }
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        (0..self.len).map(|i| self.get(i))
    }
}

/// What the CPU reports: CPUID.1:EDX, IA32_MTRRCAP and the physical address width.
#[derive(Clone, Copy, Debug)]
pub struct CpuInfo {
    pub features_edx: u32,
    pub mtrr_cap: u64,
    pub phys_bits: u8,
}

const CPUID_MSR: u32 = 1 << 5;
const CPUID_MTRR: u32 = 1 << 12;

/// The MSR writes that set up the MTRRs for a 32-bit PCI window starting at
/// `pci_start`; empty if the CPU has no (fixed-range) MTRRs.
pub fn seabios_mtrrs(cpu: &CpuInfo, pci_start: u64, feature_control: u64) -> MsrList {
    let vcnt = (cpu.mtrr_cap & 0xFF) as u32;
    let fixed = cpu.mtrr_cap & 0x100 != 0;
    // `&` on bools: one test of the whole condition (each branch is a
    // translated block under TCG).
    let usable = (cpu.features_edx & CPUID_MTRR != 0)
        & (cpu.features_edx & CPUID_MSR != 0)
        & (vcnt != 0)
        & fixed;
    // The template's fixed ranges and cleared variable ranges, then one
    // variable range: the PCI window up to 4 GiB, uncached; then MTRRs on;
    // then feature control if QEMU asks. No branch: none of it is kept when
    // the MTRRs are unusable.
    let prefix = TEMPLATE_FIXED + 2 * vcnt.min(8) as usize;
    let phys = (1u64 << cpu.phys_bits.clamp(36, 52)) - 1;
    let size = (1u64 << 32).wrapping_sub(pci_start);
    // Without MTRRs the list is feature control alone: the tail from its
    // last entry on.
    let select = core::hint::select_unpredictable;
    MsrList {
        prefix: select(usable, prefix, 0),
        tail_start: select(usable, prefix, 0usize.wrapping_sub(TAIL - 1)),
        tail: [
            (phys_base(0), pci_start | UC),
            (phys_mask(0), (size.wrapping_neg() & phys) | MASK_VALID),
            (MTRR_DEF_TYPE, DEF_TYPE_ENABLED_WB),
            (FEATURE_CONTROL, feature_control),
        ],
        len: select(usable, prefix + 3, 0) + (feature_control != 0) as usize,
    }
}

/// Variable range `n` as the list leaves it, if enabled: what `/proc/mtrr` shows.
#[cfg(test)]
fn var_range(list: &MsrList, n: u32) -> Option<(u64, u64)> {
    let get = |msr| {
        let all: std::vec::Vec<_> = list.iter().collect();
        all.iter().rev().find(|(m, _)| *m == msr).map(|e| e.1)
    };
    let (base, mask) = (get(phys_base(n))?, get(phys_mask(n))?);
    (mask & MASK_VALID != 0).then_some((base, mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU: CpuInfo = CpuInfo {
        features_edx: CPUID_MSR | CPUID_MTRR,
        mtrr_cap: 0x508,
        phys_bits: 40,
    };

    #[test]
    fn pc_with_512_mib_gets_seabios_ranges() {
        let list = seabios_mtrrs(&QEMU, 0x8000_0000, 0);
        let s: &[_] = &list.iter().collect::<std::vec::Vec<_>>();
        assert_eq!(s.first(), Some(&(MTRR_DEF_TYPE, 0)));
        assert_eq!(s.last(), Some(&(MTRR_DEF_TYPE, 0xC06)));
        assert!(s.contains(&(FIX64K_00000, ALL_WB)));
        assert!(s.contains(&(FIX16K_A0000, 0)));
        assert!(s.contains(&(0x26F, ALL_WP)));
        // 2 GiB at 2 GiB uncached, in a 40-bit address space
        assert_eq!(var_range(&list, 0), Some((0x8000_0000, 0xFF_8000_0800)));
        for n in 1..8 {
            assert_eq!(var_range(&list, n), None);
        }
        assert_eq!(s.len(), 1 + 3 + 8 + 16 + 2 + 1);
    }

    #[test]
    fn q35_window_is_one_gib() {
        let list = seabios_mtrrs(&QEMU, 0xC000_0000, 0x5);
        assert_eq!(var_range(&list, 0), Some((0xC000_0000, 0xFF_C000_0800)));
        assert_eq!(list.iter().last(), Some((FEATURE_CONTROL, 5)));
    }

    #[test]
    fn cpus_without_mtrrs_get_none() {
        for cpu in [
            CpuInfo {
                features_edx: CPUID_MSR,
                ..QEMU
            },
            CpuInfo {
                mtrr_cap: 0x08,
                ..QEMU
            },
            CpuInfo {
                mtrr_cap: 0x100,
                ..QEMU
            },
        ] {
            assert!(seabios_mtrrs(&cpu, 0x8000_0000, 0).is_empty());
            let with_fc = seabios_mtrrs(&cpu, 0x8000_0000, 5);
            assert_eq!(
                with_fc.iter().collect::<std::vec::Vec<_>>(),
                [(FEATURE_CONTROL, 5)]
            );
        }
        // an absurd variable count is capped, never overflows the list
        let many = CpuInfo {
            mtrr_cap: 0x1FF,
            ..QEMU
        };
        let list = seabios_mtrrs(&many, 0x8000_0000, 1);
        assert_eq!(list.len(), 32);
        assert_eq!(list.get(31), (FEATURE_CONTROL, 1));
    }
}
