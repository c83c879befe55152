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
    let limit = if at >= FIRMWARE_RAM.end {
        u64::MAX
    } else {
        FIRMWARE_RAM.start
    };
    let room = limit.saturating_sub(at.wrapping_sub(1));
    if (len as u64) < room {
        Ok(())
    } else {
        Err(Error::GuestMemory {
            at,
            len: len as u64,
        })
    }
}

// SAFETY: `check` keeps every range off ferrite's RAM image, where all of its
// Rust objects live (.data, .bss, the stack, the heap, the page tables); the
// low 4 GiB are identity-mapped from the start and `map` maps the rest before
// the boot puts anything there; a slice of `[at, at + len)` is built from
// that very address, so disjoint ranges give disjoint slices.
unsafe impl GuestMemory for PhysMemory {
    fn bytes(&mut self, at: u64, len: usize) -> Result<&mut [u8], Error> {
        check(at, len)?;
        // SAFETY: as for the impl: RAM outside every Rust object, identity-
        // mapped, borrowed from `self` for the slice's life.
        Ok(unsafe { core::slice::from_raw_parts_mut(at as *mut u8, len) })
    }

    fn dma_address(&mut self, at: u64, len: usize) -> Result<u64, Error> {
        check(at, len)?;
        Ok(at)
    }

    /// Inlined, with the test for what the boot usually maps (RAM below
    /// 4 GiB, always mapped): no call, one branch (a translation block
    /// under TCG) where paging's own function costs a call and its tests.
    #[inline(always)]
    fn map(&mut self, range: Range) -> Result<(), Error> {
        if range.end <= paging::FOUR_GIB {
            return Ok(());
        }
        paging::identity_map(range)
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
