//! Fuzz target `smbios`: QEMU's entry point and tables, finished in place.

use std::format;
use std::string::String;
use std::vec::Vec;

use proptest::prelude::*;

use super::{frames, le64, unframe, value64};
use crate::{acpi, smbios};

pub(super) fn gen_smbios() -> BoxedStrategy<Vec<u8>> {
    let structure = (
        prop_oneof![Just(0u8), Just(1), Just(4), Just(127), any::<u8>()],
        prop_oneof![4 => 4..40u8, 1 => any::<u8>()],
        prop::collection::vec(prop::collection::vec(1..=255u8, 0..12), 0..3),
        any::<bool>(),
    )
        .prop_map(|(kind, len, strings, broken)| {
            let mut s = vec![kind, len];
            s.resize(len.max(2) as usize, 0x11);
            for st in &strings {
                s.extend_from_slice(st);
                s.push(0);
            }
            if strings.is_empty() {
                s.push(0);
            }
            if !broken {
                s.push(0);
            }
            s
        });
    (
        any::<bool>(),
        prop::collection::vec(structure, 0..8),
        prop_oneof![3 => Just(None), 1 => any::<u32>().prop_map(Some)],
        prop::collection::vec((0..0x1Fusize, any::<u8>()), 0..3),
        value64(),
    )
        .prop_map(|(v3, structs, declared, noise, base)| {
            let tables = structs.concat();
            let len = declared.unwrap_or(tables.len() as u32);
            let mut anchor = if v3 {
                let mut a = vec![0u8; 0x18];
                a[..5].copy_from_slice(b"_SM3_");
                a[0x0C..0x10].copy_from_slice(&len.to_le_bytes());
                a
            } else {
                let mut a = vec![0u8; 0x1F];
                a[..4].copy_from_slice(b"_SM_");
                a[0x16..0x18].copy_from_slice(&(len as u16).to_le_bytes());
                a[0x1C..0x1E].copy_from_slice(&(structs.len() as u16).to_le_bytes());
                a
            };
            for (at, b) in noise {
                if at >= 5 && at < anchor.len() {
                    anchor[at] = b;
                }
            }
            frames(&[&anchor, &tables, &base.to_le_bytes()])
        })
        .boxed()
}

pub(super) fn check_smbios(input: &[u8]) -> String {
    let [anchor, tables, base] = unframe::<3>(input);
    let base = le64(base, 0);
    let mut buf = vec![0u8; smbios::TYPE0_ROOM];
    buf.extend_from_slice(tables);
    // The firmware refuses a longer anchor before `finish` (as a bad one);
    // what follows a shorter one in its array is ignored: filled with noise.
    if anchor.len() > smbios::MAX_ANCHOR {
        return format!("{:?}", smbios::SmbiosError::BadAnchor);
    }
    let mut entry = [0xA5u8; smbios::MAX_ANCHOR];
    entry[..anchor.len()].copy_from_slice(anchor);
    match smbios::finish(&entry, anchor.len(), &mut buf, base) {
        Ok((done, start)) => {
            assert!(start == 0 || start == smbios::TYPE0_ROOM);
            assert_eq!(done.tables_len, buf.len() - start);
            assert_eq!(
                &buf[smbios::TYPE0_ROOM..],
                tables,
                "QEMU's records were changed"
            );
            let e = &done.entry[..done.entry_len];
            assert!(
                e.len() == 0x18 || acpi::byte_sum(&e[..0x10]) == 0,
                "2.1 entry point checksum"
            );
            if e.len() == 0x18 {
                assert_eq!(acpi::byte_sum(e), 0, "3.0 entry point checksum");
                assert_eq!(le64(e, 0x10), base + start as u64);
            } else {
                assert_eq!(acpi::byte_sum(&e[0x10..]), 0, "2.1 intermediate checksum");
                assert_eq!(le64(e, 0x18) as u32 as u64, base + start as u64);
            }
            format!("ok-{}-{}", e.len(), start)
        }
        Err(e) => format!("{e:?}"),
    }
}
