//! The DMA interface: a descriptor the device reads and writes back, one
//! request per transfer.

use core::cell::UnsafeCell;
use core::mem::size_of;
use core::sync::atomic::{Ordering, compiler_fence};

use super::{DmaControl, FwCfg, PORT_DMA_HIGH, PORT_DMA_LOW, selector_of};
use crate::io::PortIo;

/// The DMA descriptor: all fields big-endian (`FWCfgDmaAccess`).
#[repr(C, align(16))]
struct DmaAccess {
    control: u32, // 0x00
    length: u32,  // 0x04
    address: u64, // 0x08
}
const _: () = assert!(size_of::<DmaAccess>() == 16);

/// A descriptor handed to the device, which writes its `control` word back
/// (clearing it, or setting the error bit) while the CPU polls it.
struct DmaDescriptor(UnsafeCell<DmaAccess>);

impl DmaDescriptor {
    fn new(access: DmaAccess) -> DmaDescriptor {
        DmaDescriptor(UnsafeCell::new(access))
    }

    /// The descriptor's address for the DMA register (identity-mapped).
    fn address(&self) -> u64 {
        self.0.get() as u64
    }

    /// The `control` word as the device left it, in host order.
    fn control(&self) -> u32 {
        // SAFETY: the pointer is to our own live, aligned descriptor; the only
        // other writer is the device, and an UnsafeCell read through a volatile
        // access is what memory shared with a device needs.
        u32::from_be(unsafe { core::ptr::read_volatile(&raw const (*self.0.get()).control) })
    }
}

impl<IO: PortIo> FwCfg<IO> {
    /// One DMA request: `control` is the descriptor's control word (the
    /// operation, and the selector in its top half, selected with `SELECT`
    /// and named in a failure's report), in host order. Few enough arguments to pass in registers: the callers jump
    /// here rather than call, no return block of their own under TCG. A
    /// request that fails is recorded ([`FwCfg::failed`]), not returned.
    pub(super) fn dma_request(&mut self, control: u32, len: u32, addr: u64) {
        // The device writes `control` back: the descriptor is memory shared
        // with it, behind an UnsafeCell and touched only by volatile accesses.
        let desc = DmaDescriptor::new(DmaAccess {
            control: control.to_be(),
            length: len.to_be(),
            address: addr.to_be(),
        });
        let desc_addr = desc.address();
        compiler_fence(Ordering::SeqCst);
        if desc_addr >> 32 != 0 {
            self.io
                .outl(PORT_DMA_HIGH, ((desc_addr >> 32) as u32).to_be());
        }
        self.io.outl(PORT_DMA_LOW, (desc_addr as u32).to_be());
        compiler_fence(Ordering::SeqCst);
        self.stats.dma_requests += 1;
        // QEMU completes the transfer before the port write returns: one
        // test for that; the poll only guards against a device that would not.
        if desc.control() == 0 {
            return;
        }
        if !poll(&desc) {
            self.fail(selector_of(control));
        }
    }
}

/// Waits for a DMA request the device has not completed yet, or has
/// failed: whether it completed without error.
#[cold]
#[inline(never)]
fn poll(desc: &DmaDescriptor) -> bool {
    for _ in 0..1_000_000 {
        let c = desc.control();
        if c & !DmaControl::ERROR.bits() == 0 {
            return c & DmaControl::ERROR.bits() == 0;
        }
        core::hint::spin_loop();
    }
    false
}
