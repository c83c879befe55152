//! The CPUs as SeaBIOS leaves them: the MTRRs programmed on every CPU, the
//! bootstrap CPU's local APIC in virtual-wire mode, and the application
//! processors woken once (INIT, then a start-up IPI) to write the same MSRs and
//! halt again until the kernel starts them.
//!
//! The wake-up is sent early and checked just before the kernel's entry, so the
//! bootstrap CPU does not wait for the other CPUs while it loads the kernel.

use core::arch::x86_64::__cpuid;
use core::sync::atomic::{AtomicU16, AtomicU64, Ordering};

use ferrite::mtrr::{self, CpuInfo, MsrList};
use x86_64::registers::model_specific::Msr;

use crate::phys;

/// The page the application processors start in (start-up IPI vector = page
/// number), in the BIOS segment that bios.rs opens as shadow RAM.
pub const TRAMPOLINE: u64 = 0xF_0000;
/// Layout of the trampoline page, shared with asm/ap.s.
const COUNT_OFFSET: usize = 0x80;
const IDS_OFFSET: usize = 0x88;
const MSRS_OFFSET: usize = 0xA8;
const MSR_ENTRY: usize = 12;

core::arch::global_asm!(
    include_str!("asm/ap.s"),
    count = const COUNT_OFFSET,
    ids = const IDS_OFFSET,
    msrs = const MSRS_OFFSET,
    options(att_syntax),
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
}

const LAPIC: u64 = 0xFEE0_0000;
const LAPIC_VERSION: u64 = 0x30;
const LAPIC_SVR: u64 = 0xF0;
const LAPIC_ICR_LOW: u64 = 0x300;
const LAPIC_LINT0: u64 = 0x350;
const LAPIC_LINT1: u64 = 0x360;
const SVR_ENABLE: u32 = 1 << 8;
/// LINT0: ExtINT (the 8259), LINT1: NMI, both level-triggered (SeaBIOS's values).
const LINT0_EXTINT: u32 = 0x8700;
const LINT1_NMI: u32 = 0x8400;
/// All but self, assert: INIT, then start-up with the page number as vector.
const ICR_INIT_OTHERS: u32 = 0x000C_4500;
const ICR_STARTUP_OTHERS: u32 = 0x000C_4600;

/// About a second of TSC ticks at QEMU's usual rates: the longest ferrite waits
/// for the other CPUs before booting without them having checked in.
const WAIT_TICKS: u64 = 1 << 31;

fn lapic_read(reg: u64) -> u32 {
    // SAFETY: the local APIC's registers are at LAPIC (identity-mapped MMIO);
    // reads have no side effects on these registers.
    unsafe { core::ptr::read_volatile((LAPIC + reg) as *const u32) }
}

fn lapic_write(reg: u64, value: u32) {
    // SAFETY: as above; the boot path is the only user of the local APIC.
    unsafe { core::ptr::write_volatile((LAPIC + reg) as *mut u32, value) }
}

/// CPUID leaf 1: (signature, EBX, EDX).
pub fn cpuid1() -> (u32, u32, u32) {
    let r = __cpuid(1);
    (r.eax, r.ebx, r.edx)
}

fn cpu_info() -> CpuInfo {
    let max_ext = __cpuid(0x8000_0000).eax;
    let phys_bits = if max_ext >= 0x8000_0008 {
        (__cpuid(0x8000_0008).eax & 0xFF) as u8
    } else {
        36
    };
    let features_edx = cpuid1().2;
    let mtrr_cap = if features_edx & (1 << 12) != 0 {
        // SAFETY: CPUID says the MTRR MSRs exist.
        unsafe { Msr::new(mtrr::MTRR_CAP).read() }
    } else {
        0
    };
    CpuInfo {
        features_edx,
        mtrr_cap,
        phys_bits,
    }
}

/// The other CPUs, once woken.
pub struct Cpus {
    /// How many CPUs QEMU started (fw_cfg), this one included.
    pub count: u16,
}

/// Programs the MTRRs (and IA32_FEATURE_CONTROL when QEMU asks) on this CPU,
/// puts its local APIC in virtual-wire mode and wakes the `count - 1` others to
/// do the same. The trampoline page must be writable RAM.
pub fn start(count: u16, pci_start: u64, feature_control: u64) -> Cpus {
    let msrs = mtrr::seabios_mtrrs(&cpu_info(), pci_start, feature_control);
    for &(msr, value) in msrs.as_slice() {
        // SAFETY: the list holds architectural MSRs that CPUID reported, with
        // SeaBIOS's values; MTRRs change caching only, of memory ferrite owns.
        unsafe { Msr::new(msr).write(value) };
    }
    lapic_write(LAPIC_SVR, lapic_read(LAPIC_SVR) | SVR_ENABLE);
    lapic_write(LAPIC_LINT0, LINT0_EXTINT);
    lapic_write(LAPIC_LINT1, LINT1_NMI);
    write_trampoline(&msrs);
    let bsp = (cpuid1().1 >> 24) as usize;
    ids()[bsp / 64].fetch_or(1 << (bsp % 64), Ordering::Relaxed);
    if count > 1 {
        lapic_write(LAPIC_ICR_LOW, ICR_INIT_OTHERS);
        lapic_write(
            LAPIC_ICR_LOW,
            ICR_STARTUP_OTHERS | (TRAMPOLINE >> 12) as u32,
        );
    }
    Cpus { count }
}

/// The APIC-ID bitmap the other CPUs set with `lock bts` (asm/ap.s), seen
/// only through atomics: they may still be writing it after a time-out.
fn ids() -> &'static [AtomicU64; 4] {
    // SAFETY: 32 bytes at an 8-byte-aligned offset of the trampoline page, no
    // longer covered by any `&mut` once write_trampoline has returned (the BIOS
    // segment's allocations start after the page); the other CPUs change it
    // only with locked instructions (16-bit `lock bts` on the word holding the
    // bit: x86 keeps locked operations of any size atomic against our loads).
    unsafe { phys::shared::<[AtomicU64; 4]>(TRAMPOLINE + IDS_OFFSET as u64) }
}

/// How many other CPUs have checked in (`lock incw` in asm/ap.s).
fn checked_in() -> &'static AtomicU16 {
    // SAFETY: as for ids(): a 2-byte-aligned word of the trampoline page that
    // the other CPUs only change with a locked increment.
    unsafe { phys::shared::<AtomicU16>(TRAMPOLINE + COUNT_OFFSET as u64) }
}

fn write_trampoline(msrs: &MsrList) {
    // SAFETY: both symbols delimit the trampoline bytes in .rodata.
    let code = unsafe {
        let start = &raw const ap_trampoline_start;
        let len = (&raw const ap_trampoline_end).offset_from(start) as usize;
        core::slice::from_raw_parts(start, len)
    };
    const _: () = assert!(IDS_OFFSET.is_multiple_of(8) && MSRS_OFFSET >= IDS_OFFSET + 32);
    // SAFETY: the trampoline page is BIOS-segment shadow RAM reserved for it
    // (bios.rs allocates its tables after it); no other CPU runs yet, and the
    // slice ends with this function, before ids() and checked_in() exist.
    let page = unsafe { phys::slice_mut(TRAMPOLINE, 4096) };
    assert!(code.len() <= COUNT_OFFSET, "AP trampoline too long");
    page[..code.len()].copy_from_slice(code);
    page[COUNT_OFFSET..MSRS_OFFSET].fill(0);
    let mut at = MSRS_OFFSET;
    for &(msr, value) in msrs.as_slice() {
        page[at..at + 4].copy_from_slice(&msr.to_le_bytes());
        page[at + 4..at + 12].copy_from_slice(&value.to_le_bytes());
        at += MSR_ENTRY;
    }
    page[at..at + MSR_ENTRY].fill(0);
}

impl Cpus {
    /// Waits until every other CPU has checked in; false after the time-out.
    pub fn wait(&self) -> bool {
        let expected = self.count.saturating_sub(1);
        let start = rdtsc();
        while checked_in().load(Ordering::Acquire) < expected {
            if rdtsc().wrapping_sub(start) > WAIT_TICKS {
                return false;
            }
            core::hint::spin_loop();
        }
        true
    }

    /// APIC IDs that answered, this CPU's included: one atomic load per word
    /// (after a time-out the late CPUs may still be setting bits; each word is
    /// read whole, and a CPU that checks in later is simply not listed).
    pub fn present(&self) -> [u64; 4] {
        ids().each_ref().map(|w| w.load(Ordering::Acquire))
    }

    pub fn apic_version(&self) -> u8 {
        lapic_version()
    }
}

/// This CPU's local APIC version register (the MP table's processor entries).
pub fn lapic_version() -> u8 {
    lapic_read(LAPIC_VERSION) as u8
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}
