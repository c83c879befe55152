//! `cargo xtask testkernel`: the fake-bzImage test kernel, as the tests build it.

use anyhow::Result;

use crate::testkernel;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_: Args) -> Result<()> {
    let path = crate::root().join("target/testkernel.bzImage");
    testkernel::build(&testkernel::BzImageSpec::default(), &path)?;
    println!("{}", path.display());
    Ok(())
}
