//! `cargo xtask analyze`'s plumbing: a boot whose serial port and marker ports
//! are read through FIFOs while it is timed, every line and marker stamped on
//! arrival, and the firmware's activities derived from them.

use ferrite_contract::{fw_cfg, marker, timeline};
use ferrite_tests::{judge, kernel, qemu};
use xtask::analyze::{self, Kind};
use xtask::qemu::{Channel, Machine};
use xtask::symbols::Symbols;
use xtask::testkernel::{BzImageSpec, PASS_64, with_check};

#[test]
fn markers_timeline_and_serial_arrive_in_order() {
    let k = kernel("default.bzImage", &BzImageSpec::default());
    let mut q = qemu(Machine::Q35, &k);
    q.append = Some(with_check("console=ttyS0"));
    q.fw_cfg_string(fw_cfg::TIMELINE, "1");
    let (out, arrivals) = q
        .run_with_arrivals(&[timeline::PORT, marker::KERNEL_PORT, marker::START_PORT])
        .unwrap();
    judge(&out, PASS_64).unwrap();
    let at = |channel: Channel, text: &str| {
        arrivals
            .iter()
            .find(|a| a.channel == channel && a.text.starts_with(text))
            .unwrap_or_else(|| panic!("no {text:?} on {channel:?} in {arrivals:#?}"))
            .host_ms
    };
    let start = at(
        Channel::Debugcon(marker::START_PORT),
        &marker::START.to_string(),
    );
    let report = at(
        Channel::Debugcon(timeline::PORT),
        &format!("{} {}=0 ", timeline::PREFIX, timeline::RESET),
    );
    let entry = at(
        Channel::Debugcon(marker::KERNEL_PORT),
        &marker::KERNEL_BZIMAGE.to_string(),
    );
    let pass = at(Channel::Serial, "testkernel: PASS");
    assert!(
        0.0 < start && start <= report && report <= entry && entry <= pass,
        "out of order: {start} {report} {entry} {pass}"
    );
    assert!(pass <= out.wall.as_secs_f64() * 1000.0);
    assert!(out.serial.contains("testkernel: PASS"), "{}", out.serial);

    let events = analyze::events(
        &arrivals,
        out.wall.as_secs_f64() * 1000.0,
        None,
        None,
        &Symbols::default(),
    );
    let steps: Vec<f64> = events
        .iter()
        .filter(|e| e.kind == Kind::FirmwareStep)
        .map(|e| e.host_ms)
        .collect();
    assert_eq!(steps.len(), timeline::STEPS.len(), "{events:#?}");
    assert_eq!((steps[0], steps[10]), (start, entry));
    let acts = analyze::activities(&events);
    let firmware = acts.iter().find(|a| a.name == "firmware").unwrap();
    let sum: f64 = acts
        .iter()
        .filter(|a| a.name.starts_with(analyze::FIRMWARE_STEP_PREFIX))
        .map(|a| a.ms())
        .sum();
    assert!(firmware.ms() > 0.0 && (sum - firmware.ms()).abs() < 1e-6);
}
