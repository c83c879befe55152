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
pub const PASS_PVH: i32 = 0x14 * 2 + 1;
pub const PASS_MULTIBOOT: i32 = 0x16 * 2 + 1;
/// The multiboot entry (tests/testkernel/link.ld).
pub const MULTIBOOT_ENTRY: u64 = LOAD_ADDRESS + 0x600;
/// The PVH entry (tests/testkernel/link.ld).
pub const PVH_ENTRY: u64 = LOAD_ADDRESS + 0x400;

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

/// The test kernel as an ELF file with a PVH note, as a `vmlinux` is: what
/// QEMU loads itself and hands to the firmware's PVH path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PvhSpec {
    /// Where the one loadable segment goes (the image runs only at LOAD_ADDRESS).
    pub load_address: u64,
    /// The entry the note gives, and the note descriptor's size (4 or 8).
    pub entry: u64,
    pub entry_bytes: usize,
    /// The segment's size in memory (bss included); 0: the image's length.
    pub memsz: u64,
}

impl Default for PvhSpec {
    fn default() -> Self {
        PvhSpec {
            load_address: LOAD_ADDRESS,
            entry: PVH_ENTRY,
            entry_bytes: 8,
            memsz: 0,
        }
    }
}

/// Where the image starts in the ELF file.
const ELF_IMAGE_OFFSET: usize = 0x1000;
const MULTIBOOT_MAGIC: u32 = 0x1BAD_B002;

/// Wraps a protected-mode image into a 64-bit ELF: the ELF header, a PT_LOAD
/// segment with the image and a PT_NOTE with Xen's PHYS32_ENTRY note, both
/// within the first 8 KiB that QEMU hands to the firmware.
pub fn wrap_pvh(pm: &[u8], spec: &PvhSpec) -> Result<Vec<u8>> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes()); // namesz
    note.extend_from_slice(&(spec.entry_bytes as u32).to_le_bytes()); // descsz
    note.extend_from_slice(&18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
    note.extend_from_slice(b"Xen\0");
    match spec.entry_bytes {
        4 => note.extend_from_slice(&(spec.entry as u32).to_le_bytes()),
        8 => note.extend_from_slice(&spec.entry.to_le_bytes()),
        n => anyhow::bail!("a PVH note entry is 4 or 8 bytes, not {n}"),
    }
    let note_offset = EHDR + 2 * PHDR;
    let mut elf = vec![0u8; ELF_IMAGE_OFFSET];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2; // ELFCLASS64
    elf[5] = 1; // little-endian
    elf[6] = 1; // EV_CURRENT
    let put = |elf: &mut Vec<u8>, at: usize, v: &[u8]| elf[at..at + v.len()].copy_from_slice(v);
    put(&mut elf, 0x10, &2u16.to_le_bytes()); // ET_EXEC
    put(&mut elf, 0x12, &62u16.to_le_bytes()); // EM_X86_64
    put(&mut elf, 0x14, &1u32.to_le_bytes());
    put(&mut elf, 0x18, &(LOAD_ADDRESS + 0x200).to_le_bytes()); // e_entry (unused)
    put(&mut elf, 0x20, &(EHDR as u64).to_le_bytes()); // e_phoff
    put(&mut elf, 0x34, &(EHDR as u16).to_le_bytes());
    put(&mut elf, 0x36, &(PHDR as u16).to_le_bytes());
    put(&mut elf, 0x38, &2u16.to_le_bytes());
    // (type, flags, offset, paddr, size, align)
    let segments = [
        (
            PT_LOAD,
            7u32,
            ELF_IMAGE_OFFSET as u64,
            spec.load_address,
            pm.len() as u64,
            0x1000u64,
        ),
        (4, 4, note_offset as u64, 0, note.len() as u64, 4),
    ];
    let memsz = spec.memsz.max(pm.len() as u64);
    for (i, (typ, flags, offset, paddr, size, align)) in segments.into_iter().enumerate() {
        let at = EHDR + i * PHDR;
        put(&mut elf, at, &typ.to_le_bytes());
        put(&mut elf, at + 4, &flags.to_le_bytes());
        put(&mut elf, at + 8, &offset.to_le_bytes());
        put(&mut elf, at + 0x10, &paddr.to_le_bytes()); // vaddr
        put(&mut elf, at + 0x18, &paddr.to_le_bytes());
        put(&mut elf, at + 0x20, &size.to_le_bytes()); // filesz
        let mem = if typ == PT_LOAD { memsz } else { size };
        put(&mut elf, at + 0x28, &mem.to_le_bytes()); // memsz
        put(&mut elf, at + 0x30, &align.to_le_bytes());
    }
    put(&mut elf, note_offset, &note);
    elf.extend_from_slice(pm);
    // QEMU tries multiboot before PVH: its magic must not appear in the first 8 KiB.
    let head = &elf[..elf.len().min(8192)];
    ensure!(
        !head
            .chunks_exact(4)
            .any(|w| w == MULTIBOOT_MAGIC.to_le_bytes()),
        "the PVH test kernel looks like a multiboot kernel"
    );
    Ok(elf)
}

/// The test kernel as a multiboot v1 kernel (a.out kludge): a page holding the
/// multiboot header in front of the image, loaded from LOAD_ADDRESS - 4 KiB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultibootSpec {
    pub flags: u32,
    pub entry: u64,
}

/// Page-aligned modules, memory information, the a.out kludge.
pub const MULTIBOOT_FLAGS: u32 = 1 | 1 << 1 | 1 << 16;

impl Default for MultibootSpec {
    fn default() -> Self {
        MultibootSpec {
            flags: MULTIBOOT_FLAGS,
            entry: MULTIBOOT_ENTRY,
        }
    }
}

/// Wraps a protected-mode image into a multiboot kernel: header_addr =
/// load_addr = LOAD_ADDRESS - 4 KiB, the whole file loaded, no extra bss.
pub fn wrap_multiboot(pm: &[u8], spec: &MultibootSpec) -> Vec<u8> {
    let load = (LOAD_ADDRESS - 0x1000) as u32;
    let words = [
        MULTIBOOT_MAGIC,
        spec.flags,
        0u32.wrapping_sub(MULTIBOOT_MAGIC).wrapping_sub(spec.flags),
        load, // header_addr
        load, // load_addr
        0,    // load_end_addr: the whole file
        0,    // bss_end_addr: none beyond the image
        spec.entry as u32,
        0, // mode_type, width, height, depth
        0,
        0,
        0,
    ];
    let mut out = vec![0u8; 0x1000];
    for (i, w) in words.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(pm);
    out
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
    fn pvh_elf_has_its_note_and_segment_in_the_first_8k() {
        let pm = vec![0x90u8; 0x3000];
        let elf = wrap_pvh(&pm, &PvhSpec::default()).unwrap();
        let file = ElfFile64::<Endianness>::parse(&*elf).unwrap();
        let e = file.endian();
        let phs: Vec<_> = file.elf_program_headers().iter().collect();
        assert_eq!(phs.len(), 2);
        assert_eq!(phs[0].p_paddr(e), LOAD_ADDRESS);
        assert_eq!(phs[0].data(e, &*elf).unwrap(), &pm[..]);
        let note = phs[1].data(e, &*elf).unwrap();
        assert_eq!(&note[12..16], b"Xen\0");
        assert_eq!(&note[16..24], &PVH_ENTRY.to_le_bytes());
        let spec = PvhSpec {
            entry_bytes: 4,
            ..PvhSpec::default()
        };
        let elf = wrap_pvh(&pm, &spec).unwrap();
        assert_eq!(&elf[176 + 16..176 + 20], &(PVH_ENTRY as u32).to_le_bytes());
        let spec = PvhSpec {
            entry_bytes: 6,
            ..PvhSpec::default()
        };
        assert!(wrap_pvh(&pm, &spec).is_err());
    }

    #[test]
    fn multiboot_header_checksums_and_points_at_the_entry() {
        let img = wrap_multiboot(&[0x90; 0x800], &MultibootSpec::default());
        let w = |i: usize| u32::from_le_bytes(img[4 * i..4 * i + 4].try_into().unwrap());
        assert_eq!(w(0), MULTIBOOT_MAGIC);
        assert_eq!(w(0).wrapping_add(w(1)).wrapping_add(w(2)), 0);
        assert_eq!((w(3), w(4)), (0xFF_F000, 0xFF_F000));
        assert_eq!(w(7) as u64, MULTIBOOT_ENTRY);
        assert_eq!(img.len(), 0x1800);
        assert_eq!(img[0x1000], 0x90);
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
