//! Everything that stops a boot, with the one-line explanation printed on COM1 and
//! the status written to the isa-debug-exit port (QEMU exits with `status * 2 + 1`).

use core::fmt;

use ferrite_contract::status;

use crate::acpi::LoaderError;
use crate::e820::E820Error;
use crate::heap::{HEAP_SIZE, OutOfHeap};
use crate::pci::PciError;

/// Port of the "firmware done" marker, also used for error statuses so that one
/// `-device isa-debug-exit,iobase=0xf4,iosize=1` sees either 3 (kernel entered) or
/// an error status.
pub const STATUS_PORT: u16 = status::PORT;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No QEMU fw_cfg device answers at 0x510.
    NoFwCfg,
    /// fw_cfg reported a DMA error (or never completed a transfer).
    FwCfgDma { selector: u16 },
    /// The fw_cfg file directory lists more files than fw_cfg has selectors.
    BadFileDirectory { count: usize },
    /// A fw_cfg file the boot needs is missing.
    MissingFile(&'static str),
    /// A fw_cfg file is larger than ferrite reads (it is never cut short).
    FileTooLarge {
        name: &'static str,
        size: u32,
        max: u32,
    },
    /// QEMU was started without `-kernel`.
    NoKernel,
    /// The kernel has no "HdrS" setup header, or is not a bzImage.
    NotBzImage,
    /// The boot protocol is older than ferrite supports.
    ProtocolTooOld { version: u16 },
    /// The setup header holds values no kernel can have (e.g. a bad alignment).
    BadHeader(&'static str),
    /// There is no free RAM where the kernel must (or could) run.
    KernelDoesNotFit { size: u64, at: u64 },
    /// There is no free RAM for the initrd below its limit.
    InitrdDoesNotFit { size: u64, limit: u64 },
    /// The command line is longer than the kernel accepts.
    CmdlineTooLong { len: u64, max: u64 },
    /// `etc/e820` is malformed or the final map does not fit.
    MemoryMap(E820Error),
    /// `etc/table-loader` could not be executed.
    Acpi(LoaderError),
    /// The `setup_data` list QEMU passed is malformed.
    SetupData(&'static str),
    /// The firmware's own tables (high zone, page tables) ran out of room.
    OutOfFirmwareMemory(&'static str),
    /// The PCI devices cannot all be given addresses.
    Pci(PciError),
    /// An ELF kernel without a usable PVH entry note (or a malformed ELF).
    NoPvhEntry(&'static str),
    /// The PVH entry lies above 4 GiB or outside the kernel's segments.
    PvhEntryOutside { entry: u64 },
    /// QEMU loaded the kernel's segments over ferrite's own memory.
    SegmentsOverlapFirmware { start: u64, end: u64 },
    /// A multiboot header ferrite cannot honour.
    BadMultiboot(&'static str),
    /// ferrite's heap cannot hold what QEMU handed over (`what`, `bytes` in all).
    OutOfHeap { what: &'static str, bytes: usize },
    /// ferrite addressed guest memory outside what it may write: a bug in
    /// ferrite (every range is checked before it is used), never the guest's.
    GuestMemory { at: u64, len: u64 },
}

/// Status of a Rust panic inside ferrite.
pub const STATUS_PANIC: u8 = status::PANIC;

impl Error {
    /// The value written to [`STATUS_PORT`]; QEMU's exit status is `value * 2 + 1`.
    pub fn status(&self) -> u8 {
        match self {
            Error::NoFwCfg => status::NO_FW_CFG,
            Error::FwCfgDma { .. }
            | Error::BadFileDirectory { .. }
            | Error::MissingFile(_)
            | Error::FileTooLarge { .. } => status::FW_CFG,
            Error::NoKernel => status::NO_KERNEL,
            Error::NotBzImage => status::NOT_BZIMAGE,
            Error::ProtocolTooOld { .. } | Error::BadHeader(_) => status::BAD_HEADER,
            Error::KernelDoesNotFit { .. } => status::KERNEL_DOES_NOT_FIT,
            Error::InitrdDoesNotFit { .. } => status::INITRD_DOES_NOT_FIT,
            Error::CmdlineTooLong { .. } => status::CMDLINE_TOO_LONG,
            Error::MemoryMap(_) => status::MEMORY_MAP,
            Error::Acpi(_) => status::ACPI,
            Error::SetupData(_) => status::SETUP_DATA,
            Error::OutOfFirmwareMemory(_) => status::OUT_OF_FIRMWARE_MEMORY,
            Error::Pci(_) => status::PCI,
            Error::NoPvhEntry(_) => status::NO_PVH_ENTRY,
            Error::PvhEntryOutside { .. } => status::PVH_ENTRY_OUTSIDE,
            Error::SegmentsOverlapFirmware { .. } => status::SEGMENTS_OVERLAP_FIRMWARE,
            Error::BadMultiboot(_) => status::BAD_MULTIBOOT,
            Error::OutOfHeap { .. } => status::OUT_OF_HEAP,
            Error::GuestMemory { .. } => status::PANIC,
        }
    }
}

const MIB: u64 = 1 << 20;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::NoFwCfg => write!(
                f,
                "no QEMU fw_cfg device at port 0x510; ferrite only boots QEMU guests (pc, q35, microvm)"
            ),
            Error::FwCfgDma { selector } => write!(
                f,
                "fw_cfg DMA transfer of item {selector:#06x} failed; check the QEMU version (2.9 or newer)"
            ),
            Error::BadFileDirectory { count } => write!(
                f,
                "the fw_cfg file directory lists {count} files, more than fw_cfg can hold; check the QEMU version"
            ),
            Error::MissingFile(name) => {
                write!(f, "fw_cfg has no file \"{name}\"; use QEMU 2.9 or newer")
            }
            Error::FileTooLarge { name, size, max } => write!(
                f,
                "fw_cfg file \"{name}\" is {size} bytes, more than the {max} ferrite reads; check what -fw_cfg passes"
            ),
            Error::NoKernel => write!(
                f,
                "no kernel to boot; start QEMU with -kernel <bzImage> (ferrite does not boot from disks)"
            ),
            Error::NotBzImage => write!(
                f,
                "the -kernel file is not a Linux bzImage (no \"HdrS\" setup header); pass arch/x86/boot/bzImage or a distribution vmlinuz"
            ),
            Error::ProtocolTooOld { version } => write!(
                f,
                "the kernel speaks boot protocol {}.{:02}, ferrite needs 2.06 or newer (Linux 2.6.22+)",
                version >> 8,
                version & 0xFF
            ),
            Error::BadHeader(what) => write!(f, "the kernel's setup header is invalid: {what}"),
            Error::KernelDoesNotFit { size, at } => write!(
                f,
                "the kernel needs {} MiB of RAM at {at:#x} and it is not free; give the guest more memory (-m)",
                size.div_ceil(MIB)
            ),
            Error::InitrdDoesNotFit { size, limit } => write!(
                f,
                "the initrd ({} MiB) does not fit in free RAM below {limit:#x}; give the guest more memory (-m) or use a smaller initrd",
                size.div_ceil(MIB)
            ),
            Error::CmdlineTooLong { len, max } => write!(
                f,
                "the command line is {len} bytes but the kernel accepts at most {max}; shorten -append"
            ),
            Error::MemoryMap(e) => write!(f, "bad memory map from QEMU (etc/e820): {e:?}"),
            Error::Acpi(e) => write!(f, "cannot install ACPI tables: {e}"),
            Error::SetupData(what) => write!(f, "bad setup_data list from QEMU: {what}"),
            Error::Pci(e) => write!(
                f,
                "PCI set-up failed: {}; remove devices or give large BARs a 64-bit type",
                e.message()
            ),
            Error::NoPvhEntry(what) => write!(
                f,
                "the -kernel ELF file cannot be booted through PVH: {what}; pass a vmlinux with a PVH note or a bzImage"
            ),
            Error::PvhEntryOutside { entry } => write!(
                f,
                "the kernel's PVH entry {entry:#x} is above 4 GiB or outside its loaded segments; the entry must be a 32-bit physical address in the kernel"
            ),
            Error::SegmentsOverlapFirmware { start, end } => write!(
                f,
                "the kernel's segments {start:#x}..{end:#x} overlap ferrite's memory below 1 MiB; link the kernel at 1 MiB or higher"
            ),
            Error::BadMultiboot(what) => write!(f, "the multiboot kernel cannot be booted: {what}"),
            Error::OutOfHeap { what, bytes } => write!(
                f,
                "{what} needs {bytes} bytes, more than ferrite's {} KiB heap holds; give the VM fewer devices, files or memory ranges",
                HEAP_SIZE / 1024
            ),
            Error::OutOfFirmwareMemory(what) => {
                write!(
                    f,
                    "ferrite ran out of room for {what}; give the guest more memory (-m)"
                )
            }
            Error::GuestMemory { at, len } => write!(
                f,
                "internal error: ferrite addressed {len:#x} bytes at {at:#x}, outside the RAM it may write; please report this"
            ),
        }
    }
}

impl From<E820Error> for Error {
    fn from(e: E820Error) -> Self {
        match e {
            E820Error::OutOfHeap(bytes) => Error::OutOfHeap {
                what: "the e820 map",
                bytes,
            },
            e => Error::MemoryMap(e),
        }
    }
}

impl Error {
    /// The error for `what` when the heap is out of room.
    pub fn out_of_heap(what: &'static str) -> impl FnOnce(OutOfHeap) -> Error {
        move |e| Error::OutOfHeap {
            what,
            bytes: e.bytes,
        }
    }
}

impl From<PciError> for Error {
    fn from(e: PciError) -> Self {
        match e {
            PciError::OutOfHeap(bytes) => Error::OutOfHeap {
                what: "the PCI functions and BARs",
                bytes,
            },
            e => Error::Pci(e),
        }
    }
}

impl From<LoaderError> for Error {
    fn from(e: LoaderError) -> Self {
        Error::Acpi(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::string::ToString;

    #[test]
    fn every_error_kind_has_a_distinct_documented_status() {
        let all = [
            Error::NoFwCfg,
            Error::FwCfgDma { selector: 0x11 },
            Error::NoKernel,
            Error::NotBzImage,
            Error::ProtocolTooOld { version: 0x0204 },
            Error::KernelDoesNotFit { size: 1, at: 0 },
            Error::InitrdDoesNotFit { size: 1, limit: 0 },
            Error::CmdlineTooLong { len: 2, max: 1 },
            Error::MemoryMap(E820Error::NoRam),
            Error::Acpi(LoaderError::TooManyFiles),
            Error::SetupData("x"),
            Error::OutOfFirmwareMemory("x"),
            Error::Pci(PciError::OutOfIoSpace),
            Error::NoPvhEntry("x"),
            Error::PvhEntryOutside { entry: 1 << 32 },
            Error::SegmentsOverlapFirmware { start: 0, end: 1 },
            Error::BadMultiboot("x"),
            Error::OutOfHeap {
                what: "x",
                bytes: 1,
            },
        ];
        let statuses: HashSet<u8> = all.iter().map(Error::status).collect();
        assert_eq!(statuses.len(), all.len());
        assert!(!statuses.contains(&STATUS_PANIC));
        // never collide with the boot markers (1..=4) or the usual test codes
        assert!(statuses.iter().all(|&s| (0x20..0x40).contains(&s)));
        // every status the contract lists is one of these (or the panic's)
        for (s, _) in status::ALL {
            assert!(statuses.contains(&s) || s == STATUS_PANIC, "{s:#x}");
        }
        assert_eq!(statuses.len() + 1, status::ALL.len());
    }

    #[test]
    fn messages_say_what_to_do() {
        assert!(Error::NoKernel.to_string().contains("-kernel"));
        assert!(
            Error::CmdlineTooLong { len: 300, max: 255 }
                .to_string()
                .contains("at most 255")
        );
        assert!(
            Error::ProtocolTooOld { version: 0x0204 }
                .to_string()
                .contains("2.04")
        );
    }
}
