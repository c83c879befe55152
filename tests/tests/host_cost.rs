//! `cargo xtask host-cost` end to end: ferrite and qboot under callgrind,
//! QEMU's vCPU thread found and its host instructions split by what QEMU did;
//! the calibration of translation by kind of guest code, and each firmware's
//! translated code weighed with it.

use xtask::bench::Firmware;
use xtask::host_cost::kernel_init::{guest_clock, guest_clock_us};
use xtask::host_cost::{KINDS, Options, run};
use xtask::qemu::Machine;

#[test]
fn counts_the_vcpu_thread_of_each_firmware() {
    let report = run(&Options {
        machine: Machine::Microvm,
        firmwares: vec![Firmware::Ferrite],
        roms: vec![("qboot".into(), xtask::qemu::shipped_rom("qboot.rom"))],
        top: 10,
        json: None,
        calibrate: Some(30),
        steps: true,
        rebuilds: false,
        kernel: None,
        kernel_init: None,
        lines: false,
        phases: 1,
        append: String::new(),
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

    // ferrite's boot cut at its timeline's stamps: every step of the
    // contract's timeline after the reset vector, then the hand-off; the
    // stretches add up to the thread (another boot of the same ROM, within
    // what repeated runs differ by), each with its translation inside it.
    // The kernel's step holds fw_cfg's copy of its 8 MB on top of the code
    // it translates; microvm has no map rebuilds (no PCI, no PAM).
    let [steps] = &report.steps[..] else {
        panic!("one ferrite build: {:#?}", report.steps)
    };
    assert_eq!(steps.firmware, "ferrite");
    let names: Vec<&str> = steps.steps.iter().map(|(n, _)| n.as_str()).collect();
    let timeline = &ferrite_contract::timeline::STEPS;
    assert_eq!(names[..names.len() - 1], timeline[1..], "{names:?}");
    assert_eq!(names.last(), Some(&xtask::host_cost::HANDOFF));
    let whole = report.costs[0].vcpu;
    assert!(
        steps.total().abs_diff(whole) < whole / 1000,
        "{} {whole}",
        steps.total()
    );
    for (name, c) in &steps.steps {
        assert!(c.vcpu > 0 && c.translating <= c.vcpu, "{name}: {c:?}");
        assert_eq!(c.map_rebuilds, 0, "{name}: {c:?}");
    }
    assert!(steps.before.vcpu > 0);
    let kernel = steps.steps.iter().find(|(n, _)| n == "kernel").unwrap().1;
    assert!(kernel.vcpu > kernel.translating + 300_000, "{kernel:?}");

    // The calibration's weights account for most of what callgrind
    // measured of each firmware's translation (a model of kinds of code:
    // what it leaves out, it underestimates).
    let c = report.calibration.as_ref().unwrap();
    assert_eq!(report.breakdowns.len(), report.costs.len());
    for (cost, b) in report.costs.iter().zip(&report.breakdowns) {
        let measured = cost.of("tb_gen_code") as f64;
        let share = b.predicted_total(c) / measured;
        assert!(
            (0.7..1.1).contains(&share),
            "{}: {share}: {b:?} {c:?}",
            cost.firmware
        );
    }
}

/// The calibration ROMs run as written: each boots to its exit, QEMU's own
/// log shows the blocks and the instructions of the kind each was built for
/// (the encodings and `classify` agree), and under callgrind the costs come
/// out in the order TCG's work implies.
#[test]
fn calibrates_translation_by_kind_of_code() {
    use xtask::tcg_calibration::{PER_BLOCK, Unit, breakdown, calibrate, rom};

    let work = xtask::root().join("target").join("test-tcg-calibration");
    std::fs::create_dir_all(&work).unwrap();
    let blocks = 30;
    for unit in Unit::ALL {
        let path = work.join(format!("{unit:?}.rom"));
        std::fs::write(&path, rom(unit, blocks, PER_BLOCK).unwrap()).unwrap();
        let log = xtask::bench::cost::in_asm_log(&xtask::tcg_calibration::boot(&path), &work)
            .unwrap_or_else(|e| panic!("{unit:?}: {e:#}"));
        let b = breakdown(std::io::BufReader::new(std::fs::File::open(&log).unwrap())).unwrap();
        // The start-up code (16-bit, then the 64-bit prologue) adds a few.
        let n = b.of(unit) as usize;
        let want = if unit.is_block() {
            blocks
        } else {
            blocks * PER_BLOCK
        };
        assert!(
            (want..want + 16).contains(&n),
            "{unit:?}: {n} of {want}: {b:?}"
        );
    }

    let c = calibrate(&work.join("callgrind"), blocks, PER_BLOCK).unwrap();
    for unit in Unit::ALL {
        assert!(c.of(unit) > 0.0, "{unit:?}: {c:?}");
    }
    // A block costs more than any one instruction; a conditional one, with
    // its two exits, more than one ending in a jump. Touching memory costs
    // more than a register move, and a read-modify-write more than a load.
    assert!(c.of(Unit::CondBlock) > c.of(Unit::OtherBlock), "{c:?}");
    assert!(
        c.of(Unit::OtherBlock) > c.of(Unit::ReadModifyWrite),
        "{c:?}"
    );
    assert!(c.of(Unit::ReadModifyWrite) > c.of(Unit::Load), "{c:?}");
    assert!(c.of(Unit::Load) > c.of(Unit::Alu), "{c:?}");
    assert!(c.of(Unit::Alu) > c.of(Unit::Mov), "{c:?}");
}

/// `--rebuilds` on pc: the memory-map rebuilds of ferrite's boot, in order,
/// come in the PCI step (the PAM unlock, the power-management I/O, the
/// decodes) and the last in the CPU and MP table step (the PAM lock); they
/// are most of what the plain count charges to rebuilding (the rest is
/// rebuilds that changed nothing) and not more.
#[test]
fn lists_the_memory_map_rebuilds_of_a_boot() {
    let report = run(&Options {
        machine: Machine::Pc,
        firmwares: vec![Firmware::Ferrite],
        roms: Vec::new(),
        top: 0,
        json: None,
        calibrate: None,
        steps: false,
        rebuilds: true,
        kernel: None,
        kernel_init: None,
        lines: false,
        phases: 1,
        append: String::new(),
    })
    .unwrap();
    let [rebuilds] = &report.rebuilds[..] else {
        panic!("{:#?}", report.rebuilds)
    };
    assert!(rebuilds.len() >= 3, "{rebuilds:#?}");
    let (last, before) = rebuilds.split_last().unwrap();
    assert_eq!(last.step, "cpus_mptable", "{rebuilds:#?}");
    assert!(
        before.iter().all(|r| r.step == "pci_hardware"),
        "{rebuilds:#?}"
    );
    let sum: u64 = rebuilds.iter().map(|r| r.cost).sum();
    let charged = report.costs[0].of("memory_region_transaction_commit");
    // (Two boots, and counting toggled on inside the calls against an
    // inclusive figure: within 2 % above.)
    assert!(
        sum * 100 <= charged * 102 && sum * 10 >= charged * 8,
        "{sum} of {charged}"
    );
}

/// `--kernel` with an ELF vmlinux: every firmware boots a probe shaped like
/// it and must reach the probe's PVH entry (the run fails on any other
/// entry); the floor ROM, which boots only bzImages, is left out.
#[test]
fn follows_each_firmwares_pvh_path_with_a_vmlinux() {
    xtask::small_kernel::build().expect("building the small kernel (cargo xtask kernel)");
    let report = run(&Options {
        machine: Machine::Microvm,
        firmwares: vec![Firmware::Ferrite, Firmware::Qboot, Firmware::Floor],
        roms: vec![],
        top: 5,
        json: None,
        calibrate: None,
        steps: false,
        rebuilds: false,
        kernel: Some(xtask::small_kernel::vmlinux_path()),
        kernel_init: None,
        lines: false,
        phases: 1,
        append: String::new(),
    })
    .unwrap();
    let names: Vec<&str> = report.costs.iter().map(|c| c.firmware.as_str()).collect();
    assert_eq!(names, ["ferrite", "qboot"]);
    for c in &report.costs {
        assert!(2 * c.of("tb_gen_code") > c.vcpu, "{c:#?}");
    }
}

/// `--kernel-init`'s premise, without callgrind: under icount the small
/// kernel, bzImage and vmlinux, reaches `kernel_init` under ferrite, and
/// twice the same boot is the same boot to the nanosecond of the guest's
/// clock (its last message's time stamp), its TSC calibrated by the kernel.
#[test]
fn kernel_init_boots_repeat_under_icount() {
    let rom = xtask::rom::build_firmware(true)
        .expect("building ferrite")
        .path;
    let work = xtask::run_dir("host-cost-test").unwrap();
    let boots = xtask::host_cost::kernel_init::small_kernel_boots(
        Machine::Microvm,
        &[("ferrite".into(), rom)],
        work.path(),
    )
    .unwrap();
    assert_eq!(boots.len(), 2);
    for b in boots {
        // The tool's own reading, which also requires the kernel's TSC
        // calibration: twice the same stamp.
        let first = guest_clock_us(&b).unwrap();
        assert!(first > 0, "{:?}", b.kernel);
        // and every message with it, each at the same stamp (--lines)
        let (again, messages) = guest_clock(&b).unwrap();
        assert_eq!(again, first, "{:?}", b.kernel);
        let (_, again_messages) = guest_clock(&b).unwrap();
        assert!(messages.len() > 50, "{:?}: {messages:?}", b.kernel);
        assert_eq!(messages, again_messages, "{:?}", b.kernel);
        assert!(
            messages
                .iter()
                .any(|(text, _)| text.starts_with("tsc: Detected")),
            "{messages:?}"
        );
    }
}
