//! `cargo xtask bench-range A..B`: ferrite at each commit of a range, and
//! at any other builds given as ROMs, after R. Jones's `boot-benchmark-range`.
//! Each commit's firmware is built in its own git worktree outside the
//! checkout (one shared cargo target directory, `target/bench-range/target`)
//! and turned into a ROM by this xtask's ELF-to-ROM converter. Every ROM
//! boots the bench's probe kernel, timed inside one QEMU process from QMP
//! `cont` to the probe's entry marker (QEMU's own start-up, and its noise,
//! left out), in shuffled interleaved rounds after a warm-up, so the host's
//! drift hits every build alike. A build is flagged when its times differ from the previous one's by
//! the two-sided Mann-Whitney U test at p < [`ALPHA`]. Beside the times, the
//! deterministic counts of the cost model ([`crate::bench::cost`]): code
//! translated under TCG, QEMU's vCPU thread's host instructions (callgrind),
//! exits to QEMU under KVM, each with its change from the previous build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use ferrite_contract::qemu_exit;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::bench::cost::{Exits, Translated};
use crate::bench::{Shift, Summary, shift, summarize};
use crate::linux_assets::{self, InitramfsSpec};
use crate::probe::{self, PROBE_PORT};
use crate::qemu::{Accel, Machine, Qemu};

/// A change is flagged below this p-value.
pub const ALPHA: f64 = 0.05;

#[derive(Clone, Debug)]
pub struct Options {
    /// `A..B`: A is the baseline, then every commit after it up to B.
    pub range: String,
    /// Other builds measured after the range's commits: (name, ROM).
    pub roms: Vec<(String, PathBuf)>,
    pub runs: usize,
    pub machine: Machine,
    pub memory_mib: u64,
    /// The deterministic counts (translation, callgrind, KVM exits).
    pub counts: bool,
    pub json: Option<PathBuf>,
}

/// `NAME=PATH` → (NAME, PATH).
pub fn parse_rom(spec: &str) -> Result<(String, PathBuf)> {
    match spec.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => bail!("expected NAME=PATH for a ROM to measure beside the commits, got {spec:?}"),
    }
}

/// A build's deterministic counts to the kernel entry: the columns of the
/// cost model that predict time (README, "The cost model"). A part that
/// could not be counted is None.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    /// Code translated under TCG (`-d in_asm`).
    pub translated: Option<Translated>,
    /// Host instructions of QEMU's vCPU thread under TCG (callgrind).
    pub vcpu_host_instructions: Option<u64>,
    /// Exits to QEMU under KVM (`perf stat`).
    pub exits: Option<Exits>,
}

/// One build measured: a commit of the range, or a ROM given by name.
#[derive(Clone, Debug, Serialize)]
pub struct CommitResult {
    /// The commit's hash, or the ROM's name.
    pub commit: String,
    /// The commit's subject, or the ROM's path.
    pub subject: String,
    /// Why it was not measured (build failed).
    pub error: Option<String>,
    /// QMP `cont` to the probe's entry marker, per run (ms).
    pub tfw_ms: Vec<f64>,
    pub tfw: Option<Summary>,
    pub counts: Option<Counts>,
    /// Against the previous measured build: the Hodges-Lehmann shift of the
    /// times and its test.
    pub shift: Option<Shift>,
    pub failures: Vec<String>,
}

/// `A..B` → (A, B).
pub fn parse_range(range: &str) -> Result<(&str, &str)> {
    match range.split_once("..") {
        Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.starts_with('.') => Ok((a, b)),
        _ => bail!("expected a range A..B (e.g. HEAD~5..HEAD), got {range:?}"),
    }
}

/// "improves performance by 12.3 %" / "regresses by 4.0 %" (the shift
/// against the previous median), or nothing within the noise.
pub fn verdict(s: &Shift, prev_median: f64) -> Option<String> {
    if s.test.p >= ALPHA || prev_median <= 0.0 {
        return None;
    }
    let change = s.ms / prev_median * 100.0;
    let p = if s.test.p < 0.001 {
        "< 0.001".to_string()
    } else {
        format!("= {:.3}", s.test.p)
    };
    Some(if change < 0.0 {
        format!(
            "improves performance by {:.1} % ({:+.2} ms, Mann-Whitney U p {p})",
            -change, s.ms
        )
    } else {
        format!(
            "regresses by {:.1} % ({:+.2} ms, Mann-Whitney U p {p})",
            change, s.ms
        )
    })
}

/// The counts, with their change from `prev`'s where both were counted.
fn counts_text(c: &Counts, prev: Option<&Counts>) -> String {
    let mut parts = Vec::new();
    if let Some(t) = c.translated {
        let mut s = format!(
            "translated {} blocks / {} insns ≈ {:.2} ms",
            t.blocks,
            t.instructions,
            t.model_us() / 1000.0
        );
        if let Some(p) = prev.and_then(|p| p.translated)
            && p != t
        {
            s += &format!(
                " ({:+} blocks, {:+} insns, {:+.2} ms)",
                t.blocks as i64 - p.blocks as i64,
                t.instructions as i64 - p.instructions as i64,
                (t.model_us() - p.model_us()) / 1000.0
            );
        }
        parts.push(s);
    }
    if let Some(n) = c.vcpu_host_instructions {
        let mut s = format!("vCPU thread {:.2} M host insns", n as f64 / 1e6);
        // (Repeated boots differ by a few host instructions: a change is
        // shown from 0.01 M.)
        if let Some(p) = prev.and_then(|p| p.vcpu_host_instructions)
            && n.abs_diff(p) >= 5_000
        {
            s += &format!(" ({:+.2} M)", (n as f64 - p as f64) / 1e6);
        }
        parts.push(s);
    }
    if let Some(e) = c.exits {
        let mut s = format!(
            "{} exits to QEMU (PIO {}, MMIO {})",
            e.userspace, e.pio, e.mmio
        );
        if let Some(p) = prev.and_then(|p| p.exits)
            && p.userspace != e.userspace
        {
            s += &format!(" ({:+})", e.userspace as i64 - p.userspace as i64);
        }
        parts.push(s);
    }
    parts.join("; ")
}

/// One entry per build, in `boot-benchmark-range`'s manner: the time, the
/// counts, and the verdict against the previous build (`prev`: its median
/// and counts).
pub fn line(r: &CommitResult, prev: Option<(f64, Option<&Counts>)>) -> String {
    // A commit by its first ten hex digits, a ROM by its whole name.
    let is_commit = r.commit.len() == 40 && r.commit.bytes().all(|b| b.is_ascii_hexdigit());
    let short = if is_commit {
        &r.commit[..10]
    } else {
        &r.commit
    };
    let mut s = format!("{short} {}\n    ", r.subject);
    if let Some(e) = &r.error {
        s += &format!("not measured: {e}");
        return s;
    }
    match &r.tfw {
        Some(t) => {
            s += &format!(
                "Result: tFW {:.2}ms [{:.2}–{:.2}] (n={})",
                t.median, t.p25, t.p75, t.runs
            )
        }
        None => s += "Result: no successful runs",
    }
    if let Some(c) = &r.counts {
        let text = counts_text(c, prev.and_then(|(_, c)| c));
        if !text.is_empty() {
            s += &format!("\n    {text}");
        }
    }
    if let (Some(sh), Some((median, _))) = (&r.shift, prev) {
        match verdict(sh, median) {
            Some(v) => s += &format!("\n    ↳ {v}"),
            None => {
                s += &format!(
                    "\n    [{:+.2} ms against the previous, within the noise: p = {:.2}]",
                    sh.ms, sh.test.p
                )
            }
        }
    }
    s
}

fn git(root: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(root)
        .args(args)
        .output()
        .context("running git")?;
    ensure!(
        out.status.success(),
        "git {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The range's commits, oldest first, with A (the baseline) at the front.
fn commits(root: &Path, range: &str) -> Result<Vec<(String, String)>> {
    let (a, _) = parse_range(range)?;
    let base = git(root, &["rev-parse", "--verify", &format!("{a}^{{commit}}")])?;
    let list = git(root, &["rev-list", "--reverse", "--first-parent", range])?;
    let mut out = Vec::new();
    for sha in std::iter::once(base.as_str()).chain(list.lines()) {
        let subject = git(root, &["log", "-1", "--format=%s", sha])?;
        out.push((sha.to_string(), subject));
    }
    Ok(out)
}

/// A worktree at `sha` under `work` (reused when it is there).
fn worktree(root: &Path, work: &Path, sha: &str) -> Result<PathBuf> {
    let dir = work.join(&sha[..12]);
    if !dir.join("Cargo.toml").exists() {
        let _ = git(
            root,
            &["worktree", "remove", "--force", &dir.to_string_lossy()],
        );
        git(
            root,
            &["worktree", "add", "--detach", &dir.to_string_lossy(), sha],
        )?;
    }
    Ok(dir)
}

/// The ROM of `sha`: built once in a worktree (removed again, the ROM stays
/// as `target/bench-range/<commit>.rom`). The worktree goes outside the
/// checkout: cargo reads the `.cargo/config.toml` of every directory above
/// the one it builds in and joins their `rustflags`, so a worktree inside
/// it would build every commit with today's code-generation options too.
fn built_rom(root: &Path, work: &Path, sha: &str) -> Result<PathBuf> {
    let rom = work.join(format!("{}.rom", &sha[..12]));
    if rom.exists() {
        return Ok(rom);
    }
    let trees = std::env::temp_dir().join("ferrite-bench-range");
    std::fs::create_dir_all(&trees)?;
    let dir = worktree(root, &trees, sha)?;
    let built = crate::rom::build_firmware_at(&dir, &work.join("target"), true, &rom);
    let _ = git(
        root,
        &["worktree", "remove", "--force", &dir.to_string_lossy()],
    );
    Ok(built?.path)
}

/// Which of the cost model's tools this host has (checked once).
#[derive(Clone, Copy)]
struct Tools {
    /// valgrind, for QEMU's vCPU host instructions.
    callgrind: bool,
    /// /dev/kvm and perf, for the exits under KVM.
    perf: bool,
}

/// The cost model's counts for one build (`q`: its boot to the entry),
/// each where its tool is there; what could not be counted goes to `skipped`.
fn count(q: &Qemu, expect: &[i32], work: &Path, tools: Tools, skipped: &mut Vec<String>) -> Counts {
    let mut c = Counts::default();
    match crate::bench::cost::translated_code(q, work) {
        Ok(t) => c.translated = Some(t),
        Err(e) => skipped.push(format!("translated code: {e:#}")),
    }
    if tools.callgrind {
        let mut q = q.clone();
        q.accel = Accel::Tcg;
        match crate::host_cost::run_callgrind(&q, expect, &work.join("callgrind")) {
            Ok((_, n)) => c.vcpu_host_instructions = Some(n),
            Err(e) => skipped.push(format!("vCPU host instructions: {e:#}")),
        }
    }
    if tools.perf {
        match crate::bench::cost::kvm_counts(q) {
            Ok(k) => c.exits = k.exits,
            Err(e) => skipped.push(format!("exits under KVM: {e:#}")),
        }
    }
    c
}

pub fn run(opts: &Options) -> Result<()> {
    let root = crate::root();
    let work = root.join("target/bench-range");
    std::fs::create_dir_all(&work)?;
    let list = commits(&root, &opts.range)?;
    ensure!(
        list.len() >= 2 || !opts.roms.is_empty(),
        "{} holds no commits after its base, and no --rom was given",
        opts.range
    );
    for (name, path) in &opts.roms {
        ensure!(path.is_file(), "--rom {name}: no file {}", path.display());
    }
    let kernel = linux_assets::stock_kernel()?;
    let probe_path = work.join("probe.bzImage");
    std::fs::write(&probe_path, probe::build_like(&kernel)?)?;
    let token = "ferrite.bench=1";
    let initrd = linux_assets::build_initramfs(
        &InitramfsSpec {
            expect_cpus: 1,
            expect_mem_mib: opts.memory_mib,
            cmdline_token: token.into(),
            payload_len: 4096,
            poweroff: true,
            kernel_reserves_mib: 0,
        },
        &work.join("initramfs.cpio"),
    )?;
    let append = crate::bench::kernel_command_line(token, opts.machine, false);
    let mut results = Vec::new();
    let mut roms = Vec::new();
    let builds =
        list.iter()
            .map(|(sha, subject)| (sha.clone(), subject.clone(), None))
            .chain(opts.roms.iter().map(|(name, path)| {
                (name.clone(), path.display().to_string(), Some(path.clone()))
            }));
    for (id, subject, given) in builds {
        let rom = match given {
            Some(path) => Ok(path),
            None => {
                eprintln!("building {} {subject}", &id[..10]);
                built_rom(&root, &work, &id)
            }
        };
        let (error, rom) = match rom {
            Ok(r) => (None, Some(r)),
            Err(e) => (Some(format!("{e:#}")), None),
        };
        results.push(CommitResult {
            commit: id,
            subject,
            error,
            tfw_ms: Vec::new(),
            tfw: None,
            counts: None,
            shift: None,
            failures: Vec::new(),
        });
        roms.push(rom);
    }
    let qemu = |rom: &Path| {
        let mut q = Qemu::new(opts.machine, rom.to_path_buf());
        q.accel = Accel::Tcg;
        q.memory_mib = opts.memory_mib;
        q.kernel = Some(probe_path.clone());
        q.initrd = Some(initrd.path.clone());
        q.append = Some(append.clone());
        q.exit_ports = vec![PROBE_PORT];
        q.timeout = Duration::from_secs(60);
        q
    };
    let mut cells: Vec<usize> = (0..roms.len()).filter(|&i| roms[i].is_some()).collect();
    ensure!(!cells.is_empty(), "no build of the range could be measured");
    let entry_codes: Vec<i32> = probe::Entry::ALL
        .iter()
        .map(|e| qemu_exit(e.value()))
        .collect();
    let mut rng = rand::rng();
    let total = cells.len() * (opts.runs + 1);
    let mut n = 0;
    for round in 0..=opts.runs {
        cells.shuffle(&mut rng);
        for &i in &cells {
            n += 1;
            eprint!("\r{n}/{total} runs   ");
            let rom = roms[i].as_ref().context("unbuilt commit")?;
            let outcome = qemu(rom).run_from_cont()?;
            let code = outcome.exit_code.unwrap_or(-1);
            let r = &mut results[i];
            match outcome.from_cont {
                Some(t) if !outcome.timed_out && entry_codes.contains(&code) => {
                    // Round 0 is the warm-up.
                    if round > 0 {
                        r.tfw_ms.push(t.as_secs_f64() * 1000.0);
                    }
                }
                _ => r.failures.push(format!(
                    "round {round}: exit {:?}{}",
                    outcome.exit_code,
                    if outcome.timed_out { " (timeout)" } else { "" }
                )),
            }
        }
    }
    eprintln!();
    let mut skipped = Vec::new();
    let tools = Tools {
        callgrind: opts.counts && crate::host_cost::available(),
        perf: opts.counts && crate::bench::cost::perf_available(&mut skipped),
    };
    if opts.counts && !tools.callgrind {
        skipped.push("QEMU's vCPU host instructions: valgrind not installed".into());
    }
    for (i, r) in results.iter_mut().enumerate() {
        r.tfw = summarize(&r.tfw_ms);
        if opts.counts
            && let Some(rom) = &roms[i]
        {
            eprintln!("counting {}", r.commit);
            let mut why = Vec::new();
            r.counts = Some(count(&qemu(rom), &entry_codes, &work, tools, &mut why));
            skipped.extend(why.into_iter().map(|w| format!("{}: {w}", r.commit)));
        }
    }
    let mut prev: Option<usize> = None;
    for i in 0..results.len() {
        if results[i].tfw.is_none() {
            continue;
        }
        if let Some(p) = prev {
            results[i].shift = shift(&results[i].tfw_ms, &results[p].tfw_ms);
        }
        prev = Some(i);
    }
    println!(
        "ferrite per build of {}{} on {} (TCG, QMP `cont` to the kernel entry, median [p25–p75] of {} interleaved rounds; a change from the previous build flagged at Mann-Whitney U p < {ALPHA}):",
        opts.range,
        if opts.roms.is_empty() {
            ""
        } else {
            " and the ROMs given"
        },
        opts.machine.name(),
        opts.runs
    );
    let mut prev: Option<(f64, Option<&Counts>)> = None;
    for r in &results {
        println!("{}", line(r, prev));
        for f in &r.failures {
            println!("    failed run: {f}");
        }
        if let Some(t) = &r.tfw {
            prev = Some((t.median, r.counts.as_ref()));
        }
    }
    for s in &skipped {
        println!("not counted: {s}");
    }
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("raw samples: {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("HEAD~5..HEAD").unwrap(), ("HEAD~5", "HEAD"));
        assert_eq!(parse_range("abc..def").unwrap(), ("abc", "def"));
        for bad in ["HEAD", "..HEAD", "HEAD..", "A...B", ""] {
            assert!(parse_range(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roms() {
        let (name, path) = parse_rom("ablated=target/x.rom").unwrap();
        assert_eq!(
            (name.as_str(), path),
            ("ablated", PathBuf::from("target/x.rom"))
        );
        for bad in ["ablated", "=x.rom", "ablated=", ""] {
            assert!(parse_rom(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_only_changes_beyond_the_noise() {
        let base = [10.0, 10.4, 9.8, 10.1, 10.3, 9.9, 10.2, 10.0];
        let faster: Vec<f64> = base.iter().map(|x| x * 0.8 + 0.01).collect();
        let s = shift(&faster, &base).unwrap();
        assert!((s.ms + 2.0).abs() < 0.1, "{s:?}");
        let v = verdict(&s, 10.05).unwrap();
        assert!(v.starts_with("improves performance by 19."), "{v}");
        let slower: Vec<f64> = base.iter().map(|x| x * 1.1 + 0.01).collect();
        let s = shift(&slower, &base).unwrap();
        assert!(verdict(&s, 10.05).unwrap().starts_with("regresses by 10."));
        // the same distribution, shuffled and nudged: not flagged
        let same = [10.05, 9.85, 10.35, 10.15, 9.95, 10.25, 10.45, 9.75];
        let s = shift(&same, &base).unwrap();
        assert!(verdict(&s, 10.05).is_none(), "{s:?}");
        assert!(shift(&[], &base).is_none());
    }

    fn result(counts: Counts) -> CommitResult {
        CommitResult {
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            subject: "pci: fewer exits".into(),
            error: None,
            tfw_ms: vec![],
            tfw: summarize(&[4.0, 4.2, 4.4]),
            counts: Some(counts),
            shift: None,
            failures: vec![],
        }
    }

    #[test]
    fn one_entry_per_build() {
        let counts = |blocks, insns, memory, host, exits| Counts {
            translated: Some(Translated {
                blocks,
                instructions: insns,
                memory,
            }),
            vcpu_host_instructions: Some(host),
            exits: Some(Exits {
                userspace: exits,
                pio: exits - 2,
                mmio: 1,
            }),
        };
        let prev = counts(400, 3800, 1200, 45_160_000, 194);
        let mut r = result(counts(390, 3700, 1150, 44_500_000, 190));
        let l = line(&r, Some((4.5, Some(&prev))));
        assert!(l.starts_with("0123456789 pci: fewer exits\n"), "{l}");
        assert!(l.contains("Result: tFW 4.20ms [4.03–4.37] (n=3)"), "{l}");
        // 1.8 µs a block, 0.3 a register instruction, 0.7 a memory one
        assert!(
            l.contains(
                "translated 390 blocks / 3700 insns ≈ 2.27 ms (-10 blocks, -100 insns, -0.07 ms)"
            ),
            "{l}"
        );
        assert!(
            l.contains("vCPU thread 44.50 M host insns (-0.66 M)"),
            "{l}"
        );
        assert!(
            l.contains("190 exits to QEMU (PIO 188, MMIO 1) (-4)"),
            "{l}"
        );
        // a few host instructions more or less is no change
        let again = counts(390, 3700, 1150, 44_501_000, 190);
        let l = line(&r, Some((4.5, Some(&again))));
        assert!(l.contains("44.50 M host insns;"), "{l}");
        // no previous build: the counts alone, no changes and no verdict
        let alone = line(&r, None);
        assert!(alone.contains("≈ 2.27 ms;"), "{alone}");
        assert!(!alone.contains("(-"), "{alone}");
        // a verdict only beside a previous build
        r.shift = shift(&[4.0, 4.2, 4.4], &[5.0, 5.2, 5.4, 5.1, 5.3]);
        let l = line(&r, Some((5.2, Some(&prev))));
        assert!(
            l.contains("↳ improves performance by 19.2 % (-1.00 ms"),
            "{l}"
        );
        r.error = Some("build failed".into());
        assert!(line(&r, None).ends_with("not measured: build failed"));
    }

    #[test]
    fn counts_missing_are_left_out() {
        let r = result(Counts::default());
        let l = line(&r, None);
        assert_eq!(l.lines().count(), 2, "{l}");
        assert!(
            !l.contains("translated") && !l.contains("exits to QEMU"),
            "{l}"
        );
    }
}
