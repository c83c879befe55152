//! `cargo xtask fetch-qemu`: another QEMU unpacked under `target/qemu/`, for
//! the tests and the bench (`FERRITE_QEMU`).

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::other_qemu;

#[derive(clap::Args)]
pub struct Args {
    /// The suite of the system's archive to take it from (default: the
    /// release's backports, e.g. bookworm-backports)
    #[arg(long)]
    suite: Option<String>,
    /// Where to unpack it (a directory per version)
    #[arg(long, default_value = "target/qemu")]
    dest: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let suite = match args.suite {
        Some(s) => s,
        None => format!("{}-backports", codename()?),
    };
    let dest = crate::root().join(&args.dest);
    let binary = other_qemu::fetch(&suite, &dest)?;
    let version = crate::bench::command_output(&binary.to_string_lossy(), &["--version"]);
    println!("{}", version.lines().next().unwrap_or_default());
    println!("{}", binary.display());
    println!(
        "run the tests or the bench on it with {}={} cargo test (or cargo xtask bench)",
        crate::qemu::QEMU_ENV,
        binary.display()
    );
    Ok(())
}

/// The system's release codename (`VERSION_CODENAME` of /etc/os-release).
fn codename() -> Result<String> {
    let text = std::fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .context("no VERSION_CODENAME in /etc/os-release: pass --suite")
}
