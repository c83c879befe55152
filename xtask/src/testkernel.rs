//! The test kernel (tests/testkernel) wrapped as a bzImage, with setup-header
//! fields that tests can change to make malformed or unusual kernels.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use object::Endianness;

use crate::bzimage::Header;
use object::elf::PT_LOAD;
use object::read::elf::{ElfFile64, ProgramHeader};

/// Where the test kernel is linked (tests/testkernel/link.ld).
pub const LOAD_ADDRESS: u64 = 0x100_0000;
/// The port it reports on, and what it writes.
pub const REPORT_PORT: u16 = 0x501;
pub const PASS_64: i32 = 0x10 * 2 + 1;
pub const PASS_32: i32 = 0x12 * 2 + 1;

/// Setup-header fields of the generated bzImage; `init_size` 0 means the image
/// size rounded up to 2 MiB.
pub type BzImageSpec = Header;

/// Wraps a protected-mode image (loaded at LOAD_ADDRESS) into a bzImage.
pub fn wrap(pm: &[u8], spec: &BzImageSpec) -> Vec<u8> {
    let mut header = spec.clone();
    if header.init_size == 0 {
        header.init_size = pm.len().next_multiple_of(0x20_0000) as u32;
    }
    header.image(&[], pm)
}

/// Lays the ELF's loadable segments out from LOAD_ADDRESS (bss included, zeroed).
pub fn flatten(elf: &[u8]) -> Result<Vec<u8>> {
    let file = ElfFile64::<Endianness>::parse(elf).context("test kernel is not an ELF")?;
    let e = file.endian();
    let mut out = Vec::new();
    for ph in file.elf_program_headers() {
        if ph.p_type(e) != PT_LOAD {
            continue;
        }
        let at = ph.p_paddr(e);
        ensure!(
            at >= LOAD_ADDRESS,
            "segment at {at:#x} below the load address"
        );
        let off = (at - LOAD_ADDRESS) as usize;
        let end = off + ph.p_memsz(e) as usize;
        if out.len() < end {
            out.resize(end, 0);
        }
        let data = ph.data(e, elf).ok().context("segment outside the file")?;
        out[off..off + data.len()].copy_from_slice(data);
    }
    ensure!(out.len() > 0x210, "test kernel image too small");
    Ok(out)
}

/// Builds the test kernel's protected-mode image (cached by cargo).
pub fn build_image() -> Result<Vec<u8>> {
    let root = crate::root();
    let manifest = root.join("tests/testkernel/Cargo.toml");
    let target_dir = root.join("target/testkernel");
    let status = crate::cargo()
        .args([
            "build",
            "--quiet",
            "--release",
            "--target",
            "x86_64-unknown-none",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", "-Crelocation-model=static")
        .status()
        .context("building the test kernel")?;
    ensure!(status.success(), "building the test kernel failed");
    let elf = std::fs::read(target_dir.join("x86_64-unknown-none/release/testkernel"))?;
    flatten(&elf)
}

/// Builds the test kernel as a bzImage at `path`.
pub fn build(spec: &BzImageSpec, path: &Path) -> Result<PathBuf> {
    let image = build_image()?;
    std::fs::write(path, wrap(&image, spec))?;
    Ok(path.to_path_buf())
}

/// FNV-1a 64, as the test kernel computes it.
pub fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Appends the ` check=` token the test kernel verifies the command line with.
pub fn with_check(cmdline: &str) -> String {
    format!("{cmdline} check={:016x}", fnv(cmdline.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_fields_reach_the_header() {
        let spec = BzImageSpec {
            version: 0x0204,
            init_size: 0x2000_0000,
            ..BzImageSpec::default()
        };
        let img = wrap(&[0x90; 0x300], &spec);
        assert_eq!(u16::from_le_bytes([img[0x206], img[0x207]]), 0x0204);
        assert_eq!(&img[0x260..0x264], &0x2000_0000u32.to_le_bytes());
        // default init_size rounds the image up to 2 MiB
        let img = wrap(&[0; 10], &BzImageSpec::default());
        assert_eq!(&img[0x260..0x264], &0x20_0000u32.to_le_bytes());
    }

    #[test]
    fn check_token() {
        let c = with_check("a b");
        assert!(c.starts_with("a b check="));
        assert_eq!(c.len(), "a b check=".len() + 16);
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
