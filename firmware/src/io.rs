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
