//! `cargo xtask bench`: tQEMU, tFW and tKernel for ferrite, qboot, SeaBIOS, the
//! floor ROM (and OVMF), with the cost model (`crate::bench`).

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::bench::{self, Firmware};
use crate::qemu::Machine;
use crate::{rom, small_kernel};

#[derive(clap::Args)]
pub struct Args {
    /// Measured runs per cell (after one warm-up).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Measured runs per cell timed inside one process (from QMP `cont`),
    /// which take tens of milliseconds each: enough of them to order
    /// firmwares a millisecond apart, which 10 do not on this host.
    #[arg(long, default_value_t = 50)]
    in_process_runs: usize,
    /// A useful answer in under two minutes: 3 runs (15 in one process),
    /// q35 only (unless --machines names others), tKernel after ferrite only.
    #[arg(long)]
    quick: bool,
    /// Machines to boot [default: pc,q35,microvm].
    #[arg(long, value_delimiter = ',')]
    machines: Option<Vec<Machine>>,
    /// Also run OVMF (takes seconds per boot).
    #[arg(long)]
    ovmf: bool,
    /// Kernel to boot: a path (a bzImage, or an ELF vmlinux booted through
    /// PVH), "stock" (Debian's), "small" (cargo xtask kernel) or
    /// "small-vmlinux" (the same kernel's vmlinux, PVH entry).
    #[arg(long, default_value = "stock")]
    kernel: String,
    #[arg(long, default_value_t = 512)]
    memory: u64,
    #[arg(long, default_value_t = 1)]
    cpus: u32,
    /// Write every raw sample, command line, QEMU version, host and date here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the results as a Markdown table here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Skip the cost model (translated code, KVM exits and instructions, host counts).
    #[arg(long)]
    no_counts: bool,
    /// Vary one parameter: memory=128,512,2048 | cpus=1,2,4 | kernel-size=2,8,32 (MiB).
    #[arg(long)]
    sweep: Option<bench::Sweep>,
    /// Also time every firmware to the small kernel's kernel_init marker
    /// (cargo xtask kernel), beside the bench kernel's /init: its vmlinux
    /// when the bench kernel is an ELF (PVH), else its bzImage.
    #[arg(long)]
    end_to_end: bool,
    /// With --end-to-end: also time every firmware to kernel_init through the
    /// small kernel's other form (its vmlinux when the bench boots a bzImage,
    /// and the other way round), in one process, interleaved with the rest:
    /// the bzImage and PVH paths side by side in one run.
    #[arg(long, requires = "end_to_end")]
    both_entries: bool,
    /// Start N VMs together per firmware and machine (e.g. 1,4,16): median
    /// and p95 to the kernel entry and to the small kernel's marker, peak RSS.
    #[arg(long, value_delimiter = ',')]
    density: Vec<usize>,
    /// Print only one "Result: tFW ..." line per firmware and machine.
    #[arg(long)]
    summary: bool,
    /// Boot the kernels on pc and q35 without `tsc_early_khz`: they
    /// calibrate their TSC against the PIT as users' kernels do, and the
    /// times to /init and kernel_init carry what each firmware leaves that
    /// calibration (a failed one costs about 100 ms under TCG).
    #[arg(long)]
    tsc_calibration: bool,
}

pub fn run(args: Args) -> Result<()> {
    if args.density.contains(&0) {
        bail!("--density takes positive numbers of VMs");
    }
    let rom = rom::build_firmware(true)?;
    let kernel = kernel(&args.kernel)?;
    let mut firmwares = vec![
        Firmware::Ferrite,
        Firmware::Qboot,
        Firmware::Seabios,
        Firmware::Floor,
    ];
    if args.ovmf {
        firmwares.push(Firmware::Ovmf);
    }
    // The small kernel in the bench kernel's form, and in the other.
    let small = match args.end_to_end || !args.density.is_empty() {
        true => Some(small_kernel_forms(
            kernel.as_deref(),
            small_kernel::build()?,
            small_kernel::vmlinux_path(),
        )?),
        false => None,
    };
    let quick = args.quick;
    let opts = bench::Options {
        runs: if quick { 3 } else { args.runs },
        in_process_runs: if quick { 15 } else { args.in_process_runs },
        machines: args.machines.unwrap_or_else(|| match quick {
            true => vec![Machine::Q35],
            false => vec![Machine::Pc, Machine::Q35, Machine::Microvm],
        }),
        firmwares,
        memory_mib: args.memory,
        cpus: args.cpus,
        kernel,
        json: args.json,
        markdown: args.markdown,
        count_instructions: !args.no_counts,
        sweep: args.sweep,
        tkernel_ferrite_only: quick,
        small_kernel: small.as_ref().map(|(same, _)| same.clone()),
        other_small_kernel: small.filter(|_| args.both_entries).map(|(_, other)| other),
        density: args.density,
        summary: args.summary,
        tsc_calibration: args.tsc_calibration,
    };
    bench::run(&opts, &rom)
}

/// The small kernel in the bench kernel's form (its vmlinux when the bench
/// kernel is an ELF, booted through PVH; else its bzImage), then in the other.
fn small_kernel_forms(
    bench_kernel: Option<&std::path::Path>,
    bzimage: PathBuf,
    vmlinux: PathBuf,
) -> Result<(PathBuf, PathBuf)> {
    let elf = match bench_kernel {
        Some(k) => crate::pvh_probe::is_elf_file(k)?,
        None => false,
    };
    Ok(if elf {
        (vmlinux, bzimage)
    } else {
        (bzimage, vmlinux)
    })
}

/// The kernel `--kernel` names: None for Debian's stock kernel.
fn kernel(name: &str) -> Result<Option<PathBuf>> {
    Ok(match name {
        "stock" => None,
        "small" => Some(small_kernel::build()?),
        "small-vmlinux" => {
            small_kernel::build()?;
            Some(small_kernel::vmlinux_path())
        }
        path => {
            let p = PathBuf::from(path);
            if !p.exists() {
                bail!("no kernel at {path}");
            }
            Some(p)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--end-to-end` times the small kernel in the bench kernel's form:
    /// with `--kernel small-vmlinux` (or any ELF) its vmlinux, else its
    /// bzImage (the stock kernel too).
    #[test]
    fn the_small_kernel_follows_the_bench_kernels_form() {
        let dir = tempfile::tempdir().unwrap();
        let (elf, bz) = (dir.path().join("vmlinux"), dir.path().join("bzImage"));
        std::fs::write(&elf, b"\x7fELF\x02\x01").unwrap();
        std::fs::write(&bz, b"MZ\0\0").unwrap();
        let forms = |k: Option<&std::path::Path>| {
            small_kernel_forms(k, "small-bz".into(), "small-vm".into()).unwrap()
        };
        assert_eq!(forms(Some(&elf)), ("small-vm".into(), "small-bz".into()));
        assert_eq!(forms(Some(&bz)), ("small-bz".into(), "small-vm".into()));
        assert_eq!(forms(None), ("small-bz".into(), "small-vm".into()));
        let missing = dir.path().join("none");
        assert!(small_kernel_forms(Some(&missing), "a".into(), "b".into()).is_err());
    }
}
