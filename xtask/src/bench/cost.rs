//! What a firmware costs besides time: counts taken under KVM with perf.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Serialize;

use super::{Cell, Firmware, Phase};
use crate::qemu::Accel;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub guest_instructions: u64,
    pub fw_cfg_port_reads: u64,
    pub fw_cfg_dma_requests: u64,
}

/// Whether guest instructions can be counted here; if not, says why in `skipped`.
pub(super) fn perf_available(skipped: &mut Vec<String>) -> bool {
    let why = if !Path::new("/dev/kvm").exists() {
        "no /dev/kvm"
    } else if Command::new("perf").arg("--version").output().is_err() {
        "perf not installed (apt-get install linux-perf)"
    } else {
        return true;
    };
    skipped.push(format!("instruction counts: {why}"));
    false
}

/// Guest instructions and fw_cfg traffic per firmware, from the probe cell run
/// once under KVM with `perf stat` (this machine's KVM emulates every guest
/// instruction, so the count is exact). The caller checks [`perf_available`].
pub(super) fn count_instructions(
    cells: &[Cell],
    skipped: &mut Vec<String>,
) -> BTreeMap<String, Counts> {
    let mut out = BTreeMap::new();
    for cell in cells.iter().filter(|c| c.phase == Phase::Entry) {
        if cell.firmware == Firmware::Ovmf {
            skipped.push(format!(
                "instruction count for OVMF {}: this machine's KVM emulates every instruction, and its emulator lacks x87 instructions OVMF uses",
                cell.machine
            ));
            continue;
        }
        let mut q = cell.qemu.clone();
        q.accel = Accel::Kvm;
        let mut cmd = crate::insn_steps::perf_qemu(
            &q,
            &[
                "stat",
                "-x,",
                "-e",
                "kvm:kvm_emulate_insn",
                "-e",
                "kvm:kvm_pio",
                "--filter",
                "port == 0x511",
                "-e",
                "kvm:kvm_pio",
                "--filter",
                "port == 0x518",
            ],
        );
        let Ok(output) = cmd.output() else { continue };
        let text = String::from_utf8_lossy(&output.stderr);
        let values: Vec<u64> = text
            .lines()
            .filter(|l| l.contains(",kvm:"))
            .filter_map(|l| l.split(',').next()?.parse().ok())
            .collect();
        if let [insns, pio, dma] = values[..] {
            out.insert(
                format!("{}/{}", cell.firmware.name(), cell.machine),
                Counts {
                    guest_instructions: insns,
                    fw_cfg_port_reads: pio,
                    fw_cfg_dma_requests: dma,
                },
            );
        } else {
            skipped.push(format!(
                "instruction count for {} {}: perf said {text}",
                cell.firmware.name(),
                cell.machine
            ));
        }
    }
    out
}
