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
