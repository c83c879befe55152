//! The BIOS segment (0xF0000-0xFFFFF) and the BIOS data areas, filled the way a
//! PC BIOS leaves them: the RSDP, the SMBIOS entry point and the MP table where
//! guests scan for them, the application processors' start-up page, and an
//! extended BIOS data area that the BDA points to.
//!
//! QEMU maps the ROM there at reset; the PAM registers (`chipset`) turn the
//! segment into shadow RAM while ferrite writes it, and write-protect it after,
//! as SeaBIOS does. Machines without PAM (microvm) skip all of this.

use crate::board::GuestMemory;
use crate::chipset::{self, Machine};
use crate::error::Error;
use crate::fwcfg::FwCfg;
use crate::io::PortIo;
use crate::mem::Range;

use super::cpus;

pub const F_SEGMENT: Range = Range::new(0xF_0000, 0x10_0000);
/// One KiB of extended BIOS data area below 640 KiB, as SeaBIOS reserves.
pub const EBDA: Range = Range::new(0x9_FC00, 0xA_0000);
/// Where the MP table's floating pointer goes on every machine: in the first
/// KiB of the EBDA, the first place the MP specification (1.4, 4.) names and
/// the second Linux scans, after the first KiB of memory; at its second 16
/// bytes, the first holding the EBDA's size. Linux maps and unmaps every 16
/// bytes it scans: in the BIOS segment, after the start-up page, the pointer
/// was 388 steps in and cost the kernel 1.5 ms under TCG; here it is 66.
pub const MP_POINTER: u64 = EBDA.start + 16;
/// BDA words Linux reads: the EBDA's segment and the base memory size in KiB.
const BDA_EBDA_SEGMENT: u64 = 0x40E;
const BDA_BASE_MEMORY_KB: u64 = 0x413;

const _: () = assert!(cpus::TRAMPOLINE == F_SEGMENT.start);

/// The open BIOS segment: a bump allocator after the trampoline page.
pub struct BiosArea {
    machine: Machine,
    next: u64,
}

impl BiosArea {
    /// Makes the BIOS segment writable RAM and clears it (a reboot finds the
    /// previous boot's tables there), and sets up the EBDA. None without PAM.
    pub fn open<IO: PortIo>(
        io: &mut IO,
        fw_cfg: &mut FwCfg<IO>,
        mem: &mut impl GuestMemory,
        machine: Machine,
    ) -> Result<Option<BiosArea>, Error> {
        if !chipset::unlock_bios_area(io, machine) {
            return Ok(None);
        }
        // The segment is now RAM that only ferrite uses; the BDA and the EBDA
        // are below ferrite's RAM image and used by nothing else (the kernel
        // reads them later). The segment's 64 KiB cleared by fw_cfg in one
        // request rather than a loop of stores (see `zero_guest`); the
        // EBDA's 1 KiB by the CPU, cheaper than an exit under KVM.
        fw_cfg.zero_guest(mem, F_SEGMENT.start, F_SEGMENT.len() as u32)?;
        let ebda = mem.bytes(EBDA.start, EBDA.len() as usize)?;
        crate::mem::zero(ebda);
        ebda[0] = (EBDA.len() / 1024) as u8;
        let segment = (EBDA.start >> 4) as u16;
        mem.bytes(BDA_EBDA_SEGMENT, 2)?
            .copy_from_slice(&segment.to_le_bytes());
        let base_kb = (EBDA.start / 1024) as u16;
        mem.bytes(BDA_BASE_MEMORY_KB, 2)?
            .copy_from_slice(&base_kb.to_le_bytes());
        Ok(Some(BiosArea {
            machine,
            next: cpus::TRAMPOLINE + 4096,
        }))
    }

    /// `len` bytes aligned to `align`, a power of two (the table loader checks
    /// its alignments), and to 16 bytes at least (every table scanned for is).
    pub fn alloc(&mut self, len: u64, align: u64) -> Option<u64> {
        debug_assert!(align.is_power_of_two());
        let mask = align.max(16) - 1;
        // Saturated, an overflow lands beyond the segment: one test for the
        // three (a branch each is a translation block each under TCG).
        let start = self.next.saturating_add(mask) & !mask;
        let end = start.saturating_add(len);
        if end > F_SEGMENT.end {
            return None;
        }
        self.next = end;
        Some(start)
    }

    /// Copies `bytes` into the segment; returns their address.
    #[inline]
    pub fn place(&mut self, mem: &mut impl GuestMemory, bytes: &[u8]) -> Option<u64> {
        let at = self.alloc(bytes.len() as u64, 16)?;
        // `alloc` handed out this range of the open segment to us alone.
        mem.bytes(at, bytes.len()).ok()?.copy_from_slice(bytes);
        Some(at)
    }

    /// Write-protects the segment. The other CPUs only read it from now on.
    pub fn close(self, io: &mut impl PortIo) {
        chipset::lock_bios_area(io, self.machine);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(next: u64) -> BiosArea {
        BiosArea {
            machine: Machine::I440fx,
            next,
        }
    }

    #[test]
    fn alloc_aligns_to_16_at_least_and_bumps() {
        let mut a = area(cpus::TRAMPOLINE + 4096 + 1);
        assert_eq!(a.alloc(20, 4), Some(0xF_1010));
        assert_eq!(a.alloc(0, 64), Some(0xF_1040));
        assert_eq!(a.alloc(1, 16), Some(0xF_1040));
        assert_eq!(a.next, 0xF_1041);
    }

    #[test]
    fn alloc_fills_the_segment_exactly_and_no_further() {
        let mut a = area(F_SEGMENT.end - 32);
        assert_eq!(a.alloc(33, 16), None);
        assert_eq!(a.next, F_SEGMENT.end - 32, "a failed alloc takes nothing");
        assert_eq!(a.alloc(32, 16), Some(F_SEGMENT.end - 32));
        assert_eq!(a.alloc(0, 16), Some(F_SEGMENT.end));
        assert_eq!(a.alloc(1, 16), None);
    }

    /// Lengths and alignments that overflow u64 are refused, as before the
    /// checked additions became saturating ones.
    #[test]
    fn alloc_refuses_what_overflows() {
        let mut a = area(cpus::TRAMPOLINE + 4096);
        assert_eq!(a.alloc(u64::MAX, 16), None);
        assert_eq!(a.alloc(u64::MAX - 0xF_1000 + 1, 16), None);
        assert_eq!(a.alloc(16, 1 << 63), None);
        let mut top = area(u64::MAX - 4);
        assert_eq!(top.alloc(0, 16), None);
        assert_eq!(a.alloc(16, 16), Some(0xF_1000));
    }
}
