//! The PCI set-up against a small model of QEMU's PCI buses (`model`): whole
//! pc and q35 machines here, each part's own cases beside it.

use super::caps::{CAP_ID_EXP, CAP_ID_SHPC};
use super::*;
use crate::chipset::q35::ICH9_RCBA;

mod alloc;
mod bus;
mod config;
mod model;

pub(crate) use model::{Func, Model, assert_no_overlap, pc_machine, q35_machine};
use model::{PCIE_ROOT_PORT_EXP, pc, setup};

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
    let mut funcs = q35_machine(vec![
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
    ]);
    funcs[4].cfg[0x0E] |= 0x80;
    let rng = Func::new(0x1AF4, 0x1044, 0x00FF, 0)
        .at(Some(4), 0, 0)
        .pin(1)
        .mem(1, 4096)
        .mem64_pref(4, 16 << 10);
    funcs.push(rng);
    let mut m = Model::new(funcs);
    let platform = Platform {
        host: Machine::Q35,
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
