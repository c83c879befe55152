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

use ferrite_tests::{Linux, expect_power_off};
use xtask::qemu::Machine;
use xtask::small_kernel;

fn vmlinux() -> PathBuf {
    static K: OnceLock<PathBuf> = OnceLock::new();
    K.get_or_init(|| {
        small_kernel::build().expect("building the small kernel (cargo xtask kernel)");
        small_kernel::vmlinux_path()
    })
    .clone()
}

fn reaches_init(machine: Machine, memory_mib: u64, cpus: u32) {
    let linux = Linux {
        kernel: vmlinux(),
        token: "ferrite.test=pvh",
        payload_len: 1 << 20,
    };
    let mut q = linux.qemu(machine, memory_mib, cpus);
    q.timeout = Duration::from_secs(120);
    expect_power_off(&q, &format!("the PVH vmlinux on {}", machine.name()));
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
