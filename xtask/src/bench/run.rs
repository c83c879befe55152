//! Running the cells: interleaved shuffled rounds, then what is measured beside
//! them (the cost model, ferrite's own timeline, the density runs).

use std::collections::BTreeMap;
use std::path::Path;

use std::sync::Barrier;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use serde::Serialize;

use super::cost::{self, Counts};
use super::stats::{ferrite_tfw, parse_timeline};
use super::{
    Cell, Firmware, HANDOFF_STEP, Options, Phase, QEMU_START_STEP, Sample, Summary, TimelineStep,
    summarize,
};
use crate::probe;
use crate::qemu::{Outcome, Qemu};

/// What the bench measures beside the timed rounds.
pub(super) struct Extras {
    /// The cost model's counts per firmware and machine.
    pub instructions: BTreeMap<String, Counts>,
    /// ferrite's steps per machine.
    pub timelines: BTreeMap<String, Vec<TimelineStep>>,
    pub density: Vec<DensityRow>,
}

/// The cost model's counts, ferrite's timelines and the density runs `opts`
/// ask for; what cannot be measured here goes to `skipped`.
pub(super) fn extras(
    cells: &[Cell],
    opts: &Options,
    work: &Path,
    elf: &Path,
    skipped: &mut Vec<String>,
) -> Result<Extras> {
    // logs and recordings of this run only
    let scratch = work.join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let perf = opts.count_instructions && cost::perf_available(skipped);
    let instructions = if opts.count_instructions {
        cost::measure(cells, &scratch, perf, skipped)
    } else {
        BTreeMap::new()
    };
    let timelines = ferrite_timelines(cells, &scratch, elf, perf, skipped);
    let _ = std::fs::remove_dir_all(&scratch);
    let density = if opts.density.is_empty() {
        Vec::new()
    } else {
        density(cells, opts)
    };
    Ok(Extras {
        instructions,
        timelines,
        density,
    })
}

/// One extra boot of ferrite per machine with its timeline report switched on
/// (time per step under TCG), one with QEMU's translation and execution log
/// (code translated per step) and, with `perf`, one under KVM with every
/// instruction and exit traced (instructions and exits per step). `elf` is
/// ferrite's, for the stamps' addresses.
pub(super) fn ferrite_timelines(
    cells: &[Cell],
    work: &Path,
    elf: &Path,
    perf: bool,
    skipped: &mut Vec<String>,
) -> BTreeMap<String, Vec<TimelineStep>> {
    let mut out = BTreeMap::new();
    let stamps = std::fs::read(elf)
        .map_err(anyhow::Error::from)
        .and_then(|image| crate::rom::stamp_addresses(&image));
    for cell in cells
        .iter()
        .filter(|c| c.firmware == Firmware::Ferrite && c.phase == Phase::Entry && c.sweep.is_none())
    {
        let log = work.join(format!("timeline-{}.txt", cell.machine));
        let _ = std::fs::remove_file(&log);
        let mut q = cell.qemu.clone();
        q.extra
            .extend(["-debugcon".into(), format!("file:{}", log.display())]);
        q.fw_cfg_string(ferrite_contract::fw_cfg::TIMELINE, "1");
        if q.run().is_err() {
            continue;
        }
        let Some(shares) = std::fs::read_to_string(&log)
            .ok()
            .and_then(|l| parse_timeline(l.trim()))
        else {
            continue;
        };
        let tfw = ferrite_tfw(cells, &cell.machine);
        let mut steps: Vec<TimelineStep> = shares
            .into_iter()
            .map(|(step, share)| TimelineStep {
                step,
                share: Some(share),
                ms: tfw.map(|t| t * share),
                ..TimelineStep::default()
            })
            .collect();
        steps.push(TimelineStep {
            step: HANDOFF_STEP.into(),
            ..TimelineStep::default()
        });
        let what = |w: &str| format!("{w} per step on {}", cell.machine);
        let n_steps = steps.len();
        let mismatch = |w: &str, segments: usize| {
            format!(
                "{}: {} stamps, {} steps in the timeline",
                what(w),
                segments - 1,
                n_steps - 1
            )
        };
        match stamps
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .and_then(|s| cost::translated_steps(&cell.qemu, work, s))
        {
            Ok(t) if t.len() == n_steps => {
                for (step, t) in steps.iter_mut().zip(t) {
                    step.translated = Some(t);
                }
            }
            Ok(t) => skipped.push(mismatch("translated code", t.len())),
            Err(e) => skipped.push(format!("{}: {e:#}", what("translated code"))),
        }
        let mut qemu_start = None;
        if crate::host_cost::available() {
            let mut q = cell.qemu.clone();
            q.accel = crate::qemu::Accel::Tcg;
            let dir = work.join("callgrind-steps");
            match crate::host_cost::run_steps(&q, &cell.firmware.entry_statuses(), &dir, "ferrite")
            {
                Ok(cut) if cut.steps.len() == n_steps => {
                    for (step, (name, c)) in steps.iter_mut().zip(&cut.steps) {
                        if step.step == *name {
                            step.host = Some(*c);
                        }
                    }
                    qemu_start = Some(cut.before);
                }
                Ok(cut) => skipped.push(mismatch("vCPU host instructions", cut.steps.len())),
                Err(e) => skipped.push(format!("{}: {e:#}", what("vCPU host instructions"))),
            }
        }
        if perf {
            match crate::insn_steps::record(&cell.qemu, elf, work) {
                Ok(seg) if seg.counts.len() == n_steps => {
                    for ((step, n), e) in steps.iter_mut().zip(&seg.counts).zip(&seg.exits) {
                        step.guest_instructions = Some(*n);
                        step.exits = Some(*e);
                    }
                }
                Ok(seg) => skipped.push(mismatch("instructions", seg.counts.len())),
                Err(e) => skipped.push(format!("{}: {e:#}", what("instructions"))),
            }
        }
        if let Some(host) = qemu_start {
            steps.insert(
                0,
                TimelineStep {
                    step: QEMU_START_STEP.into(),
                    host: Some(host),
                    ..TimelineStep::default()
                },
            );
        }
        out.insert(cell.machine.clone(), steps);
    }
    out
}

/// How many measured runs a cell gets: `in_process` when it is timed inside
/// one process, else `runs`.
fn runs_of(cell: &Cell, runs: usize, in_process: usize) -> usize {
    if cell.phase.from_cont() {
        in_process
    } else {
        runs
    }
}

/// Every cell its runs ([`runs_of`]) after a warm-up, in shuffled rounds: a
/// cell with fewer runs than another sits out the last rounds.
pub(super) fn rounds(cells: &mut [Cell], runs: usize, in_process: usize) -> Result<()> {
    let total: usize = cells.iter().map(|c| runs_of(c, runs, in_process) + 1).sum();
    let last = runs.max(in_process);
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} runs, {elapsed} [{msg}]").unwrap(),
    );
    let mut order: Vec<usize> = (0..cells.len()).collect();
    let mut rng = rand::rng();
    for round in 0..=last {
        order.shuffle(&mut rng);
        for &i in &order {
            let cell = &mut cells[i];
            if round > runs_of(cell, runs, in_process) {
                continue;
            }
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
            let outcome = if cell.phase.from_cont() {
                cell.qemu.run_from_cont()?
            } else {
                cell.qemu.run()?
            };
            bar.inc(1);
            let code = outcome.exit_code.unwrap_or(-1);
            let qmp_failed = cell.phase.from_cont() && outcome.from_cont.is_none();
            if outcome.timed_out || qmp_failed || !cell.expect.contains(&code) {
                cell.failures.push(format!(
                    "{}exit {:?}{}",
                    if round == 0 {
                        "warm-up failed, cell skipped: "
                    } else {
                        ""
                    },
                    outcome.exit_code,
                    if outcome.timed_out {
                        " (timeout)"
                    } else if qmp_failed {
                        " (QMP failed)"
                    } else {
                        ""
                    }
                ));
                continue;
            }
            if matches!(cell.phase, Phase::Entry | Phase::FromCont) {
                cell.entry = probe::Entry::from_exit_code(code).map(|e| e.name().to_string());
            }
            if round > 0 {
                cell.samples.push(Sample {
                    ms: outcome.from_cont.unwrap_or(outcome.wall).as_secs_f64() * 1000.0,
                    max_rss_kib: outcome.max_rss_kib,
                });
            }
        }
    }
    bar.finish_and_clear();
    Ok(())
}

/// One firmware on one machine with N VMs started together.
#[derive(Clone, Debug, Serialize)]
pub struct DensityRow {
    pub firmware: Firmware,
    pub machine: String,
    pub vms: usize,
    /// Each VM's time (spawn to exit) to the kernel entry (the probe): the
    /// firmware's own hand-off.
    pub to_entry: Option<Summary>,
    /// Each VM's time to the bench kernel's own 64-bit entry, where every
    /// firmware's path meets (none for a kernel without one).
    pub to_entry64: Option<Summary>,
    /// Each VM's time to the kernel's marker (the small kernel's
    /// `kernel_init` with `--end-to-end`, else the bench kernel's /init).
    pub to_kernel: Option<Summary>,
    /// Each VM's peak RSS in MiB (the kernel boots).
    pub peak_rss_mib: Option<Summary>,
    pub failures: usize,
}

/// Starts `n` copies of `q` at once (a barrier releases the threads that
/// spawn them together) and waits for all.
fn batch(q: &Qemu, n: usize) -> Vec<Result<Outcome>> {
    let start = Barrier::new(n);
    std::thread::scope(|s| {
        let vms: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    q.run()
                })
            })
            .collect();
        vms.into_iter()
            .map(|vm| {
                vm.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("thread panicked")))
            })
            .collect()
    })
}

/// `--density`: for each firmware, machine and N, `runs` rounds of N VMs
/// started together to the kernel entry, N to the kernel's own 64-bit entry
/// (where there is one) and N to the kernel's marker; batches in shuffled
/// order within a round.
pub(super) fn density(cells: &[Cell], opts: &Options) -> Vec<DensityRow> {
    /// Where a batch of VMs is timed to.
    #[derive(Clone, Copy)]
    enum Target {
        Entry,
        Entry64,
        Kernel,
    }
    struct Job<'a> {
        fw: Firmware,
        machine: &'a str,
        n: usize,
        entry: &'a Cell,
        entry64: Option<&'a Cell>,
        kernel: Option<&'a Cell>,
        entry_ms: Vec<f64>,
        entry64_ms: Vec<f64>,
        kernel_ms: Vec<f64>,
        rss: Vec<f64>,
        failures: usize,
    }
    let find = |c: &Cell, p: Phase| c.phase == p && c.sweep.is_none();
    let mut jobs: Vec<Job> = Vec::new();
    for entry in cells
        .iter()
        .filter(|c| find(c, Phase::Entry) && c.firmware != Firmware::Floor)
    {
        let same = |c: &&Cell| c.firmware == entry.firmware && c.machine == entry.machine;
        let kernel = cells
            .iter()
            .filter(same)
            .find(|c| find(c, Phase::KernelInit))
            .or_else(|| cells.iter().filter(same).find(|c| find(c, Phase::User)));
        // The same boots as the in-process cell's, each in a process of its
        // own here.
        let entry64 = cells
            .iter()
            .filter(same)
            .find(|c| find(c, Phase::SharedEntry));
        for &n in &opts.density {
            jobs.push(Job {
                fw: entry.firmware,
                machine: &entry.machine,
                n,
                entry,
                entry64,
                kernel,
                entry_ms: Vec::new(),
                entry64_ms: Vec::new(),
                kernel_ms: Vec::new(),
                rss: Vec::new(),
                failures: 0,
            });
        }
    }
    let boots: usize = jobs
        .iter()
        .map(|j| j.n * (2 + j.entry64.is_some() as usize))
        .sum::<usize>()
        * opts.runs;
    let bar = ProgressBar::new(boots as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} density boots, {elapsed} [{msg}]")
            .unwrap(),
    );
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    let mut rng = rand::rng();
    for _ in 0..opts.runs {
        order.shuffle(&mut rng);
        for &i in &order {
            let job = &mut jobs[i];
            bar.set_message(format!("{} {} ×{}", job.fw.name(), job.machine, job.n));
            let batches = [
                (Some(job.entry), Target::Entry),
                (job.entry64, Target::Entry64),
                (job.kernel, Target::Kernel),
            ];
            for (cell, target) in batches {
                let Some(cell) = cell else { continue };
                for outcome in batch(&cell.qemu, job.n) {
                    bar.inc(1);
                    match outcome {
                        Ok(o)
                            if !o.timed_out && cell.expect.contains(&o.exit_code.unwrap_or(-1)) =>
                        {
                            let ms = o.wall.as_secs_f64() * 1000.0;
                            match target {
                                Target::Entry => job.entry_ms.push(ms),
                                Target::Entry64 => job.entry64_ms.push(ms),
                                Target::Kernel => {
                                    job.kernel_ms.push(ms);
                                    job.rss.push(o.max_rss_kib as f64 / 1024.0);
                                }
                            }
                        }
                        _ => job.failures += 1,
                    }
                }
            }
        }
    }
    bar.finish_and_clear();
    jobs.into_iter()
        .map(|j| DensityRow {
            firmware: j.fw,
            machine: j.machine.to_string(),
            vms: j.n,
            to_entry: summarize(&j.entry_ms),
            to_entry64: summarize(&j.entry64_ms),
            to_kernel: summarize(&j.kernel_ms),
            peak_rss_mib: summarize(&j.rss),
            failures: j.failures,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_timed_in_one_process_get_their_own_count_of_runs() {
        use super::super::test_cell as cell;
        let runs = |phase| runs_of(&cell(Firmware::Qboot, phase, &[]), 10, 50);
        assert_eq!(runs(Phase::Entry), 10);
        assert_eq!(runs(Phase::User), 10);
        assert_eq!(runs(Phase::KernelInit), 10);
        assert_eq!(runs(Phase::FromCont), 50);
        assert_eq!(runs(Phase::SharedEntry), 50);
        assert_eq!(runs(Phase::KernelInitFromCont), 50);
        assert_eq!(runs(Phase::KernelInitOtherFromCont), 50);
    }
}
