//! Access to guest-physical memory through the identity map.
//!
//! Nothing here hands out `&'static mut`: a mutable view lives as long as the
//! borrow its caller ties it to, and memory that other CPUs write (the
//! trampoline page's counter and APIC-ID bitmap) is only seen through atomics.

/// A byte slice over physical memory, for as long as the caller's `'a`.
///
/// # Safety
/// `[addr, addr + len)` must be identity-mapped RAM that no Rust object occupies
/// and that no other live reference covers during `'a`.
pub unsafe fn slice_mut<'a>(addr: u64, len: usize) -> &'a mut [u8] {
    // SAFETY: guaranteed by the caller.
    unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) }
}

/// A typed object over physical memory, for as long as the caller's `'a`.
///
/// # Safety
/// As for [`slice_mut`], with `size_of::<T>()` bytes at an address aligned for
/// T, and T valid for any bytes the memory may hold (the callers only use
/// plain-data spec structures).
pub unsafe fn object_mut<'a, T>(addr: u64) -> &'a mut T {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *(addr as *mut T) }
}

/// A slice of `len` typed entries over physical memory, for as long as the
/// caller's `'a`.
///
/// # Safety
/// As for [`object_mut`], with `len * size_of::<T>()` bytes.
pub unsafe fn slice_mut_of<'a, T>(addr: u64, len: usize) -> &'a mut [T] {
    // SAFETY: guaranteed by the caller.
    unsafe { core::slice::from_raw_parts_mut(addr as *mut T, len) }
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
