//! The start-up assembly (asm/boot.s) and the kernel hand-off (asm/handoff.s),
//! with every constant they use defined here, once.

use x86_64::registers::control::{Cr0Flags, Cr4Flags};
use x86_64::registers::model_specific::EferFlags;

use ferrite::chipset;
use ferrite::fwcfg;
use ferrite::s3;
use ferrite_contract::marker;

use ferrite::boot::{EBDA, RESUME_BLOCK};

use crate::gdt;
use crate::s3_scripts;

/// The ROM's size (firmware/build.rs) and where QEMU maps it.
pub const ROM_SIZE: u64 = parse(env!("FERRITE_ROM_SIZE"));
pub const ROM_BASE: u64 = (1 << 32) - ROM_SIZE;

/// Boot markers (the convention of qboot's benchmark build and NEMU), as the
/// contract with the host defines them.
pub const MARKER_START_PORT: u16 = marker::START_PORT;
pub const MARKER_START: u8 = marker::START;
pub const MARKER_KERNEL_PORT: u16 = marker::KERNEL_PORT;
/// Written right before jumping to a bzImage kernel.
pub const MARKER_KERNEL_BZIMAGE: u8 = marker::KERNEL_BZIMAGE;
/// Written right before jumping to a kernel's PVH entry.
pub const MARKER_KERNEL_PVH: u8 = marker::KERNEL_PVH;
/// Written right before jumping to a multiboot kernel.
pub const MARKER_KERNEL_MULTIBOOT: u8 = marker::KERNEL_MULTIBOOT;

const EFER_MSR: u32 = 0xC000_0080;

core::arch::global_asm!(
    include_str!("asm/boot.s"),
    marker_port = const MARKER_START_PORT,
    marker_value = const MARKER_START,
    cr0_clear = const !(Cr0Flags::CACHE_DISABLE.bits() | Cr0Flags::NOT_WRITE_THROUGH.bits()) as u32,
    cr0_pe = const Cr0Flags::PROTECTED_MODE_ENABLE.bits(),
    cr0_pg = const Cr0Flags::PAGING.bits() as u32,
    cr4_pae = const Cr4Flags::PHYSICAL_ADDRESS_EXTENSION.bits(),
    efer_msr = const EFER_MSR,
    efer_lme = const EferFlags::LONG_MODE_ENABLE.bits(),
    code32 = const gdt::FIRMWARE_CS32,
    code64 = const gdt::FIRMWARE_CS64,
    data = const gdt::BOOT_DS,
    code32_desc = const gdt::CODE32,
    code64_desc = const gdt::CODE64,
    data_desc = const gdt::DATA,
    page_tables = sym crate::paging::ROM_PAGE_TABLES,
    main = sym crate::rust_main,
    fw_cfg_dma_low = const fwcfg::PORT_DMA_LOW,
    zero_fill_control = const fwcfg::ZERO_FILL_CONTROL_BE,
    exception = sym crate::cpu_exception,
    // S3 resume
    cmos_index = const chipset::CMOS_INDEX,
    cmos_data = const chipset::CMOS_DATA,
    cmos_shutdown_status = const s3::CMOS_SHUTDOWN_STATUS,
    s3_status = const s3::SHUTDOWN_S3_RESUME,
    resume_block = const RESUME_BLOCK,
    resume_magic = const s3::RESUME_MAGIC,
    block_magic = const s3::RESUME_BLOCK_MAGIC,
    block_facs = const s3::RESUME_BLOCK_FACS,
    block_script = const s3::RESUME_BLOCK_SCRIPT,
    block_jump = const s3::RESUME_BLOCK_JUMP,
    script_pc = const s3::SCRIPT_PC,
    script_q35 = const s3::SCRIPT_Q35,
    pc_script = sym s3_scripts::PC_SCRIPT,
    q35_script = sym s3_scripts::Q35_SCRIPT,
    pw_port = const s3::PORT_WRITE_PORT,
    pw_width = const s3::PORT_WRITE_WIDTH,
    pw_value = const s3::PORT_WRITE_VALUE,
    pw_size = const s3::PORT_WRITE_SIZE,
    facs_signature = const s3::FACS_SIGNATURE,
    facs_waking_vector = const s3::FACS_WAKING_VECTOR,
    waking_vector_limit = const s3::WAKING_VECTOR_LIMIT,
    wake_not_armed = const s3::WAKE_NOT_ARMED,
    wake_no_facs = const s3::WAKE_NO_FACS,
    wake_no_vector = const s3::WAKE_NO_VECTOR,
    code16 = const gdt::FIRMWARE_CS16,
    data16 = const gdt::FIRMWARE_DS16,
    code16_desc = const gdt::CODE16_ROM,
    data16_desc = const gdt::DATA16,
    cr0_no_pe = const !(Cr0Flags::PROTECTED_MODE_ENABLE.bits() as u32),
    ebda_segment = const EBDA.start >> 4,
    ebda_jump = const RESUME_BLOCK - EBDA.start + s3::RESUME_BLOCK_JUMP as u64,
    options(att_syntax),
);

// The real-mode far jump reaches the resume block through the EBDA's segment.
const _: () = assert!(RESUME_BLOCK - EBDA.start + (s3::RESUME_BLOCK_JUMP as u64) < 0x1_0000);

core::arch::global_asm!(
    include_str!("asm/handoff.s"),
    boot_cs = const gdt::BOOT_CS,
    boot_ds = const gdt::BOOT_DS,
    cr0_no_pg = const !(Cr0Flags::PAGING.bits() as u32),
    cr4_no_pae = const !(Cr4Flags::PHYSICAL_ADDRESS_EXTENSION.bits() as u32),
    efer_msr = const EFER_MSR,
    efer_no_lme = const !(EferFlags::LONG_MODE_ENABLE.bits() as u32),
    cr0_pe = const Cr0Flags::PROTECTED_MODE_ENABLE.bits() as u32,
    options(att_syntax),
);

unsafe extern "C" {
    /// Enters a kernel through the 64-bit boot protocol.
    pub fn enter_linux64(entry: u64, boot_params: u64) -> !;
    /// Enters a kernel through the 32-bit boot protocol (both below 4 GiB).
    pub fn enter_linux32(entry: u32, boot_params: u32) -> !;
    /// Enters a kernel in 32-bit flat protected mode, paging off, with `ebx` and
    /// `eax` in those registers: the PVH and multiboot entries.
    pub fn enter_flat32(entry: u32, ebx: u32, eax: u32) -> !;
}

pub const fn parse(s: &str) -> u64 {
    let b = s.as_bytes();
    let mut v = 0u64;
    let mut i = 0;
    while i < b.len() {
        v = v * 10 + (b[i] - b'0') as u64;
        i += 1;
    }
    v
}

const _: () = assert!(ROM_SIZE.is_multiple_of(64 * 1024) && ROM_SIZE >= 64 * 1024);
