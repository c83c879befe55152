//! Guest instructions per step of ferrite's boot sequence.
//!
//! On this machine type KVM emulates every guest instruction, and each one
//! fires the `kvm:kvm_emulate_insn` tracepoint with its address
//! (`csbase:rip:bytes (mode)` in `perf script`). ferrite takes every timeline
//! stamp inline and lists the stamps' addresses in its ELF
//! ([`crate::rom::stamp_addresses`]); they split the trace into steps: the
//! instructions before the first stamp (reset vector to Rust), between two
//! stamps (one step each, in the timeline's order) and after the last (zero
//! page to the kernel's first instruction).
//!
//! The same recording holds the exits to QEMU (`kvm:kvm_pio`, `kvm:kvm_mmio`,
//! `kvm:kvm_userspace_exit`), split the same way.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

use crate::bench::cost::Exits;
use crate::qemu::{Accel, Qemu};

/// Instruction counts of one boot, split at the stamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segments {
    /// `counts[0]`: before the first stamp; `counts[i]`: from stamp `i - 1`
    /// up to stamp `i`; the last: from the last stamp on.
    pub counts: Vec<u64>,
    /// Exits to QEMU in the same segments.
    pub exits: Vec<Exits>,
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

/// Splits a trace at every instruction at one of the `stamps`. Lines are `perf script -F
/// event,trace` output (`kvm:kvm_emulate_insn: ...`, `kvm:kvm_pio: ...`), or
/// bare `-F trace` instruction lines. Anything else is an error: a count built
/// on a misread trace is worse than none.
pub fn split_at_stamps(trace: impl BufRead, stamps: &[u64]) -> Result<Segments> {
    let mut counts = vec![0u64];
    let mut exits = vec![Exits::default()];
    for (n, line) in trace.lines().enumerate() {
        let line = line.context("reading the trace")?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let here = exits.last_mut().unwrap();
        match line.split_once(": ") {
            Some(("kvm:kvm_pio", _)) => here.pio += 1,
            Some(("kvm:kvm_mmio", _)) => here.mmio += 1,
            Some(("kvm:kvm_userspace_exit", _)) => here.userspace += 1,
            other => {
                let insn = match other {
                    Some(("kvm:kvm_emulate_insn", insn)) => insn,
                    _ => line,
                };
                let Some(addr) = linear_address(insn) else {
                    bail!(
                        "trace line {}: not an emulated instruction: {line:?}",
                        n + 1
                    );
                };
                if stamps.contains(&addr) {
                    counts.push(0);
                    exits.push(Exits::default());
                }
                *counts.last_mut().unwrap() += 1;
            }
        }
    }
    Ok(Segments { counts, exits })
}

/// Boots `q` under KVM with every emulated instruction recorded and splits the
/// trace at the stamps' addresses (listed in `elf`). `work` keeps the
/// recording. The caller checks that perf and /dev/kvm exist.
pub fn record(q: &Qemu, elf: &Path, work: &Path) -> Result<Segments> {
    let image = std::fs::read(elf).with_context(|| elf.display().to_string())?;
    let stamps = crate::rom::stamp_addresses(&image)
        .with_context(|| format!("the stamps of {}", elf.display()))?;
    let mut q = q.clone();
    q.accel = Accel::Kvm;
    let script = perf_record(
        &q,
        // 32 MiB of ring buffer: a boot is ~40k events, and with the default
        // 512 KiB a loaded host drops some (steps then merge).
        &["-q", "-m", "8192"],
        &[
            "kvm:kvm_emulate_insn",
            "kvm:kvm_pio",
            "kvm:kvm_mmio",
            "kvm:kvm_userspace_exit",
        ],
        &work.join("insn-trace.data"),
    )?;
    split_at_stamps(&script[..], &stamps)
}

/// A perf event with its `--filter`, if any.
pub type Event<'a> = (&'a str, Option<&'a str>);
/// Guest instructions (KVM emulates every one on this machine type).
pub const GUEST_INSTRUCTIONS: Event = ("kvm:kvm_emulate_insn", None);
/// Port I/O exits to QEMU.
pub const PORT_EXITS: Event = ("kvm:kvm_pio", None);
/// fw_cfg's data port, read once per byte without DMA.
pub const FW_CFG_PORT_READS: Event = ("kvm:kvm_pio", Some("port == 0x511"));
/// fw_cfg's DMA address port (its low half starts a transfer).
pub const FW_CFG_DMA_REQUESTS: Event = ("kvm:kvm_pio", Some("port == 0x518"));

/// `perf stat -x,` of `events` (each with its `--filter`, if any) over one
/// boot of `q`: the counts, in the order asked for.
pub fn perf_stat(q: &Qemu, events: &[Event]) -> Result<Vec<u64>> {
    let mut args = vec!["stat", "-x,"];
    for &(event, filter) in events {
        args.extend(["-e", event]);
        if let Some(filter) = filter {
            args.extend(["--filter", filter]);
        }
    }
    let output = perf_qemu(q, &args)
        .stdout(Stdio::null())
        .output()
        .context("running perf stat")?;
    let text = String::from_utf8_lossy(&output.stderr);
    let values = parse_perf_stat(&text);
    ensure!(values.len() == events.len(), "perf said {text}");
    Ok(values)
}

/// The `perf stat -x,` values, in the order of the events asked for.
pub fn parse_perf_stat(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(',');
            let value = f.next()?.trim().parse().ok()?;
            f.next()?; // unit
            let event = f.next()?;
            (!event.is_empty()).then_some(value)
        })
        .collect()
}

/// `perf record <options>` of `events` over one boot of `q` into `data`, then
/// `perf script -F event,trace` of the recording (its output). Fails when the
/// boot never reached its marker or perf lost events: a count built on part of
/// a trace is worse than none.
pub fn perf_record(q: &Qemu, options: &[&str], events: &[&str], data: &Path) -> Result<Vec<u8>> {
    perf_record_only(q, options, events, data)?;
    perf_script(data, &["-F", "event,trace"])
}

/// `perf record` of one boot into `data`, checked: the boot reached its
/// marker and perf lost no event.
pub fn perf_record_only(q: &Qemu, options: &[&str], events: &[&str], data: &Path) -> Result<()> {
    let data_arg = data.to_string_lossy();
    let mut args = vec!["record"];
    args.extend(options);
    for event in events {
        args.extend(["-e", event]);
    }
    args.extend(["-o", &data_arg]);
    let out = perf_qemu(q, &args)
        .stdout(Stdio::null())
        .output()
        .context("running perf record")?;
    // QEMU's exit status is the marker's; perf passes it on. `timeout` says 124.
    ensure!(
        out.status.code() != Some(124),
        "the recorded boot did not reach its marker"
    );
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !said.contains("lost"),
        "perf lost events: {}",
        said.lines().find(|l| l.contains("lost")).unwrap_or("")
    );
    Ok(())
}

/// `perf script <args> -i data`'s output.
pub fn perf_script(data: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let script = Command::new("perf")
        .arg("script")
        .args(args)
        .arg("-i")
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .context("running perf script")?;
    ensure!(script.status.success(), "perf script failed");
    Ok(script.stdout)
}

/// `timeout 120 perf <perf_args> -- qemu-system-x86_64 <q's arguments>`: a
/// firmware that never reaches its marker would otherwise run forever under KVM.
pub fn perf_qemu(q: &Qemu, perf_args: &[&str]) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["120", "perf"])
        .args(perf_args)
        .arg("--")
        .arg(crate::qemu::binary())
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
    fn splits_at_each_stamp() {
        let s = split_at_stamps(TRACE.as_bytes(), &[0x12345]).unwrap();
        assert_eq!(s.counts, [3, 3, 2]);
        // stamps at different places (inline copies) split alike
        let s = split_at_stamps(TRACE.as_bytes(), &[0x10004, 0x12345, 0x777]).unwrap();
        assert_eq!(s.counts, [3, 1, 2, 2]);
        assert_eq!(s.total(), 8);
        // real-mode addresses are csbase + rip
        assert_eq!(linear_address("ffff0000:fff0:e9 (real)"), Some(0xFFFF_FFF0));
    }

    #[test]
    fn splits_exits_with_the_instructions() {
        let trace = "\
kvm:kvm_userspace_exit: reason KVM_EXIT_UNKNOWN (0)
  kvm:kvm_emulate_insn: 0:10000:e6 f5 (prot64)
  kvm:kvm_pio: pio_write at 0xf5 size 1 count 1 val 0x1
  kvm:kvm_userspace_exit: reason KVM_EXIT_IO (2)
  kvm:kvm_emulate_insn: 0:12345:0f 31 (prot64)
  kvm:kvm_emulate_insn: 0:10006:89 07 (prot64)
  kvm:kvm_mmio: mmio write len 4 gpa 0xb0000000 val 0x1
  kvm:kvm_userspace_exit: reason KVM_EXIT_MMIO (6)
";
        let s = split_at_stamps(trace.as_bytes(), &[0x12345]).unwrap();
        assert_eq!(s.counts, [1, 2]);
        let e = |userspace, pio, mmio| Exits {
            userspace,
            pio,
            mmio,
        };
        assert_eq!(s.exits, [e(2, 1, 0), e(1, 0, 1)]);
        assert!(split_at_stamps("kvm:kvm_emulate_insn: junk\n".as_bytes(), &[1]).is_err());
    }

    #[test]
    fn no_stamp_is_one_segment() {
        let s = split_at_stamps(TRACE.as_bytes(), &[0x99999]).unwrap();
        assert_eq!(s.counts, [8]);
        assert_eq!(split_at_stamps(&b""[..], &[1]).unwrap().counts, [0]);
    }

    #[test]
    fn parses_perf_stat() {
        let text = "\
qemu-system-x86_64: warning: host doesn't support requested feature
11166,,kvm:kvm_emulate_insn,36835141,100.00,,
0,,kvm:kvm_pio,36835141,100.00,,
15,,kvm:kvm_pio,36835141,100.00,,
<not counted>,,kvm:kvm_mmio,0,100.00,,
";
        assert_eq!(parse_perf_stat(text), [11166, 0, 15]);
        assert!(parse_perf_stat("").is_empty());
    }

    #[test]
    fn malformed_trace_is_refused() {
        for bad in [
            "hello\n",
            "0:zz:90 (prot64)\n",
            "0:1000\n",
            "[ perf record: Woken up 1 times ]\n",
        ] {
            assert!(
                split_at_stamps(bad.as_bytes(), &[0x1000]).is_err(),
                "{bad:?}"
            );
        }
    }
}
