//! `cargo xtask profile`: the guest functions a boot's instructions go to
//! (`crate::profile`).

use std::path::PathBuf;

use anyhow::{Result, bail};

use super::firmware_named;
use crate::qemu::Machine;
use crate::{linux_assets, profile, rom, small_kernel};

#[derive(clap::Args)]
pub struct Args {
    /// Kernel to boot: "small" (with its vmlinux's symbols), "stock" or a path.
    #[arg(long, default_value = "small")]
    kernel: String,
    /// The kernel's symbols (vmlinux or System.map) for a kernel given by path.
    #[arg(long)]
    kernel_symbols: Option<PathBuf>,
    /// ferrite, qboot or seabios.
    #[arg(long, default_value = "ferrite")]
    firmware: String,
    /// The firmware's ELF (qboot, SeaBIOS); ferrite's own is used by default.
    #[arg(long)]
    firmware_symbols: Option<PathBuf>,
    #[arg(long, default_value = "q35")]
    machine: Machine,
    /// List functions at or above this share, in per cent.
    #[arg(long, default_value_t = 0.2)]
    min_share: f64,
    /// Write every function's counts here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let rom = rom::build_firmware(true)?;
    let (kernel, kernel_symbols) = match args.kernel.as_str() {
        "small" => (
            small_kernel::build()?,
            Some(
                args.kernel_symbols
                    .unwrap_or_else(small_kernel::vmlinux_path),
            ),
        ),
        "stock" => (linux_assets::stock_kernel()?, args.kernel_symbols),
        path => (PathBuf::from(path), args.kernel_symbols),
    };
    if !kernel.exists() {
        bail!("no kernel at {}", kernel.display());
    }
    profile::run(
        &profile::Options {
            firmware: firmware_named(&args.firmware)?,
            firmware_symbols: args.firmware_symbols,
            machine: args.machine,
            kernel_name: args.kernel,
            kernel,
            kernel_symbols,
            min_share: args.min_share / 100.0,
            json: args.json,
        },
        &rom,
    )
}
