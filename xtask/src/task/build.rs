//! `cargo xtask build`: the ROM, with its size and how much is used.

use anyhow::Result;

use crate::rom;

#[derive(clap::Args)]
pub struct Args {
    /// Unoptimised build (target/ferrite-debug.rom).
    #[arg(long)]
    debug: bool,
}

pub fn run(args: Args) -> Result<()> {
    let rom = rom::build_firmware(!args.debug)?;
    println!(
        "{}: used {} of {} bytes ({:.0}%)",
        rom.path.display(),
        rom.used,
        rom.size,
        rom.used as f64 * 100.0 / rom.size as f64
    );
    Ok(())
}
