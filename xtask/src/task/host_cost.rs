//! `cargo xtask host-cost`: the host instructions of QEMU's vCPU thread per
//! boot, by what QEMU did, firmware beside firmware (`crate::host_cost`).

use std::path::PathBuf;

use anyhow::Result;

use crate::bench::Firmware;
use crate::host_cost;
use crate::qemu::Machine;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "pc")]
    machine: Machine,
    /// Firmwares side by side, comma-separated (ferrite, qboot, seabios,
    /// ovmf, floor); the first two are compared function by function.
    #[arg(long, value_delimiter = ',', default_value = "ferrite,qboot,floor", value_parser = super::any_firmware_named)]
    firmware: Vec<Firmware>,
    /// Functions listed.
    #[arg(long, default_value_t = 25)]
    top: usize,
    /// Write every firmware's counts by function here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    host_cost::run(&host_cost::Options {
        machine: args.machine,
        firmwares: args.firmware,
        top: args.top,
        json: args.json,
    })?;
    Ok(())
}
