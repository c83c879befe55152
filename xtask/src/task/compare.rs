//! `cargo xtask compare`: the stock kernel under SeaBIOS and ferrite with the
//! same devices, and every difference the guest sees.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::qemu::Machine;
use crate::{parity, rom};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(
        long,
        alias = "machine",
        value_delimiter = ',',
        default_value = "pc,q35"
    )]
    machines: Vec<Machine>,
    #[arg(long, value_delimiter = ',', default_value = "512,5120")]
    memory: Vec<u64>,
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    cpus: Vec<u32>,
    /// With the machine's ACPI on, off or both (`on,off`); off boots
    /// `-M <machine>,acpi=off`, where Linux reads the MP table.
    #[arg(long, value_delimiter = ',', default_value = "on")]
    acpi: Vec<OnOff>,
    /// Write every section and difference here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let rom = rom::build_firmware(true)?.path;
    let work = crate::root().join("target/ferrite-compare");
    let unexplained = parity::run_all(&rom, &configs(&args), &work, args.json.as_deref())?;
    if unexplained > 0 {
        bail!("{unexplained} difference(s) from SeaBIOS not known to be harmless");
    }
    println!("no differences from SeaBIOS beyond the harmless ones listed in xtask/src/parity.rs");
    Ok(())
}

/// Every combination of the machines, memory sizes, CPU counts and ACPI settings.
fn configs(args: &Args) -> Vec<parity::Config> {
    let mut configs = Vec::new();
    for &machine in &args.machines {
        for &memory_mib in &args.memory {
            for &cpus in &args.cpus {
                for &acpi in &args.acpi {
                    configs.push(parity::Config {
                        machine,
                        memory_mib,
                        cpus,
                        acpi: acpi == OnOff::On,
                    });
                }
            }
        }
    }
    configs
}
