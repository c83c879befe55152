//! `cargo xtask bench-range A..B`: ferrite's tFW at each commit of a range,
//! after R. Jones's `boot-benchmark-range`. Each commit's firmware is built in
//! its own git worktree under `target/bench-range/` (one shared cargo target
//! directory) and turned into a ROM by this xtask's ELF-to-ROM converter. The
//! ROMs boot the bench's probe kernel in shuffled, interleaved rounds after a
//! warm-up, so the host's drift hits every commit alike: tQEMU to the 0xf5
//! marker, the kernel entry at the probe's marker, tFW = entry − median tQEMU.
//! A commit is flagged when its tFW samples differ from the previous commit's
//! by the two-sided Mann-Whitney U test at p < [`ALPHA`]. Guest instructions
//! and port exits come from one boot per commit under KVM (`perf stat`), as in
//! the bench.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use ferrite_contract::qemu_exit;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::bench::{Summary, summarize};
use crate::linux_assets::{self, InitramfsSpec};
use crate::probe::{self, PROBE_PORT};
use crate::qemu::{Accel, Machine, Qemu};
use crate::stats::{MannWhitney, mann_whitney};

/// ferrite's first-instruction marker.
const START_PORT: u16 = ferrite_contract::marker::START_PORT;
/// A change is flagged below this p-value.
pub const ALPHA: f64 = 0.05;

#[derive(Clone, Debug)]
pub struct Options {
    /// `A..B`: A is the baseline, then every commit after it up to B.
    pub range: String,
    pub runs: usize,
    pub machine: Machine,
    pub memory_mib: u64,
    pub count_instructions: bool,
    pub json: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub guest_instructions: u64,
    pub port_exits: u64,
    pub fw_cfg_port_reads: u64,
    pub fw_cfg_dma_requests: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CommitResult {
    pub commit: String,
    pub subject: String,
    /// Why it was not measured (build failed).
    pub error: Option<String>,
    pub start_ms: Vec<f64>,
    pub entry_ms: Vec<f64>,
    /// entry − median start, per run.
    pub tfw_ms: Vec<f64>,
    pub tfw: Option<Summary>,
    pub counts: Option<Counts>,
    /// Against the previous measured commit.
    pub test: Option<MannWhitney>,
    pub change: Option<f64>,
    pub failures: Vec<String>,
}

/// `A..B` → (A, B).
pub fn parse_range(range: &str) -> Result<(&str, &str)> {
    match range.split_once("..") {
        Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.starts_with('.') => Ok((a, b)),
        _ => bail!("expected a range A..B (e.g. HEAD~5..HEAD), got {range:?}"),
    }
}

/// Whether `cur`'s tFW moved from `prev`'s beyond the noise: the relative
/// change of the medians and the test, or None when either has too few runs.
pub fn compare(prev: &[f64], cur: &[f64]) -> Option<(f64, MannWhitney)> {
    let (p, c) = (summarize(prev)?, summarize(cur)?);
    let test = mann_whitney(cur, prev)?;
    (p.median > 0.0).then(|| ((c.median - p.median) / p.median, test))
}

/// "improves performance by 12.3 %" / "regresses by 4.0 %", or nothing
/// within the noise.
pub fn verdict(change: f64, test: &MannWhitney) -> Option<String> {
    if test.p >= ALPHA {
        return None;
    }
    Some(if change < 0.0 {
        format!(
            "improves performance by {:.1} % (Mann-Whitney U p = {:.3})",
            -change * 100.0,
            test.p
        )
    } else {
        format!(
            "regresses by {:.1} % (Mann-Whitney U p = {:.3})",
            change * 100.0,
            test.p
        )
    })
}

/// One line per commit, in `boot-benchmark-range`'s manner.
pub fn line(r: &CommitResult, prev_counts: Option<&Counts>) -> String {
    let short = &r.commit[..r.commit.len().min(10)];
    let mut s = format!("{short} {}\n    ", r.subject);
    if let Some(e) = &r.error {
        s += &format!("not measured: {e}");
        return s;
    }
    match &r.tfw {
        Some(t) => {
            s += &format!(
                "Result: tFW {:.1}ms ± {:.1}ms (n={})",
                t.median, t.sd, t.runs
            )
        }
        None => s += "Result: no successful runs",
    }
    if let Some(c) = &r.counts {
        s += &format!(
            ", {} guest insns, {} port exits",
            c.guest_instructions, c.port_exits
        );
        if let Some(p) = prev_counts
            && p.guest_instructions > 0
            && p.guest_instructions != c.guest_instructions
        {
            let d = c.guest_instructions as f64 / p.guest_instructions as f64 - 1.0;
            s += &format!(" ({:+.1} % insns)", d * 100.0);
        }
    }
    if let (Some(change), Some(test)) = (r.change, &r.test) {
        match verdict(change, test) {
            Some(v) => s += &format!("\n    ↳ {v}"),
            None => s += &format!(" [{:+.1} % of tFW, within the noise]", change * 100.0),
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
    ensure!(out.len() >= 2, "{range} holds no commits after its base");
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
/// as `target/bench-range/<commit>.rom`).
fn built_rom(root: &Path, work: &Path, sha: &str) -> Result<PathBuf> {
    let rom = work.join(format!("{}.rom", &sha[..12]));
    if rom.exists() {
        return Ok(rom);
    }
    let dir = worktree(root, work, sha)?;
    let built = crate::rom::build_firmware_at(&dir, &work.join("target"), true, &rom);
    let _ = git(
        root,
        &["worktree", "remove", "--force", &dir.to_string_lossy()],
    );
    Ok(built?.path)
}

fn count(q: &Qemu) -> Option<Counts> {
    let mut q = q.clone();
    q.accel = Accel::Kvm;
    use crate::insn_steps::{
        FW_CFG_DMA_REQUESTS, FW_CFG_PORT_READS, GUEST_INSTRUCTIONS, PORT_EXITS, perf_stat,
    };
    let values = perf_stat(
        &q,
        &[
            GUEST_INSTRUCTIONS,
            PORT_EXITS,
            FW_CFG_PORT_READS,
            FW_CFG_DMA_REQUESTS,
        ],
    )
    .ok()?;
    match values[..] {
        [insns, pio, reads, dma] => Some(Counts {
            guest_instructions: insns,
            port_exits: pio,
            fw_cfg_port_reads: reads,
            fw_cfg_dma_requests: dma,
        }),
        _ => None,
    }
}

pub fn run(opts: &Options) -> Result<()> {
    let root = crate::root();
    let work = root.join("target/bench-range");
    std::fs::create_dir_all(&work)?;
    let list = commits(&root, &opts.range)?;
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
    let mut append = format!("console=ttyS0 quiet panic=-1 {token}");
    if let (Machine::Microvm, Some(khz)) = (opts.machine, crate::bench::tsc_khz()) {
        append += &format!(" tsc_early_khz={khz}");
    }
    let mut results = Vec::new();
    let mut roms = Vec::new();
    for (sha, subject) in &list {
        eprintln!("building {} {subject}", &sha[..10]);
        let rom = built_rom(&root, &work, sha);
        let (error, rom) = match rom {
            Ok(r) => (None, Some(r)),
            Err(e) => (Some(format!("{e:#}")), None),
        };
        results.push(CommitResult {
            commit: sha.clone(),
            subject: subject.clone(),
            error,
            start_ms: Vec::new(),
            entry_ms: Vec::new(),
            tfw_ms: Vec::new(),
            tfw: None,
            counts: None,
            test: None,
            change: None,
            failures: Vec::new(),
        });
        roms.push(rom);
    }
    let qemu = |rom: &Path, port: u16| {
        let mut q = Qemu::new(opts.machine, rom.to_path_buf());
        q.memory_mib = opts.memory_mib;
        q.kernel = Some(probe_path.clone());
        q.initrd = Some(initrd.path.clone());
        q.append = Some(append.clone());
        q.exit_ports = vec![port];
        q.timeout = Duration::from_secs(60);
        q
    };
    // (commit, is the entry cell)
    let mut cells: Vec<(usize, bool)> = (0..roms.len())
        .filter(|&i| roms[i].is_some())
        .flat_map(|i| [(i, false), (i, true)])
        .collect();
    ensure!(!cells.is_empty(), "no commit of the range built");
    let entry_codes: Vec<i32> = probe::Entry::ALL
        .iter()
        .map(|e| qemu_exit(e.value()))
        .collect();
    let mut rng = rand::rng();
    let total = cells.len() * (opts.runs + 1);
    let mut n = 0;
    for round in 0..=opts.runs {
        cells.shuffle(&mut rng);
        for &(i, entry) in &cells {
            n += 1;
            eprint!("\r{n}/{total} runs   ");
            let rom = roms[i].as_ref().context("unbuilt commit")?;
            let q = qemu(rom, if entry { PROBE_PORT } else { START_PORT });
            let outcome = q.run()?;
            let code = outcome.exit_code.unwrap_or(-1);
            let ok = !outcome.timed_out
                && if entry {
                    entry_codes.contains(&code)
                } else {
                    code == 3
                };
            let r = &mut results[i];
            if !ok {
                r.failures.push(format!(
                    "round {round} {}: exit {:?}{}",
                    if entry { "entry" } else { "start" },
                    outcome.exit_code,
                    if outcome.timed_out { " (timeout)" } else { "" }
                ));
                continue;
            }
            if round > 0 {
                let ms = outcome.wall.as_secs_f64() * 1000.0;
                if entry {
                    r.entry_ms.push(ms);
                } else {
                    r.start_ms.push(ms);
                }
            }
        }
    }
    eprintln!();
    let perf = opts.count_instructions
        && Path::new("/dev/kvm").exists()
        && Command::new("perf").arg("--version").output().is_ok();
    for (i, r) in results.iter_mut().enumerate() {
        if let Some(start) = summarize(&r.start_ms) {
            r.tfw_ms = r.entry_ms.iter().map(|e| e - start.median).collect();
            r.tfw = summarize(&r.tfw_ms);
        }
        if perf && let Some(rom) = &roms[i] {
            r.counts = count(&qemu(rom, PROBE_PORT));
        }
    }
    let mut prev: Option<usize> = None;
    for i in 0..results.len() {
        if results[i].tfw.is_none() {
            continue;
        }
        if let Some(p) = prev
            && let Some((change, test)) = compare(&results[p].tfw_ms, &results[i].tfw_ms)
        {
            results[i].change = Some(change);
            results[i].test = Some(test);
        }
        prev = Some(i);
    }
    println!(
        "tFW per commit of {} on {} (TCG, {} interleaved rounds; change against the previous commit flagged at Mann-Whitney U p < {ALPHA}):",
        opts.range,
        opts.machine.name(),
        opts.runs
    );
    let mut prev_counts: Option<&Counts> = None;
    for r in &results {
        println!("{}", line(r, prev_counts));
        for f in &r.failures {
            println!("    failed run: {f}");
        }
        if r.counts.is_some() {
            prev_counts = r.counts.as_ref();
        }
    }
    if !perf && opts.count_instructions {
        println!("(no guest instruction counts: they need /dev/kvm and perf)");
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
    fn flags_only_changes_beyond_the_noise() {
        let base = [10.0, 10.4, 9.8, 10.1, 10.3, 9.9, 10.2, 10.0];
        let faster: Vec<f64> = base.iter().map(|x| x * 0.8 + 0.01).collect();
        let (change, test) = compare(&base, &faster).unwrap();
        assert!((change + 0.2).abs() < 0.01, "{change}");
        let v = verdict(change, &test).unwrap();
        assert!(v.starts_with("improves performance by 19."), "{v}");
        let slower: Vec<f64> = base.iter().map(|x| x * 1.1 + 0.01).collect();
        let (change, test) = compare(&base, &slower).unwrap();
        assert!(
            verdict(change, &test)
                .unwrap()
                .starts_with("regresses by 10.")
        );
        // the same distribution, shuffled and nudged: not flagged
        let same = [10.05, 9.85, 10.35, 10.15, 9.95, 10.25, 10.45, 9.75];
        let (change, test) = compare(&base, &same).unwrap();
        assert!(verdict(change, &test).is_none(), "{test:?}");
        assert!(compare(&[], &base).is_none());
    }

    #[test]
    fn one_line_per_commit() {
        let mut r = CommitResult {
            commit: "0123456789abcdef".into(),
            subject: "pci: fewer exits".into(),
            error: None,
            start_ms: vec![],
            entry_ms: vec![],
            tfw_ms: vec![],
            tfw: summarize(&[4.0, 4.2, 4.4]),
            counts: Some(Counts {
                guest_instructions: 900,
                port_exits: 10,
                ..Counts::default()
            }),
            test: None,
            change: None,
            failures: vec![],
        };
        let prev = Counts {
            guest_instructions: 1000,
            ..Counts::default()
        };
        let l = line(&r, Some(&prev));
        assert!(l.starts_with("0123456789 pci: fewer exits\n"), "{l}");
        assert!(l.contains("Result: tFW 4.2ms ± 0.2ms (n=3)"), "{l}");
        assert!(
            l.contains("900 guest insns, 10 port exits (-10.0 % insns)"),
            "{l}"
        );
        r.error = Some("build failed".into());
        assert!(line(&r, None).ends_with("not measured: build failed"));
    }
}
