//! PCI set-up, the way SeaBIOS does it on QEMU (`src/fw/pciinit.c`, rel-1.16.2),
//! so that Linux finds every bus numbered, every BAR and bridge window assigned,
//! decoding on and interrupt lines routed, and reassigns nothing.
//!
//! The steps, each one function below:
//! 1. number the buses behind bridges and PCIe root ports, depth first;
//! 2. list every function, bus by bus;
//! 3. size every BAR (and option ROM BAR, which stays disabled: ferrite runs no
//!    option ROM), then every bridge window from what lies behind it;
//! 4. place the I/O and memory windows of the root bus, moving 64-bit BARs above
//!    the RAM above 4 GiB when the window below 4 GiB is too small;
//! 5. write the addresses, largest alignment first, as SeaBIOS orders them;
//! 6. per function: interrupt line, chipset quirks (PIRQ routing, ELCR, PM and
//!    SMBus I/O, ICH9 RCBA), and I/O + memory decoding with SERR#.
//!
//! Each configuration access is two port accesses (0xCF8, 0xCFC): the walk reads
//! what it needs once.

use crate::e820::Range;
use crate::heap::{OutOfHeap, SpillVec};
use crate::io::{Mmio, PortIo};

fn heap(e: OutOfHeap) -> PciError {
    PciError::OutOfHeap(e.bytes)
}

pub const CONFIG_ADDRESS: u16 = 0xCF8;
pub const CONFIG_DATA: u16 = 0xCFC;

/// A PCI function: bus, device (0..32), function (0..8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bdf(pub u8, pub u8, pub u8);

impl Bdf {
    fn from_devfn(bus: u8, devfn: u8) -> Bdf {
        Bdf(bus, devfn >> 3, devfn & 7)
    }
    const fn devfn(self) -> u8 {
        (self.1 & 0x1F) << 3 | (self.2 & 7)
    }
    /// The value written to 0xCF8 to reach `reg` (its dword).
    pub const fn address(self, reg: u8) -> u32 {
        0x8000_0000 | (self.0 as u32) << 16 | (self.devfn() as u32) << 8 | (reg as u32 & 0xFC)
    }
}

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
    const fn byte(reg: u8, value: u8) -> ConfigWrite {
        ConfigWrite {
            reg,
            width: 1,
            value: value as u32,
        }
    }
    const fn dword(reg: u8, value: u32) -> ConfigWrite {
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

/// Where QEMU puts the chipset functions whose set-up a wake-up reset undoes
/// (hw/i386/pc_piix.c, hw/i386/pc_q35.c: fixed slots).
pub const PIIX4_PM: Bdf = Bdf(0, 1, 3);
pub const ICH9_LPC: Bdf = Bdf(0, 0x1F, 0);
pub const ICH9_SMBUS: Bdf = Bdf(0, 0x1F, 3);
pub const HOST_BRIDGE: Bdf = Bdf(0, 0, 0);

/// PIIX4 PM: SCI on IRQ 9, the PM I/O block at `pm` (enabled), the SMBus I/O
/// block after it (enabled). SeaBIOS's piix4_pm_config_setup.
pub const fn piix4_pm_setup(pm: u16) -> [ConfigWrite; 5] {
    let pm = pm as u32;
    [
        ConfigWrite::byte(reg::INTERRUPT_LINE, 9),
        ConfigWrite::dword(0x40, pm | 1),
        ConfigWrite::byte(0x80, 0x01),
        ConfigWrite::dword(0x90, (pm + 0x100) | 1),
        ConfigWrite::byte(0xD2, 0x09),
    ]
}

/// ICH9 LPC: PM base with ACPI enabled (SCI on IRQ 9), the root complex
/// register block. SeaBIOS's mch_isa_lpc_setup.
pub const fn ich9_lpc_acpi_setup(pm: u16) -> [ConfigWrite; 3] {
    [
        ConfigWrite::dword(0x40, pm as u32 | 1),
        ConfigWrite::byte(0x44, 0x80),
        ConfigWrite::dword(0xF0, ICH9_RCBA.start as u32 | 1),
    ]
}

/// ICH9 SMBus: I/O block after the PM one, host enable.
pub const fn ich9_smbus_setup(pm: u16) -> [ConfigWrite; 2] {
    [
        ConfigWrite::dword(0x20, (pm as u32 + 0x100) | 1),
        ConfigWrite::byte(0x40, 0x01),
    ]
}

/// Q35 PCIEXBAR: disable, upper half, then base with the enable bit (256 MiB:
/// length bits 2:1 = 0).
pub const fn q35_pciexbar_setup(mmconfig: Range) -> [ConfigWrite; 3] {
    [
        ConfigWrite::dword(Q35_PCIEXBAR, 0),
        ConfigWrite::dword(Q35_PCIEXBAR + 4, (mmconfig.start >> 32) as u32),
        ConfigWrite::dword(Q35_PCIEXBAR, mmconfig.start as u32 | 1),
    ]
}

/// Configuration access as the PCI set-up does it, where every access is a VM
/// exit and the fewest win:
/// - a write of 0xCF8 is held back until the data port is used, and skipped
///   when 0xCF8 already holds that address (sizing a BAR, read-modify-write and
///   neighbouring registers touch one dword several times in a row);
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

    /// For an access to 0xCFC + lane: the MMCONFIG address to use instead, or
    /// None after making sure 0xCF8 holds the pending address.
    fn route(&mut self, port: u16) -> Option<u64> {
        let lane = port.wrapping_sub(CONFIG_DATA);
        if lane >= 4 || self.pending & 0x8000_0000 == 0 {
            return None;
        }
        if let Some(base) = self.mmconfig {
            let a = self.pending as u64;
            return Some(base + ((a >> 8 & 0xFFFF) << 12 | (a & 0xFC)) + lane as u64);
        }
        if self.pending != self.last {
            self.io.outl(CONFIG_ADDRESS, self.pending);
            self.last = self.pending;
        }
        None
    }
}

impl<IO: PortIo, M: Mmio> PortIo for ConfigAccess<'_, IO, M> {
    fn inb(&mut self, port: u16) -> u8 {
        match self.route(port) {
            Some(at) => self.mmio.read(at, 1) as u8,
            None => self.io.inb(port),
        }
    }
    fn inw(&mut self, port: u16) -> u16 {
        match self.route(port) {
            Some(at) => self.mmio.read(at, 2) as u16,
            None => self.io.inw(port),
        }
    }
    fn inl(&mut self, port: u16) -> u32 {
        match self.route(port) {
            Some(at) => self.mmio.read(at, 4),
            None => self.io.inl(port),
        }
    }
    fn outb(&mut self, port: u16, value: u8) {
        self.forget_if_address(port);
        match self.route(port) {
            Some(at) => self.mmio.write(at, 1, value as u32),
            None => self.io.outb(port, value),
        }
    }
    fn outw(&mut self, port: u16, value: u16) {
        self.forget_if_address(port);
        match self.route(port) {
            Some(at) => self.mmio.write(at, 2, value as u32),
            None => self.io.outw(port, value),
        }
    }
    fn outl(&mut self, port: u16, value: u32) {
        if port == CONFIG_ADDRESS {
            self.pending = value;
            return;
        }
        match self.route(port) {
            Some(at) => self.mmio.write(at, 4, value),
            None => self.io.outl(port, value),
        }
    }
    fn read_bytes(&mut self, port: u16, buf: &mut [u8]) {
        self.io.read_bytes(port, buf)
    }
}

fn set_bits16(io: &mut impl PortIo, bdf: Bdf, reg: u8, bits: u16) {
    let v = read16(io, bdf, reg);
    write16(io, bdf, reg, v | bits);
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
const BRIDGE_CTL_SERR: u16 = 1 << 1;
const BRIDGE_CTL_VGA: u16 = 1 << 3;
const STATUS_CAP_LIST: u16 = 1 << 4;

const CLASS_BRIDGE_PCI: u16 = 0x0604;
const CLASS_STORAGE_IDE: u16 = 0x0101;
const CLASS_DISPLAY_VGA: u16 = 0x0300;
const CLASS_SERIAL_USB: u16 = 0x0C03;

const CAP_ID_EXP: u8 = 0x10;
const CAP_ID_VNDR: u8 = 0x09;
const CAP_ID_SHPC: u8 = 0x0C;

/// The ISA IRQs behind PCI interrupt lines A-D (QEMU's ACPI tables say the same).
pub const PCI_IRQS: [u8; 4] = [10, 10, 11, 11];

/// ICH9's root complex register block, as SeaBIOS places it (e820 reserved).
pub const ICH9_RCBA: Range = Range::new(0xFED1_C000, 0xFED2_0000);

/// The 32-bit window's end: the I/O APIC's page.
const PCIMEM_END: u64 = 0xFEC0_0000;
const DEVICE_MEM_MIN: u64 = 1 << 12;
const BRIDGE_MEM_MIN: u64 = 1 << 21;
const BRIDGE_IO_MIN: u64 = 0x1000;
const GIB: u64 = 1 << 30;

/// Functions kept inline (a VM has a few dozen); more move to the heap.
pub const MAX_DEVICES: usize = 256;
/// BARs kept inline; more move to the heap.
const MAX_ENTRIES: usize = 4 * MAX_DEVICES;

// Functions and BARs are linked by u16 indices (NONE = 0xFFFF): the heap
// runs out long before a list reaches that many.
const _: () = {
    use core::mem::size_of;
    assert!(crate::heap::HEAP_SIZE / size_of::<Device>() < NONE as usize);
    assert!(crate::heap::HEAP_SIZE / size_of::<Entry>() < NONE as usize);
    assert!(crate::heap::HEAP_SIZE / size_of::<Found>() < NONE as usize);
};
const NONE: u16 = u16::MAX;

/// The two host bridges ferrite sets up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostBridge {
    /// `-M pc`: i440FX + PIIX3/PIIX4.
    I440fx,
    /// `-M q35`: Q35 MCH + ICH9.
    Q35,
}

/// What the rest of the machine tells the PCI set-up.
#[derive(Clone, Copy, Debug)]
pub struct Platform {
    pub host: HostBridge,
    /// End of the RAM below 4 GiB (SeaBIOS's RamSize).
    pub low_ram_end: u64,
    /// End of the RAM above 4 GiB, or 4 GiB if there is none.
    pub high_ram_end: u64,
    /// fw_cfg `etc/reserved-memory-end` (memory hot-plug area), or 0.
    pub reserved_memory_end: u64,
    /// The ACPI PM I/O block (chipset.rs).
    pub pm_base: u16,
    /// The q35 MMCONFIG window.
    pub mmconfig: Range,
}

/// What the PCI set-up leaves for the memory map, the MTRRs and the MP table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Start of the 32-bit PCI window (the MTRRs make it uncached up to 4 GiB).
    pub mem32_start: u64,
    /// The 64-bit window, if any BAR went above 4 GiB.
    pub mem64: Option<Range>,
    /// Chipset ranges the e820 map must reserve (MMCONFIG, RCBA).
    pub reserved: [Option<Range>; 2],
    pub functions: usize,
    pub max_bus: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciError {
    /// The heap cannot hold the functions or BARs (`bytes` asked for).
    OutOfHeap(usize),
    OutOfIoSpace,
    OutOfMemorySpace,
}

impl PciError {
    pub fn message(self) -> &'static str {
        match self {
            PciError::OutOfHeap(_) => "more PCI functions and BARs than ferrite's heap holds",
            PciError::OutOfIoSpace => "the PCI devices need more I/O space than 0x1000-0xffff",
            PciError::OutOfMemorySpace => "the PCI devices' BARs do not fit in the address space",
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Device {
    bdf: Bdf,
    vendor: u16,
    device: u16,
    class: u16,
    header_type: u8,
    secondary_bus: u8,
    parent: u16,
    /// Interrupt pin (1-4, 0: none) and the line ferrite wrote, for the MP table.
    pin: u8,
    line: u8,
}

impl Device {
    fn is_bridge(&self) -> bool {
        self.class == CLASS_BRIDGE_PCI
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Io = 0,
    Mem = 1,
    PrefMem = 2,
}
const KINDS: [Kind; 3] = [Kind::Io, Kind::Mem, Kind::PrefMem];

/// One BAR (`bar` 0..=6, 6 = ROM) or one bridge window (`bar` = -1).
#[derive(Clone, Copy, Debug)]
struct Entry {
    dev: u16,
    bar: i8,
    size: u64,
    align: u64,
    is64: bool,
    kind: Kind,
    next: u16,
}

const EMPTY_ENTRY: Entry = Entry {
    dev: 0,
    bar: 0,
    size: 0,
    align: 0,
    is64: false,
    kind: Kind::Io,
    next: NONE,
};

/// A list of entries in SeaBIOS's order: alignment, then size, descending.
#[derive(Clone, Copy)]
struct List {
    head: u16,
}
const EMPTY_LIST: List = List { head: NONE };

/// Everything the set-up tracks: in the firmware's .bss, about 48 KiB.
pub struct Pci {
    devices: SpillVec<Device, MAX_DEVICES>,
    entries: SpillVec<Entry, MAX_ENTRIES>,
    /// Per bus: the bridge leading to it, its lists and their bases.
    bus_dev: [u16; 256],
    lists: [[List; 3]; 256],
    bases: [[u64; 3]; 256],
    max_bus: u8,
    /// Every function the bus numbering found, in scan order, and per bus where
    /// its functions start and end in that list: the listing reuses them rather
    /// than scanning each bus again.
    found: SpillVec<Found, MAX_DEVICES>,
    bus_found: [(u16, u16); 256],
}

/// What a bus scan reads of a function: one dword each of identity and class,
/// one byte of header type.
#[derive(Clone, Copy, Debug, Default)]
struct Found {
    bdf: Bdf,
    id: u32,
    class: u16,
    header_type: u8,
}

impl Default for Pci {
    fn default() -> Self {
        Self::new()
    }
}

impl Pci {
    /// All zeros, so that a static one lives in .bss rather than in the ROM;
    /// `setup` initialises what needs more.
    pub const fn new() -> Pci {
        const ZERO_DEVICE: Device = Device {
            bdf: Bdf(0, 0, 0),
            vendor: 0,
            device: 0,
            class: 0,
            header_type: 0,
            secondary_bus: 0,
            parent: 0,
            pin: 0,
            line: 0,
        };
        const ZERO_ENTRY: Entry = Entry {
            next: 0,
            ..EMPTY_ENTRY
        };
        Pci {
            devices: SpillVec::new(ZERO_DEVICE),
            entries: SpillVec::new(ZERO_ENTRY),
            bus_dev: [0; 256],
            lists: [[List { head: 0 }; 3]; 256],
            bases: [[0; 3]; 256],
            max_bus: 0,
            found: SpillVec::new(Found {
                bdf: Bdf(0, 0, 0),
                id: 0,
                class: 0,
                header_type: 0,
            }),
            bus_found: [(0, 0); 256],
        }
    }

    /// Sets up every PCI function of a pc or q35 machine. `mmio` reaches q35's
    /// MMCONFIG window, which the set-up opens first and then uses.
    pub fn setup(
        &mut self,
        io: &mut impl PortIo,
        mmio: &mut impl Mmio,
        platform: &Platform,
    ) -> Result<Layout, PciError> {
        let io = &mut ConfigAccess::new(io, mmio);
        self.devices.clear();
        self.entries.clear();
        self.max_bus = 0;
        self.found.clear();
        self.bus_found = [(0, 0); 256];
        self.bus_dev = [NONE; 256];
        self.lists = [[EMPTY_LIST; 3]; 256];
        if platform.host == HostBridge::Q35 {
            open_mmconfig(io, platform.mmconfig);
        }
        let mut bus = 0;
        self.init_bus(io, 0, &mut bus)?;
        self.probe(io)?;
        let mut layout = self.platform(platform);
        self.size_devices(io)?;
        self.size_bridges(io)?;
        layout.mem64 = self.map(io, platform, layout.mem32_start)?;
        self.init_devices(io, platform);
        self.enable_default_vga(io);
        layout.functions = self.devices.len();
        layout.max_bus = self.max_bus;
        Ok(layout)
    }

    /// Functions on bus 0 with an interrupt pin: (device, pin 1-4, IRQ) for the
    /// MP table, as the set-up left them (no configuration access).
    pub fn bus0_interrupts(&self, mut f: impl FnMut(u8, u8, u8)) {
        for d in self.devices.as_slice() {
            if d.bdf.0 != 0 {
                break;
            }
            // A pin register outside INTA#-INTD# (hardware gone wrong) is no pin.
            if (1..=4).contains(&d.pin) {
                f(d.bdf.1, d.pin, d.line);
            }
        }
    }

    /// Step 2 (SeaBIOS's pci_probe_devices): every function, bus by bus, from
    /// what the bus numbering's scans found.
    fn probe(&mut self, io: &mut impl PortIo) -> Result<(), PciError> {
        let mut bus_parent = [NONE; 256];
        let mut bus: u16 = 0;
        while bus <= self.max_bus as u16 {
            let b = bus as u8;
            let (start, end) = self.bus_found[b as usize];
            for k in start as usize..end as usize {
                let Found {
                    bdf,
                    id,
                    class,
                    header_type,
                } = self.found[k];
                let mut dev = Device {
                    bdf,
                    vendor: id as u16,
                    device: (id >> 16) as u16,
                    class,
                    header_type,
                    secondary_bus: 0,
                    parent: bus_parent[b as usize],
                    pin: 0,
                    line: 0,
                };
                if matches!(header_type & 0x7F, 1 | 2) {
                    let secondary = read8(io, bdf, reg::SECONDARY_BUS);
                    dev.secondary_bus = secondary;
                    if secondary > b && bus_parent[secondary as usize] == NONE {
                        bus_parent[secondary as usize] = self.devices.len() as u16;
                    }
                    self.max_bus = self.max_bus.max(secondary);
                }
                self.devices.push(dev).map_err(heap)?;
            }
            bus += 1;
        }
        Ok(())
    }

    /// SeaBIOS's pci_bios_init_platform: the 32-bit window's start (q35's
    /// MMCONFIG window is open already).
    fn platform(&mut self, p: &Platform) -> Layout {
        let mut layout = Layout {
            mem32_start: p.low_ram_end,
            mem64: None,
            reserved: [None, None],
            functions: 0,
            max_bus: 0,
        };
        match p.host {
            HostBridge::I440fx => {
                if p.low_ram_end <= 0x8000_0000 {
                    layout.mem32_start = 0x8000_0000;
                } else if p.low_ram_end <= 0xC000_0000 {
                    layout.mem32_start = 0xC000_0000;
                }
            }
            HostBridge::Q35 => {
                layout.reserved[0] = Some(p.mmconfig);
                layout.mem32_start = p.mmconfig.end;
            }
        }
        if self.find(0x8086, ICH9_LPC_ID).is_some() {
            layout.reserved[1] = Some(ICH9_RCBA);
        }
        layout
    }

    fn find(&self, vendor: u16, device: u16) -> Option<&Device> {
        self.devices
            .as_slice()
            .iter()
            .find(|d| d.vendor == vendor && d.device == device)
    }

    /// Step 3a (pci_bios_check_devices, first half): every BAR of every function.
    fn size_devices(&mut self, io: &mut impl PortIo) -> Result<(), PciError> {
        for i in 0..self.devices.len() {
            let d = self.devices[i];
            if d.is_bridge() {
                self.bus_dev[d.secondary_bus as usize] = i as u16;
            }
            let bus = self.list_bus(d.bdf.0);
            let mut bar = 0;
            while bar < 7 {
                if d.is_bridge() && (2..6).contains(&bar) {
                    bar += 1;
                    continue;
                }
                let (kind, mut size, is64) = size_bar(io, &d, bar);
                if size != 0 {
                    if kind != Kind::Io && size < DEVICE_MEM_MIN {
                        size = DEVICE_MEM_MIN;
                    }
                    self.add(bus, i as u16, bar as i8, size, size, kind, is64)?;
                }
                bar += if is64 { 2 } else { 1 };
            }
        }
        Ok(())
    }

    /// Resources of devices on a bus whose bridge ferrite did not find go to the root.
    fn list_bus(&self, bus: u8) -> u8 {
        if self.bus_dev[bus as usize] == NONE {
            0
        } else {
            bus
        }
    }

    /// Step 3b: each bridge window, from the deepest bus up.
    fn size_bridges(&mut self, io: &mut impl PortIo) -> Result<(), PciError> {
        for secondary in (1..=self.max_bus as usize).rev() {
            let dev_index = self.bus_dev[secondary];
            if dev_index == NONE {
                continue;
            }
            let d = self.devices[dev_index as usize];
            let parent = self.list_bus(d.bdf.0);
            let pcie = find_capability(io, d.bdf, CAP_ID_EXP, 0);
            let reserve = resource_reserve_capability(io, &d);
            let hotplug = hotplug_support(io, d.bdf, pcie);
            for kind in KINDS {
                if !bridge_has_region(io, d.bdf, kind) {
                    continue;
                }
                let mut align = if kind == Kind::Io {
                    BRIDGE_IO_MIN
                } else {
                    BRIDGE_MEM_MIN
                };
                let reserved = reserve.map_or(0, |cap| reserved_size(io, d.bdf, cap, kind));
                let list = self.lists[secondary][kind as usize];
                align = align.max(self.list_align(list));
                let mut sum = self.list_sum(list);
                let optional = hotplug == Hotplug::Pcie && pcie != 0 && kind == Kind::Io;
                if sum == 0 && hotplug != Hotplug::None && !optional {
                    sum = align;
                }
                let size = if reserved > sum {
                    if kind == Kind::Io {
                        reserved
                    } else {
                        align_up(reserved, align)
                    }
                } else {
                    align_up(sum, align)
                };
                let is64 =
                    kind == Kind::PrefMem && bridge_pref_is64(io, d.bdf) && self.list_all_64(list);
                self.add(parent, dev_index, -1, size, align, kind, is64)?;
            }
        }
        Ok(())
    }

    /// Inserts an entry into a bus's list, after every entry of larger or equal
    /// (alignment, size): SeaBIOS's pci_region_create_entry.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        bus: u8,
        dev: u16,
        bar: i8,
        size: u64,
        align: u64,
        kind: Kind,
        is64: bool,
    ) -> Result<(), PciError> {
        let new = self.entries.len() as u16;
        self.entries
            .push(Entry {
                dev,
                bar,
                size,
                align,
                is64,
                kind,
                next: NONE,
            })
            .map_err(heap)?;
        let head = &mut self.lists[bus as usize][kind as usize].head;
        let mut prev: Option<u16> = None;
        let mut cur = *head;
        while cur != NONE {
            let e = &self.entries[cur as usize];
            if e.align < align || (e.align == align && e.size < size) {
                break;
            }
            prev = Some(cur);
            cur = e.next;
        }
        self.entries[new as usize].next = cur;
        match prev {
            Some(p) => self.entries[p as usize].next = new,
            None => self.lists[bus as usize][kind as usize].head = new,
        }
        Ok(())
    }

    fn iter(&self, list: List) -> impl Iterator<Item = (u16, &Entry)> + '_ {
        let mut cur = list.head;
        core::iter::from_fn(move || {
            (cur != NONE).then(|| {
                let i = cur;
                cur = self.entries[i as usize].next;
                (i, &self.entries[i as usize])
            })
        })
    }
    /// Saturates: sizes read from hostile hardware must not wrap around to a
    /// sum that fits.
    fn list_sum(&self, list: List) -> u64 {
        self.iter(list)
            .fold(0u64, |sum, (_, e)| sum.saturating_add(e.size))
    }
    /// The first entry has the largest alignment; an empty list aligns to 1.
    fn list_align(&self, list: List) -> u64 {
        self.iter(list).next().map_or(1, |(_, e)| e.align)
    }
    fn list_all_64(&self, list: List) -> bool {
        self.iter(list).all(|(_, e)| e.is64)
    }

    /// Steps 4 and 5 (pci_bios_map_devices). Returns the 64-bit window, if used.
    fn map(
        &mut self,
        io: &mut impl PortIo,
        p: &Platform,
        mem32_start: u64,
    ) -> Result<Option<Range>, PciError> {
        let io_sum = self.list_sum(self.lists[0][Kind::Io as usize]);
        let io_low_end: u64 = match p.host {
            HostBridge::I440fx => 0xA000,
            HostBridge::Q35 if p.pm_base < 0x1000 => 0x1_0000,
            HostBridge::Q35 => p.pm_base as u64,
        };
        self.bases[0][Kind::Io as usize] = if io_sum < 0x4000 {
            0xC000
        } else if io_sum < io_low_end - 0x1000 {
            0x1000
        } else {
            return Err(PciError::OutOfIoSpace);
        };

        let mut mem64 = None;
        if !self.place_root_mem(mem32_start) {
            let high_mem = self.migrate_64bit(Kind::Mem);
            let high_pref = self.migrate_64bit(Kind::PrefMem);
            if !self.place_root_mem(mem32_start) {
                return Err(PciError::OutOfMemorySpace);
            }
            let (sum_mem, align_mem) = (self.list_sum(high_mem), self.list_align(high_mem));
            let (sum_pref, align_pref) = (self.list_sum(high_pref), self.list_align(high_pref));
            let mut base = p.reserved_memory_end.max(p.high_ram_end);
            base = align_up(align_up(base, align_mem), GIB);
            let pref_base = align_up(align_up(base.saturating_add(sum_mem), align_pref), GIB);
            let end = align_up(pref_base.saturating_add(sum_pref), GIB);
            // 2^64 is no window (nor are the 52 bits of x86's physical addresses).
            if end > 1 << 52 {
                return Err(PciError::OutOfMemorySpace);
            }
            self.map_list(io, high_mem, base);
            self.map_list(io, high_pref, pref_base);
            mem64 = Some(Range::new(base, end));
        }
        for bus in 0..=self.max_bus as usize {
            for kind in KINDS {
                let list = self.lists[bus][kind as usize];
                let base = self.bases[bus][kind as usize];
                self.map_list(io, list, base);
            }
        }
        Ok(mem64)
    }

    /// pci_bios_init_root_regions_mem: the two memory lists of the root bus at the
    /// top of the 32-bit window, the more aligned one lower.
    fn place_root_mem(&mut self, mem32_start: u64) -> bool {
        let mem = self.lists[0][Kind::Mem as usize];
        let pref = self.lists[0][Kind::PrefMem as usize];
        let (low, high) = if self.list_align(mem) < self.list_align(pref) {
            (Kind::PrefMem, Kind::Mem)
        } else {
            (Kind::Mem, Kind::PrefMem)
        };
        let (low_list, high_list) = (self.lists[0][low as usize], self.lists[0][high as usize]);
        // A sum beyond the window does not fit (and must not wrap around into it).
        let Some(high_base) = PCIMEM_END.checked_sub(self.list_sum(high_list)) else {
            return false;
        };
        let high_base = align_down(high_base, self.list_align(high_list));
        let Some(low_base) = high_base.checked_sub(self.list_sum(low_list)) else {
            return false;
        };
        let low_base = align_down(low_base, self.list_align(low_list));
        self.bases[0][high as usize] = high_base;
        self.bases[0][low as usize] = low_base;
        (mem32_start..=PCIMEM_END).contains(&low_base)
    }

    /// Moves the root bus's 64-bit entries (USB controllers excepted) to a list of
    /// their own, keeping their order.
    fn migrate_64bit(&mut self, kind: Kind) -> List {
        let mut moved = EMPTY_LIST;
        let mut moved_tail: Option<u16> = None;
        let mut prev: Option<u16> = None;
        let mut cur = self.lists[0][kind as usize].head;
        while cur != NONE {
            let e = self.entries[cur as usize];
            let next = e.next;
            if e.is64 && self.devices[e.dev as usize].class != CLASS_SERIAL_USB {
                match prev {
                    Some(p) => self.entries[p as usize].next = next,
                    None => self.lists[0][kind as usize].head = next,
                }
                self.entries[cur as usize].next = NONE;
                match moved_tail {
                    Some(t) => self.entries[t as usize].next = cur,
                    None => moved.head = cur,
                }
                moved_tail = Some(cur);
            } else {
                prev = Some(cur);
            }
            cur = next;
        }
        moved
    }

    fn map_list(&mut self, io: &mut impl PortIo, list: List, mut base: u64) {
        let mut cur = list.head;
        while cur != NONE {
            let e = self.entries[cur as usize];
            let d = self.devices[e.dev as usize];
            let addr = base;
            base += e.size;
            if e.bar < 0 {
                self.bases[d.secondary_bus as usize][e.kind as usize] = addr;
                map_window(io, d.bdf, e.kind, addr, e.size);
            } else {
                let ofs = bar_register(&d, e.bar as u8);
                write32(io, d.bdf, ofs, addr as u32);
                if e.is64 {
                    write32(io, d.bdf, ofs + 4, (addr >> 32) as u32);
                }
            }
            cur = e.next;
        }
    }

    /// Step 6 (pci_bios_init_device): interrupt line, quirks, decoding.
    fn init_devices(&mut self, io: &mut impl PortIo, p: &Platform) {
        for i in 0..self.devices.len() {
            let mut d = self.devices[i];
            d.pin = read8(io, d.bdf, reg::INTERRUPT_PIN);
            if d.pin != 0 {
                d.line = self.slot_irq(p.host, i, d.pin);
                write8(io, d.bdf, reg::INTERRUPT_LINE, d.line);
            }
            quirks(io, &mut d, p.pm_base);
            let mut command = COMMAND_IO | COMMAND_MEMORY | COMMAND_SERR;
            if drives_for_boot(d.class) {
                command |= COMMAND_MASTER;
            }
            // A reset clears every writable command bit: nothing to keep.
            write16(io, d.bdf, reg::COMMAND, command);
            if d.header_type & 1 != 0 {
                set_bits16(io, d.bdf, reg::BRIDGE_CONTROL, BRIDGE_CTL_SERR);
            }
            self.devices[i] = d;
        }
    }

    /// The ISA IRQ a function's pin reaches, rotating through the bridges above
    /// it as QEMU's ACPI _PRT does (piix_pci_slot_get_irq, mch_pci_slot_get_irq).
    fn slot_irq(&self, host: HostBridge, mut i: usize, pin: u8) -> u8 {
        let mut addend = 0usize;
        while self.devices[i].parent != NONE {
            addend += self.devices[i].bdf.1 as usize;
            i = self.devices[i].parent as usize;
        }
        let slot = self.devices[i].bdf.1 as usize;
        let pin = pin as usize - 1;
        let index = match host {
            // slot - 1, modulo 4 without underflow at slot 0
            HostBridge::I440fx => pin + addend + slot + 3,
            HostBridge::Q35 if slot <= 24 => pin + addend + slot,
            HostBridge::Q35 => pin + addend,
        };
        PCI_IRQS[index & 3]
    }

    /// pci_enable_default_vga: a VGA device behind bridges gets the bridges' VGA
    /// forwarding (one on bus 0 already decodes after init_devices).
    fn enable_default_vga(&mut self, io: &mut impl PortIo) {
        let Some(mut i) = self
            .devices
            .as_slice()
            .iter()
            .position(|d| d.class == CLASS_DISPLAY_VGA)
        else {
            return;
        };
        while self.devices[i].parent != NONE {
            i = self.devices[i].parent as usize;
            let bdf = self.devices[i].bdf;
            set_bits16(io, bdf, reg::BRIDGE_CONTROL, BRIDGE_CTL_VGA);
            set_bits16(io, bdf, reg::COMMAND, COMMAND_IO | COMMAND_MEMORY);
        }
    }
}

const Q35_PCIEXBAR: u8 = 0x60;
const ICH9_LPC_ID: u16 = 0x2918;

/// Chipset functions SeaBIOS programs beyond the generic steps (its pci_device_tbl).
fn quirks(io: &mut impl PortIo, d: &mut Device, pm_base: u16) {
    const INTEL: u16 = 0x8086;
    match (d.vendor, d.device) {
        // PIIX3 / PIIX4 ISA bridge: PIRQA-D routing, level-triggered in the ELCR.
        (INTEL, 0x7000) | (INTEL, 0x7110) => {
            write32(io, d.bdf, 0x60, u32::from_le_bytes(PCI_IRQS));
            write_elcr(io);
        }
        // ICH9 LPC: PIRQA-D and E-H, ELCR, PM base with ACPI enabled, RCBA.
        (INTEL, ICH9_LPC_ID) => {
            write32(io, d.bdf, 0x60, u32::from_le_bytes(PCI_IRQS));
            write32(io, d.bdf, 0x68, u32::from_le_bytes(PCI_IRQS));
            write_elcr(io);
            apply(io, d.bdf, &ich9_lpc_acpi_setup(pm_base));
        }
        // PIIX3 / PIIX4 IDE: legacy decode of both channels.
        (INTEL, 0x7010) | (INTEL, 0x7111) if d.class == CLASS_STORAGE_IDE => {
            write16(io, d.bdf, 0x40, 0x8000);
            write16(io, d.bdf, 0x42, 0x8000);
        }
        // PIIX4 PM: SCI on IRQ 9, the PM and SMBus I/O blocks.
        (INTEL, 0x7113) => {
            d.line = 9;
            apply(io, d.bdf, &piix4_pm_setup(pm_base));
        }
        // ICH9 SMBus: I/O block after the PM one, host enable.
        (INTEL, 0x2930) => apply(io, d.bdf, &ich9_smbus_setup(pm_base)),
        // Any other IDE controller: ISA-compatible ports.
        _ if d.class == CLASS_STORAGE_IDE => {
            for (bar, port) in [0x1F0u32, 0x3F4, 0x170, 0x374].into_iter().enumerate() {
                write32(io, d.bdf, reg::BAR0 + 4 * bar as u8, port);
            }
        }
        _ => {}
    }
}

/// Disk and USB host controllers: SeaBIOS drives these looking for boot disks
/// and leaves bus mastering on (IDE excepted: its ATA driver uses PIO). Linux
/// drivers turn it on for every other device they bind, so the guest ends up
/// with the same command registers as after SeaBIOS.
fn drives_for_boot(class: u16) -> bool {
    (class >> 8 == 0x01 && class != CLASS_STORAGE_IDE) || class == CLASS_SERIAL_USB
}

/// Edge/level control: PCI IRQs (10, 11) level-triggered.
fn write_elcr(io: &mut impl PortIo) {
    io.outb(0x4D0, ELCR[0]);
    io.outb(0x4D1, ELCR[1]);
}

/// The ELCR bits of [`PCI_IRQS`], worked out at compile time.
const ELCR: [u8; 2] = {
    let mut elcr = [0u8; 2];
    let mut i = 0;
    while i < PCI_IRQS.len() {
        let irq = PCI_IRQS[i];
        elcr[irq as usize >> 3] |= 1 << (irq & 7);
        i += 1;
    }
    elcr
};

/// Opens q35's MMCONFIG window (PCIEXBAR, as [`q35_pciexbar_setup`] writes
/// it) and switches to it.
fn open_mmconfig<IO: PortIo, M: Mmio>(io: &mut ConfigAccess<'_, IO, M>, window: Range) {
    apply(io, HOST_BRIDGE, &q35_pciexbar_setup(window));
    io.use_mmconfig(window.start);
}

impl Pci {
    /// Lists the functions on `bus` (SeaBIOS's pci_next walk: functions 1-7
    /// only for multi-function devices) into `found`; each bus once.
    fn scan_bus(&mut self, io: &mut impl PortIo, bus: u8) -> Result<(usize, usize), PciError> {
        let (start, end) = self.bus_found[bus as usize];
        if end > start {
            return Ok((start as usize, end as usize));
        }
        let start = self.found.len();
        let mut devfn: u16 = 0;
        while devfn < 0x100 {
            let bdf = Bdf::from_devfn(bus, devfn as u8);
            let id = read32(io, bdf, reg::VENDOR);
            let vendor = id as u16;
            let function0 = devfn & 7 == 0;
            if vendor == 0 || vendor == 0xFFFF {
                devfn += if function0 { 8 } else { 1 };
                continue;
            }
            let class = (read32(io, bdf, reg::CLASS_REVISION) >> 16) as u16;
            let header_type = read8(io, bdf, reg::HEADER_TYPE);
            self.found
                .push(Found {
                    bdf,
                    id,
                    class,
                    header_type,
                })
                .map_err(heap)?;
            devfn += if function0 && header_type & 0x80 == 0 {
                8
            } else {
                1
            };
        }
        let end = self.found.len();
        self.bus_found[bus as usize] = (start as u16, end as u16);
        Ok((start, end))
    }

    /// Step 1 (pci_bios_init_bus_rec): number the buses behind `bus`'s bridges.
    fn init_bus(
        &mut self,
        io: &mut impl PortIo,
        bus: u8,
        next_bus: &mut u8,
    ) -> Result<(), PciError> {
        let (start, end) = self.scan_bus(io, bus)?;
        // Bridges on this bus forward nothing until numbered.
        for k in start..end {
            let f = self.found[k];
            if f.class == CLASS_BRIDGE_PCI {
                write8(io, f.bdf, reg::SECONDARY_BUS, 255);
                write8(io, f.bdf, reg::SUBORDINATE_BUS, 0);
            }
        }
        for k in start..end {
            let f = self.found[k];
            if f.class != CLASS_BRIDGE_PCI {
                continue;
            }
            let bdf = f.bdf;
            if read8(io, bdf, reg::PRIMARY_BUS) != bus {
                write8(io, bdf, reg::PRIMARY_BUS, bus);
            }
            *next_bus = next_bus.saturating_add(1);
            let mut secondary = read8(io, bdf, reg::SECONDARY_BUS);
            if secondary != *next_bus {
                secondary = *next_bus;
                write8(io, bdf, reg::SECONDARY_BUS, secondary);
            }
            let mut subordinate = read8(io, bdf, reg::SUBORDINATE_BUS);
            write8(io, bdf, reg::SUBORDINATE_BUS, 255);
            self.init_bus(io, secondary, next_bus)?;
            if subordinate != *next_bus {
                let mut last = *next_bus;
                let d = Device {
                    bdf,
                    vendor: f.id as u16,
                    device: (f.id >> 16) as u16,
                    ..Device::default()
                };
                if let Some(cap) = resource_reserve_capability(io, &d) {
                    let reserve = read32(io, bdf, cap + RES_RESERVE_BUS);
                    if reserve != u32::MAX {
                        last = reserve as u8;
                        if secondary.checked_add(last).is_none() {
                            last = 0;
                        }
                        if secondary as u16 + last as u16 > *next_bus as u16 {
                            last += secondary;
                        }
                    }
                }
                subordinate = last;
                *next_bus = last;
            }
            write8(io, bdf, reg::SUBORDINATE_BUS, subordinate);
        }
        Ok(())
    }
}

/// Offsets in QEMU's resource-reserve capability (SeaBIOS's fw/dev-pci.h).
const RES_RESERVE_BUS: u8 = 4;
const RES_RESERVE_IO: u8 = 8;
const RES_RESERVE_MEM: u8 = 16;
const RES_RESERVE_PREF_32: u8 = 20;
const RES_RESERVE_PREF_64: u8 = 24;
const RES_RESERVE_LEN: u8 = 32;
const REDHAT: u16 = 0x1B36;

/// QEMU's vendor capability on its root ports and bridges, telling how much to
/// reserve for hot-plug.
fn resource_reserve_capability(io: &mut impl PortIo, d: &Device) -> Option<u8> {
    if d.vendor != REDHAT || !matches!(d.device, 0x000C | 0x0001) {
        return None;
    }
    let mut cap = 0;
    loop {
        cap = find_capability(io, d.bdf, CAP_ID_VNDR, cap);
        if cap == 0 {
            return None;
        }
        if read8(io, d.bdf, cap + 3) == 1 {
            break;
        }
    }
    (read8(io, d.bdf, cap + 2) >= RES_RESERVE_LEN).then_some(cap)
}

fn read64(io: &mut impl PortIo, bdf: Bdf, reg: u8) -> u64 {
    read32(io, bdf, reg) as u64 | (read32(io, bdf, reg + 4) as u64) << 32
}

/// What the reserve capability asks for `kind`; 0 for "nothing" (all ones).
fn reserved_size(io: &mut impl PortIo, bdf: Bdf, cap: u8, kind: Kind) -> u64 {
    match kind {
        Kind::Io => match read64(io, bdf, cap + RES_RESERVE_IO) {
            u64::MAX => 0,
            v => v,
        },
        Kind::Mem => match read32(io, bdf, cap + RES_RESERVE_MEM) {
            u32::MAX => 0,
            v => v as u64,
        },
        Kind::PrefMem => {
            let p32 = read32(io, bdf, cap + RES_RESERVE_PREF_32);
            let p64 = read64(io, bdf, cap + RES_RESERVE_PREF_64);
            match (p32 != u32::MAX, p64 != u64::MAX) {
                (true, false) => p32 as u64,
                (false, true) => p64,
                _ => 0,
            }
        }
    }
}

/// The capability `id` after `start` (0: from the list's head), or 0.
fn find_capability(io: &mut impl PortIo, bdf: Bdf, id: u8, start: u8) -> u8 {
    if start == 0 && read16(io, bdf, reg::STATUS) & STATUS_CAP_LIST == 0 {
        return 0;
    }
    let mut cap = if start == 0 {
        read8(io, bdf, reg::CAPABILITIES)
    } else {
        read8(io, bdf, start + 1)
    };
    // At most 48 capabilities fit in the 192 bytes after the header.
    for _ in 0..48 {
        cap &= 0xFC;
        if cap == 0 {
            return 0;
        }
        if read8(io, bdf, cap) == id {
            return cap;
        }
        cap = read8(io, bdf, cap + 1);
    }
    0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hotplug {
    None,
    Pcie,
    Shpc,
}

fn hotplug_support(io: &mut impl PortIo, bdf: Bdf, pcie: u8) -> Hotplug {
    if pcie != 0 {
        let flags = read16(io, bdf, pcie + 2);
        let port_type = (flags & 0xF0) >> 4;
        // 7: PCIe-to-PCI bridge, which may have SHPC instead.
        if port_type != 7 {
            let downstream = port_type == 6 || port_type == 4;
            let slot = flags & 0x100 != 0;
            return if downstream && slot {
                Hotplug::Pcie
            } else {
                Hotplug::None
            };
        }
    }
    if find_capability(io, bdf, CAP_ID_SHPC, 0) != 0 {
        Hotplug::Shpc
    } else {
        Hotplug::None
    }
}

/// Does the bridge forward this kind (memory always does)? Leaves the probed
/// base register as SeaBIOS does; the window is written later.
fn bridge_has_region(io: &mut impl PortIo, bdf: Bdf, kind: Kind) -> bool {
    let base = match kind {
        Kind::Io => reg::IO_BASE,
        Kind::PrefMem => reg::PREF_MEMORY_BASE,
        Kind::Mem => return true,
    };
    write8(io, bdf, base, 0xFF);
    read8(io, bdf, base) != 0
}

fn bridge_pref_is64(io: &mut impl PortIo, bdf: Bdf) -> bool {
    let mut pmem = read32(io, bdf, reg::PREF_MEMORY_BASE);
    if pmem == 0 {
        write32(io, bdf, reg::PREF_MEMORY_BASE, 0xFFF0_FFF0);
        pmem = read32(io, bdf, reg::PREF_MEMORY_BASE);
        write32(io, bdf, reg::PREF_MEMORY_BASE, 0);
    }
    pmem & 0xF == 1
}

fn bar_register(d: &Device, bar: u8) -> u8 {
    if bar == 6 {
        if d.header_type & 0x7F == 1 {
            reg::ROM_ADDRESS_BRIDGE
        } else {
            reg::ROM_ADDRESS
        }
    } else {
        reg::BAR0 + 4 * bar
    }
}

/// Sizes one BAR by writing all ones (pci_bios_get_bar): (kind, size, 64-bit).
/// The type bits are read-only, so the read-back holds them too; the register
/// is not restored, since every BAR that has a size gets its address later.
fn size_bar(io: &mut impl PortIo, d: &Device, bar: u8) -> (Kind, u64, bool) {
    let ofs = bar_register(d, bar);
    let ones = if bar == 6 { 0xFFFF_F800 } else { !0 };
    write32(io, d.bdf, ofs, ones);
    let val = read32(io, d.bdf, ofs) as u64;
    let (kind, mask, is64) = if bar == 6 {
        (Kind::Mem, 0xFFFF_F800u64, false)
    } else if val & 1 != 0 {
        (Kind::Io, 0xFFFF_FFFC, false)
    } else {
        let kind = if val & 8 != 0 {
            Kind::PrefMem
        } else {
            Kind::Mem
        };
        (kind, 0xFFFF_FFF0, val & 6 == 4)
    };
    let size = if is64 {
        write32(io, d.bdf, ofs + 4, !0);
        let val = val | (read32(io, d.bdf, ofs + 4) as u64) << 32;
        (!(val & (mask | 0xFFFF_FFFF_0000_0000))).wrapping_add(1)
    } else {
        (!(val & mask)).wrapping_add(1) & 0xFFFF_FFFF
    };
    (kind, size, is64)
}

fn map_window(io: &mut impl PortIo, bdf: Bdf, kind: Kind, addr: u64, size: u64) {
    let limit = addr.wrapping_add(size).wrapping_sub(1);
    match kind {
        Kind::Io => {
            write8(io, bdf, reg::IO_BASE, (addr >> 8) as u8);
            write16(io, bdf, reg::IO_BASE_UPPER16, 0);
            write8(io, bdf, reg::IO_LIMIT, (limit >> 8) as u8);
            write16(io, bdf, reg::IO_LIMIT_UPPER16, 0);
        }
        Kind::Mem => {
            write16(io, bdf, reg::MEMORY_BASE, (addr >> 16) as u16);
            write16(io, bdf, reg::MEMORY_LIMIT, (limit >> 16) as u16);
        }
        Kind::PrefMem => {
            write16(io, bdf, reg::PREF_MEMORY_BASE, (addr >> 16) as u16);
            write16(io, bdf, reg::PREF_MEMORY_LIMIT, (limit >> 16) as u16);
            write32(io, bdf, reg::PREF_BASE_UPPER32, (addr >> 32) as u32);
            write32(io, bdf, reg::PREF_LIMIT_UPPER32, (limit >> 32) as u32);
        }
    }
}

/// Saturates at the top: an overflowing size then fits nowhere.
fn align_up(v: u64, align: u64) -> u64 {
    v.checked_next_multiple_of(align.max(1)).unwrap_or(u64::MAX)
}
fn align_down(v: u64, align: u64) -> u64 {
    v / align.max(1) * align.max(1)
}

#[cfg(test)]
pub(crate) mod tests;
