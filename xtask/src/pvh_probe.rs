//! The probe kernel for an ELF `vmlinux` booted through its PVH entry: an ELF
//! with a PVH note whose loadable segment spans what the real kernel's do and
//! whose entry writes the probe's PVH marker. The bench builds it in place of
//! the bzImage probe when its kernel is an ELF (`--kernel small-vmlinux`).

use std::path::Path;

use anyhow::{Context, Result, ensure};
use object::Endianness;
use object::elf::PT_LOAD;
use object::read::elf::{ElfFile64, ProgramHeader};

use crate::probe::{self, Entry};
use crate::testkernel::{self, PvhSpec};

/// Is this an ELF file (a `vmlinux`) rather than a bzImage?
pub fn is_elf(kernel: &[u8]) -> bool {
    kernel.starts_with(b"\x7fELF")
}

/// Does the file at `path` start as an ELF file does (a vmlinux)?
pub fn is_elf_file(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(is_elf(&magic[..n]))
}

/// Points the research tools' boot `q` at a probe shaped like `kernel`
/// (written into `work`), instead of the stock-size one.
pub fn boot_like(q: &mut crate::qemu::Qemu, work: &Path, kernel: &Path) -> Result<()> {
    let like = work.join("probe-like-kernel");
    if !like.exists() {
        std::fs::write(&like, build_like(kernel)?)
            .with_context(|| format!("writing {}", like.display()))?;
    }
    q.kernel = Some(like);
    Ok(())
}

/// The probe for `kernel`: the PVH probe for an ELF, the bzImage probe otherwise.
pub fn build_like(kernel: &Path) -> Result<Vec<u8>> {
    let k = std::fs::read(kernel).with_context(|| format!("reading {}", kernel.display()))?;
    if !is_elf(&k) {
        return probe::build_like(kernel);
    }
    let file = ElfFile64::<Endianness>::parse(&*k)
        .with_context(|| format!("{} is not a 64-bit ELF", kernel.display()))?;
    let e = file.endian();
    let loads: Vec<_> = file
        .elf_program_headers()
        .iter()
        .filter(|ph| ph.p_type(e) == PT_LOAD)
        .collect();
    ensure!(
        !loads.is_empty(),
        "{} has no loadable segment",
        kernel.display()
    );
    let low = loads.iter().map(|ph| ph.p_paddr(e)).min().unwrap();
    let high = loads
        .iter()
        .map(|ph| ph.p_paddr(e) + ph.p_memsz(e))
        .max()
        .unwrap();
    // As many bytes from the file as the kernel's segments hold, so that QEMU
    // copies as much; the rest of the span is bss.
    let file_bytes: u64 = loads.iter().map(|ph| ph.p_filesz(e)).sum();
    let mut image = vec![0u8; file_bytes.min(high - low) as usize];
    let code = probe::marker_code(Entry::Pvh.value());
    image[..code.len()].copy_from_slice(&code);
    testkernel::wrap_pvh(
        &image,
        &PvhSpec {
            load_address: low,
            entry: low,
            entry_bytes: 8,
            memsz: high - low,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_spans_the_kernels_segments_and_enters_at_its_marker() {
        let kernel = testkernel::wrap_pvh(
            &[0x90; 0x5000],
            &PvhSpec {
                memsz: 0x9000,
                ..PvhSpec::default()
            },
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("ferrite-pvh-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vmlinux");
        std::fs::write(&path, &kernel).unwrap();
        let p = build_like(&path).unwrap();
        let file = ElfFile64::<Endianness>::parse(&*p).unwrap();
        let e = file.endian();
        let load = &file.elf_program_headers()[0];
        assert_eq!(load.p_paddr(e), testkernel::LOAD_ADDRESS);
        assert_eq!((load.p_filesz(e), load.p_memsz(e)), (0x5000, 0x9000));
        let data = load.data(e, &*p).unwrap();
        assert_eq!(data[..7], probe::marker_code(Entry::Pvh.value()));
        // the note's entry is the segment's start
        let note = file.elf_program_headers()[1].data(e, &*p).unwrap();
        assert_eq!(&note[16..24], &testkernel::LOAD_ADDRESS.to_le_bytes());
        // a bzImage gets the bzImage probe
        std::fs::write(&path, probe::build(10_000, 0)).unwrap();
        assert_eq!(&build_like(&path).unwrap()[0x202..0x206], b"HdrS");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
