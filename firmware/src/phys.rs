//! Access to guest-physical memory through the identity map.

use core::mem::MaybeUninit;

use ferrite::error::Error;
use ferrite::fwcfg::{File, FwCfg};

use crate::pio::Pio;

/// A byte slice over physical memory.
///
/// # Safety
/// `[addr, addr + len)` must be identity-mapped RAM that no Rust object occupies
/// and that no other live slice covers.
pub unsafe fn slice_mut(addr: u64, len: usize) -> &'static mut [u8] {
    // SAFETY: guaranteed by the caller.
    unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) }
}

/// A typed object over physical memory.
///
/// # Safety
/// As for [`slice_mut`], with `size_of::<T>()` bytes, and T valid for any bytes
/// the memory may hold (the callers only use plain-data spec structures).
pub unsafe fn object_mut<T>(addr: u64) -> &'static mut T {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *(addr as *mut T) }
}

/// Reads a whole fw_cfg file into an uninitialised buffer (no clearing first:
/// every byte is written by the transfer) and returns the filled part.
pub fn read_file<'b>(
    fw_cfg: &mut FwCfg<Pio>,
    file: File,
    buf: &'b mut [MaybeUninit<u8>],
) -> Result<&'b [u8], Error> {
    let len = (file.size as usize).min(buf.len());
    // SAFETY: `buf` is our own buffer of at least `len` bytes; the identity map
    // makes its address physical.
    unsafe { fw_cfg.read_to_phys(file.select, buf.as_mut_ptr() as u64, len as u32)? };
    // SAFETY: the transfer above wrote all `len` bytes.
    Ok(unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) })
}
