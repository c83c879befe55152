//! `cargo xtask`'s tasks, one module each with its own arguments (`Args`) and
//! `run()`; `src/main.rs` only parses the command line and calls [`Task::run`].

pub mod analyze;
pub mod bench;
pub mod bench_range;
pub mod build;
pub mod compare;
pub mod fetch_qemu;
pub mod fuzz;
pub mod host_cost;
pub mod host_profile;
pub mod kernel;
pub mod profile;
pub mod run;
pub mod soak;
pub mod testkernel;
pub mod translation;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

use crate::bench::Firmware;

#[derive(Parser)]
#[command(about = "ferrite's build, run and benchmark tasks")]
pub struct Cli {
    #[command(subcommand)]
    pub task: Task,
}

#[derive(Subcommand)]
pub enum Task {
    /// Build target/ferrite.rom.
    Build(build::Args),
    /// Boot a kernel under QEMU with ferrite (default: Debian's stock kernel and a
    /// checking initramfs), serial on the terminal.
    Run(run::Args),
    /// Build the fake-bzImage test kernel.
    Testkernel(testkernel::Args),
    /// Build the small instrumented Linux for the bench (needs root for apt-get).
    Kernel(kernel::Args),
    /// Boot the stock kernel under SeaBIOS and ferrite with the same devices and
    /// report every difference the guest sees (iomem, PCI, MTRRs, e820, DMI...).
    Compare(compare::Args),
    /// Boot ferrite at the edges of QEMU's sizes (memory, CPUs, CPU models,
    /// ACPI/HPET off, NUMA, memory hot-plug, no DMA), a mixed soak, and guest
    /// reboots in a row; report every failure with its serial log.
    Soak(soak::Args),
    /// Fuzz every parser of what QEMU or the kernel hands over (firmware/src/fuzz/)
    /// in an optimised build with overflow checks; reports the cases per parser.
    Fuzz(fuzz::Args),
    /// Measure tQEMU, tFW and tKernel for ferrite, qboot, SeaBIOS, the floor ROM
    /// (and OVMF), with the cost model.
    Bench(bench::Args),
    /// Boot a kernel N times and report where the time goes: every event on the
    /// serial port and from the host, activities with mean ± sd and share, a
    /// timeline SVG and every run's events as JSON.
    Analyze(analyze::Args),
    /// ferrite's tFW, guest instructions and port exits at each commit of a git
    /// range (built in worktrees under target/bench-range/), in interleaved
    /// rounds; flags each change beyond the noise.
    BenchRange(bench_range::Args),
    /// Which guest functions the boot's instructions go to (TCG,
    /// -d in_asm,exec,nochain), up to the first 0xf6 marker (the small kernel's
    /// kernel_init).
    Profile(profile::Args),
    /// ferrite's code translated under TCG to the kernel entry, by step and by
    /// source line (a build with line tables; the cost model's µs): where its
    /// time under TCG goes.
    Translation(translation::Args),
    /// QEMU's vCPU thread's CPU time per boot under TCG, by symbol, firmware
    /// beside firmware (perf record, interleaved boots): what the host
    /// spends, measured rather than modelled.
    HostProfile(host_profile::Args),
    /// The host instructions QEMU's vCPU thread executes per boot under TCG
    /// (callgrind: deterministic), by what QEMU did for the firmware
    /// (translating, rebuilding the memory map, device accesses), firmware
    /// beside firmware.
    HostCost(host_cost::Args),
    /// Fetch another QEMU (by default the release's backports) from the
    /// system's archive and unpack it under target/qemu/, installing nothing;
    /// `FERRITE_QEMU=<its qemu-system-x86_64>` runs the tests and the bench on it.
    FetchQemu(fetch_qemu::Args),
}

impl Task {
    pub fn run(self) -> Result<()> {
        match self {
            Task::Build(a) => build::run(a),
            Task::Run(a) => run::run(a),
            Task::Testkernel(a) => testkernel::run(a),
            Task::Kernel(a) => kernel::run(a),
            Task::Compare(a) => compare::run(a),
            Task::Soak(a) => soak::run(a),
            Task::Fuzz(a) => fuzz::run(a),
            Task::Bench(a) => bench::run(a),
            Task::Analyze(a) => analyze::run(a),
            Task::BenchRange(a) => bench_range::run(a),
            Task::Profile(a) => profile::run(a),
            Task::Translation(a) => translation::run(a),
            Task::HostProfile(a) => host_profile::run(a),
            Task::HostCost(a) => host_cost::run(a),
            Task::FetchQemu(a) => fetch_qemu::run(a),
        }
    }
}

/// A firmware named on the command line (`--firmware`).
fn firmware_named(name: &str) -> Result<Firmware> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "ferrite" => Firmware::Ferrite,
        "qboot" => Firmware::Qboot,
        "seabios" => Firmware::Seabios,
        _ => bail!("unknown firmware {name} (ferrite, qboot, seabios)"),
    })
}

/// As [`firmware_named`], and also OVMF and the floor ROM, for the tools that
/// boot only the probe kernel.
fn any_firmware_named(name: &str) -> Result<Firmware> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "ovmf" => Firmware::Ovmf,
        "floor" => Firmware::Floor,
        _ => firmware_named(name).map_err(|_| {
            anyhow::anyhow!("unknown firmware {name} (ferrite, qboot, seabios, ovmf, floor)")
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_task_parses_its_defaults() {
        for task in [
            "build",
            "run",
            "testkernel",
            "kernel",
            "compare",
            "soak",
            "fuzz",
            "bench",
            "analyze",
            "profile",
            "translation",
            "host-profile",
            "host-cost",
            "fetch-qemu",
        ] {
            assert!(Cli::try_parse_from(["xtask", task]).is_ok(), "{task}");
        }
        let cli = Cli::try_parse_from(["xtask", "bench-range", "a..b", "--runs", "3"]).unwrap();
        assert!(matches!(cli.task, Task::BenchRange(a) if a.runs == 3 && a.range == "a..b"));
        assert!(firmware_named("SeaBIOS").is_ok() && firmware_named("ovmf").is_err());
        let cli =
            Cli::try_parse_from(["xtask", "host-profile", "--firmware", "ferrite,Floor"]).unwrap();
        assert!(matches!(cli.task, Task::HostProfile(_)));
        assert_eq!(any_firmware_named("ovmf").unwrap(), Firmware::Ovmf);
        assert!(any_firmware_named("coreboot").is_err());
    }
}
