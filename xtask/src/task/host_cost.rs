//! `cargo xtask host-cost`: the host instructions of QEMU's vCPU thread per
//! boot, by what QEMU did, firmware beside firmware (`crate::host_cost`).

use std::path::PathBuf;

use anyhow::Result;

use crate::bench::Firmware;
use crate::host_cost;
use crate::qemu::Machine;
use crate::tcg_calibration;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "pc")]
    machine: Machine,
    /// Firmwares side by side, comma-separated (ferrite, qboot, seabios,
    /// ovmf, floor); the first two are compared function by function.
    #[arg(long, value_delimiter = ',', default_value = "ferrite,qboot,floor", value_parser = super::any_firmware_named)]
    firmware: Vec<Firmware>,
    /// Other ROM images to measure beside them, NAME=PATH (comma-separated):
    /// builds of ferrite to compare, a change against its base.
    #[arg(long, value_delimiter = ',', value_parser = named_rom)]
    rom: Vec<(String, PathBuf)>,
    /// Functions listed.
    #[arg(long, default_value_t = 25)]
    top: usize,
    /// Write every firmware's counts by function here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also measure what TCG spends to translate each kind of guest code
    /// (synthetic ROMs under callgrind, about a minute) and weigh each
    /// firmware's translated code, kind by kind, with it.
    #[arg(long)]
    calibrate: bool,
    /// Also boot each ferrite build once more under callgrind, QEMU's vCPU
    /// thread cut at the timeline's stamps: the host work step by step
    /// (translating, rebuilding the memory map, the rest).
    #[arg(long)]
    steps: bool,
    /// Also boot each firmware once more under callgrind counting only
    /// QEMU's memory-map rebuilds: each one that changed the map, in order,
    /// with its step (ferrite) and its host instructions.
    #[arg(long)]
    rebuilds: bool,
    /// Boot a probe shaped like this kernel instead of the stock-size one: a
    /// bzImage, or an ELF vmlinux (each firmware's PVH path; the floor ROM is
    /// left out), e.g. target/ferrite-cache/vmlinux-small.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Instead of the probes, boot the small kernel (`cargo xtask kernel`),
    /// bzImage and vmlinux, to its `kernel_init` marker, with QEMU's guest
    /// time following the instruction count (`-icount`): the guest's clock
    /// there (exact), and QEMU's vCPU thread under callgrind (minutes a boot).
    #[arg(long, conflicts_with_all = ["kernel", "steps", "rebuilds", "calibrate"])]
    kernel_init: bool,
    /// With --kernel-init: boot each firmware and kernel this many times
    /// under callgrind, to show how the counts repeat; 0: the guest's clock
    /// only (seconds a boot).
    #[arg(long, default_value_t = 1, requires = "kernel_init")]
    repeat: usize,
    /// With --kernel-init: also compare the kernel's messages, each
    /// firmware's boot against the first's, and list the stretches of the
    /// kernel's own work that moved most (exact under icount; --top of them).
    #[arg(long, requires = "kernel_init")]
    lines: bool,
    /// With --kernel-init: read the kernel's clock in this many phases, the
    /// initramfs 20 KiB longer each time and a numbered word on the command
    /// line: the clock at `kernel_init` moves by milliseconds with both, and
    /// the phases, paired between firmwares, show what a firmware changes
    /// (seconds a boot each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..), requires = "kernel_init")]
    phases: u16,
    /// With --kernel-init: words added to the kernel's command line of every
    /// boot, the same for each firmware, e.g. "i8042.nokbd i8042.noaux" to
    /// see the order of the firmwares without Linux's keyboard probe.
    #[arg(long, default_value = "", requires = "kernel_init")]
    append: String,
    /// Blocks in each calibration ROM.
    #[arg(long, default_value_t = tcg_calibration::BLOCKS)]
    calibration_blocks: usize,
}

pub fn run(args: Args) -> Result<()> {
    host_cost::run(&host_cost::Options {
        machine: args.machine,
        firmwares: args.firmware,
        roms: args.rom,
        top: args.top,
        json: args.json,
        calibrate: args.calibrate.then_some(args.calibration_blocks),
        steps: args.steps,
        rebuilds: args.rebuilds,
        kernel: args.kernel,
        kernel_init: args.kernel_init.then_some(args.repeat),
        lines: args.lines,
        phases: args.phases as usize,
        append: args.append,
    })?;
    Ok(())
}

/// `NAME=PATH`.
pub(super) fn named_rom(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!("{s:?}: expected NAME=PATH")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roms_are_named() {
        assert_eq!(
            named_rom("base=target/base.rom"),
            Ok(("base".into(), PathBuf::from("target/base.rom")))
        );
        assert!(named_rom("target/base.rom").is_err());
        assert!(named_rom("=x").is_err() && named_rom("x=").is_err());
    }
}
