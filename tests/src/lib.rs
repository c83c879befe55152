//! Shared helpers of the QEMU integration tests: the ROM and test kernels built
//! once per test binary, random initrds, command lines with their check token,
//! real Linux boots with a checking initramfs, and one way to judge a QEMU run.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use xtask::bench::tsc_khz;
use xtask::linux_assets::{self, InitramfsSpec};
use xtask::qemu::{Machine, Outcome, Qemu};
use xtask::testkernel::{self, BzImageSpec, MultibootSpec, PvhSpec};

/// ferrite's release build (ROM and ELF), built once.
pub fn firmware() -> &'static xtask::rom::Rom {
    static ROM: OnceLock<xtask::rom::Rom> = OnceLock::new();
    ROM.get_or_init(|| xtask::rom::build_firmware(true).expect("building the ROM"))
}

/// ferrite's release ROM.
pub fn rom() -> PathBuf {
    firmware().path.clone()
}

/// A scratch directory for this test binary.
pub fn scratch() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = xtask::root().join(format!("target/ferrite-tests/{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
    .clone()
}

/// The test kernel's protected-mode image, built once.
fn image() -> &'static [u8] {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(|| testkernel::build_image().expect("building the test kernel"))
}

/// The test kernel as a bzImage with `spec`'s header, written as `name`.
pub fn kernel(name: &str, spec: &BzImageSpec) -> PathBuf {
    write_atomically(&scratch().join(name), &testkernel::wrap(image(), spec))
}

/// The test kernel as a multiboot kernel, written as `name`.
pub fn multiboot_kernel(name: &str, spec: &MultibootSpec) -> PathBuf {
    write_atomically(
        &scratch().join(name),
        &testkernel::wrap_multiboot(image(), spec),
    )
}

/// The test kernel as an ELF with a PVH note (a `vmlinux`), written as `name`.
pub fn pvh_kernel(name: &str, spec: &PvhSpec) -> PathBuf {
    let elf = testkernel::wrap_pvh(image(), spec).expect("wrapping the PVH test kernel");
    write_atomically(&scratch().join(name), &elf)
}

/// Tests run in parallel and share file names: write aside, then rename, so a
/// QEMU reading the file never sees it half written.
fn write_atomically(path: &Path, data: &[u8]) -> PathBuf {
    let tmp = path
        .with_extension(format!("tmp-{:?}", std::thread::current().id()).replace(['(', ')'], ""));
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, path).unwrap();
    path.to_path_buf()
}

/// A file of `len` pseudo-random bytes; returns its path and FNV hash.
pub fn random_file(name: &str, len: usize, seed: u64) -> (PathBuf, u64) {
    let mut x = seed | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    (
        write_atomically(&scratch().join(name), &data),
        testkernel::fnv(&data),
    )
}

/// A QEMU run of the test kernel, reporting on its port.
pub fn qemu(machine: Machine, kernel: &Path) -> Qemu {
    let mut q = Qemu::new(machine, rom());
    q.kernel = Some(kernel.to_path_buf());
    q.exit_ports = vec![testkernel::REPORT_PORT];
    q.timeout = Duration::from_secs(60);
    q
}

/// A real Linux kernel booted under TCG with the checking initramfs: its /init
/// checks the command line's `token`, the initrd's `payload_len` bytes, MemTotal
/// and the CPUs online, writes the userspace marker and powers off.
pub struct Linux {
    pub kernel: PathBuf,
    /// The command-line word /init looks for (also names the initramfs files).
    pub token: &'static str,
    pub payload_len: usize,
}

impl Linux {
    /// The QEMU run of this kernel on `machine` (console on COM1, the host's
    /// TSC frequency on microvm), with no exit device: callers add theirs.
    pub fn qemu(&self, machine: Machine, memory_mib: u64, cpus: u32) -> Qemu {
        let spec = InitramfsSpec {
            expect_cpus: cpus,
            expect_mem_mib: memory_mib,
            cmdline_token: self.token.into(),
            payload_len: self.payload_len,
            poweroff: true,
            kernel_reserves_mib: 0,
        };
        let tag = self.token.rsplit('=').next().unwrap_or(self.token);
        let name = format!(
            "initramfs-{tag}-{}-{memory_mib}-{cpus}.cpio",
            machine.name()
        );
        let initrd = linux_assets::build_initramfs(&spec, &scratch().join(name)).unwrap();
        let mut q = Qemu::new(machine, rom());
        q.memory_mib = memory_mib;
        q.cpus = cpus;
        q.kernel = Some(self.kernel.clone());
        q.initrd = Some(initrd.path);
        let mut append = format!("console=ttyS0 panic=-1 {}", self.token);
        if machine == Machine::Microvm {
            append += &format!(" tsc_early_khz={}", tsc_khz().expect("host TSC frequency"));
        }
        q.append = Some(append);
        q
    }
}

/// Runs `q` (without an exit device) and checks that /init passed and the
/// kernel powered the machine off. Exit 0 alone is never enough (a triple fault
/// gives it too): the kernel must have said it powered down, after /init passed.
pub fn expect_power_off(q: &Qemu, what: &str) -> Outcome {
    let out = q.run().expect("running QEMU");
    let ok = !out.timed_out
        && out.exit_code == Some(0)
        && out.serial.contains("ferrite-init: PASS")
        && out.serial.contains("reboot: Power down");
    assert!(
        ok,
        "{what}: no clean power-off after /init passed: exit {:?}, timed out {}\ncommand: {}\nserial:\n{}",
        out.exit_code,
        out.timed_out,
        q.command_line(),
        out.serial
    );
    out
}

/// Runs `q` and checks it exited with `want` (an odd QEMU exit status written by
/// a guest through isa-debug-exit). Exit 0 (a triple fault under -no-reboot),
/// timeouts and any other status fail, with everything needed to reproduce.
pub fn expect_exit(q: &Qemu, want: i32) -> Outcome {
    let out = q.run().expect("running QEMU");
    if let Err(why) = judge(&out, want) {
        panic!(
            "{why}\ncommand: {}\nserial:\n{}\nstderr:\n{}",
            q.command_line(),
            out.serial,
            out.stderr
        );
    }
    out
}

/// Why a run is not the expected success, if it is not.
pub fn judge(out: &Outcome, want: i32) -> Result<(), String> {
    assert!(
        want % 2 == 1 && want > 1,
        "a debug-exit status is odd and > 1"
    );
    if out.timed_out {
        return Err("QEMU timed out (a hang)".into());
    }
    match out.exit_code {
        Some(c) if c == want => Ok(()),
        Some(0) => Err("QEMU exited with 0: a triple fault or a reset, never a pass".into()),
        other => Err(format!("QEMU exit {other:?}, expected {want}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(code: Option<i32>, timed_out: bool) -> Outcome {
        Outcome {
            exit_code: code,
            timed_out,
            ..Outcome::default()
        }
    }

    #[test]
    fn judging_never_passes_zero_timeouts_or_other_codes() {
        assert!(judge(&out(Some(33), false), 33).is_ok());
        assert!(judge(&out(Some(0), false), 33).is_err());
        assert!(judge(&out(Some(35), false), 33).is_err());
        assert!(judge(&out(Some(33), true), 33).is_err());
        assert!(judge(&out(None, false), 33).is_err());
    }
}
