//! Port I/O behind a small trait, so that the device drivers (fw_cfg, PCI
//! configuration, chipset set-up) run on the host against fakes in unit tests.
//!
//! Every call is one VM exit on real hardware virtualization: drivers keep them few.

pub trait PortIo {
    fn inb(&mut self, port: u16) -> u8;
    fn inw(&mut self, port: u16) -> u16;
    fn inl(&mut self, port: u16) -> u32;
    fn outb(&mut self, port: u16, value: u8);
    fn outw(&mut self, port: u16, value: u16);
    fn outl(&mut self, port: u16, value: u32);
    /// Fills `buf` from an 8-bit port (`rep insb`: one instruction, not one per byte).
    fn read_bytes(&mut self, port: u16, buf: &mut [u8]);
}

/// Device registers in the physical address space (q35's MMCONFIG window), behind
/// a trait for the same reason as [`PortIo`]. `width` is 1, 2 or 4 bytes; every
/// access is one VM exit.
pub trait Mmio {
    fn read(&mut self, addr: u64, width: u8) -> u32;
    fn write(&mut self, addr: u64, width: u8, value: u32);
}

/// For machines and tests with no memory-mapped configuration space.
pub struct NoMmio;

impl Mmio for NoMmio {
    fn read(&mut self, _: u64, _: u8) -> u32 {
        u32::MAX
    }
    fn write(&mut self, _: u64, _: u8, _: u32) {}
}

/// For host tests: one device model shared by several users (the fw_cfg
/// driver, the PCI set-up, its MMCONFIG side), each borrowing it for one
/// access.
#[cfg(test)]
impl<T: PortIo> PortIo for &core::cell::RefCell<T> {
    fn inb(&mut self, port: u16) -> u8 {
        self.borrow_mut().inb(port)
    }
    fn inw(&mut self, port: u16) -> u16 {
        self.borrow_mut().inw(port)
    }
    fn inl(&mut self, port: u16) -> u32 {
        self.borrow_mut().inl(port)
    }
    fn outb(&mut self, port: u16, value: u8) {
        self.borrow_mut().outb(port, value)
    }
    fn outw(&mut self, port: u16, value: u16) {
        self.borrow_mut().outw(port, value)
    }
    fn outl(&mut self, port: u16, value: u32) {
        self.borrow_mut().outl(port, value)
    }
    fn read_bytes(&mut self, port: u16, buf: &mut [u8]) {
        self.borrow_mut().read_bytes(port, buf)
    }
}
