//! `cargo xtask soak`: ferrite at the edges of QEMU's sizes, a mixed soak, and
//! guest reboots in a row; every failure with its serial log.

use anyhow::{Result, bail};

use crate::qemu::Machine;
use crate::{rom, soak};

#[derive(clap::Args)]
pub struct Args {
    /// The exhaustive size matrix (the default when nothing else is asked).
    #[arg(long)]
    matrix: bool,
    /// A mixed soak of this many boots drawn from the matrix's dimensions.
    #[arg(long)]
    boots: Option<usize>,
    /// Seed of the mixed soak.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Guest reboots in a row on pc and q35, each back through ferrite.
    #[arg(long)]
    reboots: Option<u32>,
}

pub fn run(args: Args) -> Result<()> {
    let rom = rom::build_firmware(true)?;
    let mut assets = soak::Assets::new(&rom.path, &crate::root().join("target/ferrite-soak"))?;
    let mut failed = 0;
    if let Some(n) = args.reboots {
        for machine in [Machine::Pc, Machine::Q35] {
            let v = soak::reboots(machine, n, &assets)?;
            match &v.failure {
                None => println!(
                    "{}: {n} reboots in a row, each back through ferrite ({:.1} s)",
                    machine.name(),
                    v.wall.as_secs_f64()
                ),
                Some((why, cmd, serial)) => {
                    failed += 1;
                    println!("{}: reboots FAILED: {why}\n{cmd}\n{serial}", machine.name());
                }
            }
        }
    }
    if let Some(n) = args.boots {
        failed += soak::run_all(&soak::mixed(n, args.seed), &mut assets)?;
    }
    if args.matrix || (args.boots.is_none() && args.reboots.is_none()) {
        failed += soak::run_all(&soak::matrix(), &mut assets)?;
    }
    if failed > 0 {
        bail!("{failed} failure(s)");
    }
    Ok(())
}
