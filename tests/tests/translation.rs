//! `cargo xtask translation` end to end: ferrite built with line tables, one
//! boot with QEMU's translation log, split into the timeline's steps and named
//! by source line.

use ferrite_contract::timeline;
use xtask::bench::cost;
use xtask::qemu::Machine;
use xtask::translation::{Options, run};

#[test]
fn names_the_source_line_of_every_step_s_code() {
    let report = run(&Options {
        machine: Machine::Pc,
        top: 5,
        step: Some(timeline::ACPI.into()),
        json: None,
        runs: true,
        kernel: None,
    })
    .unwrap();

    let names: Vec<&str> = report.steps.iter().map(|c| c.name.as_str()).collect();
    let mut expected = timeline::STEPS[1..].to_vec();
    expected.push("handoff");
    assert_eq!(names, expected);
    assert!(
        report.steps.iter().all(|c| c.code.blocks > 0),
        "{report:#?}"
    );

    // the lines share out exactly the steps' code
    let sum = |costs: &[xtask::translation::Cost]| -> (u64, u64) {
        (
            costs.iter().map(|c| c.code.blocks).sum(),
            costs.iter().map(|c| c.code.instructions).sum(),
        )
    };
    assert_eq!(sum(&report.lines), sum(&report.steps));

    // nearly all of it is named by a line of ferrite's source, with no
    // directory of this machine in the name; assembly by its symbol; the
    // reset vector's first jump, at an address no symbol covers, by "?"
    let total: f64 = report.steps.iter().map(|c| c.model_us).sum();
    let share = |f: &dyn Fn(&str) -> bool| -> f64 {
        let named: f64 = report
            .lines
            .iter()
            .filter(|c| f(&c.name))
            .map(|c| c.model_us)
            .sum();
        named / total
    };
    assert!(share(&|n| n.starts_with("firmware/src/")) > 0.9);
    assert!(share(&|n| n == "?") < 0.01);
    assert!(
        report
            .lines
            .iter()
            .all(|c| c.name.starts_with("firmware/src/")
                || c.name.starts_with("symbol ")
                || c.name == "?"),
        "{:#?}",
        report.lines
    );
    // the second copies are some of those instructions, each named once
    let instructions: u64 = report.steps.iter().map(|c| c.code.instructions).sum();
    let by_line: u64 = report.second_copies_by_line.iter().map(|(_, n)| n).sum();
    assert_eq!(by_line, report.second_copies);
    assert!(report.second_copies < instructions / 5, "{report:#?}");

    assert!(
        report.lines_by_step[timeline::ACPI]
            .iter()
            .any(|c| c.name.starts_with("firmware/src/acpi"))
    );

    // every block's end is of one kind; some conditional ends have a side
    // this boot never ran (an error check at least); the fw_cfg look-up is
    // called from several places; the code lies on a few pages
    let e = &report.block_ends;
    let (blocks, _) = sum(&report.steps);
    assert_eq!(e.blocks, blocks);
    assert_eq!(
        e.conditional + e.jump + e.call + e.ret + e.string + e.other,
        e.blocks,
        "{e:#?}"
    );
    assert!(0 < e.one_sided && e.one_sided < e.conditional, "{e:#?}");
    let one_sided: u64 = e.one_sided_by_line.iter().map(|(_, n)| n).sum();
    assert_eq!(one_sided, e.one_sided);
    assert!(
        e.call_sites_by_callee
            .iter()
            .any(|(f, n)| f.ends_with("find_padded") && *n > 1),
        "{e:#?}"
    );
    assert!((2..=32).contains(&e.code_pages), "{e:#?}");

    // the blocks' runs (of the release build, named by its symbols): more
    // than the blocks (the loops run theirs again); the hottest is a loop
    // of ferrite's; every return is looked up, so there are look-ups,
    // fewer than the runs
    let r = report.runs.as_ref().expect("--runs counts the runs");
    assert!(r.runs > 2 * blocks, "{r:#?}");
    assert!(r.hottest[0].runs > 100, "{r:#?}");
    assert!(r.hottest[0].name.starts_with("symbol ferrite::"), "{r:#?}");
    assert!(0 < r.lookups && r.lookups < r.runs, "{r:#?}");
    assert!(
        r.lookups_by_exit
            .iter()
            .any(|h| h.why == Some(xtask::block_runs::Unlinked::Return)),
        "{r:#?}"
    );

    // the code is the release build's: its translated instructions match
    // within 1 % on the same boot
    let release_work = xtask::root()
        .join("target")
        .join("translation")
        .join("release");
    let rom = xtask::rom::build_firmware(true).unwrap().path;
    let q = xtask::probe::stock_size_boot(&release_work, Machine::Pc, rom).unwrap();
    let release = cost::translated_code(&q, &release_work).unwrap();
    let (_, lines_build) = sum(&report.steps);
    let diff = lines_build.abs_diff(release.instructions) as f64;
    assert!(
        diff <= 0.01 * release.instructions as f64,
        "line-table build {lines_build}, release {}",
        release.instructions
    );
}

/// `--kernel` with an ELF vmlinux: the probe is shaped like it, so the boot
/// takes the PVH path, and the kernel step's code is the ELF note parser's
/// (`pvh.rs`), which the bzImage boot above never runs.
#[test]
fn follows_the_pvh_path_with_a_vmlinux() {
    xtask::small_kernel::build().expect("building the small kernel (cargo xtask kernel)");
    let report = run(&Options {
        machine: Machine::Microvm,
        top: 5,
        step: None,
        json: None,
        runs: false,
        kernel: Some(xtask::small_kernel::vmlinux_path()),
    })
    .unwrap();
    let pvh: u64 = report.lines_by_step[timeline::KERNEL_HEADER]
        .iter()
        .filter(|c| c.name.starts_with("firmware/src/pvh.rs"))
        .map(|c| c.code.blocks)
        .sum();
    assert!(
        pvh > 10,
        "{:#?}",
        report.lines_by_step[timeline::KERNEL_HEADER]
    );
}
