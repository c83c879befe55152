//! `cargo xtask bench-range`: ferrite's tFW, guest instructions and port exits
//! at each commit of a git range (`crate::range`).

use std::path::PathBuf;

use anyhow::Result;

use crate::qemu::Machine;
use crate::range;

#[derive(clap::Args)]
pub struct Args {
    /// A..B: A is the baseline, then each commit after it up to B.
    pub range: String,
    /// Measured runs per commit and marker (after one warm-up).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    #[arg(long, default_value = "q35")]
    machine: Machine,
    #[arg(long, default_value_t = 512)]
    memory: u64,
    /// Skip the guest-instruction counts under KVM.
    #[arg(long)]
    no_counts: bool,
    /// Write every sample and test here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    range::run(&range::Options {
        range: args.range,
        runs: args.runs,
        machine: args.machine,
        memory_mib: args.memory,
        count_instructions: !args.no_counts,
        json: args.json,
    })
}
