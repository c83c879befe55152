//! A small model of QEMU's PCI buses: functions with configuration bytes and
//! BARs that behave as hardware does (read-only IDs, size bits that stick),
//! reached through 0xCF8/0xCFC and through the MMCONFIG window. The fuzzer
//! builds machines from it too.

use crate::chipset::Machine;
use crate::io::{Mmio, PortIo};
use crate::mem::Range;
use crate::pci::{Bdf, CONFIG_ADDRESS, CONFIG_DATA, Layout, Pci, PciError, Platform};
use core::cell::RefCell;
use std::vec::Vec;

/// One function of the model: config bytes, and per BAR (0-5, 6 = ROM) its
/// size (0: not implemented) and type bits.
#[derive(Clone)]
pub(crate) struct Func {
    pub(crate) parent: Option<usize>,
    pub(crate) devfn: u8,
    pub(crate) cfg: [u8; 256],
    bars: [(u64, u32); 7],
    io_window: bool,
}

impl Func {
    pub(crate) fn new(vendor: u16, device: u16, class: u16, header: u8) -> Func {
        let mut cfg = [0u8; 256];
        cfg[0..2].copy_from_slice(&vendor.to_le_bytes());
        cfg[2..4].copy_from_slice(&device.to_le_bytes());
        cfg[0x0A..0x0C].copy_from_slice(&class.to_le_bytes());
        cfg[0x0E] = header;
        Func {
            parent: None,
            devfn: 0,
            cfg,
            bars: [(0, 0); 7],
            io_window: true,
        }
    }
    pub(crate) fn at(mut self, parent: Option<usize>, dev: u8, func: u8) -> Func {
        self.parent = parent;
        self.devfn = dev << 3 | func;
        self
    }
    pub(crate) fn pin(mut self, pin: u8) -> Func {
        self.cfg[0x3D] = pin;
        self
    }
    pub(crate) fn io(mut self, bar: usize, size: u64) -> Func {
        self.bars[bar] = (size, 1);
        self
    }
    pub(crate) fn mem(mut self, bar: usize, size: u64) -> Func {
        self.bars[bar] = (size, 0);
        self
    }
    pub(crate) fn mem64(mut self, bar: usize, size: u64) -> Func {
        self.bars[bar] = (size, 0x4);
        self
    }
    pub(crate) fn mem64_pref(mut self, bar: usize, size: u64) -> Func {
        self.bars[bar] = (size, 0xC);
        self
    }
    pub(crate) fn rom(mut self, size: u64) -> Func {
        self.bars[6] = (size, 0);
        self
    }
    /// Capabilities: (id, bytes after id/next) chained from 0x40.
    pub(crate) fn caps(mut self, caps: &[(u8, &[u8])]) -> Func {
        self.cfg[0x06] |= 0x10;
        self.cfg[0x34] = 0x40;
        let mut at = 0x40usize;
        for (i, (id, body)) in caps.iter().enumerate() {
            let next = at + 2 + body.len().max(2);
            let next = (next + 3) & !3;
            self.cfg[at] = *id;
            self.cfg[at + 1] = if i + 1 == caps.len() { 0 } else { next as u8 };
            self.cfg[at + 2..at + 2 + body.len()].copy_from_slice(body);
            at = next;
        }
        self
    }
    fn is_bridge(&self) -> bool {
        self.cfg[0x0E] & 0x7F == 1
    }
    fn bar_reg(&self, bar: usize) -> usize {
        match bar {
            6 if self.is_bridge() => 0x38,
            6 => 0x30,
            b => 0x10 + 4 * b,
        }
    }
    fn dword(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.cfg[at..at + 4].try_into().unwrap())
    }
    fn set_dword(&mut self, at: usize, v: u32) {
        self.cfg[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    /// Applies what hardware keeps fixed after a write.
    fn fixup(&mut self) {
        for bar in 0..7 {
            if self.is_bridge() && (2..6).contains(&bar) {
                continue;
            }
            let at = self.bar_reg(bar);
            let (size, flags) = self.bars[bar];
            if size == 0 {
                let implemented_high = bar > 0 && self.bars[bar - 1].1 & 4 != 0 && bar != 6;
                if !implemented_high {
                    self.set_dword(at, 0);
                }
                continue;
            }
            let mask = !(size - 1);
            let lo = self.dword(at);
            let v = if bar == 6 {
                lo & mask as u32 & 0xFFFF_F801
            } else if flags & 1 != 0 {
                (lo & mask as u32 & !3) | 1
            } else {
                (lo & mask as u32 & !0xF) | flags
            };
            self.set_dword(at, v);
            if bar < 6 && flags & 4 != 0 {
                let hi = self.dword(at + 4) & (mask >> 32) as u32;
                self.set_dword(at + 4, hi);
            }
        }
        if self.is_bridge() {
            for at in [0x1C, 0x1D] {
                self.cfg[at] = if self.io_window {
                    self.cfg[at] & 0xF0
                } else {
                    0
                };
            }
            for at in [0x24, 0x26] {
                self.cfg[at] = (self.cfg[at] & 0xF0) | 1;
            }
        }
    }
}

pub(crate) struct Model {
    pub(super) funcs: Vec<Func>,
    addr: u32,
    pub(super) ports: Vec<(u16, u8)>,
    pub(crate) accesses: usize,
    pub(crate) mmio_accesses: usize,
    /// Each configuration write: the function and the dword register.
    pub(super) writes: Vec<(Bdf, usize)>,
}

impl Model {
    pub(crate) fn new(funcs: Vec<Func>) -> Model {
        let mut funcs = funcs;
        for f in &mut funcs {
            f.fixup();
        }
        Model {
            funcs,
            addr: 0,
            ports: Vec::new(),
            accesses: 0,
            mmio_accesses: 0,
            writes: Vec::new(),
        }
    }
    fn find(&self, bdf: Bdf) -> Option<usize> {
        let devfn = bdf.devfn();
        let parent = if bdf.0 == 0 {
            None
        } else {
            Some(
                self.funcs
                    .iter()
                    .position(|f| f.is_bridge() && f.cfg[0x19] == bdf.0)?,
            )
        };
        self.funcs
            .iter()
            .position(|f| f.parent == parent && f.devfn == devfn)
    }
    fn target(&self) -> Option<(usize, usize)> {
        if self.addr & 0x8000_0000 == 0 {
            return None;
        }
        let bdf = Bdf::from_devfn((self.addr >> 16) as u8, (self.addr >> 8) as u8);
        Some((self.find(bdf)?, (self.addr & 0xFC) as usize))
    }
    fn read(&mut self, port: u16, len: usize) -> u32 {
        self.accesses += 1;
        let Some((i, reg)) = self.target() else {
            return u32::MAX >> (32 - 8 * len);
        };
        let at = reg + (port - CONFIG_DATA) as usize;
        let mut v = 0u32;
        for k in 0..len {
            v |= (self.funcs[i].cfg[at + k] as u32) << (8 * k);
        }
        v
    }
    fn write(&mut self, port: u16, len: usize, v: u32) {
        self.accesses += 1;
        if port == CONFIG_ADDRESS {
            self.addr = v;
            return;
        }
        if !(CONFIG_DATA..CONFIG_DATA + 4).contains(&port) {
            self.ports.push((port, v as u8));
            return;
        }
        let Some((i, reg)) = self.target() else {
            return;
        };
        let bdf = Bdf::from_devfn((self.addr >> 16) as u8, (self.addr >> 8) as u8);
        self.writes.push((bdf, reg));
        let at = reg + (port - CONFIG_DATA) as usize;
        for k in 0..len {
            // vendor, device, class, header type, capabilities: read-only
            let caps = self.funcs[i].cfg[0x06] & 0x10 != 0;
            if matches!(at + k, 0..=3 | 8..=0xB | 0xE | 0x34)
                || (caps && (0x40..0x80).contains(&(at + k)))
            {
                continue;
            }
            self.funcs[i].cfg[at + k] = (v >> (8 * k)) as u8;
        }
        self.funcs[i].fixup();
    }
    pub(super) fn cfg(&self, bdf: Bdf) -> &[u8; 256] {
        &self.funcs[self.find(bdf).expect("function")].cfg
    }
    pub(super) fn r32(&self, bdf: Bdf, at: usize) -> u32 {
        u32::from_le_bytes(self.cfg(bdf)[at..at + 4].try_into().unwrap())
    }
    pub(super) fn r16(&self, bdf: Bdf, at: usize) -> u16 {
        u16::from_le_bytes(self.cfg(bdf)[at..at + 2].try_into().unwrap())
    }
    pub(super) fn bar64(&self, bdf: Bdf, at: usize) -> u64 {
        (self.r32(bdf, at) & !0xF) as u64 | (self.r32(bdf, at + 4) as u64) << 32
    }
}

/// The model behind both of the set-up's ways in: 0xCF8/0xCFC (the cell
/// itself), and the MMCONFIG window (at the address the q35 tests give).
struct MmioSide<'a>(&'a RefCell<Model>);

impl MmioSide<'_> {
    /// Points the model at the function and dword an MMCONFIG address names;
    /// returns the data port of the byte lane.
    fn select(m: &mut Model, addr: u64) -> u16 {
        let off = addr - MMCONFIG_BASE;
        assert!(
            off < 256 << 20,
            "access outside the MMCONFIG window: {addr:#x}"
        );
        assert_eq!(
            off & 0xF00,
            0,
            "extended configuration space is not modelled"
        );
        m.mmio_accesses += 1;
        m.addr = 0x8000_0000 | ((off >> 12) as u32) << 8 | (off & 0xFC) as u32;
        CONFIG_DATA + (off & 3) as u16
    }
}

impl Mmio for MmioSide<'_> {
    fn read(&mut self, addr: u64, width: u8) -> u32 {
        let m = &mut *self.0.borrow_mut();
        let port = Self::select(m, addr);
        m.read(port, width as usize)
    }
    fn write(&mut self, addr: u64, width: u8, v: u32) {
        let m = &mut *self.0.borrow_mut();
        let port = Self::select(m, addr);
        m.write(port, width as usize, v)
    }
}

pub(super) const MMCONFIG_BASE: u64 = 0xB000_0000;

pub(super) fn setup(pci: &mut Pci, m: &mut Model, p: &Platform) -> Result<Layout, PciError> {
    let cell = RefCell::new(std::mem::replace(m, Model::new(Vec::new())));
    let r = pci.setup(&mut &cell, &mut MmioSide(&cell), p).copied();
    *m = cell.into_inner();
    r
}

impl PortIo for Model {
    fn inb(&mut self, port: u16) -> u8 {
        self.read(port, 1) as u8
    }
    fn inw(&mut self, port: u16) -> u16 {
        self.read(port, 2) as u16
    }
    fn inl(&mut self, port: u16) -> u32 {
        self.read(port, 4)
    }
    fn outb(&mut self, port: u16, v: u8) {
        self.write(port, 1, v as u32)
    }
    fn outw(&mut self, port: u16, v: u16) {
        self.write(port, 2, v as u32)
    }
    fn outl(&mut self, port: u16, v: u32) {
        self.write(port, 4, v)
    }
    fn read_bytes(&mut self, _: u16, _: &mut [u8]) {
        unreachable!()
    }
}

pub(super) const PCIE_ROOT_PORT_EXP: &[u8] = &[0x42, 0x01]; // v2, root port (4), slot implemented

/// QEMU's `-M pc` with one virtio-net device, and `extra`.
pub(crate) fn pc_machine(extra: Vec<Func>) -> Vec<Func> {
    let mut v = vec![
        Func::new(0x8086, 0x1237, 0x0600, 0).at(None, 0, 0),
        Func::new(0x8086, 0x7000, 0x0601, 0x80).at(None, 1, 0),
        Func::new(0x8086, 0x7010, 0x0101, 0)
            .at(None, 1, 1)
            .io(4, 16),
        Func::new(0x8086, 0x7113, 0x0680, 0).at(None, 1, 3).pin(1),
        // virtio-net: legacy I/O, MSI-X memory, modern 64-bit prefetchable
        Func::new(0x1AF4, 0x1000, 0x0200, 0)
            .at(None, 3, 0)
            .pin(1)
            .io(0, 32)
            .mem(1, 4096)
            .mem64_pref(4, 16 << 10)
            .rom(256 << 10),
    ];
    v.extend(extra);
    v
}

/// QEMU's `-M q35`: the MCH, the LPC bridge, the AHCI and SMBus
/// controllers, and `extra`.
pub(crate) fn q35_machine(extra: Vec<Func>) -> Vec<Func> {
    let mut v = vec![
        Func::new(0x8086, 0x29C0, 0x0600, 0).at(None, 0, 0),
        Func::new(0x8086, 0x2918, 0x0601, 0x80).at(None, 0x1F, 0),
        Func::new(0x8086, 0x2922, 0x0106, 0x80)
            .at(None, 0x1F, 2)
            .pin(1)
            .io(4, 32)
            .mem(5, 4096),
        Func::new(0x8086, 0x2930, 0x0C05, 0x80)
            .at(None, 0x1F, 3)
            .pin(1)
            .io(4, 64),
    ];
    v.extend(extra);
    v
}

pub(super) fn pc(low_ram_end: u64) -> Platform {
    Platform {
        host: Machine::I440fx,
        low_ram_end,
        high_ram_end: 1 << 32,
        reserved_memory_end: 0,
        pm_base: 0x600,
        mmconfig: Range::new(0xB000_0000, 0xC000_0000),
    }
}

/// Every memory BAR and I/O BAR of every function: (bdf index, start, size, io).
pub(super) fn assigned(m: &Model) -> Vec<(usize, u64, u64, bool)> {
    let mut out = Vec::new();
    for (i, f) in m.funcs.iter().enumerate() {
        let mut bar = 0;
        while bar < 7 {
            let (size, flags) = f.bars[bar];
            if size != 0 {
                let at = f.bar_reg(bar);
                let lo = f.dword(at);
                let start = if flags & 4 != 0 {
                    (lo & !0xF) as u64 | (f.dword(at + 4) as u64) << 32
                } else if flags & 1 != 0 {
                    (lo & !3) as u64
                } else {
                    (lo & !0x7FF & !0xF) as u64
                };
                out.push((i, start, size, flags & 1 != 0));
            }
            bar += if flags & 4 != 0 { 2 } else { 1 };
        }
    }
    out
}

pub(crate) fn assert_no_overlap(m: &Model) {
    let a = assigned(m);
    for (n, x) in a.iter().enumerate() {
        assert_eq!(x.1 % x.2, 0, "BAR {x:x?} misaligned");
        assert!(x.1 != 0, "BAR {x:x?} unassigned");
        for y in &a[n + 1..] {
            if x.3 == y.3 {
                assert!(
                    x.1 + x.2 <= y.1 || y.1 + y.2 <= x.1,
                    "{x:x?} overlaps {y:x?}"
                );
            }
        }
    }
}
