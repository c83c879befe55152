//! `cargo xtask bench-range`: ferrite at each commit of a git range, and at
//! other builds given as ROMs: its time in one process and the cost model's
//! counts (`crate::range`).

use std::path::PathBuf;

use anyhow::Result;

use crate::qemu::Machine;
use crate::range;

#[derive(clap::Args)]
pub struct Args {
    /// A..B: A is the baseline, then each commit after it up to B.
    pub range: String,
    /// Other builds to measure after the range's commits, NAME=PATH (a ROM
    /// image: an experiment, a build with a patch applied); repeatable.
    #[arg(long = "rom", value_parser = range::parse_rom)]
    pub roms: Vec<(String, PathBuf)>,
    /// Measured runs per build (after one warm-up), each timed inside one
    /// QEMU process from QMP `cont`: tens of milliseconds each.
    #[arg(long, default_value_t = 50)]
    pub runs: usize,
    #[arg(long, default_value = "q35")]
    machine: Machine,
    #[arg(long, default_value_t = 512)]
    memory: u64,
    /// Skip the deterministic counts (translated code, callgrind, KVM exits).
    #[arg(long)]
    no_counts: bool,
    /// Write every sample and count here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    range::run(&range::Options {
        range: args.range,
        roms: args.roms,
        runs: args.runs,
        machine: args.machine,
        memory_mib: args.memory,
        counts: !args.no_counts,
        json: args.json,
    })
}
