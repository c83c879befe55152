//! `cargo xtask host-cost --kernel-init`: the whole boot, firmware and kernel,
//! to the small kernel's `kernel_init` marker.
//!
//! On the wall clock the kernel's own spread under TCG (a standard deviation
//! of 70 to 110 ms in the bench's 50-run cells) hides any difference the
//! firmware makes to it, a millisecond or two. Here QEMU runs with
//! `-icount shift=3,sleep=off`: the guest's clocks follow its instruction
//! count and its idle waits are skipped, so the kernel's boot no longer
//! depends on how fast the host happens to run it, and the kernel calibrates
//! its TSC against the PIT itself, as users' kernels do (in virtual time that
//! calibration always succeeds, on microvm too).
//!
//! Two measures come out:
//! - **the kernel's clock** at its last message before `kernel_init`, from a
//!   boot without callgrind: 8 ns a guest instruction, exact, the same at
//!   every boot. Linux starts that clock at 0 when it calibrates its TSC,
//!   early in `setup_arch`: it counts the kernel's own work from there, what
//!   the machine the firmware handed over costs it, without the firmware or
//!   the decompressor. The boot keeps its console quiet, as users' boots and
//!   the bench's do, and /init prints the kernel's ring buffer afterwards
//!   ([`CLOCK_ARGS`]): printed on the serial console as they come, the
//!   messages cost the clock 14 ms to `kernel_init` on q35, more after a
//!   firmware that makes the kernel print more lines. The clock also moves
//!   by milliseconds with where the kernel's waits, whole timer ticks, fall
//!   against its work, which a word more of command line or a little more
//!   initramfs shift: one boot a side is exact but not representative.
//!   `--phases N` boots each N times, both varied, and pairs the boots
//!   phase by phase ([`render_phases`]);
//! - **QEMU's vCPU thread** under callgrind, in host instructions, with
//!   what went to translating, memory-map rebuilds and device accesses.
//!   Those three repeat to a few hundred thousand; the total does not
//!   quite, because QEMU resizes its software TLB by windows of the host's
//!   clock (`tlb_mmu_resize_locked`), and callgrind's pace moves them: the
//!   same boot of pc came out at 9,913 M and at 10,068 M, all of the
//!   difference in TLB refills.
//!
//! What icount changes: the translated code counts its instructions and QEMU
//! stops it at every timer deadline, so running guest code costs the host
//! about three times what it does without (1.65 against 0.53 s of CPU for
//! the small kernel on microvm, 2026-12-03), while translating and the
//! device work cost what they cost without.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;

use super::{Cost, KINDS, measure};
use crate::host_profile::ExportCache;
use crate::linux_assets::{self, InitramfsSpec};
use crate::qemu::{Accel, Machine, Qemu};
use ferrite_contract::{marker, qemu_exit};

/// QEMU's options that make the guest's time follow its instructions:
/// one instruction is 2^3 ns of virtual time, and an idle guest's wait is
/// skipped rather than slept.
pub const ICOUNT: [&str; 2] = ["-icount", "shift=3,sleep=off"];
/// The token `/init` checks for on the command line (as in the bench).
const TOKEN: &str = "ferrite.bench=1";
/// callgrind runs QEMU about a hundred times slower: a boot that takes a
/// second takes minutes.
const TIMEOUT: Duration = Duration::from_secs(1800);

/// The kernel a boot takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Kernel {
    /// The bzImage, through each firmware's own entry.
    BzImage,
    /// The same kernel's vmlinux, through its PVH entry.
    Vmlinux,
}

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::BzImage => "bzImage",
            Kernel::Vmlinux => "vmlinux (PVH)",
        }
    }
}

/// One boot to measure.
#[derive(Clone, Debug)]
pub struct Boot {
    pub firmware: String,
    pub kernel: Kernel,
    pub qemu: Qemu,
    pub expect: Vec<i32>,
}

/// The boots of `firmwares` (name, image), kernel by kernel and in their
/// order within each (so the first two compared are the first two
/// firmwares with the bzImage).
pub fn boots(
    machine: Machine,
    firmwares: &[(String, PathBuf)],
    bzimage: &Path,
    vmlinux: &Path,
    initrd: &Path,
) -> Vec<Boot> {
    let mut out = Vec::new();
    for (kernel, path) in [(Kernel::BzImage, bzimage), (Kernel::Vmlinux, vmlinux)] {
        for (fw, image) in firmwares {
            let mut q = Qemu::new(machine, image.clone());
            q.accel = Accel::Tcg;
            q.memory_mib = 512;
            q.kernel = Some(path.to_path_buf());
            q.initrd = Some(initrd.to_path_buf());
            // No tsc_early_khz: under icount the TSC runs at 1 GHz of
            // virtual time, which the kernel's PIT calibration finds.
            q.append = Some(format!("console=ttyS0 quiet panic=-1 {TOKEN}"));
            q.exit_ports = vec![marker::USER_PORT];
            q.extra.extend(ICOUNT.iter().map(|s| s.to_string()));
            q.timeout = TIMEOUT;
            out.push(Boot {
                firmware: fw.clone(),
                kernel,
                qemu: q,
                expect: vec![qemu_exit(marker::USER)],
            });
        }
    }
    out
}

/// [`boots`] of the small kernel (built if it is not), with the bench's
/// initramfs for one CPU and 512 MiB written into `work`.
pub fn small_kernel_boots(
    machine: Machine,
    firmwares: &[(String, PathBuf)],
    work: &Path,
) -> Result<Vec<Boot>> {
    let bzimage = crate::small_kernel::build()?;
    let vmlinux = crate::small_kernel::vmlinux_path();
    std::fs::create_dir_all(work)?;
    let initrd = phase_initramfs(work, 0)?;
    Ok(boots(machine, firmwares, &bzimage, &vmlinux, &initrd))
}

/// The initramfs of phase `phase` ([`guest_clock_with`]), written into
/// `work`: the bench's, for one CPU and 512 MiB, its payload
/// [`PHASE_STEP`] bytes longer a phase.
pub fn phase_initramfs(work: &Path, phase: usize) -> Result<PathBuf> {
    let name = match phase {
        0 => "initramfs.cpio".to_string(),
        n => format!("initramfs-phase{n}.cpio"),
    };
    Ok(linux_assets::build_initramfs(
        &InitramfsSpec {
            expect_cpus: 1,
            expect_mem_mib: 512,
            cmdline_token: TOKEN.into(),
            payload_len: 4096 + phase * PHASE_STEP,
            poweroff: true,
            kernel_reserves_mib: 0,
        },
        &work.join(name),
    )?
    .path)
}

/// One boot's measures: the kernel's clock, each run's vCPU thread total,
/// and the first run's breakdown (none with `guest_clock_only`).
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    pub firmware: String,
    pub kernel: Kernel,
    /// The kernel's clock at its last message before `kernel_init`, in µs
    /// (from its TSC calibration).
    pub guest_us: u64,
    /// The kernel's time-stamped messages (text, printk time in seconds),
    /// of each phase in turn (the first: the boot as it is).
    #[serde(skip)]
    pub messages: Vec<Vec<(String, f64)>>,
    /// The kernel's clock in each phase ([`guest_clock_with`]), µs: the
    /// first is `guest_us`.
    pub clocks: Vec<u64>,
    pub cost: Cost,
    /// Every run's vCPU thread total (the first is `cost.vcpu`).
    pub runs: Vec<u64>,
}

impl Measured {
    /// Largest minus smallest of the runs.
    pub fn spread(&self) -> u64 {
        let max = self.runs.iter().max().copied().unwrap_or(0);
        let min = self.runs.iter().min().copied().unwrap_or(0);
        max - min
    }
}

/// What a clock boot adds to the kernel's command line in place of `quiet`:
/// the console stays quiet, as in users' boots and the bench's, the messages
/// are time-stamped in the kernel's ring buffer, and /init prints that buffer
/// when it starts (`ferrite.dmesg=1`, `xtask/assets/init.sh`). Under icount a
/// message printed on the serial console costs the kernel's clock its
/// printing, about 0.07 ms a line (on q35 on 2026-12-03, 14 ms to
/// `kernel_init` in all): a firmware after which the kernel prints a line
/// more would be charged for it.
pub const CLOCK_ARGS: &str = "quiet printk.time=1 ferrite.dmesg=1";
/// The kernel's message as it starts /init, right after the `kernel_init`
/// marker: the clock is read at the message before it.
pub const RUN_INIT: &str = "Run /init as init process";
/// The command-line word of a phase after the first, with its number
/// ([`guest_clock_with`]).
pub const PHASE_WORD: &str = "ferrite.phase=";
/// How much longer each phase's initramfs payload is than the one before
/// ([`phase_initramfs`]): about 0.45 ms more of the kernel's unpacking, so
/// that 20 phases take its waits through two timer ticks of 4 ms.
pub const PHASE_STEP: usize = 20 << 10;
/// The lines /init prints around the ring buffer.
pub const DUMP_BEGIN: &str = "ferrite-init: dmesg begin";
pub const DUMP_END: &str = "ferrite-init: dmesg end";

/// A message's time stamp in µs, read exactly (`[    0.990039] ...`).
fn stamp_us(line: &str) -> Option<u64> {
    let (secs, _) = line.strip_prefix('[')?.split_once(']')?;
    let (s, us) = secs.trim().split_once('.')?;
    Some(s.parse::<u64>().ok()? * 1_000_000 + us.parse::<u64>().ok()?)
}

/// The kernel's messages before it started /init, from the ring buffer /init
/// printed between [`DUMP_BEGIN`] and [`DUMP_END`] (text, printk time in
/// seconds, in the order logged), and the time stamp of the last of them in
/// µs: the kernel's clock at its last message before `kernel_init`.
pub fn ring_buffer(serial: &str) -> Result<(u64, Vec<(String, f64)>)> {
    let (_, rest) = serial
        .split_once(DUMP_BEGIN)
        .with_context(|| format!("/init printed no ring buffer (no `{DUMP_BEGIN}`)"))?;
    let (dump, _) = rest
        .split_once(DUMP_END)
        .with_context(|| format!("the ring buffer's dump is cut short (no `{DUMP_END}`)"))?;
    let mut messages = Vec::new();
    let mut last = None;
    for line in dump.lines().map(|l| l.trim_end_matches('\r')) {
        let Some((secs, text)) = crate::analyze::parse_printk(line) else {
            continue;
        };
        if text == RUN_INIT {
            let last = last.context("no time-stamped message before /init")?;
            return Ok((last, messages));
        }
        last = Some(stamp_us(line).with_context(|| format!("a malformed time stamp: {line}"))?);
        messages.push((text.to_string(), secs));
    }
    bail!("no `{RUN_INIT}` in the ring buffer")
}

/// The kernel's clock at its last message before `kernel_init` in boot `b`:
/// the same boot, without callgrind, its messages read from the ring buffer.
pub fn guest_clock_us(b: &Boot) -> Result<u64> {
    Ok(guest_clock(b)?.0)
}

/// [`guest_clock`] of boot `b` in phase `phase` (0: the boot as it is):
/// the initramfs `initrd` in its place ([`phase_initramfs`]) and, after
/// phase 0, [`PHASE_WORD`] and the phase's number on the command line. The
/// kernel's clock at `kernel_init` moves with both by milliseconds, either
/// way, for every firmware: its waits are whole timer ticks, and where they
/// fall against its work moves with the work before them (the initramfs's
/// unpacking, about 22 µs of the clock a KiB), while a word more or less on
/// the command line moved the clock on q35 by up to 5 ms with no order (on
/// 2026-12-03: no word 1,019.9 ms, `foo=1` 1,018.7, `ferrite.x=1` 1,014.6,
/// two such words 1,023.0). Each boot is exact and repeats; what a
/// firmware changes shows over phases that vary both.
pub fn guest_clock_with(
    b: &Boot,
    phase: usize,
    initrd: &Path,
) -> Result<(u64, Vec<(String, f64)>)> {
    let mut b = b.clone();
    b.qemu.initrd = Some(initrd.to_path_buf());
    if phase > 0 {
        b.qemu.append = b.qemu.append.map(|a| format!("{a} {PHASE_WORD}{phase}"));
    }
    guest_clock(&b)
}

/// [`guest_clock_us`], and every time-stamped message of the boot (text,
/// printk time in seconds), in the order logged. The boot goes on past the
/// marker to /init, which prints the ring buffer ([`CLOCK_ARGS`]).
pub fn guest_clock(b: &Boot) -> Result<(u64, Vec<(String, f64)>)> {
    let mut q = b.qemu.clone();
    q.append = q.append.map(|a| a.replace("quiet", CLOCK_ARGS));
    q.exit_ports.clear();
    q.timeout = Duration::from_secs(120);
    let out = q.run()?;
    ensure!(
        out.serial.contains("ferrite-init: PASS"),
        "{} {}: /init's checks did not pass (exit {:?}): {}",
        b.firmware,
        b.kernel.name(),
        out.exit_code,
        out.serial
    );
    let (last, messages) =
        ring_buffer(&out.serial).with_context(|| format!("{} {}", b.firmware, b.kernel.name()))?;
    // The clock means instructions only if the kernel calibrated its TSC
    // itself, against the PIT in virtual time.
    ensure!(
        messages.iter().any(|(t, _)| t.starts_with("tsc: Detected")),
        "{} {}: the kernel did not calibrate its TSC",
        b.firmware,
        b.kernel.name()
    );
    Ok((last, messages))
}

/// Adds `words` to the kernel's command line of each boot in `boots`, after
/// what the boot already passes (so that [`guest_clock`] still finds its
/// `quiet`): the same words for every firmware, to see how the clock and the
/// order of the firmwares move with them (e.g. `i8042.nokbd i8042.noaux`,
/// without Linux's keyboard probe).
pub fn add_words(boots: &mut [Boot], words: &str) {
    let words = words.trim();
    if words.is_empty() {
        return;
    }
    for b in boots {
        b.qemu.append = Some(match b.qemu.append.take() {
            Some(a) => format!("{a} {words}"),
            None => words.to_string(),
        });
    }
}

/// Boots each firmware with the small kernel's bzImage and vmlinux to
/// `kernel_init`: once for the kernel's clock, then `repeat` times under
/// callgrind (none: the clock only, seconds a boot). `words` go on every
/// boot's command line ([`add_words`]).
pub fn run(
    machine: Machine,
    firmwares: &[(String, PathBuf)],
    repeat: usize,
    phases: usize,
    words: &str,
    work: &Path,
) -> Result<Vec<Measured>> {
    let mut exports = ExportCache::default();
    let mut out = Vec::new();
    let mut boots = small_kernel_boots(machine, firmwares, work)?;
    add_words(&mut boots, words);
    // Each phase's initramfs once, for every boot (phase 0's is the boots').
    let initrds = (1..phases)
        .map(|phase| phase_initramfs(work, phase))
        .collect::<Result<Vec<_>>>()?;
    for b in boots {
        let name = format!("{} {}", b.firmware, b.kernel.name());
        let (guest_us, messages) = guest_clock(&b).with_context(|| name.clone())?;
        let (mut clocks, mut messages) = (vec![guest_us], vec![messages]);
        for (phase, initrd) in (1..phases).zip(&initrds) {
            let (clock, lines) = guest_clock_with(&b, phase, initrd)
                .with_context(|| format!("{name}, phase {phase}"))?;
            clocks.push(clock);
            messages.push(lines);
        }
        if repeat == 0 {
            out.push(Measured {
                firmware: b.firmware.clone(),
                kernel: b.kernel,
                guest_us,
                messages,
                clocks,
                cost: Cost::default(),
                runs: Vec::new(),
            });
            continue;
        }
        println!("{name}: booting to kernel_init under callgrind ({repeat} run(s))");
        let tag = name.replace([' ', '(', ')'], "");
        let cost =
            measure(&b.qemu, &b.expect, work, &tag, &mut exports).with_context(|| name.clone())?;
        let mut runs = vec![cost.vcpu];
        for i in 1..repeat {
            let dir = work.join(format!("callgrind-{tag}-{i}"));
            let (_, vcpu) =
                super::run_callgrind(&b.qemu, &b.expect, &dir).with_context(|| name.clone())?;
            runs.push(vcpu);
        }
        out.push(Measured {
            firmware: b.firmware.clone(),
            kernel: b.kernel,
            guest_us,
            messages,
            clocks,
            cost,
            runs,
        });
    }
    Ok(out)
}

/// The table: each boot's kernel clock and vCPU thread, their differences
/// from the first firmware's boot of the same kernel, and the kinds of work.
pub fn render(all: &[Measured], machine: &str) -> String {
    let counted = all.iter().any(|m| !m.runs.is_empty());
    let mut s = format!(
        "The small kernel on {machine}, to `kernel_init`, under TCG with `{} {}`: \
         the kernel's clock at its last message (from its TSC calibration; exact; phase 0)",
        ICOUNT[0], ICOUNT[1]
    );
    if counted {
        s += ", and QEMU's vCPU thread under callgrind (millions of host instructions; the \
              total varies by up to 1.5 % with QEMU's TLB sizing, the three kinds of work by \
              under 0.1 M)";
    }
    s += "\n\n";
    s += if counted {
        "| kernel | firmware | kernel clock ms | vs the first | the vCPU thread | vs the first | runs: spread | translating | map rebuilds | port and MMIO |\n|---|---|---|---|---|---|---|---|---|---|\n"
    } else {
        "| kernel | firmware | kernel clock ms | vs the first |\n|---|---|---|---|\n"
    };
    let of = |c: &Cost, kind: usize| c.of(KINDS[kind].1) as f64 / 1e6;
    for m in all {
        let first = all
            .iter()
            .find(|o| o.kernel == m.kernel)
            .filter(|f| !std::ptr::eq(*f, m));
        let clock = match first {
            Some(f) => format!("{:+.3}", (m.guest_us as f64 - f.guest_us as f64) / 1e3),
            None => "–".into(),
        };
        s += &format!(
            "| {} | {} | {:.3} | {clock} |",
            m.kernel.name(),
            m.firmware,
            m.guest_us as f64 / 1e3
        );
        if counted {
            let versus = match first {
                Some(f) => {
                    let d = m.cost.vcpu as f64 - f.cost.vcpu as f64;
                    format!("{:+.1} ({:+.2} %)", d / 1e6, 100.0 * d / f.cost.vcpu as f64)
                }
                None => "–".into(),
            };
            let spread = if m.runs.len() > 1 {
                format!("{}: {:.3}", m.runs.len(), m.spread() as f64 / 1e6)
            } else {
                "1".into()
            };
            s += &format!(
                " {:.1} | {versus} | {spread} | {:.2} | {:.2} | {:.2} |",
                m.cost.vcpu as f64 / 1e6,
                of(&m.cost, 0),
                of(&m.cost, 1),
                of(&m.cost, 3),
            );
        }
        s += "\n";
    }
    s
}

/// With more than one phase ([`guest_clock_with`]): each boot's clock over
/// the phases, and its difference from the first firmware's boot of the same
/// kernel phase by phase (paired: the same initramfs), with the Wilcoxon
/// signed-rank test of those differences. Empty with one phase.
pub fn render_phases(all: &[Measured]) -> String {
    let phases = all.iter().map(|m| m.clocks.len()).max().unwrap_or(0);
    if phases < 2 {
        return String::new();
    }
    let mut s = format!(
        "\nThe kernel's clock at its last message before `kernel_init` over {phases} phases \
         (the initramfs's payload 0 to {} KiB longer and `{PHASE_WORD}N` on the command \
         line, which move where the kernel's timer-bound waits fall against its work), ms; \
         against the first firmware phase by phase (+ where the kernel reaches `kernel_init` \
         later than after it)\n\n\
         | kernel | firmware | mean | sd | min – max | vs the first: mean difference | later in | signed-rank p |\n\
         |---|---|---|---|---|---|---|---|\n",
        (phases - 1) * PHASE_STEP / 1024
    );
    let ms = |us: &u64| *us as f64 / 1e3;
    for m in all {
        let clocks: Vec<f64> = m.clocks.iter().map(ms).collect();
        let n = clocks.len() as f64;
        let mean = clocks.iter().sum::<f64>() / n;
        let sd =
            (clocks.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
        let min = clocks.iter().copied().fold(f64::INFINITY, f64::min);
        let max = clocks.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let first = all
            .iter()
            .find(|o| o.kernel == m.kernel)
            .filter(|f| !std::ptr::eq(*f, m));
        let versus = match first {
            Some(f) => {
                let diffs: Vec<f64> = m
                    .clocks
                    .iter()
                    .zip(&f.clocks)
                    .map(|(a, b)| (*a as f64 - *b as f64) / 1e3)
                    .collect();
                let later = diffs.iter().filter(|&&d| d > 0.0).count();
                let mean = diffs.iter().sum::<f64>() / diffs.len().max(1) as f64;
                let p = crate::stats::signed_rank(&diffs)
                    .map_or("–".into(), |r| format!("{:.3}", r.p));
                format!("{mean:+.2} | {later} of {} | {p}", diffs.len())
            }
            None => "– | – | –".into(),
        };
        s += &format!(
            "| {} | {} | {mean:.2} | {sd:.2} | {min:.2} – {max:.2} | {versus} |\n",
            m.kernel.name(),
            m.firmware,
        );
    }
    s
}

/// Where the kernel's own work differs after each firmware from after the
/// first, message by message: [`crate::kernel_lines`] with one boot a side,
/// which under icount is exact (every stretch's length repeats to the
/// microsecond), the `top` stretches that moved most for each kernel and
/// firmware. Work the kernel does asynchronously (the initramfs's unpacking,
/// deferred work) moves from stretch to stretch with the timing before it:
/// two stretches that move by the same amount in opposite directions are one
/// piece of work that moved. The comparison is of phase 0 only, and in
/// another phase the timer-bound waits fall elsewhere: a stretch that moved
/// is a place to look, not a measure.
pub fn render_lines(all: &[Measured], top: usize) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for m in all {
        let Some(first) = all
            .iter()
            .find(|o| o.kernel == m.kernel)
            .filter(|f| !std::ptr::eq(*f, m))
        else {
            continue;
        };
        let Some(c) = crate::kernel_lines::compare(&first.messages, &m.messages) else {
            continue;
        };
        // Over phases, each stretch is the median of its lengths, and how
        // much it moved the Hodges-Lehmann shift: the stretches a firmware
        // changes in every phase, not those where one phase's timer tick fell.
        let how = match first.messages.len().min(m.messages.len()) {
            1 => "exact under icount".to_string(),
            n => format!("over {n} phases: each stretch's median length and its shift"),
        };
        let _ = writeln!(
            s,
            "\nThe kernel's clock between its messages, {kernel}: {other} against {base} \
             ({} messages both boots print; {how}): the {} stretches that moved \
             most, + where the kernel runs longer after {other}\n\n\
             | ms | after {base} | after {other} | from | to |\n|---|---|---|---|---|",
            c.common,
            top.min(c.gaps.len()),
            kernel = m.kernel.name(),
            other = m.firmware,
            base = first.firmware,
        );
        for g in c.gaps.iter().take(top) {
            let _ = writeln!(
                s,
                "| {:+.3} | {:.3} | {:.3} | `{}` | `{}` |",
                g.shift.ms,
                g.base_ms,
                g.other_ms,
                g.from.replace('`', "'"),
                g.to.replace('`', "'")
            );
        }
        for (who, list) in [
            (&first.firmware, &c.only_base),
            (&m.firmware, &c.only_other),
        ] {
            for text in list.iter().take(top) {
                let _ = writeln!(s, "\nonly after {who}: `{}`", text.replace('`', "'"));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fws() -> Vec<(String, PathBuf)> {
        vec![
            ("ferrite".into(), "f.rom".into()),
            ("qboot".into(), "q.rom".into()),
        ]
    }

    #[test]
    fn boots_each_kernel_with_each_firmware_under_icount_to_kernel_init() {
        let b = boots(
            Machine::Q35,
            &fws(),
            Path::new("bz"),
            Path::new("vm"),
            Path::new("i"),
        );
        // kernel by kernel, the firmwares in order within each
        let order: Vec<(&str, Kernel)> =
            b.iter().map(|b| (b.firmware.as_str(), b.kernel)).collect();
        assert_eq!(
            order,
            [
                ("ferrite", Kernel::BzImage),
                ("qboot", Kernel::BzImage),
                ("ferrite", Kernel::Vmlinux),
                ("qboot", Kernel::Vmlinux),
            ]
        );
        let args = b[3].qemu.args().join(" ");
        assert!(args.contains("-icount shift=3,sleep=off"), "{args}");
        assert!(
            args.contains("-kernel vm") && args.contains("-bios q.rom"),
            "{args}"
        );
        assert!(
            args.contains(&format!("iobase={:#x}", marker::USER_PORT)),
            "{args}"
        );
        // the kernel calibrates its TSC itself
        assert!(!args.contains("tsc_early_khz"), "{args}");
        assert!(b.iter().all(|b| b.expect == [qemu_exit(marker::USER)]));
    }

    #[test]
    fn added_words_go_on_every_boots_command_line_after_quiet() {
        let mut b = boots(
            Machine::Pc,
            &fws(),
            Path::new("bz"),
            Path::new("vm"),
            Path::new("i"),
        );
        let before: Vec<_> = b.iter().map(|b| b.qemu.append.clone().unwrap()).collect();
        add_words(&mut b, "   ");
        let unchanged: Vec<_> = b.iter().map(|b| b.qemu.append.clone().unwrap()).collect();
        assert_eq!(unchanged, before, "blank words change nothing");
        add_words(&mut b, " i8042.nokbd i8042.noaux ");
        for (b, was) in b.iter().zip(&before) {
            let append = b.qemu.append.as_deref().unwrap();
            assert_eq!(append, format!("{was} i8042.nokbd i8042.noaux"));
            // guest_clock's replacement of `quiet` still finds it
            assert!(append.contains("quiet"));
        }
        let mut none = b[..1].to_vec();
        none[0].qemu.append = None;
        add_words(&mut none, "x=1");
        assert_eq!(none[0].qemu.append.as_deref(), Some("x=1"));
    }

    fn measured(fw: &str, kernel: Kernel, runs: &[u64], rebuilds: u64) -> Measured {
        let guest_us = runs[0] / 10_000;
        let mut cost = Cost {
            firmware: fw.into(),
            vcpu: runs[0],
            ..Cost::default()
        };
        cost.inclusive
            .insert("memory_region_transaction_commit".into(), rebuilds);
        Measured {
            firmware: fw.into(),
            kernel,
            guest_us,
            messages: Vec::new(),
            clocks: vec![guest_us],
            cost,
            runs: runs.to_vec(),
        }
    }

    #[test]
    fn phases_are_paired_against_the_first_firmware_of_each_kernel() {
        let boot = |fw: &str, kernel, clocks: &[u64]| {
            let mut m = measured(fw, kernel, &[0], 0);
            m.guest_us = clocks[0];
            m.clocks = clocks.to_vec();
            m
        };
        // qboot later in every phase, by 1 to 6 ms; the vmlinux level
        let all = [
            boot(
                "ferrite",
                Kernel::BzImage,
                &[
                    1_000_000, 1_010_000, 1_004_000, 1_002_000, 1_001_000, 1_007_000,
                ],
            ),
            boot(
                "qboot",
                Kernel::BzImage,
                &[
                    1_001_000, 1_016_000, 1_006_000, 1_005_000, 1_005_000, 1_012_000,
                ],
            ),
            boot(
                "ferrite",
                Kernel::Vmlinux,
                &[
                    1_000_000, 1_003_000, 1_000_000, 1_003_000, 1_000_000, 1_003_000,
                ],
            ),
            boot(
                "qboot",
                Kernel::Vmlinux,
                &[
                    1_003_000, 1_000_000, 1_003_000, 1_000_000, 1_003_000, 1_000_000,
                ],
            ),
        ];
        let t = render_phases(&all);
        assert!(
            t.contains(
                "over 6 phases (the initramfs's payload 0 to 100 KiB longer and `ferrite.phase=N`"
            ),
            "{t}"
        );
        // the first of each kernel: its own figures, no comparison
        assert!(
            t.contains("| bzImage | ferrite | 1004.00 | 3.85 | 1000.00 – 1010.00 | – | – | – |\n"),
            "{t}"
        );
        // 1, 6, 2, 3, 4, 5 ms later: all six, exact p 2/64
        assert!(t.contains("| bzImage | qboot | 1007.50 | 5.47 | 1001.00 – 1016.00 | +3.50 | 6 of 6 | 0.031 |\n"), "{t}");
        // +3, -3 by turns: no evidence (ties: the normal approximation)
        assert!(t.contains("| vmlinux (PVH) | qboot | 1001.50 | 1.64 | 1000.00 – 1003.00 | +0.00 | 3 of 6 | 1.000 |\n"), "{t}");
        // one phase: nothing to show
        let single = [measured("ferrite", Kernel::BzImage, &[0], 0)];
        assert_eq!(render_phases(&single), "");
    }

    #[test]
    fn stretches_that_moved_each_against_the_first_firmware_of_its_kernel() {
        let boot = |fw: &str, kernel, lines: &[(&str, f64)]| {
            let mut m = measured(fw, kernel, &[0], 0);
            m.messages = vec![
                lines
                    .iter()
                    .map(|&(t, ms)| (t.to_string(), ms / 1e3))
                    .collect(),
            ];
            m
        };
        let all = [
            boot(
                "ferrite",
                Kernel::BzImage,
                &[
                    ("tsc: Detected 999.923 MHz", 0.0),
                    ("RAMDISK: [mem 0x1fc19000-0x1fdfffff]", 7.601),
                    (
                        "ACPI: 1 ACPI AML tables successfully acquired and loaded",
                        512.030,
                    ),
                    ("Console: colour dummy device 80x25", 513.0),
                    ("Unpacking initramfs...", 691.952),
                ],
            ),
            boot(
                "qboot",
                Kernel::BzImage,
                &[
                    ("tsc: Detected 999.923 MHz", 0.0),
                    ("RAMDISK: [mem 0x1fc00000-0x1fdfffff]", 8.558),
                    (
                        "ACPI: 1 ACPI AML tables successfully acquired and loaded",
                        510.246,
                    ),
                    ("Unpacking initramfs...", 687.225),
                ],
            ),
            // another kernel: compared with its own first firmware only
            boot("ferrite", Kernel::Vmlinux, &[("a", 0.0), ("b", 1.0)]),
        ];
        let t = render_lines(&all, 10);
        assert_eq!(
            t.matches("The kernel's clock between its messages").count(),
            1,
            "{t}"
        );
        assert!(
            t.contains("bzImage: qboot against ferrite (4 messages both boots print"),
            "{t}"
        );
        // largest move first, either way: after qboot the stretch from the
        // AML tables is 2.943 ms shorter, the one to them 2.741, the first
        // 0.957 ms longer
        let rows: Vec<&str> = t
            .lines()
            .filter(|l| l.starts_with("| -") || l.starts_with("| +"))
            .collect();
        assert_eq!(rows.len(), 3, "{t}");
        assert!(
            rows[0].starts_with("| -2.943 | 179.922 | 176.979 | `ACPI: 1 ACPI AML"),
            "{}",
            rows[0]
        );
        assert!(
            rows[1].starts_with("| -2.741 | 504.429 | 501.688 | `RAMDISK: [mem 0x1fc19000-0x1fdfffff]` | `ACPI: 1 ACPI AML"),
            "{}",
            rows[1]
        );
        assert!(
            rows[2].starts_with("| +0.957 | 7.601 | 8.558 | `tsc: Detected"),
            "{}",
            rows[2]
        );
        assert!(
            t.contains("only after ferrite: `Console: colour dummy device 80x25`"),
            "{t}"
        );
    }

    #[test]
    fn over_phases_a_stretch_is_its_median_and_a_tick_in_one_phase_does_not_lead() {
        // ms of the messages a, b, c in each phase
        let boot = |fw: &str, phases: &[[f64; 3]]| {
            let mut m = measured(fw, Kernel::BzImage, &[0], 0);
            m.messages = phases
                .iter()
                .map(|p| {
                    ["a", "b", "c"]
                        .iter()
                        .zip(p)
                        .map(|(t, ms)| (t.to_string(), ms / 1e3))
                        .collect()
                })
                .collect();
            m
        };
        // a -> b: 1 ms longer after qboot in every phase; b -> c: a timer
        // tick's 4 ms in the first phase only, none in the other four
        let all = [
            boot(
                "ferrite",
                &[
                    [0.0, 10.0, 20.0],
                    [0.0, 10.0, 20.0],
                    [0.0, 10.0, 20.0],
                    [0.0, 10.0, 20.0],
                    [0.0, 10.0, 20.0],
                ],
            ),
            boot(
                "qboot",
                &[
                    [0.0, 11.0, 25.0],
                    [0.0, 11.0, 21.0],
                    [0.0, 11.0, 21.0],
                    [0.0, 11.0, 21.0],
                    [0.0, 11.0, 21.0],
                ],
            ),
        ];
        let t = render_lines(&all, 10);
        assert!(
            t.contains("(3 messages both boots print; over 5 phases: each stretch's median length and its shift)"),
            "{t}"
        );
        let rows: Vec<&str> = t
            .lines()
            .filter(|l| l.starts_with("| -") || l.starts_with("| +"))
            .collect();
        assert_eq!(rows.len(), 2, "{t}");
        assert!(
            rows[0].starts_with("| +1.000 | 10.000 | 11.000 | `a` | `b` |"),
            "{t}"
        );
        assert!(
            rows[1].starts_with("| +0.000 | 10.000 | 10.000 | `b` | `c` |"),
            "{t}"
        );
    }

    #[test]
    fn each_kernel_is_compared_with_its_first_firmware() {
        let all = [
            measured("ferrite", Kernel::BzImage, &[15_000_000_000], 0),
            measured("qboot", Kernel::BzImage, &[14_850_000_000], 0),
            measured(
                "ferrite",
                Kernel::Vmlinux,
                &[14_000_000_000, 14_000_030_000],
                900_000_000,
            ),
            measured("qboot", Kernel::Vmlinux, &[14_140_000_000], 0),
        ];
        let t = render(&all, "pc");
        let rows: Vec<&str> = t
            .lines()
            .filter(|l| l.starts_with("| b") || l.starts_with("| v"))
            .collect();
        assert_eq!(rows.len(), 4, "{t}");
        assert!(
            rows[0].contains("| ferrite | 1500.000 | – | 15000.0 | – | 1 |"),
            "{}",
            rows[0]
        );
        assert!(rows[1].contains("| 1485.000 | -15.000 |"), "{}", rows[1]);
        assert!(rows[1].contains("| -150.0 (-1.00 %) |"), "{}", rows[1]);
        // the vmlinux's are against ferrite's vmlinux, not its bzImage
        assert!(rows[2].contains("| – | 2: 0.030 |"), "{}", rows[2]);
        assert!(rows[2].contains("| 900.00 |"), "{}", rows[2]);
        assert!(rows[3].contains("| +140.0 (+1.00 %) |"), "{}", rows[3]);
        assert!(rows[3].contains("| +14.000 |"), "{}", rows[3]);
    }

    #[test]
    fn the_clock_alone_without_callgrind() {
        let mut a = measured("ferrite", Kernel::BzImage, &[9_900_000_000], 0);
        let mut b = measured("qboot", Kernel::BzImage, &[9_863_000_000], 0);
        a.runs.clear();
        b.runs.clear();
        let t = render(&[a, b], "pc");
        assert!(
            t.contains("| kernel | firmware | kernel clock ms | vs the first |\n"),
            "{t}"
        );
        assert!(
            t.contains("| bzImage | qboot | 986.300 | -3.700 |\n"),
            "{t}"
        );
        assert!(
            !t.contains("translating") && !t.contains("callgrind"),
            "{t}"
        );
    }

    #[test]
    fn reads_the_ring_buffer_up_to_init() {
        let serial = format!(
            "[    0.100000] a warning on the quiet console\n{DUMP_BEGIN}\r\n\
             [    0.000000] tsc: Detected 1000.000 MHz processor\r\n\
             a continuation line\n\
             [    0.990039] Freeing unused kernel image\n\
             [    0.990100] {RUN_INIT}\n\
             [    1.500000] input: a mouse, after the marker\n\
             {DUMP_END}\nferrite-init: PASS\n"
        );
        let (last, messages) = ring_buffer(&serial).unwrap();
        assert_eq!(last, 990_039);
        assert_eq!(
            messages,
            [
                ("tsc: Detected 1000.000 MHz processor".to_string(), 0.0),
                ("Freeing unused kernel image".to_string(), 0.990039),
            ]
        );
        assert_eq!(stamp_us("[   12.000001] x"), Some(12_000_001));
        assert_eq!(stamp_us("[ bad] x"), None);
    }

    #[test]
    fn a_ring_buffer_missing_or_cut_short_is_an_error() {
        let no_dump = "[    0.990039] Freeing unused kernel image\n";
        assert!(ring_buffer(no_dump).is_err());
        let cut = format!("{DUMP_BEGIN}\n[    0.990039] Freeing unused kernel image\n[    0.99");
        let e = ring_buffer(&cut).unwrap_err().to_string();
        assert!(e.contains("cut short"), "{e}");
        let no_init = format!("{DUMP_BEGIN}\n[    0.990039] Freeing\n{DUMP_END}\n");
        let e = ring_buffer(&no_init).unwrap_err().to_string();
        assert!(e.contains(RUN_INIT), "{e}");
        let nothing_before = format!("{DUMP_BEGIN}\n[    0.990039] {RUN_INIT}\n{DUMP_END}\n");
        assert!(ring_buffer(&nothing_before).is_err());
    }
}
