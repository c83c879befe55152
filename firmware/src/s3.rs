//! Resume from suspend to RAM (ACPI S3), the logic the reset vector's resume
//! path (asm/boot.s) runs on: what ferrite records at a cold boot, and the port
//! writes that put back what QEMU's wake-up reset undid.
//!
//! QEMU's wake-up is a system reset (every device's reset handler runs, the CPU
//! starts at the reset vector) after its RTC wrote 0xFE, "S3 resume", to the
//! CMOS shutdown status. RAM keeps the sleeping OS, including ferrite's own
//! RAM image at 0x10000-0x9EFFF, which Linux used as its own. So the resume
//! path runs from the ROM and the EBDA only: it reads the [`ResumeBlock`] a
//! cold boot left in the EBDA, replays the machine's script of port writes (a
//! constant array in the ROM, built by [`script`]; it maps 0xC0000-0xEFFFF,
//! where pc's and q35's FACS lies, back to RAM), checks the FACS the block
//! names and jumps in real mode to its firmware waking vector, as SeaBIOS
//! does. Anything missing or implausible there, and the boot goes on as a cold
//! boot, saying why.

use crate::chipset::{self, CMOS_DATA, CMOS_INDEX, HOST_BRIDGE, Machine, i440fx, q35};
use crate::pci::{self, Bdf, ConfigWrite};

/// CMOS register 0x0F, the shutdown status a BIOS reads at reset.
pub const CMOS_SHUTDOWN_STATUS: u8 = 0x0F;
/// The status QEMU's RTC writes when the guest enters S3 (hw/rtc/mc146818rtc.c).
pub const SHUTDOWN_S3_RESUME: u8 = 0xFE;

/// One port write of the resume script. `width` 1, 2 or 4 bytes; 0 ends the
/// script.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortWrite {
    /// 0x00: the I/O port.
    pub port: u16,
    /// 0x02: bytes written (`outb`, `outw`, `outl`), 0 at the end.
    pub width: u8,
    /// 0x03
    pub reserved: u8,
    /// 0x04: the value (its low `width` bytes).
    pub value: u32,
}

pub const PORT_WRITE_PORT: usize = 0;
pub const PORT_WRITE_WIDTH: usize = 2;
pub const PORT_WRITE_VALUE: usize = 4;
pub const PORT_WRITE_SIZE: usize = 8;

const _: () = {
    assert!(core::mem::offset_of!(PortWrite, port) == PORT_WRITE_PORT);
    assert!(core::mem::offset_of!(PortWrite, width) == PORT_WRITE_WIDTH);
    assert!(core::mem::offset_of!(PortWrite, value) == PORT_WRITE_VALUE);
    assert!(core::mem::size_of::<PortWrite>() == PORT_WRITE_SIZE);
};

const END: PortWrite = PortWrite {
    port: 0,
    width: 0,
    reserved: 0,
    value: 0,
};

/// Room for the longest script (q35: 43 writes) and its end.
pub const SCRIPT_LEN: usize = 48;
pub type Script = [PortWrite; SCRIPT_LEN];

/// What a cold boot leaves in the EBDA for the resume path. The EBDA is
/// reserved in the e820 map, so it outlives the OS's use of the rest of RAM.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumeBlock {
    /// 0x00: [`RESUME_MAGIC`] when the rest is valid.
    pub magic: u32,
    /// 0x04: the FACS's physical address (below 4 GiB).
    pub facs: u32,
    /// 0x08: which ROM script to replay: [`SCRIPT_PC`] or [`SCRIPT_Q35`].
    pub script: u32,
    /// 0x0C: written on resume: the waking vector as offset (low word) and
    /// segment (high word), for the real-mode `ljmp`.
    pub jump: u32,
}

pub const RESUME_BLOCK_MAGIC: usize = 0x00;
pub const RESUME_BLOCK_FACS: usize = 0x04;
pub const RESUME_BLOCK_SCRIPT: usize = 0x08;
pub const RESUME_BLOCK_JUMP: usize = 0x0C;

const _: () = {
    assert!(core::mem::offset_of!(ResumeBlock, magic) == RESUME_BLOCK_MAGIC);
    assert!(core::mem::offset_of!(ResumeBlock, facs) == RESUME_BLOCK_FACS);
    assert!(core::mem::offset_of!(ResumeBlock, script) == RESUME_BLOCK_SCRIPT);
    assert!(core::mem::offset_of!(ResumeBlock, jump) == RESUME_BLOCK_JUMP);
    assert!(core::mem::size_of::<ResumeBlock>() == 16);
};

/// "fS3r": a block written by this firmware.
pub const RESUME_MAGIC: u32 = u32::from_le_bytes(*b"fS3r");
pub const SCRIPT_PC: u32 = 1;
pub const SCRIPT_Q35: u32 = 2;

/// The ROM script for `machine`, by the [`ResumeBlock::script`] number; None
/// for machines ferrite does not resume (no PAM, no S3 in QEMU's tables).
pub const fn script_number(machine: Machine) -> Option<u32> {
    match machine {
        Machine::I440fx => Some(SCRIPT_PC),
        Machine::Q35 => Some(SCRIPT_Q35),
        Machine::NoPci => None,
    }
}

/// FACS (ACPI 6.5, 5.2.10): signature at 0, 32-bit firmware waking vector at 12.
pub const FACS_SIGNATURE: u32 = u32::from_le_bytes(*b"FACS");
pub const FACS_WAKING_VECTOR: usize = 12;
/// A real-mode waking vector is below 1 MiB.
pub const WAKING_VECTOR_LIMIT: u32 = 0x10_0000;

/// Why a wake-up from S3 could not resume the OS (passed from asm/boot.s to
/// Rust, which says so and boots afresh).
pub const WAKE_OK: u32 = 0;
pub const WAKE_NOT_ARMED: u32 = 1;
pub const WAKE_NO_FACS: u32 = 2;
pub const WAKE_NO_VECTOR: u32 = 3;

/// The one line printed for a failed wake-up, None when there was none.
pub fn wake_failure(code: u32) -> Option<&'static str> {
    match code {
        WAKE_OK => None,
        WAKE_NOT_ARMED => Some(
            "S3 wake-up, but no resume was prepared at boot (microvm, no ACPI FACS, or the EBDA overwritten): booting afresh",
        ),
        WAKE_NO_FACS => Some("S3 wake-up, but the FACS is no longer there: booting afresh"),
        WAKE_NO_VECTOR => Some(
            "S3 wake-up, but the OS left no real-mode waking vector in the FACS: booting afresh",
        ),
        _ => Some("S3 wake-up failed for an unknown reason: booting afresh"),
    }
}

/// Builds a script one write at a time.
struct Builder {
    script: Script,
    len: usize,
}

impl Builder {
    const fn new() -> Builder {
        Builder {
            script: [END; SCRIPT_LEN],
            len: 0,
        }
    }

    const fn out(&mut self, port: u16, width: u8, value: u32) {
        // One entry always stays the end marker (a full script fails to build).
        assert!(self.len + 1 < SCRIPT_LEN, "resume script too long");
        self.script[self.len] = PortWrite {
            port,
            width,
            reserved: 0,
            value,
        };
        self.len += 1;
    }

    const fn config(&mut self, bdf: Bdf, w: ConfigWrite) {
        self.out(pci::CONFIG_ADDRESS, 4, bdf.address(w.reg));
        self.out(pci::CONFIG_DATA + (w.reg as u16 & 3), w.width, w.value);
    }

    const fn configs(&mut self, bdf: Bdf, writes: &[ConfigWrite]) {
        let mut i = 0;
        while i < writes.len() {
            self.config(bdf, writes[i]);
            i += 1;
        }
    }
}

/// What the resume path writes before it jumps to the OS, for `machine`: what
/// SeaBIOS 1.16's s3_resume restores and ferrite's cold boot set up:
///
/// * the CMOS shutdown status cleared (a later reset is a plain reboot);
/// * PAM: the BIOS segment read-only shadow RAM again (the RSDP, SMBIOS entry
///   point and MP table stay visible), 0xC0000-0xEFFFF RAM;
/// * the ACPI PM and SMBus I/O blocks (PIIX4 PM on pc; ICH9 LPC, with the RCBA,
///   and ICH9 SMBus on q35), which their reset handlers switch off: Linux's
///   ACPI wake-up code reads PM1 right after the jump;
/// * q35's PCIEXBAR (MMCONFIG), which the MCH's reset handler clears;
/// * the 8259 PICs (SeaBIOS's pic_setup).
pub const fn script(machine: Machine) -> Script {
    let mut b = Builder::new();
    b.out(CMOS_INDEX, 1, CMOS_SHUTDOWN_STATUS as u32);
    b.out(CMOS_DATA, 1, 0);
    let pam = chipset::locked_pam(machine);
    let mut i = 0;
    while i < pam.len() {
        if let Some(w) = pam[i] {
            b.config(HOST_BRIDGE, w);
        }
        i += 1;
    }
    match machine {
        Machine::I440fx => {
            b.configs(
                i440fx::PIIX4_PM,
                &i440fx::piix4_pm_setup(chipset::ACPI_PM_BASE),
            );
        }
        Machine::Q35 => {
            b.configs(HOST_BRIDGE, &q35::pciexbar_setup(chipset::Q35_MMCONFIG));
            b.configs(
                q35::ICH9_LPC,
                &q35::ich9_lpc_acpi_setup(chipset::ACPI_PM_BASE),
            );
            b.configs(
                q35::ICH9_SMBUS,
                &q35::ich9_smbus_setup(chipset::ACPI_PM_BASE),
            );
        }
        Machine::NoPci => return Builder::new().script,
    }
    let mut i = 0;
    while i < chipset::PIC_INIT.len() {
        let (port, value) = chipset::PIC_INIT[i];
        b.out(port, 1, value as u32);
        i += 1;
    }
    b.script
}

/// Finds the FACS from the RSDP, as SeaBIOS's find_resume_vector does (RSDT or
/// XSDT, the FADT, its FIRMWARE_CTRL or X_FIRMWARE_CTRL). `read` fills a buffer
/// from physical memory and returns false where ferrite has no tables. None
/// when any step is missing or malformed, or the FACS is above 4 GiB (the
/// resume path runs without paging).
pub fn find_facs(rsdp: u64, mut read: impl FnMut(u64, &mut [u8]) -> bool) -> Option<u32> {
    let mut r = [0u8; 36];
    if !read(rsdp, &mut r[..20]) || &r[..8] != b"RSD PTR " {
        return None;
    }
    let revision = r[15];
    let rsdt = u32::from_le_bytes(r[16..20].try_into().unwrap()) as u64;
    let (table, entry_size) = if rsdt != 0 {
        (rsdt, 4)
    } else if revision >= 2 && read(rsdp, &mut r[..32]) {
        (u64::from_le_bytes(r[24..32].try_into().unwrap()), 8)
    } else {
        return None;
    };
    let len = sdt_length(table, &mut read)?;
    // QEMU's RSDT lists a handful of tables; a bound keeps a corrupt one short.
    let count = ((len - 36) / entry_size).min(64);
    let fadt = (0..count).find_map(|i| {
        let mut e = [0u8; 8];
        let at = table.checked_add(36 + i * entry_size)?;
        if !read(at, &mut e[..entry_size as usize]) {
            return None;
        }
        let addr = u64::from_le_bytes(e);
        let mut sig = [0u8; 4];
        (addr != 0 && read(addr, &mut sig) && &sig == b"FACP").then_some(addr)
    })?;
    let fadt_len = sdt_length(fadt, &mut read)?;
    let mut f = [0u8; 8];
    let mut facs = 0u64;
    if fadt_len >= 40 && read(fadt + 36, &mut f[..4]) {
        facs = u32::from_le_bytes(f[..4].try_into().unwrap()) as u64;
    }
    if facs == 0 && fadt_len >= 140 && read(fadt + 132, &mut f) {
        facs = u64::from_le_bytes(f);
    }
    if facs == 0 || facs >= 1 << 32 {
        return None;
    }
    let mut sig = [0u8; 4];
    (read(facs, &mut sig) && u32::from_le_bytes(sig) == FACS_SIGNATURE).then_some(facs as u32)
}

/// A table's length from its header, if it has a plausible one.
fn sdt_length(addr: u64, read: &mut impl FnMut(u64, &mut [u8]) -> bool) -> Option<u64> {
    let mut h = [0u8; 8];
    if addr == 0 || !read(addr, &mut h) {
        return None;
    }
    let len = u32::from_le_bytes(h[4..8].try_into().unwrap()) as u64;
    (36..=1 << 20).contains(&len).then_some(len)
}

#[cfg(test)]
mod tests;
