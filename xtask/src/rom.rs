//! Building the firmware and turning its ELF into a flat ROM image, without
//! objcopy: every loadable segment's bytes go to its load (physical) address in
//! the window just below 4 GiB.

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use object::Endianness;
use object::elf::PT_LOAD;
use object::read::elf::{ElfFile64, ProgramHeader};

const FOUR_GIB: u64 = 1 << 32;
const ROM_GRANULE: u64 = 64 * 1024;
/// Nothing below this is ROM.
const ROM_FLOOR: u64 = FOUR_GIB - (16 << 20);

pub struct Rom {
    pub path: PathBuf,
    /// The firmware's ELF file (symbols for the bench's instruction trace).
    pub elf: PathBuf,
    pub size: usize,
    pub used: usize,
}

/// Builds ferrite and writes `target/ferrite.rom` (`ferrite-debug.rom` for debug).
pub fn build_firmware(release: bool) -> Result<Rom> {
    let root = crate::root();
    let out = root.join("target").join(if release {
        "ferrite.rom"
    } else {
        "ferrite-debug.rom"
    });
    build_firmware_at(&root, &root.join("target"), release, &out)
}

/// Builds the firmware of the source tree at `root` (e.g. a worktree at
/// another commit) into `target_dir` and writes its ROM to `out`.
pub fn build_firmware_at(
    root: &std::path::Path,
    target_dir: &std::path::Path,
    release: bool,
    out: &std::path::Path,
) -> Result<Rom> {
    build(root, target_dir, release, false, out)
}

/// The release firmware with DWARF line tables and inlining records
/// (`target/lines/`, ROM `target/ferrite-lines.rom`), for naming the source
/// line of any address. Debug information is not loaded and does not steer
/// code generation: the code is the release build's, give or take the
/// placement of a few constants.
pub fn build_firmware_with_lines() -> Result<Rom> {
    let root = crate::root();
    let target = root.join("target");
    let out = target.join("ferrite-lines.rom");
    build(&root, &target.join("lines"), true, true, &out)
}

fn build(
    root: &std::path::Path,
    target_dir: &std::path::Path,
    release: bool,
    line_tables: bool,
    out: &std::path::Path,
) -> Result<Rom> {
    let mut cmd = crate::cargo();
    if line_tables {
        cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "line-tables-only");
    }
    cmd.current_dir(root)
        .env("CARGO_TARGET_DIR", target_dir)
        .args([
            "build",
            "--quiet",
            "-p",
            "ferrite",
            "--bin",
            "ferrite",
            "--target",
            "x86_64-unknown-none",
        ]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .context("running cargo build for the firmware")?;
    ensure!(
        status.success(),
        "building the firmware in {} failed",
        root.display()
    );
    let profile = if release { "release" } else { "debug" };
    let elf_path = target_dir
        .join("x86_64-unknown-none")
        .join(profile)
        .join("ferrite");
    let elf =
        std::fs::read(&elf_path).with_context(|| format!("reading {}", elf_path.display()))?;
    let (image, used) = elf_to_rom(&elf)?;
    std::fs::write(out, &image).with_context(|| format!("writing {}", out.display()))?;
    Ok(Rom {
        path: out.to_path_buf(),
        elf: elf_path,
        size: image.len(),
        used,
    })
}

/// The address of the symbol `name` in an ELF file, if it has one.
pub fn symbol_address(elf: &[u8], name: &str) -> Result<Option<u64>> {
    use object::{Object, ObjectSymbol};
    let file = ElfFile64::<Endianness>::parse(elf).context("not a 64-bit ELF file")?;
    Ok(file
        .symbols()
        .find(|s| s.name() == Ok(name))
        .map(|s| s.address()))
}

/// The addresses of ferrite's timeline stamps: the contents of the ELF's
/// [`ferrite_contract::timeline::STAMP_SECTION`], little-endian u64s. Each
/// stamp is inline, and code reached on several paths (the kinds of kernel)
/// holds a copy per path: one boot executes one copy of each step's stamp.
pub fn stamp_addresses(elf: &[u8]) -> Result<Vec<u64>> {
    use object::{Object, ObjectSection};
    let name = ferrite_contract::timeline::STAMP_SECTION;
    let file = ElfFile64::<Endianness>::parse(elf).context("not a 64-bit ELF file")?;
    let section = file
        .section_by_name(name)
        .with_context(|| format!("the firmware's ELF has no {name} section"))?;
    let data = section.data().with_context(|| format!("reading {name}"))?;
    ensure!(
        !data.is_empty() && data.len().is_multiple_of(8),
        "{name} holds {} bytes, not a list of addresses",
        data.len()
    );
    Ok(data
        .chunks_exact(8)
        .map(|a| u64::from_le_bytes(a.try_into().unwrap()))
        .collect())
}

/// The ROM image of an ELF file, and how many of its bytes the segments fill.
pub fn elf_to_rom(elf: &[u8]) -> Result<(Vec<u8>, usize)> {
    let file = ElfFile64::<Endianness>::parse(elf).context("not a 64-bit ELF file")?;
    let endian = file.endian();
    let mut segments = Vec::new();
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) != PT_LOAD || ph.p_filesz(endian) == 0 {
            continue;
        }
        let start = ph.p_paddr(endian);
        let data = ph
            .data(endian, elf)
            .ok()
            .context("segment data outside the file")?;
        let end = start
            .checked_add(data.len() as u64)
            .context("segment wraps")?;
        if start < ROM_FLOOR || end > FOUR_GIB {
            bail!(
                "a loadable segment at {start:#x}..{end:#x} lies outside the ROM window below 4 GiB"
            );
        }
        segments.push((start, data));
    }
    let lowest = segments
        .iter()
        .map(|s| s.0)
        .min()
        .context("no loadable segments")?;
    let base = lowest & !(ROM_GRANULE - 1);
    let size = (FOUR_GIB - base) as usize;
    let mut rom = vec![0xFFu8; size];
    let mut used = 0;
    for (start, data) in segments {
        let off = (start - base) as usize;
        rom[off..off + data.len()].copy_from_slice(data);
        used += data.len();
    }
    let reset = &rom[size - 16..];
    ensure!(
        matches!(reset[0], 0xE9 | 0xEB),
        "no jump at the reset vector (0xFFFFFFF0): found {:#04x}",
        reset[0]
    );
    Ok((rom, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with the given (paddr, bytes) PT_LOAD segments.
    fn elf(segments: &[(u64, &[u8])]) -> Vec<u8> {
        let phoff = 64usize;
        let data_off = phoff + 56 * segments.len();
        let mut out = vec![0u8; data_off];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2; // 64-bit
        out[5] = 1; // little-endian
        out[6] = 1;
        out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        out[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        out[20..24].copy_from_slice(&1u32.to_le_bytes());
        out[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
        out[52..54].copy_from_slice(&64u16.to_le_bytes());
        out[54..56].copy_from_slice(&56u16.to_le_bytes());
        out[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        let mut off = data_off;
        for (i, (paddr, bytes)) in segments.iter().enumerate() {
            let ph = phoff + 56 * i;
            out[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            out[ph + 8..ph + 16].copy_from_slice(&(off as u64).to_le_bytes());
            out[ph + 16..ph + 24].copy_from_slice(&paddr.to_le_bytes());
            out[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
            out[ph + 32..ph + 40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            out[ph + 40..ph + 48].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            off += bytes.len();
        }
        for (_, bytes) in segments {
            out.extend_from_slice(bytes);
        }
        out
    }

    #[test]
    fn places_segments_and_pads_to_64k() {
        let reset = [0xE9, 0x0D, 0xF0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let (rom, used) =
            elf_to_rom(&elf(&[(0xFFFF_0000, &[1, 2, 3]), (0xFFFF_FFF0, &reset)])).unwrap();
        assert_eq!(rom.len(), 65536);
        assert_eq!(&rom[..3], &[1, 2, 3]);
        assert_eq!(rom[3], 0xFF);
        assert_eq!(rom[65520], 0xE9);
        assert_eq!(used, 19);
        // a segment a little below 64 KiB makes a 128 KiB ROM
        let (rom, _) = elf_to_rom(&elf(&[(0xFFFE_F000, &[7]), (0xFFFF_FFF0, &reset)])).unwrap();
        assert_eq!(rom.len(), 128 * 1024);
        assert_eq!(rom[0xF000], 7);
    }

    #[test]
    fn rejects_bad_images() {
        assert!(elf_to_rom(b"not an elf").is_err());
        // no reset jump
        assert!(elf_to_rom(&elf(&[(0xFFFF_0000, &[1])])).is_err());
        // beyond 4 GiB
        assert!(elf_to_rom(&elf(&[(0xFFFF_FFF8, &[0u8; 16])])).is_err());
        // in low RAM: an ELF linked without AT> ROM
        assert!(elf_to_rom(&elf(&[(0x10_0000, &[1])])).is_err());
        assert!(elf_to_rom(&elf(&[])).is_err());
    }
}
