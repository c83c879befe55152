//! Fuzz targets `fwcfg_dir` and `fwcfg_read`: the fw_cfg file directory, and
//! reads into buffers.

use std::collections::BTreeMap;
use std::format;
use std::string::String;
use std::vec::Vec;

use proptest::prelude::*;

use super::{frames, le64, unframe, value32};
use crate::fwcfg::fake::FakeDevice;
use crate::fwcfg::{FwCfg, Item};

pub(super) fn gen_fwcfg_dir() -> BoxedStrategy<Vec<u8>> {
    let name = prop_oneof![
        Just(b"etc/e820".to_vec()),
        Just(b"etc/table-loader".to_vec()),
        Just(b"opt/ferrite/timeline".to_vec()),
        (0..60usize, any::<u64>(), any::<bool>()).prop_map(|(len, seed, nul)| {
            // cheap to generate: bytes from a seed, a NUL inside or not
            (0..len)
                .map(
                    |i| match (seed.rotate_left(i as u32 * 7) as u8) | nul as u8 {
                        0 => 0,
                        b if b % 9 == 0 && nul => 0,
                        b => b,
                    },
                )
                .collect()
        }),
    ];
    (
        any::<bool>(),
        prop_oneof![
            Just(None),
            Just(Some(u32::MAX)),
            any::<u32>().prop_map(Some)
        ],
        prop::collection::vec((value32(), any::<u16>(), name), 0..130),
    )
        .prop_map(|(dma, count, files)| {
            let mut dir = count.unwrap_or(files.len() as u32).to_be_bytes().to_vec();
            for (size, select, name) in &files {
                dir.extend_from_slice(&size.to_be_bytes());
                dir.extend_from_slice(&select.to_be_bytes());
                dir.extend_from_slice(&[0, 0]);
                let mut n = [0u8; 56];
                let k = name.len().min(56);
                n[..k].copy_from_slice(&name[..k]);
                dir.extend_from_slice(&n);
            }
            frames(&[&[dma as u8], &dir])
        })
        .boxed()
}

pub(super) fn check_fwcfg_dir(input: &[u8]) -> String {
    let [flags, dir] = unframe::<2>(input);
    let mut dev = FakeDevice::new(flags.first().is_some_and(|f| f & 1 != 0));
    dev.items.insert(Item::FileDir as u16, dir.to_vec());
    // Big-endian, and a directory shorter than 4 bytes reads on as zeros.
    let count =
        u32::from_be_bytes(std::array::from_fn(|i| dir.get(i).copied().unwrap_or(0))) as usize;
    let fw = match FwCfg::probe(&mut dev) {
        Ok(fw) => fw,
        // A count no fw_cfg can have, or one beyond the heap: refused.
        Err(e @ crate::error::Error::BadFileDirectory { .. }) => {
            assert!(count > crate::fwcfg::MAX_FILES, "{e:?}");
            return "impossible-count".into();
        }
        Err(e @ crate::error::Error::OutOfHeap { .. }) => {
            assert!(count * 64 > crate::heap::HEAP_SIZE, "{e:?}");
            return "out-of-heap".into();
        }
        Err(e) => panic!("a well-behaved device with any directory: {e:?}"),
    };
    assert_eq!(fw.file_count(), count);
    let n = count;
    // Each entry the directory holds is found under its name, as its first
    // occurrence: the whole directory is looked at.
    let entries: Vec<[u8; 64]> = (0..n.min(200))
        .map(|i| {
            let mut e = [0u8; 64];
            for (k, b) in e.iter_mut().enumerate() {
                *b = dir.get(4 + i * 64 + k).copied().unwrap_or(0);
            }
            e
        })
        .collect();
    let mut first_of: BTreeMap<&[u8], &[u8; 64]> = BTreeMap::new();
    for e in &entries {
        first_of.entry(&e[8..]).or_insert(e);
    }
    for (name, want) in first_of {
        let Some(len) = name.iter().position(|&b| b == 0) else {
            continue;
        };
        if len == 0 || name[len..].iter().any(|&b| b != 0) {
            continue;
        }
        let f = fw.find(&name[..len]).expect("a listed file is found");
        assert_eq!(f.size, u32::from_be_bytes(want[0..4].try_into().unwrap()));
        assert_eq!(f.select, u16::from_be_bytes(want[4..6].try_into().unwrap()));
    }
    assert!(fw.find(&[b'x'; 56]).is_none());
    if count > crate::fwcfg::INLINE_FILES {
        "whole-heap"
    } else {
        "whole"
    }
    .into()
}

pub(super) fn gen_fwcfg_read() -> BoxedStrategy<Vec<u8>> {
    (
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..300),
        0..400u32,
        any::<bool>(),
    )
        .prop_map(|(dma, item, len, fail)| {
            frames(&[&[dma as u8 | (fail as u8) << 1], &item, &len.to_le_bytes()])
        })
        .boxed()
}

/// Reads of any length of any item, with and without DMA, failing or not: the
/// bytes land in the buffer handed in and nowhere else.
pub(super) fn check_fwcfg_read(input: &[u8]) -> String {
    const GUARD: usize = 64;
    let [flags, item, len] = unframe::<3>(input);
    let flags = flags.first().copied().unwrap_or(0);
    let len = (le64(len, 0) as u32 as usize) % 512;
    let mut dev = FakeDevice::new(flags & 1 != 0);
    dev.add_file("opt/fuzz", item);
    if flags & 2 != 0 {
        dev.fail_item = Some(0x20);
    }
    let mut fw = FwCfg::probe(&mut dev).unwrap();
    let f = fw.find(b"opt/fuzz").unwrap();
    let mut buf = vec![0xA5u8; len + 2 * GUARD];
    fw.read_into(f.select, &mut buf[GUARD..GUARD + len]);
    let result = fw.check();
    assert!(
        buf[..GUARD].iter().all(|&b| b == 0xA5),
        "write before the buffer"
    );
    assert!(
        buf[GUARD + len..].iter().all(|&b| b == 0xA5),
        "write after the buffer"
    );
    match result {
        Ok(()) => {
            let n = item.len().min(len);
            assert_eq!(&buf[GUARD..GUARD + n], &item[..n]);
            "ok".into()
        }
        Err(e) => format!("{:#x}", e.status()),
    }
}
