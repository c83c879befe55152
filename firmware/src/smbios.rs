//! SMBIOS from QEMU: `etc/smbios/smbios-anchor` (a 2.1 `_SM_` or 3.0 `_SM3_`
//! entry point) and `etc/smbios/smbios-tables`, finished the way SeaBIOS's
//! smbios_romfile_setup does: a type 0 (BIOS information) record naming ferrite
//! goes first when QEMU gave none, the entry point gets the tables' address,
//! length, count and checksums. Linux finds the entry point by scanning the BIOS
//! segment, so bios.rs places it there.

use crate::acpi::{check, lanes, sum16};

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

/// ferrite's type 0 record: the formatted area, the strings, the final NUL.
const TYPE0: [u8; TYPE0_ROOM] = type0();

const fn type0() -> [u8; TYPE0_ROOM] {
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
    let head: [u8; 0x18] = unsafe { core::mem::transmute(t) };
    let mut out = [0u8; TYPE0_ROOM];
    let mut at = 0;
    while at < head.len() {
        out[at] = head[at];
        at += 1;
    }
    let strings = [
        VENDOR.as_bytes(),
        VERSION.as_bytes(),
        RELEASE_DATE.as_bytes(),
    ];
    let mut i = 0;
    while i < strings.len() {
        let mut j = 0;
        while j < strings[i].len() {
            out[at] = strings[i][j];
            at += 1;
            j += 1;
        }
        at += 1; // its NUL
        i += 1;
    }
    // and the NUL that ends the set, the last byte
    assert!(at + 1 == TYPE0_ROOM);
    out
}

/// Checks the structures of a table blob: whether one is a type 0, or
/// [`SmbiosError::BadStructure`] if one runs past the end (its formatted area,
/// or its strings, which end with a double NUL). One pass over the bytes
/// without a branch but the loop's: under TCG the code is what costs, and
/// a walk from structure to structure tested each step. Inlined into its one
/// caller: out of line, it saved and restored five registers.
#[inline(always)]
fn has_type0(tables: &[u8]) -> Result<bool, SmbiosError> {
    let len = tables.len();
    // Where the current structure starts, and its strings (none yet: the
    // two bytes of its head are still to come).
    let (mut start, mut strings) = (0, usize::MAX);
    let (mut found, mut bad) = (false, false);
    let mut prev = 0xFF;
    for (i, b) in tables.iter().enumerate() {
        // (A block of its own: the first pass, fallen into, was translated
        // again for the jump back.)
        let b = *crate::mem::block_boundary_ref(b);
        // The second byte of a structure, its formatted length (`prev` is its type).
        let head = i == start + 1;
        found |= head & (prev == 0);
        // A formatted area past the end needs no test of its own: its
        // strings would start past the end, the structure never ends, and
        // the blob is refused below.
        bad |= head & (b < 4);
        strings = if head { start + b as usize } else { strings };
        // The first double NUL from its strings on ends it.
        let end = (i > strings) & (prev == 0) & (b == 0);
        start = if end { i + 1 } else { start };
        strings = if end { usize::MAX } else { strings };
        prev = b;
    }
    // The last structure must end with the blob.
    if bad | (start != len) {
        return Err(SmbiosError::BadStructure);
    }
    Ok(found)
}

/// The finished entry point (to go in the BIOS segment) and table blob length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    pub entry: [u8; MAX_ANCHOR],
    pub entry_len: usize,
    pub tables_len: usize,
}

/// Finishes QEMU's tables in place. The entry point QEMU gave is the first
/// `anchor_len` bytes of `anchor` (the bytes after them are ignored). `buf`
/// holds [`TYPE0_ROOM`] free bytes, then the tables as QEMU gave them; it
/// lives at `base`. When QEMU gave no type 0 record, ferrite's goes in the
/// free room, just before QEMU's records. Returns the entry point and the
/// offset in `buf` where the final tables start.
/// Inlined into the boot's one call: returned, the result was copied out
/// (a rep movs, under TCG a translation block of its own). Its checks are
/// tested together where their order allows (`check!`). The anchor comes as
/// a whole array: copied in a few moves, where a slice's copy was a call to
/// memcpy (two translation blocks).
#[inline(always)]
pub fn finish(
    anchor: &[u8; MAX_ANCHOR],
    anchor_len: usize,
    buf: &mut [u8],
    base: u64,
) -> Result<(Finished, usize), SmbiosError> {
    let mut entry = *anchor;
    let le16 = |at: usize| u16::from_le_bytes([entry[at], entry[at + 1]]) as usize;
    let le32 = |at: usize| u32::from_le_bytes(entry[at..at + 4].try_into().unwrap()) as usize;
    let head = u64::from_le_bytes(entry[..8].try_into().unwrap());
    let v21 = (anchor_len == EP21_LEN) & (head as u32 == u32::from_le_bytes(*b"_SM_"));
    let v30 = (anchor_len == EP30_LEN) & (head << 24 == u64::from_le_bytes(*b"\0\0\0_SM3_"));
    // Both read, then one picked: a select, not a branch.
    let (declared21, declared30) = (le16(0x16), le32(0x0C));
    let declared = if v21 { declared21 } else { declared30 };
    check!(
        !v21 & !v30 => SmbiosError::BadAnchor,
        buf.len() < TYPE0_ROOM => SmbiosError::TooLarge,
        declared != buf.len().wrapping_sub(TYPE0_ROOM) => SmbiosError::LengthMismatch,
    );
    let (room, qemu) = buf.split_at_mut(usize::min(TYPE0_ROOM, buf.len()));
    let start = if has_type0(qemu)? {
        TYPE0_ROOM
    } else {
        *room.first_chunk_mut().unwrap() = TYPE0;
        0
    };
    let total = buf.len() - start;
    let (address, overflow) = base.overflowing_add(start as u64);
    check!(
        overflow | (v21 & ((total > 0xFFFF) | (address > u32::MAX as u64))) => SmbiosError::TooLarge,
    );

    if v21 {
        if start == 0 {
            let max = le16(0x08).max(TYPE0_ROOM);
            let count = le16(0x1C) + 1;
            entry[0x08..0x0A].copy_from_slice(&(max as u16).to_le_bytes());
            entry[0x1C..0x1E].copy_from_slice(&(count as u16).to_le_bytes());
        }
        entry[0x16..0x18].copy_from_slice(&(total as u16).to_le_bytes());
        entry[0x18..0x1C].copy_from_slice(&(address as u32).to_le_bytes());
        entry[0x04] = 0;
        entry[0x04] = sum16(entry[..0x10].try_into().unwrap()).wrapping_neg();
        // 0x10..0x1F, as the 16 bytes from 0x0F less the one at 0x0F
        entry[0x15] = 0;
        let sum = sum16(entry[0x0F..EP21_LEN].try_into().unwrap()).wrapping_sub(entry[0x0F]);
        entry[0x15] = sum.wrapping_neg();
    } else {
        entry[0x0C..0x10].copy_from_slice(&(total as u32).to_le_bytes());
        entry[0x10..0x18].copy_from_slice(&address.to_le_bytes());
        entry[0x05] = 0;
        let tail = u64::from_le_bytes(entry[0x10..0x18].try_into().unwrap());
        let sum = sum16(entry[..0x10].try_into().unwrap()) as u64 + lanes(tail);
        entry[0x05] = (sum as u8).wrapping_neg();
    }
    Ok((
        Finished {
            entry,
            entry_len: anchor_len,
            tables_len: total,
        },
        start,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::byte_sum;
    use std::vec::Vec;

    /// The structures of a blob as (type, length), walked one by one.
    fn walk(tables: &[u8]) -> Option<Vec<(u8, usize)>> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < tables.len() {
            let rest = &tables[at..];
            let formatted = *rest.get(1)? as usize;
            if formatted < 4 || formatted > rest.len() {
                return None;
            }
            let end = rest[formatted..].windows(2).position(|w| w == [0, 0])?;
            out.push((rest[0], formatted + end + 2));
            at += formatted + end + 2;
        }
        Some(out)
    }

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

    /// [`finish`] of the entry point `anchor` (at most [`MAX_ANCHOR`] bytes),
    /// passed as the firmware passes it: in a zeroed array, with its length.
    fn finish_slice(
        anchor: &[u8],
        buf: &mut [u8],
        base: u64,
    ) -> Result<(Finished, usize), SmbiosError> {
        let mut a = [0u8; MAX_ANCHOR];
        a[..anchor.len()].copy_from_slice(anchor);
        finish(&a, anchor.len(), buf, base)
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
        let (f, start) = finish_slice(&anchor21(t.len(), 2), &mut out, 0x7FFF_0000).unwrap();
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
        assert_eq!(walk(&out[..f.tables_len]).unwrap().len(), 3);
    }

    #[test]
    fn qemus_own_type0_is_kept_and_30_entry_points_work() {
        let t = qemu_tables(true);
        let mut out = buffer(&t);
        let (f, start) = finish_slice(&anchor30(t.len()), &mut out, 0x1_2345_6000).unwrap();
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
            finish_slice(b"_SM_", &mut buffer(&t), 0).map(|r| r.1),
            Err(SmbiosError::BadAnchor)
        );
        assert_eq!(
            finish_slice(&anchor21(t.len() + 1, 2), &mut buffer(&t), 0).map(|r| r.1),
            Err(SmbiosError::LengthMismatch)
        );
        // a structure whose length runs past the end, and one without its double NUL
        let mut bad = t.clone();
        bad[1] = 0xF0;
        assert_eq!(
            finish_slice(&a, &mut buffer(&bad), 0).map(|r| r.1),
            Err(SmbiosError::BadStructure)
        );
        let cut = &t[..t.len() - 1];
        assert_eq!(
            finish_slice(&anchor21(cut.len(), 2), &mut buffer(cut), 0).map(|r| r.1),
            Err(SmbiosError::BadStructure)
        );
        let mut small = [0u8; 16];
        assert_eq!(
            finish_slice(&a, &mut small, 0).map(|r| r.1),
            Err(SmbiosError::TooLarge)
        );
        // a 2.1 entry point cannot point above 4 GiB
        assert_eq!(
            finish_slice(&a, &mut buffer(&t), 1 << 32).map(|r| r.1),
            Err(SmbiosError::TooLarge)
        );
    }

    /// What follows the entry point in its array is ignored: a 3.0 entry
    /// point with garbage after it is finished as one with zeros after it.
    #[test]
    fn bytes_after_the_entry_point_are_ignored() {
        let t = qemu_tables(false);
        let mut clean = [0u8; MAX_ANCHOR];
        clean[..EP30_LEN].copy_from_slice(&anchor30(t.len()));
        let mut dirty = clean;
        dirty[EP30_LEN..].fill(0xA5);
        let (want, _) = finish(&clean, EP30_LEN, &mut buffer(&t), 0x1000).unwrap();
        let (got, _) = finish(&dirty, EP30_LEN, &mut buffer(&t), 0x1000).unwrap();
        assert_eq!(got.entry_len, EP30_LEN);
        assert_eq!(got.entry[..EP30_LEN], want.entry[..EP30_LEN]);
        assert_eq!(got.tables_len, want.tables_len);
        // and a length that is neither entry point's is refused, whatever the bytes
        assert_eq!(
            finish(&dirty, EP30_LEN + 1, &mut buffer(&t), 0x1000).map(|r| r.1),
            Err(SmbiosError::BadAnchor)
        );
    }

    /// The one-pass scan agrees with a walk from structure to structure,
    /// on blobs cut and corrupted at every byte.
    #[test]
    fn the_scan_finds_what_a_walk_finds() {
        let mut t = qemu_tables(false);
        // a structure with no strings (its double NUL right after the
        // formatted area), then a type 0 right after a double NUL
        t.extend_from_slice(&[2, 4, 0, 0, 0, 0]);
        t.extend_from_slice(&[0, 5, 0, 0, 9, 0, 0]);
        t.extend_from_slice(&[3, 4, 0, 0, b'x', 0, b'y', 0, 0]);
        let check = |b: &[u8]| {
            let want = walk(b).map(|s| s.iter().any(|&(kind, _)| kind == 0));
            assert_eq!(has_type0(b).ok(), want, "{b:x?}");
        };
        for cut in 0..=t.len() {
            check(&t[..cut]);
            for at in 0..cut {
                for byte in [0, 1, 3, 4, 5, 0x1B, 0xFF] {
                    let mut c = t[..cut].to_vec();
                    c[at] = byte;
                    check(&c);
                }
            }
        }
        assert_eq!(has_type0(&t), Ok(true));
        assert_eq!(has_type0(&qemu_tables(false)), Ok(false));
        assert_eq!(has_type0(&[]), Ok(false));
    }

    /// ferrite's type 0 record, built at compile time, as the strings say.
    #[test]
    fn the_type0_record() {
        let r = &TYPE0;
        assert_eq!(&r[..4], &[0, 0x18, 0, 0]);
        assert_eq!(u16::from_le_bytes([r[6], r[7]]), 0xE800);
        let strings: Vec<&[u8]> = r[0x18..].split(|&b| b == 0).collect();
        assert_eq!(
            strings[..3],
            [
                VENDOR.as_bytes(),
                VERSION.as_bytes(),
                RELEASE_DATE.as_bytes()
            ]
        );
        assert_eq!(&r[r.len() - 2..], &[0, 0]);
        assert_eq!(walk(r).unwrap(), [(0, TYPE0_ROOM)]);
    }
}
