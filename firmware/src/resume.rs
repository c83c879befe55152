//! Suspend to RAM, the cold boot's part: where the resume path (asm/boot.s)
//! finds the OS's FACS and which of the ROM's port-write scripts it replays
//! (ferrite::s3 has the logic and the scripts' contents).

use ferrite::chipset::Machine;
use ferrite::e820::Range;
use ferrite::s3::{self, ResumeBlock, Script};

use crate::bios::{EBDA, F_SEGMENT};
use crate::phys;

/// The resume block, in the EBDA (reserved in the e820 map, so the OS leaves
/// it alone), past the first bytes that a BIOS's EBDA gives meaning to.
pub const RESUME_BLOCK: u64 = EBDA.start + 0x200;
const _: () = assert!(RESUME_BLOCK + size_of::<ResumeBlock>() as u64 <= EBDA.end);

/// The scripts, in the ROM: the resume path must not read the RAM image (the
/// OS's memory by then). asm/boot.s refers to them by symbol.
#[used]
#[unsafe(link_section = ".rom.resume")]
pub static PC_SCRIPT: Script = s3::script(Machine::I440fx);
#[used]
#[unsafe(link_section = ".rom.resume")]
pub static Q35_SCRIPT: Script = s3::script(Machine::Q35);

/// Records the FACS and the machine's script in the EBDA, once ACPI is
/// installed and the BIOS segment is locked. Machines without a script
/// (microvm) or without ACPI tables get none, and a wake-up there boots afresh.
/// The FACS is taken where QEMU puts it, first in `etc/acpi/tables` (at
/// `qemu_tables`, checked by its signature), or else looked up from the RSDP
/// in `tables`, the high zone holding QEMU's ACPI tables.
pub fn arm(machine: Machine, rsdp: Option<u64>, qemu_tables: Option<u64>, tables: Range) {
    let (Some(script), Some(rsdp)) = (s3::script_number(machine), rsdp) else {
        return;
    };
    let facs = qemu_tables
        .filter(|&at| {
            // SAFETY: the table loader allocated this file in the high zone
            // (identity-mapped, below 4 GiB), whose blocks start 16-byte
            // aligned below the previous one: the 4 bytes lie in the file's
            // block even if it is shorter; nothing else holds a slice of it.
            let sig = unsafe { phys::slice_mut(at, 4) };
            u32::from_le_bytes([sig[0], sig[1], sig[2], sig[3]]) == s3::FACS_SIGNATURE
        })
        .map(|at| at as u32)
        .or_else(|| walk_to_facs(rsdp, tables));
    let Some(facs) = facs else {
        log::info!("s3: no FACS found; a wake-up from S3 will boot afresh");
        return;
    };
    log::debug!("s3: FACS at {facs:#x}");
    // SAFETY: the resume block lies in the EBDA, which bios.rs set up and
    // only ferrite writes; ResumeBlock is plain data.
    unsafe {
        *phys::object_mut::<ResumeBlock>(RESUME_BLOCK) = ResumeBlock {
            magic: s3::RESUME_MAGIC,
            facs,
            script,
            jump: 0,
        };
    }
}

/// The FACS found as SeaBIOS finds it, from the RSDP through the FADT, reading
/// only ferrite's tables (for tables QEMU laid out otherwise than today).
#[inline(never)]
fn walk_to_facs(rsdp: u64, tables: Range) -> Option<u32> {
    let inside = |r: Range, at: u64, end: u64| r.start <= at && end <= r.end;
    s3::find_facs(rsdp, |at, buf| {
        let Some(end) = at.checked_add(buf.len() as u64) else {
            return false;
        };
        if !inside(tables, at, end) && !inside(F_SEGMENT, at, end) {
            return false;
        }
        // SAFETY: the range lies in the high zone's tables or the BIOS
        // segment (read-only shadow RAM now), both identity-mapped and
        // written by ferrite; nothing else holds a slice of them now.
        buf.copy_from_slice(unsafe { phys::slice_mut(at, buf.len()) });
        true
    })
}
