//! Guest instructions per step of ferrite's boot sequence.
//!
//! On this machine type KVM emulates every guest instruction, and each one
//! fires the `kvm:kvm_emulate_insn` tracepoint with its address
//! (`csbase:rip:bytes (mode)` in `perf script`). ferrite takes every timeline
//! stamp through one out-of-line function, [`STAMP_SYMBOL`]; its entry address,
//! read from the firmware's ELF, splits the trace into steps: the instructions
//! before its first call (reset vector to Rust), between two calls (one step
//! each, in the timeline's order) and after the last (zero page to the kernel's
//! first instruction).

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

use crate::qemu::{Accel, Qemu};

/// The firmware function that takes a timeline stamp (firmware/src/timeline.rs).
pub const STAMP_SYMBOL: &str = "ferrite_timeline_stamp";

/// Instruction counts of one boot, split at the stamp calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segments {
    /// `counts[0]`: before the first stamp call; `counts[i]`: between calls
    /// `i - 1` and `i`; the last: after the last call.
    pub counts: Vec<u64>,
}

impl Segments {
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The linear address of one `perf script -F trace` line of
/// `kvm:kvm_emulate_insn` (`csbase:rip:bytes (mode)`), or None for other lines.
fn linear_address(line: &str) -> Option<u64> {
    let mut fields = line.trim().splitn(3, ':');
    let base = u64::from_str_radix(fields.next()?, 16).ok()?;
    let rip = u64::from_str_radix(fields.next()?, 16).ok()?;
    fields.next()?; // the instruction bytes must follow
    Some(base.wrapping_add(rip) & 0xFFFF_FFFF_FFFF)
}

/// Splits a trace at every instruction at `stamp`. Lines that are not
/// instructions are an error: a count built on a misread trace is worse than none.
pub fn split_at_stamps(trace: impl BufRead, stamp: u64) -> Result<Segments> {
    let mut counts = vec![0u64];
    for (n, line) in trace.lines().enumerate() {
        let line = line.context("reading the trace")?;
        if line.trim().is_empty() {
            continue;
        }
        let Some(addr) = linear_address(&line) else {
            bail!(
                "trace line {}: not an emulated instruction: {line:?}",
                n + 1
            );
        };
        if addr == stamp {
            counts.push(0);
        }
        *counts.last_mut().unwrap() += 1;
    }
    Ok(Segments { counts })
}

/// Boots `q` under KVM with every emulated instruction recorded and splits the
/// trace at the stamp function's address (found in `elf`). `work` keeps the
/// recording. The caller checks that perf and /dev/kvm exist.
pub fn record(q: &Qemu, elf: &Path, work: &Path) -> Result<Segments> {
    let image = std::fs::read(elf).with_context(|| elf.display().to_string())?;
    let stamp = crate::rom::symbol_address(&image, STAMP_SYMBOL)?
        .with_context(|| format!("{} has no symbol {STAMP_SYMBOL}", elf.display()))?;
    let data = work.join("insn-trace.data");
    let mut q = q.clone();
    q.accel = Accel::Kvm;
    let data_arg = data.to_string_lossy();
    let status = perf_qemu(
        &q,
        &[
            "record",
            "-q",
            // 32 MiB of ring buffer: a boot is ~40k events, and with the default
            // 512 KiB a loaded host drops some (steps then merge).
            "-m",
            "8192",
            "-e",
            "kvm:kvm_emulate_insn",
            "-o",
            &data_arg,
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .status()
    .context("running perf record")?;
    // QEMU's exit status is the marker's; perf passes it on. `timeout` says 124.
    ensure!(
        status.code() != Some(124),
        "the traced boot did not reach its marker"
    );
    let script = Command::new("perf")
        .args(["script", "-F", "trace", "-i"])
        .arg(&data)
        .stderr(Stdio::null())
        .output()
        .context("running perf script")?;
    ensure!(script.status.success(), "perf script failed");
    split_at_stamps(&script.stdout[..], stamp)
}

/// `timeout 120 perf <perf_args> -- qemu-system-x86_64 <q's arguments>`: a
/// firmware that never reaches its marker would otherwise run forever under KVM.
pub fn perf_qemu(q: &Qemu, perf_args: &[&str]) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["120", "perf"])
        .args(perf_args)
        .args(["--", "qemu-system-x86_64"])
        .args(q.args());
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "\
ffff0000:fff0:e9 0d f0 (real)
ffff0000:f000:fa (real)
0:10000:55 (prot64)
0:12345:0f 31 (prot64)
0:10004:90 (prot64)
0:10005:90 (prot64)
0:12345:0f 31 (prot64)
0:10006:c3 (prot64)
";

    #[test]
    fn splits_at_each_stamp_call() {
        let s = split_at_stamps(TRACE.as_bytes(), 0x12345).unwrap();
        assert_eq!(s.counts, [3, 3, 2]);
        assert_eq!(s.total(), 8);
        // real-mode addresses are csbase + rip
        assert_eq!(linear_address("ffff0000:fff0:e9 (real)"), Some(0xFFFF_FFF0));
    }

    #[test]
    fn no_stamp_is_one_segment() {
        let s = split_at_stamps(TRACE.as_bytes(), 0x99999).unwrap();
        assert_eq!(s.counts, [8]);
        assert_eq!(split_at_stamps(&b""[..], 1).unwrap().counts, [0]);
    }

    #[test]
    fn malformed_trace_is_refused() {
        for bad in [
            "hello\n",
            "0:zz:90 (prot64)\n",
            "0:1000\n",
            "[ perf record: Woken up 1 times ]\n",
        ] {
            assert!(split_at_stamps(bad.as_bytes(), 0x1000).is_err(), "{bad:?}");
        }
    }
}
