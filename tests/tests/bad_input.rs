//! Bad input never hangs or boots wrong: one `ferrite: error:` line on COM1 and a
//! distinct status on port 0xf4 (QEMU exit = 2 * status + 1).

use ferrite_contract::{fw_cfg, qemu_exit, status};
use ferrite_tests::{
    expect_exit, kernel, multiboot_kernel, pvh_kernel, qemu, random_file, rom, scratch,
};
use xtask::qemu::{Machine, Qemu};
use xtask::testkernel::{BzImageSpec, MULTIBOOT_FLAGS, MultibootSpec, PVH_ENTRY, PvhSpec};

/// Boots, expects status `want` and one error line that says `message`, and
/// returns that line.
fn expect_error(q: &mut Qemu, want: u8, message: &str) -> String {
    q.exit_ports = vec![status::PORT];
    let out = expect_exit(q, qemu_exit(want));
    let lines: Vec<&str> = out
        .serial
        .lines()
        .filter(|l| l.starts_with("ferrite: error:"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line:\n{}", out.serial);
    assert!(
        lines[0].contains(message),
        "{:?} does not say {message:?}",
        lines[0]
    );
    lines[0].to_string()
}

#[test]
fn no_kernel() {
    for machine in Machine::ALL {
        let mut q = Qemu::new(machine, rom());
        expect_error(&mut q, status::NO_KERNEL, "start QEMU with -kernel");
    }
}

#[test]
fn not_a_bzimage() {
    // Random bytes: QEMU itself loads anything as a (very old) zImage.
    let (junk, _) = random_file("junk.img", 100_000, 5);
    let mut q = qemu(Machine::Q35, &junk);
    expect_error(&mut q, status::NOT_BZIMAGE, "not a Linux bzImage");
    // A header whose magic is wrong.
    let k = kernel(
        "bad-magic.bzImage",
        &BzImageSpec {
            magic: *b"HdrX",
            ..BzImageSpec::default()
        },
    );
    expect_error(
        &mut qemu(Machine::Pc, &k),
        status::NOT_BZIMAGE,
        "not a Linux bzImage",
    );
}

#[test]
fn protocol_too_old() {
    let k = kernel(
        "old.bzImage",
        &BzImageSpec {
            version: 0x0204,
            ..BzImageSpec::default()
        },
    );
    expect_error(
        &mut qemu(Machine::Q35, &k),
        status::BAD_HEADER,
        "boot protocol 2.04",
    );
}

#[test]
fn kernel_does_not_fit() {
    let spec = BzImageSpec {
        init_size: 512 << 20,
        ..BzImageSpec::default()
    };
    let k = kernel("huge-init-size.bzImage", &spec);
    let mut q = qemu(Machine::Pc, &k);
    q.memory_mib = 128;
    expect_error(
        &mut q,
        status::KERNEL_DOES_NOT_FIT,
        "the kernel needs 512 MiB",
    );
}

#[test]
fn initrd_does_not_fit() {
    // 112 MiB: QEMU accepts it (it fits below 128 MiB less QEMU's ACPI allowance),
    // but not between the kernel's 2 MiB at 16 MiB and the ACPI tables.
    let k = kernel("default.bzImage", &BzImageSpec::default());
    let path = scratch().join("initrd-100m");
    std::fs::write(&path, vec![0u8; 112 << 20]).unwrap();
    let mut q = qemu(Machine::Q35, &k);
    q.memory_mib = 128;
    q.initrd = Some(path);
    expect_error(
        &mut q,
        status::INITRD_DOES_NOT_FIT,
        "does not fit in free RAM",
    );
}

#[test]
fn command_line_too_long() {
    let k = kernel(
        "short-cmdline.bzImage",
        &BzImageSpec {
            cmdline_size: 255,
            ..BzImageSpec::default()
        },
    );
    let mut q = qemu(Machine::Microvm, &k);
    q.append = Some("x".repeat(300));
    expect_error(&mut q, status::CMDLINE_TOO_LONG, "accepts at most 255");
}

#[test]
fn pvh_entry_above_4g() {
    // QEMU keeps the low 32 bits of the note's entry (it would jump into the
    // kernel at the wrong place); ferrite reads the note itself.
    let spec = PvhSpec {
        entry: PVH_ENTRY | 1 << 32,
        ..PvhSpec::default()
    };
    let k = pvh_kernel("entry-above-4g.vmlinux", &spec);
    for machine in [Machine::Q35, Machine::Microvm] {
        expect_error(
            &mut qemu(machine, &k),
            status::PVH_ENTRY_OUTSIDE,
            "PVH entry 0x101000400 is above 4 GiB",
        );
    }
}

#[test]
fn pvh_segments_over_ferrite() {
    // QEMU loads the segment at 128 KiB, where ferrite's own code runs.
    let spec = PvhSpec {
        load_address: 0x2_0000,
        entry: 0x2_0400,
        ..PvhSpec::default()
    };
    let k = pvh_kernel("low-segment.vmlinux", &spec);
    expect_error(
        &mut qemu(Machine::Pc, &k),
        status::SEGMENTS_OVERLAP_FIRMWARE,
        "overlap ferrite's memory below 1 MiB",
    );
}

#[test]
fn multiboot_video_mode() {
    // QEMU only warns ("multiboot knows VBE. we don't.") and boots on.
    let spec = MultibootSpec {
        flags: MULTIBOOT_FLAGS | 1 << 2,
        ..MultibootSpec::default()
    };
    let k = multiboot_kernel("video.multiboot", &spec);
    expect_error(
        &mut qemu(Machine::Q35, &k),
        status::BAD_MULTIBOOT,
        "asks for a video mode",
    );
}

#[test]
fn multiboot_entry_outside_the_image() {
    // QEMU checks the a.out load addresses but not the entry.
    let spec = MultibootSpec {
        entry: 0x4000_0000,
        ..MultibootSpec::default()
    };
    let k = multiboot_kernel("far-entry.multiboot", &spec);
    expect_error(
        &mut qemu(Machine::Microvm, &k),
        status::BAD_MULTIBOOT,
        "entry point lies outside the image",
    );
}

/// Live fault injection: a fw_cfg file longer than ferrite reads used to be cut
/// to its buffer (`phys::read_file`); now it is an error with the file's name.
#[test]
fn oversized_fw_cfg_file_is_an_error_not_cut_short() {
    let k = kernel("default.bzImage", &BzImageSpec::default());
    let mut q = qemu(Machine::Q35, &k);
    q.fw_cfg_string(fw_cfg::LOG_LEVEL, "debug-and-then-some");
    expect_error(
        &mut q,
        status::FW_CFG,
        &format!(
            "fw_cfg file \"{}\" is 19 bytes, more than the 16 ferrite reads",
            fw_cfg::LOG_LEVEL
        ),
    );
}

#[test]
fn a_directory_larger_than_the_heap_is_one_error_line() {
    // 4,200 fw_cfg files (64 bytes each in the directory) need more than the
    // 256 KiB heap: the heap's status, never a hang or a panic.
    const FILES: usize = 4200;
    let k = kernel("default.bzImage", &BzImageSpec::default());
    let mut q = qemu(Machine::Pc, &k);
    q.extra = vec!["-global".into(), "fw_cfg_io.x-file-slots=8192".into()];
    for i in 0..FILES {
        q.fw_cfg_string(&format!("opt/a/{i}"), &i.to_string());
    }
    let line = expect_error(
        &mut q,
        status::OUT_OF_HEAP,
        "more than ferrite's 256 KiB heap holds",
    );
    // The size named is the directory's entries, 64 bytes a file: these and
    // QEMU's own, whose number depends on QEMU's version (13 here under 7.2,
    // 14 under 10.0).
    let bytes: usize = line
        .split("the fw_cfg file directory needs ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line:?} does not name the directory's size"));
    let files = bytes / 64;
    assert_eq!(64 * files, bytes, "{line:?}: not a directory's size");
    assert!(
        (FILES..FILES + 64).contains(&files),
        "{line:?}: {files} files, for {FILES} given and QEMU's own"
    );
}
