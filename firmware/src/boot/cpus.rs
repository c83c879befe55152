//! The CPUs as SeaBIOS leaves them: the MTRRs programmed on every CPU, the
//! bootstrap CPU's local APIC in virtual-wire mode, and the application
//! processors woken once (INIT, then a start-up IPI) to write the same MSRs and
//! halt again until the kernel starts them.
//!
//! The wake-up is sent early and checked just before the kernel's entry, so the
//! bootstrap CPU does not wait for the other CPUs while it loads the kernel.

use crate::board::{Cpu, GuestMemory};
use crate::error::Error;
use crate::mtrr::{self, CpuInfo, MAX_MSRS, MsrList};

/// The page the application processors start in (start-up IPI vector = page
/// number), in the BIOS segment that bios.rs opens as shadow RAM.
pub const TRAMPOLINE: u64 = 0xF_0000;
/// Layout of the trampoline page, shared with the binary's AP start-up code:
/// the count of CPUs checked in, their APIC-ID bitmap, the MSR list.
pub const AP_COUNT_OFFSET: usize = 0x80;
pub const AP_IDS_OFFSET: usize = 0x88;
pub const AP_MSRS_OFFSET: usize = 0xA8;
const MSR_ENTRY: usize = 12;

const LAPIC_VERSION: u32 = 0x30;
const LAPIC_SVR: u32 = 0xF0;
const LAPIC_ICR_LOW: u32 = 0x300;
const LAPIC_LINT0: u32 = 0x350;
const LAPIC_LINT1: u32 = 0x360;
const SVR_ENABLE: u32 = 1 << 8;
/// LINT0: ExtINT (the 8259), LINT1: NMI, both level-triggered (SeaBIOS's values).
const LINT0_EXTINT: u32 = 0x8700;
const LINT1_NMI: u32 = 0x8400;
/// All but self, assert: INIT, then start-up with the page number as vector.
const ICR_INIT_OTHERS: u32 = 0x000C_4500;
const ICR_STARTUP_OTHERS: u32 = 0x000C_4600;

/// About a second of TSC ticks at QEMU's usual rates: the longest ferrite waits
/// for the other CPUs before booting without them having checked in.
pub(super) const WAIT_TICKS: u64 = 1 << 31;

/// CPUID leaf 1: (signature, EBX, EDX).
pub fn cpuid1(cpu: &mut impl Cpu) -> (u32, u32, u32) {
    let [eax, ebx, _, edx] = cpu.cpuid(1);
    (eax, ebx, edx)
}

/// What the MTRR set-up needs to know of this CPU.
fn cpu_info(cpu: &mut impl Cpu) -> CpuInfo {
    let max_ext = cpu.cpuid(0x8000_0000)[0];
    // Asked whether the leaf exists or not (a leaf beyond the maximum returns
    // another leaf's data, no fault), the answer then selected: no branch
    // (a translated block under TCG).
    let ext8 = cpu.cpuid(0x8000_0008)[0] as u8;
    let phys_bits = core::hint::select_unpredictable(max_ext >= 0x8000_0008, ext8, 36);
    let (_, _, features_edx) = cpuid1(cpu);
    let mtrr_cap = if features_edx & (1 << 12) != 0 {
        cpu.mtrr_cap()
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
/// do the same. The trampoline page must be writable RAM, cleared
/// (`BiosArea::open` clears the segment): only what the other CPUs read is
/// written, and nothing when there are none.
pub fn start(
    cpu: &mut impl Cpu,
    mem: &mut impl GuestMemory,
    count: u16,
    pci_start: u64,
    feature_control: u64,
) -> Result<Cpus, Error> {
    let msrs = mtrr::seabios_mtrrs(&cpu_info(cpu), pci_start, feature_control);
    let len = msrs.len().min(MAX_MSRS);
    for i in 0..len {
        let (msr, value) = msrs.get(crate::mem::block_boundary_for(i));
        cpu.write_msr(msr, value);
    }
    let svr = cpu.lapic_read(LAPIC_SVR);
    cpu.lapic_write(LAPIC_SVR, svr | SVR_ENABLE);
    cpu.lapic_write(LAPIC_LINT0, LINT0_EXTINT);
    cpu.lapic_write(LAPIC_LINT1, LINT1_NMI);
    // With one CPU no trampoline, and nothing of it for TCG to translate.
    if count > 1 {
        write_trampoline(cpu, mem, &msrs, len)?;
        cpu.lapic_write(LAPIC_ICR_LOW, ICR_INIT_OTHERS);
        cpu.lapic_write(
            LAPIC_ICR_LOW,
            ICR_STARTUP_OTHERS | (TRAMPOLINE >> 12) as u32,
        );
    }
    Ok(Cpus { count })
}

/// Writes the trampoline page for the other CPUs: the start-up code, the
/// cleared check-in count and APIC-ID bitmap (which they fill in), and the
/// first `len` entries of the MSR list (ended by an empty entry). No other
/// CPU runs yet.
fn write_trampoline(
    cpu: &mut impl Cpu,
    mem: &mut impl GuestMemory,
    msrs: &MsrList,
    len: usize,
) -> Result<(), Error> {
    const _: () = assert!(
        AP_IDS_OFFSET.is_multiple_of(8)
            && AP_IDS_OFFSET >= AP_COUNT_OFFSET + 2
            && AP_MSRS_OFFSET >= AP_IDS_OFFSET + 32
    );
    // The MSR area with room for the end marker after the longest list.
    const MSRS_END: usize = AP_MSRS_OFFSET + MSR_ENTRY * (MAX_MSRS + 1);
    const _: () = assert!(MSRS_END <= 4096);
    let page = mem.bytes(TRAMPOLINE, 4096)?;
    let code = cpu.ap_code();
    assert!(code.len() <= AP_COUNT_OFFSET, "AP trampoline too long");
    page[..code.len()].copy_from_slice(code);
    // One check for the whole area; then fixed offsets, no check of their own
    // (under TCG each check is a block).
    let area: &mut [u8; MSRS_END - AP_COUNT_OFFSET] = (&mut page[AP_COUNT_OFFSET..MSRS_END])
        .try_into()
        .expect("the trampoline's MSR area");
    let (head, slots) = area.split_at_mut(AP_MSRS_OFFSET - AP_COUNT_OFFSET);
    head.fill(0);
    for (i, slot) in slots.chunks_exact_mut(MSR_ENTRY).take(len).enumerate() {
        let (msr, value) = msrs.get(crate::mem::block_boundary_for(i));
        slot[..4].copy_from_slice(&msr.to_le_bytes());
        slot[4..].copy_from_slice(&value.to_le_bytes());
    }
    slots[len * MSR_ENTRY..][..4].fill(0);
    Ok(())
}

impl Cpus {
    /// Waits until every other CPU has checked in; false after the time-out.
    /// The clock is first read once there is something to wait for: with
    /// one CPU, or all checked in, the time-stamp counter is read only by
    /// the timeline's stamps (`cargo xtask host-cost` splits QEMU's work at
    /// those reads, step by step).
    pub fn wait(&self, cpu: &mut impl Cpu) -> bool {
        let expected = self.count.saturating_sub(1);
        let mut start = None;
        while cpu.checked_in() < expected {
            let now = cpu.ticks();
            if now.wrapping_sub(*start.get_or_insert(now)) > WAIT_TICKS {
                return false;
            }
            core::hint::spin_loop();
        }
        true
    }
}

/// This CPU's local APIC version register (the MP table's processor entries).
pub fn lapic_version(cpu: &mut impl Cpu) -> u8 {
    cpu.lapic_read(LAPIC_VERSION) as u8
}
