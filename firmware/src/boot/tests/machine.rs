//! A model of the machine QEMU gives the firmware, for [`boot`](crate::boot::boot)
//! on the host: the fw_cfg device and the PCI buses behind port I/O (every
//! other port write recorded), q35's MMCONFIG window, guest RAM in one host
//! allocation (the fake fw_cfg device's DMA addresses are host addresses), and
//! a CPU whose other CPUs check in as soon as they are woken.

use crate::board::{Board, Cpu, GuestMemory, Step};
use crate::error::Error;
use crate::fwcfg::FwCfg;
use crate::fwcfg::fake::FakeDevice;
use crate::io::{Mmio, PortIo};
use crate::mem::Range;
use crate::pci::tests::Model;
use std::alloc::{self as heap, Layout};
use std::cell::RefCell;
use std::rc::Rc;
use std::vec::Vec;

pub(super) const MIB: u64 = 1 << 20;
/// The guest's RAM (`-m 128`).
pub(super) const RAM: u64 = 128 * MIB;
pub(super) const ROM: Range = Range::new((1 << 32) - 128 * 1024, 1 << 32);
pub(super) const MMCONFIG: u64 = 0xB000_0000;
pub(super) const CONFIG_ADDRESS: u16 = 0xCF8;
pub(super) const CONFIG_DATA: u16 = 0xCFC;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Vm {
    Pc,
    Q35,
    Microvm,
}

/// QEMU's devices: fw_cfg, the PCI buses (none on microvm), and every other
/// port the boot writes, recorded.
pub(super) struct Devices {
    pub(super) fw_cfg: FakeDevice,
    pub(super) pci: Model,
    pub(super) others: Vec<(u16, u32)>,
}

impl Devices {
    fn read(&mut self, port: u16, width: u8) -> u32 {
        match port {
            0x510..=0x51B => {
                let mut dev = &mut self.fw_cfg;
                match width {
                    1 => dev.inb(port) as u32,
                    2 => dev.inw(port) as u32,
                    _ => dev.inl(port),
                }
            }
            CONFIG_ADDRESS..=0xCFF => match width {
                1 => self.pci.inb(port) as u32,
                2 => self.pci.inw(port) as u32,
                _ => self.pci.inl(port),
            },
            // the i8042's status: input buffer empty
            0x64 => 0,
            _ => u32::MAX >> (32 - 8 * width as u32),
        }
    }

    fn write(&mut self, port: u16, width: u8, value: u32) {
        match port {
            0x510..=0x51B => {
                let mut dev = &mut self.fw_cfg;
                match width {
                    1 => dev.outb(port, value as u8),
                    2 => dev.outw(port, value as u16),
                    _ => dev.outl(port, value),
                }
            }
            CONFIG_ADDRESS..=0xCFF => match width {
                1 => self.pci.outb(port, value as u8),
                2 => self.pci.outw(port, value as u16),
                _ => self.pci.outl(port, value),
            },
            _ => self.others.push((port, value)),
        }
    }
}

/// The board's port I/O: a handle on the devices.
#[derive(Clone)]
pub(super) struct Io(pub(super) Rc<RefCell<Devices>>);

impl PortIo for Io {
    fn inb(&mut self, port: u16) -> u8 {
        self.0.borrow_mut().read(port, 1) as u8
    }
    fn inw(&mut self, port: u16) -> u16 {
        self.0.borrow_mut().read(port, 2) as u16
    }
    fn inl(&mut self, port: u16) -> u32 {
        self.0.borrow_mut().read(port, 4)
    }
    fn outb(&mut self, port: u16, value: u8) {
        self.0.borrow_mut().write(port, 1, value as u32)
    }
    fn outw(&mut self, port: u16, value: u16) {
        self.0.borrow_mut().write(port, 2, value as u32)
    }
    fn outl(&mut self, port: u16, value: u32) {
        self.0.borrow_mut().write(port, 4, value)
    }
    fn read_bytes(&mut self, port: u16, buf: &mut [u8]) {
        for b in buf {
            *b = self.inb(port);
        }
    }
}

/// q35's MMCONFIG window onto the same PCI model.
pub(super) struct Mmconfig(pub(super) Rc<RefCell<Devices>>);

impl Mmconfig {
    /// Selects the dword an MMCONFIG address names; returns its data port.
    fn select(d: &mut Devices, addr: u64) -> u16 {
        let off = addr - MMCONFIG;
        assert!(off < 256 * MIB, "outside the MMCONFIG window: {addr:#x}");
        assert_eq!(off & 0xF00, 0, "extended configuration space");
        let address = 0x8000_0000 | ((off >> 12) as u32) << 8 | (off & 0xFC) as u32;
        d.pci.outl(CONFIG_ADDRESS, address);
        CONFIG_DATA + (off & 3) as u16
    }
}

impl Mmio for Mmconfig {
    fn read(&mut self, addr: u64, width: u8) -> u32 {
        let d = &mut *self.0.borrow_mut();
        let port = Self::select(d, addr);
        d.read(port, width)
    }
    fn write(&mut self, addr: u64, width: u8, value: u32) {
        let d = &mut *self.0.borrow_mut();
        let port = Self::select(d, addr);
        d.write(port, width, value)
    }
}

/// Guest RAM: one zeroed allocation the size of the guest's, which the
/// fake fw_cfg device writes at host addresses (its DMA addresses).
pub(super) struct Ram {
    base: *mut u8,
    layout: Layout,
}

impl Ram {
    pub(super) fn new(size: u64) -> Ram {
        let layout = Layout::from_size_align(size as usize, 4096).unwrap();
        // SAFETY: a non-zero size; pages the host zeroes lazily.
        let base = unsafe { heap::alloc_zeroed(layout) };
        assert!(!base.is_null());
        Ram { base, layout }
    }

    fn check(&self, at: u64, len: usize) -> Result<(), Error> {
        match at.checked_add(len as u64) {
            Some(end) if at != 0 && end <= self.layout.size() as u64 => Ok(()),
            _ => Err(Error::GuestMemory {
                at,
                len: len as u64,
            }),
        }
    }

    /// A copy of guest memory, for the checks.
    pub(super) fn read(&self, at: u64, len: usize) -> Vec<u8> {
        self.check(at, len).unwrap();
        // SAFETY: inside the allocation (checked); no slice of it is live.
        unsafe { core::slice::from_raw_parts(self.base.add(at as usize), len) }.to_vec()
    }

    pub(super) fn u32_at(&self, at: u64) -> u32 {
        u32::from_le_bytes(self.read(at, 4).try_into().unwrap())
    }
}

impl Drop for Ram {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { heap::dealloc(self.base, self.layout) }
    }
}

// SAFETY: every range `check` accepts lies inside the one allocation, which
// holds no Rust object; a slice of `[at, at + len)` starts at `base + at`, so
// disjoint ranges give disjoint slices.
unsafe impl GuestMemory for Ram {
    fn bytes(&mut self, at: u64, len: usize) -> Result<&mut [u8], Error> {
        self.check(at, len)?;
        // SAFETY: as for the impl, borrowed from `self`.
        Ok(unsafe { core::slice::from_raw_parts_mut(self.base.add(at as usize), len) })
    }
    fn dma_address(&mut self, at: u64, len: usize) -> Result<u64, Error> {
        self.check(at, len)?;
        Ok(self.base as u64 + at)
    }
}

/// A CPU with MTRRs and a local APIC, whose other CPUs check in as soon as
/// they are sent the start-up IPI.
#[derive(Default)]
pub(super) struct FakeCpu {
    pub(super) msrs: Vec<(u32, u64)>,
    pub(super) lapic: Vec<(u32, u32)>,
    pub(super) others: u16,
    pub(super) started: bool,
    pub(super) ticks: u64,
}

impl Cpu for FakeCpu {
    fn cpuid(&mut self, leaf: u32) -> [u32; 4] {
        match leaf {
            // family 6 model 6; APIC ID 0; FPU, MSR, APIC, MTRR
            1 => [0x663, 0, 0, 1 | 1 << 5 | 1 << 9 | 1 << 12],
            0x8000_0000 => [0x8000_0008, 0, 0, 0],
            0x8000_0008 => [40, 0, 0, 0],
            _ => [0; 4],
        }
    }
    fn mtrr_cap(&mut self) -> u64 {
        // 8 variable ranges, fixed ranges, write-combining
        0x508
    }
    fn write_msr(&mut self, msr: u32, value: u64) {
        self.msrs.push((msr, value));
    }
    fn lapic_read(&mut self, reg: u32) -> u32 {
        match reg {
            0x30 => 0x0005_0014,
            _ => 0,
        }
    }
    fn lapic_write(&mut self, reg: u32, value: u32) {
        self.lapic.push((reg, value));
        if reg == 0x300 && value & 0x700 == 0x600 {
            self.started = true;
        }
    }
    fn ticks(&mut self) -> u64 {
        self.ticks += 1000;
        self.ticks
    }
    fn ap_code(&self) -> &'static [u8] {
        // cli; hlt
        &[0xFA, 0xF4]
    }
    fn checked_in(&mut self) -> u16 {
        if self.started { self.others } else { 0 }
    }
    fn present(&mut self) -> [u64; 4] {
        // The bitmap on the trampoline page: the other CPUs' bits (APIC IDs
        // 1 to `others`) once woken; the bootstrap CPU sets none.
        let others = if self.started {
            ((1 << (self.others + 1)) - 1) & !1
        } else {
            0
        };
        [others, 0, 0, 0]
    }
}

pub(super) struct FakeBoard {
    pub(super) devices: Rc<RefCell<Devices>>,
    pub(super) mmio: Mmconfig,
    pub(super) ram: Ram,
    pub(super) cpu: FakeCpu,
    pub(super) steps: Vec<Step>,
}

impl Board for FakeBoard {
    type Io = Io;
    type Mmio = Mmconfig;
    type Memory = Ram;
    type Cpu = FakeCpu;

    const ROM: Range = ROM;

    fn io(&self) -> Io {
        Io(self.devices.clone())
    }
    fn mmio(&mut self) -> &mut Mmconfig {
        &mut self.mmio
    }
    fn memory(&mut self) -> &mut Ram {
        &mut self.ram
    }
    fn cpu(&mut self) -> &mut FakeCpu {
        &mut self.cpu
    }
    fn cpu_and_memory(&mut self) -> (&mut FakeCpu, &mut Ram) {
        (&mut self.cpu, &mut self.ram)
    }
    fn mark(&mut self, step: Step) {
        self.steps.push(step);
    }
    fn configure(&mut self, _: &mut FwCfg<Io>) -> Result<(), Error> {
        Ok(())
    }
}
