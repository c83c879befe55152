//! The strict comparison with SeaBIOS: everything `tests/tests/parity.rs`
//! compares plus the ACPI and PCI kernel messages, every firmware-related
//! message, the input devices and the CPU counts, booted with `nokaslr`; the
//! only accepted differences are the firmware's identity
//! (`xtask::parity::FIRMWARE_IDENTITY`: DMI BIOS vendor, version, date).
//! 8 boots per firmware, about two minutes under TCG.

use ferrite_tests::{rom, scratch};
use xtask::parity::{self, Config, Mode};
use xtask::qemu::Machine;

fn strictly_same_as_seabios(machine: Machine) {
    let mut failures = Vec::new();
    for (memory_mib, cpus) in [(512, 1), (512, 4), (5120, 1), (5120, 4)] {
        let cfg = Config {
            machine,
            memory_mib,
            cpus,
        };
        let c = parity::run_with(&rom(), cfg, &scratch().join("strict"), Mode::Strict).unwrap();
        println!("{}", c.report);
        if c.unexplained > 0 {
            failures.push(c.report);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// Ignored while the firmware parity work is in progress: the differences it
// still finds are listed by `cargo xtask compare --strict`. Un-ignore once
// that reports none.
#[test]
#[ignore = "firmware parity with SeaBIOS in progress (cargo xtask compare --strict)"]
fn pc_strictly_matches_seabios() {
    strictly_same_as_seabios(Machine::Pc);
}

#[test]
#[ignore = "firmware parity with SeaBIOS in progress (cargo xtask compare --strict)"]
fn q35_strictly_matches_seabios() {
    strictly_same_as_seabios(Machine::Q35);
}
