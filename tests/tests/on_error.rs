//! What a failed boot does without a debug-exit device (every real
//! deployment): `opt/ferrite/on-error` = poweroff (the default), reboot or
//! halt. Each boot has no kernel, so ferrite prints its error line and then
//! follows the policy.

use std::time::Duration;

use ferrite_tests::rom;
use xtask::qemu::{Machine, Outcome, Qemu};

/// A generous hang detector for "QEMU exits by itself" under a loaded TCG host,
/// not a timing target.
const EXITS_WITHIN: Duration = Duration::from_secs(30);

fn no_kernel(machine: Machine, policy: Option<&str>) -> Qemu {
    let mut q = Qemu::new(machine, rom());
    if let Some(p) = policy {
        q.fw_cfg_string(ferrite_contract::fw_cfg::ON_ERROR, p);
    }
    assert!(q.exit_ports.is_empty());
    q
}

/// ferrite's serial lines (it ends each with "\n\r").
fn lines(out: &Outcome) -> impl Iterator<Item = &str> {
    out.serial.lines().map(|l| l.trim_matches('\r'))
}

fn error_lines(out: &Outcome) -> usize {
    lines(out)
        .filter(|l| l.starts_with("ferrite: error:") && l.contains("start QEMU with -kernel"))
        .count()
}

/// QEMU ended on its own with status 0 (a guest power-off, or a reset under
/// -no-reboot) after exactly one error line.
fn expect_exit_by_itself(q: &Qemu, what: &str) {
    let out = q.run().expect("running QEMU");
    let context = format!(
        "{what}\ncommand: {}\nserial:\n{}\nstderr:\n{}",
        q.command_line(),
        out.serial,
        out.stderr
    );
    assert!(!out.timed_out, "QEMU did not exit by itself: {context}");
    assert_eq!(out.exit_code, Some(0), "{context}");
    assert_eq!(error_lines(&out), 1, "{context}");
}

#[test]
fn poweroff_ends_qemu() {
    for (machine, policy, acpi) in [
        (Machine::Pc, Some("poweroff"), true),
        (Machine::Q35, None, true), // the default
        (Machine::Microvm, Some("poweroff"), true),
        // the ICH9's PM block is there without ACPI tables too
        (Machine::Q35, Some("poweroff"), false),
    ] {
        let mut q = no_kernel(machine, policy);
        q.acpi = acpi;
        // A reset would restart the machine here: only a power-off ends QEMU.
        q.allow_reboot = true;
        q.timeout = EXITS_WITHIN;
        expect_exit_by_itself(&q, &format!("{machine:?} {policy:?} acpi {acpi}"));
    }
}

#[test]
fn reboot_resets_and_ends_qemu_under_no_reboot() {
    // 0xCF9 on pc and q35 (ACPI or not), the GED on microvm, and a triple
    // fault on microvm without ACPI (no GED).
    for (machine, acpi) in [
        (Machine::Pc, true),
        (Machine::Q35, true),
        (Machine::Microvm, true),
        (Machine::Pc, false),
        (Machine::Microvm, false),
    ] {
        let mut q = no_kernel(machine, Some("reboot"));
        q.acpi = acpi;
        q.timeout = EXITS_WITHIN;
        expect_exit_by_itself(&q, &format!("{machine:?} acpi {acpi}"));
    }
    // Without -no-reboot the machine really restarts: ferrite runs again.
    let mut q = no_kernel(Machine::Q35, Some("reboot"));
    q.allow_reboot = true;
    q.timeout = Duration::from_secs(8);
    let out = q.run().expect("running QEMU");
    assert!(out.timed_out, "{}", out.serial);
    assert!(error_lines(&out) >= 2, "no second boot:\n{}", out.serial);
}

#[test]
fn halt_keeps_the_machine_until_killed() {
    // halt everywhere, and poweroff where the machine has no power-off device
    // (pc and microvm with acpi=off); run side by side, each until killed.
    let cases = [
        (Machine::Pc, "halt", true),
        (Machine::Q35, "halt", true),
        (Machine::Microvm, "halt", true),
        (Machine::Pc, "poweroff", false),
        (Machine::Microvm, "poweroff", false),
    ];
    std::thread::scope(|s| {
        let runs: Vec<_> = cases
            .iter()
            .map(|&(machine, policy, acpi)| {
                let mut q = no_kernel(machine, Some(policy));
                q.acpi = acpi;
                q.allow_reboot = true;
                q.timeout = Duration::from_secs(6);
                (
                    machine,
                    policy,
                    s.spawn(move || q.run().expect("running QEMU")),
                )
            })
            .collect();
        for (machine, policy, run) in runs {
            let out = run.join().unwrap();
            assert!(out.timed_out, "{machine:?} {policy} ended: {out:?}");
            assert_eq!(
                error_lines(&out),
                1,
                "{machine:?} {policy}:\n{}",
                out.serial
            );
        }
    });
}

#[test]
fn unknown_policy_warns_and_powers_off() {
    let mut q = no_kernel(Machine::Q35, Some("shutdown"));
    q.allow_reboot = true;
    q.timeout = EXITS_WITHIN;
    let out = q.run().expect("running QEMU");
    assert!(!out.timed_out && out.exit_code == Some(0), "{out:?}");
    let warnings: Vec<&str> = lines(&out)
        .filter(|l| l.starts_with("ferrite: warn:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.serial);
    assert!(
        warnings[0].contains(ferrite_contract::fw_cfg::ON_ERROR),
        "{}",
        warnings[0]
    );
    assert_eq!(error_lines(&out), 1, "{}", out.serial);
}
