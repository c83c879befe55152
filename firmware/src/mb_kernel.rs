//! A multiboot v1 kernel: QEMU's prepared image and information block, loaded
//! through fw_cfg and finished with what QEMU leaves to the firmware (the
//! memory fields, see `ferrite::multiboot`).

use core::mem::size_of;

use ferrite::e820::{MemoryMap, Range};
use ferrite::error::Error;
use ferrite::fwcfg::{FwCfg, Item};
use ferrite::layout::{self, HighZone};
use ferrite::multiboot::{self, Info, Mmap, MmapEntry};
use ferrite::pvh;

use crate::paging;
use crate::phys;
use crate::pio::Pio;

/// Where ferrite writes the multiboot memory map: the start of the area that
/// holds the Linux command line on the bzImage path (multiboot command lines
/// travel in QEMU's image), below QEMU's information block at 0x9500.
const MMAP: u64 = layout::CMDLINE;
/// Where QEMU's information block may go: above the memory map, below ferrite.
const INFO_AREA: Range = Range::new(MMAP + size_of::<Mmap>() as u64, layout::FIRMWARE_RAM.start);
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
    /// leaves room for it.
    pub fn from_fw_cfg(
        fw_cfg: &mut FwCfg<Pio>,
        memory: &MemoryMap,
    ) -> Result<MultibootKernel, Error> {
        let addr = fw_cfg.read_u32(Item::KernelAddr as u16)? as u64;
        let size = fw_cfg.read_u32(Item::KernelSize as u16)? as u64;
        let image = Range::new(addr, addr + size);
        pvh::check_segments(image, memory, Range::new(0, layout::LEGACY_HOLE.end))?;
        let info_addr = fw_cfg.read_u32(Item::InitrdAddr as u16)? as u64;
        let info_size = fw_cfg.read_u32(Item::InitrdSize as u16)? as u64;
        let info = Range::new(info_addr, info_addr + info_size);
        if !(size_of::<Info>() as u64..=INFO_MAX).contains(&info_size) || !INFO_AREA.contains(&info)
        {
            return Err(Error::BadMultiboot(
                "QEMU's multiboot information block is not where ferrite leaves room for it",
            ));
        }
        Ok(MultibootKernel {
            image,
            entry: fw_cfg.read_u32(Item::KernelEntry as u16)?,
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
    pub fn load(&self, fw_cfg: &mut FwCfg<Pio>) -> Result<(), Error> {
        paging::identity_map(self.image)?;
        // SAFETY: RAM checked by from_fw_cfg, clear of ferrite and its tables,
        // identity-mapped.
        unsafe {
            fw_cfg.read_to_phys(
                Item::KernelData as u16,
                self.image.start,
                self.image.len() as u32,
            )?
        };
        let head_len = self.image.len().min(multiboot::SEARCH_BYTES as u64) as usize;
        // SAFETY: the image was just loaded there; nothing else refers to it.
        let head = unsafe { phys::slice_mut(self.image.start, head_len) };
        match multiboot::check(head, self.image, self.entry)? {
            Some(h) => log::debug!("multiboot: header flags {:#x}", h.flags),
            None => log::info!("multiboot: no header in the image's first 8 KiB to check"),
        }
        Ok(())
    }

    /// Loads QEMU's information block to its place.
    pub fn load_info(&self, fw_cfg: &mut FwCfg<Pio>) -> Result<(), Error> {
        // SAFETY: INFO_AREA (checked) is ferrite's boot-information area below
        // its own RAM image, identity-mapped, used by nothing else.
        unsafe {
            fw_cfg.read_to_phys(
                Item::InitrdData as u16,
                self.info.start,
                self.info.len() as u32,
            )
        }
    }

    /// Fills in the memory fields and the memory map; returns the block's address.
    /// `room`: from [`crate::kernel::reserve_map_room`], for a memory map
    /// longer than the fixed table below the information block.
    pub fn finish_info(&self, memory: &MemoryMap, room: Option<Range>) -> Result<u64, Error> {
        // SAFETY: the block was loaded at `info` (at least size_of::<Info>()
        // bytes) in ferrite's boot-information area; Info is plain data.
        let info = unsafe { phys::object_mut::<Info>(self.info.start) };
        let (mmap, at): (&mut [MmapEntry], u64) = match room {
            // SAFETY: fresh high-zone RAM reserved for this table (identity-
            // mapped, below 4 GiB, nothing else in it); MmapEntry is plain data.
            Some(r) => (
                unsafe { phys::slice_mut_of(r.start, r.len() as usize / size_of::<MmapEntry>()) },
                r.start,
            ),
            // SAFETY: the fixed table lies below the information block in
            // ferrite's boot-information area; Mmap is plain data.
            None => (unsafe { phys::object_mut::<Mmap>(MMAP) }, MMAP),
        };
        multiboot::finish_info(info, memory, mmap, at)?;
        Ok(self.info.start)
    }
}
