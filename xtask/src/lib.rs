//! ferrite's host-side tasks, as a library shared by `cargo xtask` and the tests.

pub mod analyze;
pub mod bench;
pub mod block_ends;
pub mod block_runs;
pub mod bzimage;
pub mod chart;
pub mod fuzz;
pub mod host_cost;
pub mod host_profile;
pub mod insn_steps;
pub mod kernel_lines;
pub mod linux_assets;
pub mod other_qemu;
pub mod parity;
pub mod probe;
pub mod profile;
pub mod pvh_probe;
pub mod qemu;
pub mod qmp;
pub mod range;
pub mod rom;
pub mod small_kernel;
pub mod soak;
pub mod stats;
pub mod symbols;
pub mod task;
pub mod tcg_calibration;
pub mod testkernel;
pub mod translation;

use std::path::PathBuf;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A directory of one run's own under `target/<tool>`, removed when dropped:
/// two runs at once (tests on parallel threads, or a test beside a run by
/// hand) would otherwise rewrite each other's probes and logs.
pub fn run_dir(tool: &str) -> anyhow::Result<tempfile::TempDir> {
    use anyhow::Context;
    let base = root().join("target").join(tool);
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&base)
        .with_context(|| format!("creating a directory in {}", base.display()))
}

/// The cargo that runs us (so nested builds use the same toolchain).
pub fn cargo() -> std::process::Command {
    std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}
