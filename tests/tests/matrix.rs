//! A representative cut of `cargo xtask soak`'s size matrix, and 100 guest
//! reboots in a row: every boot passes the test kernel's checks, never hangs
//! or triple-faults. The exhaustive matrix and the mixed soak are
//! `cargo xtask soak --matrix` and `--boots N`.

use ferrite_tests::{rom, scratch};
use xtask::qemu::Machine;
use xtask::soak::{self, Assets, Case};

fn assets() -> Assets {
    Assets::new(&rom(), &scratch().join("soak")).expect("building the test kernel")
}

fn must_pass(cases: &[Case]) {
    let mut assets = assets();
    let mut failures = Vec::new();
    for case in cases {
        let v = soak::run_case(case, &mut assets).expect("running QEMU");
        if let Some((why, cmd, serial)) = v.failure {
            failures.push(format!("{case}: {why}\n{cmd}\n{serial}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn cut(machine: Machine) -> Vec<Case> {
    let base = Case::new(machine);
    vec![
        Case {
            memory_mib: 64,
            ..base
        },
        Case {
            memory_mib: 3584,
            ..base
        },
        Case {
            memory_mib: 16384,
            cpus: 2,
            ..base
        },
        Case { cpus: 64, ..base },
        Case {
            cpus: 2,
            cpu_model: Some("Haswell"),
            ..base
        },
        Case {
            cpus: 2,
            acpi: false,
            hpet: false,
            ..base
        },
        Case {
            memory_mib: 1024,
            cpus: 8,
            numa_nodes: 4,
            hotplug: true,
            ..base
        },
    ]
}

#[test]
fn size_matrix_cut_on_pc() {
    must_pass(&cut(Machine::Pc));
}

#[test]
fn size_matrix_cut_on_q35() {
    must_pass(&cut(Machine::Q35));
}

#[test]
fn size_matrix_cut_on_microvm() {
    must_pass(&cut(Machine::Microvm));
}

#[test]
fn a_hundred_reboots_in_a_row_each_back_through_ferrite() {
    let assets = assets();
    for machine in [Machine::Pc, Machine::Q35] {
        let v = soak::reboots(machine, 100, &assets).expect("running QEMU");
        if let Some((why, cmd, serial)) = v.failure {
            panic!("{machine:?}: {why}\n{cmd}\n{serial}");
        }
    }
}

/// microvm without ACPI: the MP table is how Linux finds the other CPUs and the
/// I/O APIC (qboot builds one too); /init checks that both CPUs came up.
#[test]
fn microvm_without_acpi_brings_up_every_cpu() {
    must_pass(&[Case {
        cpus: 2,
        acpi: false,
        kernel: soak::Kernel::Stock,
        ..Case::new(Machine::Microvm)
    }]);
}
