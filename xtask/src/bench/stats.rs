//! Statistics of the samples and the phases derived from them.

use serde::Serialize;
use statrs::statistics::{Data, Distribution, Max, Min, OrderStatistics};

use super::{Cell, Firmware, Phase};
use crate::stats::{MannWhitney, mann_whitney};

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
    pub p95: f64,
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
        p95: data.percentile(95),
    })
}

/// Parses `ferrite-timeline: reset=0 rust=N ...` into per-step shares.
pub fn parse_timeline(line: &str) -> Option<Vec<(String, f64)>> {
    let stamps: Vec<(&str, u64)> = line
        .strip_prefix(ferrite_contract::timeline::PREFIX)?
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

/// ferrite's median tFW on `machine`: the in-process time where there is one,
/// else the difference of the entry and start medians. One that came out
/// negative is noise and scales nothing: None.
pub(super) fn ferrite_tfw(cells: &[Cell], machine: &str) -> Option<f64> {
    let p = phases(cells, Firmware::Ferrite, machine, None);
    p.cont
        .as_ref()
        .map(|c| c.median)
        .or_else(|| {
            p.entry
                .as_ref()
                .zip(p.start.as_ref())
                .map(|(e, s)| e.median - s.median)
        })
        .filter(|&t| t > 0.0)
}

/// Phase figures of one firmware on one machine: (tQEMU, tFW, tKernel) medians.
pub(super) struct Phases {
    pub start: Option<Summary>,
    pub entry: Option<Summary>,
    pub user: Option<Summary>,
    /// From QMP's `cont` to the probe's entry, in one process.
    pub cont: Option<Summary>,
    /// To the small kernel's `kernel_init` marker.
    pub kernel_init: Option<Summary>,
    /// From QMP's `cont` to the kernel's own 64-bit entry, in one process.
    pub shared: Option<Summary>,
    /// From QMP's `cont` to the small kernel's `kernel_init`, in one process.
    pub kernel_init_cont: Option<Summary>,
    /// The same through the small kernel's other form (`--both-entries`).
    pub kernel_init_other_cont: Option<Summary>,
}

/// The samples (ms) of one cell; empty when it does not exist.
fn samples(
    cells: &[Cell],
    fw: Firmware,
    machine: &str,
    sweep: Option<u64>,
    phase: Phase,
) -> Vec<f64> {
    cells
        .iter()
        .find(|c| c.firmware == fw && c.machine == machine && c.phase == phase && c.sweep == sweep)
        .map_or(Vec::new(), |c| c.samples.iter().map(|s| s.ms).collect())
}

pub(super) fn phases(cells: &[Cell], fw: Firmware, machine: &str, sweep: Option<u64>) -> Phases {
    let get = |f: Firmware, p: Phase| summarize(&samples(cells, f, machine, sweep, p));
    Phases {
        start: get(Firmware::Ferrite, Phase::Start),
        entry: get(fw, Phase::Entry),
        user: get(fw, Phase::User),
        cont: get(fw, Phase::FromCont),
        kernel_init: get(fw, Phase::KernelInit),
        shared: get(fw, Phase::SharedEntry),
        kernel_init_cont: get(fw, Phase::KernelInitFromCont),
        kernel_init_other_cont: get(fw, Phase::KernelInitOtherFromCont),
    }
}

/// The figures a script wants, derived once (`--json`'s `derived`).
#[derive(Clone, Debug, Serialize)]
pub struct Derived {
    pub firmware: Firmware,
    pub machine: String,
    pub sweep: Option<u64>,
    /// Median to ferrite's first instruction (the same QEMU start for all).
    pub tqemu_ms: Option<f64>,
    /// Median to the kernel entry − tQEMU (two whole-process medians).
    pub tfw_ms: Option<f64>,
    /// Median to userspace − median to the kernel entry.
    pub tkernel_ms: Option<f64>,
    /// Whole processes to the kernel entry.
    pub to_entry: Option<Summary>,
    /// Whole processes to userspace (the bench's kernel).
    pub to_user: Option<Summary>,
    /// Whole processes to the small kernel's `kernel_init` marker.
    pub to_kernel_init: Option<Summary>,
    /// From QMP's `cont` to the kernel entry, in one process: the firmware's
    /// time, plus QEMU's exit (the same for every firmware).
    pub tfw_in_process: Option<Summary>,
    /// `tfw_in_process` median − the floor ROM's.
    pub above_floor_ms: Option<f64>,
    /// `tfw_ms` / ferrite's.
    pub tfw_vs_ferrite: Option<f64>,
    /// `above_floor_ms` / ferrite's.
    pub above_floor_vs_ferrite: Option<f64>,
    /// This firmware's in-process times against ferrite's: whether one
    /// run's order of the two is more than the host's noise.
    pub in_process_vs_ferrite: Option<Shift>,
    /// From QMP's `cont` to the kernel's own 64-bit entry (the first
    /// instruction every firmware's path runs), in one process.
    pub to_shared_entry: Option<Summary>,
    /// `to_shared_entry` median − `tfw_in_process` median: what the kernel
    /// spends before its 64-bit entry after this firmware's hand-off (its
    /// real-mode set-up and 32-bit start after a 16-bit entry; nothing after
    /// ferrite's, which enters there).
    pub kernel_setup_ms: Option<f64>,
    /// `to_shared_entry` median − the floor ROM's.
    pub shared_above_floor_ms: Option<f64>,
    /// This firmware's times to the shared entry against ferrite's.
    pub shared_vs_ferrite: Option<Shift>,
    /// From QMP's `cont` to the small kernel's `kernel_init`, in one process.
    pub kernel_init_in_process: Option<Summary>,
    /// This firmware's times to `kernel_init` in one process against ferrite's.
    pub kernel_init_vs_ferrite: Option<Shift>,
    /// From QMP's `cont` to `kernel_init` through the small kernel's other
    /// form, in one process (`--both-entries`).
    pub kernel_init_other_in_process: Option<Summary>,
    /// This firmware's times through the other form against its own through
    /// the bench's form: what the other entry gains (−) or loses (+).
    pub other_form_vs_this: Option<Shift>,
    /// This firmware's times through the other form against ferrite's.
    pub kernel_init_other_vs_ferrite: Option<Shift>,
}

/// How far one firmware's samples lie from ferrite's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Shift {
    /// The median of every difference of one of this firmware's samples and
    /// one of ferrite's (the Hodges-Lehmann estimate): ms behind (+) or
    /// ahead of (−) ferrite, from every pair of samples rather than the two
    /// middle ones.
    pub ms: f64,
    /// The two-sided Mann-Whitney test of the two sets of samples.
    pub test: MannWhitney,
}

/// The shift of `theirs` from `ours`, and its test; None when either is empty.
pub fn shift(theirs: &[f64], ours: &[f64]) -> Option<Shift> {
    let test = mann_whitney(theirs, ours)?;
    let mut d: Vec<f64> = theirs
        .iter()
        .flat_map(|t| ours.iter().map(move |o| t - o))
        .collect();
    d.sort_by(f64::total_cmp);
    let n = d.len();
    let ms = if n % 2 == 1 {
        d[n / 2]
    } else {
        (d[n / 2 - 1] + d[n / 2]) / 2.0
    };
    Some(Shift { ms, test })
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// One [`Derived`] per machine, sweep value and firmware that has cells.
pub(super) fn derive(
    cells: &[Cell],
    machines: &[String],
    sweeps: &[Option<u64>],
    firmwares: &[Firmware],
) -> Vec<Derived> {
    let mut out = Vec::new();
    for machine in machines {
        for &sweep in sweeps {
            let one = |fw: Firmware| {
                let p = phases(cells, fw, machine, sweep);
                let tqemu = p.start.as_ref().map(|s| s.median);
                let floor = phases(cells, Firmware::Floor, machine, sweep);
                let (floor, floor_shared) =
                    (floor.cont.map(|s| s.median), floor.shared.map(|s| s.median));
                Derived {
                    firmware: fw,
                    machine: machine.clone(),
                    sweep,
                    tqemu_ms: tqemu,
                    tfw_ms: p.entry.as_ref().zip(tqemu).map(|(e, q)| e.median - q),
                    tkernel_ms: p
                        .user
                        .as_ref()
                        .zip(p.entry.as_ref())
                        .map(|(u, e)| u.median - e.median),
                    above_floor_ms: p.cont.as_ref().zip(floor).map(|(c, f)| c.median - f),
                    kernel_setup_ms: p
                        .shared
                        .as_ref()
                        .zip(p.cont.as_ref())
                        .map(|(s, c)| s.median - c.median),
                    shared_above_floor_ms: p
                        .shared
                        .as_ref()
                        .zip(floor_shared)
                        .map(|(s, f)| s.median - f),
                    to_shared_entry: p.shared,
                    shared_vs_ferrite: None,
                    kernel_init_in_process: p.kernel_init_cont,
                    kernel_init_vs_ferrite: None,
                    kernel_init_other_in_process: p.kernel_init_other_cont,
                    other_form_vs_this: shift(
                        &samples(cells, fw, machine, sweep, Phase::KernelInitOtherFromCont),
                        &samples(cells, fw, machine, sweep, Phase::KernelInitFromCont),
                    ),
                    kernel_init_other_vs_ferrite: None,
                    to_entry: p.entry,
                    to_user: p.user,
                    to_kernel_init: p.kernel_init,
                    tfw_in_process: p.cont,
                    tfw_vs_ferrite: None,
                    above_floor_vs_ferrite: None,
                    in_process_vs_ferrite: None,
                }
            };
            let from_cont = |fw: Firmware| samples(cells, fw, machine, sweep, Phase::FromCont);
            let ferrite_from_cont = from_cont(Firmware::Ferrite);
            let shared = |fw: Firmware| samples(cells, fw, machine, sweep, Phase::SharedEntry);
            let ferrite_shared = shared(Firmware::Ferrite);
            let init = |fw: Firmware| samples(cells, fw, machine, sweep, Phase::KernelInitFromCont);
            let ferrite_init = init(Firmware::Ferrite);
            let other =
                |fw: Firmware| samples(cells, fw, machine, sweep, Phase::KernelInitOtherFromCont);
            let ferrite_other = other(Firmware::Ferrite);
            let ferrite = one(Firmware::Ferrite);
            for &fw in firmwares {
                if !cells
                    .iter()
                    .any(|c| c.firmware == fw && &c.machine == machine && c.sweep == sweep)
                {
                    continue;
                }
                let mut d = one(fw);
                d.tfw_vs_ferrite = ratio(d.tfw_ms, ferrite.tfw_ms);
                d.above_floor_vs_ferrite = ratio(d.above_floor_ms, ferrite.above_floor_ms);
                if fw != Firmware::Ferrite {
                    d.in_process_vs_ferrite = shift(&from_cont(fw), &ferrite_from_cont);
                    d.shared_vs_ferrite = shift(&shared(fw), &ferrite_shared);
                    d.kernel_init_vs_ferrite = shift(&init(fw), &ferrite_init);
                    d.kernel_init_other_vs_ferrite = shift(&other(fw), &ferrite_other);
                }
                out.push(d);
            }
        }
    }
    out
}

/// `boot-benchmark`'s one-liner: `Result: tFW 4.2ms ± 0.3ms (ferrite, q35)`.
/// tFW is the in-process figure (QMP `cont` to the kernel entry) where there
/// is one, else the difference of whole-process medians with the spread of
/// the time to the kernel entry.
pub fn summary_line(d: &Derived) -> Option<String> {
    let (median, sd) = match (&d.tfw_in_process, d.tfw_ms, &d.to_entry) {
        (Some(c), _, _) => (c.median, c.sd),
        (None, Some(t), Some(e)) => (t, e.sd),
        _ => return None,
    };
    let sweep = d.sweep.map_or(String::new(), |v| format!(", {v}"));
    Some(format!(
        "Result: tFW {median:.1}ms ± {sd:.1}ms ({}, {}{sweep})",
        d.firmware.name(),
        d.machine
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn derived_figures() {
        use super::super::test_cell as cell;
        let cells = [
            cell(Firmware::Ferrite, Phase::Start, &[50.0, 52.0, 54.0]),
            cell(Firmware::Ferrite, Phase::Entry, &[60.0, 62.0, 64.0]),
            cell(Firmware::Ferrite, Phase::FromCont, &[8.0, 9.0, 10.0]),
            cell(Firmware::Ferrite, Phase::User, &[900.0, 1000.0, 1100.0]),
            cell(Firmware::Qboot, Phase::Entry, &[70.0, 72.0, 74.0]),
            cell(Firmware::Qboot, Phase::FromCont, &[11.0, 12.0, 13.0]),
            cell(Firmware::Floor, Phase::FromCont, &[5.0, 6.0, 7.0]),
            cell(Firmware::Ferrite, Phase::SharedEntry, &[8.5, 9.5, 10.5]),
            cell(Firmware::Qboot, Phase::SharedEntry, &[14.0, 15.0, 16.0]),
            cell(Firmware::Floor, Phase::SharedEntry, &[5.0, 6.0, 7.0]),
        ];
        let fws = [
            Firmware::Ferrite,
            Firmware::Qboot,
            Firmware::Seabios,
            Firmware::Floor,
        ];
        let d = derive(&cells, &["q35".into(), "pc".into()], &[None], &fws);
        // SeaBIOS and pc have no cells
        assert_eq!(d.len(), 3);
        let (f, q, floor) = (&d[0], &d[1], &d[2]);
        assert_eq!(f.tqemu_ms, Some(52.0));
        assert_eq!(f.tfw_ms, Some(10.0));
        assert_eq!(f.tkernel_ms, Some(938.0));
        assert_eq!(f.above_floor_ms, Some(3.0));
        assert_eq!(q.tfw_ms, Some(20.0));
        assert_eq!(q.tfw_vs_ferrite, Some(2.0));
        assert_eq!(q.above_floor_ms, Some(6.0));
        assert_eq!(q.above_floor_vs_ferrite, Some(2.0));
        // qboot's 11, 12, 13 against ferrite's 8, 9, 10: every one of the
        // nine differences is 1 to 5 ms, their median 3
        let s = q.in_process_vs_ferrite.unwrap();
        assert_eq!(s.ms, 3.0);
        assert!(s.test.exact && s.test.p < 0.2, "{s:?}");
        assert!(f.in_process_vs_ferrite.is_none());
        assert_eq!(q.tkernel_ms, None);
        // to the kernel's own 64-bit entry: the kernel's set-up after each
        // hand-off, above the floor, and qboot's shift from ferrite
        assert_eq!(f.kernel_setup_ms, Some(0.5));
        assert_eq!(q.kernel_setup_ms, Some(3.0));
        assert_eq!(f.shared_above_floor_ms, Some(3.5));
        assert_eq!(q.shared_above_floor_ms, Some(9.0));
        assert_eq!(q.shared_vs_ferrite.unwrap().ms, 5.5);
        assert!(f.shared_vs_ferrite.is_none());
        // the floor is 0 above itself: no ratio
        assert_eq!(floor.above_floor_ms, Some(0.0));
        assert_eq!(floor.above_floor_vs_ferrite, None);
        assert_eq!(
            summary_line(f).unwrap(),
            "Result: tFW 9.0ms ± 1.0ms (ferrite, q35)"
        );
        // without the in-process cell: the difference of medians, the entry's spread
        let mut g = f.clone();
        g.tfw_in_process = None;
        assert_eq!(
            summary_line(&g).unwrap(),
            "Result: tFW 10.0ms ± 2.0ms (ferrite, q35)"
        );
        g.to_entry = None;
        assert!(summary_line(&g).is_none());
    }

    #[test]
    fn the_shift_is_the_median_of_the_pairwise_differences() {
        // a run 28 ms slower than the rest leaves the shift at the usual 1 ms
        let ours = [10.0, 10.5, 11.0, 11.5, 12.0, 12.5];
        let theirs = [11.0, 11.5, 12.0, 12.5, 13.0, 40.0];
        let s = shift(&theirs, &ours).unwrap();
        assert_eq!(s.ms, 1.0);
        // samples that overlap this much are not told apart
        assert!(s.test.p > 0.05, "{s:?}");
        // far apart: told apart, the sign says who is behind
        let far = [20.0, 20.5, 21.0, 21.5, 22.0, 22.5];
        let s = shift(&ours, &far).unwrap();
        assert_eq!(s.ms, -10.0);
        assert!(s.test.p < 0.01, "{s:?}");
        assert!(shift(&[], &ours).is_none());
        assert!(shift(&ours, &[]).is_none());
        // an even count of differences: the mean of the middle two
        assert_eq!(shift(&[3.0], &[1.0, 2.0]).unwrap().ms, 1.5);
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
        assert!(s.p95 >= s.p75 && s.p95 <= 50.0);
        assert!(summarize(&[]).is_none());
        let one = summarize(&[7.0]).unwrap();
        assert_eq!((one.median, one.min, one.max), (7.0, 7.0, 7.0));
        assert_eq!(one.sd, 0.0);
    }
}
