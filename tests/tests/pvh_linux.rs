//! The small kernel's `vmlinux` (`cargo xtask kernel`, built once and cached)
//! booted through its PVH entry: on pc, q35 and microvm it reaches the
//! initramfs's /init, which checks the command line, the initrd contents,
//! MemTotal and the CPUs online, and powers off.
//!
//! The small kernel writes 2 to port 0xf6 itself in kernel_init (the bench's
//! marker), so /init's own 0xf6 write cannot tell /init ran: the test asks for
//! /init's PASS line and the kernel's power-off instead.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use ferrite_tests::{rom, scratch};
use xtask::bench::tsc_khz;
use xtask::linux_assets::{self, InitramfsSpec};
use xtask::qemu::{Machine, Qemu};
use xtask::small_kernel;

const TOKEN: &str = "ferrite.test=pvh";

fn vmlinux() -> PathBuf {
    static K: OnceLock<PathBuf> = OnceLock::new();
    K.get_or_init(|| {
        small_kernel::build().expect("building the small kernel (cargo xtask kernel)");
        small_kernel::vmlinux_path()
    })
    .clone()
}

fn reaches_init(machine: Machine, memory_mib: u64, cpus: u32) {
    let spec = InitramfsSpec {
        expect_cpus: cpus,
        expect_mem_mib: memory_mib,
        cmdline_token: TOKEN.into(),
        payload_len: 1 << 20,
        poweroff: true,
    };
    let name = format!("initramfs-pvh-{}-{memory_mib}-{cpus}.cpio", machine.name());
    let initrd = linux_assets::build_initramfs(&spec, &scratch().join(name)).unwrap();
    let mut q = Qemu::new(machine, rom());
    q.memory_mib = memory_mib;
    q.cpus = cpus;
    q.kernel = Some(vmlinux());
    q.initrd = Some(initrd.path);
    let mut append = format!("console=ttyS0 panic=-1 {TOKEN}");
    if machine == Machine::Microvm {
        append += &format!(" tsc_early_khz={}", tsc_khz().expect("host TSC frequency"));
    }
    q.append = Some(append);
    q.timeout = Duration::from_secs(120);
    let out = q.run().unwrap();
    let ok = !out.timed_out
        && out.exit_code == Some(0)
        && out.serial.contains("ferrite-init: PASS")
        && out.serial.contains("reboot: Power down");
    // Exit 0 alone is never enough (a triple fault gives it too): /init must
    // have passed and the kernel must have said it powered down.
    assert!(
        ok,
        "the PVH vmlinux did not reach /init on {}: exit {:?}, timed out {}\ncommand: {}\nserial:\n{}",
        machine.name(),
        out.exit_code,
        out.timed_out,
        q.command_line(),
        out.serial
    );
}

#[test]
fn small_vmlinux_on_pc() {
    reaches_init(Machine::Pc, 256, 2);
}

#[test]
fn small_vmlinux_on_q35() {
    reaches_init(Machine::Q35, 512, 2);
}

#[test]
fn small_vmlinux_on_microvm() {
    reaches_init(Machine::Microvm, 256, 1);
}
