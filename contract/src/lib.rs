//! What ferrite agrees on with whoever runs it: the ports and values it writes
//! for the host to see, the `opt/ferrite/*` fw_cfg names it reads, the timeline
//! it reports, and the setup-header offsets a bzImage writer needs.
//!
//! The firmware, `cargo xtask` and the QEMU integration tests all take these
//! values from here, so that they are written once (in the spirit of hermit's
//! `hermit-entry` crate). The test kernel (`tests/testkernel`) keeps its own raw
//! numbers on purpose: it is the independent check of what ferrite hands over.
//!
//! `no_std`, without dependencies, constants only: using it changes none of the
//! firmware's generated code.

#![no_std]

/// QEMU's exit status for a `value` written to an `isa-debug-exit` device
/// (`-device isa-debug-exit,iobase=P,iosize=1`): `(value << 1) | 1`.
pub const fn qemu_exit(value: u8) -> i32 {
    ((value as i32) << 1) | 1
}

/// Boot-time markers, the convention of qboot's benchmark build and NEMU's
/// method: a byte written to a port that nothing listens on in production and
/// that an `isa-debug-exit` (or a timed `isa-debugcon`) on that port catches.
pub mod marker {
    /// Written by ferrite at its first port write (the reset vector): tQEMU.
    pub const START_PORT: u16 = 0xF5;
    /// The value on [`START_PORT`].
    pub const START: u8 = 1;

    /// Written by ferrite just before it jumps to the kernel: tQEMU + tFW.
    /// A failed boot writes its [`status`](crate::status) here instead.
    pub const KERNEL_PORT: u16 = 0xF4;
    /// On [`KERNEL_PORT`] before the jump to a multiboot kernel.
    pub const KERNEL_MULTIBOOT: u8 = 2;
    /// On [`KERNEL_PORT`] before the jump to a bzImage (64- or 32-bit entry).
    pub const KERNEL_BZIMAGE: u8 = 3;
    /// On [`KERNEL_PORT`] before the jump to a PVH entry.
    pub const KERNEL_PVH: u8 = 4;

    /// Written by the guest's first userspace process (the bench's and the
    /// tests' `/init`), or by the small bench kernel's patched `kernel_init`:
    /// tQEMU + tFW + tKernel. ferrite itself never writes it.
    pub const USER_PORT: u16 = 0xF6;
    /// The value on [`USER_PORT`].
    pub const USER: u8 = 2;

    const _: () = assert!(START_PORT != KERNEL_PORT && KERNEL_PORT != USER_PORT);
    const _: () = assert!(START_PORT != USER_PORT);
    const _: () = assert!(
        KERNEL_MULTIBOOT != KERNEL_BZIMAGE
            && KERNEL_BZIMAGE != KERNEL_PVH
            && KERNEL_MULTIBOOT != KERNEL_PVH
    );
}

/// What a failed boot writes to [`PORT`] (then it powers off, resets or halts
/// as `opt/ferrite/on-error` says). One value per kind of failure, in
/// 0x20..0x40, apart from the [`marker`] values and from the test kernel's.
pub mod status {
    /// The status port: the same as the kernel marker's, so that one
    /// `isa-debug-exit` tells a kernel entry from a failure.
    pub const PORT: u16 = crate::marker::KERNEL_PORT;

    /// No QEMU fw_cfg device answers at 0x510.
    pub const NO_FW_CFG: u8 = 0x20;
    /// A fw_cfg transfer failed, a needed file is missing or larger than ferrite reads.
    pub const FW_CFG: u8 = 0x21;
    /// QEMU was started without `-kernel`.
    pub const NO_KERNEL: u8 = 0x22;
    /// The kernel is not a bzImage (no "HdrS" setup header).
    pub const NOT_BZIMAGE: u8 = 0x23;
    /// The boot protocol is too old, or the setup header holds impossible values.
    pub const BAD_HEADER: u8 = 0x24;
    /// No free RAM where the kernel must (or could) run.
    pub const KERNEL_DOES_NOT_FIT: u8 = 0x25;
    /// No free RAM for the initrd below its limit.
    pub const INITRD_DOES_NOT_FIT: u8 = 0x26;
    /// The command line is longer than the kernel accepts.
    pub const CMDLINE_TOO_LONG: u8 = 0x27;
    /// `etc/e820` is malformed or the final map does not fit.
    pub const MEMORY_MAP: u8 = 0x28;
    /// `etc/table-loader` could not be executed.
    pub const ACPI: u8 = 0x29;
    /// QEMU's `setup_data` list is malformed.
    pub const SETUP_DATA: u8 = 0x2A;
    /// The firmware's own tables (high zone, BIOS segment) ran out of room.
    pub const OUT_OF_FIRMWARE_MEMORY: u8 = 0x2B;
    /// The PCI devices cannot all be given addresses.
    pub const PCI: u8 = 0x2C;
    /// An ELF kernel without a usable PVH entry note, or a malformed ELF.
    pub const NO_PVH_ENTRY: u8 = 0x2D;
    /// The PVH entry lies above 4 GiB or outside the kernel's segments.
    pub const PVH_ENTRY_OUTSIDE: u8 = 0x2E;
    /// A Rust panic inside ferrite.
    pub const PANIC: u8 = 0x2F;
    /// QEMU loaded the kernel's segments over ferrite's memory below 1 MiB.
    pub const SEGMENTS_OVERLAP_FIRMWARE: u8 = 0x30;
    /// A multiboot header ferrite cannot honour.
    pub const BAD_MULTIBOOT: u8 = 0x31;
    /// ferrite's heap cannot hold what QEMU handed over (e820 map, fw_cfg
    /// directory, table-loader script, PCI functions and BARs).
    pub const OUT_OF_HEAP: u8 = 0x32;

    /// Every status with its meaning.
    pub const ALL: [(u8, &str); 19] = [
        (NO_FW_CFG, "no fw_cfg device"),
        (
            FW_CFG,
            "fw_cfg transfer failed, file missing or too large, impossible directory",
        ),
        (NO_KERNEL, "no -kernel"),
        (NOT_BZIMAGE, "not a bzImage"),
        (BAD_HEADER, "boot protocol too old or bad setup header"),
        (KERNEL_DOES_NOT_FIT, "no room for the kernel"),
        (INITRD_DOES_NOT_FIT, "no room for the initrd"),
        (CMDLINE_TOO_LONG, "command line too long"),
        (MEMORY_MAP, "bad memory map"),
        (ACPI, "ACPI table loader failed"),
        (SETUP_DATA, "bad setup_data list"),
        (OUT_OF_FIRMWARE_MEMORY, "firmware out of memory"),
        (PCI, "PCI set-up failed"),
        (NO_PVH_ENTRY, "no usable PVH entry"),
        (
            PVH_ENTRY_OUTSIDE,
            "PVH entry outside the kernel or above 4 GiB",
        ),
        (PANIC, "panic"),
        (
            SEGMENTS_OVERLAP_FIRMWARE,
            "kernel segments over the firmware",
        ),
        (BAD_MULTIBOOT, "unsupported multiboot header"),
        (
            OUT_OF_HEAP,
            "firmware heap too small for what QEMU hands over",
        ),
    ];

    /// The meaning of a status ferrite writes, if it is one.
    pub fn meaning(status: u8) -> Option<&'static str> {
        ALL.iter().find(|s| s.0 == status).map(|s| s.1)
    }

    // Distinct, and never a boot marker's value.
    const _: () = {
        let mut i = 0;
        while i < ALL.len() {
            assert!(ALL[i].0 >= 0x20 && ALL[i].0 < 0x40);
            let mut j = i + 1;
            while j < ALL.len() {
                assert!(ALL[i].0 != ALL[j].0);
                j += 1;
            }
            i += 1;
        }
    };
}

/// [`timeline::PREFIX`] as a literal, for `write!` format strings (the
/// firmware's report writes it without formatting anything).
#[macro_export]
macro_rules! timeline_prefix {
    () => {
        "ferrite-timeline:"
    };
}

/// ferrite's own fw_cfg files (`-fw_cfg name=<name>,string=<value>`).
pub mod fw_cfg {
    /// ferrite's log level on COM1: error, warn, info, debug, trace.
    pub const LOG_LEVEL: &str = "opt/ferrite/log-level";
    /// What a failed boot does after its status: poweroff, reboot, halt.
    pub const ON_ERROR: &str = "opt/ferrite/on-error";
    /// "1"/"on"/"true" asks for the timeline report on the debug console.
    pub const TIMELINE: &str = "opt/ferrite/timeline";
}

/// [`timeline::STAMP_SECTION`] as a literal, for the firmware's `asm!`.
#[macro_export]
macro_rules! stamp_section {
    () => {
        ".ferrite_stamps"
    };
}

/// The boot timeline: with [`fw_cfg::TIMELINE`] on, ferrite writes one line
/// `ferrite-timeline: reset=0 rust=N ... zero_page=N` (TSC ticks since the reset
/// vector, one per step in [`STEPS`] order) to the debug console [`PORT`].
pub mod timeline {
    /// QEMU's `-debugcon` (isa-debugcon) default port, where the report goes.
    pub const PORT: u16 = 0xE9;
    /// What the report line starts with.
    pub const PREFIX: &str = crate::timeline_prefix!();
    /// The firmware's ELF section (not loaded, not in the ROM) that lists the
    /// address of every stamp's `rdtsc`, one little-endian u64 each: each is
    /// taken inline, and its address splits an instruction trace into steps.
    pub const STAMP_SECTION: &str = crate::stamp_section!();

    /// The reset vector ran (the stamp is taken in boot.s).
    pub const RESET: &str = "reset";
    /// Rust entered, RAM image copied.
    pub const RUST: &str = "rust";
    pub const FW_CFG: &str = "fw_cfg";
    pub const MEMORY_MAP: &str = "e820";
    /// PCI, BIOS segment, legacy devices, MTRRs, other CPUs woken (pc, q35).
    pub const HARDWARE: &str = "pci_hardware";
    pub const KERNEL_HEADER: &str = "kernel_header";
    /// ACPI and SMBIOS tables.
    pub const ACPI: &str = "acpi_smbios";
    pub const KERNEL: &str = "kernel";
    pub const INITRD: &str = "initrd_cmdline";
    /// Waiting for the other CPUs, the MP table.
    pub const CPUS: &str = "cpus_mptable";
    pub const ZERO_PAGE: &str = "zero_page";

    /// The steps in the order they are stamped and reported.
    pub const STEPS: [&str; 11] = [
        RESET,
        RUST,
        FW_CFG,
        MEMORY_MAP,
        KERNEL_HEADER,
        HARDWARE,
        ACPI,
        KERNEL,
        INITRD,
        CPUS,
        ZERO_PAGE,
    ];

    /// `a == b`, usable in constants (the firmware checks its step names with it).
    pub const fn same(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }
}

/// The Linux x86 setup header (Documentation/arch/x86/boot.rst): byte offsets
/// from the start of the kernel image (and of `boot_params`), and the values
/// ferrite checks. The firmware's `SetupHeader` is checked against these at
/// compile time.
pub mod setup_header {
    /// Where the header starts: `setup_sects`.
    pub const START: usize = 0x1F1;
    pub const SETUP_SECTS: usize = 0x1F1;
    pub const SYSSIZE: usize = 0x1F4;
    /// [`BOOT_FLAG_VALUE`] here.
    pub const BOOT_FLAG: usize = 0x1FE;
    /// A short jump over the header: 0xEB, then the header's length past 0x202.
    pub const JUMP: usize = 0x200;
    /// "HdrS" ([`MAGIC`]) here.
    pub const HEADER: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const CODE32_START: usize = 0x214;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22C;
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    pub const RELOCATABLE_KERNEL: usize = 0x234;
    pub const MIN_ALIGNMENT: usize = 0x235;
    pub const XLOADFLAGS: usize = 0x236;
    pub const CMDLINE_SIZE: usize = 0x238;
    pub const SETUP_DATA: usize = 0x250;
    pub const PREF_ADDRESS: usize = 0x258;
    pub const INIT_SIZE: usize = 0x260;
    pub const HANDOVER_OFFSET: usize = 0x264;
    pub const KERNEL_INFO_OFFSET: usize = 0x268;
    /// One past the last field of protocol 2.15.
    pub const END: usize = 0x26C;

    /// "HdrS", little-endian, at [`HEADER`].
    pub const MAGIC: u32 = u32::from_le_bytes(*b"HdrS");
    /// At [`BOOT_FLAG`].
    pub const BOOT_FLAG_VALUE: u16 = 0xAA55;

    /// `loadflags` bit: the protected-mode code is loaded at 0x100000 (a bzImage).
    pub const LOADED_HIGH: u8 = 1 << 0;
    /// `xloadflags` bit: a 64-bit entry at load address + 0x200.
    pub const XLF_KERNEL_64: u16 = 1 << 0;
    /// `xloadflags` bit: kernel, initrd, zero page and command line may live above 4 GiB.
    pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
    /// `xloadflags` bit: the 64-bit EFI handover entry.
    pub const XLF_EFI_HANDOVER_64: u16 = 1 << 3;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_are_qemus() {
        assert_eq!(qemu_exit(marker::KERNEL_BZIMAGE), 7);
        assert_eq!(qemu_exit(marker::USER), 5);
        assert_eq!(qemu_exit(status::PANIC), 0x5F);
    }

    #[test]
    fn every_status_has_a_meaning() {
        assert_eq!(status::meaning(status::PANIC), Some("panic"));
        assert_eq!(status::meaning(marker::KERNEL_BZIMAGE), None);
    }

    /// The README's table of error statuses lists exactly these, with QEMU's
    /// exit status for each.
    #[test]
    fn the_readme_lists_every_status() {
        let readme = include_str!("../../README.md");
        let mut listed = 0;
        for line in readme.lines() {
            let cells: [&str; 3] = {
                let mut c = line.split('|').map(str::trim).skip(1);
                [c.next(), c.next(), c.next()].map(Option::unwrap_or_default)
            };
            let Some(hex) = cells[0].strip_prefix("0x") else {
                continue;
            };
            let (Ok(value), Ok(exit)) = (u8::from_str_radix(hex, 16), cells[1].parse::<i32>())
            else {
                continue;
            };
            if !(0x20..0x40).contains(&value) {
                continue; // the markers' table
            }
            assert!(status::meaning(value).is_some(), "{line}");
            assert_eq!(qemu_exit(value), exit, "{line}");
            listed += 1;
        }
        assert_eq!(listed, status::ALL.len());
    }

    #[test]
    fn steps_compare_as_strings() {
        assert!(timeline::same(timeline::STEPS[0], "reset"));
        assert!(!timeline::same("reset", "rese"));
        assert_eq!(setup_header::MAGIC, 0x5372_6448);
    }
}
