//! `cargo xtask kernel`: the small instrumented Linux of the bench.

use anyhow::Result;

use crate::small_kernel;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_: Args) -> Result<()> {
    println!("{}", small_kernel::build()?.display());
    Ok(())
}
