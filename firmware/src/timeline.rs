//! Where ferrite spends its time: a time-stamp counter reading at each step of
//! the boot sequence. Taking a stamp costs a handful of instructions; the stamps
//! are only written out, as one line on QEMU's debug console (port 0xE9,
//! `-debugcon file:F`), only when `-fw_cfg name=opt/ferrite/timeline,string=1` asks
//! for them, so the fast path does not pay for the report.
//!
//! Every stamp is an inline `rdtsc` whose address [`stamp`] lists in an ELF
//! section of its own (the contract's `timeline::STAMP_SECTION`, not loaded):
//! `cargo xtask bench` reads those addresses and splits an instruction trace
//! (KVM) or QEMU's translation log (TCG) at them, i.e. each step's cost. Inline,
//! not a call: under TCG a call and its return each end a translation block.

use core::arch::asm;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use core::mem::MaybeUninit;

use ferrite::board::Step;
use ferrite::config::parse_switch;
use ferrite::error::Error;
use ferrite::fwcfg::{File, FwCfg};
use ferrite::io::PortIo;
use ferrite_contract::timeline;

use crate::pio::Pio;

/// The fw_cfg file that turns the report on (its value: "1", "on", "true").
pub const TIMELINE_FILE: &[u8] = ferrite_contract::fw_cfg::TIMELINE.as_bytes();

/// Whether `-fw_cfg name=opt/ferrite/timeline,string=...` (`file`, found by
/// the caller) asks for the report: its value, not its mere presence,
/// decides; a value that is neither on nor off is reported and leaves the
/// report off.
pub fn requested(fw_cfg: &mut FwCfg<Pio>, file: File) -> Result<bool, Error> {
    let mut buf = [MaybeUninit::uninit(); 8];
    let value = fw_cfg.read_prefix(file, &mut buf)?;
    match parse_switch(value).filter(|_| file.size as usize <= buf.len()) {
        Some(on) => Ok(on),
        None => {
            log::warn!(
                "opt/ferrite/timeline is neither 1/on/true nor 0/off/false; no timeline report"
            );
            Ok(false)
        }
    }
}
/// QEMU's `-debugcon` (isa-debugcon) default port.
const DEBUGCON: u16 = timeline::PORT;

const STEPS: [Step; 11] = Step::ALL;

/// The step's name in the report: the contract's.
const fn name(step: Step) -> &'static str {
    match step {
        Step::Reset => timeline::RESET,
        Step::Rust => timeline::RUST,
        Step::FwCfg => timeline::FW_CFG,
        Step::MemoryMap => timeline::MEMORY_MAP,
        Step::Hardware => timeline::HARDWARE,
        Step::KernelHeader => timeline::KERNEL_HEADER,
        Step::Acpi => timeline::ACPI,
        Step::KernelLoaded => timeline::KERNEL,
        Step::InitrdLoaded => timeline::INITRD,
        Step::Cpus => timeline::CPUS,
        Step::ZeroPage => timeline::ZERO_PAGE,
    }
}

// The report's steps are the contract's, in its order.
const _: () = {
    assert!(STEPS.len() == timeline::STEPS.len());
    let mut i = 0;
    while i < STEPS.len() {
        assert!(STEPS[i] as usize == i);
        assert!(timeline::same(name(STEPS[i]), timeline::STEPS[i]));
        i += 1;
    }
};

/// The stamps, one per step, in .bss (cleared by boot.s at every reset).
/// Only the boot path writes them, on CPU 0: atomics for a static without a
/// lock, their relaxed stores plain stores. A static at a fixed address,
/// where a stamp through a reference first loaded that reference (a memory
/// instruction per step, the costly kind under TCG).
static STAMPS: [AtomicU64; STEPS.len()] = [const { AtomicU64::new(0) }; STEPS.len()];

/// The reset vector's stamp, and this step's.
pub fn start(reset_tsc: u64) {
    STAMPS[Step::Reset as usize].store(reset_tsc, Relaxed);
    mark(Step::Rust);
}

#[inline(always)]
pub fn mark(step: Step) {
    STAMPS[step as usize].store(stamp(), Relaxed);
}

/// Writes `ferrite-timeline: reset=0 rust=N ...` (TSC ticks since the reset
/// vector) to the debug console.
pub fn report(io: Pio) {
    let mut out = Debugcon {
        io,
        buf: [0; 256],
        len: 0,
    };
    let base = STAMPS[0].load(Relaxed);
    let _ = write!(out, ferrite_contract::timeline_prefix!());
    for step in STEPS {
        let _ = write!(
            out,
            " {}={}",
            name(step),
            STAMPS[step as usize].load(Relaxed).wrapping_sub(base)
        );
    }
    let _ = writeln!(out);
    out.flush();
}

/// Reads the time-stamp counter, and records where: the `rdtsc`'s address goes
/// to the contract's `timeline::STAMP_SECTION` (the label is local, so every
/// inlined copy records its own). Taken once per step, in [`STEPS`] order from
/// [`Step::Rust`] on.
#[inline(always)]
fn stamp() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc only reads the time-stamp counter; the section directive
    // only adds the address to a non-allocated ELF section (not in the ROM).
    unsafe {
        asm!(
            "2: rdtsc",
            concat!(".pushsection ", ferrite_contract::stamp_section!(), ", \"\", @progbits"),
            ".quad 2b",
            ".popsection",
            out("eax") lo,
            out("edx") hi,
            options(nomem, nostack, preserves_flags)
        )
    };
    (hi as u64) << 32 | lo as u64
}

/// Buffers a line for the debug console (only used when the report is asked for).
struct Debugcon {
    io: Pio,
    buf: [u8; 256],
    len: usize,
}

impl Debugcon {
    fn flush(&mut self) {
        for &b in &self.buf[..self.len] {
            self.io.outb(DEBUGCON, b);
        }
        self.len = 0;
    }
}

impl Write for Debugcon {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}
