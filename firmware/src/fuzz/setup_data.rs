//! Fuzz target `setup_data`: the list QEMU links into the kernel image.

use std::format;
use std::string::String;
use std::vec::Vec;

use proptest::prelude::*;

use super::{frames, le64, unframe, value32, value64};
use crate::mem::{self, HighZone};
use crate::setup_data;

pub(super) fn gen_setup_data() -> BoxedStrategy<Vec<u8>> {
    let node = (
        0..0x300usize,
        prop_oneof![Just(2u32), Just(1), Just(9), any::<u32>()],
        prop_oneof![0..64u32, value32()],
    );
    (
        prop::collection::vec(node, 0..10),
        0..0x800usize,
        prop_oneof![Just(0x10_0000u64), value64()],
        prop_oneof![Just(0x4000u64), value64()],
        any::<bool>(),
        prop::collection::vec((0..0x800usize, any::<u8>()), 0..4),
    )
        .prop_map(|(nodes, len, kaddr, setup, whole_file, noise)| {
            let mut blob = vec![0u8; len];
            let base = if whole_file {
                kaddr.wrapping_add(setup)
            } else {
                kaddr
            };
            let mut prev: Option<usize> = None;
            let mut first = 0u64;
            for (at, typ, plen) in nodes {
                let at = at & !7;
                if at + 16 > blob.len() {
                    continue;
                }
                blob[at + 8..at + 12].copy_from_slice(&typ.to_le_bytes());
                blob[at + 12..at + 16].copy_from_slice(&plen.to_le_bytes());
                let ptr = base.wrapping_add(at as u64);
                match prev {
                    Some(p) => blob[p..p + 8].copy_from_slice(&ptr.to_le_bytes()),
                    None => first = ptr,
                }
                prev = Some(at);
            }
            for (at, b) in noise {
                if at < blob.len() {
                    blob[at] = b;
                }
            }
            let mut v = Vec::new();
            for x in [first, kaddr, setup] {
                v.extend_from_slice(&x.to_le_bytes());
            }
            frames(&[&blob, &v])
        })
        .boxed()
}

pub(super) fn check_setup_data(input: &[u8]) -> String {
    let [blob, ptrs] = unframe::<2>(input);
    let mut nodes = [setup_data::Node::default(); setup_data::MAX_NODES];
    match setup_data::locate(
        le64(ptrs, 0),
        le64(ptrs, 8),
        le64(ptrs, 16),
        blob,
        &mut nodes,
    ) {
        Ok(n) => {
            // Copying them out as Kernel::move_setup_data does stays in bounds.
            let mut zone = HighZone::new(0x800_0000);
            for node in &nodes[..n] {
                assert!(node.len >= 16 && node.offset + node.len <= blob.len());
                let copy = zone.alloc(node.len as u64, 8);
                assert!(copy.is_some() || node.len as u64 > mem::HIGH_ZONE_MAX / 2);
            }
            format!("ok-{n}")
        }
        Err(e) => format!("{e:?}"),
    }
}
