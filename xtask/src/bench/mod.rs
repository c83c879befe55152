//! `cargo xtask bench`: tQEMU, tFW and tKernel for ferrite and its peers, after
//! NEMU's "Measuring Boot Latency": boot QEMU many times with an isa-debug-exit
//! device on the port of one phase's marker, time the whole QEMU process, and
//! derive the phases from the medians.
//!
//! * tQEMU  = QEMU start to ferrite's first instruction (its 0xf5 marker); the
//!   peers write no markers, so they are given ferrite's figure on the same machine.
//! * tFW    = time to the kernel entry (the probe kernel's marker, port 0xf7) − tQEMU.
//! * tKernel = time to the first userspace instruction (/init writes 0xf6) − the
//!   probe's time. The probe is as large as the real kernel, so both pay the same
//!   fw_cfg loading.
//!
//! Cells run interleaved, in shuffled rounds after a warm-up, so the noise of a
//! shared 2-core machine spreads over all of them.

pub mod cost;
mod plan;
pub mod ram_touch;
mod report;
mod run;
mod stats;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use serde::Serialize;

use crate::linux_assets;
use crate::qemu::{Machine, Qemu};
use report::Report;

pub use plan::{Options, Sweep, SweepParam};
pub use stats::{Shift, Summary, parse_timeline, shift, summarize};

/// ferrite's start marker port.
const START_PORT: u16 = ferrite_contract::marker::START_PORT;
/// The port /init writes 2 to.
const USER_PORT: u16 = ferrite_contract::marker::USER_PORT;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Firmware {
    Ferrite,
    Qboot,
    Seabios,
    Ovmf,
    /// The floor ROM: only loads the kernel and initrd (the least a `-kernel`
    /// firmware can do), built into [`FLOOR_ROM`].
    Floor,
}

/// Where the floor ROM is expected, relative to the workspace.
pub const FLOOR_ROM: &str = "target/floor/floor.rom";

impl Firmware {
    /// QEMU's exit statuses when this firmware's boot reaches the probe
    /// kernel's entry: the probe's marker for any of its entries, or the
    /// floor ROM's own (it writes 3 to the probe's port itself).
    pub fn entry_statuses(self) -> Vec<i32> {
        if self == Firmware::Floor {
            return vec![ferrite_contract::qemu_exit(3)];
        }
        crate::probe::Entry::ALL
            .iter()
            .map(|e| ferrite_contract::qemu_exit(e.value()))
            .collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            Firmware::Ferrite => "ferrite",
            Firmware::Qboot => "qboot",
            Firmware::Seabios => "SeaBIOS",
            Firmware::Ovmf => "OVMF",
            Firmware::Floor => "floor",
        }
    }

    /// The research tools' boot ([`crate::probe::stock_size_boot`]) with this
    /// firmware, its files written into `work`.
    pub fn stock_size_boot(self, ferrite: &Path, machine: Machine, work: &Path) -> Result<Qemu> {
        let image = self
            .image(ferrite, machine)
            .map_err(|why| anyhow::anyhow!("{}: {why}", self.name()))?;
        crate::probe::stock_size_boot(work, machine, image)
    }

    /// The image, or why it cannot be used.
    pub fn image(self, ferrite: &Path, machine: Machine) -> Result<PathBuf, String> {
        let path = match (self, machine) {
            (Firmware::Ferrite, _) => ferrite.to_path_buf(),
            (Firmware::Qboot, _) => crate::qemu::shipped_rom("qboot.rom"),
            (Firmware::Seabios, Machine::Microvm) => "/usr/share/seabios/bios-microvm.bin".into(),
            (Firmware::Seabios, _) => "/usr/share/seabios/bios-256k.bin".into(),
            (Firmware::Ovmf, Machine::Microvm) => {
                return Err("OVMF does not support microvm".into());
            }
            (Firmware::Ovmf, _) => "/usr/share/ovmf/OVMF.fd".into(),
            (Firmware::Floor, _) => {
                let rom = crate::root().join(FLOOR_ROM);
                if !rom.exists() {
                    return Err(format!(
                        "no {FLOOR_ROM} (build it with OUT=target/floor bash <baseline>/floor/build.sh)"
                    ));
                }
                rom
            }
        };
        if path.exists() {
            Ok(path)
        } else {
            Err(format!(
                "{} not found (apt-get install qemu-system-data seabios ovmf)",
                path.display()
            ))
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Phase {
    /// To ferrite's first instruction.
    Start,
    /// To the probe kernel's entry.
    Entry,
    /// To the real kernel's first userspace instruction.
    User,
    /// From QMP's `cont` to the probe kernel's entry, in one QEMU process
    /// started paused: the firmware's time without QEMU's start-up.
    FromCont,
    /// To the small kernel's `kernel_init` marker (`--end-to-end`).
    KernelInit,
    /// From QMP's `cont` to the bench kernel's own 64-bit entry, as
    /// `FromCont` (one process): the first instruction every firmware's path
    /// through the kernel shares ([`crate::probe::patch_entry64`]).
    SharedEntry,
    /// From QMP's `cont` to the small kernel's `kernel_init` marker, as
    /// `FromCont` (one process): without QEMU's start-up, whose few
    /// milliseconds of noise every whole-process time carries.
    KernelInitFromCont,
    /// As `KernelInitFromCont`, with the small kernel's other form (its
    /// vmlinux, through PVH, when the bench boots its bzImage, and the other
    /// way round; `--both-entries`): the two paths interleaved in one run.
    KernelInitOtherFromCont,
}

impl Phase {
    /// Timed inside one process, from QMP's `cont`.
    pub fn from_cont(self) -> bool {
        matches!(
            self,
            Phase::FromCont
                | Phase::SharedEntry
                | Phase::KernelInitFromCont
                | Phase::KernelInitOtherFromCont
        )
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub ms: f64,
    pub max_rss_kib: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub firmware: Firmware,
    pub machine: String,
    pub phase: Phase,
    pub command_line: String,
    pub samples: Vec<Sample>,
    pub failures: Vec<String>,
    /// Which kernel entry the firmware used (probe cells).
    pub entry: Option<String>,
    /// The swept parameter's value, in a sweep.
    pub sweep: Option<u64>,
    #[serde(skip)]
    qemu: Qemu,
    #[serde(skip)]
    expect: Vec<i32>,
}

/// One step of ferrite's own boot sequence, from its timeline report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TimelineStep {
    pub step: String,
    /// Share of ferrite's time from the reset vector to the last stamp (TCG).
    /// None for the hand-off after the last stamp, which only the instruction
    /// trace sees.
    pub share: Option<f64>,
    /// That share of the measured tFW.
    pub ms: Option<f64>,
    /// Guest instructions the step executed, counted under KVM
    /// ([`crate::insn_steps`]).
    pub guest_instructions: Option<u64>,
    /// Exits to QEMU in the step, counted under KVM.
    pub exits: Option<cost::Exits>,
    /// Code QEMU translated in the step under TCG.
    pub translated: Option<cost::Translated>,
    /// QEMU's vCPU thread in the step under TCG, in host instructions
    /// (callgrind, cut at the stamps: [`crate::host_cost::run_steps`]).
    pub host: Option<crate::host_cost::StepCost>,
}

/// The row after the last stamp in an instruction trace: the jump to the
/// kernel and the kernel's (probe's) first instructions up to its marker.
const HANDOFF_STEP: &str = crate::host_cost::HANDOFF;
/// The row before the reset vector's stamp: QEMU's vCPU thread starting,
/// which only callgrind's cut sees (the same for any firmware).
const QEMU_START_STEP: &str = "(QEMU's start, to the reset vector)";

fn machine_name(m: Machine) -> &'static str {
    match m {
        Machine::Pc => "pc",
        Machine::Q35 => "q35",
        Machine::Microvm => "microvm",
    }
}

/// The host's TSC frequency in kHz, for the bench kernels' `tsc_early_khz=`
/// under TCG (the guest's TSC runs at the host's rate).
pub fn tsc_khz() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0) as u64)
}

/// The bench kernels' command line on `machine`, `token` marking the bench's
/// boots: the host's TSC rate given to every firmware's kernel alike, since
/// microvm has no PIT to calibrate against by default, and on pc and q35 the
/// kernel's quick PIT calibration fails now and then under TCG; the slow one
/// that follows costs about 100 ms (1, 2 and 6 boots in 12 under ferrite,
/// qboot and SeaBIOS, 2026-11-30). How often can depend on the firmware:
/// until 2026-12-03 the PIT's tick that ferrite left running failed half of
/// its PVH boots on q35 (`chipset/legacy.rs`), which the rate given hides.
/// With `calibrate` (`--tsc-calibration`) the kernels on pc and q35
/// calibrate their TSC themselves, as users' kernels do, and the times carry
/// what each firmware leaves that calibration.
pub fn kernel_command_line(token: &str, machine: Machine, calibrate: bool) -> String {
    let mut append = format!("console=ttyS0 quiet panic=-1 {token}");
    if calibrate && machine != Machine::Microvm {
        return append;
    }
    if let Some(khz) = tsc_khz() {
        append += &format!(" tsc_early_khz={khz}");
    }
    append
}

pub fn run(opts: &Options, rom: &crate::rom::Rom) -> Result<()> {
    let kernel = match &opts.kernel {
        Some(k) => k.clone(),
        None => linux_assets::stock_kernel()?,
    };
    let work = linux_assets::cache_dir().join("bench");
    std::fs::create_dir_all(&work)?;
    let mut skipped = Vec::new();
    // plan: every cell (firmware, machine, phase) and its QEMU command
    let mut cells = plan::cells(opts, &rom.path, &kernel, &work, &mut skipped)?;
    // execution: interleaved rounds, then the counts, timelines and density
    run::rounds(&mut cells, opts.runs, opts.in_process_runs)?;
    let extras = run::extras(&cells, opts, &work, &rom.elf, &mut skipped)?;
    // statistics
    let machines: Vec<String> = opts
        .machines
        .iter()
        .map(|&m| machine_name(m).to_string())
        .collect();
    let derived = stats::derive(&cells, &machines, &opts.sweep_values(), &opts.firmwares);
    // report
    let report = Report::new(&cells, &kernel, extras, skipped, derived);
    report.print(opts);
    report.write_files(opts)
}

/// Paths inside the workspace, relative to it: results are committed and shared.
fn relative(text: &str) -> String {
    text.replace(&format!("{}/", crate::root().display()), "")
}

pub fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// A cell on q35 with these samples, for unit tests.
#[cfg(test)]
pub(crate) fn test_cell(fw: Firmware, phase: Phase, ms: &[f64]) -> Cell {
    let q = crate::qemu::Qemu::new(crate::qemu::Machine::Q35, "x.rom".into());
    Cell {
        firmware: fw,
        machine: "q35".into(),
        phase,
        command_line: String::new(),
        samples: ms.iter().map(|&ms| Sample { ms, max_rss_kib: 0 }).collect(),
        failures: Vec::new(),
        entry: None,
        sweep: None,
        qemu: q,
        expect: Vec::new(),
    }
}
