//! Statistics of the samples and the phases derived from them.

use serde::Serialize;
use statrs::statistics::{Data, Distribution, Max, Min, OrderStatistics};

use super::{Cell, Firmware, Phase};

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

/// Phase figures of one firmware on one machine: (tQEMU, tFW, tKernel) medians.
pub(super) struct Phases {
    pub start: Option<Summary>,
    pub entry: Option<Summary>,
    pub user: Option<Summary>,
}

pub(super) fn phases(cells: &[Cell], fw: Firmware, machine: &str, sweep: Option<u64>) -> Phases {
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
}
