//! The bootstrap CPU on the real machine: CPUID, the MTRR MSRs, the local
//! APIC's registers, the time-stamp counter, and the other CPUs' start-up code
//! (asm/ap.s) with the words they write on the trampoline page
//! (`ferrite::boot` has the logic and the page's layout).

use core::arch::x86_64::__cpuid;
use core::sync::atomic::{AtomicU16, AtomicU64, Ordering};

use ferrite::board::Cpu;
use ferrite::boot::{AP_COUNT_OFFSET, AP_IDS_OFFSET, AP_MSRS_OFFSET, TRAMPOLINE};
use ferrite::mtrr;
use x86_64::registers::model_specific::Msr;

use crate::phys;

core::arch::global_asm!(
    include_str!("asm/ap.s"),
    count = const AP_COUNT_OFFSET,
    ids = const AP_IDS_OFFSET,
    msrs = const AP_MSRS_OFFSET,
    options(att_syntax),
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
}

const LAPIC: u64 = 0xFEE0_0000;

/// The CPU ferrite runs on.
pub struct RealCpu(());

impl RealCpu {
    /// # Safety
    /// One per boot, on the boot path: it writes MSRs and the local APIC.
    pub const unsafe fn new() -> RealCpu {
        RealCpu(())
    }
}

impl Cpu for RealCpu {
    fn cpuid(&mut self, leaf: u32) -> [u32; 4] {
        let r = __cpuid(leaf);
        [r.eax, r.ebx, r.ecx, r.edx]
    }

    fn mtrr_cap(&mut self) -> u64 {
        // SAFETY: the caller checked CPUID's MTRR bit: the MSR exists.
        unsafe { Msr::new(mtrr::MTRR_CAP).read() }
    }

    fn write_msr(&mut self, msr: u32, value: u64) {
        // SAFETY: the boot writes only mtrr::seabios_mtrrs's list:
        // architectural MSRs that CPUID reported, with SeaBIOS's values;
        // MTRRs change caching only, of memory ferrite owns.
        unsafe { Msr::new(msr).write(value) };
    }

    fn lapic_read(&mut self, reg: u32) -> u32 {
        // SAFETY: the local APIC's registers are at LAPIC (identity-mapped
        // MMIO); the boot reads only registers without read side effects.
        unsafe { core::ptr::read_volatile((LAPIC + reg as u64) as *const u32) }
    }

    fn lapic_write(&mut self, reg: u32, value: u32) {
        // SAFETY: as above; the boot path is the only user of the local APIC.
        unsafe { core::ptr::write_volatile((LAPIC + reg as u64) as *mut u32, value) }
    }

    fn ticks(&mut self) -> u64 {
        // SAFETY: RDTSC has no side effects.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    fn ap_code(&self) -> &'static [u8] {
        // SAFETY: both symbols delimit the trampoline bytes in .rodata.
        unsafe {
            let start = &raw const ap_trampoline_start;
            let len = (&raw const ap_trampoline_end).offset_from(start) as usize;
            core::slice::from_raw_parts(start, len)
        }
    }

    fn checked_in(&mut self) -> u16 {
        // SAFETY: a 2-byte-aligned word of the trampoline page, no longer
        // covered by any `&mut` once the start-up page is written (the BIOS
        // segment's allocations start after the page); the other CPUs change
        // it only with a locked increment (asm/ap.s).
        let count = unsafe { phys::shared::<AtomicU16>(TRAMPOLINE + AP_COUNT_OFFSET as u64) };
        count.load(Ordering::Acquire)
    }

    fn present(&mut self) -> [u64; 4] {
        // SAFETY: as for checked_in: 32 bytes at an 8-byte-aligned offset of
        // the page, which the other CPUs change only with `lock bts` (x86
        // keeps locked operations of any size atomic against our loads).
        let ids = unsafe { phys::shared::<[AtomicU64; 4]>(TRAMPOLINE + AP_IDS_OFFSET as u64) };
        // One atomic load per word: after a time-out the late CPUs may still
        // be setting bits; a CPU that checks in later is simply not listed.
        // Written out: `each_ref().map`, and `map` over the words, made
        // loops of it (translation blocks under TCG) and arrays of pointers.
        [
            ids[0].load(Ordering::Acquire),
            ids[1].load(Ordering::Acquire),
            ids[2].load(Ordering::Acquire),
            ids[3].load(Ordering::Acquire),
        ]
    }
}
