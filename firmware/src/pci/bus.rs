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
use super::{Bdf, Device, Found, NONE, Pci, PciError, Platform, heap};
use crate::chipset::{self, INTEL, Machine, q35};

/// The ICH9 LPC bridge's vendor and device ID, as one dword.
const ICH9_LPC: u32 = (q35::ICH9_LPC_ID as u32) << 16 | INTEL as u32;

impl Pci {
    /// Lists the functions on `bus` (SeaBIOS's pci_next walk: functions 1-7
    /// only for multi-function devices) into `found`; each bus once.
    fn scan_bus(&mut self, io: &mut impl Config, bus: u8) -> Result<(usize, usize), PciError> {
        let (start, end) = self.bus_found[bus as usize];
        if end > start {
            return Ok((start as usize, end as usize));
        }
        let start = self.found.len();
        let mut devfn: u16 = 0;
        while devfn < 0x100 {
            let bdf = Bdf::from_devfn(bus, devfn as u8);
            let id = io.read32(bdf, reg::VENDOR);
            let vendor = id as u16;
            let function0 = devfn & 7 == 0;
            if vendor == 0 || vendor == 0xFFFF {
                devfn += if function0 { 8 } else { 1 };
                continue;
            }
            let class = (io.read32(bdf, reg::CLASS_REVISION) >> 16) as u16;
            let header_type = io.read8(bdf, reg::HEADER_TYPE);
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
    pub(super) fn init_bus(
        &mut self,
        io: &mut impl Config,
        bus: u8,
        next_bus: &mut u8,
    ) -> Result<(), PciError> {
        let (start, end) = self.scan_bus(io, bus)?;
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
                let d = Device {
                    bdf,
                    vendor: f.id as u16,
                    device: (f.id >> 16) as u16,
                    ..Device::default()
                };
                if let Some(cap) = resource_reserve_capability(io, &d) {
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
                    let secondary = io.read8(bdf, reg::SECONDARY_BUS);
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
    pub(super) fn init_devices(&mut self, io: &mut impl Config, p: &Platform) {
        for i in 0..self.devices.len() {
            let mut d = self.devices[i];
            d.pin = io.read8(d.bdf, reg::INTERRUPT_PIN);
            if d.pin != 0 {
                d.line = self.slot_irq(p.host, i, d.pin);
                io.write8(d.bdf, reg::INTERRUPT_LINE, d.line);
            }
            if let Some(line) = chipset::quirks(io, d.bdf, d.vendor, d.device, d.class, p.pm_base) {
                d.line = line;
            }
            let mut command = COMMAND_IO | COMMAND_MEMORY | COMMAND_SERR;
            if drives_for_boot(d.class) {
                command |= COMMAND_MASTER;
            }
            // A reset clears every writable command bit: nothing to keep.
            io.write16(d.bdf, reg::COMMAND, command);
            if d.header_type & 1 != 0 {
                io.set_bits16(d.bdf, reg::BRIDGE_CONTROL, BRIDGE_CTL_SERR);
            }
            self.devices[i] = d;
        }
    }

    /// The ISA IRQ a function's pin reaches, rotating through the bridges above
    /// it as QEMU's ACPI _PRT does; the root slot's routing is the chipset's
    /// ([`Machine::slot_irq`]).
    fn slot_irq(&self, host: Machine, mut i: usize, pin: u8) -> u8 {
        let mut addend = 0usize;
        while self.devices[i].parent != NONE {
            addend += self.devices[i].bdf.1 as usize;
            i = self.devices[i].parent as usize;
        }
        host.slot_irq(self.devices[i].bdf.1 as usize, pin as usize - 1 + addend)
    }

    /// pci_enable_default_vga: a VGA device behind bridges gets the bridges' VGA
    /// forwarding (one on bus 0 already decodes after init_devices).
    pub(super) fn enable_default_vga(&mut self, io: &mut impl Config) {
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
            io.set_bits16(bdf, reg::BRIDGE_CONTROL, BRIDGE_CTL_VGA);
            io.set_bits16(bdf, reg::COMMAND, COMMAND_IO | COMMAND_MEMORY);
        }
    }
}

/// Disk and USB host controllers: SeaBIOS drives these looking for boot disks
/// and leaves bus mastering on (IDE excepted: its ATA driver uses PIO). Linux
/// drivers turn it on for every other device they bind, so the guest ends up
/// with the same command registers as after SeaBIOS.
fn drives_for_boot(class: u16) -> bool {
    (class >> 8 == 0x01 && class != CLASS_STORAGE_IDE) || class == CLASS_SERIAL_USB
}
