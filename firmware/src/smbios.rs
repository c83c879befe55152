//! SMBIOS from QEMU: `etc/smbios/smbios-anchor` (a 2.1 `_SM_` or 3.0 `_SM3_`
//! entry point) and `etc/smbios/smbios-tables`, finished the way SeaBIOS's
//! smbios_romfile_setup does: a type 0 (BIOS information) record naming ferrite
//! goes first when QEMU gave none, the entry point gets the tables' address,
//! length, count and checksums. Linux finds the entry point by scanning the BIOS
//! segment, so bios.rs places it there.

use crate::acpi::byte_sum;

pub const ANCHOR_FILE: &[u8] = b"etc/smbios/smbios-anchor";
pub const TABLES_FILE: &[u8] = b"etc/smbios/smbios-tables";

const EP21_LEN: usize = 0x1F;
const EP30_LEN: usize = 0x18;

/// The largest entry point (2.1).
pub const MAX_ANCHOR: usize = EP21_LEN;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmbiosError {
    /// The anchor is neither a 2.1 nor a 3.0 entry point.
    BadAnchor,
    /// The tables' size is not the one the anchor gives.
    LengthMismatch,
    /// A structure runs past the end of the tables.
    BadStructure,
    /// The output buffer is too small, or the tables outgrow the 2.1 limits.
    TooLarge,
}

/// BIOS information (SMBIOS 3.x, 7.1), formatted area of 24 bytes.
#[repr(C, packed)]
struct Type0 {
    /* 0x00 */ kind: u8,
    /* 0x01 */ length: u8,
    /* 0x02 */ handle: u16,
    /* 0x04 */ vendor: u8,
    /* 0x05 */ version: u8,
    /* 0x06 */ start_segment: u16,
    /* 0x08 */ release_date: u8,
    /* 0x09 */ rom_size: u8,
    /* 0x0A */ characteristics: u64,
    /* 0x12 */ characteristics_ext: [u8; 2],
    /* 0x14 */ bios_release: [u8; 2],
    /* 0x16 */ ec_release: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<Type0>() == 0x18);

pub const VENDOR: &str = "ferrite";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The BIOS release date (SMBIOS wants mm/dd/yyyy): SeaBIOS's, as QEMU's
/// SeaBIOS builds report it, not ferrite's own. Linux keys behaviour on the
/// BIOS year, so a later date would change what the guest does, not just what
/// it reads: from 2023 on, arch/x86/pci/acpi.c ignores the E820 reservations
/// when it places host bridge windows, and from 2015 (Intel; 2021 on AMD)
/// drivers/rtc/rtc-cmos.c (`use_acpi_alarm_quirks`) signals the RTC alarm
/// through the ACPI RTC event instead of the HPET's RTC emulation. With
/// SeaBIOS's date the guest makes the same choices under both firmwares.
pub const RELEASE_DATE: &str = "04/01/2014";

/// Room for ferrite's type 0 record: the formatted area, three strings with
/// their NULs, and the NUL that ends the set.
pub const TYPE0_ROOM: usize =
    core::mem::size_of::<Type0>() + VENDOR.len() + VERSION.len() + RELEASE_DATE.len() + 4;

/// Writes ferrite's type 0 record to `out`; returns its length.
fn write_type0(out: &mut [u8]) -> usize {
    let t = Type0 {
        kind: 0,
        length: 0x18,
        handle: 0,
        vendor: 1,
        version: 2,
        start_segment: 0xE800,
        release_date: 3,
        rom_size: 0,
        // bit 3: "BIOS characteristics not supported", as SeaBIOS reports
        characteristics: 0x08,
        // byte 2 bit 2: targeted content distribution
        characteristics_ext: [0, 4],
        bios_release: [0, 0],
        ec_release: [0xFF, 0xFF],
    };
    // SAFETY: Type0 is repr(C, packed) plain data without padding.
    let bytes: [u8; 0x18] = unsafe { core::mem::transmute(t) };
    out[..0x18].copy_from_slice(&bytes);
    let mut at = 0x18;
    for s in [VENDOR, VERSION, RELEASE_DATE] {
        out[at..at + s.len()].copy_from_slice(s.as_bytes());
        out[at + s.len()] = 0;
        at += s.len() + 1;
    }
    out[at] = 0;
    at + 1
}

/// Structures in a table blob: (type, total length with strings).
fn structures(tables: &[u8]) -> impl Iterator<Item = Result<(u8, usize), SmbiosError>> + '_ {
    let mut at = 0;
    core::iter::from_fn(move || {
        if at >= tables.len() {
            return None;
        }
        let rest = &tables[at..];
        let r = (|| {
            let formatted = *rest.get(1).ok_or(SmbiosError::BadStructure)? as usize;
            if formatted < 4 || formatted > rest.len() {
                return Err(SmbiosError::BadStructure);
            }
            // strings end with a double NUL
            let end = rest[formatted..]
                .windows(2)
                .position(|w| w == [0, 0])
                .ok_or(SmbiosError::BadStructure)?;
            Ok((rest[0], formatted + end + 2))
        })();
        match r {
            Ok((_, len)) => at += len,
            Err(_) => at = tables.len(),
        }
        Some(r)
    })
}

/// The finished entry point (to go in the BIOS segment) and table blob length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    pub entry: [u8; MAX_ANCHOR],
    pub entry_len: usize,
    pub tables_len: usize,
}

fn has_type0(tables: &[u8]) -> Result<bool, SmbiosError> {
    let mut found = false;
    for s in structures(tables) {
        found |= s?.0 == 0;
    }
    Ok(found)
}

/// Finishes QEMU's tables in place. `buf` holds [`TYPE0_ROOM`] free bytes, then
/// the tables as QEMU gave them; it lives at `base`. When QEMU gave no type 0
/// record, ferrite's goes in the free room, just before QEMU's records. Returns
/// the entry point and the offset in `buf` where the final tables start.
/// Inlined into the boot's one call: returned, the result was copied out
/// (a rep movs, under TCG a translation block of its own).
#[inline(always)]
pub fn finish(anchor: &[u8], buf: &mut [u8], base: u64) -> Result<(Finished, usize), SmbiosError> {
    let v21 = anchor.len() == EP21_LEN && anchor.starts_with(b"_SM_");
    let v30 = anchor.len() == EP30_LEN && anchor.starts_with(b"_SM3_");
    if !v21 && !v30 {
        return Err(SmbiosError::BadAnchor);
    }
    if buf.len() < TYPE0_ROOM {
        return Err(SmbiosError::TooLarge);
    }
    let qemu_len = buf.len() - TYPE0_ROOM;
    let le16 = |at: usize| u16::from_le_bytes([anchor[at], anchor[at + 1]]) as usize;
    let declared = if v21 {
        le16(0x16)
    } else {
        u32::from_le_bytes(anchor[0x0C..0x10].try_into().unwrap()) as usize
    };
    if declared != qemu_len {
        return Err(SmbiosError::LengthMismatch);
    }
    let start = if has_type0(&buf[TYPE0_ROOM..])? {
        TYPE0_ROOM
    } else {
        write_type0(buf);
        0
    };
    let total = buf.len() - start;
    let address = base
        .checked_add(start as u64)
        .ok_or(SmbiosError::TooLarge)?;
    if v21 && (total > 0xFFFF || address > u32::MAX as u64) {
        return Err(SmbiosError::TooLarge);
    }

    let mut entry = [0u8; MAX_ANCHOR];
    entry[..anchor.len()].copy_from_slice(anchor);
    if v21 {
        if start == 0 {
            let max = le16(0x08).max(TYPE0_ROOM);
            entry[0x08..0x0A].copy_from_slice(&(max as u16).to_le_bytes());
            let count = le16(0x1C) + 1;
            entry[0x1C..0x1E].copy_from_slice(&(count as u16).to_le_bytes());
        }
        entry[0x16..0x18].copy_from_slice(&(total as u16).to_le_bytes());
        entry[0x18..0x1C].copy_from_slice(&(address as u32).to_le_bytes());
        entry[0x04] = 0;
        entry[0x04] = byte_sum(&entry[..0x10]).wrapping_neg();
        entry[0x15] = 0;
        entry[0x15] = byte_sum(&entry[0x10..EP21_LEN]).wrapping_neg();
    } else {
        entry[0x0C..0x10].copy_from_slice(&(total as u32).to_le_bytes());
        entry[0x10..0x18].copy_from_slice(&address.to_le_bytes());
        entry[0x05] = 0;
        entry[0x05] = byte_sum(&entry[..EP30_LEN]).wrapping_neg();
    }
    Ok((
        Finished {
            entry,
            entry_len: anchor.len(),
            tables_len: total,
        },
        start,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// A type 1 record with one string, and the end-of-table record.
    fn qemu_tables(with_type0: bool) -> Vec<u8> {
        let mut t = Vec::new();
        if with_type0 {
            t.extend_from_slice(&[0, 0x18, 0, 0]);
            t.extend_from_slice(&[0; 0x14]);
            t.extend_from_slice(b"QEMU\0\0");
        }
        t.extend_from_slice(&[1, 0x1B, 0x00, 0x01]);
        t.extend_from_slice(&[0; 0x17]);
        t.extend_from_slice(b"QEMU\0\0");
        t.extend_from_slice(&[127, 4, 0xFF, 0xFE, 0, 0]);
        t
    }

    fn anchor21(len: usize, count: u16) -> Vec<u8> {
        let mut a = std::vec![0u8; EP21_LEN];
        a[..4].copy_from_slice(b"_SM_");
        a[5] = EP21_LEN as u8;
        a[6] = 2;
        a[7] = 8;
        a[0x08..0x0A].copy_from_slice(&0x1Bu16.to_le_bytes());
        a[0x10..0x15].copy_from_slice(b"_DMI_");
        a[0x16..0x18].copy_from_slice(&(len as u16).to_le_bytes());
        a[0x1C..0x1E].copy_from_slice(&count.to_le_bytes());
        a
    }

    fn anchor30(len: usize) -> Vec<u8> {
        let mut a = std::vec![0u8; EP30_LEN];
        a[..5].copy_from_slice(b"_SM3_");
        a[6] = EP30_LEN as u8;
        a[7] = 3;
        a[0x0C..0x10].copy_from_slice(&(len as u32).to_le_bytes());
        a
    }

    /// The buffer `finish` works in: free room, then QEMU's tables.
    fn buffer(tables: &[u8]) -> Vec<u8> {
        let mut b = std::vec![0xAAu8; TYPE0_ROOM];
        b.extend_from_slice(tables);
        b
    }

    #[test]
    fn type0_is_added_first_and_the_21_entry_point_is_finished() {
        let t = qemu_tables(false);
        let mut out = buffer(&t);
        let (f, start) = finish(&anchor21(t.len(), 2), &mut out, 0x7FFF_0000).unwrap();
        assert_eq!(start, 0);
        assert_eq!(f.tables_len, t.len() + TYPE0_ROOM);
        assert_eq!(&out[TYPE0_ROOM..f.tables_len], &t[..]);
        // the type 0 record and its strings
        assert_eq!(out[0], 0);
        assert_eq!(out[1], 0x18);
        assert_eq!(&out[0x18..0x20], b"ferrite\0");
        // the date string (3rd) is SeaBIOS's: Linux's BIOS-year quirks see 2014
        let strings: Vec<&[u8]> = out[0x18..TYPE0_ROOM].split(|&b| b == 0).collect();
        assert_eq!(strings[2], b"04/01/2014");
        let e = &f.entry[..f.entry_len];
        assert_eq!(byte_sum(&e[..0x10]), 0);
        assert_eq!(byte_sum(&e[0x10..]), 0);
        assert_eq!(
            u16::from_le_bytes([e[0x16], e[0x17]]) as usize,
            f.tables_len
        );
        assert_eq!(
            u32::from_le_bytes(e[0x18..0x1C].try_into().unwrap()),
            0x7FFF_0000
        );
        assert_eq!(u16::from_le_bytes([e[0x1C], e[0x1D]]), 3);
        assert_eq!(u16::from_le_bytes([e[8], e[9]]) as usize, TYPE0_ROOM);
        // every structure parses
        assert_eq!(structures(&out[..f.tables_len]).count(), 3);
    }

    #[test]
    fn qemus_own_type0_is_kept_and_30_entry_points_work() {
        let t = qemu_tables(true);
        let mut out = buffer(&t);
        let (f, start) = finish(&anchor30(t.len()), &mut out, 0x1_2345_6000).unwrap();
        assert_eq!(start, TYPE0_ROOM);
        assert_eq!(f.tables_len, t.len());
        assert_eq!(&out[start..], &t[..]);
        let e = &f.entry[..f.entry_len];
        assert_eq!(byte_sum(e), 0);
        let address = 0x1_2345_6000 + TYPE0_ROOM as u64;
        assert_eq!(
            u64::from_le_bytes(e[0x10..0x18].try_into().unwrap()),
            address
        );
    }

    #[test]
    fn malformed_input_is_refused() {
        let t = qemu_tables(false);
        let a = anchor21(t.len(), 2);
        assert_eq!(
            finish(b"_SM_", &mut buffer(&t), 0).map(|r| r.1),
            Err(SmbiosError::BadAnchor)
        );
        assert_eq!(
            finish(&anchor21(t.len() + 1, 2), &mut buffer(&t), 0).map(|r| r.1),
            Err(SmbiosError::LengthMismatch)
        );
        // a structure whose length runs past the end, and one without its double NUL
        let mut bad = t.clone();
        bad[1] = 0xF0;
        assert_eq!(
            finish(&a, &mut buffer(&bad), 0).map(|r| r.1),
            Err(SmbiosError::BadStructure)
        );
        let cut = &t[..t.len() - 1];
        assert_eq!(
            finish(&anchor21(cut.len(), 2), &mut buffer(cut), 0).map(|r| r.1),
            Err(SmbiosError::BadStructure)
        );
        let mut small = [0u8; 16];
        assert_eq!(
            finish(&a, &mut small, 0).map(|r| r.1),
            Err(SmbiosError::TooLarge)
        );
        // a 2.1 entry point cannot point above 4 GiB
        assert_eq!(
            finish(&a, &mut buffer(&t), 1 << 32).map(|r| r.1),
            Err(SmbiosError::TooLarge)
        );
    }
}
