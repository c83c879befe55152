//! PCI set-up, the way SeaBIOS does it on QEMU (`src/fw/pciinit.c`, rel-1.16.2),
//! so that Linux finds every bus numbered, every BAR and bridge window assigned,
//! decoding on and interrupt lines routed, and reassigns nothing.
//!
//! The steps, in [`Pci::setup`]:
//! 1. number the buses behind bridges and PCIe root ports, depth first (`bus`);
//! 2. list every function, bus by bus (`bus`);
//! 3. size every BAR (and option ROM BAR, which stays disabled: ferrite runs no
//!    option ROM), then every bridge window from what lies behind it (`alloc`,
//!    with the hot-plug reservations `caps` reads);
//! 4. place the I/O and memory windows of the root bus, moving 64-bit BARs above
//!    the RAM above 4 GiB when the window below 4 GiB is too small (`alloc`);
//! 5. write the addresses, largest alignment first, as SeaBIOS orders them
//!    (`alloc`);
//! 6. per function: interrupt line, chipset quirks (PIRQ routing, ELCR, PM and
//!    SMBus I/O, ICH9 RCBA: [`crate::chipset`]), and I/O + memory decoding with
//!    SERR# (`bus`).
//!
//! Every configuration access goes through [`config`], which keeps the VM exits
//! few: the walk reads what it needs once.

mod alloc;
mod bus;
mod caps;
pub mod config;
mod list;

pub use config::{
    COMMAND_IO, COMMAND_MASTER, COMMAND_MEMORY, COMMAND_SERR, CONFIG_ADDRESS, CONFIG_DATA, Config,
    ConfigAccess, ConfigWrite, apply, read8, read16, read32, reg, write8, write16, write32,
};

use self::list::{EMPTY_LIST, Entry, List, ZERO_ENTRY};
use crate::chipset::{Machine, q35};
use crate::heap::{OutOfHeap, SpillVec};
use crate::io::{Mmio, PortIo};
use crate::mem::Range;
use crate::mptable::PciInterrupt;
use config::CLASS_BRIDGE_PCI;

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

fn heap(e: OutOfHeap) -> PciError {
    PciError::OutOfHeap(e.bytes)
}

/// Functions kept inline (a VM has a few dozen); more move to the heap.
pub const MAX_DEVICES: usize = 64;
/// BARs kept inline; more move to the heap.
const MAX_ENTRIES: usize = 4 * MAX_DEVICES;
/// Bus 0's functions: 32 devices of 8.
const MAX_BUS0_INTS: usize = 256;

// Functions and BARs are linked by u16 indices (NONE = 0xFFFF): the heap
// runs out long before a list reaches that many.
const _: () = {
    use core::mem::size_of;
    assert!(crate::heap::HEAP_SIZE / size_of::<Device>() < NONE as usize);
    assert!(crate::heap::HEAP_SIZE / size_of::<Entry>() < NONE as usize);
};
const NONE: u16 = u16::MAX;

/// What the rest of the machine tells the PCI set-up.
#[derive(Clone, Copy, Debug)]
pub struct Platform {
    /// The machine, by its host bridge: pc (i440FX) or q35. A machine without
    /// PCI has nothing to set up; given one, the set-up takes i440FX's choices.
    pub host: Machine,
    /// End of the RAM below 4 GiB (SeaBIOS's RamSize).
    pub low_ram_end: u64,
    /// End of the RAM above 4 GiB, or 4 GiB if there is none.
    pub high_ram_end: u64,
    /// fw_cfg `etc/reserved-memory-end` (memory hot-plug area), or 0.
    pub reserved_memory_end: u64,
    /// The ACPI PM I/O block ([`crate::chipset::pm_base`]).
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

/// Everything the set-up tracks: in the firmware's .bss, its lists inline
/// for an ordinary VM and on the heap beyond that.
pub struct Pci {
    devices: SpillVec<Device, MAX_DEVICES>,
    entries: SpillVec<Entry, MAX_ENTRIES>,
    /// Per bus: where its functions are in `found`, the bridge leading to
    /// it, its lists.
    buses: BusTables,
    /// Per bus and kind: the lists' bases.
    bases: [[u64; 3]; 256],
    max_bus: u8,
    /// Every function the bus numbering found, in scan order (per bus, where
    /// they are: `buses.found`).
    found: SpillVec<Device, MAX_DEVICES>,
    /// Some function found has a bridge header (type 1 or 2).
    bridge_headers: bool,
    /// The first VGA device, or NONE.
    vga: u16,
    /// Whether an ICH9 LPC bridge is among the functions (its RCBA is reserved).
    has_ich9_lpc: bool,
    /// [`Pci::bus0_interrupts`]: the first `bus0_count` entries, then a
    /// spare one, which the functions not kept are written to once every
    /// other entry is kept.
    bus0_ints: [PciInterrupt; MAX_BUS0_INTS + 1],
    bus0_count: usize,
    /// What [`Pci::setup`] hands back, kept here: moved by value, the
    /// layout's copies were `rep movs`, each a translation block of its own
    /// under TCG.
    layout: Layout,
}

/// The per-bus tables of a set-up, all zeros in a new [`Pci`].
struct BusTables {
    /// Per bus, where its functions start and end in [`Pci`]'s `found`, and
    /// how many are PCI bridges: the listing reuses them rather than
    /// scanning each bus again.
    found: [(u16, u16, u16); 256],
    /// The index of the bridge leading to the bus, inverted (0: none, so
    /// that a new `Pci` is all zeros and its static stays in `.bss`).
    dev_inv: [u16; 256],
    lists: [[List; 3]; 256],
}

const EMPTY_BUSES: BusTables = BusTables {
    found: [(0, 0, 0); 256],
    dev_inv: [!NONE; 256],
    lists: [[EMPTY_LIST; 3]; 256],
};

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
        Pci {
            devices: SpillVec::new(ZERO_DEVICE),
            entries: SpillVec::new(ZERO_ENTRY),
            buses: EMPTY_BUSES,
            bases: [[0; 3]; 256],
            max_bus: 0,
            found: SpillVec::new(ZERO_DEVICE),
            bridge_headers: false,
            vga: 0,
            has_ich9_lpc: false,
            bus0_ints: [PciInterrupt {
                device: 0,
                pin: 0,
                irq: 0,
            }; MAX_BUS0_INTS + 1],
            bus0_count: 0,
            layout: Layout {
                mem32_start: 0,
                mem64: None,
                reserved: [None, None],
                functions: 0,
                max_bus: 0,
            },
        }
    }

    /// Sets up every PCI function of a pc or q35 machine. `mmio` reaches q35's
    /// MMCONFIG window, which the set-up opens first and then uses.
    ///
    /// Once per `Pci`, as [`Pci::new`] makes it: the set-up runs once a boot,
    /// on the firmware's `Pci` in `.bss`, cleared at the reset vector. (It
    /// reset its 20 KiB of bus tables first, a `memset` that TCG ran a
    /// store at a time.)
    pub fn setup(
        &mut self,
        io: &mut impl PortIo,
        mmio: &mut impl Mmio,
        platform: &Platform,
    ) -> Result<&Layout, PciError> {
        debug_assert!(
            self.devices.is_empty() & self.found.is_empty() & self.entries.is_empty(),
            "Pci::setup on a Pci that was set up before"
        );
        let io = &mut ConfigAccess::new(io, mmio);
        if platform.host == Machine::Q35 {
            q35::open_mmconfig(io, platform.mmconfig);
        }
        let mut bus = 0;
        self.init_bus(io, 0, &mut bus)?;
        self.probe(io)?;
        self.platform(platform);
        self.size_devices(io)?;
        self.size_bridges(io)?;
        self.layout.mem64 = self.map(io, platform, self.layout.mem32_start)?;
        self.init_devices(io, platform);
        self.enable_default_vga(io);
        self.layout.functions = self.devices.len();
        self.layout.max_bus = self.max_bus;
        Ok(&self.layout)
    }

    /// Functions on bus 0 with an interrupt pin (INTA#-INTD#), in bus order,
    /// as the MP table lists them: noted by [`Pci::init_devices`] as it
    /// wrote each line (no configuration access, no second walk).
    pub fn bus0_interrupts(&self) -> &[PciInterrupt] {
        &self.bus0_ints[..usize::min(self.bus0_count, MAX_BUS0_INTS)]
    }
}

#[cfg(test)]
pub(crate) mod tests;
