//! Guest RAM the host faults in, by 2 MiB region: the largest host cost of a
//! boot, and the bench's largest source of noise.
//!
//! QEMU asks for transparent huge pages on guest RAM (`madvise`), so the first
//! touch of each 2 MiB region, by the guest or by QEMU's fw_cfg DMA, has the
//! host kernel allocate and clear 2 MiB. A differential profile of whole boots
//! here (`perf record` from QMP's `cont` to the exit, 12 boots each of ferrite,
//! qboot and the floor ROM on pc) put `clear_page_erms` first for every
//! firmware, at 16 to 26 ms per boot and varying by that much between boots,
//! against about 2 ms of translation. Every firmware touched the same number
//! of regions (the low 2 MiB, the kernel's, the initrd's), so this column
//! explains the noise of the wall-clock columns rather than a difference
//! between firmwares; a firmware that touched a region more would pay
//! milliseconds for it.
//!
//! Counted from the `exceptions:page_fault_user` tracepoint with perf's data
//! mappings: faults inside the anonymous mapping of guest RAM's size, grouped
//! by 2 MiB. With huge pages each region faults once; without, once per 4 KiB
//! page, and the fault count says which.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Result, ensure};
use serde::Serialize;

use crate::insn_steps::{perf_record_only, perf_script};
use crate::qemu::{Accel, Qemu};

const REGION_SHIFT: u32 = 21;

/// Guest RAM's first touches to the kernel entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RamTouch {
    /// Distinct 2 MiB regions of guest RAM faulted in.
    pub regions: u64,
    /// Page faults inside guest RAM (= `regions` with huge pages).
    pub faults: u64,
    /// Where: each region's first MiB of guest RAM, ascending.
    pub at_mib: Vec<u64>,
}

impl RamTouch {
    /// The regions as runs of guest RAM, in MiB: `0–2, 16–24, 508–512`.
    pub fn spans(&self) -> String {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for &mib in &self.at_mib {
            let end = mib + (1 << (REGION_SHIFT - 20));
            match runs.last_mut() {
                Some(last) if last.1 == mib => last.1 = end,
                _ => runs.push((mib, end)),
            }
        }
        runs.iter()
            .map(|(a, b)| format!("{a}–{b}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One boot under TCG recorded with the page-fault tracepoint.
pub fn measure(q: &Qemu, work: &Path) -> Result<RamTouch> {
    let mut q = q.clone();
    q.accel = Accel::Tcg;
    let data = work.join("ram-touch.data");
    perf_record_only(&q, &["-q", "-d"], &["exceptions:page_fault_user"], &data)?;
    let script = perf_script(&data, &["--show-mmap-events", "-F", "trace"])?;
    parse(&String::from_utf8_lossy(&script), q.memory_mib << 20)
}

/// Groups the faults inside guest RAM's mapping, the last read-write anonymous
/// mapping of `ram_bytes` before each fault (QEMU reserves a larger area first
/// and maps RAM inside it).
pub fn parse(script: &str, ram_bytes: u64) -> Result<RamTouch> {
    let mut ram = None;
    let mut regions = BTreeSet::new();
    let mut faults = 0;
    for line in script.lines() {
        if let Some((start, len)) = anonymous_rw_mapping(line) {
            if len == ram_bytes {
                ram = Some(start);
            }
        } else if let Some(offset) = fault_address(line)
            .zip(ram)
            .and_then(|(address, start)| address.checked_sub(start))
            .filter(|&offset| offset < ram_bytes)
        {
            regions.insert(offset >> REGION_SHIFT);
            faults += 1;
        }
    }
    ensure!(
        ram.is_some(),
        "no anonymous mapping of guest RAM's size ({} MiB) among perf's mmap events",
        ram_bytes >> 20
    );
    Ok(RamTouch {
        regions: regions.len() as u64,
        faults,
        at_mib: regions.iter().map(|r| r << (REGION_SHIFT - 20)).collect(),
    })
}

/// `PERF_RECORD_MMAP2 pid/tid: [0xSTART(0xLEN) @ ...]: rw-p //anon`.
fn anonymous_rw_mapping(line: &str) -> Option<(u64, u64)> {
    if !line.contains("PERF_RECORD_MMAP") || !line.trim_end().ends_with("rw-p //anon") {
        return None;
    }
    let inner = line.split_once('[')?.1;
    let (start, rest) = inner.split_once('(')?;
    let len = rest.split_once(')')?.0;
    Some((hex(start)?, hex(len)?))
}

/// `exceptions:page_fault_user: address=0x... ip=0x... error_code=0x...`, or
/// the bare trace field list.
fn fault_address(line: &str) -> Option<u64> {
    let value = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("address="))?;
    hex(value)
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim().strip_prefix("0x")?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn script(lines: &[&str]) -> String {
        lines.join("\n")
    }

    const RESERVE: &str = "PERF_RECORD_MMAP2 11411/11411: [0x7f6ec7e00000(0x20200000) @ 0x7f6ec7e00000 00:00 0 0]: ---p //anon";
    const RAM: &str = "PERF_RECORD_MMAP2 11411/11411: [0x7f6ec7e00000(0x20000000) @ 0x7f6ec7e00000 00:00 0 0]: rw-p //anon";

    #[test]
    fn counts_regions_of_guest_ram_only() {
        let s = script(&[
            // before RAM is mapped, and outside it: QEMU's own memory
            "address=0x7f6ec7e00000 ip=0x1 error_code=0x6",
            RESERVE,
            RAM,
            "address=0x7f6ec7e00010 ip=0x1 error_code=0x6", // region 0
            "address=0x7f6ec9e00000 ip=0x1 error_code=0x6", // 32 MiB: region 16
            "address=0x7f6ec9ffffff ip=0x1 error_code=0x6", // still region 16
            "address=0x7f6ee7dfffff ip=0x1 error_code=0x6", // last byte: region 255
            "address=0x7f6ee7e00000 ip=0x1 error_code=0x6", // one past RAM
            "address=0x7f6ec7dfffff ip=0x1 error_code=0x6", // one before RAM
            "address=0x55aa00000000 ip=0x1 error_code=0x14",
        ]);
        assert_eq!(
            parse(&s, 512 * MIB).unwrap(),
            RamTouch {
                regions: 3,
                faults: 4,
                at_mib: vec![0, 32, 510],
            }
        );
        assert_eq!(parse(&s, 512 * MIB).unwrap().spans(), "0–2, 32–34, 510–512");
    }

    #[test]
    fn a_mapping_of_another_size_is_not_guest_ram() {
        let s = script(&[RAM, "address=0x7f6ec7e00010 ip=0x1 error_code=0x6"]);
        let e = parse(&s, 256 * MIB).unwrap_err().to_string();
        assert!(e.contains("256 MiB"), "{e}");
        assert!(parse("", 512 * MIB).is_err());
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let s = script(&[
            RAM,
            "PERF_RECORD_MMAP2 1/1: [0xzz(0x20000000) @ 0 00:00 0 0]: rw-p //anon",
            "PERF_RECORD_MMAP2 1/1: [0x1000 @ 0 00:00 0 0]: rw-p //anon",
            "address=",
            "address=0xnothex ip=0x1",
            "address=0x7f6ec7e00010",
        ]);
        assert_eq!(
            parse(&s, 512 * MIB).unwrap(),
            RamTouch {
                regions: 1,
                faults: 1,
                at_mib: vec![0],
            }
        );
    }

    #[test]
    fn spans_join_touching_regions() {
        let t = |at_mib: Vec<u64>| RamTouch {
            regions: at_mib.len() as u64,
            faults: 0,
            at_mib,
        };
        assert_eq!(
            t(vec![0, 16, 18, 20, 22, 508, 510]).spans(),
            "0–2, 16–24, 508–512"
        );
        assert_eq!(t(vec![0, 2, 4]).spans(), "0–6");
        assert_eq!(t(vec![]).spans(), "");
    }
}
