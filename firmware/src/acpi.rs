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
    /// A fw_cfg file as [`LoaderEnv::file`] found it: each file is looked up
    /// by name once per command.
    type File: Copy;
    /// fw_cfg file `name` and its size, if it exists.
    fn file(&mut self, name: &[u8]) -> Option<(Self::File, u32)>;
    /// Reserves `size` bytes aligned to `align` in `zone`; returns the address.
    fn allocate(&mut self, size: u32, align: u32, zone: Zone) -> Option<u64>;
    /// Reads `file` (all of it, `len` bytes) to guest address `addr`.
    fn read_file(&mut self, file: Self::File, addr: u64, len: u32) -> Result<(), LoaderError>;
    /// The guest memory at `addr`, `len` bytes long (a range `allocate` returned).
    fn memory(&mut self, addr: u64, len: u32) -> &mut [u8];
    /// Writes `data` into `file` at `offset` (WRITE_POINTER).
    fn write_file(&mut self, file: Self::File, offset: u32, data: &[u8])
    -> Result<(), LoaderError>;
}

#[derive(Clone, Copy)]
struct File {
    name: Name,
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

/// The files a script allocated, as [`run_in`] tracks them: the firmware
/// keeps one in .bss (made on the stack, its zeroing was a rep stos, a
/// translation block of its own under TCG).
pub struct Files {
    /// One slot more than the files: an ALLOCATE names its file in the slot
    /// after the last, which the file then keeps (copied in, each name was
    /// a rep movs).
    slots: [File; MAX_FILES + 1],
}

impl Files {
    pub const fn new() -> Files {
        Files {
            slots: [File {
                name: Name::EMPTY,
                addr: 0,
                size: 0,
            }; MAX_FILES + 1],
        }
    }
}

impl Default for Files {
    fn default() -> Files {
        Files::new()
    }
}

/// Runs a table-loader script.
pub fn run(script: &[u8], env: &mut impl LoaderEnv) -> Result<Outcome, LoaderError> {
    run_in(script, env, &mut Files::new())
}

/// [`run`], tracking the files in `files` (whatever it held before).
pub fn run_in(
    script: &[u8],
    env: &mut impl LoaderEnv,
    files: &mut Files,
) -> Result<Outcome, LoaderError> {
    if !script.len().is_multiple_of(COMMAND_SIZE) {
        return Err(LoaderError::BadScriptLength(script.len()));
    }
    let files = &mut files.slots;
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
                let (done, free) = files.split_at_mut(nfiles);
                let new = &mut free[0];
                name_at(body, 0, &mut new.name)?;
                let name = new.name.bytes();
                let align = le32(body, 56);
                let zone = match body[60] {
                    1 => Zone::High,
                    2 => Zone::FSeg,
                    _ => return Err(LoaderError::BadAllocation),
                };
                if !align.is_power_of_two() {
                    return Err(LoaderError::BadAllocation);
                }
                if find(done, &new.name).is_some() {
                    return Err(LoaderError::AllocatedTwice);
                }
                if nfiles == MAX_FILES {
                    return Err(LoaderError::TooManyFiles);
                }
                let (file, size) = env.file(name).ok_or(LoaderError::NoSuchFile)?;
                // Found by the fuzzer: a zero-byte allocation gets the address of
                // the one before it, and an empty RSDP file would point the
                // kernel at another table.
                if size == 0 {
                    return Err(LoaderError::EmptyFile);
                }
                let addr = env
                    .allocate(size, align, zone)
                    .ok_or(LoaderError::OutOfMemory)?;
                env.read_file(file, addr, size)?;
                new.addr = addr;
                new.size = size;
                nfiles += 1;
                if new.name.is(RSDP_FILE) {
                    outcome.rsdp = Some(addr);
                } else if new.name.is(TABLES_FILE) {
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
                let (dest_file, dest_size) = env.file(dest).ok_or(LoaderError::NoSuchFile)?;
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
                env.write_file(dest_file, dst_offset, &value.to_le_bytes()[..size as usize])?;
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
#[derive(Clone, Copy)]
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
    files
        .iter()
        .find(|f| names_equal(&f.name.padded, &name.padded))
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
mod tests;
