//! Guest-physical memory on the real machine, through the identity map: the
//! [`GuestMemory`] the boot writes through, and the shared view of the words
//! the other CPUs change.

use ferrite::board::GuestMemory;
use ferrite::error::Error;
use ferrite::mem::FIRMWARE_RAM;
use ferrite::mem::Range;

use crate::paging;

/// RAM the boot may write: anything but ferrite's own image (code, data,
/// stack, heap, page tables: all in [`FIRMWARE_RAM`]) and address 0.
pub struct PhysMemory(());

impl PhysMemory {
    /// # Safety
    /// One per boot, on the boot path: the ranges it hands out must not be
    /// written by anything else meanwhile (no other CPU runs ferrite's code).
    pub const unsafe fn new() -> PhysMemory {
        PhysMemory(())
    }
}

/// `[at, at + len)` is not ferrite's own RAM and does not wrap or start at 0.
/// One branch, so that each access costs one conditional jump (a translation
/// block under TCG; conditions joined with `&` LLVM splits into a branch
/// each). The range's start picks the limit its last byte must lie below:
/// 2^64 - 1 above the firmware's RAM (no wrap), the RAM's start below it.
/// The room from the byte before `at` (a start at 0 wraps to the top and
/// has none) up to that limit, taken without branches, must exceed `len`.
#[inline(always)]
fn check(at: u64, len: usize) -> Result<(), Error> {
    if fits(at, len, u64::MAX) {
        Ok(())
    } else {
        Err(Error::GuestMemory {
            at,
            len: len as u64,
        })
    }
}

/// [`check`]'s test, a range above the firmware's RAM to end at `top` at
/// the latest (at `u64::MAX`: only not to wrap).
#[inline(always)]
fn fits(at: u64, len: usize, top: u64) -> bool {
    let limit = if at >= FIRMWARE_RAM.end {
        top
    } else {
        FIRMWARE_RAM.start
    };
    let room = limit.saturating_sub(at.wrapping_sub(1));
    (len as u64) < room
}

/// [`GuestMemory::dma_address`] for a range that reaches above 4 GiB (or is
/// refused): checked, and mapped for a transfer the CPU copies.
#[cold]
#[inline(never)]
fn dma_address_high(at: u64, len: usize) -> Result<u64, Error> {
    check(at, len)?;
    paging::identity_map(Range::new(at, at + len as u64))?;
    Ok(at)
}

// SAFETY: `check` keeps every range off ferrite's RAM image, where all of its
// Rust objects live (.data, .bss, the stack, the heap, the page tables); the
// low 4 GiB are identity-mapped from the start and `dma_address` maps the
// rest before a transfer puts anything there; a slice of `[at, at + len)` is
// built from that very address, so disjoint ranges give disjoint slices.
unsafe impl GuestMemory for PhysMemory {
    fn bytes(&mut self, at: u64, len: usize) -> Result<&mut [u8], Error> {
        check(at, len)?;
        // SAFETY: as for the impl: RAM outside every Rust object, identity-
        // mapped, borrowed from `self` for the slice's life.
        Ok(unsafe { core::slice::from_raw_parts_mut(at as *mut u8, len) })
    }

    /// One test for the usual range, clear of ferrite's RAM and below
    /// 4 GiB, which the page tables map from the start: the check and the
    /// mapping in one branch (a translation block under TCG) rather than
    /// two.
    #[inline(always)]
    fn dma_address(&mut self, at: u64, len: usize) -> Result<u64, Error> {
        if fits(at, len, paging::FOUR_GIB) {
            return Ok(at);
        }
        dma_address_high(at, len)
    }
}

/// A shared view of memory that other agents (CPUs) change concurrently; T is
/// an atomic type (or an array of them), so every access is atomic.
///
/// # Safety
/// `size_of::<T>()` bytes at `addr`, aligned for T, identity-mapped, that no
/// `&mut` covers for the rest of the boot and that everyone else changes only
/// with atomic (locked) instructions.
pub unsafe fn shared<T: Sync>(addr: u64) -> &'static T {
    // SAFETY: guaranteed by the caller.
    unsafe { &*(addr as *const T) }
}
