//! QEMU's ACPI linker/loader script (`etc/table-loader`): allocate the table
//! blobs in guest memory, patch the pointers between them, fix their checksums.
//!
//! Record layout: hw/acpi/bios-linker-loader.c in QEMU; WRITE_POINTER as SeaBIOS's
//! src/fw/romfile_loader.h. The script comes from the host and is checked as
//! untrusted input: every name, offset, size and length is validated before use.

use core::fmt;

use crate::fwcfg::{FILE_NAME_LEN, names_equal};

/// One command record.
pub const COMMAND_SIZE: usize = 128;
/// How many distinct files a script may allocate. QEMU's scripts allocate a
/// fixed handful (RSDP, tables, TPM log, VM generation ID, hardware errors),
/// whatever the VM's configuration: a fixed array, not the heap. The script
/// itself grows with the VM (`-acpitable`) and is read into the heap when
/// large (tables.rs).
pub const MAX_FILES: usize = 32;
/// The file QEMU puts the RSDP in.
pub const RSDP_FILE: &[u8] = b"etc/acpi/rsdp";
/// The blob holding QEMU's tables other than the RSDP; the FACS comes first in
/// it (QEMU's acpi_build places it first for its 64-byte alignment).
pub const TABLES_FILE: &[u8] = b"etc/acpi/tables";
/// The loader script; QEMU gives none when the machine's ACPI is off.
pub const LOADER_FILE: &[u8] = b"etc/table-loader";

pub const CMD_ALLOCATE: u32 = 1;
pub const CMD_ADD_POINTER: u32 = 2;
pub const CMD_ADD_CHECKSUM: u32 = 3;
pub const CMD_WRITE_POINTER: u32 = 4;

/// Where an ALLOCATE asks its file to go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    /// Anywhere in 32-bit memory.
    High,
    /// The 0xE0000–0xFFFFF BIOS area ("F segment"), where legacy scans look.
    FSeg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoaderError {
    /// The script's length is not a multiple of 128.
    BadScriptLength(usize),
    /// A file name without NUL within 56 bytes.
    BadName,
    /// A command names a file fw_cfg does not have.
    NoSuchFile,
    /// A command uses a file before its ALLOCATE.
    NotAllocated,
    /// A file is allocated twice.
    AllocatedTwice,
    /// More than [`MAX_FILES`] files.
    TooManyFiles,
    /// Alignment that is not a power of two, or a zone that does not exist.
    BadAllocation,
    /// An ALLOCATE of an empty file (it would share its address with another).
    EmptyFile,
    /// Offset, size or range outside the file.
    OutOfBounds,
    /// Pointer size other than 1, 2, 4 or 8.
    BadPointerSize,
    /// The firmware has no room for the tables.
    OutOfMemory,
    /// Reading or writing a fw_cfg file failed.
    Transfer,
}

impl fmt::Display for LoaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            LoaderError::BadScriptLength(_) => {
                "etc/table-loader is not a whole number of 128-byte commands"
            }
            LoaderError::BadName => "a table-loader command has an unterminated file name",
            LoaderError::NoSuchFile => "a table-loader command names a file fw_cfg does not have",
            LoaderError::NotAllocated => "a table-loader command uses a file before allocating it",
            LoaderError::AllocatedTwice => "a table-loader file is allocated twice",
            LoaderError::TooManyFiles => "the table-loader allocates too many files",
            LoaderError::BadAllocation => "a table-loader ALLOCATE has a bad alignment or zone",
            LoaderError::EmptyFile => "a table-loader ALLOCATE names an empty file",
            LoaderError::OutOfBounds => "a table-loader command points outside its file",
            LoaderError::BadPointerSize => "a table-loader pointer is not 1, 2, 4 or 8 bytes",
            LoaderError::OutOfMemory => "no room for the ACPI tables",
            LoaderError::Transfer => "a fw_cfg transfer of an ACPI file failed",
        };
        f.write_str(s)
    }
}

/// What the loader needs from the machine: fw_cfg files and guest memory.
pub trait LoaderEnv {
    /// Size of fw_cfg file `name`, if it exists.
    fn file_size(&mut self, name: &[u8]) -> Option<u32>;
    /// Reserves `size` bytes aligned to `align` in `zone`; returns the address.
    fn allocate(&mut self, size: u32, align: u32, zone: Zone) -> Option<u64>;
    /// Reads fw_cfg file `name` (all of it) to guest address `addr`.
    fn read_file(&mut self, name: &[u8], addr: u64, len: u32) -> Result<(), LoaderError>;
    /// The guest memory at `addr`, `len` bytes long (a range `allocate` returned).
    fn memory(&mut self, addr: u64, len: u32) -> &mut [u8];
    /// Writes `data` into fw_cfg file `name` at `offset` (WRITE_POINTER).
    fn write_file(&mut self, name: &[u8], offset: u32, data: &[u8]) -> Result<(), LoaderError>;
}

#[derive(Clone, Copy)]
struct File {
    name: [u8; FILE_NAME_LEN],
    addr: u64,
    size: u32,
}

/// What a script run produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Address of the RSDP, if the script allocated `etc/acpi/rsdp`.
    pub rsdp: Option<u64>,
    /// Address of [`TABLES_FILE`], if the script allocated it.
    pub tables: Option<u64>,
    /// Commands of kinds ferrite does not implement (skipped, logged).
    pub skipped: u32,
}

/// Runs a table-loader script.
pub fn run(script: &[u8], env: &mut impl LoaderEnv) -> Result<Outcome, LoaderError> {
    if !script.len().is_multiple_of(COMMAND_SIZE) {
        return Err(LoaderError::BadScriptLength(script.len()));
    }
    let mut files = [File {
        name: [0; FILE_NAME_LEN],
        addr: 0,
        size: 0,
    }; MAX_FILES];
    let mut nfiles = 0;
    let mut outcome = Outcome::default();
    // Filled in place by name_at: returned by value, each name was a copy.
    let mut key = Name::EMPTY;
    let mut other = Name::EMPTY;

    for cmd in script.chunks_exact(COMMAND_SIZE) {
        let kind = le32(cmd, 0);
        let body = &cmd[4..];
        match kind {
            0 => {} // padding
            CMD_ALLOCATE => {
                name_at(body, 0, &mut key)?;
                let name = key.bytes();
                let align = le32(body, 56);
                let zone = match body[60] {
                    1 => Zone::High,
                    2 => Zone::FSeg,
                    _ => return Err(LoaderError::BadAllocation),
                };
                if !align.is_power_of_two() {
                    return Err(LoaderError::BadAllocation);
                }
                if find(&files[..nfiles], &key).is_some() {
                    return Err(LoaderError::AllocatedTwice);
                }
                if nfiles == MAX_FILES {
                    return Err(LoaderError::TooManyFiles);
                }
                let size = env.file_size(name).ok_or(LoaderError::NoSuchFile)?;
                // Found by the fuzzer: a zero-byte allocation gets the address of
                // the one before it, and an empty RSDP file would point the
                // kernel at another table.
                if size == 0 {
                    return Err(LoaderError::EmptyFile);
                }
                let addr = env
                    .allocate(size, align, zone)
                    .ok_or(LoaderError::OutOfMemory)?;
                env.read_file(name, addr, size)?;
                files[nfiles] = File {
                    name: key.padded,
                    addr,
                    size,
                };
                nfiles += 1;
                if key.is(RSDP_FILE) {
                    outcome.rsdp = Some(addr);
                } else if key.is(TABLES_FILE) {
                    outcome.tables = Some(addr);
                }
                log::debug!(
                    "acpi: {} ({size} bytes) at {addr:#x}",
                    core::str::from_utf8(name).unwrap_or("?")
                );
            }
            CMD_ADD_POINTER => {
                name_at(body, 0, &mut key)?;
                name_at(body, 56, &mut other)?;
                let dest = find(&files[..nfiles], &key).ok_or(LoaderError::NotAllocated)?;
                let src = find(&files[..nfiles], &other).ok_or(LoaderError::NotAllocated)?;
                let offset = le32(body, 112);
                let size = body[116];
                let p = pointer_slot(env, dest, offset, size)?;
                let value = read_le(p).wrapping_add(src.addr);
                if size < 8 && value >> (size as u32 * 8) != 0 {
                    // The patched pointer would not fit its field.
                    return Err(LoaderError::OutOfBounds);
                }
                write_le(p, value);
            }
            CMD_ADD_CHECKSUM => {
                name_at(body, 0, &mut key)?;
                let file = find(&files[..nfiles], &key).ok_or(LoaderError::NotAllocated)?;
                let offset = le32(body, 56);
                let start = le32(body, 60);
                let length = le32(body, 64);
                let end = start.checked_add(length).ok_or(LoaderError::OutOfBounds)?;
                if offset >= file.size || end > file.size {
                    return Err(LoaderError::OutOfBounds);
                }
                let mem = env.memory(file.addr, file.size);
                let sum = byte_sum(&mem[start as usize..end as usize]);
                mem[offset as usize] = mem[offset as usize].wrapping_sub(sum);
            }
            CMD_WRITE_POINTER => {
                name_at(body, 0, &mut key)?;
                let dest = key.bytes();
                name_at(body, 56, &mut other)?;
                let src = find(&files[..nfiles], &other).ok_or(LoaderError::NotAllocated)?;
                let dst_offset = le32(body, 112);
                let src_offset = le32(body, 116);
                let size = body[120];
                if !matches!(size, 1 | 2 | 4 | 8) {
                    return Err(LoaderError::BadPointerSize);
                }
                let dest_size = env.file_size(dest).ok_or(LoaderError::NoSuchFile)?;
                let end = dst_offset
                    .checked_add(size as u32)
                    .ok_or(LoaderError::OutOfBounds)?;
                if end > dest_size || src_offset >= src.size {
                    return Err(LoaderError::OutOfBounds);
                }
                let value = src.addr + src_offset as u64;
                if size < 8 && value >> (size as u32 * 8) != 0 {
                    return Err(LoaderError::OutOfBounds);
                }
                env.write_file(dest, dst_offset, &value.to_le_bytes()[..size as usize])?;
            }
            other => {
                log::warn!("acpi: table-loader command {other} is not implemented; skipped");
                outcome.skipped += 1;
            }
        }
    }
    Ok(outcome)
}

/// The 8-bit sum of `bytes`, eight bytes per step: the even and odd bytes of
/// each word are added into four 16-bit lanes, which are folded into the total
/// at once (so no lane can overflow). One short loop: under TCG the cost of a
/// checksum is translating its code, which runs once, not the iterations.
pub fn byte_sum(bytes: &[u8]) -> u8 {
    const LANES: u64 = 0x00FF_00FF_00FF_00FF;
    let mut words = bytes.chunks_exact(8);
    let mut total = 0u64;
    for w in words.by_ref() {
        let w = u64::from_le_bytes(w.try_into().unwrap());
        let pairs = (w & LANES) + ((w >> 8) & LANES);
        total += pairs.wrapping_mul(0x0001_0001_0001_0001) >> 48;
    }
    let tail = words.remainder().iter().map(|&b| b as u64).sum::<u64>();
    (total + tail) as u8
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

/// A file name of a loader command, NUL-padded to 56 bytes whatever followed
/// its NUL in the command (so names compare a word at a time), and its length.
struct Name {
    padded: [u8; FILE_NAME_LEN],
    len: usize,
}

impl Name {
    const EMPTY: Name = Name {
        padded: [0; FILE_NAME_LEN],
        len: 0,
    };

    fn bytes(&self) -> &[u8] {
        &self.padded[..self.len]
    }

    /// Is this `name`, a name of at most 16 bytes? Two word compares: the
    /// padding after the NUL is zeros.
    fn is(&self, name: &[u8]) -> bool {
        let mut want = [0u8; 16];
        want[..name.len()].copy_from_slice(name);
        self.len == name.len() && self.padded[..16] == want
    }
}
const _: () = assert!(RSDP_FILE.len() <= 16 && TABLES_FILE.len() <= 16);

/// The name field at `off`, up to its NUL, into `out` (a short loop: its code
/// is what costs under TCG, not its iterations).
#[inline(never)]
fn name_at(body: &[u8], off: usize, out: &mut Name) -> Result<(), LoaderError> {
    let field = &body[off..off + FILE_NAME_LEN];
    let len = field
        .iter()
        .position(|&b| b == 0)
        .ok_or(LoaderError::BadName)?;
    if len == 0 {
        return Err(LoaderError::BadName);
    }
    out.padded = [0; FILE_NAME_LEN];
    out.padded[..len].copy_from_slice(&field[..len]);
    out.len = len;
    Ok(())
}

#[inline(never)]
fn find<'f>(files: &'f [File], name: &Name) -> Option<&'f File> {
    files.iter().find(|f| names_equal(&f.name, &name.padded))
}

fn pointer_slot<'a>(
    env: &'a mut impl LoaderEnv,
    file: &File,
    offset: u32,
    size: u8,
) -> Result<&'a mut [u8], LoaderError> {
    if !matches!(size, 1 | 2 | 4 | 8) {
        return Err(LoaderError::BadPointerSize);
    }
    let end = offset
        .checked_add(size as u32)
        .ok_or(LoaderError::OutOfBounds)?;
    if end > file.size {
        return Err(LoaderError::OutOfBounds);
    }
    Ok(&mut env.memory(file.addr, file.size)[offset as usize..end as usize])
}

fn read_le(b: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    v[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(v)
}

fn write_le(b: &mut [u8], value: u64) {
    let n = b.len();
    b.copy_from_slice(&value.to_le_bytes()[..n]);
}

#[cfg(test)]
mod tests {
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
        fn file_size(&mut self, name: &[u8]) -> Option<u32> {
            self.files.get(name).map(|d| d.len() as u32)
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
        fn read_file(&mut self, name: &[u8], addr: u64, len: u32) -> Result<(), LoaderError> {
            let data = self.files[name].clone();
            self.at(addr, len as usize).copy_from_slice(&data);
            Ok(())
        }
        fn memory(&mut self, addr: u64, len: u32) -> &mut [u8] {
            self.at(addr, len as usize)
        }
        fn write_file(&mut self, name: &[u8], offset: u32, data: &[u8]) -> Result<(), LoaderError> {
            let f = self.files.get_mut(name).unwrap();
            f[offset as usize..offset as usize + data.len()].copy_from_slice(data);
            Ok(())
        }
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
        let many: Vec<(String, Vec<u8>)> =
            (0..33).map(|i| (format!("f{i}"), vec![0u8; 4])).collect();
        let refs: Vec<(&str, Vec<u8>)> =
            many.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
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
        for len in [
            0, 1, 7, 8, 9, 31, 32, 33, 1023, 1024, 1025, 2047, 2048, 2049, 4099, 5000,
        ] {
            let naive = data[..len].iter().fold(0u8, |a, &b| a.wrapping_add(b));
            assert_eq!(byte_sum(&data[..len]), naive, "len {len}");
        }
        assert_eq!(byte_sum(&[0xFF; 4096]), (4096u32 * 255 % 256) as u8);
    }

    fn parse_name(field: &[u8]) -> Result<Name, LoaderError> {
        let mut out = Name::EMPTY;
        name_at(field, 0, &mut out).map(|()| out)
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
            assert!(names_equal(&dirty.padded, &clean.padded), "len {len}");
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
}
