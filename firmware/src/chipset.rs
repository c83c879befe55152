//! The chipset set-up a `-kernel` boot needs: which machine this is, the ACPI
//! power-management I/O block (so that Linux can power off through ACPI) and, on
//! q35, the MMCONFIG window. Values match SeaBIOS and qboot so that QEMU's ACPI
//! tables (built when the firmware first reads them) describe the same ports.

use crate::e820::Range;
use crate::io::PortIo;

const PCI_CONFIG_ADDRESS: u16 = 0xCF8;
const PCI_CONFIG_DATA: u16 = 0xCFC;

/// ACPI PM I/O base (QEMU's FADT and DSDT use what the firmware programs; 0x600
/// is what SeaBIOS moves it to).
pub const ACPI_PM_BASE: u16 = 0x600;
/// q35 MMCONFIG window (as SeaBIOS and qboot place it).
pub const Q35_MMCONFIG: Range = Range::new(0xB000_0000, 0xC000_0000);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// `-M pc`: i440FX host bridge, PIIX3/PIIX4.
    I440fx,
    /// `-M q35`: Q35 MCH, ICH9.
    Q35,
    /// No PCI host bridge: `-M microvm` (or anything else without PCI).
    NoPci,
}

/// A PCI function's configuration space address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf(pub u8, pub u8, pub u8);

impl Bdf {
    fn address(self, reg: u8) -> u32 {
        0x8000_0000
            | (self.0 as u32) << 16
            | (self.1 as u32 & 0x1F) << 11
            | (self.2 as u32 & 0x7) << 8
            | (reg as u32 & 0xFC)
    }
}

pub fn pci_read32(io: &mut impl PortIo, bdf: Bdf, reg: u8) -> u32 {
    io.outl(PCI_CONFIG_ADDRESS, bdf.address(reg));
    io.inl(PCI_CONFIG_DATA)
}

pub fn pci_write32(io: &mut impl PortIo, bdf: Bdf, reg: u8, value: u32) {
    io.outl(PCI_CONFIG_ADDRESS, bdf.address(reg));
    io.outl(PCI_CONFIG_DATA, value);
}

pub fn pci_write8(io: &mut impl PortIo, bdf: Bdf, reg: u8, value: u8) {
    io.outl(PCI_CONFIG_ADDRESS, bdf.address(reg));
    io.outb(PCI_CONFIG_DATA + (reg as u16 & 3), value);
}

const HOST_BRIDGE: Bdf = Bdf(0, 0, 0);
const I440FX_ID: u32 = 0x1237_8086;
const Q35_MCH_ID: u32 = 0x29C0_8086;
/// PIIX4 power management function on `-M pc`.
const PIIX4_PM: Bdf = Bdf(0, 1, 3);
/// ICH9 LPC bridge on `-M q35`.
const ICH9_LPC: Bdf = Bdf(0, 0x1F, 0);

/// Identifies the machine from its host bridge.
pub fn identify(io: &mut impl PortIo) -> Machine {
    match pci_read32(io, HOST_BRIDGE, 0) {
        I440FX_ID => Machine::I440fx,
        Q35_MCH_ID => Machine::Q35,
        _ => Machine::NoPci,
    }
}

/// Programs the ACPI PM block and (q35) MMCONFIG. Returns the MMCONFIG window to
/// reserve in e820, if any. Must run before the ACPI tables are read.
pub fn init(io: &mut impl PortIo, machine: Machine) -> Option<Range> {
    match machine {
        Machine::I440fx => {
            // PMBA (0x40) with the I/O space bit, then PMREGMISC.PMIOSE (0x80).
            pci_write32(io, PIIX4_PM, 0x40, ACPI_PM_BASE as u32 | 1);
            pci_write8(io, PIIX4_PM, 0x80, 0x01);
            None
        }
        Machine::Q35 => {
            // PCIEXBAR (0x60/0x64): base, 256 MiB length (bits 2:1 = 0), enable.
            pci_write32(io, HOST_BRIDGE, 0x64, 0);
            pci_write32(io, HOST_BRIDGE, 0x60, Q35_MMCONFIG.start as u32 | 1);
            // PMBASE (0x40) and ACPI_CNTL.ACPI_EN (0x44, bit 7).
            pci_write32(io, ICH9_LPC, 0x40, ACPI_PM_BASE as u32 | 1);
            pci_write8(io, ICH9_LPC, 0x44, 0x80);
            Some(Q35_MMCONFIG)
        }
        Machine::NoPci => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// Records config writes; answers reads of the host bridge ID.
    struct Pci {
        host_id: u32,
        addr: u32,
        writes: Vec<(u32, u32)>,
    }
    impl PortIo for Pci {
        fn inb(&mut self, _: u16) -> u8 {
            0xFF
        }
        fn inl(&mut self, port: u16) -> u32 {
            assert_eq!(port, PCI_CONFIG_DATA);
            if self.addr == 0x8000_0000 {
                self.host_id
            } else {
                0xFFFF_FFFF
            }
        }
        fn outb(&mut self, port: u16, v: u8) {
            self.writes
                .push((self.addr | (port - PCI_CONFIG_DATA) as u32, v as u32));
        }
        fn outw(&mut self, _: u16, _: u16) {}
        fn outl(&mut self, port: u16, v: u32) {
            if port == PCI_CONFIG_ADDRESS {
                self.addr = v;
            } else {
                self.writes.push((self.addr, v));
            }
        }
        fn read_bytes(&mut self, _: u16, _: &mut [u8]) {}
    }

    #[test]
    fn identifies_machines() {
        for (id, m) in [
            (I440FX_ID, Machine::I440fx),
            (Q35_MCH_ID, Machine::Q35),
            (0xFFFF_FFFF, Machine::NoPci),
        ] {
            let mut io = Pci {
                host_id: id,
                addr: 0,
                writes: Vec::new(),
            };
            assert_eq!(identify(&mut io), m);
        }
    }

    #[test]
    fn q35_gets_mmconfig_and_pm_base() {
        let mut io = Pci {
            host_id: Q35_MCH_ID,
            addr: 0,
            writes: Vec::new(),
        };
        assert_eq!(init(&mut io, Machine::Q35), Some(Q35_MMCONFIG));
        assert!(io.writes.contains(&(0x8000_0060, 0xB000_0001)));
        assert!(io.writes.contains(&(0x8000_F840, 0x601)));
        assert!(io.writes.contains(&(0x8000_F844, 0x80)));
    }

    #[test]
    fn pc_gets_pm_base_and_microvm_nothing() {
        let mut io = Pci {
            host_id: I440FX_ID,
            addr: 0,
            writes: Vec::new(),
        };
        assert_eq!(init(&mut io, Machine::I440fx), None);
        assert_eq!(io.writes, [(0x8000_0B40, 0x601), (0x8000_0B80, 1)]);
        let mut io = Pci {
            host_id: 0,
            addr: 0,
            writes: Vec::new(),
        };
        assert_eq!(init(&mut io, Machine::NoPci), None);
        assert!(io.writes.is_empty());
    }
}
