//! Running the cells: interleaved shuffled rounds, and ferrite's own timeline.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;

use super::stats::{parse_timeline, phases};
use super::{Cell, Firmware, HANDOFF_STEP, Phase, Sample, TimelineStep};
use crate::probe;

/// One extra boot of ferrite per machine with its timeline report switched on
/// (time per step under TCG) and, with `elf`, one under KVM with every
/// instruction traced (instructions per step).
pub(super) fn ferrite_timelines(
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

/// Every cell `runs` times after a warm-up, in shuffled rounds.
pub(super) fn rounds(cells: &mut [Cell], runs: usize) -> Result<()> {
    let total = (cells.len() * (runs + 1)) as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} runs, {elapsed} [{msg}]").unwrap(),
    );
    let mut order: Vec<usize> = (0..cells.len()).collect();
    let mut rng = rand::rng();
    for round in 0..=runs {
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
    Ok(())
}
