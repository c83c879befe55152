//! Configuration access: 0xCF8 written only when it changes, MMCONFIG on q35,
//! and how few accesses a whole set-up takes.

use super::*;
use crate::io::NoMmio;
use std::vec::Vec;

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
        host: Machine::Q35,
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
    // restoring each BAR it sized (a live pc went from 528 exits to 255); 188
    // on 2026-12-01, once the chipset's functions without BARs went unsized
    assert!(addresses <= 190, "{addresses} configuration port accesses");
    let int = |device, pin, irq| crate::mptable::PciInterrupt { device, pin, irq };
    assert_eq!(pci.bus0_interrupts(), [int(1, 1, 9), int(3, 1, 11)]);
}

/// Whether the set-up wrote any of `bdf`'s BAR or option-ROM registers.
fn sized(m: &Model, bdf: Bdf) -> bool {
    m.writes
        .iter()
        .any(|&(b, reg)| b == bdf && ((0x10..0x28).contains(&reg) || reg == 0x30))
}

#[test]
fn the_chipsets_functions_without_bars_are_not_sized() {
    // pc: the host bridge, the ISA bridge and PIIX4 PM have no BAR; the IDE
    // controller and the NIC have.
    let mut m = Model::new(pc_machine(Vec::new()));
    setup(&mut Pci::new(), &mut m, &pc(512 << 20)).unwrap();
    for bdf in [Bdf(0, 0, 0), Bdf(0, 1, 0), Bdf(0, 1, 3)] {
        assert!(!sized(&m, bdf), "{bdf:?} sized");
    }
    assert!(sized(&m, Bdf(0, 1, 1)) && sized(&m, Bdf(0, 3, 0)));
    // q35: the MCH and the LPC bridge are not sized, AHCI and SMBus are.
    let mut m = Model::new(q35_machine(Vec::new()));
    let platform = Platform {
        host: Machine::Q35,
        ..pc(2 << 30)
    };
    setup(&mut Pci::new(), &mut m, &platform).unwrap();
    for bdf in [Bdf(0, 0, 0), Bdf(0, 0x1F, 0)] {
        assert!(!sized(&m, bdf), "{bdf:?} sized");
    }
    assert!(sized(&m, Bdf(0, 0x1F, 2)) && sized(&m, Bdf(0, 0x1F, 3)));
}

#[test]
fn a_function_the_chipset_list_does_not_name_is_sized_whatever_its_slot() {
    // A NIC where the ISA bridge usually is, and a device with Intel's
    // vendor ID and another device ID: both sized, their BARs assigned.
    let funcs = vec![
        Func::new(0x8086, 0x1237, 0x0600, 0).at(None, 0, 0),
        Func::new(0x1AF4, 0x1000, 0x0200, 0)
            .at(None, 1, 0)
            .io(0, 32),
        Func::new(0x8086, 0x7001, 0x0601, 0)
            .at(None, 2, 0)
            .mem(0, 4096),
    ];
    let mut m = Model::new(funcs);
    setup(&mut Pci::new(), &mut m, &pc(512 << 20)).unwrap();
    assert!(!sized(&m, Bdf(0, 0, 0)));
    assert!(sized(&m, Bdf(0, 1, 0)) && sized(&m, Bdf(0, 2, 0)));
    assert_eq!(m.r32(Bdf(0, 1, 0), 0x10) & 1, 1);
    assert_ne!(m.r32(Bdf(0, 2, 0), 0x10) & !0xF, 0);
}

/// Bus 0's interrupts for the MP table when bus 0 is full: 32 devices of 8
/// functions, each with a pin, and a bridge among them with functions behind
/// it, whose interrupts are not bus 0's and must not overwrite its last.
#[test]
fn a_full_bus_0_keeps_all_256_interrupts() {
    let mut funcs = vec![
        Func::new(0x8086, 0x1237, 0x0600, 0x80)
            .at(None, 0, 0)
            .pin(1),
        Func::new(0x1B36, 0x0001, 0x0604, 0x81)
            .at(None, 1, 0)
            .pin(1),
    ];
    for (dev, f) in (0..32u8).flat_map(|d| (0..8u8).map(move |f| (d, f))) {
        if (dev, f) != (0, 0) && (dev, f) != (1, 0) {
            let header = if f == 0 { 0x80 } else { 0 };
            funcs.push(
                Func::new(0x1234, 0x3333, 0x0200, header)
                    .at(None, dev, f)
                    .pin(1 + f % 4),
            );
        }
    }
    for dev in 0..4u8 {
        funcs.push(
            Func::new(0x1234, 0x4444, 0x0200, 0)
                .at(Some(1), dev, 0)
                .pin(1),
        );
    }
    let mut m = Model::new(funcs);
    let mut pci = std::boxed::Box::new(Pci::new());
    setup(&mut pci, &mut m, &pc(512 << 20)).unwrap();
    let ints = pci.bus0_interrupts();
    assert_eq!(ints.len(), 256);
    assert!(ints.iter().all(|i| (1..=4).contains(&i.pin)));
    assert_eq!(
        (ints[255].device, ints[255].pin),
        (31, 4),
        "{:?}",
        ints[255]
    );
}
