//! The bus walk: full and empty buses, interrupt routing at the edges.

use super::*;
use crate::chipset::PCI_IRQS;
use std::vec::Vec;

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

#[test]
fn a_vga_device_behind_a_bridge_gets_vga_forwarding_on_the_bridge() {
    let bridge = Func::new(0x1B36, 0x0001, 0x0604, 1)
        .at(None, 5, 0)
        .caps(&[(super::CAP_ID_SHPC, &[0, 0])]);
    let vga = Func::new(0x1234, 0x1111, 0x0300, 0)
        .at(Some(5), 0, 0)
        .mem(0, 16 << 20);
    let mut m = Model::new(pc_machine(vec![bridge, vga]));
    let mut pci = std::boxed::Box::new(Pci::new());
    setup(&mut pci, &mut m, &pc(512 << 20)).unwrap();
    let br = Bdf(0, 5, 0);
    // VGA forwarding and SERR on the bridge; its decoding on
    assert_eq!(m.r16(br, 0x3E) & 0x0A, 0x0A);
    assert_eq!(m.r16(br, 0x04) & 0x103, 0x103);

    // with another VGA device on bus 0, listed first (bus by bus), that one
    // is the default: the bridge forwards no VGA
    let bridge = Func::new(0x1B36, 0x0001, 0x0604, 1)
        .at(None, 5, 0)
        .caps(&[(super::CAP_ID_SHPC, &[0, 0])]);
    let vga = Func::new(0x1234, 0x1111, 0x0300, 0)
        .at(Some(5), 0, 0)
        .mem(0, 16 << 20);
    let vga0 = Func::new(0x1234, 0x1111, 0x0300, 0)
        .at(None, 6, 0)
        .mem(0, 16 << 20);
    let mut m = Model::new(pc_machine(vec![bridge, vga, vga0]));
    let mut pci = std::boxed::Box::new(Pci::new());
    setup(&mut pci, &mut m, &pc(512 << 20)).unwrap();
    assert_eq!(m.r16(br, 0x3E) & 0x0A, 0x02);
}
