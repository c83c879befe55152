//! `cargo xtask`: build the ROM, boot a kernel with it, build the test kernel, the
//! small bench kernel, and run the benchmark and research tools. Each task is a
//! module of `xtask::task` with its own arguments; this only parses and dispatches.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    xtask::task::Cli::parse().task.run()
}
