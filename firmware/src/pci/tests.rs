//! The PCI set-up against a small model of QEMU's PCI buses.

use super::*;
use crate::io::{Mmio, NoMmio};
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
    funcs: Vec<Func>,
    addr: u32,
    ports: Vec<(u16, u8)>,
    pub(crate) accesses: usize,
    pub(crate) mmio_accesses: usize,
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
    fn cfg(&self, bdf: Bdf) -> &[u8; 256] {
        &self.funcs[self.find(bdf).expect("function")].cfg
    }
    fn r32(&self, bdf: Bdf, at: usize) -> u32 {
        u32::from_le_bytes(self.cfg(bdf)[at..at + 4].try_into().unwrap())
    }
    fn r16(&self, bdf: Bdf, at: usize) -> u16 {
        u16::from_le_bytes(self.cfg(bdf)[at..at + 2].try_into().unwrap())
    }
    fn bar64(&self, bdf: Bdf, at: usize) -> u64 {
        (self.r32(bdf, at) & !0xF) as u64 | (self.r32(bdf, at + 4) as u64) << 32
    }
}

/// The model behind both of the set-up's ways in: 0xCF8/0xCFC, and the
/// MMCONFIG window (at the address the q35 tests give).
struct PortSide<'a>(&'a RefCell<Model>);
struct MmioSide<'a>(&'a RefCell<Model>);

impl PortIo for PortSide<'_> {
    fn inb(&mut self, port: u16) -> u8 {
        self.0.borrow_mut().inb(port)
    }
    fn inw(&mut self, port: u16) -> u16 {
        self.0.borrow_mut().inw(port)
    }
    fn inl(&mut self, port: u16) -> u32 {
        self.0.borrow_mut().inl(port)
    }
    fn outb(&mut self, port: u16, v: u8) {
        self.0.borrow_mut().outb(port, v)
    }
    fn outw(&mut self, port: u16, v: u16) {
        self.0.borrow_mut().outw(port, v)
    }
    fn outl(&mut self, port: u16, v: u32) {
        self.0.borrow_mut().outl(port, v)
    }
    fn read_bytes(&mut self, _: u16, _: &mut [u8]) {
        unreachable!()
    }
}

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

const MMCONFIG_BASE: u64 = 0xB000_0000;

fn setup(pci: &mut Pci, m: &mut Model, p: &Platform) -> Result<Layout, PciError> {
    let cell = RefCell::new(std::mem::replace(m, Model::new(Vec::new())));
    let r = pci.setup(&mut PortSide(&cell), &mut MmioSide(&cell), p);
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

const PCIE_ROOT_PORT_EXP: &[u8] = &[0x42, 0x01]; // v2, root port (4), slot implemented

fn pc_machine(extra: Vec<Func>) -> Vec<Func> {
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

fn pc(low_ram_end: u64) -> Platform {
    Platform {
        host: HostBridge::I440fx,
        low_ram_end,
        high_ram_end: 1 << 32,
        reserved_memory_end: 0,
        pm_base: 0x600,
        mmconfig: Range::new(0xB000_0000, 0xC000_0000),
    }
}

/// Every memory BAR and I/O BAR of every function: (bdf index, start, size, io).
fn assigned(m: &Model) -> Vec<(usize, u64, u64, bool)> {
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

#[test]
fn pc_devices_get_seabios_addresses_irqs_and_decoding() {
    let bridge = Func::new(0x1B36, 0x0001, 0x0604, 1)
        .at(None, 5, 0)
        .pin(1)
        .mem(0, 256)
        .caps(&[(CAP_ID_SHPC, &[0, 0])]);
    let blk = Func::new(0x1AF4, 0x1001, 0x0100, 0)
        .at(Some(5), 0, 0)
        .pin(1)
        .io(0, 64)
        .mem(1, 4096)
        .mem64_pref(4, 16 << 10);
    let mut m = Model::new(pc_machine(vec![bridge, blk]));
    let mut pci = std::boxed::Box::new(Pci::new());
    let layout = setup(&mut pci, &mut m, &pc(512 << 20)).unwrap();
    assert_eq!(layout.mem32_start, 0x8000_0000);
    assert_eq!(layout.mem64, None);
    assert_eq!(layout.functions, 7);
    assert_eq!(layout.max_bus, 1);

    // bus numbers
    let br = Bdf(0, 5, 0);
    assert_eq!(m.cfg(br)[0x18..0x1B], [0, 1, 1]);
    // I/O: the bridge window (4 KiB aligned) first at 0xC000, then by size
    assert_eq!(m.cfg(br)[0x1C], 0xC0);
    assert_eq!(m.cfg(br)[0x1D], 0xC0);
    assert_eq!(m.r32(Bdf(1, 0, 0), 0x10), 0xC001);
    assert_eq!(m.r32(Bdf(0, 3, 0), 0x10), 0xD001);
    assert_eq!(m.r32(Bdf(0, 1, 1), 0x20), 0xD021);
    // memory: prefetchable (2 MiB-aligned bridge window) at the top of the window
    let pref_base = (m.r16(br, 0x24) as u64 & 0xFFF0) << 16;
    assert_eq!(pref_base, 0xFE80_0000);
    assert_eq!(m.bar64(Bdf(1, 0, 0), 0x20), pref_base);
    assert_eq!(m.bar64(Bdf(0, 3, 0), 0x20), pref_base + (2 << 20));
    let mem_base = (m.r16(br, 0x20) as u64) << 16;
    assert!(mem_base >= 0x8000_0000 && mem_base < pref_base);
    // the option ROM gets an address but stays disabled
    let rom = m.r32(Bdf(0, 3, 0), 0x30);
    assert_eq!(rom & 1, 0);
    assert_ne!(rom, 0);
    assert_no_overlap(&m);

    // interrupt lines: QEMU's rotation (slot 3 -> LNKC = 11; behind slot 5 -> 10)
    assert_eq!(m.cfg(Bdf(0, 3, 0))[0x3C], 11);
    assert_eq!(m.cfg(Bdf(1, 0, 0))[0x3C], 10);
    assert_eq!(m.cfg(br)[0x3C], 10);
    // chipset: PIRQ routing, ELCR, PM block with SCI on 9, IDE decode
    assert_eq!(m.cfg(Bdf(0, 1, 0))[0x60..0x64], [10, 10, 11, 11]);
    assert_eq!(m.ports, [(0x4D0, 0), (0x4D1, 0x0C)]);
    assert_eq!(m.cfg(Bdf(0, 1, 3))[0x3C], 9);
    assert_eq!(m.r32(Bdf(0, 1, 3), 0x40), 0x601);
    assert_eq!(m.r32(Bdf(0, 1, 3), 0x90), 0x701);
    assert_eq!(m.r16(Bdf(0, 1, 1), 0x40), 0x8000);
    // decoding on everywhere, bus mastering on the disk controller only (as
    // SeaBIOS leaves them), SERR forwarding on the bridge
    for f in &m.funcs {
        let cmd = u16::from_le_bytes([f.cfg[4], f.cfg[5]]);
        assert_eq!(cmd & 0x103, 0x103);
        let disk = f.cfg[0x0B] == 0x01 && f.cfg[0x0A] != 0x01;
        assert_eq!(cmd & 4 != 0, disk, "{:x?}", &f.cfg[..12]);
    }
    assert_eq!(m.r16(br, 0x3E) & 2, 2);
}

#[test]
fn q35_root_port_reserves_hotplug_windows_and_mmconfig() {
    let mut funcs = vec![
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
        Func::new(0x1B36, 0x000C, 0x0604, 1)
            .at(None, 2, 0)
            .pin(1)
            .mem(0, 4096)
            .caps(&[(CAP_ID_EXP, PCIE_ROOT_PORT_EXP)]),
        // an empty root port: hot-plug reservation only
        Func::new(0x1B36, 0x000C, 0x0604, 1)
            .at(None, 2, 1)
            .pin(1)
            .caps(&[(CAP_ID_EXP, PCIE_ROOT_PORT_EXP)]),
    ];
    funcs[4].cfg[0x0E] |= 0x80;
    let rng = Func::new(0x1AF4, 0x1044, 0x00FF, 0)
        .at(Some(4), 0, 0)
        .pin(1)
        .mem(1, 4096)
        .mem64_pref(4, 16 << 10);
    funcs.push(rng);
    let mut m = Model::new(funcs);
    let platform = Platform {
        host: HostBridge::Q35,
        ..pc(2 << 30)
    };
    let mut pci = std::boxed::Box::new(Pci::new());
    let layout = setup(&mut pci, &mut m, &platform).unwrap();
    assert_eq!(layout.mem32_start, 0xC000_0000);
    assert_eq!(layout.reserved, [Some(platform.mmconfig), Some(ICH9_RCBA)]);
    assert_eq!(m.r32(Bdf(0, 0, 0), 0x60), 0xB000_0001);
    assert_eq!(layout.max_bus, 2);
    let (rp1, rp2) = (Bdf(0, 2, 0), Bdf(0, 2, 1));
    assert_eq!(m.cfg(rp1)[0x18..0x1B], [0, 1, 1]);
    assert_eq!(m.cfg(rp2)[0x18..0x1B], [0, 2, 2]);
    // PCIe hot-plug: no I/O window needed (limit below base), 2 MiB memory windows
    for rp in [rp1, rp2] {
        assert!(
            m.cfg(rp)[0x1D] < m.cfg(rp)[0x1C],
            "I/O window of {rp:?} open"
        );
        let mem = (m.r16(rp, 0x20) as u64) << 16;
        let mem_limit = ((m.r16(rp, 0x22) as u64) << 16) | 0xFFFFF;
        assert_eq!(mem_limit + 1 - mem, 2 << 20);
        let pref = (m.r16(rp, 0x24) as u64 & 0xFFF0) << 16;
        let pref_limit = ((m.r16(rp, 0x26) as u64 & 0xFFF0) << 16) | 0xFFFFF;
        assert_eq!(pref_limit + 1 - pref, 2 << 20);
    }
    let pref1 = (m.r16(rp1, 0x24) as u64 & 0xFFF0) << 16;
    assert_eq!(m.bar64(Bdf(1, 0, 0), 0x20), pref1);
    // ICH9: PIRQ A-H, PM base with ACPI on, RCBA, SMBus after the PM block
    let lpc = Bdf(0, 0x1F, 0);
    assert_eq!(m.cfg(lpc)[0x60..0x64], [10, 10, 11, 11]);
    assert_eq!(m.cfg(lpc)[0x68..0x6C], [10, 10, 11, 11]);
    assert_eq!(m.r32(lpc, 0x40), 0x601);
    assert_eq!(m.cfg(lpc)[0x44], 0x80);
    assert_eq!(m.r32(lpc, 0xF0), 0xFED1_C001);
    assert_eq!(m.r32(Bdf(0, 0x1F, 3), 0x20), 0x701);
    // slot 0x1F uses LNKA-D without rotation; slot 2 rotates by 2
    assert_eq!(m.cfg(Bdf(0, 0x1F, 2))[0x3C], 10);
    assert_eq!(m.cfg(rp1)[0x3C], 11);
    assert_eq!(m.cfg(Bdf(1, 0, 0))[0x3C], 11);
}

#[test]
fn large_64bit_bars_move_above_the_ram_above_4g() {
    let ivshmem = Func::new(0x1AF4, 0x1110, 0x0500, 0)
        .at(None, 4, 0)
        .mem(0, 256)
        .mem64_pref(2, 2 << 30);
    let mut m = Model::new(pc_machine(vec![ivshmem]));
    let platform = Platform {
        high_ram_end: (4 << 30) + (1 << 30) + (3 << 20),
        ..pc(3 << 30)
    };
    let mut pci = std::boxed::Box::new(Pci::new());
    let layout = setup(&mut pci, &mut m, &platform).unwrap();
    assert_eq!(layout.mem32_start, 0xC000_0000);
    // all 64-bit BARs go high: 1 GiB-aligned above the RAM
    assert_eq!(m.bar64(Bdf(0, 4, 0), 0x18), 6 << 30);
    assert_eq!(m.bar64(Bdf(0, 3, 0), 0x20), 8 << 30);
    assert_eq!(layout.mem64, Some(Range::new(6 << 30, 9 << 30)));
    // the 32-bit ones stay below
    assert!(m.r32(Bdf(0, 4, 0), 0x10) >= 0xC000_0000);
    assert_no_overlap(&m);
}

/// The parity test's devices (xtask/src/parity.rs): a 1 GiB ivshmem BAR, a
/// PCI bridge whose SHPC BAR is 64-bit, a device behind it. The bridge's BAR,
/// the ivshmem BAR and the bridge's prefetchable window get the addresses
/// SeaBIOS 1.16.2 gives them live on pc with 5 GiB (`cargo xtask compare`).
#[test]
fn a_1gib_bar_moves_every_64bit_bar_above_4g_as_seabios_does_live() {
    let devices = || {
        std::vec![
            Func::new(0x1AF4, 0x1110, 0x0500, 0)
                .at(None, 4, 0)
                .mem(0, 256)
                .mem64_pref(2, 1 << 30),
            Func::new(0x1B36, 0x0001, 0x0604, 1)
                .at(None, 5, 0)
                .pin(1)
                .mem64(0, 256)
                .caps(&[(CAP_ID_SHPC, &[0, 0])]),
            // behind the bridge: its index in the model (after pc_machine's 5)
            Func::new(0x1AF4, 0x1044, 0x00FF, 0)
                .at(Some(6), 0, 0)
                .pin(1)
                .mem(1, 4096)
                .mem64_pref(4, 16 << 10),
        ]
    };
    // pc with 5 GiB: 3 GiB below 4 GiB, the 32-bit window from 3 GiB is too
    // small; the 64-bit BARs go above the 2 GiB of RAM above 4 GiB, the
    // non-prefetchable ones first, each kind 1 GiB-aligned
    let mut m = Model::new(pc_machine(devices()));
    let platform = Platform {
        high_ram_end: 6 << 30,
        ..pc(3 << 30)
    };
    let mut pci = std::boxed::Box::new(Pci::new());
    let layout = setup(&mut pci, &mut m, &platform).unwrap();
    let br = Bdf(0, 5, 0);
    assert_eq!(m.bar64(br, 0x10), 0x1_8000_0000);
    assert_eq!(m.bar64(Bdf(0, 4, 0), 0x18), 0x1_C000_0000);
    let pref = (m.r16(br, 0x24) as u64 & 0xFFF0) << 16 | (m.r32(br, 0x28) as u64) << 32;
    assert_eq!(pref, 0x2_0000_0000);
    assert_eq!(m.bar64(Bdf(1, 0, 0), 0x20), 0x2_0000_0000);
    assert_eq!(m.bar64(Bdf(0, 3, 0), 0x20), 0x2_0020_0000);
    assert_eq!(layout.mem64, Some(Range::new(0x1_8000_0000, 0x2_4000_0000)));
    assert_no_overlap(&m);

    // with 512 MiB the 1 GiB BAR fits below 4 GiB on pc, and nothing moves
    let mut m = Model::new(pc_machine(devices()));
    let layout = setup(&mut pci, &mut m, &pc(512 << 20)).unwrap();
    assert_eq!(layout.mem64, None);
    assert_eq!(m.bar64(Bdf(0, 4, 0), 0x18), 0x8000_0000);
    assert_no_overlap(&m);

    // with no RAM above 4 GiB the moved BARs start at 4 GiB
    let mut m = Model::new(pc_machine(devices()));
    let platform = Platform {
        high_ram_end: 1 << 32,
        ..pc(3 << 30)
    };
    let layout = setup(&mut pci, &mut m, &platform).unwrap();
    assert_eq!(m.bar64(br, 0x10), 1 << 32);
    assert_eq!(m.bar64(Bdf(0, 4, 0), 0x18), 5 << 30);
    assert_eq!(layout.mem64.map(|r| r.start), Some(1 << 32));
    assert_no_overlap(&m);
}

#[test]
fn bars_that_fit_nowhere_are_an_error_not_an_overlap() {
    // a 2 GiB 32-bit BAR cannot fit above 3 GiB
    let huge = Func::new(0x1234, 0x1111, 0x0380, 0)
        .at(None, 4, 0)
        .mem(0, 2 << 30);
    let mut m = Model::new(pc_machine(vec![huge]));
    let mut pci = std::boxed::Box::new(Pci::new());
    assert_eq!(
        setup(&mut pci, &mut m, &pc(3 << 30)),
        Err(PciError::OutOfMemorySpace)
    );
    // 48 KiB of I/O BARs do not fit in 0x1000-0x9fff on pc
    let many: Vec<Func> = (4..28)
        .map(|d| {
            Func::new(0x1234, 0x2222, 0x0200, 0)
                .at(None, d, 0)
                .io(0, 2048)
        })
        .collect();
    let mut m = Model::new(pc_machine(many));
    let mut pci = std::boxed::Box::new(Pci::new());
    assert_eq!(
        setup(&mut pci, &mut m, &pc(1 << 30)),
        Err(PciError::OutOfIoSpace)
    );
}

#[test]
fn a_bus_full_of_functions_is_refused_cleanly() {
    // every devfn on bus 0 present and multi-function, and 8 bridges' worth more
    let mut funcs = Vec::new();
    for dev in 0..32u8 {
        for f in 0..8u8 {
            funcs.push(Func::new(0x1234, 0x3333, 0x0200, 0x80).at(None, dev, f));
        }
    }
    funcs.push(Func::new(0x1234, 0x3333, 0x0200, 0).at(Some(0), 0, 0));
    let mut m = Model::new(funcs);
    let mut pci = std::boxed::Box::new(Pci::new());
    let r = setup(&mut pci, &mut m, &pc(1 << 30));
    assert!(r.is_ok(), "256 functions fit: {r:?}");
    assert_eq!(r.unwrap().functions, 256);
}

#[test]
fn more_functions_and_bars_than_the_inline_arrays_hold_are_all_set_up() {
    // bus 0: host bridge, a PCI bridge, 30 slots of 8 functions; behind the
    // bridge 8 slots of 8: 306 functions with 4 BARs each (1,216 > 1,024)
    let mut funcs = vec![
        Func::new(0x8086, 0x1237, 0x0600, 0).at(None, 0, 0),
        Func::new(0x1B36, 0x0001, 0x0604, 1).at(None, 1, 0),
    ];
    let with_bars = |f: Func| f.mem(0, 4096).mem(1, 4096).mem(2, 4096).mem(3, 4096);
    for dev in 2..32u8 {
        for f in 0..8u8 {
            funcs.push(with_bars(Func::new(0x1234, 0x3333, 0x0200, 0x80)).at(None, dev, f));
        }
    }
    for dev in 0..8u8 {
        for f in 0..8u8 {
            funcs.push(with_bars(Func::new(0x1234, 0x4444, 0x0200, 0x80)).at(Some(1), dev, f));
        }
    }
    let mut m = Model::new(funcs);
    let mut pci = std::boxed::Box::new(Pci::new());
    let layout = setup(&mut pci, &mut m, &pc(1 << 30)).unwrap();
    assert_eq!(layout.functions, 306);
    assert!(pci.devices.on_heap() && pci.entries.on_heap() && pci.found.on_heap());
    assert_eq!(assigned(&m).len(), 304 * 4);
    assert_no_overlap(&m);
    // the heap's error is the heap's status
    assert!(matches!(
        crate::error::Error::from(PciError::OutOfHeap(1)),
        crate::error::Error::OutOfHeap { .. }
    ));
}

#[test]
fn an_empty_bus_costs_one_scan() {
    // no host bridge answers: nothing is written
    let mut m = Model::new(Vec::new());
    let mut pci = std::boxed::Box::new(Pci::new());
    let layout = setup(&mut pci, &mut m, &pc(1 << 30)).unwrap();
    assert_eq!(layout.functions, 0);
    assert!(m.ports.is_empty());
    // one scan of 32 slots, one config read (address + data) each
    assert_eq!(m.accesses, 32 * 2);
}

/// Records every port write.
#[derive(Default)]
struct Writes(Vec<(u16, u32)>);

impl PortIo for Writes {
    fn inb(&mut self, _: u16) -> u8 {
        0
    }
    fn inw(&mut self, _: u16) -> u16 {
        0
    }
    fn inl(&mut self, _: u16) -> u32 {
        0
    }
    fn outb(&mut self, port: u16, v: u8) {
        self.0.push((port, v as u32))
    }
    fn outw(&mut self, port: u16, v: u16) {
        self.0.push((port, v as u32))
    }
    fn outl(&mut self, port: u16, v: u32) {
        self.0.push((port, v))
    }
    fn read_bytes(&mut self, _: u16, _: &mut [u8]) {}
}

#[test]
fn config_address_is_written_only_when_it_changes() {
    let mut w = Writes::default();
    let mut no_mmio = NoMmio;
    let mut io = ConfigAccess::new(&mut w, &mut no_mmio);
    let bar0 = Bdf(0, 3, 0);
    // sizing a BAR: write ~0, read, then its address: one address write
    write32(&mut io, bar0, reg::BAR0, !0);
    let _ = read32(&mut io, bar0, reg::BAR0);
    write32(&mut io, bar0, reg::BAR0, 0xFEB0_0000);
    // another register, then a byte write into 0xCF8..0xCFB (0xCF9 is PIIX's
    // reset control): the next access must set the address again
    write16(&mut io, bar0, reg::COMMAND, 7);
    io.outb(0xCF9, 0);
    write16(&mut io, bar0, reg::COMMAND, 7);
    // an address written and never used costs nothing
    io.outl(0xCF8, Bdf(0, 9, 0).address(0));
    let addresses: Vec<u32> =
        w.0.iter()
            .filter(|(p, _)| *p == 0xCF8)
            .map(|&(_, v)| v)
            .collect();
    assert_eq!(
        addresses,
        [bar0.address(0x10), bar0.address(0x04), bar0.address(0x04)]
    );
    // every data write still goes through
    assert_eq!(
        w.0.iter()
            .filter(|(p, _)| (0xCFC..0xD00).contains(p))
            .count(),
        4
    );
}

#[test]
fn q35_reaches_configuration_space_through_mmconfig_once_it_is_open() {
    let funcs = vec![
        Func::new(0x8086, 0x29C0, 0x0600, 0).at(None, 0, 0),
        Func::new(0x8086, 0x2918, 0x0601, 0x80).at(None, 0x1F, 0),
        Func::new(0x1AF4, 0x1000, 0x0200, 0)
            .at(None, 3, 0)
            .pin(1)
            .io(0, 32)
            .mem(1, 4096),
    ];
    let mut m = Model::new(funcs);
    let platform = Platform {
        host: HostBridge::Q35,
        ..pc(2 << 30)
    };
    let mut pci = std::boxed::Box::new(Pci::new());
    setup(&mut pci, &mut m, &platform).unwrap();
    // through 0xCF8/0xCFC: PCIEXBAR only (an address and a data write each for
    // its low half, high half, low half again); the ELCR is not configuration
    let config_port_accesses = m.accesses - m.mmio_accesses - m.ports.len();
    assert_eq!(config_port_accesses, 3 + 3);
    assert!(m.mmio_accesses > 30);
    assert_eq!(m.r32(Bdf(0, 0, 0), 0x60), 0xB000_0001);
    assert_eq!(m.r32(Bdf(0, 3, 0), 0x10) & 1, 1);
    assert_eq!(m.cfg(Bdf(0, 3, 0))[0x3C], 11);
}

#[test]
fn pc_setup_keeps_its_configuration_accesses_few() {
    // Every access is a VM exit. The scan reads each slot once (identity,
    // class, header type for present functions), a BAR is sized with one write
    // and one read, and each register is written once.
    let mut m = Model::new(pc_machine(Vec::new()));
    let mut pci = std::boxed::Box::new(Pci::new());
    let layout = setup(&mut pci, &mut m, &pc(512 << 20)).unwrap();
    assert_eq!(layout.functions, 5);
    let addresses = m.accesses - m.ports.len();
    // 251 on 2026-11-30, after the walk stopped scanning the bus three times and
    // restoring each BAR it sized (a live pc went from 528 exits to 255)
    assert!(addresses <= 260, "{addresses} configuration port accesses");
    let mut interrupts = Vec::new();
    pci.bus0_interrupts(|dev, pin, irq| interrupts.push((dev, pin, irq)));
    assert_eq!(interrupts, [(1, 1, 9), (3, 1, 11)]);
}

/// Found by the fuzzer: a pin on bus 0's slot 0 under i440FX computed
/// `slot - 1` by overflowing (a panic with overflow checks, a wrap without).
#[test]
fn interrupt_pin_on_slot_0_does_not_overflow() {
    let mut funcs = pc_machine(vec![]);
    funcs[0] = Func::new(0x8086, 0x1237, 0x0600, 0).at(None, 0, 0).pin(1);
    let mut m = Model::new(funcs);
    let mut pci = std::boxed::Box::new(Pci::new());
    setup(&mut pci, &mut m, &pc(512 << 20)).unwrap();
    // slot 0, pin A: PIRQ (0 + 0 - 1) mod 4 = D, IRQ 11 (PCI_IRQS)
    assert_eq!(m.cfg(Bdf(0, 0, 0))[0x3C], PCI_IRQS[3]);
}

/// Found by the fuzzer: 64-bit BARs whose sizes add up past 2^64 overflowed
/// the sums and alignments of the 64-bit window; now they do not fit.
#[test]
fn bars_summing_past_2_pow_64_are_out_of_space() {
    let huge = |dev| {
        Func::new(0x1AF4, 0x1000, 0x0200, 0)
            .at(None, dev, 0)
            .mem64_pref(0, 1 << 63)
    };
    let mut m = Model::new(pc_machine(vec![huge(4), huge(5), huge(6)]));
    let mut pci = std::boxed::Box::new(Pci::new());
    assert_eq!(
        setup(&mut pci, &mut m, &pc(512 << 20)),
        Err(PciError::OutOfMemorySpace)
    );
}
