//! Writing a bzImage: setup sectors with a Linux setup header, then the
//! protected-mode part. Shared by the test kernel and the bench's probe kernel.
//!
//! Optionally the image is also a PE/COFF EFI application, as an EFI-stub
//! kernel is (arch/x86/boot/header.S): the DOS, PE and section headers fill the
//! boot sector before the setup header, which UEFI firmware such as OVMF needs
//! before it starts a `-kernel`.

use ferrite_contract::setup_header as at;
use object::pe;
use object::write::pe::{NtHeaders, Writer};

/// xloadflags bits (Documentation/arch/x86/boot.rst).
pub use ferrite_contract::setup_header::{
    XLF_CAN_BE_LOADED_ABOVE_4G, XLF_EFI_HANDOVER_64, XLF_KERNEL_64,
};

/// A sector. Also the PE file and section alignment, so that every PE
/// section's address equals its offset in the file, as in the bzImage.
pub const SECTOR: usize = 512;
/// Where the setup header starts: the PE headers must end before it.
const SETUP_HEADER: usize = at::START;
/// Data directories in the optional header (up to the base relocation table, as Linux).
const PE_DATA_DIRECTORIES: usize = 6;
/// `.setup`: the setup sectors after the boot sector, read-only data.
const SCN_SETUP: u32 =
    pe::IMAGE_SCN_CNT_INITIALIZED_DATA | pe::IMAGE_SCN_MEM_DISCARDABLE | pe::IMAGE_SCN_MEM_READ;
/// `.text`: the protected-mode part, code.
const SCN_TEXT: u32 = pe::IMAGE_SCN_CNT_CODE | pe::IMAGE_SCN_MEM_EXECUTE | pe::IMAGE_SCN_MEM_READ;

/// The setup-header fields the generated kernels set (Documentation/arch/x86/boot.rst).
#[derive(Clone, Debug)]
pub struct Header {
    pub setup_sects: u8,
    pub magic: [u8; 4],
    pub version: u16,
    pub loadflags: u8,
    pub xloadflags: u16,
    pub relocatable: bool,
    pub kernel_alignment: u32,
    pub pref_address: u64,
    pub init_size: u32,
    pub cmdline_size: u32,
    pub initrd_addr_max: u32,
    pub handover_offset: u32,
    /// Where the jump at 0x200 goes, which also ends the header (0x202 + byte 0x201).
    pub header_end: usize,
    /// Makes the image a PE32+ EFI application entered at this offset into the
    /// protected-mode part; the part is then padded to whole sectors.
    pub pe_entry: Option<usize>,
}

impl Default for Header {
    fn default() -> Self {
        Header {
            setup_sects: 4,
            magic: at::MAGIC.to_le_bytes(),
            version: 0x020F,
            loadflags: at::LOADED_HIGH,
            xloadflags: XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G,
            relocatable: false,
            kernel_alignment: 0x20_0000,
            pref_address: 0x100_0000,
            init_size: 0,
            cmdline_size: 2047,
            initrd_addr_max: 0x7FFF_FFFF,
            handover_offset: 0,
            header_end: at::END,
            pe_entry: None,
        }
    }
}

impl Header {
    /// Bytes of the setup sectors.
    pub fn setup_len(&self) -> usize {
        (self.setup_sects as usize + 1) * SECTOR
    }

    /// The whole image: setup sectors (with `setup_code` placed at its offsets)
    /// followed by `pm`, and the PE headers if `pe_entry` asks for them.
    pub fn image(&self, setup_code: &[(usize, &[u8])], pm: &[u8]) -> Vec<u8> {
        let mut img = vec![0u8; self.setup_len()];
        for (at, code) in setup_code {
            img[*at..*at + code.len()].copy_from_slice(code);
        }
        img.extend_from_slice(pm);
        if let Some(entry) = self.pe_entry {
            img.resize(img.len().next_multiple_of(SECTOR), 0);
            let headers = pe_headers(self.setup_len(), img.len(), self.setup_len() + entry);
            img[..headers.len()].copy_from_slice(&headers);
        }
        let pm_len = img.len() - self.setup_len();
        let put16 =
            |img: &mut Vec<u8>, o: usize, v: u16| img[o..o + 2].copy_from_slice(&v.to_le_bytes());
        let put32 =
            |img: &mut Vec<u8>, o: usize, v: u32| img[o..o + 4].copy_from_slice(&v.to_le_bytes());
        img[at::SETUP_SECTS] = self.setup_sects;
        put32(&mut img, at::SYSSIZE, pm_len.div_ceil(16) as u32);
        put16(&mut img, at::BOOT_FLAG, at::BOOT_FLAG_VALUE);
        img[at::JUMP] = 0xEB; // jmp short
        img[at::JUMP + 1] = (self.header_end - at::HEADER) as u8;
        img[at::HEADER..at::HEADER + 4].copy_from_slice(&self.magic);
        put16(&mut img, at::VERSION, self.version);
        img[at::LOADFLAGS] = self.loadflags;
        put32(&mut img, at::CODE32_START, 0x10_0000);
        put32(&mut img, at::INITRD_ADDR_MAX, self.initrd_addr_max);
        put32(&mut img, at::KERNEL_ALIGNMENT, self.kernel_alignment);
        img[at::RELOCATABLE_KERNEL] = self.relocatable as u8;
        img[at::MIN_ALIGNMENT] = 21; // 2 MiB
        put16(&mut img, at::XLOADFLAGS, self.xloadflags);
        put32(&mut img, at::CMDLINE_SIZE, self.cmdline_size);
        img[at::PREF_ADDRESS..at::PREF_ADDRESS + 8]
            .copy_from_slice(&self.pref_address.to_le_bytes());
        put32(&mut img, at::INIT_SIZE, self.init_size);
        put32(&mut img, at::HANDOVER_OFFSET, self.handover_offset);
        img
    }
}

/// The DOS, PE and section headers of an image of `len` bytes whose first
/// `setup_len` are setup sectors: "MZ" with the PE header's offset at 0x3C, a
/// PE32+ EFI application for x86-64 whose `.setup` section is the setup sectors
/// after the boot sector and `.text` the protected-mode part, entered at file
/// offset (and so address) `entry`. Fits in the boot sector, before the setup header.
pub fn pe_headers(setup_len: usize, len: usize, entry: usize) -> Vec<u8> {
    let u32_of = |v: usize| u32::try_from(v).expect("a bzImage is smaller than 4 GiB");
    let (setup_len, len, entry) = (u32_of(setup_len), u32_of(len), u32_of(entry));
    let sector = SECTOR as u32;
    assert!(setup_len > sector && setup_len <= entry && entry < len && len % sector == 0);
    let mut out = Vec::new();
    let mut w = Writer::new(true, sector, sector, &mut out);
    w.reserve_dos_header();
    w.reserve_nt_headers(PE_DATA_DIRECTORIES);
    w.reserve_section_headers(2);
    let size = setup_len - sector;
    let setup = w.reserve_section(*b".setup\0\0", SCN_SETUP, size, size);
    let size = len - setup_len;
    let text = w.reserve_section(*b".text\0\0\0", SCN_TEXT, size, size);
    assert_eq!((setup.file_offset, text.file_offset), (sector, setup_len));
    assert_eq!(text.virtual_address, text.file_offset);
    w.write_empty_dos_header()
        .expect("allocating the header buffer");
    w.write_nt_headers(NtHeaders {
        machine: pe::IMAGE_FILE_MACHINE_AMD64,
        time_date_stamp: 0,
        characteristics: pe::IMAGE_FILE_EXECUTABLE_IMAGE
            | pe::IMAGE_FILE_LINE_NUMS_STRIPPED
            | pe::IMAGE_FILE_DEBUG_STRIPPED,
        major_linker_version: 0,
        minor_linker_version: 0,
        address_of_entry_point: entry,
        // Relocatable (no IMAGE_FILE_RELOCS_STRIPPED) with nothing to relocate.
        image_base: 0,
        major_operating_system_version: 0,
        minor_operating_system_version: 0,
        major_image_version: 0,
        minor_image_version: 0,
        major_subsystem_version: 0,
        minor_subsystem_version: 0,
        subsystem: pe::IMAGE_SUBSYSTEM_EFI_APPLICATION,
        dll_characteristics: 0,
        size_of_stack_reserve: 0,
        size_of_stack_commit: 0,
        size_of_heap_reserve: 0,
        size_of_heap_commit: 0,
    });
    w.write_section_headers();
    assert!(
        out.len() <= SETUP_HEADER,
        "PE headers overlap the setup header"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_land_at_their_offsets() {
        let h = Header {
            version: 0x0204,
            cmdline_size: 255,
            init_size: 0x2000_0000,
            handover_offset: 0x190,
            ..Header::default()
        };
        let img = h.image(&[(0x280, &[0xB0, 0x11])], &[0x90; 0x300]);
        assert_eq!(&img[0x202..0x206], b"HdrS");
        assert_eq!(u16::from_le_bytes([img[0x206], img[0x207]]), 0x0204);
        assert_eq!(u16::from_le_bytes([img[0x1FE], img[0x1FF]]), 0xAA55);
        assert_eq!(0x202 + img[0x201] as usize, 0x26C);
        assert_eq!(&img[0x238..0x23C], &255u32.to_le_bytes());
        assert_eq!(&img[0x260..0x264], &0x2000_0000u32.to_le_bytes());
        assert_eq!(&img[0x264..0x268], &0x190u32.to_le_bytes());
        assert_eq!(&img[0x258..0x260], &0x100_0000u64.to_le_bytes());
        assert_eq!(&img[0x1F4..0x1F8], &0x30u32.to_le_bytes());
        assert_eq!(img[0x281], 0x11);
        assert_eq!(img.len(), 5 * 512 + 0x300);
        assert_eq!(img[5 * 512], 0x90);
    }

    #[test]
    fn pe_headers_stay_in_the_boot_sector() {
        let code: &[(usize, &[u8])] = &[(0x280, &[0xB0, 0x11])];
        let plain = Header::default().image(code, &[0x90; 0x400]);
        assert_ne!(&plain[..2], b"MZ");
        let h = Header {
            pe_entry: Some(0x10),
            ..Header::default()
        };
        let img = h.image(code, &[0x90; 0x400]);
        assert_eq!(&img[..2], b"MZ");
        assert_eq!(&img[0x3C..0x40], &0x40u32.to_le_bytes());
        assert_eq!(&img[0x40..0x44], b"PE\0\0");
        // the setup header, setup code and protected-mode part are untouched
        assert_eq!(img[SETUP_HEADER..], plain[SETUP_HEADER..]);
        // DOS header, "PE\0\0", COFF header, optional header, data directories, sections
        let end = 0x40 + 4 + 20 + 112 + PE_DATA_DIRECTORIES * 8 + 2 * 40;
        assert!(img[0x40 + 4..end].iter().any(|&b| b != 0));
        assert!(img[end..SETUP_HEADER].iter().all(|&b| b == 0));
        // a protected-mode part of a partial sector is padded to a whole one
        assert_eq!(h.image(code, &[0x90; 0x3F0]).len(), img.len());
    }
}
