//! Suspend to RAM, the cold boot's part: where the binary's resume path finds
//! the OS's FACS and which of the ROM's port-write scripts it replays
//! (`crate::s3` has the logic and the scripts' contents).

use crate::board::GuestMemory;
use crate::chipset::Machine;
use crate::mem::Range;
use crate::s3::{self, ResumeBlock};

use super::bios::{EBDA, F_SEGMENT};

/// The resume block, in the EBDA (reserved in the e820 map, so the OS leaves
/// it alone), past the first bytes that a BIOS's EBDA gives meaning to.
pub const RESUME_BLOCK: u64 = EBDA.start + 0x200;
const _: () = assert!(RESUME_BLOCK + size_of::<ResumeBlock>() as u64 <= EBDA.end);

/// Records the FACS and the machine's script in the EBDA, once ACPI is
/// installed and the BIOS segment is locked. Machines without a script
/// (microvm) or without ACPI tables get none, and a wake-up there boots afresh.
/// The FACS is taken where QEMU puts it, first in `etc/acpi/tables` (at
/// `qemu_tables`, checked by its signature), or else looked up from the RSDP
/// in `tables`, the high zone holding QEMU's ACPI tables.
pub fn arm(
    mem: &mut impl GuestMemory,
    machine: Machine,
    rsdp: Option<u64>,
    qemu_tables: Option<u64>,
    tables: Range,
) {
    // One test for the two (a branch each is a translation block under TCG).
    let script = s3::script_number(machine);
    if script.is_none() | rsdp.is_none() {
        return;
    }
    let (Some(script), Some(rsdp)) = (script, rsdp) else {
        return;
    };
    let at_qemu_tables = qemu_tables.filter(|&at| {
        // The table loader allocated this file in the high zone, whose
        // blocks start 16-byte aligned below the previous one: the 4
        // bytes lie in the file's block even if it is shorter.
        let sig = mem.bytes(at, 4).map(|b| [b[0], b[1], b[2], b[3]]);
        sig.ok().map(u32::from_le_bytes) == Some(s3::FACS_SIGNATURE)
    });
    // The usual FACS goes straight on, the walk's result is tested apart.
    let facs = match at_qemu_tables {
        Some(at) => at as u32,
        None => match walk_to_facs(mem, rsdp, tables) {
            Some(facs) => facs,
            None => {
                log::info!("s3: no FACS found; a wake-up from S3 will boot afresh");
                return;
            }
        },
    };
    log::debug!("s3: FACS at {facs:#x}");
    // The resume block lies in the EBDA, which bios.rs set up and only
    // ferrite writes.
    match mem.object::<ResumeBlock>(RESUME_BLOCK) {
        Ok(block) => {
            *block = ResumeBlock {
                magic: s3::RESUME_MAGIC,
                facs,
                script,
                jump: 0,
            }
        }
        Err(e) => log::warn!("s3: {e}; a wake-up from S3 will boot afresh"),
    }
}

/// The FACS found as SeaBIOS finds it, from the RSDP through the FADT, reading
/// only ferrite's tables (for tables QEMU laid out otherwise than today).
#[inline(never)]
fn walk_to_facs(mem: &mut impl GuestMemory, rsdp: u64, tables: Range) -> Option<u32> {
    let inside = |r: Range, at: u64, end: u64| r.start <= at && end <= r.end;
    s3::find_facs(rsdp, |at, buf| {
        let Some(end) = at.checked_add(buf.len() as u64) else {
            return false;
        };
        if !inside(tables, at, end) && !inside(F_SEGMENT, at, end) {
            return false;
        }
        // The range lies in the high zone's tables or the BIOS segment
        // (read-only shadow RAM now), both written by ferrite.
        match mem.bytes(at, buf.len()) {
            Ok(bytes) => {
                buf.copy_from_slice(bytes);
                true
            }
            Err(_) => false,
        }
    })
}
