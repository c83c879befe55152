//! The results: terminal tables, Markdown, JSON and the chart.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use comfy_table::Table;
use serde::Serialize;

use super::cost::{Counts, Exits, Translated};
use super::run::{DensityRow, Extras};
use super::stats::{Derived, Shift, phases, summary_line};
use super::{
    Cell, Firmware, Options, Phase, Summary, TimelineStep, command_output, machine_name, relative,
};
use crate::host_cost::StepCost;

#[derive(Serialize)]
pub(super) struct Report<'a> {
    pub date: String,
    pub host: String,
    pub qemu: String,
    pub kernel: String,
    pub cells: &'a [Cell],
    pub instructions: BTreeMap<String, Counts>,
    pub timelines: BTreeMap<String, Vec<TimelineStep>>,
    pub skipped: Vec<String>,
    /// Medians, spreads and ratios, so that a script need not recompute them.
    pub derived: Vec<Derived>,
    pub density: Vec<DensityRow>,
}

impl<'a> Report<'a> {
    /// The results with the run's date, host, QEMU version and kernel.
    pub fn new(
        cells: &'a [Cell],
        kernel: &Path,
        extras: Extras,
        skipped: Vec<String>,
        derived: Vec<Derived>,
    ) -> Report<'a> {
        Report {
            date: command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
            host: command_output("uname", &["-srm"]),
            qemu: command_output(&crate::qemu::binary().to_string_lossy(), &["--version"])
                .lines()
                .next()
                .unwrap_or("")
                .into(),
            kernel: relative(&kernel.display().to_string()),
            cells,
            instructions: extras.instructions,
            timelines: extras.timelines,
            skipped,
            derived,
            density: extras.density,
        }
    }

    /// The terminal: one summary line per firmware and machine (`--summary`)
    /// or every table; then what was skipped and which runs failed.
    pub fn print(&self, opts: &Options) {
        if opts.summary {
            for line in self.derived.iter().filter_map(summary_line) {
                println!("{line}");
            }
        } else {
            println!("{}", render(self.cells, &self.instructions, opts));
            for grid in [
                in_process_grid(&self.derived),
                shared_entry_grid(&self.derived),
                end_to_end_grid(&self.derived, self.cells),
                both_entries_grid(&self.derived, self.cells, other_is_pvh(opts)),
                density_grid(&self.density),
                cost_grid(&self.instructions, opts),
            ] {
                if !grid.rows.is_empty() {
                    println!("{}", grid.table());
                }
            }
            for (machine, steps) in &self.timelines {
                println!("{}", timeline_grid(machine, steps).table());
            }
        }
        for s in &self.skipped {
            eprintln!("skipped: {s}");
        }
        for c in self.cells.iter().filter(|c| !c.failures.is_empty()) {
            eprintln!(
                "failed runs: {} {} {:?}: {} ({})",
                c.firmware.name(),
                c.machine,
                c.phase,
                c.failures.len(),
                c.failures.join(", ")
            );
        }
    }

    /// The JSON (`--json`), the chart beside it (or target/bench.svg) and the
    /// Markdown table (`--markdown`).
    pub fn write_files(&self, opts: &Options) -> Result<()> {
        if let Some(path) = &opts.json {
            std::fs::write(path, serde_json::to_string_pretty(self)?)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("raw samples: {}", path.display());
        }
        let svg = match &opts.json {
            Some(json) => json.with_extension("svg"),
            None => crate::root().join("target/bench.svg"),
        };
        let bars = chart_bars(self.cells, opts);
        if !bars.is_empty() {
            let title = format!("Boot phases, median of {} runs ({})", opts.runs, self.qemu);
            crate::chart::write_svg(&svg, &title, &bars)?;
            eprintln!("chart: {}", svg.display());
        }
        if let Some(path) = &opts.markdown {
            std::fs::write(path, markdown(self.cells, &self.instructions, opts, self))?;
            eprintln!("markdown table: {}", path.display());
        }
        Ok(())
    }
}

/// A table for the terminal and for Markdown alike.
pub(super) struct Grid {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Grid {
    pub fn new(header: &[&str]) -> Grid {
        Grid {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn table(&self) -> Table {
        let mut t = Table::new();
        t.set_header(self.header.clone());
        for r in &self.rows {
            t.add_row(r.clone());
        }
        t
    }

    pub fn markdown(&self) -> String {
        let mut s = format!(
            "| {} |\n|{}\n",
            self.header.join(" | "),
            "---|".repeat(self.header.len())
        );
        for r in &self.rows {
            s += &format!("| {} |\n", r.join(" | "));
        }
        s
    }
}

fn fmt_opt<T: ToString>(v: Option<T>) -> String {
    v.map_or("–".into(), |v| v.to_string())
}

fn fmt_translated(t: Option<Translated>) -> String {
    t.map_or("–".into(), |t| {
        format!(
            "{} / {} / {} ≈ {:.2} ms",
            t.blocks,
            t.instructions,
            t.memory,
            t.model_us() / 1000.0
        )
    })
}

fn fmt_exits(e: Option<Exits>) -> String {
    e.map_or("–".into(), |e| {
        format!("{} / {} / {}", e.pio, e.mmio, e.userspace)
    })
}

/// ferrite's steps with their time, instructions, exits and translated code.
pub(super) fn timeline_grid(machine: &str, steps: &[TimelineStep]) -> Grid {
    let mut g = Grid::new(&[
        &format!("ferrite on {machine}: step"),
        "share of tFW",
        "≈ ms (TCG)",
        "guest insns (KVM)",
        "exits PIO / MMIO / to QEMU (KVM)",
        "translated blocks / insns / memory insns ≈ translation ms (TCG, model)",
        "QEMU vCPU thread, M host insns: all (translating / map rebuilds) (TCG, callgrind)",
    ]);
    for s in steps {
        g.rows.push(vec![
            s.step.clone(),
            s.share
                .map_or("–".into(), |x| format!("{:.1} %", x * 100.0)),
            fmt_ms(s.ms),
            fmt_opt(s.guest_instructions),
            fmt_exits(s.exits),
            fmt_translated(s.translated),
            fmt_step_host(s.host),
        ]);
    }
    let sum = |f: &dyn Fn(&TimelineStep) -> Option<u64>| {
        let v: Vec<u64> = steps.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<u64>())
    };
    let exits = steps.iter().any(|s| s.exits.is_some()).then(|| Exits {
        pio: sum(&|s| s.exits.map(|e| e.pio)).unwrap_or(0),
        mmio: sum(&|s| s.exits.map(|e| e.mmio)).unwrap_or(0),
        userspace: sum(&|s| s.exits.map(|e| e.userspace)).unwrap_or(0),
    });
    let translated = steps
        .iter()
        .any(|s| s.translated.is_some())
        .then(|| Translated {
            blocks: sum(&|s| s.translated.map(|t| t.blocks)).unwrap_or(0),
            instructions: sum(&|s| s.translated.map(|t| t.instructions)).unwrap_or(0),
            memory: sum(&|s| s.translated.map(|t| t.memory)).unwrap_or(0),
        });
    let host = steps.iter().any(|s| s.host.is_some()).then(|| StepCost {
        vcpu: sum(&|s| s.host.map(|h| h.vcpu)).unwrap_or(0),
        translating: sum(&|s| s.host.map(|h| h.translating)).unwrap_or(0),
        map_rebuilds: sum(&|s| s.host.map(|h| h.map_rebuilds)).unwrap_or(0),
    });
    if exits.is_some() || translated.is_some() || host.is_some() {
        g.rows.push(vec![
            "total".into(),
            String::new(),
            String::new(),
            fmt_opt(sum(&|s| s.guest_instructions)),
            fmt_exits(exits),
            fmt_translated(translated),
            fmt_step_host(host),
        ]);
    }
    g
}

fn fmt_step_host(h: Option<StepCost>) -> String {
    h.map_or("–".into(), |h| {
        let m = |n: u64| n as f64 / 1e6;
        format!(
            "{:.2} ({:.2} / {:.2})",
            m(h.vcpu),
            m(h.translating),
            m(h.map_rebuilds)
        )
    })
}

/// The cost model per firmware and machine, to the kernel entry.
pub(super) fn cost_grid(costs: &BTreeMap<String, Counts>, opts: &Options) -> Grid {
    let mut g = Grid::new(&[
        "machine",
        "firmware",
        "translated blocks / insns / memory insns ≈ translation ms (TCG, model)",
        "QEMU vCPU thread, M host insns (TCG, callgrind)",
        "the same to the kernel's own 64-bit entry",
        "exits PIO / MMIO / to QEMU (KVM)",
        "guest insns (KVM)",
        "host page faults",
        "guest RAM 2 MiB regions faulted (faults): where, MiB",
        "map commits / rebuilds (sections rendered)",
        "DMA KiB",
        "fw_cfg PIO reads",
    ]);
    for m in &opts.machines {
        let machine = machine_name(*m);
        for fw in &opts.firmwares {
            let Some(c) = costs.get(&format!("{}/{machine}", fw.name())) else {
                continue;
            };
            let kvm = c.exits.is_some();
            g.rows.push(vec![
                machine.into(),
                fw.name().into(),
                fmt_translated(c.translated),
                c.vcpu_host_instructions
                    .map_or("–".into(), |n| format!("{:.2}", n as f64 / 1e6)),
                c.vcpu_host_instructions_to_entry64
                    .map_or("–".into(), |n| format!("{:.2}", n as f64 / 1e6)),
                fmt_exits(c.exits),
                fmt_opt(kvm.then_some(c.guest_instructions)),
                fmt_opt(c.host.as_ref().map(|h| h.page_faults)),
                c.host.as_ref().map_or("–".into(), |h| {
                    format!("{} ({}): {}", h.ram.regions, h.ram.faults, h.ram.spans())
                }),
                c.host.as_ref().map_or("–".into(), |h| {
                    format!(
                        "{} / {} ({})",
                        h.map_commits, h.map_rebuilds, h.sections_rendered
                    )
                }),
                fmt_opt(c.host.as_ref().map(|h| h.dma_bytes / 1024)),
                fmt_opt(kvm.then_some(c.fw_cfg_port_reads)),
            ]);
        }
    }
    g
}

pub(super) fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1}"))
}

/// A phase derived as the difference of two medians: below zero it only says
/// that the two are within this machine's noise, and the table says so.
pub(super) fn fmt_derived(v: Option<f64>) -> String {
    match v {
        Some(v) if v < 0.0 => format!("{v:.1} (noise)"),
        v => fmt_ms(v),
    }
}

pub(super) fn rows(
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
                counts
                    .filter(|c| c.exits.is_some())
                    .map_or("–".into(), |c| c.guest_instructions.to_string()),
                counts
                    .filter(|c| c.exits.is_some())
                    .map_or("–".into(), |c| {
                        format!("{}/{}", c.fw_cfg_port_reads, c.fw_cfg_dma_requests)
                    }),
                failures.to_string(),
            ]);
        }
    }
    rows
}

pub(super) const HEADER: [&str; 14] = [
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

pub(super) fn render(
    cells: &[Cell],
    instructions: &BTreeMap<String, Counts>,
    opts: &Options,
) -> Table {
    let mut t = Table::new();
    t.set_header(HEADER);
    for r in rows(cells, instructions, opts) {
        t.add_row(r);
    }
    t
}

pub(super) fn markdown(
    cells: &[Cell],
    instructions: &BTreeMap<String, Counts>,
    opts: &Options,
    report: &Report,
) -> String {
    let mut s = format!(
        "Measured {} on `{}` with {}, kernel `{}`, -m {} -smp {}, TCG, {} runs per cell ({} for the cells timed inside one process) after one warm-up, interleaved.\n\n",
        report.date,
        report.host,
        report.qemu,
        Path::new(&report.kernel)
            .file_name()
            .unwrap_or_default()
            .to_string_lossy(),
        opts.memory_mib,
        opts.cpus,
        opts.runs,
        opts.in_process_runs
    );
    s += if opts.tsc_calibration {
        "The kernels on pc and q35 calibrated their TSC themselves (`--tsc-calibration`: no `tsc_early_khz`), as users' kernels do; on microvm they were given the host's rate.\n\n"
    } else {
        "Every kernel was given the host's TSC rate (`tsc_early_khz`): a failed calibration of the kernel's own costs nothing here (`--tsc-calibration` times it).\n\n"
    };
    s += &format!(
        "| {} |\n|{}\n",
        HEADER.join(" | "),
        "---|".repeat(HEADER.len())
    );
    for r in rows(cells, instructions, opts) {
        s += &format!("| {} |\n", r.join(" | "));
    }
    let in_process = in_process_grid(&report.derived);
    if !in_process.rows.is_empty() {
        s += "\nThe firmware timed inside one QEMU process (started paused, timed from QMP `cont` to its exit at the kernel entry, which includes QEMU's exit, the same for all), against the floor ROM that only loads the kernel and initrd:\n\n";
        s += &in_process.markdown();
    }
    let shared = shared_entry_grid(&report.derived);
    if !shared.rows.is_empty() {
        s += "\nTo the kernel's own 64-bit entry (its decompressor's `startup_64`, load address + 0x200), the first instruction every firmware's path runs: the bench kernel itself, its first bytes there replaced by the probe's marker, timed in one process as above. A firmware that hands over at the 16-bit entry leaves the kernel's real-mode set-up (the memory map from BIOS calls, the mode switches) to run before this point; ferrite jumps to it:\n\n";
        s += &shared.markdown();
    }
    let e2e = end_to_end_grid(&report.derived, cells);
    if e2e.rows.iter().any(|r| r[4] != "–") {
        s += "\nEnd to end, from QEMU's start (whole processes; vs ferrite: difference of medians, + is behind ferrite):\n\n";
        s += &e2e.markdown();
    }
    let both = both_entries_grid(&report.derived, cells, other_is_pvh(opts));
    if !both.rows.is_empty() {
        s += "\nBoth entries, interleaved in this run (`--both-entries`): the small kernel's bzImage and its PVH vmlinux (the same build), each timed from QMP `cont` to `kernel_init` in one process; the PVH path's shift from the bzImage path, and each firmware's from ferrite on the same path (− ahead, + behind):\n\n";
        s += &both.markdown();
    }
    if !report.density.is_empty() {
        s += "\nBoot density: N VMs started together, each timed from its own start:\n\n";
        s += &density_grid(&report.density).markdown();
    }
    if !instructions.is_empty() {
        s += "\nCost model to the kernel entry (deterministic counts: translated code from `-d in_asm`, with the instructions that touch memory and the translation time they predict (1.8 µs a block, 0.3 µs a register-only instruction, 0.7 µs one that touches memory, calibrated on this machine type); the host instructions of QEMU's vCPU thread under TCG, counted by callgrind from QEMU's start (all the host work the firmware causes but the host kernel's clearing of guest RAM; see `cargo xtask host-cost`), to the kernel entry and, with the bench kernel itself, to its own 64-bit entry, where every firmware's path meets; exits and instructions under KVM; page faults, memory-map commits and DMA bytes of the QEMU process under TCG):\n\n";
        s += &cost_grid(instructions, opts).markdown();
    }
    for (machine, steps) in &report.timelines {
        s += "\nferrite's own steps (time: one TCG boot's timeline scaled to the median tFW, in one process where measured; instructions and exits: one KVM boot, traced; translated code: one TCG boot with `-d in_asm`):\n\n";
        s += &timeline_grid(machine, steps).markdown();
    }
    s
}

/// The stacked bars of the chart: one per machine and firmware (no sweep).
pub(super) fn chart_bars(cells: &[Cell], opts: &Options) -> Vec<crate::chart::Bar> {
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
                    firmware: p.cont.as_ref().map(|c| c.median),
                });
            }
        }
    }
    bars
}

fn fmt_summary(s: Option<&Summary>) -> String {
    s.map_or("–".into(), |s| {
        format!(
            "{:.1} ± {:.1} [{:.1}–{:.1}] n={}",
            s.median, s.sd, s.p25, s.p75, s.runs
        )
    })
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.2}"))
}

/// The firmware's time in one process (QMP `cont` to the kernel entry) beside
/// the old method's figure and spread, and its cost above the floor ROM.
pub(super) fn in_process_grid(derived: &[Derived]) -> Grid {
    let mut g = Grid::new(&[
        "machine",
        "firmware",
        "tFW ms, difference of whole-process medians",
        "QMP cont to kernel entry ms (median ± sd [p25–p75])",
        "spread to entry, sd / p75−p25 ms: whole process → in process",
        "above the floor ms",
        "above the floor / ferrite",
        "in process vs ferrite: shift ms (Mann-Whitney p)",
    ]);
    for d in derived.iter().filter(|d| d.sweep.is_none()) {
        if d.tfw_in_process.is_none() {
            continue;
        }
        g.rows.push(vec![
            d.machine.clone(),
            d.firmware.name().into(),
            fmt_derived(d.tfw_ms),
            fmt_summary(d.tfw_in_process.as_ref()),
            {
                let spread = |s: Option<&Summary>| {
                    s.map_or("–".into(), |s| {
                        format!("{:.1} / {:.1}", s.sd, s.p75 - s.p25)
                    })
                };
                format!(
                    "{} → {}",
                    spread(d.to_entry.as_ref()),
                    spread(d.tfw_in_process.as_ref())
                )
            },
            fmt_derived(d.above_floor_ms),
            fmt_ratio(d.above_floor_vs_ferrite),
            fmt_shift(d.in_process_vs_ferrite),
        ]);
    }
    g
}

/// From QMP `cont` to the kernel's own 64-bit entry, beside the time to each
/// firmware's own hand-off: what the kernel still does between the two.
pub(super) fn shared_entry_grid(derived: &[Derived]) -> Grid {
    let mut g = Grid::new(&[
        "machine",
        "firmware",
        "QMP cont to the kernel's 64-bit entry ms (median ± sd [p25–p75])",
        "QMP cont to the firmware's hand-off ms (median)",
        "the kernel's own set-up in between ms",
        "above the floor ms",
        "vs ferrite: shift ms (Mann-Whitney p)",
    ]);
    for d in derived.iter().filter(|d| d.sweep.is_none()) {
        if d.to_shared_entry.is_none() {
            continue;
        }
        g.rows.push(vec![
            d.machine.clone(),
            d.firmware.name().into(),
            fmt_summary(d.to_shared_entry.as_ref()),
            fmt_ms(d.tfw_in_process.as_ref().map(|s| s.median)),
            fmt_derived(d.kernel_setup_ms),
            fmt_derived(d.shared_above_floor_ms),
            fmt_shift(d.shared_vs_ferrite),
        ]);
    }
    g
}

/// `+1.2 (p 0.003)`: behind (+) or ahead of (−) ferrite.
fn fmt_shift(s: Option<Shift>) -> String {
    s.map_or("–".into(), |s| {
        let p = if s.test.p < 0.001 {
            "< 0.001".to_string()
        } else {
            format!("{:.3}", s.test.p)
        };
        format!("{:+.1} (p {p})", s.ms)
    })
}

/// From QEMU's start to the kernel entry, to the small kernel's `kernel_init`
/// and to the bench kernel's /init, side by side, with each firmware's
/// distance behind (+) or ahead of (−) ferrite.
pub(super) fn end_to_end_grid(derived: &[Derived], cells: &[Cell]) -> Grid {
    let mut g = Grid::new(&[
        "machine",
        "firmware",
        "entry",
        "to kernel entry ms",
        "to small kernel's kernel_init ms (median ± sd [p25–p75])",
        "vs ferrite",
        "QMP cont to kernel_init, one process, ms (median ± sd [p25–p75])",
        "vs ferrite, ms (Mann-Whitney p)",
        "to /init ms (median ± sd)",
        "vs ferrite",
    ]);
    let ferrite = |machine: &str| {
        derived
            .iter()
            .find(|d| d.firmware == Firmware::Ferrite && d.machine == machine && d.sweep.is_none())
    };
    let delta = |fw: Firmware, a: Option<&Summary>, b: Option<&Summary>| match (a, b) {
        (Some(a), Some(b)) if fw != Firmware::Ferrite => format!("{:+.1}", a.median - b.median),
        _ => "–".into(),
    };
    for d in derived
        .iter()
        .filter(|d| d.sweep.is_none() && d.firmware != Firmware::Floor)
    {
        let f = ferrite(&d.machine);
        let entry = cells
            .iter()
            .find(|c| {
                c.firmware == d.firmware
                    && c.machine == d.machine
                    && c.phase == Phase::Entry
                    && c.sweep.is_none()
            })
            .and_then(|c| c.entry.clone());
        g.rows.push(vec![
            d.machine.clone(),
            d.firmware.name().into(),
            entry.unwrap_or_else(|| "–".into()),
            fmt_ms(d.to_entry.as_ref().map(|s| s.median)),
            fmt_summary(d.to_kernel_init.as_ref()),
            delta(
                d.firmware,
                d.to_kernel_init.as_ref(),
                f.and_then(|f| f.to_kernel_init.as_ref()),
            ),
            fmt_summary(d.kernel_init_in_process.as_ref()),
            fmt_shift(d.kernel_init_vs_ferrite),
            d.to_user
                .as_ref()
                .map_or("–".into(), |s| format!("{:.1} ± {:.1}", s.median, s.sd)),
            delta(
                d.firmware,
                d.to_user.as_ref(),
                f.and_then(|f| f.to_user.as_ref()),
            ),
        ]);
    }
    g
}

/// Is the small kernel's other form (`--both-entries`) its vmlinux?
fn other_is_pvh(opts: &Options) -> bool {
    opts.other_small_kernel
        .as_deref()
        .is_some_and(|k| crate::pvh_probe::is_elf_file(k).unwrap_or(false))
}

/// `--both-entries`: each firmware to `kernel_init` in one process through
/// the small kernel's bzImage and through its vmlinux, interleaved; the PVH
/// path's shift from the bzImage path, and each path's shift from ferrite's.
/// `other_is_pvh`: the other form is the vmlinux (the bench kernel is a
/// bzImage).
pub(super) fn both_entries_grid(derived: &[Derived], cells: &[Cell], other_is_pvh: bool) -> Grid {
    let mut g = Grid::new(&[
        "machine",
        "firmware",
        "bzImage: entry",
        "bzImage: to kernel_init ms (median ± sd [p25–p75])",
        "PVH vmlinux: to kernel_init ms (median ± sd [p25–p75])",
        "PVH − bzImage, ms (Mann-Whitney p)",
        "bzImage: vs ferrite (p)",
        "PVH: vs ferrite (p)",
    ]);
    let flip = |s: Option<Shift>| s.map(|s| Shift { ms: -s.ms, ..s });
    for d in derived
        .iter()
        .filter(|d| d.sweep.is_none() && d.kernel_init_other_in_process.is_some())
    {
        let probed = cells
            .iter()
            .find(|c| {
                c.firmware == d.firmware
                    && c.machine == d.machine
                    && c.phase == Phase::Entry
                    && c.sweep.is_none()
            })
            .and_then(|c| c.entry.clone())
            .unwrap_or_else(|| "–".into());
        let (this, other) = (
            d.kernel_init_in_process.as_ref(),
            d.kernel_init_other_in_process.as_ref(),
        );
        let row = if other_is_pvh {
            [
                probed,
                fmt_summary(this),
                fmt_summary(other),
                fmt_shift(d.other_form_vs_this),
                fmt_shift(d.kernel_init_vs_ferrite),
                fmt_shift(d.kernel_init_other_vs_ferrite),
            ]
        } else {
            // the bench boots the vmlinux: its probe saw the PVH entry, and
            // the bzImage's entry was not probed in this run
            [
                "–".into(),
                fmt_summary(other),
                fmt_summary(this),
                fmt_shift(flip(d.other_form_vs_this)),
                fmt_shift(d.kernel_init_other_vs_ferrite),
                fmt_shift(d.kernel_init_vs_ferrite),
            ]
        };
        let mut r = vec![d.machine.clone(), d.firmware.name().into()];
        r.extend(row);
        g.rows.push(r);
    }
    g
}

/// `--density`: median and p95 per VM, and peak RSS per VM.
pub(super) fn density_grid(rows: &[DensityRow]) -> Grid {
    let mut g = Grid::new(&[
        "machine",
        "firmware",
        "VMs together",
        "to kernel entry ms: median / p95",
        "to the kernel's own 64-bit entry ms: median / p95",
        "to the kernel's marker ms: median / p95",
        "peak RSS per VM MiB: median / max",
        "failed boots",
    ]);
    let mut rows: Vec<&DensityRow> = rows.iter().collect();
    rows.sort_by(|a, b| (&a.machine, a.firmware, a.vms).cmp(&(&b.machine, b.firmware, b.vms)));
    for r in rows {
        let two = |s: Option<&Summary>, f: fn(&Summary) -> f64| {
            s.map_or("–".into(), |s| format!("{:.1} / {:.1}", s.median, f(s)))
        };
        g.rows.push(vec![
            r.machine.clone(),
            r.firmware.name().into(),
            r.vms.to_string(),
            two(r.to_entry.as_ref(), |s| s.p95),
            two(r.to_entry64.as_ref(), |s| s.p95),
            two(r.to_kernel.as_ref(), |s| s.p95),
            two(r.peak_rss_mib.as_ref(), |s| s.max),
            r.failures.to_string(),
        ]);
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_differences_are_marked_as_noise() {
        assert_eq!(fmt_derived(Some(-17.54)), "-17.5 (noise)");
        assert_eq!(fmt_derived(Some(3.0)), "3.0");
        assert_eq!(fmt_derived(None), "–");
    }

    #[test]
    fn shifts_say_who_is_behind_and_how_sure() {
        use crate::stats::MannWhitney;
        let shift = |ms, p| {
            Some(Shift {
                ms,
                test: MannWhitney {
                    u: 0.0,
                    p,
                    exact: true,
                },
            })
        };
        assert_eq!(fmt_shift(shift(1.25, 0.0034)), "+1.2 (p 0.003)");
        assert_eq!(fmt_shift(shift(-2.8, 0.0002)), "-2.8 (p < 0.001)");
        assert_eq!(fmt_shift(None), "–");
    }

    #[test]
    fn in_process_and_end_to_end_tables() {
        use super::super::test_cell as cell;
        let cells = [
            cell(Firmware::Ferrite, Phase::Start, &[50.0]),
            cell(Firmware::Ferrite, Phase::Entry, &[60.0]),
            cell(Firmware::Ferrite, Phase::FromCont, &[8.0, 10.0]),
            cell(Firmware::Ferrite, Phase::KernelInit, &[800.0]),
            cell(Firmware::Qboot, Phase::Entry, &[58.0]),
            cell(Firmware::Qboot, Phase::FromCont, &[7.0, 9.0]),
            cell(Firmware::Qboot, Phase::KernelInit, &[850.0]),
            cell(
                Firmware::Ferrite,
                Phase::KernelInitFromCont,
                &[600.0, 610.0, 620.0],
            ),
            cell(
                Firmware::Qboot,
                Phase::KernelInitFromCont,
                &[640.0, 650.0, 660.0],
            ),
            cell(Firmware::Floor, Phase::Entry, &[55.0]),
            cell(Firmware::Floor, Phase::FromCont, &[5.0, 7.0]),
        ];
        let fws = [Firmware::Ferrite, Firmware::Qboot, Firmware::Floor];
        let d = super::super::stats::derive(&cells, &["q35".into()], &[None], &fws);
        let g = in_process_grid(&d);
        assert_eq!(g.rows.len(), 3);
        // ferrite: 10 from the medians, 9 ± 1.4 in one process, 3 above the floor
        assert_eq!(g.rows[0][2], "10.0");
        assert!(g.rows[0][3].starts_with("9.0 ± 1.4"), "{:?}", g.rows[0]);
        assert!(
            g.rows[0][4].starts_with("0.0 / 0.0 → 1.4 / "),
            "{:?}",
            g.rows[0]
        );
        assert_eq!(
            (g.rows[0][5].as_str(), g.rows[1][5].as_str()),
            ("3.0", "2.0")
        );
        assert_eq!(g.rows[1][6], "0.67");
        let e = end_to_end_grid(&d, &cells);
        // the floor boots no kernel and has no row; qboot is 50 ms behind
        assert_eq!(e.rows.len(), 2);
        assert_eq!(
            (e.rows[0][5].as_str(), e.rows[1][5].as_str()),
            ("–", "+50.0")
        );
        // in one process: qboot 40 ms behind, by every pair of samples
        assert!(e.rows[0][6].starts_with("610.0 ± "), "{:?}", e.rows[0]);
        assert_eq!(e.rows[0][7], "–");
        assert!(e.rows[1][7].starts_with("+40.0 (p "), "{:?}", e.rows[1]);
        assert!(e.markdown().lines().count() == 4);
        // no cells to the kernel's own 64-bit entry: no table
        assert!(shared_entry_grid(&d).rows.is_empty());
    }

    #[test]
    fn the_both_entries_table_either_way_round() {
        use super::super::test_cell as cell;
        let mut probe = cell(Firmware::Ferrite, Phase::Entry, &[60.0]);
        probe.entry = Some("64-bit".into());
        let cells = [
            probe,
            cell(
                Firmware::Ferrite,
                Phase::KernelInitFromCont,
                &[700.0, 710.0, 720.0],
            ),
            cell(
                Firmware::Ferrite,
                Phase::KernelInitOtherFromCont,
                &[600.0, 610.0, 620.0],
            ),
            cell(
                Firmware::Qboot,
                Phase::KernelInitFromCont,
                &[690.0, 700.0, 710.0],
            ),
            cell(
                Firmware::Qboot,
                Phase::KernelInitOtherFromCont,
                &[630.0, 640.0, 650.0],
            ),
            // no other-form cells: no row
            cell(Firmware::Floor, Phase::FromCont, &[5.0]),
        ];
        let fws = [Firmware::Ferrite, Firmware::Qboot, Firmware::Floor];
        let d = super::super::stats::derive(&cells, &["q35".into()], &[None], &fws);
        // the bench boots the bzImage, the other form is the vmlinux
        let g = both_entries_grid(&d, &cells, true);
        assert_eq!(g.rows.len(), 2);
        let f = &g.rows[0];
        assert_eq!((f[1].as_str(), f[2].as_str()), ("ferrite", "64-bit"));
        assert!(
            f[3].starts_with("710.0 ± ") && f[4].starts_with("610.0 ± "),
            "{f:?}"
        );
        assert!(f[5].starts_with("-100.0 (p "), "{f:?}");
        assert_eq!((f[6].as_str(), f[7].as_str()), ("–", "–"));
        let q = &g.rows[1];
        assert!(q[5].starts_with("-60.0 (p "), "{q:?}");
        assert!(
            q[6].starts_with("-10.0 (p ") && q[7].starts_with("+30.0 (p "),
            "{q:?}"
        );
        // the bench boots the vmlinux: the same figures, the columns swapped
        // and the shift turned round; no bzImage entry was probed
        let g = both_entries_grid(&d, &cells, false);
        let f = &g.rows[0];
        assert_eq!(f[2], "–");
        assert!(
            f[3].starts_with("610.0 ± ") && f[4].starts_with("710.0 ± "),
            "{f:?}"
        );
        assert!(f[5].starts_with("+100.0 (p "), "{f:?}");
        let q = &g.rows[1];
        assert!(
            q[6].starts_with("+30.0 (p ") && q[7].starts_with("-10.0 (p "),
            "{q:?}"
        );
        // without --both-entries: no table
        let plain = &cells[..2];
        let d = super::super::stats::derive(plain, &["q35".into()], &[None], &fws);
        assert!(both_entries_grid(&d, plain, true).rows.is_empty());
    }

    #[test]
    fn the_shared_entry_table() {
        use super::super::test_cell as cell;
        let cells = [
            cell(Firmware::Ferrite, Phase::FromCont, &[8.0, 10.0]),
            cell(Firmware::Ferrite, Phase::SharedEntry, &[8.0, 10.0]),
            cell(Firmware::Qboot, Phase::FromCont, &[7.0, 9.0]),
            cell(Firmware::Qboot, Phase::SharedEntry, &[11.0, 13.0]),
            cell(Firmware::Floor, Phase::FromCont, &[5.0, 7.0]),
            cell(Firmware::Floor, Phase::SharedEntry, &[5.0, 7.0]),
        ];
        let fws = [Firmware::Ferrite, Firmware::Qboot, Firmware::Floor];
        let d = super::super::stats::derive(&cells, &["q35".into()], &[None], &fws);
        let g = shared_entry_grid(&d);
        assert_eq!(g.rows.len(), 3);
        // ferrite enters at the shared point: no set-up in between
        assert_eq!(g.rows[0][1], "ferrite");
        assert!(g.rows[0][2].starts_with("9.0 ± 1.4"), "{:?}", g.rows[0]);
        assert_eq!(g.rows[0][3..6], ["9.0", "0.0", "3.0"]);
        assert_eq!(g.rows[0][6], "–");
        // qboot hands over sooner, but the kernel then spends 4 ms before
        // the shared point: 3 ms behind ferrite there
        assert_eq!(g.rows[1][3..6], ["8.0", "4.0", "6.0"]);
        assert!(g.rows[1][6].starts_with("+3.0 (p "), "{:?}", g.rows[1]);
        assert_eq!(g.markdown().lines().count(), 5);
    }

    #[test]
    fn the_cost_table_shows_the_vcpu_threads_host_instructions() {
        let opts = Options {
            machines: vec![crate::qemu::Machine::Q35],
            firmwares: vec![Firmware::Ferrite, Firmware::Qboot],
            ..Options::default()
        };
        let costs = BTreeMap::from([
            (
                "ferrite/q35".to_string(),
                Counts {
                    vcpu_host_instructions: Some(50_712_345),
                    vcpu_host_instructions_to_entry64: Some(50_700_000),
                    ..Counts::default()
                },
            ),
            ("qboot/q35".to_string(), Counts::default()),
        ]);
        let g = cost_grid(&costs, &opts);
        let column = g
            .header
            .iter()
            .position(|h| h.contains("callgrind"))
            .unwrap();
        assert_eq!(g.rows[0][column], "50.71");
        assert_eq!(g.rows[0][column + 1], "50.70");
        // not counted (no valgrind): a dash, as for every other column
        assert_eq!(g.rows[1][column], "–");
        assert_eq!(g.rows[1][column + 1], "–");
    }

    #[test]
    fn density_table_sorts_and_shows_p95() {
        use super::super::summarize;
        let row = |fw, vms, ms: &[f64]| DensityRow {
            firmware: fw,
            machine: "q35".into(),
            vms,
            to_entry: summarize(ms),
            to_entry64: summarize(&ms.iter().map(|m| m + 10.0).collect::<Vec<_>>()),
            to_kernel: None,
            peak_rss_mib: summarize(&[90.0, 92.0]),
            failures: 0,
        };
        let g = density_grid(&[
            row(Firmware::Qboot, 4, &[1.0, 2.0, 3.0, 4.0]),
            row(Firmware::Ferrite, 16, &[5.0; 16]),
            row(Firmware::Ferrite, 1, &[1.0]),
        ]);
        let order: Vec<_> = g
            .rows
            .iter()
            .map(|r| (r[1].clone(), r[2].clone()))
            .collect();
        assert_eq!(
            order,
            [("ferrite", "1"), ("ferrite", "16"), ("qboot", "4")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(g.rows[2][3], "2.5 / 4.0");
        assert_eq!(g.rows[2][4], "12.5 / 14.0");
        assert_eq!(
            (g.rows[0][5].as_str(), g.rows[0][6].as_str()),
            ("–", "91.0 / 92.0")
        );
    }

    /// ferrite's steps with QEMU's host instructions: each step's cut, the
    /// row before the reset vector with that alone, and the total over all.
    #[test]
    fn the_steps_show_the_vcpu_threads_host_instructions() {
        let host = |vcpu, translating, map_rebuilds| {
            Some(StepCost {
                vcpu,
                translating,
                map_rebuilds,
            })
        };
        let steps = [
            TimelineStep {
                step: super::super::QEMU_START_STEP.into(),
                host: host(3_000_000, 200_000, 0),
                ..TimelineStep::default()
            },
            TimelineStep {
                step: "pci_hardware".into(),
                share: Some(0.25),
                ms: Some(1.0),
                host: host(13_780_000, 9_180_000, 3_920_000),
                ..TimelineStep::default()
            },
            TimelineStep {
                step: "handoff".into(),
                ..TimelineStep::default()
            },
        ];
        let md = timeline_grid("q35", &steps).markdown();
        assert!(md.contains("QEMU vCPU thread, M host insns"), "{md}");
        assert!(
            md.contains(
                "| (QEMU's start, to the reset vector) | – | – | – | – | – | 3.00 (0.20 / 0.00) |"
            ),
            "{md}"
        );
        assert!(md.contains("| pci_hardware | 25.0 % |"), "{md}");
        assert!(md.contains("| 13.78 (9.18 / 3.92) |"), "{md}");
        assert!(md.contains("| handoff | – | – | – | – | – | – |"), "{md}");
        assert!(md.contains("| 16.78 (9.38 / 3.92) |"), "{md}");
    }
}
