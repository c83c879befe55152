//! `cargo xtask host-profile`: QEMU's vCPU thread's CPU time per boot, by
//! name, firmware beside firmware (`crate::host_profile`).

use std::path::PathBuf;

use anyhow::Result;

use crate::bench::Firmware;
use crate::host_profile;
use crate::qemu::Machine;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "pc")]
    machine: Machine,
    /// Firmwares side by side, comma-separated (ferrite, qboot, seabios,
    /// ovmf, floor); the first two are compared name by name.
    #[arg(long, value_delimiter = ',', default_value = "ferrite,qboot", value_parser = super::any_firmware_named)]
    firmware: Vec<Firmware>,
    /// Boots recorded per firmware, alternating between them.
    #[arg(long, default_value_t = 20)]
    boots: usize,
    /// Samples a second.
    #[arg(long, default_value_t = 20_000)]
    frequency: u32,
    /// Names listed.
    #[arg(long, default_value_t = 25)]
    top: usize,
    /// Write every firmware's times by name here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    host_profile::run(&host_profile::Options {
        machine: args.machine,
        firmwares: args.firmware,
        boots: args.boots,
        frequency: args.frequency,
        top: args.top,
        json: args.json,
    })?;
    Ok(())
}
