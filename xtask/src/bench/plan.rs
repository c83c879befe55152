//! What the bench runs: its options, the firmware images, and the cells (one
//! firmware, machine, phase and sweep value each) with their QEMU command lines.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use ferrite_contract::{marker, qemu_exit};
use serde::Serialize;

use super::{Cell, Firmware, Phase, START_PORT, USER_PORT, machine_name, relative};
use crate::linux_assets::{self, InitramfsSpec};
use crate::probe::{self, PROBE_PORT};
use crate::qemu::{Accel, Machine, Qemu};

#[derive(Clone, Debug)]
pub struct Options {
    pub runs: usize,
    /// Runs of the cells timed inside one process ([`Phase::from_cont`]).
    pub in_process_runs: usize,
    pub machines: Vec<Machine>,
    pub firmwares: Vec<Firmware>,
    pub memory_mib: u64,
    pub cpus: u32,
    pub kernel: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
    /// Count guest instructions under KVM with perf, where possible.
    pub count_instructions: bool,
    /// Vary one parameter and report how tQEMU and tFW grow with it.
    pub sweep: Option<Sweep>,
    /// Time tKernel for ferrite only (`--quick`): it is the kernel's own time,
    /// the same after every firmware, and with the stock kernel under TCG each
    /// of those boots takes seconds.
    pub tkernel_ferrite_only: bool,
    /// The small instrumented kernel: each firmware is also timed to its
    /// `kernel_init` marker (`--end-to-end`).
    pub small_kernel: Option<PathBuf>,
    /// The small kernel's other form (`--both-entries`): each firmware is
    /// also timed to `kernel_init` with it, in one process, interleaved.
    pub other_small_kernel: Option<PathBuf>,
    /// `--density N,...`: N VMs started together per firmware and machine.
    pub density: Vec<usize>,
    /// Print one `Result:` line per firmware and machine.
    pub summary: bool,
    /// Kernels on pc and q35 calibrate their TSC themselves
    /// ([`super::kernel_command_line`]).
    pub tsc_calibration: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            runs: 10,
            in_process_runs: 50,
            machines: Machine::ALL.to_vec(),
            firmwares: vec![
                Firmware::Ferrite,
                Firmware::Qboot,
                Firmware::Seabios,
                Firmware::Floor,
            ],
            memory_mib: 512,
            cpus: 1,
            kernel: None,
            json: None,
            markdown: None,
            count_instructions: true,
            sweep: None,
            tkernel_ferrite_only: false,
            small_kernel: None,
            other_small_kernel: None,
            density: Vec::new(),
            summary: false,
            tsc_calibration: false,
        }
    }
}

/// What a sweep varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SweepParam {
    /// Guest memory in MiB.
    Memory,
    /// vCPUs.
    Cpus,
    /// Size of the probe kernel in MiB (how loading cost grows).
    KernelSize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Sweep {
    pub param: SweepParam,
    pub values: Vec<u64>,
}

impl std::str::FromStr for Sweep {
    type Err = String;
    /// `memory=128,512,2048`, `cpus=1,2,4` or `kernel-size=2,8,32`.
    fn from_str(s: &str) -> Result<Sweep, String> {
        let (name, values) = s.split_once('=').ok_or("expected PARAM=V1,V2,...")?;
        let param = match name {
            "memory" => SweepParam::Memory,
            "cpus" => SweepParam::Cpus,
            "kernel-size" => SweepParam::KernelSize,
            _ => {
                return Err(format!(
                    "unknown sweep parameter {name} (memory, cpus, kernel-size)"
                ));
            }
        };
        let values = values
            .split(',')
            .map(|v| v.trim().parse::<u64>().map_err(|e| format!("{v}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if values.is_empty() || values.contains(&0) {
            return Err("sweep values must be positive".into());
        }
        Ok(Sweep { param, values })
    }
}

impl Options {
    /// The sweep's values, or one "no sweep" entry.
    pub(super) fn sweep_values(&self) -> Vec<Option<u64>> {
        match &self.sweep {
            Some(s) => s.values.iter().copied().map(Some).collect(),
            None => vec![None],
        }
    }
}

/// The markers a firmware's boots run to: ferrite's own start marker (tQEMU),
/// the probe's entry (tFW) and userspace (tKernel). The kernel-size sweep varies
/// the padded probe, which has no kernel behind it: tQEMU and tFW only; with
/// `tkernel_ferrite_only`, the peers stop at the probe too. With
/// `shared_entry` (a bzImage kernel with a 64-bit entry), and no sweep, also
/// the kernel's own 64-bit entry; not for OVMF, whose EFI stub path (Debian's
/// 6.1 kernel) goes on into the kernel without running that entry's first
/// bytes: its boots ran to /init's power-off. With `other_entry` (and the
/// small kernel), also `kernel_init` through the small kernel's other form.
pub(super) fn phases_to_time(
    fw: Firmware,
    sweep: Option<SweepParam>,
    tkernel_ferrite_only: bool,
    small_kernel: bool,
    shared_entry: bool,
    other_entry: bool,
) -> Vec<Phase> {
    let mut phases = vec![Phase::Entry, Phase::FromCont];
    if shared_entry && sweep.is_none() && fw != Firmware::Ovmf {
        phases.push(Phase::SharedEntry);
    }
    if fw == Firmware::Ferrite {
        phases.insert(0, Phase::Start);
    }
    // the floor boots no kernel: it only loads one and writes the probe's marker
    if sweep != Some(SweepParam::KernelSize)
        && fw != Firmware::Floor
        && (fw == Firmware::Ferrite || !tkernel_ferrite_only)
    {
        phases.push(Phase::User);
    }
    if small_kernel && sweep.is_none() && fw != Firmware::Floor {
        phases.extend([Phase::KernelInit, Phase::KernelInitFromCont]);
        if other_entry {
            phases.push(Phase::KernelInitOtherFromCont);
        }
    }
    phases
}

/// One cell per machine, sweep value, firmware and phase, in that order; a
/// firmware that cannot run on a machine is listed in `skipped`.
pub(super) fn cells(
    opts: &Options,
    ferrite_rom: &Path,
    kernel: &Path,
    work: &Path,
    skipped: &mut Vec<String>,
) -> Result<Vec<Cell>> {
    // named after the kernel it mimics: benches of two kernels may run at once
    let probe_path = work.join(format!(
        "probe-{}.bzImage",
        kernel.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::write(&probe_path, crate::pvh_probe::build_like(kernel)?)?;
    // The kernel itself, stopping at its own 64-bit entry; a kernel without
    // one (an ELF vmlinux, an old bzImage) has no such point to time.
    let entry64_path = work.join(format!(
        "entry64-{}",
        kernel.file_name().unwrap_or_default().to_string_lossy()
    ));
    let entry64 = match probe::patch_entry64(&std::fs::read(kernel)?) {
        Ok(image) => {
            std::fs::write(&entry64_path, image)?;
            Some(entry64_path)
        }
        Err(why) => {
            skipped.push(format!("the kernel's own 64-bit entry: {why}"));
            None
        }
    };
    let token = "ferrite.bench=1";
    // /init checks that it sees the CPUs and memory it was booted with, so a
    // memory or CPU sweep needs one initramfs per value.
    let initramfs = |cpus: u32, memory: u64| {
        linux_assets::build_initramfs(
            &InitramfsSpec {
                expect_cpus: cpus,
                expect_mem_mib: memory,
                cmdline_token: token.into(),
                payload_len: 4096,
                poweroff: true,
                kernel_reserves_mib: 0,
            },
            &work.join(format!("initramfs-{cpus}cpu-{memory}M.cpio")),
        )
    };

    let mut cells = Vec::new();
    for (machine, value) in opts
        .machines
        .iter()
        .flat_map(|&m| opts.sweep_values().into_iter().map(move |v| (m, v)))
    {
        let (mut memory, mut cpus, mut probe) = (opts.memory_mib, opts.cpus, probe_path.clone());
        match (opts.sweep.as_ref().map(|s| s.param), value) {
            (Some(SweepParam::Memory), Some(v)) => memory = v,
            (Some(SweepParam::Cpus), Some(v)) => cpus = v as u32,
            (Some(SweepParam::KernelSize), Some(v)) => {
                probe = work.join(format!("probe-{v}M.bzImage"));
                std::fs::write(&probe, probe::build((v << 20) as usize, 0))?;
            }
            _ => {}
        }
        let initrd = initramfs(cpus, memory)?;
        let append = super::kernel_command_line(token, machine, opts.tsc_calibration);
        for &fw in &opts.firmwares {
            let image = match fw.image(ferrite_rom, machine) {
                Ok(p) => p,
                Err(why) => {
                    skipped.push(format!("{} on {}: {why}", fw.name(), machine_name(machine)));
                    continue;
                }
            };
            let sweep = opts.sweep.as_ref().map(|s| s.param);
            for phase in phases_to_time(
                fw,
                sweep,
                opts.tkernel_ferrite_only,
                opts.small_kernel.is_some(),
                entry64.is_some(),
                opts.other_small_kernel.is_some(),
            ) {
                let (kernel, port) = match phase {
                    Phase::Start => (probe.clone(), START_PORT),
                    Phase::Entry | Phase::FromCont => (probe.clone(), PROBE_PORT),
                    Phase::User => (kernel.to_path_buf(), USER_PORT),
                    Phase::KernelInit | Phase::KernelInitFromCont => {
                        (opts.small_kernel.clone().unwrap_or_default(), USER_PORT)
                    }
                    Phase::KernelInitOtherFromCont => (
                        opts.other_small_kernel.clone().unwrap_or_default(),
                        USER_PORT,
                    ),
                    Phase::SharedEntry => (entry64.clone().unwrap_or_default(), PROBE_PORT),
                };
                let mut q = Qemu::new(machine, image.clone());
                q.accel = Accel::Tcg;
                q.memory_mib = memory;
                q.cpus = cpus;
                q.kernel = Some(kernel);
                q.initrd = Some(initrd.path.clone());
                q.append = Some(append.clone());
                q.exit_ports = vec![port];
                q.timeout = Duration::from_secs(if fw == Firmware::Ovmf { 120 } else { 60 });
                let expect = match phase {
                    Phase::Start => vec![3],
                    Phase::Entry | Phase::FromCont => fw.entry_statuses(),
                    Phase::User
                    | Phase::KernelInit
                    | Phase::KernelInitFromCont
                    | Phase::KernelInitOtherFromCont => vec![qemu_exit(marker::USER)],
                    // the floor writes its own status after loading
                    Phase::SharedEntry if fw == Firmware::Floor => fw.entry_statuses(),
                    Phase::SharedEntry => vec![qemu_exit(probe::Entry::Long64.value())],
                };
                cells.push(Cell {
                    firmware: fw,
                    machine: machine_name(machine).into(),
                    phase,
                    command_line: relative(&q.command_line()),
                    samples: Vec::new(),
                    failures: Vec::new(),
                    entry: None,
                    sweep: value,
                    qemu: q,
                    expect,
                });
            }
        }
    }
    if cells.is_empty() {
        bail!("nothing to run: {}", skipped.join("; "));
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--tsc-calibration` leaves pc and q35's kernels to calibrate their
    /// TSC; microvm's keep the rate, which nothing there could measure.
    #[test]
    fn kernels_calibrate_their_tsc_on_pc_and_q35_when_asked() {
        use super::super::kernel_command_line;
        let given =
            |m, calibrate| kernel_command_line("t", m, calibrate).contains("tsc_early_khz=");
        assert!(
            super::super::tsc_khz().is_some(),
            "no cpu MHz in /proc/cpuinfo"
        );
        for m in [Machine::Pc, Machine::Q35] {
            assert!(given(m, false));
            assert!(!given(m, true));
        }
        assert!(given(Machine::Microvm, false) && given(Machine::Microvm, true));
        assert!(kernel_command_line("tok", Machine::Pc, true).contains(" tok"));
    }

    #[test]
    fn sweep_arguments() {
        let s: Sweep = "memory=128,512".parse().unwrap();
        assert_eq!((s.param, s.values), (SweepParam::Memory, vec![128, 512]));
        assert_eq!(
            "kernel-size=2".parse::<Sweep>().unwrap().param,
            SweepParam::KernelSize
        );
        assert!("cpus=".parse::<Sweep>().is_err());
        assert!("cpus=0".parse::<Sweep>().is_err());
        assert!("disk=1".parse::<Sweep>().is_err());
        assert!("memory".parse::<Sweep>().is_err());
    }

    #[test]
    fn phases_each_firmware_is_timed_to() {
        use Phase::*;
        let phases = |fw, sweep, quick, small, shared| {
            phases_to_time(fw, sweep, quick, small, shared, false)
        };
        let sweep = |p: &str| Some(p.parse::<Sweep>().unwrap().param);
        // --quick: tKernel after ferrite only
        assert_eq!(
            phases(Firmware::Qboot, None, true, false, false),
            [Entry, FromCont]
        );
        assert_eq!(
            phases(Firmware::Ferrite, None, true, false, false),
            [Start, Entry, FromCont, User]
        );
        assert_eq!(
            phases(Firmware::Qboot, None, false, false, false),
            [Entry, FromCont, User]
        );
        // memory and CPU sweeps keep tKernel; the padded probe has no kernel
        assert_eq!(
            phases(Firmware::Seabios, sweep("cpus=1,2"), false, false, false),
            [Entry, FromCont, User]
        );
        assert_eq!(
            phases(Firmware::Ferrite, sweep("memory=128"), false, false, false),
            [Start, Entry, FromCont, User]
        );
        assert_eq!(
            phases(
                Firmware::Ferrite,
                sweep("kernel-size=2"),
                false,
                false,
                false
            ),
            [Start, Entry, FromCont]
        );
        // --end-to-end adds the small kernel's marker, outside sweeps
        assert_eq!(
            phases(Firmware::Seabios, None, false, true, false),
            [Entry, FromCont, User, KernelInit, KernelInitFromCont]
        );
        assert_eq!(
            phases(Firmware::Ferrite, sweep("cpus=1"), false, true, false),
            [Start, Entry, FromCont, User]
        );
        // the floor boots no kernel
        assert_eq!(
            phases(Firmware::Floor, None, false, true, false),
            [Entry, FromCont]
        );
        // the kernel's own 64-bit entry: every firmware, the floor as the
        // least a firmware can do there too; not in sweeps
        assert_eq!(
            phases(Firmware::Qboot, None, true, false, true),
            [Entry, FromCont, SharedEntry]
        );
        assert_eq!(
            phases(Firmware::Floor, None, false, false, true),
            [Entry, FromCont, SharedEntry]
        );
        assert_eq!(
            phases(Firmware::Ferrite, None, false, true, true),
            [
                Start,
                Entry,
                FromCont,
                SharedEntry,
                User,
                KernelInit,
                KernelInitFromCont
            ]
        );
        assert_eq!(
            phases(Firmware::Ovmf, None, false, false, true),
            [Entry, FromCont, User]
        );
        assert_eq!(
            phases(Firmware::Ferrite, sweep("memory=128"), false, false, true),
            [Start, Entry, FromCont, User]
        );
        // --both-entries: kernel_init through the other form too, in one
        // process; not for the floor, not in sweeps, not without the small
        // kernel
        assert_eq!(
            phases_to_time(Firmware::Qboot, None, false, true, false, true),
            [
                Entry,
                FromCont,
                User,
                KernelInit,
                KernelInitFromCont,
                KernelInitOtherFromCont
            ]
        );
        assert_eq!(
            phases_to_time(Firmware::Floor, None, false, true, false, true),
            [Entry, FromCont]
        );
        assert_eq!(
            phases_to_time(Firmware::Ferrite, sweep("cpus=1"), false, true, false, true),
            [Start, Entry, FromCont, User]
        );
        assert_eq!(
            phases_to_time(Firmware::Seabios, None, false, false, false, true),
            [Entry, FromCont, User]
        );
    }
}
