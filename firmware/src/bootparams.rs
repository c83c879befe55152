//! The Linux x86 boot protocol's data structures: the setup header, the zero page
//! (`struct boot_params`), e820 entries and `setup_data`.
//!
//! Layouts follow Documentation/arch/x86/boot.rst and zero-page.rst and
//! arch/x86/include/uapi/asm/bootparam.h. Every field carries its offset inside
//! `boot_params`, and the offsets are checked at compile time below.

use core::mem::{offset_of, size_of};

use ferrite_contract::setup_header as at;

/// "HdrS", the setup header magic at 0x202.
pub const HDRS_MAGIC: u32 = at::MAGIC;
/// 0xAA55 at 0x1FE.
pub const BOOT_FLAG: u16 = at::BOOT_FLAG_VALUE;
/// The type_of_loader QEMU itself uses; keeps kernel messages identical to a QEMU `-kernel` boot.
pub const LOADER_TYPE_QEMU: u8 = 0xB0;

/// `loadflags` (0x211) bits.
pub mod loadflags {
    /// The protected-mode code is loaded at 0x100000 (a bzImage).
    pub const LOADED_HIGH: u8 = ferrite_contract::setup_header::LOADED_HIGH;
    /// `heap_end_ptr` is valid (16-bit entry only).
    pub const CAN_USE_HEAP: u8 = 1 << 7;
}

/// `xloadflags` (0x236) bits.
pub mod xloadflags {
    /// The kernel has the 64-bit entry point at load address + 0x200.
    pub const KERNEL_64: u16 = ferrite_contract::setup_header::XLF_KERNEL_64;
    /// Kernel, initrd, zero page and command line may live above 4 GiB.
    pub const CAN_BE_LOADED_ABOVE_4G: u16 =
        ferrite_contract::setup_header::XLF_CAN_BE_LOADED_ABOVE_4G;
}

/// `setup_data` types (arch/x86/include/uapi/asm/setup_data.h).
pub mod setup_data_type {
    pub const E820_EXT: u32 = 1;
    pub const DTB: u32 = 2;
    pub const RNG_SEED: u32 = 9;
}

/// e820 memory types.
pub mod e820_type {
    pub const RAM: u32 = 1;
    pub const RESERVED: u32 = 2;
    pub const ACPI: u32 = 3;
    pub const NVS: u32 = 4;
    pub const UNUSABLE: u32 = 5;
}

/// Maximum e820 entries in the zero page (`E820_MAX_ENTRIES_ZEROPAGE`).
pub const E820_MAX_ENTRIES_ZEROPAGE: usize = 128;

/// One e820 entry as the zero page and QEMU's `etc/e820` store it: 20 bytes, packed.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64, // 0x00
    pub size: u64, // 0x08
    pub typ: u32,  // 0x10
}
const _: () = assert!(size_of::<E820Entry>() == 20);

/// The setup header, at 0x1F1 in both the kernel image and `boot_params`.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct SetupHeader {
    pub setup_sects: u8,            // 0x1F1
    pub root_flags: u16,            // 0x1F2
    pub syssize: u32,               // 0x1F4
    pub ram_size: u16,              // 0x1F8
    pub vid_mode: u16,              // 0x1FA
    pub root_dev: u16,              // 0x1FC
    pub boot_flag: u16,             // 0x1FE
    pub jump: u16,                  // 0x200
    pub header: u32,                // 0x202
    pub version: u16,               // 0x206
    pub realmode_swtch: u32,        // 0x208
    pub start_sys_seg: u16,         // 0x20C
    pub kernel_version: u16,        // 0x20E
    pub type_of_loader: u8,         // 0x210
    pub loadflags: u8,              // 0x211
    pub setup_move_size: u16,       // 0x212
    pub code32_start: u32,          // 0x214
    pub ramdisk_image: u32,         // 0x218
    pub ramdisk_size: u32,          // 0x21C
    pub bootsect_kludge: u32,       // 0x220
    pub heap_end_ptr: u16,          // 0x224
    pub ext_loader_ver: u8,         // 0x226
    pub ext_loader_type: u8,        // 0x227
    pub cmd_line_ptr: u32,          // 0x228
    pub initrd_addr_max: u32,       // 0x22C
    pub kernel_alignment: u32,      // 0x230
    pub relocatable_kernel: u8,     // 0x234
    pub min_alignment: u8,          // 0x235
    pub xloadflags: u16,            // 0x236
    pub cmdline_size: u32,          // 0x238
    pub hardware_subarch: u32,      // 0x23C
    pub hardware_subarch_data: u64, // 0x240
    pub payload_offset: u32,        // 0x248
    pub payload_length: u32,        // 0x24C
    pub setup_data: u64,            // 0x250
    pub pref_address: u64,          // 0x258
    pub init_size: u32,             // 0x260
    pub handover_offset: u32,       // 0x264
    pub kernel_info_offset: u32,    // 0x268
}

/// Offset of the setup header inside the image and inside `boot_params`.
pub const SETUP_HEADER_OFFSET: usize = at::START;
/// One past the last header byte we know of (protocol 2.15).
pub const SETUP_HEADER_END: usize = SETUP_HEADER_OFFSET + size_of::<SetupHeader>();

/// `struct boot_params`, the zero page: 4 KiB.
#[repr(C, packed)]
pub struct BootParams {
    pub screen_info: [u8; 0x40],       // 0x000
    pub apm_bios_info: [u8; 0x14],     // 0x040
    pub _pad2: [u8; 4],                // 0x054
    pub tboot_addr: u64,               // 0x058
    pub ist_info: [u8; 0x10],          // 0x060
    pub acpi_rsdp_addr: u64,           // 0x070
    pub _pad3: [u8; 8],                // 0x078
    pub hd0_info: [u8; 0x10],          // 0x080
    pub hd1_info: [u8; 0x10],          // 0x090
    pub sys_desc_table: [u8; 0x10],    // 0x0A0
    pub olpc_ofw_header: [u8; 0x10],   // 0x0B0
    pub ext_ramdisk_image: u32,        // 0x0C0
    pub ext_ramdisk_size: u32,         // 0x0C4
    pub ext_cmd_line_ptr: u32,         // 0x0C8
    pub _pad4: [u8; 0x70],             // 0x0CC
    pub cc_blob_address: u32,          // 0x13C
    pub edid_info: [u8; 0x80],         // 0x140
    pub efi_info: [u8; 0x20],          // 0x1C0
    pub alt_mem_k: u32,                // 0x1E0
    pub scratch: u32,                  // 0x1E4
    pub e820_entries: u8,              // 0x1E8
    pub eddbuf_entries: u8,            // 0x1E9
    pub edd_mbr_sig_buf_entries: u8,   // 0x1EA
    pub kbd_status: u8,                // 0x1EB
    pub secure_boot: u8,               // 0x1EC
    pub _pad5: [u8; 2],                // 0x1ED
    pub sentinel: u8,                  // 0x1EF
    pub _pad6: u8,                     // 0x1F0
    pub hdr: SetupHeader,              // 0x1F1
    pub _pad7: [u8; 0x24],             // 0x26C
    pub edd_mbr_sig_buffer: [u32; 16], // 0x290
    pub e820_table: [E820Entry; 128],  // 0x2D0
    pub _pad8: [u8; 0x30],             // 0xCD0
    pub eddbuf: [u8; 0x1EC],           // 0xD00
    pub _pad9: [u8; 0x114],            // 0xEEC
}

/// The head of one `setup_data` node; `len` bytes of payload follow.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SetupData {
    pub next: u64, // 0x00
    pub typ: u32,  // 0x08
    pub len: u32,  // 0x0C
}
const _: () = assert!(size_of::<SetupData>() == 16);

impl SetupData {
    /// Its 16 bytes, little-endian, as the kernel reads them.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&{ self.next }.to_le_bytes());
        b[8..12].copy_from_slice(&{ self.typ }.to_le_bytes());
        b[12..].copy_from_slice(&{ self.len }.to_le_bytes());
        b
    }
}

impl E820Entry {
    /// Its 20 bytes, little-endian, as the kernel reads them.
    pub fn to_bytes(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(&{ self.addr }.to_le_bytes());
        b[8..16].copy_from_slice(&{ self.size }.to_le_bytes());
        b[16..].copy_from_slice(&{ self.typ }.to_le_bytes());
        b
    }
}

const _: () = {
    // the contract's offsets, which the xtask's bzImage writer uses
    assert!(size_of::<SetupHeader>() == at::END - at::START);
    assert!(offset_of!(SetupHeader, setup_sects) == at::SETUP_SECTS - at::START);
    assert!(offset_of!(SetupHeader, syssize) == at::SYSSIZE - at::START);
    assert!(offset_of!(SetupHeader, boot_flag) == at::BOOT_FLAG - at::START);
    assert!(offset_of!(SetupHeader, jump) == at::JUMP - at::START);
    assert!(offset_of!(SetupHeader, header) == at::HEADER - at::START);
    assert!(offset_of!(SetupHeader, version) == at::VERSION - at::START);
    assert!(offset_of!(SetupHeader, type_of_loader) == at::TYPE_OF_LOADER - at::START);
    assert!(offset_of!(SetupHeader, loadflags) == at::LOADFLAGS - at::START);
    assert!(offset_of!(SetupHeader, code32_start) == at::CODE32_START - at::START);
    assert!(offset_of!(SetupHeader, cmd_line_ptr) == at::CMD_LINE_PTR - at::START);
    assert!(offset_of!(SetupHeader, initrd_addr_max) == at::INITRD_ADDR_MAX - at::START);
    assert!(offset_of!(SetupHeader, kernel_alignment) == at::KERNEL_ALIGNMENT - at::START);
    assert!(offset_of!(SetupHeader, relocatable_kernel) == at::RELOCATABLE_KERNEL - at::START);
    assert!(offset_of!(SetupHeader, min_alignment) == at::MIN_ALIGNMENT - at::START);
    assert!(offset_of!(SetupHeader, xloadflags) == at::XLOADFLAGS - at::START);
    assert!(offset_of!(SetupHeader, cmdline_size) == at::CMDLINE_SIZE - at::START);
    assert!(offset_of!(SetupHeader, setup_data) == at::SETUP_DATA - at::START);
    assert!(offset_of!(SetupHeader, pref_address) == at::PREF_ADDRESS - at::START);
    assert!(offset_of!(SetupHeader, init_size) == at::INIT_SIZE - at::START);
    assert!(offset_of!(SetupHeader, handover_offset) == at::HANDOVER_OFFSET - at::START);
    assert!(offset_of!(SetupHeader, kernel_info_offset) == at::KERNEL_INFO_OFFSET - at::START);
    assert!(size_of::<BootParams>() == 4096);
    assert!(offset_of!(BootParams, acpi_rsdp_addr) == 0x070);
    assert!(offset_of!(BootParams, ext_ramdisk_image) == 0x0C0);
    assert!(offset_of!(BootParams, ext_cmd_line_ptr) == 0x0C8);
    assert!(offset_of!(BootParams, cc_blob_address) == 0x13C);
    assert!(offset_of!(BootParams, efi_info) == 0x1C0);
    assert!(offset_of!(BootParams, e820_entries) == 0x1E8);
    assert!(offset_of!(BootParams, sentinel) == 0x1EF);
    assert!(offset_of!(BootParams, hdr) == SETUP_HEADER_OFFSET);
    assert!(offset_of!(BootParams, edd_mbr_sig_buffer) == 0x290);
    assert!(offset_of!(BootParams, e820_table) == 0x2D0);
    assert!(offset_of!(BootParams, eddbuf) == 0xD00);
};

impl SetupHeader {
    /// The header in place at the start of a kernel image (or of QEMU's
    /// SETUP_DATA item), borrowed rather than copied: a copy of 0x78 bytes of
    /// packed fields is code to translate. `None` if the image is too short.
    pub fn in_image(image: &[u8]) -> Option<&SetupHeader> {
        let bytes = image.get(SETUP_HEADER_OFFSET..SETUP_HEADER_END)?;
        // SAFETY: `bytes` is exactly size_of::<SetupHeader>() long, SetupHeader is
        // repr(C, packed) (alignment 1) and every bit pattern is a valid value;
        // the reference borrows `image`.
        Some(unsafe { &*bytes.as_ptr().cast::<SetupHeader>() })
    }

    /// The number of header bytes the image itself declares: `0x202 + byte[0x201]`,
    /// minus 0x1F1 and clamped to the header we know of.
    pub fn declared_len(image: &[u8]) -> usize {
        let end = 0x202 + image.get(0x201).copied().unwrap_or(0) as usize;
        end.clamp(SETUP_HEADER_OFFSET, SETUP_HEADER_END) - SETUP_HEADER_OFFSET
    }
}

impl BootParams {
    /// A zero page with every byte zero (and so the sentinel clear).
    pub const fn zeroed() -> BootParams {
        // SAFETY: BootParams is plain old data; all-zero is a valid value.
        unsafe { core::mem::zeroed() }
    }

    /// Copies the kernel's setup header into this zero page following the boot
    /// protocol's rule: only the bytes from 0x1F1 up to `0x202 + byte[0x201]`,
    /// never the sentinel and never beyond what the image holds.
    pub fn copy_header_from(&mut self, image: &[u8]) {
        if image.len() <= SETUP_HEADER_OFFSET {
            return;
        }
        let len = SetupHeader::declared_len(image).min(image.len() - SETUP_HEADER_OFFSET);
        let src = &image[SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + len];
        // SAFETY: `hdr` is a packed field of `self` of size_of::<SetupHeader>() bytes
        // (alignment 1) and `len` is at most that; the slice cannot overlap
        // `image` (borrowed shared, `self` exclusively).
        let dst = unsafe {
            core::slice::from_raw_parts_mut(core::ptr::addr_of_mut!(self.hdr).cast::<u8>(), len)
        };
        // (A byte loop, not `memcpy`: see mem::copy.)
        crate::mem::copy(dst, src);
    }

    /// The zero page as bytes (what the kernel will read).
    pub fn as_bytes(&self) -> &[u8; 4096] {
        // SAFETY: BootParams is exactly 4096 bytes with alignment 1.
        unsafe { &*(self as *const BootParams).cast::<[u8; 4096]>() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with_header() -> [u8; 1024] {
        let mut img = [0u8; 1024];
        img[0x1EF] = 0xFF; // sentinel set as header.S does
        img[0x1F1] = 7;
        img[0x1FE..0x200].copy_from_slice(&BOOT_FLAG.to_le_bytes());
        img[0x200] = 0xEB;
        img[0x201] = 0x6A; // header end 0x26C
        img[0x202..0x206].copy_from_slice(&HDRS_MAGIC.to_le_bytes());
        img[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
        img[0x26C] = 0xAB; // beyond the header: must not be copied
        img
    }

    #[test]
    fn header_copy_stops_at_declared_end_and_skips_sentinel() {
        let img = image_with_header();
        let mut bp = BootParams::zeroed();
        bp.copy_header_from(&img);
        let bytes = bp.as_bytes();
        assert_eq!(bytes[0x1EF], 0, "sentinel must stay clear");
        assert_eq!(bytes[0x1F1], 7);
        assert_eq!({ bp.hdr.header }, HDRS_MAGIC);
        assert_eq!({ bp.hdr.version }, 0x020F);
        assert_eq!(bytes[0x26C], 0);
    }

    #[test]
    fn header_copy_of_short_image_is_clamped() {
        let img = image_with_header();
        let mut bp = BootParams::zeroed();
        bp.copy_header_from(&img[..0x204]);
        assert_eq!(bp.as_bytes()[0x202], 0x48);
        assert_eq!(bp.as_bytes()[0x204], 0);
        // shorter than the header start: nothing copied, no panic
        let mut bp = BootParams::zeroed();
        bp.copy_header_from(&img[..0x100]);
        assert!(bp.as_bytes().iter().all(|&b| b == 0));
    }

    #[test]
    fn hostile_jump_byte_is_clamped() {
        let mut img = image_with_header();
        img[0x201] = 0xFF; // claims a header far beyond 0x26C
        img[0x26C] = 0xAB;
        let mut bp = BootParams::zeroed();
        bp.copy_header_from(&img);
        assert_eq!(bp.as_bytes()[0x26C], 0);
        assert_eq!(SetupHeader::declared_len(&img), size_of::<SetupHeader>());
    }
}
