//! `cargo xtask analyze`: boots a kernel N times and reports where the time goes
//! (`crate::analyze`).

use std::path::PathBuf;

use anyhow::{Result, bail};

use super::firmware_named;
use crate::qemu::Machine;
use crate::{analyze, linux_assets, rom, small_kernel};

#[derive(clap::Args)]
pub struct Args {
    /// Measured runs per firmware (after one warm-up).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Kernel to boot: "small" (cargo xtask kernel), "stock" (Debian's) or a path.
    #[arg(long, default_value = "small")]
    kernel: String,
    /// The kernel's symbols (vmlinux or System.map) for a kernel given by path;
    /// the small kernel's vmlinux is found by itself.
    #[arg(long)]
    kernel_symbols: Option<PathBuf>,
    /// Firmwares side by side: ferrite, qboot, seabios. The first is the
    /// one the kernel's messages under the others are compared with.
    #[arg(long, value_delimiter = ',', default_value = "ferrite")]
    firmware: Vec<String>,
    /// Other ROM images booted beside them, NAME=PATH (comma-separated):
    /// builds of ferrite, to see what a change does to the kernel's time.
    #[arg(long, value_delimiter = ',', value_parser = super::host_cost::named_rom)]
    rom: Vec<(String, PathBuf)>,
    #[arg(long, default_value = "q35")]
    machine: Machine,
    #[arg(long, default_value_t = 512)]
    memory: u64,
    #[arg(long, default_value_t = 1)]
    cpus: u32,
    /// Boot without initcall_debug.
    #[arg(long)]
    no_initcall_debug: bool,
    /// A regular expression: serial lines it matches are events, and the
    /// time to the first one an activity.
    #[arg(long)]
    pattern: Option<String>,
    /// Skip the twin runs with `quiet` that measure the logging's own cost.
    #[arg(long)]
    no_quiet_check: bool,
    /// How many of the longest activities to list.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Write every run's events and activities here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The timeline chart [default: target/analyze.svg].
    #[arg(long)]
    svg: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let rom = rom::build_firmware(true)?;
    let kernel = kernel(&args.kernel, args.kernel_symbols)?;
    if !kernel.path.exists() {
        bail!("no kernel at {}", kernel.path.display());
    }
    let opts = analyze::Options {
        runs: args.runs,
        firmwares: args
            .firmware
            .iter()
            .map(|f| firmware_named(f))
            .collect::<Result<_>>()?,
        roms: args.rom,
        machine: args.machine,
        kernel,
        memory_mib: args.memory,
        cpus: args.cpus,
        initcall_debug: !args.no_initcall_debug,
        pattern: args.pattern.map(|p| regex::Regex::new(&p)).transpose()?,
        quiet_check: !args.no_quiet_check,
        top: args.top,
        json: args.json,
        svg: args
            .svg
            .unwrap_or_else(|| crate::root().join("target/analyze.svg")),
    };
    analyze::run(&opts, &rom.path)
}

/// The kernel `--kernel` names, with its symbols.
fn kernel(name: &str, symbols: Option<PathBuf>) -> Result<analyze::Kernel> {
    Ok(match name {
        "small" => analyze::Kernel {
            name: "small".into(),
            path: small_kernel::build()?,
            symbols: Some(symbols.unwrap_or_else(small_kernel::vmlinux_path)),
        },
        "stock" => analyze::Kernel {
            name: "stock".into(),
            path: linux_assets::stock_kernel()?,
            symbols,
        },
        path => analyze::Kernel {
            name: path.into(),
            path: PathBuf::from(path),
            symbols,
        },
    })
}
