//! The buses and their functions: bus numbers behind bridges and PCIe root
//! ports (SeaBIOS's pci_bios_init_bus), every function listed from one scan
//! of each bus (pci_probe_devices), and each function's last steps
//! (pci_bios_init_device): interrupt line, chipset quirks, decoding and SERR#,
//! bus mastering where SeaBIOS leaves it, and VGA forwarding on the bridges
//! above a VGA device (pci_enable_default_vga).

use super::caps::{RES_RESERVE_BUS, resource_reserve_capability};
use super::config::{
    BRIDGE_CTL_SERR, BRIDGE_CTL_VGA, CLASS_BRIDGE_PCI, CLASS_DISPLAY_VGA, CLASS_SERIAL_USB,
    CLASS_STORAGE_IDE, COMMAND_IO, COMMAND_MASTER, COMMAND_MEMORY, COMMAND_SERR, Config, reg,
};
use super::{Bdf, Device, NONE, Pci, PciError, Platform, heap};
use crate::chipset::{self, Machine, q35};
use crate::mptable::PciInterrupt;

/// The ICH9 LPC bridge's vendor and device ID, as one dword.
const ICH9_LPC: u32 = chipset::intel_id(q35::ICH9_LPC_ID);

impl Pci {
    /// Lists the functions on `bus` (SeaBIOS's pci_next walk: functions 1-7
    /// only for multi-function devices) into `found`; each bus once. Returns
    /// where they start and end in `found` and how many are PCI bridges.
    #[inline(always)]
    fn scan_bus(&mut self, io: &mut impl Config, bus: u8) -> Result<(u16, u16, u16), PciError> {
        let listed = self.buses.found[bus as usize];
        if listed.1 > listed.0 {
            return Ok(listed);
        }
        let start = self.found.len() as u16;
        let mut bridges = 0u16;
        let mut devfn: u16 = 0;
        while devfn < 0x100 {
            crate::mem::block_boundary();
            let bdf = Bdf::from_devfn(bus, devfn as u8);
            let id = io.read32(bdf, reg::VENDOR);
            // Vendor 0 or 0xFFFF: nothing there (one comparison).
            let absent = (id as u16).wrapping_add(1) <= 1;
            let mut multi = false;
            if !absent {
                let class = (io.read32(bdf, reg::CLASS_REVISION) >> 16) as u16;
                let header_type = io.read8(bdf, reg::HEADER_TYPE);
                // As the listing takes it on QEMU's usual machine (no
                // bridge: no parent), which then copies the whole list.
                self.found
                    .push(Device {
                        bdf,
                        vendor: id as u16,
                        device: (id >> 16) as u16,
                        class,
                        header_type,
                        secondary_bus: 0,
                        parent: NONE,
                        pin: 0,
                        line: 0,
                    })
                    .map_err(heap)?;
                self.has_ich9_lpc |= id == ICH9_LPC;
                bridges += (class == CLASS_BRIDGE_PCI) as u16;
                // header type 1 or 2: a bus behind it for the listing to visit
                self.bridge_headers |= (header_type & 0x7F).wrapping_sub(1) < 2;
                multi = header_type & 0x80 != 0;
            }
            let next_device = (devfn & 7 == 0) & !multi;
            devfn += core::hint::select_unpredictable(next_device, 8, 1);
        }
        let listed = (start, self.found.len() as u16, bridges);
        self.buses.found[bus as usize] = listed;
        Ok(listed)
    }

    /// Step 1 (pci_bios_init_bus_rec): number the buses behind `bus`'s bridges.
    /// Inline: on the usual machine, the root bus without a bridge, the
    /// call to the numbering and its register saves are never made (TCG).
    #[inline(always)]
    pub(super) fn init_bus(
        &mut self,
        io: &mut impl Config,
        bus: u8,
        next_bus: &mut u8,
    ) -> Result<(), PciError> {
        let (start, end, bridges) = self.scan_bus(io, bus)?;
        // One test for the usual bus, which has no bridge (TCG).
        if bridges == 0 {
            return Ok(());
        }
        self.number_bridges(io, bus, start, end, next_bus)
    }

    /// The bridges of `bus`, in `found` from `start` to `end`: numbered, and
    /// the buses behind them set up in turn.
    #[inline(never)]
    fn number_bridges(
        &mut self,
        io: &mut impl Config,
        bus: u8,
        start: u16,
        end: u16,
        next_bus: &mut u8,
    ) -> Result<(), PciError> {
        let (start, end) = (start as usize, end as usize);
        // Bridges on this bus forward nothing until numbered.
        for k in start..end {
            let f = self.found[k];
            if f.class == CLASS_BRIDGE_PCI {
                io.write8(f.bdf, reg::SECONDARY_BUS, 255);
                io.write8(f.bdf, reg::SUBORDINATE_BUS, 0);
            }
        }
        for k in start..end {
            let f = self.found[k];
            if f.class != CLASS_BRIDGE_PCI {
                continue;
            }
            let bdf = f.bdf;
            if io.read8(bdf, reg::PRIMARY_BUS) != bus {
                io.write8(bdf, reg::PRIMARY_BUS, bus);
            }
            *next_bus = next_bus.saturating_add(1);
            let mut secondary = io.read8(bdf, reg::SECONDARY_BUS);
            if secondary != *next_bus {
                secondary = *next_bus;
                io.write8(bdf, reg::SECONDARY_BUS, secondary);
            }
            let mut subordinate = io.read8(bdf, reg::SUBORDINATE_BUS);
            io.write8(bdf, reg::SUBORDINATE_BUS, 255);
            self.init_bus(io, secondary, next_bus)?;
            if subordinate != *next_bus {
                let mut last = *next_bus;
                if let Some(cap) = resource_reserve_capability(io, &f) {
                    let reserve = io.read32(bdf, cap + RES_RESERVE_BUS);
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
            io.write8(bdf, reg::SUBORDINATE_BUS, subordinate);
        }
        Ok(())
    }

    /// Step 2 (SeaBIOS's pci_probe_devices): every function, bus by bus, from
    /// what the bus numbering's scans found.
    pub(super) fn probe(&mut self, io: &mut impl Config) -> Result<(), PciError> {
        // QEMU's usual machine: every function on bus 0 and no bridge header,
        // so no parent and nothing to read: the functions in scan order.
        // (`has_ich9_lpc` the scans noted.) One copy: under TCG a loop
        // of pushes was blocks of its own and an out-of-line push.
        let found = self.found.as_slice();
        // One comparison for both conditions (TCG).
        if (self.bridge_headers as usize | (self.buses.found[0].1 as usize ^ found.len())) == 0 {
            return self.devices.extend_from_slice(found).map_err(heap);
        }
        self.has_ich9_lpc = false;
        let mut bus_parent = [NONE; 256];
        let mut bus: u16 = 0;
        while bus <= self.max_bus as u16 {
            let b = bus as u8;
            let (start, end, _) = self.buses.found[b as usize];
            for k in start as usize..end as usize {
                let mut dev = self.found[k];
                dev.parent = bus_parent[b as usize];
                let id = (dev.device as u32) << 16 | dev.vendor as u32;
                if matches!(dev.header_type & 0x7F, 1 | 2) {
                    let secondary = io.read8(dev.bdf, reg::SECONDARY_BUS);
                    dev.secondary_bus = secondary;
                    if secondary > b && bus_parent[secondary as usize] == NONE {
                        bus_parent[secondary as usize] = self.devices.len() as u16;
                    }
                    self.max_bus = self.max_bus.max(secondary);
                }
                self.has_ich9_lpc |= id == ICH9_LPC;
                self.devices.push(dev).map_err(heap)?;
            }
            bus += 1;
        }
        Ok(())
    }

    /// Step 6 (pci_bios_init_device): interrupt line, chipset quirks, decoding.
    /// Notes the first VGA device for [`Pci::enable_default_vga`].
    pub(super) fn init_devices(&mut self, io: &mut impl Config, p: &Platform) {
        use core::hint::select_unpredictable as select;
        let devices = self.devices.as_mut_slice();
        let mut vga = NONE;
        for i in 0..devices.len() {
            crate::mem::block_boundary();
            let mut d = devices[i];
            d.pin = io.read8(d.bdf, reg::INTERRUPT_PIN);
            if d.pin != 0 {
                d.line = slot_irq(devices, p.host, &d);
                io.write8(d.bdf, reg::INTERRUPT_LINE, d.line);
            }
            let quirk = chipset::quirks(io, d.bdf, d.vendor, d.device, d.class, p.pm_base);
            d.line = quirk.unwrap_or(d.line);
            // Bus 0's interrupts for the MP table, noted here: written
            // whether kept or not, the count says which are (a pin
            // register outside INTA#-INTD#, hardware gone wrong, is no pin).
            // (Bus 0 has at most 256 functions: `n` stays within the list
            // and its spare entry.)
            let n = self.bus0_count;
            self.bus0_ints[usize::min(n, self.bus0_ints.len() - 1)] = PciInterrupt {
                device: d.bdf.1,
                pin: d.pin,
                irq: d.line,
            };
            self.bus0_count = n + ((d.bdf.0 == 0) & (d.pin.wrapping_sub(1) < 4)) as usize;
            // A reset clears every writable command bit: nothing to keep.
            let master = select(drives_for_boot(d.class), COMMAND_MASTER, 0);
            let command = COMMAND_IO | COMMAND_MEMORY | COMMAND_SERR | master;
            io.write16(d.bdf, reg::COMMAND, command);
            if d.header_type & 1 != 0 {
                io.set_bits16(d.bdf, reg::BRIDGE_CONTROL, BRIDGE_CTL_SERR);
            }
            vga = select(
                (d.class == CLASS_DISPLAY_VGA) & (vga == NONE),
                i as u16,
                vga,
            );
            devices[i] = d;
        }
        self.vga = vga;
    }

    /// pci_enable_default_vga: a VGA device behind bridges gets the bridges' VGA
    /// forwarding (one on bus 0 already decodes after init_devices).
    pub(super) fn enable_default_vga(&mut self, io: &mut impl Config) {
        let devices = self.devices.as_slice();
        // NONE (no VGA device, or no bridge above it) is beyond the list's end.
        let mut parent = devices.get(self.vga as usize).map_or(NONE, |d| d.parent);
        while let Some(bridge) = devices.get(parent as usize) {
            io.set_bits16(bridge.bdf, reg::BRIDGE_CONTROL, BRIDGE_CTL_VGA);
            io.set_bits16(bridge.bdf, reg::COMMAND, COMMAND_IO | COMMAND_MEMORY);
            parent = bridge.parent;
        }
    }
}

/// The ISA IRQ pin `d.pin` (1-4) of `d` reaches, rotating through the bridges
/// above it as QEMU's ACPI _PRT does; the root slot's routing is the
/// chipset's ([`Machine::slot_irq`]).
#[inline(always)]
fn slot_irq(devices: &[Device], host: Machine, d: &Device) -> u8 {
    let mut addend = 0usize;
    let mut cur = d;
    // A parent always comes before its children; NONE ends the walk.
    while let Some(parent) = devices.get(cur.parent as usize) {
        addend += cur.bdf.1 as usize;
        cur = parent;
    }
    host.slot_irq(cur.bdf.1 as usize, d.pin as usize - 1 + addend)
}

/// Disk and USB host controllers: SeaBIOS drives these looking for boot disks
/// and leaves bus mastering on (IDE excepted: its ATA driver uses PIO). Linux
/// drivers turn it on for every other device they bind, so the guest ends up
/// with the same command registers as after SeaBIOS.
fn drives_for_boot(class: u16) -> bool {
    // `&` and `|`: no branch of their own under TCG.
    ((class >> 8 == 0x01) & (class != CLASS_STORAGE_IDE)) | (class == CLASS_SERIAL_USB)
}
