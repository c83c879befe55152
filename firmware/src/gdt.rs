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

/// Selectors of the firmware's GDT.
pub const FIRMWARE_CS32: u16 = 0x08;
pub const FIRMWARE_CS64: u16 = 0x10;
/// The Linux boot protocol's `__BOOT_CS` and `__BOOT_DS`.
pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;

const _: () = {
    assert!(CODE32 == 0x00CF_9B00_0000_FFFF);
    assert!(CODE64 == 0x00AF_9B00_0000_FFFF);
    assert!(DATA == 0x00CF_9300_0000_FFFF);
    // the firmware runs its 64-bit code on the selector Linux expects
    assert!(FIRMWARE_CS64 == BOOT_CS);
};
