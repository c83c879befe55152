//! Configuration space: the registers, their accesses through ports
//! 0xCF8/0xCFC, lists of writes made ahead of time ([`ConfigWrite`]: the chipset
//! set-up and the S3 resume script share them), and the access the set-up walks
//! with ([`ConfigAccess`]), which spares every VM exit it can.
//!
//! Each configuration access through the ports is two port accesses (0xCF8,
//! 0xCFC): the walk reads what it needs once.

use super::Bdf;
use crate::io::{Mmio, PortIo};

pub const CONFIG_ADDRESS: u16 = 0xCF8;
pub const CONFIG_DATA: u16 = 0xCFC;

/// Configuration space through ports 0xCF8/0xCFC.
pub fn read32(io: &mut impl PortIo, bdf: Bdf, reg: u8) -> u32 {
    io.outl(CONFIG_ADDRESS, bdf.address(reg));
    io.inl(CONFIG_DATA)
}
pub fn read16(io: &mut impl PortIo, bdf: Bdf, reg: u8) -> u16 {
    io.outl(CONFIG_ADDRESS, bdf.address(reg));
    io.inw(CONFIG_DATA + (reg as u16 & 2))
}
pub fn read8(io: &mut impl PortIo, bdf: Bdf, reg: u8) -> u8 {
    io.outl(CONFIG_ADDRESS, bdf.address(reg));
    io.inb(CONFIG_DATA + (reg as u16 & 3))
}
pub fn write32(io: &mut impl PortIo, bdf: Bdf, reg: u8, value: u32) {
    io.outl(CONFIG_ADDRESS, bdf.address(reg));
    io.outl(CONFIG_DATA, value);
}
pub fn write16(io: &mut impl PortIo, bdf: Bdf, reg: u8, value: u16) {
    io.outl(CONFIG_ADDRESS, bdf.address(reg));
    io.outw(CONFIG_DATA + (reg as u16 & 2), value);
}
pub fn write8(io: &mut impl PortIo, bdf: Bdf, reg: u8, value: u8) {
    io.outl(CONFIG_ADDRESS, bdf.address(reg));
    io.outb(CONFIG_DATA + (reg as u16 & 3), value);
}

/// One configuration register write: offset, width in bytes (1, 2 or 4), value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigWrite {
    pub reg: u8,
    pub width: u8,
    pub value: u32,
}

impl ConfigWrite {
    pub const fn byte(reg: u8, value: u8) -> ConfigWrite {
        ConfigWrite {
            reg,
            width: 1,
            value: value as u32,
        }
    }
    pub const fn word(reg: u8, value: u16) -> ConfigWrite {
        ConfigWrite {
            reg,
            width: 2,
            value: value as u32,
        }
    }
    pub const fn dword(reg: u8, value: u32) -> ConfigWrite {
        ConfigWrite {
            reg,
            width: 4,
            value,
        }
    }
}

/// Performs `writes` on `bdf`, in order.
pub fn apply(io: &mut impl PortIo, bdf: Bdf, writes: &[ConfigWrite]) {
    for w in writes {
        match w.width {
            1 => write8(io, bdf, w.reg, w.value as u8),
            2 => write16(io, bdf, w.reg, w.value as u16),
            _ => write32(io, bdf, w.reg, w.value),
        }
    }
}

/// Configuration registers (PCI Local Bus 3.0, PCI-to-PCI Bridge 1.2).
pub mod reg {
    pub const VENDOR: u8 = 0x00;
    pub const COMMAND: u8 = 0x04;
    pub const STATUS: u8 = 0x06;
    pub const CLASS_REVISION: u8 = 0x08;
    pub const HEADER_TYPE: u8 = 0x0E;
    pub const BAR0: u8 = 0x10;
    pub const PRIMARY_BUS: u8 = 0x18;
    pub const SECONDARY_BUS: u8 = 0x19;
    pub const SUBORDINATE_BUS: u8 = 0x1A;
    pub const IO_BASE: u8 = 0x1C;
    pub const IO_LIMIT: u8 = 0x1D;
    pub const MEMORY_BASE: u8 = 0x20;
    pub const MEMORY_LIMIT: u8 = 0x22;
    pub const PREF_MEMORY_BASE: u8 = 0x24;
    pub const PREF_MEMORY_LIMIT: u8 = 0x26;
    pub const PREF_BASE_UPPER32: u8 = 0x28;
    pub const PREF_LIMIT_UPPER32: u8 = 0x2C;
    pub const IO_BASE_UPPER16: u8 = 0x30;
    pub const IO_LIMIT_UPPER16: u8 = 0x32;
    pub const ROM_ADDRESS: u8 = 0x30;
    pub const CAPABILITIES: u8 = 0x34;
    pub const ROM_ADDRESS_BRIDGE: u8 = 0x38;
    pub const INTERRUPT_LINE: u8 = 0x3C;
    pub const INTERRUPT_PIN: u8 = 0x3D;
    pub const BRIDGE_CONTROL: u8 = 0x3E;
}

pub const COMMAND_IO: u16 = 1 << 0;
pub const COMMAND_MEMORY: u16 = 1 << 1;
pub const COMMAND_MASTER: u16 = 1 << 2;
pub const COMMAND_SERR: u16 = 1 << 8;
pub(super) const BRIDGE_CTL_SERR: u16 = 1 << 1;
pub(super) const BRIDGE_CTL_VGA: u16 = 1 << 3;
pub(super) const STATUS_CAP_LIST: u16 = 1 << 4;

/// Class codes (base class, subclass) the set-up treats apart.
pub const CLASS_BRIDGE_PCI: u16 = 0x0604;
pub const CLASS_STORAGE_IDE: u16 = 0x0101;
pub const CLASS_DISPLAY_VGA: u16 = 0x0300;
pub const CLASS_SERIAL_USB: u16 = 0x0C03;

/// Configuration space as the PCI set-up reaches it: one access function,
/// the reads and writes by width on top of it. Under TCG each distinct code
/// path is translated once and each call site costs two blocks, so every
/// access of the set-up goes through the one out-of-line [`Config::access`].
pub trait Config: PortIo {
    /// One access of `width` bytes (1, 2 or 4) to register `reg` of `bdf`:
    /// a write of `value` if `write`, else a read, whose value it returns.
    fn access(&mut self, bdf: Bdf, reg: u8, width: u8, write: bool, value: u32) -> u32;

    fn read8(&mut self, bdf: Bdf, reg: u8) -> u8 {
        self.access(bdf, reg, 1, false, 0) as u8
    }
    fn read16(&mut self, bdf: Bdf, reg: u8) -> u16 {
        self.access(bdf, reg, 2, false, 0) as u16
    }
    fn read32(&mut self, bdf: Bdf, reg: u8) -> u32 {
        self.access(bdf, reg, 4, false, 0)
    }
    /// Two dwords, the low one first (a 64-bit value in a capability).
    fn read64(&mut self, bdf: Bdf, reg: u8) -> u64 {
        self.read32(bdf, reg) as u64 | (self.read32(bdf, reg + 4) as u64) << 32
    }
    fn write8(&mut self, bdf: Bdf, reg: u8, value: u8) {
        self.access(bdf, reg, 1, true, value as u32);
    }
    fn write16(&mut self, bdf: Bdf, reg: u8, value: u16) {
        self.access(bdf, reg, 2, true, value as u32);
    }
    fn write32(&mut self, bdf: Bdf, reg: u8, value: u32) {
        self.access(bdf, reg, 4, true, value);
    }
    fn set_bits16(&mut self, bdf: Bdf, reg: u8, bits: u16) {
        let v = self.read16(bdf, reg);
        self.write16(bdf, reg, v | bits);
    }
    /// Performs `writes` on `bdf`, in order: one loop, whatever the widths.
    fn apply(&mut self, bdf: Bdf, writes: &[ConfigWrite]) {
        for w in writes {
            let w = crate::mem::block_boundary_ref(w);
            self.access(bdf, w.reg, w.width, true, w.value);
        }
    }
}

/// Configuration access as the PCI set-up does it, where every access is a VM
/// exit and the fewest win:
/// - 0xCF8 is written only when it does not hold the address already (sizing
///   a BAR, read-modify-write and neighbouring registers touch one dword
///   several times in a row); through the [`PortIo`] side, a write of 0xCF8
///   is held back until the data port is used;
/// - once q35's MMCONFIG window is open ([`ConfigAccess::use_mmconfig`]), a
///   0xCF8/0xCFC pair becomes one access to the window: one exit, not two.
///
/// Only the PCI set-up uses 0xCF8 while ferrite runs, so the cache cannot go
/// stale; a narrower write into 0xCF8..0xCFB (0xCF9 is PIIX's reset control)
/// forgets it.
pub struct ConfigAccess<'a, IO: PortIo, M: Mmio> {
    io: &'a mut IO,
    mmio: &'a mut M,
    /// The address 0xCF8 holds, or 0 (never a configuration address: those
    /// have bit 31 set) when unknown.
    last: u32,
    /// The address the next data-port access is for.
    pending: u32,
    mmconfig: Option<u64>,
}

impl<'a, IO: PortIo, M: Mmio> ConfigAccess<'a, IO, M> {
    pub fn new(io: &'a mut IO, mmio: &'a mut M) -> Self {
        ConfigAccess {
            io,
            mmio,
            last: 0,
            pending: 0,
            mmconfig: None,
        }
    }

    /// From now on, configuration accesses go through the MMCONFIG window at
    /// `base` (256 buses, 4 KiB per function).
    pub fn use_mmconfig(&mut self, base: u64) {
        self.mmconfig = Some(base);
    }

    fn forget_if_address(&mut self, port: u16) {
        if (CONFIG_ADDRESS..CONFIG_ADDRESS + 4).contains(&port) {
            self.last = 0;
            self.pending = 0;
        }
    }

    /// The one access everything goes through: `address` as written to
    /// 0xCF8, `lane` the byte within its dword (0xCFC + lane).
    #[inline(never)]
    fn access_at(&mut self, address: u32, lane: u16, width: u8, write: bool, value: u32) -> u32 {
        if let Some(base) = self.mmconfig {
            let a = address as u64;
            let at = base + ((a >> 8 & 0xFFFF) << 12 | (a & 0xFC)) + lane as u64;
            if write {
                self.mmio.write(at, width, value);
                return 0;
            }
            return self.mmio.read(at, width);
        }
        if address != self.last {
            self.io.outl(CONFIG_ADDRESS, address);
            self.last = address;
        }
        let port = CONFIG_DATA + lane;
        match (write, width) {
            (false, 1) => self.io.inb(port) as u32,
            (false, 2) => self.io.inw(port) as u32,
            (false, _) => self.io.inl(port),
            (true, 1) => {
                self.io.outb(port, value as u8);
                0
            }
            (true, 2) => {
                self.io.outw(port, value as u16);
                0
            }
            (true, _) => {
                self.io.outl(port, value);
                0
            }
        }
    }

    /// For an access to `port`: the data-port lane when it reaches the
    /// pending configuration address, else None (the port itself).
    fn lane(&self, port: u16) -> Option<u16> {
        let lane = port.wrapping_sub(CONFIG_DATA);
        (lane < 4 && self.pending & 0x8000_0000 != 0).then_some(lane)
    }
}

impl<IO: PortIo, M: Mmio> ConfigAccess<'_, IO, M> {
    /// [`Config::access`] with `reg`, `width` and `write` in one argument
    /// ([`op`]), out of line, the address worked out here: under TCG each
    /// call site's own copy of [`Bdf::address`] and of the arguments was
    /// more translated instructions.
    #[inline(never)]
    fn access_op(&mut self, bdf: Bdf, op: u32, value: u32) -> u32 {
        let reg = op as u8;
        let (width, write) = ((op >> 8) as u8, op & WRITE != 0);
        self.access_at(bdf.address(reg), reg as u16 & 3, width, write, value)
    }
}

/// [`ConfigAccess::access_op`]'s packed argument: register, width, write.
const fn op(reg: u8, width: u8, write: bool) -> u32 {
    reg as u32 | (width as u32) << 8 | if write { WRITE } else { 0 }
}
const WRITE: u32 = 1 << 16;

impl<IO: PortIo, M: Mmio> Config for ConfigAccess<'_, IO, M> {
    fn access(&mut self, bdf: Bdf, reg: u8, width: u8, write: bool, value: u32) -> u32 {
        self.access_op(bdf, op(reg, width, write), value)
    }
    fn read8(&mut self, bdf: Bdf, reg: u8) -> u8 {
        self.access_op(bdf, op(reg, 1, false), 0) as u8
    }
    fn read16(&mut self, bdf: Bdf, reg: u8) -> u16 {
        self.access_op(bdf, op(reg, 2, false), 0) as u16
    }
    fn read32(&mut self, bdf: Bdf, reg: u8) -> u32 {
        self.access_op(bdf, op(reg, 4, false), 0)
    }
    fn write8(&mut self, bdf: Bdf, reg: u8, value: u8) {
        self.access_op(bdf, op(reg, 1, true), value as u32);
    }
    fn write16(&mut self, bdf: Bdf, reg: u8, value: u16) {
        self.access_op(bdf, op(reg, 2, true), value as u32);
    }
    fn write32(&mut self, bdf: Bdf, reg: u8, value: u32) {
        self.access_op(bdf, op(reg, 4, true), value);
    }
}

impl<IO: PortIo, M: Mmio> PortIo for ConfigAccess<'_, IO, M> {
    fn inb(&mut self, port: u16) -> u8 {
        match self.lane(port) {
            Some(lane) => self.access_at(self.pending, lane, 1, false, 0) as u8,
            None => self.io.inb(port),
        }
    }
    fn inw(&mut self, port: u16) -> u16 {
        match self.lane(port) {
            Some(lane) => self.access_at(self.pending, lane, 2, false, 0) as u16,
            None => self.io.inw(port),
        }
    }
    fn inl(&mut self, port: u16) -> u32 {
        match self.lane(port) {
            Some(lane) => self.access_at(self.pending, lane, 4, false, 0),
            None => self.io.inl(port),
        }
    }
    fn outb(&mut self, port: u16, value: u8) {
        self.forget_if_address(port);
        match self.lane(port) {
            Some(lane) => {
                self.access_at(self.pending, lane, 1, true, value as u32);
            }
            None => self.io.outb(port, value),
        }
    }
    fn outw(&mut self, port: u16, value: u16) {
        self.forget_if_address(port);
        match self.lane(port) {
            Some(lane) => {
                self.access_at(self.pending, lane, 2, true, value as u32);
            }
            None => self.io.outw(port, value),
        }
    }
    fn outl(&mut self, port: u16, value: u32) {
        if port == CONFIG_ADDRESS {
            self.pending = value;
            return;
        }
        match self.lane(port) {
            Some(lane) => {
                self.access_at(self.pending, lane, 4, true, value);
            }
            None => self.io.outl(port, value),
        }
    }
    fn read_bytes(&mut self, port: u16, buf: &mut [u8]) {
        self.io.read_bytes(port, buf)
    }
}
