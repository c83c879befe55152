//! `cargo xtask host-cost` end to end: ferrite and qboot under callgrind,
//! QEMU's vCPU thread found and its host instructions split by what QEMU did.

use xtask::bench::Firmware;
use xtask::host_cost::{KINDS, Options, run};
use xtask::qemu::Machine;

#[test]
fn counts_the_vcpu_thread_of_each_firmware() {
    let report = run(&Options {
        machine: Machine::Microvm,
        firmwares: vec![Firmware::Ferrite],
        roms: vec![("qboot".into(), "/usr/share/qemu/qboot.rom".into())],
        top: 10,
        json: None,
    })
    .unwrap();

    let names: Vec<&str> = report.costs.iter().map(|c| c.firmware.as_str()).collect();
    assert_eq!(names, ["ferrite", "qboot"]);
    for c in &report.costs {
        // each kind of work, and the translated code's own, is part of the thread
        for &(_, function) in KINDS {
            assert!(c.of(function) < c.vcpu, "{function}: {c:#?}");
        }
        assert!(c.generated > 0 && c.generated < c.vcpu, "{c:#?}");
        // a firmware runs its code once: translating it is most of what
        // the vCPU thread does for it (microvm has no PCI to set up)
        assert!(2 * c.of("tb_gen_code") > c.vcpu, "{c:#?}");
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
}
