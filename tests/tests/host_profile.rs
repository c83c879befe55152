//! `cargo xtask host-profile` end to end: boots of ferrite and qboot under
//! `perf record`, QEMU's vCPU thread found and its samples named.

use xtask::bench::Firmware;
use xtask::host_profile::{Options, run};
use xtask::qemu::Machine;

#[test]
fn profiles_the_vcpu_thread_of_each_firmware() {
    let report = run(&Options {
        machine: Machine::Microvm,
        firmwares: vec![Firmware::Ferrite, Firmware::Qboot],
        boots: 2,
        frequency: 20_000,
        top: 10,
        json: None,
    })
    .unwrap();

    let names: Vec<&str> = report
        .profiles
        .iter()
        .map(|p| p.firmware.as_str())
        .collect();
    assert_eq!(names, ["ferrite", "qboot"]);
    for p in &report.profiles {
        assert_eq!(p.boots, 2);
        assert!(p.vcpu_ms > 0.0 && p.vcpu_ms <= p.process_ms, "{p:#?}");
        assert!(p.vcpu_kernel_ms <= p.vcpu_ms, "{p:#?}");
        // every sample of the vCPU thread has exactly one name
        let named: f64 = p.by_name.values().sum();
        assert!((named - p.vcpu_ms).abs() < 1e-9, "{named} of {p:#?}");
        // translating guest code is the vCPU thread's work under TCG
        assert!(
            p.by_name.get("tcg_gen_code").is_some_and(|&ms| ms > 0.0),
            "{p:#?}"
        );
        // no sample in QEMU's binary goes unnamed: an exported symbol, or
        // (a static function of a stripped build) the export before it
        assert!(
            !p.by_name.contains_key("[unknown] qemu-system-x86_64"),
            "{:#?}",
            p.by_name
        );
    }
}
