//! The probe kernel: a bzImage that does nothing but tell which entry point the
//! firmware used, by writing a distinct value to an I/O port at each of them.
//! With `-device isa-debug-exit` on that port, QEMU exits the moment any
//! firmware hands over to "Linux", which is how the bench times firmware that
//! writes no markers of its own (qboot, SeaBIOS, OVMF).
//!
//! It is padded to the size of a real kernel so that loading it costs the same.
//! Like an EFI-stub kernel it is also a PE32+ EFI application, which is the only
//! kind of `-kernel` that Debian's OVMF starts; its PE entry point writes a
//! marker of its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::bzimage::{Header, XLF_CAN_BE_LOADED_ABOVE_4G, XLF_EFI_HANDOVER_64, XLF_KERNEL_64};
use crate::qemu::{Accel, Machine, Qemu};

/// Port the probe writes to.
pub const PROBE_PORT: u16 = 0xF7;

/// Entry points, by the value the probe writes (QEMU exit status = 2·v + 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Entry {
    /// Real-mode setup code at setup + 0x200 (what a BIOS uses).
    Setup16,
    /// 32-bit protected-mode entry at the load address.
    Protected32,
    /// 64-bit entry at load address + 0x200.
    Long64,
    /// EFI handover protocol, 64-bit (at 64-bit entry + handover_offset).
    EfiHandover64,
    /// PE/COFF entry point (AddressOfEntryPoint): UEFI LoadImage + StartImage.
    EfiPe,
    /// PVH entry of an ELF kernel (the PVH probe, `pvh_probe.rs`).
    Pvh,
}

impl Entry {
    pub const ALL: [Entry; 6] = [
        Entry::Setup16,
        Entry::Protected32,
        Entry::Long64,
        Entry::EfiHandover64,
        Entry::EfiPe,
        Entry::Pvh,
    ];

    pub fn value(self) -> u8 {
        match self {
            Entry::Setup16 => 0x11,
            Entry::Protected32 => 0x12,
            Entry::Long64 => 0x13,
            Entry::EfiHandover64 => 0x14,
            Entry::EfiPe => 0x15,
            Entry::Pvh => 0x16,
        }
    }

    /// The entry a QEMU exit status means, if any.
    pub fn from_exit_code(code: i32) -> Option<Entry> {
        Entry::ALL
            .into_iter()
            .find(|e| ferrite_contract::qemu_exit(e.value()) == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            Entry::Setup16 => "16-bit",
            Entry::Protected32 => "32-bit",
            Entry::Long64 => "64-bit",
            Entry::EfiHandover64 => "EFI handover",
            Entry::EfiPe => "EFI PE",
            Entry::Pvh => "PVH",
        }
    }
}

/// Where the 16-bit code sits, right after the header.
const CODE16: usize = 0x280;
/// Offsets in the protected-mode part: the 64-bit entry (fixed by the boot
/// protocol), the EFI handover entry relative to it, and the PE entry point.
const LONG64: usize = 0x200;
const HANDOVER_OFFSET: u32 = 0x100;
const PE_ENTRY: usize = 0x400;

/// `mov al, value; out PROBE_PORT, al; hlt; jmp $-1`: valid in 16, 32 and 64-bit mode.
pub fn marker_code(value: u8) -> [u8; 7] {
    [0xB0, value, 0xE6, PROBE_PORT as u8, 0xF4, 0xEB, 0xFD]
}

/// A boot of `bios` on `machine` to the entry of a probe of the stock
/// kernel's size (8 MiB) with a 2 MiB initrd, 512 MiB, under TCG, QEMU
/// exiting at the probe's marker: what the research tools boot. The two
/// files are written into `work` (created if need be) as `probe.bzImage`
/// and `initrd.bin`.
pub fn stock_size_boot(work: &Path, machine: Machine, bios: PathBuf) -> Result<Qemu> {
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let kernel = work.join("probe.bzImage");
    std::fs::write(&kernel, build(8 << 20, 0))?;
    let initrd = work.join("initrd.bin");
    std::fs::write(&initrd, vec![0u8; 2 << 20])?;
    let mut q = Qemu::new(machine, bios);
    q.accel = Accel::Tcg;
    q.memory_mib = 512;
    q.kernel = Some(kernel);
    q.initrd = Some(initrd);
    q.append = Some("console=ttyS0".into());
    q.exit_ports = vec![PROBE_PORT];
    q.timeout = Duration::from_secs(60);
    Ok(q)
}

/// Builds a probe whose protected-mode part is `pm_size` bytes (at least 4 KiB,
/// rounded up to whole sectors for the PE file alignment) and which asks for
/// `init_size` bytes of run-time memory.
pub fn build(pm_size: usize, init_size: u32) -> Vec<u8> {
    let pm_size = pm_size.max(4096).next_multiple_of(crate::bzimage::SECTOR);
    let mut pm = vec![0u8; pm_size];
    let entries = [
        (0, Entry::Protected32),
        (LONG64, Entry::Long64),
        (LONG64 + HANDOVER_OFFSET as usize, Entry::EfiHandover64),
        (PE_ENTRY, Entry::EfiPe),
    ];
    for (at, entry) in entries {
        let code = marker_code(entry.value());
        pm[at..at + code.len()].copy_from_slice(&code);
    }
    let header = Header {
        relocatable: true,
        xloadflags: XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G | XLF_EFI_HANDOVER_64,
        init_size: init_size.max(pm_size.next_multiple_of(0x20_0000) as u32),
        handover_offset: HANDOVER_OFFSET,
        header_end: CODE16,
        pe_entry: Some(PE_ENTRY),
        ..Header::default()
    };
    header.image(&[(CODE16, &marker_code(Entry::Setup16.value()))], &pm)
}

/// A probe the size of `kernel` (a real bzImage, to the sector), with its init_size.
pub fn build_like(kernel: &Path) -> Result<Vec<u8>> {
    let k = std::fs::read(kernel).with_context(|| format!("reading {}", kernel.display()))?;
    use ferrite_contract::setup_header as at;
    let u32_at = |o: usize| u32::from_le_bytes(k[o..o + 4].try_into().unwrap());
    if k.len() < at::INIT_SIZE + 4 || u32_at(at::HEADER) != at::MAGIC {
        bail!("{} is not a bzImage", kernel.display());
    }
    let sects = match k[at::SETUP_SECTS] {
        0 => 4,
        n => n as usize,
    };
    let pm = k.len().saturating_sub((sects + 1) * 512);
    let init_size = u32_at(at::INIT_SIZE);
    Ok(build(pm, init_size))
}

/// A real bzImage with the probe's 64-bit marker written over the first
/// bytes of its own 64-bit entry (load address + 0x200, the decompressor's
/// `startup_64`): the first instruction that every firmware's path through
/// the kernel runs, whichever entry the firmware used. A firmware that jumps
/// there (ferrite) reaches it at once; one that starts the real-mode setup
/// code (qboot, SeaBIOS) or the EFI stub (OVMF) reaches it after the kernel
/// has done, in that code, the set-up ferrite does itself (the memory map
/// from the BIOS, the mode switches). Timed to it, the firmwares are compared
/// at one point of one boot, and nothing the kernel does after it (the
/// decompression's hundreds of milliseconds under TCG) adds its noise.
pub fn patch_entry64(kernel: &[u8]) -> Result<Vec<u8>> {
    use ferrite_contract::setup_header as at;
    let u32_at = |o: usize| u32::from_le_bytes(kernel[o..o + 4].try_into().unwrap());
    if kernel.len() < at::END || u32_at(at::HEADER) != at::MAGIC {
        bail!("not a bzImage (no setup header)");
    }
    let version = u16::from_le_bytes([kernel[at::VERSION], kernel[at::VERSION + 1]]);
    let xloadflags = u16::from_le_bytes([kernel[at::XLOADFLAGS], kernel[at::XLOADFLAGS + 1]]);
    // xloadflags exists from protocol 2.12 on.
    if version < 0x020C || xloadflags & XLF_KERNEL_64 == 0 {
        bail!("the kernel has no 64-bit entry (protocol {version:#x}, xloadflags {xloadflags:#x})");
    }
    let sects = match kernel[at::SETUP_SECTS] {
        0 => 4,
        n => n as usize,
    };
    let entry = (sects + 1) * crate::bzimage::SECTOR + LONG64;
    let mut image = kernel.to_vec();
    let code = marker_code(Entry::Long64.value());
    image
        .get_mut(entry..entry + code.len())
        .with_context(|| format!("the kernel ends before its 64-bit entry at {entry:#x}"))?
        .copy_from_slice(&code);
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETUP_LEN: usize = 5 * 512;

    #[test]
    fn entry64_patch_marks_only_the_64_bit_entry() {
        // A stand-in for a real kernel: the probe itself, its 64-bit marker
        // cleared, so that only the patch can put one back.
        let mut kernel = build(10_000, 0);
        let entry = SETUP_LEN + LONG64;
        kernel[entry..entry + 7].copy_from_slice(&[0xFC, 0xFA, 0x31, 0xC0, 0x8E, 0xD8, 0x8E]);
        let patched = patch_entry64(&kernel).unwrap();
        assert_eq!(patched.len(), kernel.len());
        assert_eq!(
            &patched[entry..entry + 7],
            &marker_code(Entry::Long64.value())
        );
        let changed: Vec<usize> = (0..kernel.len())
            .filter(|&i| kernel[i] != patched[i])
            .collect();
        assert_eq!(changed, (entry..entry + 7).collect::<Vec<_>>());
        // setup_sects 0 means 4
        let mut old = kernel.clone();
        old[0x1F1] = 0;
        assert_eq!(
            patch_entry64(&old).unwrap()[entry + 1],
            Entry::Long64.value()
        );
    }

    #[test]
    fn entry64_patch_refuses_what_has_no_64_bit_entry() {
        let kernel = build(10_000, 0);
        let mut no64 = kernel.clone();
        no64[0x236] &= !(XLF_KERNEL_64 as u8);
        let mut old_protocol = kernel.clone();
        old_protocol[0x206..0x208].copy_from_slice(&0x020Bu16.to_le_bytes());
        let mut not_bzimage = kernel.clone();
        not_bzimage[0x202] = b'X';
        let short = kernel[..SETUP_LEN + LONG64 + 3].to_vec();
        for (bad, why) in [
            (no64, "64-bit entry"),
            (old_protocol, "64-bit entry"),
            (not_bzimage, "not a bzImage"),
            (short, "ends before"),
            (kernel[..0x100].to_vec(), "not a bzImage"),
        ] {
            let err = patch_entry64(&bad).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn header_and_entry_points() {
        let img = build(10_000, 0);
        assert_eq!(&img[0x202..0x206], b"HdrS");
        assert_eq!(img.len(), SETUP_LEN + 10_000usize.next_multiple_of(512));
        assert_eq!(img[0x234], 1);
        // the jump at 0x200 lands on the 16-bit marker
        assert_eq!(0x202 + img[0x201] as usize, CODE16);
        assert_eq!(img[CODE16 + 1], 0x11);
        assert_eq!(img[SETUP_LEN + 1], 0x12);
        assert_eq!(img[SETUP_LEN + 0x201], 0x13);
        assert_eq!(img[SETUP_LEN + 0x301], 0x14);
        assert_eq!(img[SETUP_LEN + 0x401], 0x15);
        for at in [
            CODE16,
            SETUP_LEN,
            SETUP_LEN + 0x200,
            SETUP_LEN + 0x300,
            SETUP_LEN + 0x400,
        ] {
            assert_eq!(img[at + 3], PROBE_PORT as u8);
        }
        let init = u32::from_le_bytes(img[0x260..0x264].try_into().unwrap());
        assert_eq!(init, 0x20_0000);
        let xloadflags = u16::from_le_bytes([img[0x236], img[0x237]]);
        assert_eq!(xloadflags & XLF_EFI_HANDOVER_64, XLF_EFI_HANDOVER_64);
        assert_eq!(&img[0x264..0x268], &HANDOVER_OFFSET.to_le_bytes());
    }

    #[test]
    fn pe_entry_point_is_the_efi_marker() {
        use object::pe::{IMAGE_FILE_MACHINE_AMD64, IMAGE_SUBSYSTEM_EFI_APPLICATION};
        use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, PeFile64};
        use object::{Object, ObjectSection};

        let img = build(10_000, 0);
        let pe = PeFile64::parse(&*img).expect("a PE32+ image");
        let nt = pe.nt_headers();
        assert_eq!(
            nt.file_header().machine.get(object::LittleEndian),
            IMAGE_FILE_MACHINE_AMD64
        );
        let opt = nt.optional_header();
        assert!(nt.is_type_64());
        assert_eq!(opt.subsystem(), IMAGE_SUBSYSTEM_EFI_APPLICATION);
        assert_eq!(opt.size_of_image() as usize, img.len());
        let entry = opt.address_of_entry_point();
        assert_eq!(pe.entry(), entry as u64); // image base 0
        let code = pe.section_table().pe_data_at(&*img, entry).unwrap();
        assert_eq!(code[..7], marker_code(Entry::EfiPe.value()));
        // .setup is the setup sectors after the boot sector, .text the rest
        let sections: Vec<_> = pe
            .sections()
            .map(|s| (s.name().unwrap().to_string(), s.file_range().unwrap()))
            .collect();
        assert_eq!(
            sections,
            [
                (".setup".to_string(), (0x200, SETUP_LEN as u64 - 0x200)),
                (
                    ".text".to_string(),
                    (SETUP_LEN as u64, (img.len() - SETUP_LEN) as u64)
                ),
            ]
        );
        let text = pe.section_by_name(".text").unwrap();
        assert!(text.address() <= entry as u64 && (entry as u64) < text.address() + text.size());
    }

    #[test]
    fn exit_codes_map_back_to_entries() {
        for e in Entry::ALL {
            assert_eq!(
                Entry::from_exit_code(ferrite_contract::qemu_exit(e.value())),
                Some(e)
            );
        }
        assert_eq!(Entry::from_exit_code(0), None);
        assert_eq!(Entry::from_exit_code(7), None); // ferrite's own marker
        assert_eq!(Entry::from_exit_code(33), None);
    }

    #[test]
    fn build_like_copies_size_and_init_size() {
        let mut real = build(3_000_000, 0x3F9_8000);
        real[0x1F1] = 4;
        let dir = std::env::temp_dir().join(format!("ferrite-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bz");
        std::fs::write(&path, &real).unwrap();
        let probe = build_like(&path).unwrap();
        assert_eq!(probe.len(), real.len());
        assert_eq!(&probe[0x260..0x264], &0x3F9_8000u32.to_le_bytes());
        std::fs::write(&path, b"not a kernel").unwrap();
        assert!(build_like(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
