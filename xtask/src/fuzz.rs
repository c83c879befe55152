//! `cargo xtask fuzz`: the firmware's fuzz targets (firmware/src/fuzz/), run
//! long in the `fuzz` profile (optimised, overflow checks on), with a case count
//! per parser at the end.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

pub struct Options {
    pub cases: u64,
    pub parser: Option<String>,
    pub seed: Option<u64>,
    /// Add inputs with new outcomes (and a failing input) to the corpus.
    pub save: bool,
}

/// One target's result, from the `fuzz-result:` lines of the test.
#[derive(Debug, PartialEq)]
pub struct TargetResult {
    pub target: String,
    pub cases: u64,
    pub seconds: f64,
}

pub fn parse_result(line: &str) -> Option<TargetResult> {
    let rest = line.strip_prefix("fuzz-result: ")?;
    let mut target = None;
    let mut cases = None;
    let mut seconds = None;
    for field in rest.split_whitespace() {
        match field.split_once('=')? {
            ("target", v) => target = Some(v.to_string()),
            ("cases", v) => cases = v.parse().ok(),
            ("seconds", v) => seconds = v.parse().ok(),
            _ => {}
        }
    }
    Some(TargetResult {
        target: target?,
        cases: cases?,
        seconds: seconds?,
    })
}

pub fn run(opts: &Options) -> Result<Vec<TargetResult>> {
    let seed = opts.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let mut cmd = crate::cargo();
    cmd.current_dir(crate::root()).args([
        "test",
        "-p",
        "ferrite",
        "--lib",
        "--profile",
        "fuzz",
        "--",
        "fuzz::fuzz_every_parser",
        "--exact",
        "--nocapture",
    ]);
    cmd.env("FERRITE_FUZZ_CASES", opts.cases.to_string())
        .env("FERRITE_FUZZ_SEED", seed.to_string())
        .env("RUST_BACKTRACE", "0");
    if let Some(p) = &opts.parser {
        cmd.env("FERRITE_FUZZ_TARGET", p);
    }
    if opts.save {
        cmd.env("FERRITE_FUZZ_SAVE", "1");
    }
    eprintln!(
        "fuzz: {} cases per parser, seed {seed}{}",
        opts.cases,
        if opts.save {
            ", new outcomes saved to firmware/fuzz-corpus/"
        } else {
            ""
        }
    );
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let mut results = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line?;
        if let Some(r) = parse_result(&line) {
            eprintln!(
                "fuzz: {:<14} {:>10} cases  {:>7.1} s",
                r.target, r.cases, r.seconds
            );
            results.push(r);
        } else {
            println!("{line}");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("a fuzz target failed (seed {seed}); see its shrunk input above");
    }
    println!("| parser | cases | seconds |\n|---|---|---|");
    for r in &results {
        println!("| {} | {} | {:.1} |", r.target, r.cases, r.seconds);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_parsed() {
        assert_eq!(
            parse_result("fuzz-result: target=e820 cases=1000004 seconds=12.5"),
            Some(TargetResult {
                target: "e820".into(),
                cases: 1_000_004,
                seconds: 12.5
            })
        );
        assert_eq!(
            parse_result("fuzz-result: target=e820 cases=x seconds=1"),
            None
        );
        assert_eq!(parse_result("test fuzz::fuzz_every_parser ... ok"), None);
    }
}
