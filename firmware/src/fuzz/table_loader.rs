//! Fuzz target `table_loader`: the ACPI table-loader script, with the files it
//! points into.

use std::collections::BTreeMap;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use proptest::prelude::*;

use super::{frames, unframe, value32};
use crate::acpi::{self, LoaderEnv, LoaderError, Zone};
use crate::mem::Range;
use crate::mem::{self, HighZone};

const LOADER_FILES: [&[u8]; 5] = [
    b"etc/acpi/rsdp",
    b"etc/acpi/tables",
    b"etc/tpm/log",
    b"etc/vmgenid_guid",
    b"etc/vmgenid_addr",
];

fn command(kind: u32, fields: &[(usize, &[u8])]) -> [u8; 128] {
    let mut c = [0u8; 128];
    c[..4].copy_from_slice(&kind.to_le_bytes());
    for (at, bytes) in fields {
        let n = bytes.len().min(128 - at);
        c[*at..at + n].copy_from_slice(&bytes[..n]);
    }
    c
}

pub(super) fn gen_table_loader() -> BoxedStrategy<Vec<u8>> {
    let file = prop_oneof![
        8 => (0..LOADER_FILES.len()).prop_map(|i| LOADER_FILES[i].to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..60),
    ];
    let offset = prop_oneof![3 => 0..64u32, 1 => value32()];
    let cmd = prop_oneof![
        4 => (file.clone(), prop_oneof![Just(16u32), Just(64), value32()], prop_oneof![Just(1u8), Just(2), any::<u8>()])
            .prop_map(|(n, align, zone)| command(1, &[(4, &n), (60, &align.to_le_bytes()), (64, &[zone])])),
        4 => (file.clone(), file.clone(), offset.clone(), prop_oneof![Just(4u8), Just(8), Just(1), Just(2), any::<u8>()])
            .prop_map(|(d, s, off, size)| command(2, &[(4, &d), (60, &s), (116, &off.to_le_bytes()), (120, &[size])])),
        4 => (file.clone(), offset.clone(), offset.clone(), offset.clone())
            .prop_map(|(n, off, start, len)| command(3, &[(4, &n), (60, &off.to_le_bytes()), (64, &start.to_le_bytes()), (68, &len.to_le_bytes())])),
        2 => (file.clone(), file, offset.clone(), offset, prop_oneof![Just(8u8), Just(4), any::<u8>()])
            .prop_map(|(d, s, doff, soff, size)| command(4, &[(4, &d), (60, &s), (116, &doff.to_le_bytes()), (120, &soff.to_le_bytes()), (124, &[size])])),
        1 => (any::<u32>(), prop::collection::vec(any::<u8>(), 124)).prop_map(|(k, b)| command(k, &[(4, &b)])),
    ];
    (
        prop::collection::vec(cmd, 0..24),
        prop::collection::vec(0..300usize, LOADER_FILES.len()),
        0..130usize,
        any::<u8>(),
    )
        .prop_map(|(cmds, sizes, tail, zone_kib)| {
            let mut script: Vec<u8> = cmds.concat();
            if tail < 128 && tail > 100 {
                script.truncate(script.len().saturating_sub(tail - 100));
            }
            let mut parts: Vec<Vec<u8>> = vec![script, vec![zone_kib]];
            for (i, s) in sizes.iter().enumerate() {
                parts.push((0..*s).map(|b| (b * 7 + i) as u8).collect());
            }
            let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
            frames(&refs)
        })
        .boxed()
}

/// Guest memory made of the allocations themselves: an access outside one is
/// an assertion, not a stray write.
struct LoaderFake<'a> {
    files: BTreeMap<&'static [u8], &'a [u8]>,
    writable: BTreeMap<&'static [u8], Vec<u8>>,
    allocations: Vec<(u64, Vec<u8>, Zone)>,
    high: HighZone,
    high_floor: u64,
    fseg_next: u64,
}

const FSEG: Range = Range::new(0xF_1000, 0x10_0000);

impl LoaderFake<'_> {
    fn find(&mut self, addr: u64, len: u32) -> &mut Vec<u8> {
        // The loader asks for whole allocations only.
        let (_, mem, _) = self
            .allocations
            .iter_mut()
            .find(|(a, m, _)| *a == addr && m.len() == len as usize)
            .unwrap_or_else(|| panic!("access {addr:#x}+{len} is no allocation"));
        mem
    }
}

impl LoaderEnv for LoaderFake<'_> {
    type File = &'static [u8];

    fn file(&mut self, name: &crate::acpi::Name) -> Option<(&'static [u8], u32)> {
        let name = name.bytes();
        self.files
            .get_key_value(name)
            .map(|(&key, data)| (key, data.len() as u32))
    }
    fn allocate(&mut self, size: u32, align: u32, zone: Zone) -> Option<u64> {
        let addr = match zone {
            Zone::High => self.high.alloc(size as u64, align as u64)?,
            Zone::FSeg => {
                let start = self
                    .fseg_next
                    .checked_next_multiple_of(align.max(16) as u64)?;
                if start + size as u64 > FSEG.end {
                    return None;
                }
                self.fseg_next = start + size as u64;
                start
            }
        };
        self.allocations
            .push((addr, vec![0xA5; size as usize], zone));
        Some(addr)
    }
    fn read_file(&mut self, name: &'static [u8], addr: u64, len: u32) -> Result<(), LoaderError> {
        let data = *self
            .files
            .get(name)
            .expect("read of a file that does not exist");
        assert_eq!(data.len(), len as usize, "a file is read whole");
        self.find(addr, len).copy_from_slice(data);
        Ok(())
    }
    fn memory(&mut self, addr: u64, len: u32) -> &mut [u8] {
        self.find(addr, len)
    }
    fn write_file(
        &mut self,
        name: &'static [u8],
        offset: u32,
        data: &[u8],
    ) -> Result<(), LoaderError> {
        let file = self.writable.get_mut(name).ok_or(LoaderError::Transfer)?;
        let at = offset as usize;
        assert!(
            at + data.len() <= file.len(),
            "WRITE_POINTER outside its file"
        );
        file[at..at + data.len()].copy_from_slice(data);
        Ok(())
    }
}

pub(super) fn check_table_loader(input: &[u8]) -> String {
    let parts = unframe::<7>(input);
    let (script, zone_kib) = (parts[0], parts[1].first().copied().unwrap_or(0) as u64);
    let mut files = BTreeMap::new();
    for (name, data) in LOADER_FILES.iter().zip(&parts[2..]) {
        files.insert(*name, *data);
    }
    let top = 0x800_0000u64;
    let mut high = HighZone::new(top);
    // A zone with little room left: exhaustion is an error, never an overflow.
    high.alloc(
        mem::HIGH_ZONE_MAX - (zone_kib << 10).min(mem::HIGH_ZONE_MAX - 16),
        16,
    );
    let high_floor = top - mem::HIGH_ZONE_MAX;
    let mut env = LoaderFake {
        writable: BTreeMap::from([(LOADER_FILES[4], vec![0u8; files[LOADER_FILES[4]].len()])]),
        files,
        allocations: Vec::new(),
        high,
        high_floor,
        fseg_next: FSEG.start,
    };
    let result = acpi::run(script, &mut env);
    for (i, (addr, mem, zone)) in env.allocations.iter().enumerate() {
        let r = Range::new(*addr, addr + mem.len() as u64);
        for (a, m, _) in &env.allocations[i + 1..] {
            assert!(
                !r.overlaps(&Range::new(*a, a + m.len() as u64)),
                "allocations overlap"
            );
            assert_ne!(*a, *addr, "two files at one address");
        }
        let inside = match zone {
            Zone::High => Range::new(env.high_floor, top).contains(&r),
            Zone::FSeg => FSEG.contains(&r),
        };
        assert!(inside, "{r:x?} outside its zone {zone:?}");
    }
    match result {
        Ok(outcome) => {
            if let Some(rsdp) = outcome.rsdp {
                assert!(env.allocations.iter().any(|a| a.0 == rsdp));
            }
            "ok".into()
        }
        Err(e) => format!("{e:?}").split('(').next().unwrap().to_string(),
    }
}
