//! `cargo xtask fuzz`: every parser of what QEMU or the kernel hands over.

use anyhow::Result;

use crate::fuzz;

#[derive(clap::Args)]
pub struct Args {
    /// Generated cases per parser (the corpus is replayed on top).
    #[arg(long, default_value_t = 1_000_000)]
    cases: u64,
    /// Only this parser (e820, kernel, fwcfg_dir, fwcfg_read, table_loader,
    /// setup_data, smbios, pci, mptable, pvh, multiboot).
    #[arg(long)]
    parser: Option<String>,
    /// Random seed (default: from the clock; printed, to repeat a run).
    #[arg(long)]
    seed: Option<u64>,
    /// Do not add inputs with new outcomes to firmware/fuzz-corpus/.
    #[arg(long)]
    no_save: bool,
}

pub fn run(args: Args) -> Result<()> {
    fuzz::run(&fuzz::Options {
        cases: args.cases,
        parser: args.parser,
        seed: args.seed,
        save: !args.no_save,
    })?;
    Ok(())
}
