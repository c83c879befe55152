//! `cargo xtask translation`: ferrite's code translated under TCG, by step
//! and by source line (`crate::translation`).

use std::path::PathBuf;

use anyhow::Result;

use crate::qemu::Machine;
use crate::translation;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "pc")]
    machine: Machine,
    /// Source lines listed per table.
    #[arg(long, default_value_t = 25)]
    top: usize,
    /// Also list the source lines of this step (a timeline name: pci_hardware,
    /// acpi_smbios, ...).
    #[arg(long)]
    step: Option<String>,
    /// Write every step's and line's counts here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also boot once with every block run logged (`-d exec,nochain`): the
    /// blocks that ran most, and the steps from one block to the next that
    /// TCG looks up (a return, an indirect jump, a jump to another page)
    /// rather than follows a link.
    #[arg(long)]
    runs: bool,
    /// Boot a probe shaped like this kernel instead of the stock-size one: a
    /// bzImage, or an ELF vmlinux (its PVH path), e.g.
    /// target/ferrite-cache/vmlinux-small.
    #[arg(long)]
    kernel: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    translation::run(&translation::Options {
        machine: args.machine,
        top: args.top,
        step: args.step,
        json: args.json,
        runs: args.runs,
        kernel: args.kernel,
    })?;
    Ok(())
}
