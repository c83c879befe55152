//! Sizing and placement: BARs that move above 4 GiB, and BARs that fit nowhere.

use super::*;
use model::assigned;
use std::vec::Vec;

#[test]
fn large_64bit_bars_move_above_the_ram_above_4g() {
    let ivshmem = Func::new(0x1AF4, 0x1110, 0x0500, 0)
        .at(None, 4, 0)
        .mem(0, 256)
        .mem64_pref(2, 2 << 30);
    let mut m = Model::new(pc_machine(vec![ivshmem]));
    let platform = Platform {
        high_ram_end: (4 << 30) + (1 << 30) + (3 << 20),
        ..pc(3 << 30)
    };
    let mut pci = std::boxed::Box::new(Pci::new());
    let layout = setup(&mut pci, &mut m, &platform).unwrap();
    assert_eq!(layout.mem32_start, 0xC000_0000);
    // all 64-bit BARs go high: 1 GiB-aligned above the RAM
    assert_eq!(m.bar64(Bdf(0, 4, 0), 0x18), 6 << 30);
    assert_eq!(m.bar64(Bdf(0, 3, 0), 0x20), 8 << 30);
    assert_eq!(layout.mem64, Some(Range::new(6 << 30, 9 << 30)));
    // the 32-bit ones stay below
    assert!(m.r32(Bdf(0, 4, 0), 0x10) >= 0xC000_0000);
    assert_no_overlap(&m);
}

/// The parity test's devices (xtask/src/parity.rs): a 1 GiB ivshmem BAR, a
/// PCI bridge whose SHPC BAR is 64-bit, a device behind it. The bridge's BAR,
/// the ivshmem BAR and the bridge's prefetchable window get the addresses
/// SeaBIOS 1.16.2 gives them live on pc with 5 GiB (`cargo xtask compare`).
#[test]
fn a_1gib_bar_moves_every_64bit_bar_above_4g_as_seabios_does_live() {
    let devices = || {
        std::vec![
            Func::new(0x1AF4, 0x1110, 0x0500, 0)
                .at(None, 4, 0)
                .mem(0, 256)
                .mem64_pref(2, 1 << 30),
            Func::new(0x1B36, 0x0001, 0x0604, 1)
                .at(None, 5, 0)
                .pin(1)
                .mem64(0, 256)
                .caps(&[(CAP_ID_SHPC, &[0, 0])]),
            // behind the bridge: its index in the model (after pc_machine's 5)
            Func::new(0x1AF4, 0x1044, 0x00FF, 0)
                .at(Some(6), 0, 0)
                .pin(1)
                .mem(1, 4096)
                .mem64_pref(4, 16 << 10),
        ]
    };
    // pc with 5 GiB: 3 GiB below 4 GiB, the 32-bit window from 3 GiB is too
    // small; the 64-bit BARs go above the 2 GiB of RAM above 4 GiB, the
    // non-prefetchable ones first, each kind 1 GiB-aligned
    let mut m = Model::new(pc_machine(devices()));
    let platform = Platform {
        high_ram_end: 6 << 30,
        ..pc(3 << 30)
    };
    let mut pci = std::boxed::Box::new(Pci::new());
    let layout = setup(&mut pci, &mut m, &platform).unwrap();
    let br = Bdf(0, 5, 0);
    assert_eq!(m.bar64(br, 0x10), 0x1_8000_0000);
    assert_eq!(m.bar64(Bdf(0, 4, 0), 0x18), 0x1_C000_0000);
    let pref = (m.r16(br, 0x24) as u64 & 0xFFF0) << 16 | (m.r32(br, 0x28) as u64) << 32;
    assert_eq!(pref, 0x2_0000_0000);
    assert_eq!(m.bar64(Bdf(1, 0, 0), 0x20), 0x2_0000_0000);
    assert_eq!(m.bar64(Bdf(0, 3, 0), 0x20), 0x2_0020_0000);
    assert_eq!(layout.mem64, Some(Range::new(0x1_8000_0000, 0x2_4000_0000)));
    assert_no_overlap(&m);

    // with 512 MiB the 1 GiB BAR fits below 4 GiB on pc, and nothing moves
    let mut m = Model::new(pc_machine(devices()));
    let mut pci = std::boxed::Box::new(Pci::new());
    let layout = setup(&mut pci, &mut m, &pc(512 << 20)).unwrap();
    assert_eq!(layout.mem64, None);
    assert_eq!(m.bar64(Bdf(0, 4, 0), 0x18), 0x8000_0000);
    assert_no_overlap(&m);

    // with no RAM above 4 GiB the moved BARs start at 4 GiB
    let mut m = Model::new(pc_machine(devices()));
    let platform = Platform {
        high_ram_end: 1 << 32,
        ..pc(3 << 30)
    };
    let mut pci = std::boxed::Box::new(Pci::new());
    let layout = setup(&mut pci, &mut m, &platform).unwrap();
    assert_eq!(m.bar64(br, 0x10), 1 << 32);
    assert_eq!(m.bar64(Bdf(0, 4, 0), 0x18), 5 << 30);
    assert_eq!(layout.mem64.map(|r| r.start), Some(1 << 32));
    assert_no_overlap(&m);
}

#[test]
fn bars_that_fit_nowhere_are_an_error_not_an_overlap() {
    // a 2 GiB 32-bit BAR cannot fit above 3 GiB
    let huge = Func::new(0x1234, 0x1111, 0x0380, 0)
        .at(None, 4, 0)
        .mem(0, 2 << 30);
    let mut m = Model::new(pc_machine(vec![huge]));
    let mut pci = std::boxed::Box::new(Pci::new());
    assert_eq!(
        setup(&mut pci, &mut m, &pc(3 << 30)),
        Err(PciError::OutOfMemorySpace)
    );
    // 48 KiB of I/O BARs do not fit in 0x1000-0x9fff on pc
    let many: Vec<Func> = (4..28)
        .map(|d| {
            Func::new(0x1234, 0x2222, 0x0200, 0)
                .at(None, d, 0)
                .io(0, 2048)
        })
        .collect();
    let mut m = Model::new(pc_machine(many));
    let mut pci = std::boxed::Box::new(Pci::new());
    assert_eq!(
        setup(&mut pci, &mut m, &pc(1 << 30)),
        Err(PciError::OutOfIoSpace)
    );
}

#[test]
fn more_functions_and_bars_than_the_inline_arrays_hold_are_all_set_up() {
    // bus 0: host bridge, a PCI bridge, 30 slots of 8 functions; behind the
    // bridge 8 slots of 8: 306 functions with 4 BARs each (1,216 > 1,024)
    let mut funcs = vec![
        Func::new(0x8086, 0x1237, 0x0600, 0).at(None, 0, 0),
        Func::new(0x1B36, 0x0001, 0x0604, 1).at(None, 1, 0),
    ];
    let with_bars = |f: Func| f.mem(0, 4096).mem(1, 4096).mem(2, 4096).mem(3, 4096);
    for dev in 2..32u8 {
        for f in 0..8u8 {
            funcs.push(with_bars(Func::new(0x1234, 0x3333, 0x0200, 0x80)).at(None, dev, f));
        }
    }
    for dev in 0..8u8 {
        for f in 0..8u8 {
            funcs.push(with_bars(Func::new(0x1234, 0x4444, 0x0200, 0x80)).at(Some(1), dev, f));
        }
    }
    let mut m = Model::new(funcs);
    let mut pci = std::boxed::Box::new(Pci::new());
    let layout = setup(&mut pci, &mut m, &pc(1 << 30)).unwrap();
    assert_eq!(layout.functions, 306);
    assert!(pci.devices.on_heap() && pci.entries.on_heap() && pci.found.on_heap());
    assert_eq!(assigned(&m).len(), 304 * 4);
    assert_no_overlap(&m);
    // the heap's error is the heap's status
    assert!(matches!(
        crate::error::Error::from(PciError::OutOfHeap(1)),
        crate::error::Error::OutOfHeap { .. }
    ));
}

/// Found by the fuzzer: 64-bit BARs whose sizes add up past 2^64 overflowed
/// the sums and alignments of the 64-bit window; now they do not fit.
#[test]
fn bars_summing_past_2_pow_64_are_out_of_space() {
    let huge = |dev| {
        Func::new(0x1AF4, 0x1000, 0x0200, 0)
            .at(None, dev, 0)
            .mem64_pref(0, 1 << 63)
    };
    let mut m = Model::new(pc_machine(vec![huge(4), huge(5), huge(6)]));
    let mut pci = std::boxed::Box::new(Pci::new());
    assert_eq!(
        setup(&mut pci, &mut m, &pc(512 << 20)),
        Err(PciError::OutOfMemorySpace)
    );
}

#[test]
fn the_32bit_window_starts_where_seabios_puts_it() {
    // i440FX: 2 GiB, 3 GiB, or the end of the RAM below 4 GiB; no reservation
    for (low, start) in [
        (512 << 20, 0x8000_0000),
        (0x8000_0000, 0x8000_0000),
        (0x8000_1000, 0xC000_0000),
        (0xC000_0000, 0xC000_0000),
        (0xD000_0000, 0xD000_0000),
    ] {
        let mut m = Model::new(pc_machine(Vec::new()));
        let mut pci = std::boxed::Box::new(Pci::new());
        let layout = setup(&mut pci, &mut m, &pc(low)).unwrap();
        assert_eq!(layout.mem32_start, start, "{low:#x}");
        assert_eq!(layout.reserved, [None, None]);
    }
    // q35 without an ICH9 LPC: after MMCONFIG, which alone is reserved
    let mut m = Model::new(std::vec![
        Func::new(0x8086, 0x29C0, 0x0600, 0).at(None, 0, 0)
    ]);
    let platform = Platform {
        host: Machine::Q35,
        ..pc(0x7000_0000)
    };
    let mut pci = std::boxed::Box::new(Pci::new());
    let layout = setup(&mut pci, &mut m, &platform).unwrap();
    assert_eq!(layout.mem32_start, 0xC000_0000);
    assert_eq!(layout.reserved, [Some(platform.mmconfig), None]);
}
