//! Unit tests of the ACPI table loader, run against a fake fw_cfg and a flat
//! guest memory: QEMU-like scripts, hostile scripts, checksums and file names.

use super::*;
use std::collections::BTreeMap;
use std::vec::Vec;

/// fw_cfg files plus a flat guest memory starting at BASE.
struct Fake {
    files: BTreeMap<Vec<u8>, Vec<u8>>,
    mem: Vec<u8>,
    next: u64,
    fseg_next: u64,
}
const BASE: u64 = 0x7F00_0000;
const FSEG: u64 = 0xF_0000;

impl Fake {
    fn new(files: &[(&str, Vec<u8>)]) -> Fake {
        Fake {
            files: files
                .iter()
                .map(|(n, d)| (n.as_bytes().to_vec(), d.clone()))
                .collect(),
            mem: vec![0; 0x2_0000],
            next: BASE,
            fseg_next: FSEG,
        }
    }
    fn at(&mut self, addr: u64, len: usize) -> &mut [u8] {
        let off = if addr >= BASE {
            (addr - BASE) as usize
        } else {
            0x1_0000 + (addr - FSEG) as usize
        };
        &mut self.mem[off..off + len]
    }
}

impl LoaderEnv for Fake {
    type File = [u8; 56];

    fn file(&mut self, name: &Name) -> Option<([u8; 56], u32)> {
        let d = self.files.get(name.bytes())?;
        Some((*name.padded(), d.len() as u32))
    }
    fn allocate(&mut self, size: u32, align: u32, zone: Zone) -> Option<u64> {
        let next = match zone {
            Zone::High => &mut self.next,
            Zone::FSeg => &mut self.fseg_next,
        };
        let addr = (*next + align as u64 - 1) & !(align as u64 - 1);
        *next = addr + size as u64;
        Some(addr)
    }
    fn read_file(&mut self, file: [u8; 56], addr: u64, len: u32) -> Result<(), LoaderError> {
        let data = self.files[unpad(&file)].clone();
        self.at(addr, len as usize).copy_from_slice(&data);
        Ok(())
    }
    fn memory(&mut self, addr: u64, len: u32) -> &mut [u8] {
        self.at(addr, len as usize)
    }
    fn write_file(&mut self, file: [u8; 56], offset: u32, data: &[u8]) -> Result<(), LoaderError> {
        let f = self.files.get_mut(unpad(&file)).unwrap();
        f[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
}

/// A padded fw_cfg name up to its first NUL.
fn unpad(name: &[u8; 56]) -> &[u8] {
    &name[..name.iter().position(|&b| b == 0).unwrap_or(56)]
}

fn name(n: &str) -> [u8; 56] {
    let mut b = [0u8; 56];
    b[..n.len()].copy_from_slice(n.as_bytes());
    b
}
fn allocate(file: &str, align: u32, zone: u8) -> [u8; 128] {
    let mut c = [0u8; 128];
    c[0..4].copy_from_slice(&CMD_ALLOCATE.to_le_bytes());
    c[4..60].copy_from_slice(&name(file));
    c[60..64].copy_from_slice(&align.to_le_bytes());
    c[64] = zone;
    c
}
fn add_pointer(dest: &str, src: &str, offset: u32, size: u8) -> [u8; 128] {
    let mut c = [0u8; 128];
    c[0..4].copy_from_slice(&CMD_ADD_POINTER.to_le_bytes());
    c[4..60].copy_from_slice(&name(dest));
    c[60..116].copy_from_slice(&name(src));
    c[116..120].copy_from_slice(&offset.to_le_bytes());
    c[120] = size;
    c
}
fn add_checksum(file: &str, offset: u32, start: u32, len: u32) -> [u8; 128] {
    let mut c = [0u8; 128];
    c[0..4].copy_from_slice(&CMD_ADD_CHECKSUM.to_le_bytes());
    c[4..60].copy_from_slice(&name(file));
    c[60..64].copy_from_slice(&offset.to_le_bytes());
    c[64..68].copy_from_slice(&start.to_le_bytes());
    c[68..72].copy_from_slice(&len.to_le_bytes());
    c
}
fn write_pointer(dest: &str, src: &str, dst_off: u32, src_off: u32, size: u8) -> [u8; 128] {
    let mut c = [0u8; 128];
    c[0..4].copy_from_slice(&CMD_WRITE_POINTER.to_le_bytes());
    c[4..60].copy_from_slice(&name(dest));
    c[60..116].copy_from_slice(&name(src));
    c[116..120].copy_from_slice(&dst_off.to_le_bytes());
    c[120..124].copy_from_slice(&src_off.to_le_bytes());
    c[124] = size;
    c
}
fn script(cmds: &[[u8; 128]]) -> Vec<u8> {
    cmds.concat()
}

/// A miniature of what QEMU generates: RSDP (FSEG) -> RSDT -> one table.
fn qemu_like() -> (Fake, Vec<u8>) {
    let mut rsdp = vec![0u8; 20];
    rsdp[..8].copy_from_slice(b"RSD PTR ");
    rsdp[16..20].copy_from_slice(&36u32.to_le_bytes()); // RSDT at offset 36 of tables
    let mut tables = vec![0u8; 80];
    tables[..4].copy_from_slice(b"FACP");
    tables[36..40].copy_from_slice(b"RSDT");
    tables[36 + 36..36 + 40].copy_from_slice(&0u32.to_le_bytes()); // -> FACP at 0
    let fake = Fake::new(&[("etc/acpi/rsdp", rsdp), ("etc/acpi/tables", tables)]);
    let s = script(&[
        allocate("etc/acpi/rsdp", 16, 2),
        allocate("etc/acpi/tables", 64, 1),
        add_pointer("etc/acpi/tables", "etc/acpi/tables", 36 + 36, 4),
        add_checksum("etc/acpi/tables", 36 + 9, 36, 44),
        add_pointer("etc/acpi/rsdp", "etc/acpi/tables", 16, 4),
        add_checksum("etc/acpi/rsdp", 8, 0, 20),
    ]);
    (fake, s)
}

#[test]
fn runs_a_qemu_like_script() {
    let (mut env, s) = qemu_like();
    let out = run(&s, &mut env).unwrap();
    assert_eq!(out.rsdp, Some(FSEG));
    // where the S3 set-up looks for QEMU's FACS first
    assert_eq!(out.tables, Some(BASE));
    let rsdp = env.at(FSEG, 20).to_vec();
    assert_eq!(&rsdp[..8], b"RSD PTR ");
    let rsdt = u32::from_le_bytes(rsdp[16..20].try_into().unwrap()) as u64;
    assert_eq!(rsdt, BASE + 36);
    assert_eq!(rsdp.iter().fold(0u8, |a, &b| a.wrapping_add(b)), 0);
    let rsdt_bytes = env.at(rsdt, 44).to_vec();
    assert_eq!(rsdt_bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b)), 0);
    assert_eq!(
        u32::from_le_bytes(rsdt_bytes[36..40].try_into().unwrap()) as u64,
        BASE
    );
}

/// Found by the fuzzer: an empty file's allocation shared the address of
/// the allocation before it, so an empty RSDP file would have made another
/// table the RSDP.
#[test]
fn an_empty_file_is_not_allocated() {
    let mut env = Fake::new(&[
        ("etc/acpi/tables", vec![1u8; 16]),
        ("etc/acpi/rsdp", vec![]),
    ]);
    let s = script(&[
        allocate("etc/acpi/tables", 16, 1),
        allocate("etc/acpi/rsdp", 16, 1),
    ]);
    assert_eq!(run(&s, &mut env), Err(LoaderError::EmptyFile));
}

#[test]
fn write_pointer_writes_back_to_fw_cfg() {
    let mut env = Fake::new(&[
        ("etc/vmgenid_guid", vec![0u8; 4096]),
        ("etc/vmgenid_addr", vec![0u8; 8]),
    ]);
    let s = script(&[
        allocate("etc/vmgenid_guid", 4096, 1),
        write_pointer("etc/vmgenid_addr", "etc/vmgenid_guid", 0, 40, 8),
    ]);
    run(&s, &mut env).unwrap();
    assert_eq!(
        env.files[&b"etc/vmgenid_addr".to_vec()],
        (BASE + 40).to_le_bytes()
    );
    // out of the destination file
    let s = script(&[
        allocate("etc/vmgenid_guid", 4096, 1),
        write_pointer("etc/vmgenid_addr", "etc/vmgenid_guid", 4, 0, 8),
    ]);
    let mut env2 = Fake::new(&[
        ("etc/vmgenid_guid", vec![0u8; 4096]),
        ("etc/vmgenid_addr", vec![0u8; 8]),
    ]);
    assert_eq!(run(&s, &mut env2), Err(LoaderError::OutOfBounds));
}

#[test]
fn unknown_commands_are_skipped_and_counted() {
    let (mut env, mut s) = qemu_like();
    let mut odd = [0u8; 128];
    odd[0] = 0x77;
    s.extend_from_slice(&odd);
    s.extend_from_slice(&[0u8; 128]); // padding record
    assert_eq!(run(&s, &mut env).unwrap().skipped, 1);
}

#[test]
fn hostile_scripts_are_rejected() {
    let files = || Fake::new(&[("a", vec![0u8; 16]), ("b", vec![0u8; 16])]);
    let cases: Vec<(Vec<u8>, LoaderError)> = vec![
        (vec![0u8; 100], LoaderError::BadScriptLength(100)),
        (script(&[allocate("nope", 16, 1)]), LoaderError::NoSuchFile),
        (script(&[allocate("a", 3, 1)]), LoaderError::BadAllocation),
        (script(&[allocate("a", 16, 9)]), LoaderError::BadAllocation),
        (
            script(&[allocate("a", 16, 1), allocate("a", 16, 1)]),
            LoaderError::AllocatedTwice,
        ),
        (
            script(&[add_pointer("a", "b", 0, 4)]),
            LoaderError::NotAllocated,
        ),
        (
            script(&[
                allocate("a", 16, 1),
                allocate("b", 16, 1),
                add_pointer("a", "b", 13, 4),
            ]),
            LoaderError::OutOfBounds,
        ),
        (
            script(&[
                allocate("a", 16, 1),
                allocate("b", 16, 1),
                add_pointer("a", "b", 0, 3),
            ]),
            LoaderError::BadPointerSize,
        ),
        (
            script(&[allocate("a", 16, 1), add_pointer("a", "a", 0, 1)]),
            LoaderError::OutOfBounds, // address does not fit one byte
        ),
        (
            script(&[allocate("a", 16, 1), add_checksum("a", 16, 0, 4)]),
            LoaderError::OutOfBounds,
        ),
        (
            script(&[allocate("a", 16, 1), add_checksum("a", 0, u32::MAX, 2)]),
            LoaderError::OutOfBounds,
        ),
    ];
    for (s, want) in cases {
        assert_eq!(run(&s, &mut files()), Err(want));
    }
    // a name filling all 56 bytes has no NUL
    let mut c = allocate("a", 16, 1);
    c[4..60].fill(b'x');
    assert_eq!(run(&c, &mut files()), Err(LoaderError::BadName));
    // 33 files
    let many: Vec<(String, Vec<u8>)> = (0..33).map(|i| (format!("f{i}"), vec![0u8; 4])).collect();
    let refs: Vec<(&str, Vec<u8>)> = many.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let mut env = Fake::new(&refs);
    let cmds: Vec<[u8; 128]> = many.iter().map(|(n, _)| allocate(n, 4, 1)).collect();
    assert_eq!(
        run(&script(&cmds), &mut env),
        Err(LoaderError::TooManyFiles)
    );
}

#[test]
fn byte_sum_matches_the_naive_sum() {
    let mut x = 0x1234_5678u32;
    let data: Vec<u8> = (0..5000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    // every remainder, and the last word overlapping the one before by each amount
    for len in (0..=40).chain([1023, 1024, 1025, 2047, 2048, 2049, 4099, 5000]) {
        let naive = data[..len].iter().fold(0u8, |a, &b| a.wrapping_add(b));
        assert_eq!(byte_sum(&data[..len]), naive, "len {len}");
    }
    assert_eq!(byte_sum(&[0xFF; 4096]), (4096u32 * 255 % 256) as u8);
}

fn parse_name(field: &[u8; FILE_NAME_LEN]) -> Result<Name, LoaderError> {
    let mut out = Name::EMPTY;
    if out.parse(field) {
        Ok(out)
    } else {
        Err(LoaderError::BadName)
    }
}

#[test]
fn names_end_at_their_first_nul_whatever_follows() {
    for len in 1..FILE_NAME_LEN {
        let mut field = [0u8; FILE_NAME_LEN];
        for (i, b) in field[..len].iter_mut().enumerate() {
            *b = b'a' + (i % 26) as u8;
        }
        let clean = parse_name(&field).unwrap();
        assert_eq!(clean.len, len);
        assert_eq!(clean.bytes(), &field[..len]);
        // garbage after the NUL (0x01 bytes fool a naive zero-byte test)
        field[len + 1..].fill(0x01);
        let dirty = parse_name(&field).unwrap();
        assert_eq!(dirty.bytes(), clean.bytes());
        assert!(same(&dirty, &clean), "len {len}");
        assert_eq!(dirty.padded, clean.padded);
    }
    // no NUL in 56 bytes, or an empty name
    assert!(matches!(
        parse_name(&[b'x'; FILE_NAME_LEN]),
        Err(LoaderError::BadName)
    ));
    assert!(matches!(
        parse_name(&[0; FILE_NAME_LEN]),
        Err(LoaderError::BadName)
    ));
    // a byte 0x80 and above is part of a name, not its end
    let mut high = [0u8; FILE_NAME_LEN];
    high[..3].copy_from_slice(&[0x80, 0xFF, 0x81]);
    assert_eq!(parse_name(&high).unwrap().bytes(), &[0x80, 0xFF, 0x81]);
}

#[test]
fn prefix_names_do_not_match() {
    let mut env = Fake::new(&[
        ("etc/acpi/tables", vec![0u8; 16]),
        ("etc/acpi/t", vec![0u8; 16]),
    ]);
    let s = script(&[
        allocate("etc/acpi/tables", 16, 1),
        add_checksum("etc/acpi/t", 0, 0, 4),
    ]);
    assert_eq!(run(&s, &mut env), Err(LoaderError::NotAllocated));
}

/// Pointers and checksums in files shorter than the 8 bytes a pointer's
/// unused sum covers, and lookups that find the first file, the last, or (a name
/// only in the free slot, or equal to the command's other name) none.
#[test]
fn small_files_and_every_slot_are_found() {
    let mut env = Fake::new(&[
        ("a", vec![1u8; 1]),
        ("b", vec![2u8; 4]),
        ("c", vec![3u8; 16]),
    ]);
    let s = script(&[
        allocate("a", 16, 1),
        allocate("b", 16, 1),
        allocate("c", 16, 1),
        add_pointer("b", "c", 0, 4),
        add_checksum("a", 0, 0, 1),
        add_pointer("c", "a", 8, 8),
    ]);
    assert_eq!(run(&s, &mut env).map(|o| o.skipped), Ok(0));
    let (a, b, c) = (BASE, BASE + 16, BASE + 32);
    // made to sum to zero
    assert_eq!(env.at(a, 1), &[0]);
    assert_eq!(
        env.at(b, 4),
        &(0x0202_0202u32.wrapping_add(c as u32)).to_le_bytes()
    );
    assert_eq!(
        env.at(c + 8, 8),
        &(0x0303_0303_0303_0303u64 + a).to_le_bytes()
    );
    let missing = |cmds: &[[u8; 128]]| {
        let mut env = Fake::new(&[("a", vec![0u8; 16]), ("b", vec![0u8; 16])]);
        run(&script(cmds), &mut env)
    };
    // not allocated: the name is only in the free slot, and the other name
    // equals it
    assert_eq!(
        missing(&[allocate("a", 16, 1), add_pointer("b", "b", 0, 4)]),
        Err(LoaderError::NotAllocated)
    );
    assert_eq!(
        missing(&[add_pointer("b", "b", 0, 4)]),
        Err(LoaderError::NotAllocated)
    );
    assert_eq!(
        missing(&[
            allocate("a", 16, 1),
            allocate("b", 16, 1),
            allocate("a", 16, 1)
        ]),
        Err(LoaderError::AllocatedTwice)
    );
}

mod checks;
