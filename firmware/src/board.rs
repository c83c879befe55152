//! The seam between the boot sequence and the machine it runs on: the few
//! things [`crate::boot`] needs from the hardware, as traits. The firmware
//! binary implements them with port instructions, the identity map and the
//! CPU's own registers; the host tests implement them with a model of QEMU's
//! devices and `Vec`-backed memory, so that the whole boot runs in `cargo test`.
//!
//! - port I/O: [`PortIo`] (fw_cfg, PCI configuration, the chipset's ports);
//! - memory-mapped device registers: [`Mmio`] (q35's MMCONFIG window);
//! - guest memory: [`GuestMemory`], every access bounds-checked;
//! - the CPU and its local APIC: [`Cpu`];
//! - the things only the binary knows: the timeline, the logger, what a failed
//!   boot does, where the ROM is: [`Board`].

use core::mem::{align_of, size_of};

use crate::error::Error;
use crate::fwcfg::FwCfg;
use crate::io::{Mmio, PortIo};
use crate::mem::Range;

/// The steps of the boot sequence, as the timeline stamps them (the
/// contract's `timeline::STEPS`, in order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The reset vector ran (stamp taken in the reset code).
    Reset,
    /// Rust entered, RAM image copied.
    Rust,
    FwCfg,
    MemoryMap,
    /// The kernel's kind, validated.
    KernelHeader,
    /// PCI, BIOS segment, legacy devices, MTRRs, other CPUs woken (pc, q35).
    Hardware,
    /// ACPI and SMBIOS tables.
    Acpi,
    KernelLoaded,
    InitrdLoaded,
    /// Waiting for the other CPUs, the MP table.
    Cpus,
    ZeroPage,
}

impl Step {
    /// Every step, in the order the boot stamps them (the contract's
    /// `timeline::STEPS`; the binary's timeline checks the two agree).
    pub const ALL: [Step; 11] = [
        Step::Reset,
        Step::Rust,
        Step::FwCfg,
        Step::MemoryMap,
        Step::KernelHeader,
        Step::Hardware,
        Step::Acpi,
        Step::KernelLoaded,
        Step::InitrdLoaded,
        Step::Cpus,
        Step::ZeroPage,
    ];

    /// The steps [`crate::boot::boot`] marks: all after the binary's own two.
    pub const BOOT: &[Step] = Step::ALL.split_at(2).1;
}

/// The machine the boot runs on.
pub trait Board {
    /// Port I/O. A handle: fw_cfg keeps one, the chipset code borrows another.
    type Io: PortIo + Clone;
    type Mmio: Mmio;
    type Memory: GuestMemory;
    type Cpu: Cpu;

    /// The firmware ROM below 4 GiB, reserved in the final map.
    const ROM: Range;

    fn io(&self) -> Self::Io;
    fn mmio(&mut self) -> &mut Self::Mmio;
    fn memory(&mut self) -> &mut Self::Memory;
    fn cpu(&mut self) -> &mut Self::Cpu;
    /// Both at once: the CPU writes its start-up page to memory.
    fn cpu_and_memory(&mut self) -> (&mut Self::Cpu, &mut Self::Memory);

    /// A timeline stamp at the end of `step`.
    fn mark(&mut self, step: Step);

    /// Reads what the user set through fw_cfg for the binary's own parts: the
    /// log level, what a failed boot does, whether to report the timeline.
    fn configure(&mut self, fw_cfg: &mut FwCfg<Self::Io>) -> Result<(), Error>;
}

/// Types whose every bit pattern is a valid value and that hold no pointers:
/// the spec structures ferrite lays over guest memory.
///
/// # Safety
/// Implement only for `repr(C)` (or primitive) types without padding-
/// sensitive invariants, references or niches: any bytes read back from
/// guest memory must be a valid value.
pub unsafe trait Plain: Sized {}

// SAFETY: each is a `repr(C)` spec structure of integers and arrays of
// integers (their modules assert size and offsets): any bytes are a valid
// value.
unsafe impl Plain for crate::bootparams::BootParams {}
// SAFETY: as above.
unsafe impl Plain for crate::pvh::StartBlock {}
// SAFETY: as above.
unsafe impl Plain for crate::pvh::MemmapEntry {}
// SAFETY: as above.
unsafe impl Plain for crate::multiboot::Info {}
// SAFETY: as above.
unsafe impl Plain for crate::multiboot::MmapEntry {}
// SAFETY: as above.
unsafe impl Plain for crate::s3::ResumeBlock {}

/// Guest-physical memory, as the boot writes it: only ranges that are RAM the
/// firmware may hand out (never its own image), every access checked.
///
/// # Safety
/// An implementation guarantees that a range [`bytes`](GuestMemory::bytes)
/// or [`dma_address`](GuestMemory::dma_address) accepts is memory that no
/// Rust object occupies, so that writing it (by the CPU through the slice, or
/// by a device at the DMA address) breaks nothing but the guest data there;
/// and that the slice for `[at, at + len)` is that guest memory and nothing
/// else, so that the slices of two disjoint ranges never overlap.
pub unsafe trait GuestMemory {
    /// The bytes at `[at, at + len)`, for as long as this borrow.
    fn bytes(&mut self, at: u64, len: usize) -> Result<&mut [u8], Error>;

    /// The address a DMA device writes `[at, at + len)` at (the same address
    /// on the real machine), checked as [`bytes`](GuestMemory::bytes) is,
    /// and made addressable for a transfer without DMA, which the CPU
    /// copies (the page tables beyond 4 GiB).
    fn dma_address(&mut self, at: u64, len: usize) -> Result<u64, Error>;

    /// Copies `len` bytes from `from` to `to`; the two ranges must not overlap.
    fn copy(&mut self, from: u64, to: u64, len: usize) -> Result<(), Error> {
        let disjoint = match (from.checked_add(len as u64), to.checked_add(len as u64)) {
            (Some(from_end), Some(to_end)) => from_end <= to || to_end <= from,
            _ => false,
        };
        if !disjoint {
            return Err(Error::GuestMemory {
                at: to,
                len: len as u64,
            });
        }
        let src: *const u8 = self.bytes(from, len)?.as_ptr();
        let dst = self.bytes(to, len)?;
        // SAFETY: by the trait's contract, `src` is the memory of
        // `[from, from + len)`, which does not overlap `[to, to + len)` (checked
        // above), and stays valid: nothing frees guest memory.
        dst.copy_from_slice(unsafe { core::slice::from_raw_parts(src, len) });
        Ok(())
    }

    /// A plain-data object at `at`.
    fn object<T: Plain>(&mut self, at: u64) -> Result<&mut T, Error> {
        Ok(&mut self.slice_of::<T>(at, 1)?[0])
    }

    /// A plain-data object at `a` and `n` plain-data objects at `b`, both at
    /// once; the two ranges must not overlap.
    fn object_and_slice<T: Plain, U: Plain>(
        &mut self,
        a: u64,
        b: u64,
        n: usize,
    ) -> Result<(&mut T, &mut [U]), Error> {
        let a_end = a.checked_add(size_of::<T>() as u64);
        let b_len = (n as u64).checked_mul(size_of::<U>() as u64);
        let b_end = b_len.and_then(|len| b.checked_add(len));
        match (a_end, b_end) {
            (Some(a_end), Some(b_end)) if a_end <= b || b_end <= a => {}
            _ => {
                return Err(Error::GuestMemory {
                    at: b,
                    len: b_len.unwrap_or(u64::MAX),
                });
            }
        }
        let object: *mut T = self.object::<T>(a)?;
        let slice: *mut [U] = self.slice_of::<U>(b, n)?;
        // SAFETY: by the trait's contract, the two slices are the memory of
        // their two ranges, which do not overlap (checked above); both are
        // borrowed from `self` for the results' lifetime.
        Ok(unsafe { (&mut *object, &mut *slice) })
    }

    /// `n` plain-data objects from `at` on.
    fn slice_of<T: Plain>(&mut self, at: u64, n: usize) -> Result<&mut [T], Error> {
        let len = n
            .checked_mul(size_of::<T>())
            .ok_or(Error::GuestMemory { at, len: u64::MAX })?;
        let bytes = self.bytes(at, len)?;
        if !(bytes.as_ptr() as usize).is_multiple_of(align_of::<T>()) {
            return Err(Error::GuestMemory {
                at,
                len: len as u64,
            });
        }
        // SAFETY: `bytes` is `n * size_of::<T>()` bytes, aligned for T, borrowed
        // from `self` for the result's lifetime; T is Plain, so any bytes there
        // are valid values.
        Ok(unsafe { core::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<T>(), n) })
    }
}

/// The bootstrap CPU, its local APIC, and the other CPUs' check-in.
pub trait Cpu {
    /// CPUID: (EAX, EBX, ECX, EDX) of `leaf` (subleaf 0).
    fn cpuid(&mut self, leaf: u32) -> [u32; 4];
    /// Reads IA32_MTRRCAP; call only when CPUID says the MTRRs exist.
    fn mtrr_cap(&mut self) -> u64;
    /// Writes one MSR of [`crate::mtrr::seabios_mtrrs`]'s list.
    fn write_msr(&mut self, msr: u32, value: u64);
    /// A 32-bit local APIC register.
    fn lapic_read(&mut self, reg: u32) -> u32;
    fn lapic_write(&mut self, reg: u32, value: u32);
    /// The time-stamp counter.
    fn ticks(&mut self) -> u64;
    /// The other CPUs' start-up code, copied to the trampoline page.
    fn ap_code(&self) -> &'static [u8];
    /// How many other CPUs have checked in on the trampoline page.
    fn checked_in(&mut self) -> u16;
    /// The APIC-ID bitmap they set there.
    fn present(&mut self) -> [u64; 4];
}
