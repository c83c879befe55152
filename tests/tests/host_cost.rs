//! `cargo xtask host-cost` end to end: ferrite and the floor ROM under
//! callgrind, QEMU's vCPU thread found and its host instructions split by
//! what QEMU did.

use xtask::bench::Firmware;
use xtask::host_cost::{KINDS, Options, run};
use xtask::qemu::Machine;

#[test]
fn counts_the_vcpu_thread_of_each_firmware() {
    let report = run(&Options {
        machine: Machine::Microvm,
        firmwares: vec![Firmware::Ferrite, Firmware::Floor],
        top: 10,
        json: None,
    })
    .unwrap();

    let [ferrite, floor] = &report.costs[..] else {
        panic!("{report:#?}");
    };
    assert_eq!((&*ferrite.firmware, &*floor.firmware), ("ferrite", "floor"));
    for c in &report.costs {
        // each kind of work, and the translated code's own, is part of the thread
        for &(_, function) in KINDS {
            assert!(c.of(function) < c.vcpu, "{function}: {c:#?}");
        }
        assert!(c.generated > 0 && c.generated < c.vcpu, "{c:#?}");
        // no address goes unplaced: a name, the export before it, or the
        // object it is in
        assert!(
            c.inclusive
                .keys()
                .all(|n| !n.starts_with("0x") || n.contains(" in ")),
            "{:#?}",
            c.inclusive
                .keys()
                .filter(|n| n.starts_with("0x"))
                .collect::<Vec<_>>()
        );
    }
    // The floor only copies three blobs: ferrite's set-up costs the host
    // more, and most of that is translating its code.
    let translation = |c: &xtask::host_cost::Cost| c.of("tb_gen_code");
    assert!(ferrite.vcpu > floor.vcpu, "{report:#?}");
    assert!(translation(ferrite) > 5 * translation(floor), "{report:#?}");
    assert!(
        2 * (translation(ferrite) - translation(floor)) > ferrite.vcpu - floor.vcpu,
        "{report:#?}"
    );
}
