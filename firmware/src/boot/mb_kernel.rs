//! A multiboot v1 kernel: QEMU's prepared image and information block, loaded
//! through fw_cfg and finished with what QEMU leaves to the firmware (the
//! memory fields, see `ferrite::multiboot`).

use core::mem::size_of;

use crate::board::GuestMemory;
use crate::e820::MemoryMap;
use crate::error::Error;
use crate::fwcfg::{FwCfg, Item};
use crate::io::PortIo;
use crate::mem::Range;
use crate::mem::{self, HighZone};
use crate::multiboot::{self, Info, Mmap, MmapEntry};
use crate::pvh;

/// Where ferrite writes the multiboot memory map: the start of the area that
/// holds the Linux command line on the bzImage path (multiboot command lines
/// travel in QEMU's image), below QEMU's information block at 0x9500.
const MMAP: u64 = mem::CMDLINE;
/// Where QEMU's information block may go: above the memory map, below ferrite.
const INFO_AREA: Range = Range::new(MMAP + size_of::<Mmap>() as u64, mem::FIRMWARE_RAM.start);
/// QEMU's block is 88 bytes; a later one may be longer.
const INFO_MAX: u64 = 4096;

const _: () = assert!(INFO_AREA.start <= 0x9500);

pub struct MultibootKernel {
    /// The kernel, its modules and their command lines, as QEMU laid them out.
    pub image: Range,
    pub entry: u32,
    /// QEMU's multiboot information block (INITRD_ADDR, INITRD_SIZE).
    pub info: Range,
}

impl MultibootKernel {
    /// Reads what QEMU says and checks where everything goes: the image in
    /// RAM clear of ferrite's first MiB, the information block where ferrite
    /// leaves room for it. `size`: KERNEL_SIZE, which
    /// [`identify`](super::bzimage::identify) read.
    pub fn from_fw_cfg(
        fw_cfg: &mut FwCfg<impl PortIo>,
        memory: &MemoryMap,
        size: u64,
    ) -> Result<MultibootKernel, Error> {
        let addr = fw_cfg.read_u32(Item::KernelAddr as u16) as u64;
        let image = Range::new(addr, addr + size);
        pvh::check_segments(image, memory, Range::new(0, mem::LEGACY_HOLE.end))?;
        let info_addr = fw_cfg.read_u32(Item::InitrdAddr as u16) as u64;
        let info_size = fw_cfg.read_u32(Item::InitrdSize as u16) as u64;
        let info = Range::new(info_addr, info_addr + info_size);
        if !(size_of::<Info>() as u64..=INFO_MAX).contains(&info_size) || !INFO_AREA.contains(&info)
        {
            return Err(Error::BadMultiboot(
                "QEMU's multiboot information block is not where ferrite leaves room for it",
            ));
        }
        Ok(MultibootKernel {
            image,
            entry: fw_cfg.read_u32(Item::KernelEntry as u16),
            info,
        })
    }

    /// Keeps the high zone (ACPI tables and the like) below the image.
    pub fn keep_clear(&self, zone: &mut HighZone) -> Result<(), Error> {
        if !zone.avoid(self.image) {
            return Err(Error::SegmentsOverlapFirmware {
                start: self.image.start,
                end: self.image.end,
            });
        }
        Ok(())
    }

    /// Loads the image (one transfer) and checks the kernel's multiboot header.
    pub fn load(
        &self,
        fw_cfg: &mut FwCfg<impl PortIo>,
        mem: &mut impl GuestMemory,
    ) -> Result<(), Error> {
        // RAM checked by from_fw_cfg, clear of ferrite and its tables.
        fw_cfg.read_to_guest(
            mem,
            Item::KernelData as u16,
            self.image.start,
            self.image.len() as u32,
        )?;
        let head_len = self.image.len().min(multiboot::SEARCH_BYTES as u64) as usize;
        let head = mem.bytes(self.image.start, head_len)?;
        match multiboot::check(head, self.image, self.entry)? {
            Some(h) => log::debug!("multiboot: header flags {:#x}", h.flags),
            None => log::info!("multiboot: no header in the image's first 8 KiB to check"),
        }
        Ok(())
    }

    /// Loads QEMU's information block to its place.
    pub fn load_info(
        &self,
        fw_cfg: &mut FwCfg<impl PortIo>,
        mem: &mut impl GuestMemory,
    ) -> Result<(), Error> {
        // INFO_AREA (checked) is ferrite's boot-information area below its
        // own RAM image.
        fw_cfg.read_to_guest(
            mem,
            Item::InitrdData as u16,
            self.info.start,
            self.info.len() as u32,
        )
    }

    /// Fills in the memory fields and the memory map; returns the block's address.
    /// `room`: from [`super::bzimage::reserve_map_room`], for a memory map
    /// longer than the fixed table below the information block.
    pub fn finish_info(
        &self,
        mem: &mut impl GuestMemory,
        memory: &MemoryMap,
        room: Option<Range>,
    ) -> Result<u64, Error> {
        // The block was loaded at `info` (at least size_of::<Info>() bytes);
        // the fixed table lies below it, the room in the high zone.
        let (at, n) = match room {
            Some(r) => (r.start, r.len() as usize / size_of::<MmapEntry>()),
            None => (MMAP, size_of::<Mmap>() / size_of::<MmapEntry>()),
        };
        let (info, mmap) = mem.object_and_slice::<Info, MmapEntry>(self.info.start, at, n)?;
        multiboot::finish_info(info, memory, mmap, at)?;
        Ok(self.info.start)
    }
}
