//! `cargo xtask bench --kernel small-vmlinux --end-to-end --both-entries`,
//! cut down (ferrite on microvm, a run or two a cell): the cells to
//! `kernel_init` boot the small kernel in the bench kernel's form (its
//! vmlinux here) and in the other (its bzImage), every boot reaches the
//! marker, and the report has the both-entries table.

use xtask::bench::{self, Firmware, Options};
use xtask::qemu::Machine;
use xtask::small_kernel;

#[test]
fn end_to_end_times_both_forms_of_the_small_kernel() {
    let bzimage = small_kernel::build().expect("building the small kernel (cargo xtask kernel)");
    let vmlinux = small_kernel::vmlinux_path();
    let rom = xtask::rom::build_firmware(true).unwrap();
    let dir = xtask::run_dir("bench-test").unwrap();
    let (json, markdown) = (dir.path().join("b.json"), dir.path().join("b.md"));
    let opts = Options {
        runs: 1,
        in_process_runs: 2,
        machines: vec![Machine::Microvm],
        firmwares: vec![Firmware::Ferrite],
        kernel: Some(vmlinux.clone()),
        json: Some(json.clone()),
        markdown: Some(markdown.clone()),
        count_instructions: false,
        small_kernel: Some(vmlinux),
        other_small_kernel: Some(bzimage),
        ..Options::default()
    };
    bench::run(&opts, &rom).unwrap();

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let cells = report["cells"].as_array().unwrap();
    let cell = |phase: &str| {
        cells
            .iter()
            .find(|c| c["phase"] == phase)
            .unwrap_or_else(|| panic!("no {phase} cell"))
    };
    for (phase, kernel) in [
        ("KernelInit", "vmlinux-small"),
        ("KernelInitFromCont", "vmlinux-small"),
        ("KernelInitOtherFromCont", "bzImage-small"),
        ("User", "vmlinux-small"),
    ] {
        let c = cell(phase);
        let line = c["command_line"].as_str().unwrap();
        assert!(
            line.contains(&format!("-kernel target/ferrite-cache/{kernel} ")),
            "{phase}: {line}"
        );
        assert_eq!(c["failures"].as_array().unwrap().len(), 0, "{phase}: {c}");
        assert!(!c["samples"].as_array().unwrap().is_empty(), "{phase}");
    }
    // the probe saw the PVH entry; the table puts the vmlinux's column
    // second whichever form the bench boots
    assert_eq!(cell("Entry")["entry"], "PVH");
    let md = std::fs::read_to_string(&markdown).unwrap();
    let row = md
        .lines()
        .skip_while(|l| !l.starts_with("Both entries"))
        .find(|l| l.starts_with("| microvm | ferrite |"))
        .unwrap_or_else(|| panic!("no both-entries row:\n{md}"));
    let fields: Vec<&str> = row.split(" | ").collect();
    assert_eq!(fields[2], "–", "{row}");
    assert!(
        fields[3].contains("n=2") && fields[4].contains("n=2"),
        "{row}"
    );
}
