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
/// One branch: the conditions are combined without short-circuits, so that
/// each access costs one conditional jump (a translation block under TCG).
#[inline(always)]
fn check(at: u64, len: usize) -> Result<(), Error> {
    let end = at.wrapping_add(len as u64);
    let outside = (end <= FIRMWARE_RAM.start) | (at >= FIRMWARE_RAM.end);
    if (end >= at) & (at != 0) & outside {
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

    fn map(&mut self, range: Range) -> Result<(), Error> {
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
