//! An ELF kernel booted through its PVH entry: what QEMU hands over for it,
//! the checks of `ferrite::pvh` against guest memory, and the start info.
//! QEMU has already put the segments in RAM: nothing is loaded but the initrd
//! and the command line.

use core::mem::{MaybeUninit, size_of};

use crate::board::GuestMemory;
use crate::e820::MemoryMap;
use crate::error::Error;
use crate::fwcfg::{File, FwCfg, Item};
use crate::io::PortIo;
use crate::mem::Range;
use crate::mem::{self, HighZone};
use crate::pvh::{self, MemmapEntry, StartBlock};

/// The highest address the initrd may end at: what 64-bit Linux bzImages
/// declare (`initrd_addr_max`); above 4 GiB when it fits nowhere below, as
/// Linux reads the module's 64-bit address.
const INITRD_ADDR_MAX: u64 = 0x7FFF_FFFF;

/// The kernel QEMU loaded from an ELF file, with what fw_cfg says about it.
pub struct Vmlinux {
    /// Lowest segment address .. highest segment end (KERNEL_ADDR, KERNEL_SIZE).
    pub segments: Range,
    /// The PVH entry, from the ELF's note.
    pub entry: u32,
    pub initrd_size: u64,
    cmdline_size: u64,
}

impl Vmlinux {
    /// Reads what QEMU says about the kernel, checks where the segments are
    /// (RAM, clear of ferrite's first MiB) and finds the PVH entry in the ELF's
    /// note. Nothing has been written above 1 MiB yet. `size`: KERNEL_SIZE,
    /// which [`identify`](super::bzimage::identify) read.
    pub fn from_fw_cfg(
        fw_cfg: &mut FwCfg<impl PortIo>,
        mem: &mut impl GuestMemory,
        memory: &MemoryMap,
        size: u64,
    ) -> Result<Vmlinux, Error> {
        let addr = fw_cfg.read_u32(Item::KernelAddr as u16) as u64;
        let segments = Range::new(addr, addr + size);
        pvh::check_segments(segments, memory, Range::new(0, mem::LEGACY_HOLE.end))?;

        // The file's first bytes, as QEMU gives them in the setup item (up to
        // HEAD_BYTES). Uninitialised: clearing 8 KiB first was a `rep stos`
        // run 1,024 times under TCG, and code translated for it.
        let head_item = File {
            select: Item::SetupData as u16,
            size: fw_cfg.read_u32(Item::SetupSize as u16),
        };
        let mut head = [MaybeUninit::<u8>::uninit(); pvh::HEAD_BYTES];
        let head = fw_cfg.read_prefix(head_item, &mut head)?;
        let qemu_entry = fw_cfg.read_u32(Item::KernelEntry as u16);
        let entry = pvh::find_entry(head, segments, qemu_entry, &mut LoadedRam(mem))?;
        if entry != qemu_entry {
            log::warn!(
                "pvh: the ELF note's entry {entry:#x} differs from QEMU's {qemu_entry:#x}; using the note's"
            );
        }

        let cmdline_size = fw_cfg.read_u32(Item::CmdlineSize as u16) as u64;
        let len = cmdline_size.saturating_sub(1);
        if len > pvh::CMDLINE_MAX {
            return Err(Error::CmdlineTooLong {
                len,
                max: pvh::CMDLINE_MAX,
            });
        }
        Ok(Vmlinux {
            segments,
            entry,
            initrd_size: fw_cfg.read_u32(Item::InitrdSize as u16) as u64,
            cmdline_size,
        })
    }

    /// Keeps the high zone (ACPI tables and the like) below the segments.
    pub fn keep_clear(&self, zone: &mut HighZone) -> Result<(), Error> {
        if !zone.avoid(self.segments) {
            return Err(Error::SegmentsOverlapFirmware {
                start: self.segments.start,
                end: self.segments.end,
            });
        }
        Ok(())
    }

    /// Where the initrd goes: as for a bzImage, clear of the segments and tables.
    pub fn place_initrd(&self, memory: &MemoryMap, busy: &[Range]) -> Result<Option<Range>, Error> {
        crate::linux::place_initrd_below(self.initrd_size, INITRD_ADDR_MAX, true, memory, busy)
    }

    pub fn load_cmdline(
        &self,
        fw_cfg: &mut FwCfg<impl PortIo>,
        mem: &mut impl GuestMemory,
    ) -> Result<(), Error> {
        super::bzimage::load_cmdline(fw_cfg, mem, self.cmdline_size)
    }

    /// Builds the start info, module list and memory map where the zero page
    /// goes on the bzImage path; returns its address.
    /// `room`: from [`super::bzimage::reserve_map_room`], for a memory map
    /// longer than the block's own table.
    pub fn build_start_info(
        &self,
        mem: &mut impl GuestMemory,
        initrd: Option<Range>,
        rsdp: Option<u64>,
        memory: &MemoryMap,
        room: Option<Range>,
    ) -> Result<u64, Error> {
        // The zero-page area is reserved for this (mem.rs).
        let (block, room) = match room {
            Some(r) => {
                let n = r.len() as usize / size_of::<MemmapEntry>();
                let (block, table) =
                    mem.object_and_slice::<StartBlock, MemmapEntry>(mem::ZERO_PAGE, r.start, n)?;
                (block, Some((table, r.start)))
            }
            None => (mem.object::<StartBlock>(mem::ZERO_PAGE)?, None),
        };
        block.build(mem::ZERO_PAGE, mem::CMDLINE, initrd, rsdp, memory, room)?;
        Ok(mem::ZERO_PAGE)
    }
}

/// The kernel's segments in guest RAM.
struct LoadedRam<'a, M: GuestMemory>(&'a mut M);

impl<M: GuestMemory> pvh::Memory for LoadedRam<'_, M> {
    fn bytes(&mut self, range: Range) -> Option<&[u8]> {
        // `find_entry` asks only for ranges inside the segments, which
        // `check_segments` found to be RAM.
        let bytes = self.0.bytes(range.start, range.len() as usize).ok()?;
        Some(bytes)
    }
}
