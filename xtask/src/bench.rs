//! `cargo xtask bench`: tQEMU, tFW and tKernel for ferrite and its peers, after
//! NEMU's "Measuring Boot Latency": boot QEMU many times with an isa-debug-exit
//! device on the port of one phase's marker, time the whole QEMU process, and
//! derive the phases from the medians.
//!
//! * tQEMU  = QEMU start to ferrite's first instruction (its 0xf5 marker); the
//!   peers write no markers, so they are given ferrite's figure on the same machine.
//! * tFW    = time to the kernel entry (the probe kernel's marker, port 0xf7) − tQEMU.
//! * tKernel = time to the first userspace instruction (/init writes 0xf6) − the
//!   probe's time. The probe is as large as the real kernel, so both pay the same
//!   fw_cfg loading.
//!
//! Cells run interleaved, in shuffled rounds after a warm-up, so the noise of a
//! shared 2-core machine spreads over all of them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use comfy_table::Table;
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use serde::Serialize;
use statrs::statistics::{Data, Distribution, Max, Min, OrderStatistics};

use crate::linux_assets::{self, InitramfsSpec};
use crate::probe::{self, PROBE_PORT};
use crate::qemu::{Accel, Machine, Qemu};

/// ferrite's start marker port (firmware/src/boot.rs).
const START_PORT: u16 = 0xF5;
/// The port /init writes 2 to.
const USER_PORT: u16 = 0xF6;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Firmware {
    Ferrite,
    Qboot,
    Seabios,
    Ovmf,
}

impl Firmware {
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Ferrite => "ferrite",
            Firmware::Qboot => "qboot",
            Firmware::Seabios => "SeaBIOS",
            Firmware::Ovmf => "OVMF",
        }
    }

    /// The image, or why it cannot be used.
    pub fn image(self, ferrite: &Path, machine: Machine) -> Result<PathBuf, String> {
        let path = match (self, machine) {
            (Firmware::Ferrite, _) => ferrite.to_path_buf(),
            (Firmware::Qboot, _) => "/usr/share/qemu/qboot.rom".into(),
            (Firmware::Seabios, Machine::Microvm) => "/usr/share/seabios/bios-microvm.bin".into(),
            (Firmware::Seabios, _) => "/usr/share/seabios/bios-256k.bin".into(),
            (Firmware::Ovmf, Machine::Microvm) => {
                return Err("OVMF does not support microvm".into());
            }
            (Firmware::Ovmf, _) => "/usr/share/ovmf/OVMF.fd".into(),
        };
        if path.exists() {
            Ok(path)
        } else {
            Err(format!(
                "{} not found (apt-get install qemu-system-data seabios ovmf)",
                path.display()
            ))
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Phase {
    /// To ferrite's first instruction.
    Start,
    /// To the probe kernel's entry.
    Entry,
    /// To the real kernel's first userspace instruction.
    User,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub runs: usize,
    pub machines: Vec<Machine>,
    pub firmwares: Vec<Firmware>,
    pub memory_mib: u64,
    pub cpus: u32,
    pub kernel: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
    /// Count guest instructions under KVM with perf, where possible.
    pub count_instructions: bool,
    /// Vary one parameter and report how tQEMU and tFW grow with it.
    pub sweep: Option<Sweep>,
    /// Time tKernel for ferrite only (`--quick`): it is the kernel's own time,
    /// the same after every firmware, and with the stock kernel under TCG each
    /// of those boots takes seconds.
    pub tkernel_ferrite_only: bool,
}

/// What a sweep varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SweepParam {
    /// Guest memory in MiB.
    Memory,
    /// vCPUs.
    Cpus,
    /// Size of the probe kernel in MiB (how loading cost grows).
    KernelSize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Sweep {
    pub param: SweepParam,
    pub values: Vec<u64>,
}

impl std::str::FromStr for Sweep {
    type Err = String;
    /// `memory=128,512,2048`, `cpus=1,2,4` or `kernel-size=2,8,32`.
    fn from_str(s: &str) -> Result<Sweep, String> {
        let (name, values) = s.split_once('=').ok_or("expected PARAM=V1,V2,...")?;
        let param = match name {
            "memory" => SweepParam::Memory,
            "cpus" => SweepParam::Cpus,
            "kernel-size" => SweepParam::KernelSize,
            _ => {
                return Err(format!(
                    "unknown sweep parameter {name} (memory, cpus, kernel-size)"
                ));
            }
        };
        let values = values
            .split(',')
            .map(|v| v.trim().parse::<u64>().map_err(|e| format!("{v}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if values.is_empty() || values.contains(&0) {
            return Err("sweep values must be positive".into());
        }
        Ok(Sweep { param, values })
    }
}

impl Options {
    /// The sweep's values, or one "no sweep" entry.
    fn sweep_values(&self) -> Vec<Option<u64>> {
        match &self.sweep {
            Some(s) => s.values.iter().copied().map(Some).collect(),
            None => vec![None],
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub ms: f64,
    pub max_rss_kib: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub firmware: Firmware,
    pub machine: String,
    pub phase: Phase,
    pub command_line: String,
    pub samples: Vec<Sample>,
    pub failures: Vec<String>,
    /// Which kernel entry the firmware used (probe cells).
    pub entry: Option<String>,
    /// The swept parameter's value, in a sweep.
    pub sweep: Option<u64>,
    #[serde(skip)]
    qemu: Qemu,
    #[serde(skip)]
    expect: Vec<i32>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub runs: usize,
    pub mean: f64,
    pub sd: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub p25: f64,
    pub p75: f64,
}

/// Statistics of a set of samples (ms).
pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut data = Data::new(values.to_vec());
    Some(Summary {
        runs: values.len(),
        mean: data.mean().unwrap_or(f64::NAN),
        // one sample has no spread (statrs says NaN)
        sd: data.std_dev().filter(|sd| sd.is_finite()).unwrap_or(0.0),
        median: data.median(),
        min: data.min(),
        max: data.max(),
        p25: data.lower_quartile(),
        p75: data.upper_quartile(),
    })
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub guest_instructions: u64,
    pub fw_cfg_port_reads: u64,
    pub fw_cfg_dma_requests: u64,
}

#[derive(Serialize)]
struct Report<'a> {
    date: String,
    host: String,
    qemu: String,
    kernel: String,
    cells: &'a [Cell],
    instructions: BTreeMap<String, Counts>,
    timelines: BTreeMap<String, Vec<TimelineStep>>,
    skipped: Vec<String>,
}

/// One step of ferrite's own boot sequence, from its timeline report.
#[derive(Clone, Debug, Serialize)]
pub struct TimelineStep {
    pub step: String,
    /// Share of ferrite's time from the reset vector to the last stamp (TCG).
    /// None for the hand-off after the last stamp, which only the instruction
    /// trace sees.
    pub share: Option<f64>,
    /// That share of the measured tFW.
    pub ms: Option<f64>,
    /// Guest instructions the step executed, counted under KVM
    /// ([`crate::insn_steps`]).
    pub guest_instructions: Option<u64>,
}

/// The row after the last stamp in an instruction trace: the jump to the
/// kernel and the kernel's (probe's) first instructions up to its marker.
const HANDOFF_STEP: &str = "handoff";

/// Parses `ferrite-timeline: reset=0 rust=N ...` into per-step shares.
pub fn parse_timeline(line: &str) -> Option<Vec<(String, f64)>> {
    let stamps: Vec<(&str, u64)> = line
        .strip_prefix("ferrite-timeline:")?
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k, v.parse().ok()?))
        })
        .collect::<Option<_>>()?;
    let total = stamps.last()?.1 as f64;
    if total <= 0.0 || stamps.windows(2).any(|w| w[1].1 < w[0].1) {
        return None;
    }
    Some(
        stamps
            .windows(2)
            .map(|w| (w[1].0.to_string(), (w[1].1 - w[0].1) as f64 / total))
            .collect(),
    )
}

/// One extra boot of ferrite per machine with its timeline report switched on
/// (time per step under TCG) and, with `elf`, one under KVM with every
/// instruction traced (instructions per step).
fn ferrite_timelines(
    cells: &[Cell],
    work: &Path,
    elf: Option<&Path>,
    skipped: &mut Vec<String>,
) -> BTreeMap<String, Vec<TimelineStep>> {
    let mut out = BTreeMap::new();
    for cell in cells
        .iter()
        .filter(|c| c.firmware == Firmware::Ferrite && c.phase == Phase::Entry && c.sweep.is_none())
    {
        let log = work.join(format!("timeline-{}.txt", cell.machine));
        let _ = std::fs::remove_file(&log);
        let mut q = cell.qemu.clone();
        q.extra.extend([
            "-debugcon".into(),
            format!("file:{}", log.display()),
            "-fw_cfg".into(),
            "name=opt/ferrite/timeline,string=1".into(),
        ]);
        if q.run().is_err() {
            continue;
        }
        let Some(shares) = std::fs::read_to_string(&log)
            .ok()
            .and_then(|l| parse_timeline(l.trim()))
        else {
            continue;
        };
        let p = phases(cells, Firmware::Ferrite, &cell.machine, None);
        let tfw = p
            .entry
            .as_ref()
            .zip(p.start.as_ref())
            .map(|(e, s)| e.median - s.median);
        let mut steps: Vec<TimelineStep> = shares
            .into_iter()
            .map(|(step, share)| TimelineStep {
                step,
                share: Some(share),
                ms: tfw.map(|t| t * share),
                guest_instructions: None,
            })
            .collect();
        if let Some(elf) = elf {
            match crate::insn_steps::record(&cell.qemu, elf, work) {
                Ok(seg) if seg.counts.len() == steps.len() + 1 => {
                    for (step, n) in steps.iter_mut().zip(&seg.counts) {
                        step.guest_instructions = Some(*n);
                    }
                    steps.push(TimelineStep {
                        step: HANDOFF_STEP.into(),
                        share: None,
                        ms: None,
                        guest_instructions: seg.counts.last().copied(),
                    });
                }
                Ok(seg) => skipped.push(format!(
                    "instructions per step on {}: {} stamp calls in the trace, {} steps in the timeline",
                    cell.machine,
                    seg.counts.len() - 1,
                    steps.len()
                )),
                Err(e) => skipped.push(format!(
                    "instructions per step on {}: {e:#}",
                    cell.machine
                )),
            }
        }
        out.insert(cell.machine.clone(), steps);
    }
    out
}

const TIMELINE_HEADER: [&str; 4] = ["step", "share of tFW", "≈ ms (TCG)", "guest insns (KVM)"];

fn timeline_rows(steps: &[TimelineStep]) -> Vec<[String; 4]> {
    let mut rows: Vec<[String; 4]> = steps
        .iter()
        .map(|s| {
            [
                s.step.clone(),
                s.share
                    .map_or("–".into(), |x| format!("{:.1} %", x * 100.0)),
                fmt_ms(s.ms),
                s.guest_instructions.map_or("–".into(), |n| n.to_string()),
            ]
        })
        .collect();
    if steps.iter().any(|s| s.guest_instructions.is_some()) {
        let total: u64 = steps.iter().filter_map(|s| s.guest_instructions).sum();
        rows.push([
            "total".into(),
            String::new(),
            String::new(),
            total.to_string(),
        ]);
    }
    rows
}

fn render_timeline(machine: &str, steps: &[TimelineStep]) -> Table {
    let mut t = Table::new();
    let mut header = TIMELINE_HEADER.map(String::from);
    header[0] = format!("ferrite on {machine}: step");
    t.set_header(header);
    for r in timeline_rows(steps) {
        t.add_row(r);
    }
    t
}

fn machine_name(m: Machine) -> &'static str {
    match m {
        Machine::Pc => "pc",
        Machine::Q35 => "q35",
        Machine::Microvm => "microvm",
    }
}

/// The host's TSC frequency in kHz, for microvm's `tsc_early_khz=` under TCG.
pub fn tsc_khz() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0) as u64)
}

pub fn run(opts: &Options, rom: &crate::rom::Rom) -> Result<()> {
    let (ferrite_rom, elf) = (rom.path.as_path(), rom.elf.as_path());
    let kernel = match &opts.kernel {
        Some(k) => k.clone(),
        None => linux_assets::stock_kernel()?,
    };
    let work = linux_assets::cache_dir().join("bench");
    std::fs::create_dir_all(&work)?;
    let probe_path = work.join("probe.bzImage");
    std::fs::write(&probe_path, crate::pvh_probe::build_like(&kernel)?)?;
    let token = "ferrite.bench=1";
    // /init checks that it sees the CPUs and memory it was booted with, so a
    // memory or CPU sweep needs one initramfs per value.
    let initramfs = |cpus: u32, memory: u64| {
        linux_assets::build_initramfs(
            &InitramfsSpec {
                expect_cpus: cpus,
                expect_mem_mib: memory,
                cmdline_token: token.into(),
                payload_len: 4096,
                poweroff: true,
            },
            &work.join(format!("initramfs-{cpus}cpu-{memory}M.cpio")),
        )
    };

    let mut cells = Vec::new();
    let mut skipped = Vec::new();
    for (machine, value) in opts
        .machines
        .iter()
        .flat_map(|&m| opts.sweep_values().into_iter().map(move |v| (m, v)))
    {
        let (mut memory, mut cpus, mut probe) = (opts.memory_mib, opts.cpus, probe_path.clone());
        match (opts.sweep.as_ref().map(|s| s.param), value) {
            (Some(SweepParam::Memory), Some(v)) => memory = v,
            (Some(SweepParam::Cpus), Some(v)) => cpus = v as u32,
            (Some(SweepParam::KernelSize), Some(v)) => {
                probe = work.join(format!("probe-{v}M.bzImage"));
                std::fs::write(&probe, probe::build((v << 20) as usize, 0))?;
            }
            _ => {}
        }
        let initrd = initramfs(cpus, memory)?;
        let mut append = format!("console=ttyS0 quiet panic=-1 {token}");
        if let (Machine::Microvm, Some(khz)) = (machine, tsc_khz()) {
            write!(append, " tsc_early_khz={khz}").unwrap();
        }
        for &fw in &opts.firmwares {
            let image = match fw.image(ferrite_rom, machine) {
                Ok(p) => p,
                Err(why) => {
                    skipped.push(format!("{} on {}: {why}", fw.name(), machine_name(machine)));
                    continue;
                }
            };
            let sweep = opts.sweep.as_ref().map(|s| s.param);
            for phase in phases_to_time(fw, sweep, opts.tkernel_ferrite_only) {
                let (kernel, port) = match phase {
                    Phase::Start => (probe.clone(), START_PORT),
                    Phase::Entry => (probe.clone(), PROBE_PORT),
                    Phase::User => (kernel.clone(), USER_PORT),
                };
                let mut q = Qemu::new(machine, image.clone());
                q.accel = Accel::Tcg;
                q.memory_mib = memory;
                q.cpus = cpus;
                q.kernel = Some(kernel);
                q.initrd = Some(initrd.path.clone());
                q.append = Some(append.clone());
                q.exit_ports = vec![port];
                q.timeout = Duration::from_secs(if fw == Firmware::Ovmf { 120 } else { 60 });
                let expect = match phase {
                    Phase::Start => vec![3],
                    Phase::Entry => probe::Entry::ALL
                        .iter()
                        .map(|e| e.value() as i32 * 2 + 1)
                        .collect(),
                    Phase::User => vec![5],
                };
                cells.push(Cell {
                    firmware: fw,
                    machine: machine_name(machine).into(),
                    phase,
                    command_line: relative(&q.command_line()),
                    samples: Vec::new(),
                    failures: Vec::new(),
                    entry: None,
                    sweep: value,
                    qemu: q,
                    expect,
                });
            }
        }
    }
    if cells.is_empty() {
        bail!("nothing to run: {}", skipped.join("; "));
    }

    let total = (cells.len() * (opts.runs + 1)) as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} runs, {elapsed} [{msg}]").unwrap(),
    );
    let mut order: Vec<usize> = (0..cells.len()).collect();
    let mut rng = rand::rng();
    for round in 0..=opts.runs {
        order.shuffle(&mut rng);
        for &i in &order {
            let cell = &mut cells[i];
            // A cell whose warm-up failed (e.g. a firmware that cannot boot the
            // probe) is reported, not retried for every round.
            if round > 0
                && cell
                    .failures
                    .first()
                    .is_some_and(|f| f.starts_with("warm-up"))
            {
                bar.inc(1);
                continue;
            }
            bar.set_message(format!(
                "{} {} {:?}",
                cell.firmware.name(),
                cell.machine,
                cell.phase
            ));
            let outcome = cell.qemu.run()?;
            bar.inc(1);
            let code = outcome.exit_code.unwrap_or(-1);
            if outcome.timed_out || !cell.expect.contains(&code) {
                cell.failures.push(format!(
                    "{}exit {:?}{}",
                    if round == 0 {
                        "warm-up failed, cell skipped: "
                    } else {
                        ""
                    },
                    outcome.exit_code,
                    if outcome.timed_out { " (timeout)" } else { "" }
                ));
                continue;
            }
            if cell.phase == Phase::Entry {
                cell.entry = probe::Entry::from_exit_code(code).map(|e| e.name().to_string());
            }
            if round > 0 {
                cell.samples.push(Sample {
                    ms: outcome.wall.as_secs_f64() * 1000.0,
                    max_rss_kib: outcome.max_rss_kib,
                });
            }
        }
    }
    bar.finish_and_clear();

    let perf = opts.count_instructions && perf_available(&mut skipped);
    let instructions = if perf {
        count_instructions(&cells, &mut skipped)
    } else {
        BTreeMap::new()
    };
    let trace_elf = perf.then_some(elf);
    let timelines = ferrite_timelines(&cells, &work, trace_elf, &mut skipped);
    let table = render(&cells, &instructions, opts);
    println!("{table}");
    for (machine, steps) in &timelines {
        println!("{}", render_timeline(machine, steps));
    }
    for s in &skipped {
        println!("skipped: {s}");
    }
    for c in cells.iter().filter(|c| !c.failures.is_empty()) {
        println!(
            "failed runs: {} {} {:?}: {} ({})",
            c.firmware.name(),
            c.machine,
            c.phase,
            c.failures.len(),
            c.failures.join(", ")
        );
    }
    let report = Report {
        date: command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        host: command_output("uname", &["-srm"]),
        qemu: command_output("qemu-system-x86_64", &["--version"])
            .lines()
            .next()
            .unwrap_or("")
            .into(),
        kernel: relative(&kernel.display().to_string()),
        cells: &cells,
        instructions,
        timelines,
        skipped,
    };
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("raw samples: {}", path.display());
    }
    let svg = match &opts.json {
        Some(json) => json.with_extension("svg"),
        None => crate::root().join("target/bench.svg"),
    };
    let bars = chart_bars(&cells, opts);
    if !bars.is_empty() {
        let title = format!(
            "Boot phases, median of {} runs ({})",
            opts.runs, report.qemu
        );
        crate::chart::write_svg(&svg, &title, &bars)?;
        println!("chart: {}", svg.display());
    }
    if let Some(path) = &opts.markdown {
        std::fs::write(path, markdown(&cells, &report.instructions, opts, &report))?;
        println!("markdown table: {}", path.display());
    }
    Ok(())
}

/// Paths inside the workspace, relative to it: results are committed and shared.
fn relative(text: &str) -> String {
    text.replace(&format!("{}/", crate::root().display()), "")
}

pub fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Phase figures of one firmware on one machine: (tQEMU, tFW, tKernel) medians.
struct Phases {
    start: Option<Summary>,
    entry: Option<Summary>,
    user: Option<Summary>,
}

fn phases(cells: &[Cell], fw: Firmware, machine: &str, sweep: Option<u64>) -> Phases {
    let get = |f: Firmware, p: Phase| {
        cells
            .iter()
            .find(|c| c.firmware == f && c.machine == machine && c.phase == p && c.sweep == sweep)
            .and_then(|c| summarize(&c.samples.iter().map(|s| s.ms).collect::<Vec<_>>()))
    };
    Phases {
        start: get(Firmware::Ferrite, Phase::Start),
        entry: get(fw, Phase::Entry),
        user: get(fw, Phase::User),
    }
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1}"))
}

/// A phase derived as the difference of two medians: below zero it only says
/// that the two are within this machine's noise, and the table says so.
fn fmt_derived(v: Option<f64>) -> String {
    match v {
        Some(v) if v < 0.0 => format!("{v:.1} (noise)"),
        v => fmt_ms(v),
    }
}

fn rows(
    cells: &[Cell],
    instructions: &BTreeMap<String, Counts>,
    opts: &Options,
) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for (m, sweep) in opts
        .machines
        .iter()
        .flat_map(|&m| opts.sweep_values().into_iter().map(move |v| (m, v)))
    {
        let machine = machine_name(m);
        let ferrite = phases(cells, Firmware::Ferrite, machine, sweep);
        let ferrite_fw = ferrite
            .entry
            .as_ref()
            .zip(ferrite.start.as_ref())
            .map(|(e, s)| e.median - s.median);
        for &fw in &opts.firmwares {
            if !cells
                .iter()
                .any(|c| c.firmware == fw && c.machine == machine)
            {
                continue;
            }
            let p = phases(cells, fw, machine, sweep);
            let tqemu = p.start.as_ref().map(|s| s.median);
            let tfw = p.entry.as_ref().zip(tqemu).map(|(e, q)| e.median - q);
            let tkernel = p
                .user
                .as_ref()
                .zip(p.entry.as_ref())
                .map(|(u, e)| u.median - e.median);
            let here = |c: &&Cell| c.firmware == fw && c.machine == machine && c.sweep == sweep;
            let entry_cell = cells.iter().filter(here).find(|c| c.phase == Phase::Entry);
            let rss = cells
                .iter()
                .filter(here)
                .filter(|c| c.phase == Phase::Entry)
                .flat_map(|c| c.samples.iter().map(|s| s.max_rss_kib))
                .max();
            let failures: usize = cells.iter().filter(here).map(|c| c.failures.len()).sum();
            let counts = instructions.get(&format!("{}/{}", fw.name(), machine));
            rows.push(vec![
                machine.to_string(),
                sweep.map_or("–".into(), |v| v.to_string()),
                fw.name().to_string(),
                fmt_ms(tqemu),
                fmt_derived(tfw),
                p.entry.as_ref().map_or("–".into(), |e| {
                    format!(
                        "{:.1} ± {:.1} [{:.1}–{:.1}] n={}",
                        e.median, e.sd, e.p25, e.p75, e.runs
                    )
                }),
                fmt_derived(tkernel),
                fmt_ms(p.user.as_ref().map(|u| u.median)),
                match (tfw, ferrite_fw) {
                    (Some(a), Some(b)) if a > 0.0 && b > 0.0 => format!("{:.2}", a / b),
                    _ => "–".into(),
                },
                entry_cell
                    .and_then(|c| c.entry.clone())
                    .unwrap_or_else(|| "–".into()),
                rss.map_or("–".into(), |r| format!("{}", r / 1024)),
                counts.map_or("–".into(), |c| c.guest_instructions.to_string()),
                counts.map_or("–".into(), |c| {
                    format!("{}/{}", c.fw_cfg_port_reads, c.fw_cfg_dma_requests)
                }),
                failures.to_string(),
            ]);
        }
    }
    rows
}

const HEADER: [&str; 14] = [
    "machine",
    "sweep value",
    "firmware",
    "tQEMU ms",
    "tFW ms",
    "to kernel entry ms (median ± sd [p25–p75])",
    "tKernel ms",
    "to userspace ms",
    "tFW / ferrite",
    "entry",
    "peak RSS MiB",
    "guest insns (KVM)",
    "fw_cfg PIO reads/DMA",
    "failed runs",
];

fn render(cells: &[Cell], instructions: &BTreeMap<String, Counts>, opts: &Options) -> Table {
    let mut t = Table::new();
    t.set_header(HEADER);
    for r in rows(cells, instructions, opts) {
        t.add_row(r);
    }
    t
}

fn markdown(
    cells: &[Cell],
    instructions: &BTreeMap<String, Counts>,
    opts: &Options,
    report: &Report,
) -> String {
    let mut s = format!(
        "Measured {} on `{}` with {}, kernel `{}`, -m {} -smp {}, TCG, {} runs per cell after one warm-up, interleaved.\n\n",
        report.date,
        report.host,
        report.qemu,
        Path::new(&report.kernel)
            .file_name()
            .unwrap_or_default()
            .to_string_lossy(),
        opts.memory_mib,
        opts.cpus,
        opts.runs
    );
    s += &format!(
        "| {} |\n|{}\n",
        HEADER.join(" | "),
        "---|".repeat(HEADER.len())
    );
    for r in rows(cells, instructions, opts) {
        s += &format!("| {} |\n", r.join(" | "));
    }
    for (machine, steps) in &report.timelines {
        s += &format!(
            "\nferrite's own steps on {machine} (time: one TCG boot's timeline scaled to the median tFW; instructions: one KVM boot, traced):\n\n| {} |\n|{}\n",
            TIMELINE_HEADER.join(" | "),
            "---|".repeat(TIMELINE_HEADER.len())
        );
        for r in timeline_rows(steps) {
            s += &format!("| {} |\n", r.join(" | "));
        }
    }
    s
}

/// The stacked bars of the chart: one per machine and firmware (no sweep).
fn chart_bars(cells: &[Cell], opts: &Options) -> Vec<crate::chart::Bar> {
    let mut bars = Vec::new();
    for m in &opts.machines {
        let machine = machine_name(*m);
        for &fw in &opts.firmwares {
            let p = phases(cells, fw, machine, None);
            if let (Some(start), Some(entry)) = (&p.start, &p.entry) {
                bars.push(crate::chart::Bar {
                    label: format!("{machine} {}", fw.name()),
                    tqemu: start.median,
                    tfw: entry.median - start.median,
                    tkernel: p.user.as_ref().map(|u| u.median - entry.median),
                });
            }
        }
    }
    bars
}

/// The markers a firmware's boots run to: ferrite's own start marker (tQEMU),
/// the probe's entry (tFW) and userspace (tKernel). The kernel-size sweep varies
/// the padded probe, which has no kernel behind it: tQEMU and tFW only; with
/// `tkernel_ferrite_only`, the peers stop at the probe too.
fn phases_to_time(
    fw: Firmware,
    sweep: Option<SweepParam>,
    tkernel_ferrite_only: bool,
) -> Vec<Phase> {
    let mut phases = vec![Phase::Entry];
    if fw == Firmware::Ferrite {
        phases.insert(0, Phase::Start);
    }
    if sweep != Some(SweepParam::KernelSize) && (fw == Firmware::Ferrite || !tkernel_ferrite_only) {
        phases.push(Phase::User);
    }
    phases
}

/// Whether guest instructions can be counted here; if not, says why in `skipped`.
fn perf_available(skipped: &mut Vec<String>) -> bool {
    let why = if !Path::new("/dev/kvm").exists() {
        "no /dev/kvm"
    } else if Command::new("perf").arg("--version").output().is_err() {
        "perf not installed (apt-get install linux-perf)"
    } else {
        return true;
    };
    skipped.push(format!("instruction counts: {why}"));
    false
}

/// Guest instructions and fw_cfg traffic per firmware, from the probe cell run
/// once under KVM with `perf stat` (this machine's KVM emulates every guest
/// instruction, so the count is exact). The caller checks [`perf_available`].
fn count_instructions(cells: &[Cell], skipped: &mut Vec<String>) -> BTreeMap<String, Counts> {
    let mut out = BTreeMap::new();
    for cell in cells.iter().filter(|c| c.phase == Phase::Entry) {
        if cell.firmware == Firmware::Ovmf {
            skipped.push(format!(
                "instruction count for OVMF {}: this machine's KVM emulates every instruction, and its emulator lacks x87 instructions OVMF uses",
                cell.machine
            ));
            continue;
        }
        let mut q = cell.qemu.clone();
        q.accel = Accel::Kvm;
        let mut cmd = crate::insn_steps::perf_qemu(
            &q,
            &[
                "stat",
                "-x,",
                "-e",
                "kvm:kvm_emulate_insn",
                "-e",
                "kvm:kvm_pio",
                "--filter",
                "port == 0x511",
                "-e",
                "kvm:kvm_pio",
                "--filter",
                "port == 0x518",
            ],
        );
        let Ok(output) = cmd.output() else { continue };
        let text = String::from_utf8_lossy(&output.stderr);
        let values: Vec<u64> = text
            .lines()
            .filter(|l| l.contains(",kvm:"))
            .filter_map(|l| l.split(',').next()?.parse().ok())
            .collect();
        if let [insns, pio, dma] = values[..] {
            out.insert(
                format!("{}/{}", cell.firmware.name(), cell.machine),
                Counts {
                    guest_instructions: insns,
                    fw_cfg_port_reads: pio,
                    fw_cfg_dma_requests: dma,
                },
            );
        } else {
            skipped.push(format!(
                "instruction count for {} {}: perf said {text}",
                cell.firmware.name(),
                cell.machine
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_arguments() {
        let s: Sweep = "memory=128,512".parse().unwrap();
        assert_eq!((s.param, s.values), (SweepParam::Memory, vec![128, 512]));
        assert_eq!(
            "kernel-size=2".parse::<Sweep>().unwrap().param,
            SweepParam::KernelSize
        );
        assert!("cpus=".parse::<Sweep>().is_err());
        assert!("cpus=0".parse::<Sweep>().is_err());
        assert!("disk=1".parse::<Sweep>().is_err());
        assert!("memory".parse::<Sweep>().is_err());
    }

    #[test]
    fn timeline_shares() {
        let steps =
            parse_timeline("ferrite-timeline: reset=0 rust=10 fw_cfg=30 zero_page=100").unwrap();
        assert_eq!(
            steps,
            [
                ("rust".to_string(), 0.1),
                ("fw_cfg".to_string(), 0.2),
                ("zero_page".to_string(), 0.7)
            ]
        );
        assert!(parse_timeline("ferrite-timeline: reset=0 rust=10 fw_cfg=5").is_none());
        assert!(parse_timeline("garbage").is_none());
        assert!(parse_timeline("ferrite-timeline: reset=0 rust=x").is_none());
    }

    #[test]
    fn summary_statistics() {
        let s = summarize(&[10.0, 20.0, 30.0, 40.0, 50.0]).unwrap();
        assert_eq!(s.runs, 5);
        assert_eq!(s.median, 30.0);
        assert_eq!(s.mean, 30.0);
        assert_eq!((s.min, s.max), (10.0, 50.0));
        assert!((s.sd - 15.811).abs() < 0.01);
        assert!(s.p25 <= 20.0 && s.p25 >= 10.0);
        assert!(s.p75 >= 40.0 && s.p75 <= 50.0);
        assert!(summarize(&[]).is_none());
        let one = summarize(&[7.0]).unwrap();
        assert_eq!((one.median, one.min, one.max), (7.0, 7.0, 7.0));
        assert_eq!(one.sd, 0.0);
    }

    #[test]
    fn negative_differences_are_marked_as_noise() {
        assert_eq!(fmt_derived(Some(-17.54)), "-17.5 (noise)");
        assert_eq!(fmt_derived(Some(3.0)), "3.0");
        assert_eq!(fmt_derived(None), "–");
    }

    #[test]
    fn phases_each_firmware_is_timed_to() {
        // --quick: tKernel after ferrite only
        assert_eq!(phases_to_time(Firmware::Qboot, None, true), [Phase::Entry]);
        assert_eq!(
            phases_to_time(Firmware::Ferrite, None, true),
            [Phase::Start, Phase::Entry, Phase::User]
        );
        use Phase::*;
        let sweep = |p: &str| Some(p.parse::<Sweep>().unwrap().param);
        assert_eq!(
            phases_to_time(Firmware::Ferrite, None, false),
            [Start, Entry, User]
        );
        assert_eq!(phases_to_time(Firmware::Qboot, None, false), [Entry, User]);
        // memory and CPU sweeps keep tKernel; the padded probe has no kernel
        assert_eq!(
            phases_to_time(Firmware::Seabios, sweep("cpus=1,2"), false),
            [Entry, User]
        );
        assert_eq!(
            phases_to_time(Firmware::Ferrite, sweep("memory=128"), false),
            [Start, Entry, User]
        );
        assert_eq!(
            phases_to_time(Firmware::Ferrite, sweep("kernel-size=2"), false),
            [Start, Entry]
        );
    }
}
