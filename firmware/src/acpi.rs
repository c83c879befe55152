//! QEMU's ACPI linker/loader script (`etc/table-loader`): allocate the table
//! blobs in guest memory, patch the pointers between them, fix their checksums.
//!
//! Record layout: hw/acpi/bios-linker-loader.c in QEMU; WRITE_POINTER as SeaBIOS's
//! src/fw/romfile_loader.h. The script comes from the host and is checked as
//! untrusted input: every name, offset, size and length is validated before use.

use core::fmt;

use crate::fwcfg::FILE_NAME_LEN;

mod sum;
pub use sum::{byte_sum, lanes, sum16};

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
    fn file(&mut self, name: &Name) -> Option<(Self::File, u32)>;
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
    /// A command's second name (the first goes in the free slot). Kept
    /// here, not made on the stack: its zeroing was eight stores per run.
    other: Name,
}

impl Files {
    pub const fn new() -> Files {
        Files {
            slots: [File {
                name: Name::EMPTY,
                addr: 0,
                size: 0,
            }; MAX_FILES + 1],
            other: Name::EMPTY,
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

/// Tests a command's checks at once, in the order they are listed
/// (`condition => error`): the error is that of the first that failed. Under
/// TCG each test is a translation block, and a script's checks never fail in
/// a normal boot: one test, and the error worked out only when there is one.
macro_rules! check {
    ($($bad:expr => $error:expr),+ $(,)?) => {{
        let mut failed = 0u32;
        let mut bit = 1u32;
        $(
            failed |= if $bad { bit } else { 0 };
            bit <<= 1;
        )+
        let _ = bit;
        if failed != 0 {
            return Err([$($error),+][failed.trailing_zeros() as usize]);
        }
    }};
}
pub(crate) use check;

/// [`run`], tracking the files in `files` (whatever it held before).
///
/// Shaped for TCG, where each conditional branch ends a translation block
/// even when it never goes the other way: every command's file names are
/// parsed and looked up by one function, the checks of a command are computed
/// together and tested once (`check!`), and ADD_POINTER and ADD_CHECKSUM,
/// both "add a value to a little-endian field of an allocated file", share
/// their code.
pub fn run_in(
    script: &[u8],
    env: &mut impl LoaderEnv,
    files: &mut Files,
) -> Result<Outcome, LoaderError> {
    if !script.len().is_multiple_of(COMMAND_SIZE) {
        return Err(LoaderError::BadScriptLength(script.len()));
    }
    let mut nfiles = 0;
    let mut outcome = Outcome::default();

    for cmd in script.chunks_exact(COMMAND_SIZE) {
        crate::mem::block_boundary();
        let cmd: &[u8; COMMAND_SIZE] = cmd.try_into().unwrap();
        let kind = le32(cmd, 0);
        if !(CMD_ALLOCATE..=CMD_WRITE_POINTER).contains(&kind) {
            if kind != 0 {
                // 0 is padding
                log::warn!("acpi: table-loader command {kind} is not implemented; skipped");
                outcome.skipped += 1;
            }
            continue;
        }
        // Never more than MAX_FILES (an ALLOCATE checks first): no bounds checks below.
        let n = usize::min(nfiles, MAX_FILES);
        // Both name fields, whatever the command: the second of an ALLOCATE
        // or ADD_CHECKSUM holds other fields, its outcome goes unused.
        let (bad0, at0) = lookup(files, n, name_field(cmd, 4), false);
        let (bad1, at1) = lookup(files, n, name_field(cmd, 60), true);
        let (missing0, missing1) = (at0 == n, at1 == n);
        // A missing file's index is the free slot's: what is read from it
        // only counts when the checks pass.
        let place = |i: usize| {
            let f = &files.slots[usize::min(i, MAX_FILES)];
            (f.addr, f.size)
        };
        let (first, second) = (place(at0), place(at1));

        if kind == CMD_ALLOCATE {
            let align = le32(cmd, 60);
            let zone = cmd[64];
            check!(
                bad0 => LoaderError::BadName,
                !matches!(zone, 1 | 2) | !align.is_power_of_two() => LoaderError::BadAllocation,
                !missing0 => LoaderError::AllocatedTwice,
                n == MAX_FILES => LoaderError::TooManyFiles,
            );
            let new = &mut files.slots[n];
            let name = new.name.bytes();
            let found = env.file(&new.name);
            // Found by the fuzzer: a zero-byte allocation gets the address of
            // the one before it, and an empty RSDP file would point the kernel
            // at another table.
            let Some((file, size)) = found.filter(|&(_, size)| size != 0) else {
                return Err(match found {
                    Some(_) => LoaderError::EmptyFile,
                    None => LoaderError::NoSuchFile,
                });
            };
            let zone = if zone == 2 { Zone::FSeg } else { Zone::High };
            let addr = env
                .allocate(size, align, zone)
                .ok_or(LoaderError::OutOfMemory)?;
            env.read_file(file, addr, size)?;
            new.addr = addr;
            new.size = size;
            nfiles += 1;
            // Selects, not branches: the names differ, at most one matches.
            let (rsdp, tables) = (new.name.is(RSDP_FILE), new.name.is(TABLES_FILE));
            outcome.rsdp = if rsdp { Some(addr) } else { outcome.rsdp };
            outcome.tables = if tables { Some(addr) } else { outcome.tables };
            log::debug!(
                "acpi: {} ({size} bytes) at {addr:#x}",
                core::str::from_utf8(name).unwrap_or("?")
            );
        } else if kind == CMD_WRITE_POINTER {
            let dst_offset = le32(cmd, 116);
            let src_offset = le32(cmd, 120);
            let size = cmd[124];
            check!(
                bad0 | bad1 => LoaderError::BadName,
                missing1 => LoaderError::NotAllocated,
                !matches!(size, 1 | 2 | 4 | 8) => LoaderError::BadPointerSize,
            );
            // The destination is a fw_cfg file, not an allocated one.
            let (dest, dest_size) = env
                .file(&files.slots[n].name)
                .ok_or(LoaderError::NoSuchFile)?;
            let (src_addr, src_size) = second;
            let value = src_addr + src_offset as u64;
            if (dst_offset as u64 + size as u64 > dest_size as u64)
                | (src_offset >= src_size)
                | !fits(value, size)
            {
                return Err(LoaderError::OutOfBounds);
            }
            env.write_file(dest, dst_offset, &value.to_le_bytes()[..size as usize])?;
        } else {
            // ADD_POINTER: the address of the second file goes into a 1- to
            // 8-byte field of the first. ADD_CHECKSUM: a byte of the file is
            // made to sum a range of it to zero, i.e. the range's sum is
            // subtracted from a 1-byte field.
            let pointer = kind == CMD_ADD_POINTER;
            // Selects, not branches (one path for both kinds).
            let (ptr_width, sum_start, sum_length) = (cmd[120], le32(cmd, 64), le32(cmd, 68));
            let offset = le32(cmd, if pointer { 116 } else { 60 });
            let width = if pointer { ptr_width } else { 1 };
            let (addr, size) = first;
            // A pointer's sum goes unused: it is of the file's first 8 bytes
            // (or fewer), not of none, so that byte_sum takes the path the
            // checksums take, not its one for short ranges, which would be
            // translated for this alone.
            let start = if pointer { 0 } else { sum_start };
            let length = if pointer {
                u32::min(size, 8)
            } else {
                sum_length
            };
            let end = offset as u64 + width as u64;
            let sum_end = start as u64 + length as u64;
            check!(
                bad0 | (pointer & bad1) => LoaderError::BadName,
                missing0 | (pointer & missing1) => LoaderError::NotAllocated,
                !matches!(width, 1 | 2 | 4 | 8) => LoaderError::BadPointerSize,
                (end > size as u64) | (sum_end > size as u64) => LoaderError::OutOfBounds,
            );
            let mem = &mut env.memory(addr, size)[..size as usize];
            // Clamped, which the checks made no-ops: no bounds checks.
            let clamp = |at: u64| usize::min(at as usize, mem.len());
            let sum_end = clamp(sum_end);
            let sum = byte_sum(&mem[usize::min(start as usize, sum_end)..sum_end]);
            let end = clamp(end);
            let field = &mut mem[usize::min(offset as usize, end)..end];
            // The patched pointer must fit its field; a checksum byte wraps
            // (as 8 bytes, it always fits).
            let (delta, room) = if pointer {
                (second.0, width)
            } else {
                (sum.wrapping_neg() as u64, 8)
            };
            let old = add_le(field, delta);
            if !fits(old.wrapping_add(delta), room) {
                // Undone, modulo the field's size: nothing is left patched.
                add_le(field, delta.wrapping_neg());
                return Err(LoaderError::OutOfBounds);
            }
        }
    }
    Ok(outcome)
}

/// Whether `value` fits a `width`-byte field (1 to 8; two shifts, as one of
/// 64 bits would overflow).
fn fits(value: u64, width: u8) -> bool {
    value >> (8 * width as u32 - 1) >> 1 == 0
}

fn le32(cmd: &[u8; COMMAND_SIZE], off: usize) -> u32 {
    u32::from_le_bytes(cmd[off..off + 4].try_into().unwrap())
}

fn name_field(cmd: &[u8; COMMAND_SIZE], off: usize) -> &[u8; FILE_NAME_LEN] {
    cmd[off..off + FILE_NAME_LEN].try_into().unwrap()
}

/// A file name of a loader command, NUL-padded to 56 bytes whatever followed
/// its NUL in the command (so names compare a word at a time, and fw_cfg's
/// directory is searched without padding it again), and its length.
#[derive(Clone, Copy)]
pub struct Name {
    padded: [u8; FILE_NAME_LEN],
    len: usize,
}

impl Name {
    const EMPTY: Name = Name {
        padded: [0; FILE_NAME_LEN],
        len: 0,
    };

    /// The name, without its padding.
    pub fn bytes(&self) -> &[u8] {
        &self.padded[..usize::min(self.len, FILE_NAME_LEN)]
    }

    /// The name NUL-padded to 56 bytes, as fw_cfg's directory holds it.
    pub fn padded(&self) -> &[u8; FILE_NAME_LEN] {
        &self.padded
    }

    /// Is this `name`, a name of less than 16 bytes? Its first 16 bytes
    /// compared, no branches: they hold the NUL, the padding after it is
    /// zeros, so the rest of the two names is too.
    fn is(&self, name: &[u8]) -> bool {
        let mut want = [0u8; 16];
        want[..name.len()].copy_from_slice(name);
        u128::from_le_bytes(self.padded[..16].try_into().unwrap()) == u128::from_le_bytes(want)
    }

    /// Takes the name in `field`, up to its first NUL; false if the field
    /// holds none (empty, or no NUL in its 56 bytes). A word at a time and
    /// without a branch: a loop's code is what costs under TCG.
    fn parse(&mut self, field: &[u8; FILE_NAME_LEN]) -> bool {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        // All ones until a word with a NUL, zero after it.
        let mut live = u64::MAX;
        let mut len = 0;
        for (out, word) in self.padded.chunks_exact_mut(8).zip(field.chunks_exact(8)) {
            crate::mem::block_boundary();
            let w = u64::from_le_bytes(word.try_into().unwrap());
            // The lowest set bit is the top bit of the first NUL byte (bits
            // above it may be set wrongly, but only above it).
            let nul = w.wrapping_sub(ONES) & !w & HIGHS;
            // The bytes before that NUL: all eight when there is none.
            let keep = ((nul & nul.wrapping_neg()) >> 7).wrapping_sub(1) & live;
            out.copy_from_slice(&(w & keep).to_le_bytes());
            // `keep` is its low bytes: their count from its trailing ones
            // (a bit scan; a popcount is a dozen instructions without one).
            len += (!keep).trailing_zeros() as usize / 8;
            live &= ((nul == 0) as u64).wrapping_neg();
        }
        self.len = len;
        (len != 0) & (len != FILE_NAME_LEN)
    }
}
const _: () = assert!(RSDP_FILE.len() < 16 && TABLES_FILE.len() < 16);

/// Whether two names are the same: their padded forms compared 16 bytes at a
/// time (the last 16 overlap the third), all at once.
fn same(a: &Name, b: &Name) -> bool {
    let part = |n: &Name, at: usize| u128::from_ne_bytes(n.padded[at..at + 16].try_into().unwrap());
    let diff = |at: usize| part(a, at) ^ part(b, at);
    (diff(0) | diff(16) | diff(32) | diff(FILE_NAME_LEN - 16)) == 0
}

/// Parses the name `field` into the free slot `n` (`second`: into the
/// command's other name) and looks it up among the `n` files before that
/// slot: whether the field holds no name, and the file's index (`n` if none).
/// Out of line: every command looks up its two names.
///
/// The search goes from the free slot down to slot 0, a loop that always
/// runs (no test and no second way out for a script's first command, when
/// there are no files): the lowest match is the file, and a name matches the
/// free slot (itself, or the other name equal to it) only when no file does,
/// giving `n`. No early exit: one branch per slot, the loop's.
#[inline(never)]
fn lookup(files: &mut Files, n: usize, field: &[u8; FILE_NAME_LEN], second: bool) -> (bool, usize) {
    let n = usize::min(n, MAX_FILES);
    let name = if second {
        &mut files.other
    } else {
        &mut files.slots[n].name
    };
    let bad = !name.parse(field);
    let name = if second {
        &files.other
    } else {
        &files.slots[n].name
    };
    let (mut at, mut i) = (n, n);
    loop {
        crate::mem::block_boundary();
        at = if same(&files.slots[i].name, name) {
            i
        } else {
            at
        };
        if i == 0 {
            break;
        }
        i -= 1;
    }
    (bad, at)
}

/// Adds `delta` to the little-endian number in `field` (at most 8 bytes), the
/// carry out of its top byte dropped; returns the number it held. One loop:
/// its code is what costs under TCG.
fn add_le(field: &mut [u8], delta: u64) -> u64 {
    let (mut old, mut carry) = (0u64, delta);
    for (i, b) in field.iter_mut().enumerate() {
        crate::mem::block_boundary();
        old |= (*b as u64) << (8 * i);
        let sum = *b as u64 + (carry & 0xFF);
        *b = sum as u8;
        carry = (carry >> 8) + (sum >> 8);
    }
    old
}

#[cfg(test)]
mod tests;
