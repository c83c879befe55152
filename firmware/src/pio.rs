//! Port I/O on the real machine.

use core::arch::asm;

use ferrite::io::{Mmio, PortIo};
use x86_64::instructions::port::Port;

/// Direct access to the machine's I/O ports.
#[derive(Clone, Copy)]
pub struct Pio(());

impl Pio {
    /// # Safety
    /// Port I/O can reconfigure any device. The caller must be the firmware's boot
    /// path, the only code running, and must use it only for the devices it means.
    pub const unsafe fn new() -> Pio {
        Pio(())
    }
}

impl PortIo for Pio {
    fn inb(&mut self, port: u16) -> u8 {
        // SAFETY: Pio exists only on the boot path (see `new`).
        unsafe { Port::<u8>::new(port).read() }
    }
    fn inw(&mut self, port: u16) -> u16 {
        // SAFETY: as above.
        unsafe { Port::<u16>::new(port).read() }
    }
    fn inl(&mut self, port: u16) -> u32 {
        // SAFETY: as above.
        unsafe { Port::<u32>::new(port).read() }
    }
    fn outb(&mut self, port: u16, value: u8) {
        // SAFETY: as above.
        unsafe { Port::<u8>::new(port).write(value) }
    }
    fn outw(&mut self, port: u16, value: u16) {
        // SAFETY: as above.
        unsafe { Port::<u16>::new(port).write(value) }
    }
    fn outl(&mut self, port: u16, value: u32) {
        // SAFETY: as above.
        unsafe { Port::<u32>::new(port).write(value) }
    }
    fn read_bytes(&mut self, port: u16, buf: &mut [u8]) {
        // SAFETY: `rep insb` writes exactly buf.len() bytes to buf; DF is clear
        // (boot.s runs cld and nothing sets it).
        unsafe {
            asm!("rep insb", in("dx") port, inout("rdi") buf.as_mut_ptr() => _,
                 inout("rcx") buf.len() => _, options(nostack, preserves_flags));
        }
    }
}

/// Device registers in the physical address space, through the identity map.
pub struct PhysMmio(());

impl PhysMmio {
    /// # Safety
    /// As for [`Pio::new`]: MMIO reconfigures devices. Only the boot path may
    /// use it, for the windows the firmware itself opened (q35's MMCONFIG).
    pub const unsafe fn new() -> PhysMmio {
        PhysMmio(())
    }
}

impl Mmio for PhysMmio {
    fn read(&mut self, addr: u64, width: u8) -> u32 {
        // SAFETY: `addr` is in a device window that the identity map covers and
        // no Rust object occupies (see `new`); volatile, so each read is one
        // access of exactly this width.
        unsafe {
            match width {
                1 => core::ptr::read_volatile(addr as *const u8) as u32,
                2 => core::ptr::read_volatile(addr as *const u16) as u32,
                _ => core::ptr::read_volatile(addr as *const u32),
            }
        }
    }
    fn write(&mut self, addr: u64, width: u8, value: u32) {
        // SAFETY: as for `read`.
        unsafe {
            match width {
                1 => core::ptr::write_volatile(addr as *mut u8, value as u8),
                2 => core::ptr::write_volatile(addr as *mut u16, value as u16),
                _ => core::ptr::write_volatile(addr as *mut u32, value),
            }
        }
    }
}
