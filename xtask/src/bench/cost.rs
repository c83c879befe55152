//! The cost model: what a firmware makes the machine do to reach the kernel
//! entry, as deterministic counts (issue 10, item 1). Each predicts time on
//! one accelerator:
//!
//! * under TCG, the code QEMU translates (most firmware code runs once, so its
//!   translation, not its execution, is the cost): QEMU's `-d in_asm` log,
//!   with the instructions that touch memory counted apart (TCG emits a
//!   software-TLB lookup and a slow path for each), weighed into a time by
//!   [`Translated::model_us`];
//! * under hardware KVM, the exits to QEMU (port I/O, MMIO; each a round trip
//!   of microseconds): `perf stat` on the `kvm:` tracepoints. This machine's
//!   KVM emulates every instruction, which also gives the exact guest
//!   instruction count;
//! * on the host, under either: page faults of the QEMU process, rebuilds of
//!   QEMU's memory map (`memory_region_transaction_commit`) and the bytes DMA
//!   copies into guest memory (fw_cfg's), both through perf uprobes on QEMU;
//!   and the 2 MiB regions of guest RAM the host faults in ([`ram_touch`]).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;

use super::ram_touch::{self, RamTouch};
use super::{Cell, Firmware, Phase};
use crate::insn_steps::{
    FW_CFG_DMA_REQUESTS, FW_CFG_PORT_READS, GUEST_INSTRUCTIONS, PORT_EXITS, perf_record, perf_stat,
};
use crate::qemu::{Accel, Qemu};

/// The counts of one firmware on one machine, to the kernel entry (the probe's
/// marker). A part that could not be counted is None, and the bench says why.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    /// Guest instructions executed (KVM).
    pub guest_instructions: u64,
    /// Reads of fw_cfg's data port 0x511 (KVM).
    pub fw_cfg_port_reads: u64,
    /// Writes to fw_cfg's DMA address port 0x518 (KVM).
    pub fw_cfg_dma_requests: u64,
    /// Exits to QEMU by kind (KVM).
    pub exits: Option<Exits>,
    /// Code translated (TCG).
    pub translated: Option<Translated>,
    /// QEMU's own work on the host (TCG).
    pub host: Option<HostCounts>,
    /// Host instructions of QEMU's vCPU thread under TCG, from QEMU's start
    /// (callgrind, [`crate::host_cost`]): all the host work the firmware
    /// causes but the kernel's clearing of guest RAM, deterministic.
    pub vcpu_host_instructions: Option<u64>,
    /// The same to the kernel's own 64-bit entry (the bench kernel, patched
    /// there: [`crate::probe::patch_entry64`]), where every firmware's path
    /// meets: with a 16-bit hand-off it holds the kernel's real-mode set-up.
    pub vcpu_host_instructions_to_entry64: Option<u64>,
}

/// Exits to QEMU under KVM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Exits {
    /// `kvm:kvm_userspace_exit`: every return of the vCPU to QEMU.
    pub userspace: u64,
    /// `kvm:kvm_pio`: port accesses.
    pub pio: u64,
    /// `kvm:kvm_mmio`: MMIO accesses (a read QEMU answers fires it twice).
    pub mmio: u64,
}

/// Code QEMU's TCG translated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Translated {
    /// Translation blocks.
    pub blocks: u64,
    /// Guest instructions in them (one that two blocks share counts twice,
    /// as in `grep -c` over the log).
    pub instructions: u64,
    /// Of those, the ones that touch memory ([`touches_memory`]).
    pub memory: u64,
}

/// Microseconds TCG takes to translate a block (one `jmp`), each further
/// register-only instruction, and each instruction that touches memory:
/// calibrated on this machine type (QEMU 7.2, 2026-12-01) by adding
/// synthetic blocks to ferrite's start-up code and timing them with its TSC
/// timeline, 15 interleaved boots each (README, "The cost model").
pub const US_PER_BLOCK: f64 = 1.8;
pub const US_PER_REGISTER_INSN: f64 = 0.3;
pub const US_PER_MEMORY_INSN: f64 = 0.7;

impl Translated {
    /// The time translating this code takes under TCG, by the calibration.
    pub fn model_us(&self) -> f64 {
        let register = self.instructions.saturating_sub(self.memory);
        US_PER_BLOCK * self.blocks as f64
            + US_PER_REGISTER_INSN * register as f64
            + US_PER_MEMORY_INSN * self.memory as f64
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: Translated) {
        self.blocks += other.blocks;
        self.instructions += other.instructions;
        self.memory += other.memory;
    }

    fn add_instruction(&mut self, line: &str) {
        self.instructions += 1;
        self.memory += touches_memory(line) as u64;
    }
}

/// The mnemonic (a `rep` or `lock` prefix dropped) and the operands of a
/// `-d in_asm` instruction line (`0xADDR:  bytes  mnemonic operands`).
pub fn mnemonic_and_operands(line: &str) -> Option<(&str, String)> {
    let (_, rest) = line.split_once(':')?;
    // The instruction's bytes are two hex digits each; the mnemonic follows.
    let mut words = rest
        .split_whitespace()
        .skip_while(|w| w.len() == 2 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .skip_while(|w| matches!(*w, "rep" | "repz" | "repnz" | "repe" | "repne" | "lock"));
    let mnemonic = words.next()?;
    Some((mnemonic, words.collect()))
}

/// Whether a `-d in_asm` instruction line (`0xADDR:  bytes  mnemonic
/// operands`) loads or stores: a memory operand (other than `lea`'s and a
/// `nop`'s), or the stack or string access of push, pop, call, ret, leave
/// and the string instructions.
pub fn touches_memory(line: &str) -> bool {
    let Some((mnemonic, operands)) = mnemonic_and_operands(line) else {
        return false;
    };
    const STACK: [&str; 10] = [
        "push", "pop", "call", "ret", "leave", "lgdt", "lidt", "ljmp", "lret", "iret",
    ];
    (operands.contains('(') && !mnemonic.starts_with("lea") && !mnemonic.starts_with("nop"))
        || STACK.iter().any(|p| mnemonic.starts_with(p))
        || is_string(mnemonic)
}

/// A string instruction's mnemonic (`movsq`, `stosb`...; not `movsbl`, a
/// move with sign extension, which touches memory only with an operand
/// there).
pub fn is_string(mnemonic: &str) -> bool {
    ["movs", "stos", "lods", "cmps", "scas"].iter().any(|p| {
        mnemonic
            .strip_prefix(p)
            .is_some_and(|w| matches!(w, "b" | "w" | "l" | "q"))
    })
}

/// Work QEMU does on the host for the guest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostCounts {
    /// Page faults of the QEMU process, from its start (`perf stat`).
    pub page_faults: u64,
    /// `memory_region_transaction_commit` calls (not exactly repeatable:
    /// QEMU also commits on its own timing). Most change nothing: a nested
    /// transaction's, or one whose writes left the map as it was.
    pub map_commits: u64,
    /// Of those, the commits that rendered the memory map again
    /// (`flatview_add_to_dispatch` ran before the next commit): the ones
    /// that cost, 80–150 µs each under TCG here, where the others cost
    /// about a microsecond.
    pub map_rebuilds: u64,
    /// Sections those rebuilds (and QEMU's own address-space set-up)
    /// rendered: each rebuild renders every address space's map.
    pub sections_rendered: u64,
    /// Bytes written into guest memory by DMA (`address_space_rw`, writes):
    /// fw_cfg's copies, the only DMA before the kernel runs.
    pub dma_bytes: u64,
    /// Guest RAM faulted in on the host, by 2 MiB region ([`ram_touch`]).
    pub ram: RamTouch,
}

/// Whether perf and /dev/kvm exist here; if not, says why in `skipped`.
pub(crate) fn perf_available(skipped: &mut Vec<String>) -> bool {
    let why = if !Path::new("/dev/kvm").exists() {
        "no /dev/kvm"
    } else if Command::new("perf").arg("--version").output().is_err() {
        "perf not installed (apt-get install linux-perf)"
    } else {
        return true;
    };
    skipped.push(format!("cost counts: {why}"));
    false
}

/// Every count for each probe cell (one firmware and machine each), keyed
/// `firmware/machine`: translated code always, the counts that need perf
/// (KVM's and the host's) with `perf` ([`perf_available`]).
pub(super) fn measure(
    cells: &[Cell],
    work: &Path,
    perf: bool,
    skipped: &mut Vec<String>,
) -> BTreeMap<String, Counts> {
    let probes = if perf {
        ensure_probes()
    } else {
        Err(anyhow::anyhow!("no perf"))
    };
    if let (true, Err(e)) = (perf, &probes) {
        skipped.push(format!(
            "host counts (page faults, map commits, DMA): {e:#}"
        ));
    }
    let callgrind = crate::host_cost::available();
    if !callgrind {
        skipped.push(
            "QEMU's vCPU host instructions: valgrind not installed (apt-get install valgrind)"
                .into(),
        );
    }
    let mut out = BTreeMap::new();
    for cell in cells
        .iter()
        .filter(|c| c.phase == Phase::Entry && c.sweep.is_none())
    {
        let what = format!("{} {}", cell.firmware.name(), cell.machine);
        if cell.firmware == Firmware::Ovmf {
            skipped.push(format!(
                "cost counts for {what}: this machine's KVM emulates every instruction, and its emulator lacks x87 instructions OVMF uses"
            ));
            continue;
        }
        let mut counts = match perf.then(|| kvm_counts(&cell.qemu)) {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                skipped.push(format!("KVM counts for {what}: {e:#}"));
                Counts::default()
            }
            None => Counts::default(),
        };
        match translated_code(&cell.qemu, work) {
            Ok(t) => counts.translated = Some(t),
            Err(e) => skipped.push(format!("translated code for {what}: {e:#}")),
        }
        if probes.is_ok() {
            match host_counts(&cell.qemu, work) {
                Ok(h) => counts.host = Some(h),
                Err(e) => skipped.push(format!("host counts for {what}: {e:#}")),
            }
        }
        if callgrind {
            let mut q = cell.qemu.clone();
            q.accel = Accel::Tcg;
            let dir = work.join("callgrind");
            match crate::host_cost::run_callgrind(&q, &cell.firmware.entry_statuses(), &dir) {
                Ok((_, n)) => counts.vcpu_host_instructions = Some(n),
                Err(e) => skipped.push(format!("vCPU host instructions for {what}: {e:#}")),
            }
            let shared = cells.iter().find(|c| {
                c.phase == Phase::SharedEntry
                    && c.sweep.is_none()
                    && c.firmware == cell.firmware
                    && c.machine == cell.machine
            });
            if let Some(shared) = shared {
                let mut q = shared.qemu.clone();
                q.accel = Accel::Tcg;
                match crate::host_cost::run_callgrind(&q, &shared.expect, &dir) {
                    Ok((_, n)) => counts.vcpu_host_instructions_to_entry64 = Some(n),
                    Err(e) => skipped.push(format!(
                        "vCPU host instructions to the kernel's 64-bit entry for {what}: {e:#}"
                    )),
                }
            }
        }
        out.insert(format!("{}/{}", cell.firmware.name(), cell.machine), counts);
    }
    out
}

/// Guest instructions, fw_cfg traffic and exits: one boot under KVM with `perf stat`.
pub(crate) fn kvm_counts(q: &Qemu) -> Result<Counts> {
    let mut q = q.clone();
    q.accel = Accel::Kvm;
    let [insns, pio_reads, dma, userspace, pio, mmio] = perf_stat(
        &q,
        &[
            GUEST_INSTRUCTIONS,
            FW_CFG_PORT_READS,
            FW_CFG_DMA_REQUESTS,
            ("kvm:kvm_userspace_exit", None),
            PORT_EXITS,
            ("kvm:kvm_mmio", None),
        ],
    )?[..] else {
        unreachable!("perf_stat checks the count of values")
    };
    Ok(Counts {
        guest_instructions: insns,
        fw_cfg_port_reads: pio_reads,
        fw_cfg_dma_requests: dma,
        exits: Some(Exits {
            userspace,
            pio,
            mmio,
        }),
        ..Counts::default()
    })
}

/// Whether a line of QEMU's `-d in_asm` log is a guest instruction
/// (`0xADDR:  bytes  mnemonic`). QEMU prints at most 8 bytes on a line: a
/// longer instruction's other bytes follow on a line of their own, with
/// their address but no mnemonic ([`continuation_bytes`]), which is no
/// instruction.
pub fn is_instruction(line: &str) -> bool {
    is_address_line(line) && mnemonic_and_operands(line).is_some()
}

/// A line that starts with an address (`0xADDR:`).
fn is_address_line(line: &str) -> bool {
    line.strip_prefix("0x").is_some_and(|rest| {
        let hex = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
        hex > 0 && rest.as_bytes().get(hex) == Some(&b':')
    })
}

/// The bytes on a `-d in_asm` line that continues the instruction before it
/// (`0xADDR:  bytes`, no mnemonic: the 9th and later bytes of a long one),
/// or None for any other line.
pub fn continuation_bytes(line: &str) -> Option<u64> {
    if !is_address_line(line) || mnemonic_and_operands(line).is_some() {
        return None;
    }
    let (_, bytes) = line.split_once(':')?;
    let n = bytes.split_whitespace().count() as u64;
    (n > 0).then_some(n)
}

/// Blocks and instructions in a `-d in_asm` log.
pub fn translated(log: impl BufRead) -> Result<Translated> {
    let mut t = Translated::default();
    for line in log.lines() {
        let line = line.context("reading the in_asm log")?;
        if line.starts_with("IN:") {
            t.blocks += 1;
        } else if is_instruction(&line) {
            t.add_instruction(&line);
        }
    }
    Ok(t)
}

/// The address of a `-d in_asm` instruction line (`0xADDR:  bytes  insn`).
fn instruction_address(line: &str) -> Option<u64> {
    let hex = line.strip_prefix("0x")?.split_once(':')?.0;
    u64::from_str_radix(hex, 16).ok()
}

/// Splits a `-d in_asm` log into the code translated before the first of
/// ferrite's timeline `stamps` (their addresses), between two of them, and
/// after the last: the same segments as [`crate::insn_steps::split_at_stamps`].
/// QEMU translates a block just before it first runs, so the log is in the
/// order of execution; a block is counted in the step where it starts, its
/// instructions on either side of a stamp inside it.
pub fn translated_per_step(log: impl BufRead, stamps: &[u64]) -> Result<Vec<Translated>> {
    let by_step = translated_by(log, step_counter(stamps))?;
    let count = by_step.last_key_value().map_or(1, |(&last, _)| last + 1);
    let mut steps = vec![Translated::default(); count];
    for (i, t) in by_step {
        steps[i] = t;
    }
    Ok(steps)
}

/// The step of each instruction address given in the log's order: 0 before
/// the first of the `stamps`, one more at each stamp.
pub fn step_counter(stamps: &[u64]) -> impl FnMut(u64) -> usize + '_ {
    let mut step = 0;
    move |addr| {
        step += stamps.contains(&addr) as usize;
        step
    }
}

/// The code in a `-d in_asm` log, grouped by `key`, which is called with
/// every instruction's address in the log's order: each instruction counts
/// under its own key, each block under its first instruction's.
pub fn translated_by<K: Ord>(
    log: impl BufRead,
    mut key: impl FnMut(u64) -> K,
) -> Result<BTreeMap<K, Translated>> {
    let mut out = BTreeMap::<K, Translated>::new();
    let mut block_starts = false;
    for line in log.lines() {
        let line = line.context("reading the in_asm log")?;
        if line.starts_with("IN:") {
            block_starts = true;
        } else if is_instruction(&line) {
            let addr = instruction_address(&line)
                .with_context(|| format!("not an in_asm instruction line: {line:?}"))?;
            let t = out.entry(key(addr)).or_default();
            t.blocks += block_starts as u64;
            t.add_instruction(&line);
            block_starts = false;
        }
    }
    Ok(out)
}

/// Boots `q` under TCG with `-d in_asm` logged to a file in `work` and
/// returns the file.
pub fn in_asm_log(q: &Qemu, work: &Path) -> Result<std::path::PathBuf> {
    tcg_log(q, work, "in_asm")
}

/// Boots `q` under TCG with every block's translation and every run of a
/// block logged (`-d exec,nochain,in_asm`: unchained, so that each run is
/// logged) and returns the log.
pub fn exec_log(q: &Qemu, work: &Path) -> Result<std::path::PathBuf> {
    tcg_log(q, work, "exec,nochain,in_asm")
}

/// Boots `q` under TCG with `flags` logged to a file in `work` and returns the file.
fn tcg_log(q: &Qemu, work: &Path, flags: &str) -> Result<std::path::PathBuf> {
    let log = work.join("tcg.log");
    let _ = std::fs::remove_file(&log);
    let mut q = q.clone();
    q.accel = Accel::Tcg;
    q.extra.extend([
        "-d".into(),
        flags.into(),
        "-D".into(),
        log.display().to_string(),
    ]);
    let out = q.run()?;
    ensure!(
        !out.timed_out && out.debug_exit_value().is_some(),
        "the logged boot did not reach its marker (exit {:?})",
        out.exit_code
    );
    let text = std::fs::read_to_string(&log).context("reading the TCG log")?;
    let kept = cut_at_exit(&text, &q.exit_ports);
    if kept.len() < text.len() {
        std::fs::write(&log, kept)?;
    }
    Ok(log)
}

/// The log up to the end of the block that wrote the marker QEMU exits on
/// (an `out` to one of `ports` as an immediate operand, as the probe kernel
/// and the calibration ROMs write it). QEMU 7.2's isa-debug-exit exits at
/// once and logs nothing after it; 10.0's asks for a shutdown and lets the
/// guest run on meanwhile (the probe into its `hlt`, woken or not as QEMU
/// kicks it), which would count code after the marker, more or less of it
/// from one boot to the next. A marker written through `%dx` (ferrite's own)
/// is not recognised: the log is kept whole.
pub fn cut_at_exit<'a>(log: &'a str, ports: &[u16]) -> &'a str {
    let mut exited = false;
    let mut at = 0;
    for line in log.split_inclusive('\n') {
        let next = at + line.len();
        // (A run of the block itself, `Trace` in an exec log, follows its
        // translation and stays.)
        if exited && (line.starts_with("IN:") || line.starts_with("----")) {
            return &log[..at];
        }
        exited |= is_instruction(line) && writes_port(line, ports);
        at = next;
    }
    log
}

/// Whether an instruction line is an `out` to one of `ports` given as an
/// immediate (`outb %al, $0xf7`).
fn writes_port(line: &str, ports: &[u16]) -> bool {
    mnemonic_and_operands(line).is_some_and(|(mnemonic, operands)| {
        mnemonic.starts_with("out")
            && ports
                .iter()
                .any(|p| operands.ends_with(&format!(",${p:#x}")))
    })
}

/// Code translated to the kernel entry: one boot with `-d in_asm`.
pub fn translated_code(q: &Qemu, work: &Path) -> Result<Translated> {
    let log = tcg_log(q, work, "in_asm")?;
    translated(std::io::BufReader::new(std::fs::File::open(&log)?))
}

/// Code translated per step of ferrite's timeline (`stamps`: the stamps'
/// addresses): one boot with `-d in_asm`.
pub fn translated_steps(q: &Qemu, work: &Path, stamps: &[u64]) -> Result<Vec<Translated>> {
    let log = tcg_log(q, work, "in_asm")?;
    translated_per_step(std::io::BufReader::new(std::fs::File::open(&log)?), stamps)
}

/// Our uprobes on QEMU (names of our own, so no one else's probe is touched).
const COMMIT_PROBE: &str = "ferrite_commit";
const DMA_PROBE: &str = "ferrite_dma";
const RENDER_PROBE: &str = "ferrite_render";

/// Adds the uprobes if they are missing. `address_space_rw(as, addr, attrs,
/// buf, len, is_write)`: in QEMU 7.2 `attrs` is passed in a register, so `len`
/// is the fifth integer argument (%r8) and `is_write` the sixth (%r9).
fn ensure_probes() -> Result<()> {
    let listed = Command::new("perf")
        .args(["probe", "-l"])
        .stderr(Stdio::null())
        .output()
        .context("running perf probe -l")?;
    let listed = String::from_utf8_lossy(&listed.stdout);
    let qemu = crate::qemu::resolved_binary()?;
    for (name, spec) in [
        (
            COMMIT_PROBE,
            format!("{COMMIT_PROBE}=memory_region_transaction_commit"),
        ),
        (
            DMA_PROBE,
            format!("{DMA_PROBE}=address_space_rw len=%r8:u64 is_write=%r9:u8"),
        ),
        // one call per section of a rendered map (QEMU 7.2, physmem.c)
        (
            RENDER_PROBE,
            format!("{RENDER_PROBE}=flatview_add_to_dispatch"),
        ),
    ] {
        if listed.contains(&format!("probe_qemu:{name} ")) {
            continue;
        }
        let out = Command::new("perf")
            .args(["probe", "-q", "-x"])
            .arg(&qemu)
            .args(["--add", &spec])
            .output()
            .context("running perf probe")?;
        ensure!(
            out.status.success(),
            "perf probe --add {spec}: {} (needs root)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Page faults, map commits and rebuilds and DMA bytes from `perf script
/// -F event,trace` over a recording of those events, in the order they
/// happened (the bench records the uprobes, and counts page faults apart).
pub fn parse_host_script(text: &str) -> Result<HostCounts> {
    let mut h = HostCounts::default();
    // Whether the last commit has rendered the map yet (None: no commit yet).
    let mut last_commit_rendered = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (event, rest) = line.split_once(": ").unwrap_or((line, ""));
        let event = event.trim_end_matches(':');
        if event == "page-faults" {
            h.page_faults += 1;
        } else if event == format!("probe_qemu:{COMMIT_PROBE}") {
            h.map_commits += 1;
            last_commit_rendered = Some(false);
        } else if event == format!("probe_qemu:{RENDER_PROBE}") {
            h.sections_rendered += 1;
            if last_commit_rendered == Some(false) {
                h.map_rebuilds += 1;
                last_commit_rendered = Some(true);
            }
        } else if event == format!("probe_qemu:{DMA_PROBE}") {
            let field = |k: &str| {
                rest.split_whitespace()
                    .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            let (Some(len), Some(write)) = (field("len"), field("is_write")) else {
                bail!("DMA probe line without len/is_write: {line:?}");
            };
            if write != 0 {
                h.dma_bytes += len;
            }
        } else {
            bail!("unexpected line in the host recording: {line:?}");
        }
    }
    Ok(h)
}

/// Page faults counted under TCG; map commits, rebuilds and DMA bytes
/// recorded in another boot, so that the uprobes' traps are not in the page
/// fault count.
fn host_counts(q: &Qemu, work: &Path) -> Result<HostCounts> {
    let mut q = q.clone();
    q.accel = Accel::Tcg;
    let page_faults = perf_stat(&q, &[("page-faults", None)])?[0];
    // The commit count is not exactly repeatable: QEMU also commits on its
    // own timing (the floor on microvm gave 48 to 196 commits from one boot
    // to the next); the rebuilds among them are.
    let probes = [COMMIT_PROBE, RENDER_PROBE, DMA_PROBE].map(|p| format!("probe_qemu:{p}"));
    let probes = probes.each_ref().map(String::as_str);
    let script = perf_record(&q, &["-m", "1024"], &probes, &work.join("host.data"))?;
    let recorded = parse_host_script(&String::from_utf8_lossy(&script))?;
    Ok(HostCounts {
        page_faults,
        ram: ram_touch::measure(&q, work)?,
        ..recorded
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_ends_with_the_block_that_wrote_the_exit_marker() {
        // QEMU 10.0: the `out` ends its block, and the guest ran on into the
        // probe's hlt and the jump back to it before QEMU shut down.
        let log10 = "----------------\nIN: \n\
            0x01000200:  b0 13                    movb     $0x13, %al\n\
            0x01000202:  e6 f7                    outb     %al, $0xf7\n\n\
            ----------------\nIN: \n\
            0x01000204:  f4                       hlt      \n\n\
            ----------------\nIN: \n\
            0x01000205:  eb fd                    jmp      0x1000204\n\n";
        let cut = cut_at_exit(log10, &[0xf7]);
        assert!(cut.ends_with("outb     %al, $0xf7\n\n"), "{cut:?}");
        let t = translated(std::io::BufReader::new(cut.as_bytes())).unwrap();
        assert_eq!((t.blocks, t.instructions), (1, 2));
        // QEMU 7.2: the block goes on to the hlt and the log ends there.
        let log7 = "----------------\nIN: \n\
            0x01000200:  b0 13                    movb     $0x13, %al\n\
            0x01000202:  e6 f7                    outb     %al, $0xf7\n\
            0x01000204:  f4                       hlt      \n\n";
        assert_eq!(cut_at_exit(log7, &[0xf7]), log7);
        // Another port, or a write through %dx: kept whole.
        assert_eq!(cut_at_exit(log10, &[0xf4]), log10);
        let dx = log10.replace(
            "e6 f7                    outb     %al, $0xf7",
            "ee                       outb     %al, %dx",
        );
        assert_eq!(cut_at_exit(&dx, &[0xf7]), dx);
        // In an exec log the marker block's own run, after its translation,
        // stays; the runs after the marker go.
        let run = |a: &str| format!("Trace 0: 0x7f [00000000/{a}/0x0/0x0] \n");
        let exec = log10
            .replacen("\n\n", &format!("\n\n{}", run("0000000001000200")), 1)
            .to_string()
            + &run("0000000001000204");
        let kept = cut_at_exit(&exec, &[0xf7]);
        assert!(kept.ends_with(&run("0000000001000200")), "{kept:?}");
    }

    const IN_ASM: &str = "\
----------------
IN: 
0xfffffff0:  ea 00 00 00 f0           ljmpw    $0xf000:$0x0

----------------
IN: 
0x000f0000:  fa                       cli      
0x000f0001:  31 c0                    xorw     %ax, %ax

----------------
IN: rust_main
0x00012340:  90                       nop      
0x00012345:  0f 31                    rdtsc    
0x00012347:  90                       nop      

----------------
IN: 
0x000f0010:  90                       nop      
";

    #[test]
    fn counts_translated_code() {
        let t = translated(IN_ASM.as_bytes()).unwrap();
        assert_eq!(
            t,
            Translated {
                blocks: 4,
                instructions: 7,
                memory: 1
            }
        );
        assert_eq!(translated(&b""[..]).unwrap(), Translated::default());
        // register dumps and other log text are not instructions
        assert!(!is_instruction("0x: nothing"));
        assert!(!is_instruction("RAX=0000000000000000"));
        assert!(is_instruction("0x000f0000:  fa  cli"));
        // nor is the rest of an instruction longer than 8 bytes
        let long = "0x00010067:  48 c7 84 24 e8 00 00 00  movq     $0x32c48, 0xe8(%rsp)";
        let rest = "0x0001006f:  48 2c 03 00";
        assert!(is_instruction(long) && !is_instruction(rest));
        assert_eq!(continuation_bytes(rest), Some(4));
        assert_eq!(continuation_bytes(long), None);
        assert_eq!(continuation_bytes("IN: "), None);
        let t = translated(format!("IN: \n{long}\n{rest}\n").as_bytes()).unwrap();
        assert_eq!((t.blocks, t.instructions, t.memory), (1, 1, 1));
    }

    #[test]
    fn memory_instructions_are_told_apart() {
        let mem = |l: &str| touches_memory(l);
        assert!(mem(
            "0x00012340:  48 89 44 24 08           movq     %rax, 8(%rsp)"
        ));
        assert!(mem(
            "0x00012345:  8b 07                    movl     (%rdi), %eax"
        ));
        assert!(mem("0x00012347:  53                       pushq    %rbx"));
        assert!(mem("0x00012348:  c3                       retq     "));
        assert!(mem(
            "0x00012349:  e8 00 10 00 00           callq    0x1334e"
        ));
        assert!(mem(
            "0x0001234e:  f3 48 ab                 rep stosq %rax, (%rdi)"
        ));
        assert!(!mem(
            "0x00012351:  48 8d 44 24 08           leaq     8(%rsp), %rax"
        ));
        assert!(!mem(
            "0x00012356:  66 0f 1f 44 00 00        nopw     (%rax,%rax)"
        ));
        assert!(!mem(
            "0x0001235c:  48 01 d8                 addq     %rbx, %rax"
        ));
        assert!(!mem("0x0001235f:  0f 31                    rdtsc    "));
        // "add" and "adc" are no instruction bytes: the mnemonic is found
        assert!(mem(
            "0x00012361:  03 07                    addl     (%rdi), %eax"
        ));
        assert!(!mem("garbage"));
        let t = Translated {
            blocks: 10,
            instructions: 50,
            memory: 20,
        };
        let us = t.model_us();
        assert!(
            (us - (10.0 * 1.8 + 30.0 * 0.3 + 20.0 * 0.7)).abs() < 1e-9,
            "{us}"
        );
    }

    #[test]
    fn splits_translated_code_at_stamps() {
        let split = |stamps: &[u64]| -> Vec<(u64, u64)> {
            let steps = translated_per_step(IN_ASM.as_bytes(), stamps).unwrap();
            steps.iter().map(|t| (t.blocks, t.instructions)).collect()
        };
        // the stamp's block counts where it starts, its instructions either side
        assert_eq!(split(&[0x12345]), [(3, 4), (1, 3)]);
        // a block that starts at a stamp is the next step's
        assert_eq!(split(&[0x12345, 0xf0010]), [(3, 4), (0, 2), (1, 1)]);
        // no stamp translated: one step, the whole log
        let whole = translated(IN_ASM.as_bytes()).unwrap();
        assert_eq!(split(&[0x99]), [(whole.blocks, whole.instructions)]);
    }

    #[test]
    fn parses_host_recording() {
        let text = "\
page-faults: 
page-faults: 
  probe_qemu:ferrite_commit: (5603c3)
  probe_qemu:ferrite_dma: (5603c3) len=16 is_write=0
  probe_qemu:ferrite_dma: (5603c3) len=16384 is_write=1
  probe_qemu:ferrite_dma: (5603c3) len=4 is_write=1
";
        assert_eq!(
            parse_host_script(text).unwrap(),
            HostCounts {
                page_faults: 2,
                map_commits: 1,
                map_rebuilds: 0,
                sections_rendered: 0,
                dma_bytes: 16388,
                ram: RamTouch::default(),
            }
        );
        assert!(parse_host_script("probe_qemu:ferrite_dma: (1) len=x\n").is_err());
        assert!(parse_host_script("cycles: 1234\n").is_err());
        assert_eq!(parse_host_script("").unwrap(), HostCounts::default());
    }

    /// A commit rebuilt the map when sections were rendered after it and
    /// before the next commit; sections rendered before any commit (QEMU
    /// setting up an address space) are counted but rebuild nothing.
    #[test]
    fn tells_rebuilds_from_commits_that_change_nothing() {
        let commit = "probe_qemu:ferrite_commit: (5603c3)\n";
        let render = "probe_qemu:ferrite_render: (5603d0)\n";
        let text = [
            render, render, // an address space set up, no commit
            commit, commit, commit, render, render, render, // nested: the last rebuilds
            commit, // changed nothing
            commit, render, // rebuilt
        ]
        .concat();
        let h = parse_host_script(&text).unwrap();
        assert_eq!(
            (h.map_commits, h.map_rebuilds, h.sections_rendered),
            (5, 2, 6)
        );
        let h = parse_host_script(&commit.repeat(3)).unwrap();
        assert_eq!((h.map_commits, h.map_rebuilds), (3, 0));
    }
}
