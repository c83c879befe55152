//! Segment descriptors and selectors. The GDTs themselves live in the ROM
//! (asm/boot.s) and are built from these constants.

use bitflags::bitflags;

bitflags! {
    /// Bits of a code or data segment descriptor.
    #[derive(Clone, Copy)]
    pub struct Descriptor: u64 {
        const ACCESSED = 1 << 40;
        const WRITABLE = 1 << 41; // data
        const READABLE = 1 << 41; // code
        const EXECUTABLE = 1 << 43;
        const USER_SEGMENT = 1 << 44;
        const PRESENT = 1 << 47;
        const LONG_MODE = 1 << 53;
        const DEFAULT_SIZE_32 = 1 << 54;
        const GRANULARITY_4K = 1 << 55;
        const LIMIT_0_15 = 0xFFFF;
        const LIMIT_16_19 = 0xF << 48;
    }
}

const FLAT: Descriptor = Descriptor::PRESENT
    .union(Descriptor::USER_SEGMENT)
    .union(Descriptor::ACCESSED) // preset: the GDT is in ROM
    .union(Descriptor::GRANULARITY_4K)
    .union(Descriptor::LIMIT_0_15)
    .union(Descriptor::LIMIT_16_19);

/// 4 GiB flat 32-bit code, execute/read.
pub const CODE32: u64 = FLAT
    .union(Descriptor::EXECUTABLE)
    .union(Descriptor::READABLE)
    .union(Descriptor::DEFAULT_SIZE_32)
    .bits();
/// 64-bit code.
pub const CODE64: u64 = FLAT
    .union(Descriptor::EXECUTABLE)
    .union(Descriptor::READABLE)
    .union(Descriptor::LONG_MODE)
    .bits();
/// 4 GiB flat data, read/write.
pub const DATA: u64 = FLAT
    .union(Descriptor::WRITABLE)
    .union(Descriptor::DEFAULT_SIZE_32)
    .bits();

/// The S3 resume path's way back to real mode (asm/boot.s): 16-bit code over
/// the ROM's top 64 KiB, where the reset vector's segment points (base
/// 0xFFFF0000, 64 KiB limit, byte granular).
pub const CODE16_ROM: u64 = Descriptor::PRESENT
    .union(Descriptor::USER_SEGMENT)
    .union(Descriptor::ACCESSED)
    .union(Descriptor::EXECUTABLE)
    .union(Descriptor::READABLE)
    .union(Descriptor::LIMIT_0_15)
    .bits()
    | 0xFF << 56
    | 0xFF << 32;
/// 16-bit data with real mode's 64 KiB limit, loaded before protection is
/// switched off so that the segment caches are what real mode expects.
pub const DATA16: u64 = Descriptor::PRESENT
    .union(Descriptor::USER_SEGMENT)
    .union(Descriptor::ACCESSED)
    .union(Descriptor::WRITABLE)
    .union(Descriptor::LIMIT_0_15)
    .bits();

/// Selectors of the firmware's GDT.
pub const FIRMWARE_CS32: u16 = 0x08;
pub const FIRMWARE_CS64: u16 = 0x10;
pub const FIRMWARE_CS16: u16 = 0x20;
pub const FIRMWARE_DS16: u16 = 0x28;
/// The Linux boot protocol's `__BOOT_CS` and `__BOOT_DS`.
pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;

const _: () = {
    assert!(CODE32 == 0x00CF_9B00_0000_FFFF);
    assert!(CODE64 == 0x00AF_9B00_0000_FFFF);
    assert!(DATA == 0x00CF_9300_0000_FFFF);
    assert!(CODE16_ROM == 0xFF00_9BFF_0000_FFFF);
    assert!(DATA16 == 0x0000_9300_0000_FFFF);
    // the firmware runs its 64-bit code on the selector Linux expects
    assert!(FIRMWARE_CS64 == BOOT_CS);
};
