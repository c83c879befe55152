//! Fuzz target `mptable`: the MP table, from the CPU counts and interrupts QEMU
//! reports.

use std::string::String;
use std::vec::Vec;

use proptest::prelude::*;

use super::{frames, le64, unframe};
use crate::{acpi, mptable};

pub(super) fn gen_mptable() -> BoxedStrategy<Vec<u8>> {
    (
        prop_oneof![1..300u16, any::<u16>()],
        any::<[u64; 4]>(),
        prop_oneof![Just(1u16), 0..300u16],
        prop::collection::vec(any::<(u8, u8, u8)>(), 0..40),
        any::<(bool, bool)>(),
        0..700usize,
    )
        .prop_map(|(max, present, package, ints, (pci, irq0), out)| {
            let mut v = Vec::new();
            v.extend_from_slice(&max.to_le_bytes());
            for p in present {
                v.extend_from_slice(&p.to_le_bytes());
            }
            v.extend_from_slice(&package.to_le_bytes());
            v.extend_from_slice(&[pci as u8, irq0 as u8]);
            v.extend_from_slice(&(out as u16).to_le_bytes());
            let ints: Vec<u8> = ints.iter().flat_map(|&(a, b, c)| [a, b, c]).collect();
            frames(&[&v, &ints])
        })
        .boxed()
}

pub(super) fn check_mptable(input: &[u8]) -> String {
    let [head, ints] = unframe::<2>(input);
    let present = [
        le64(head, 2),
        le64(head, 10),
        le64(head, 18),
        le64(head, 26),
    ];
    let ints: Vec<mptable::PciInterrupt> = ints
        .chunks_exact(3)
        .map(|c| mptable::PciInterrupt {
            device: c[0],
            pin: c[1],
            irq: c[2],
        })
        .collect();
    let machine = mptable::Machine {
        max_cpus: le64(head, 0) as u16,
        present: &present,
        cpu_signature: 0x663,
        cpu_features: 0x0781_FBFF,
        apic_version: 0x14,
        package_cpus: le64(head, 34) as u16,
        has_pci: head.get(36).is_some_and(|b| b & 1 != 0),
        pci_interrupts: &ints,
        irq0_override: head.get(37).is_some_and(|b| b & 1 != 0),
    };
    let out_len = (le64(head, 38) as u16 as usize) % 1024;
    let mut out = vec![0xA5u8; out_len + 64];
    match mptable::build(&machine, 0xF_5000, &mut out[..out_len]) {
        Some(table) => {
            let len = table.len;
            assert!(len <= out_len.min(mptable::MAX_TABLE_LEN));
            assert!(out[out_len..].iter().all(|&b| b == 0xA5));
            assert_eq!(
                acpi::byte_sum(&table.pointer),
                0,
                "floating pointer checksum"
            );
            assert_eq!(&table.pointer[4..8], &0xF_5000u32.to_le_bytes());
            assert_eq!(&out[..4], b"PCMP");
            assert_eq!(u16::from_le_bytes([out[4], out[5]]) as usize, len);
            assert_eq!(
                acpi::byte_sum(&out[..len]),
                0,
                "configuration table checksum"
            );
            "ok".into()
        }
        None => "too-large".into(),
    }
}
