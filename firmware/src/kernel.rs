//! Loading the kernel, its initrd and command line from fw_cfg, and building the
//! zero page. Each blob is one fw_cfg transfer straight to its final address.

use core::mem::MaybeUninit;

use ferrite::bootparams::{
    BootParams, E820_MAX_ENTRIES_ZEROPAGE, HDRS_MAGIC, LOADER_TYPE_QEMU, SetupData, SetupHeader,
};
use ferrite::e820::{self, MemoryMap, Range};
use ferrite::error::Error;
use ferrite::fwcfg::{FwCfg, Item};
use ferrite::layout::{self, HighZone};
use ferrite::linux::{Entry, KernelInfo};
use ferrite::pvh;
use ferrite::setup_data::{self, MAX_NODES, Node};

use crate::mb_kernel::MultibootKernel;
use crate::paging;
use crate::phys;
use crate::pio::Pio;
use crate::vmlinux::Vmlinux;

/// Enough of the setup sectors to hold any setup header (it ends by 0x281).
const HEADER_BYTES: usize = 0x290;

/// The start of QEMU's SETUP_DATA item, read once per boot by [`identify`].
static HEADER: spin::Mutex<[u8; HEADER_BYTES]> = spin::Mutex::new([0; HEADER_BYTES]);

/// The kernel QEMU was given, validated.
pub struct Kernel {
    pub info: KernelInfo,
    /// The start of QEMU's SETUP_DATA item: boot sector and setup header.
    header: &'static [u8; HEADER_BYTES],
    pub size: u64,
    pub initrd_size: u64,
    cmdline_size: u64,
}

/// What QEMU was given with `-kernel`.
// One value per boot, moved once; there is no heap to box the setup header in.
#[allow(clippy::large_enum_variant)]
pub enum Payload {
    /// A bzImage, booted through the Linux boot protocol.
    BzImage(Kernel),
    /// An ELF kernel QEMU loaded itself, booted through its PVH entry.
    Pvh(Vmlinux),
    /// A multiboot kernel QEMU prepared, with its information block.
    Multiboot(MultibootKernel),
}

/// Tells the kinds of kernel apart by the start of QEMU's SETUP_DATA item and
/// validates the kernel: fails on anything ferrite cannot boot.
pub fn identify(fw_cfg: &mut FwCfg<Pio>, memory: &MemoryMap) -> Result<Payload, Error> {
    let size = fw_cfg.read_u32(Item::KernelSize as u16)? as u64;
    if size == 0 {
        return Err(Error::NoKernel);
    }
    // In .bss, borrowed for the rest of the boot: moved by value inside the
    // kernel's description, the header's copies cost more code than its parsing.
    let header = spin::MutexGuard::leak(HEADER.lock());
    fw_cfg.read_into(Item::SetupData as u16, header)?;
    let header: &'static [u8; HEADER_BYTES] = header;
    if pvh::is_elf(header) {
        return Ok(Payload::Pvh(Vmlinux::from_fw_cfg(fw_cfg, memory)?));
    }
    // QEMU gives a multiboot kernel no setup item at all (it reads as zeros).
    let hdrs = header[0x202..0x206] == HDRS_MAGIC.to_le_bytes();
    if !hdrs && fw_cfg.read_u32(Item::SetupSize as u16)? == 0 {
        let kernel = MultibootKernel::from_fw_cfg(fw_cfg, memory)?;
        return Ok(Payload::Multiboot(kernel));
    }
    Ok(Payload::BzImage(Kernel::from_header(fw_cfg, size, header)?))
}

impl Kernel {
    /// Validates the setup header and reads the other sizes.
    fn from_header(
        fw_cfg: &mut FwCfg<Pio>,
        size: u64,
        header: &'static [u8; HEADER_BYTES],
    ) -> Result<Kernel, Error> {
        let hdr = SetupHeader::in_image(header).ok_or(Error::NotBzImage)?;
        let info = KernelInfo::from_header(hdr)?;
        let cmdline_size = fw_cfg.read_u32(Item::CmdlineSize as u16)? as u64;
        // CMDLINE_SIZE counts the NUL; the kernel's limit does not.
        let len = cmdline_size.saturating_sub(1);
        info.check_cmdline(len)?;
        if cmdline_size > layout::CMDLINE_ROOM {
            return Err(Error::CmdlineTooLong {
                len,
                max: layout::CMDLINE_ROOM - 1,
            });
        }
        Ok(Kernel {
            info,
            header,
            size,
            initrd_size: fw_cfg.read_u32(Item::InitrdSize as u16)? as u64,
            cmdline_size,
        })
    }

    fn setup_data_head(&self) -> u64 {
        SetupHeader::in_image(self.header).map_or(0, |h| h.setup_data)
    }

    /// Loads the protected-mode kernel into `range` (from `linux::place_kernel`).
    pub fn load(&self, fw_cfg: &mut FwCfg<Pio>, range: Range) -> Result<(), Error> {
        paging::identity_map(range)?;
        // SAFETY: `range` is free RAM chosen by place_kernel, now identity-mapped.
        unsafe { fw_cfg.read_to_phys(Item::KernelData as u16, range.start, self.size as u32) }
    }

    /// Copies QEMU's setup_data nodes out of the loaded kernel image into the
    /// high zone (the kernel would decompress over them) and links the copies.
    /// Returns the new list head, or 0.
    pub fn move_setup_data(
        &self,
        fw_cfg: &mut FwCfg<Pio>,
        range: Range,
        zone: &mut HighZone,
    ) -> Result<u64, Error> {
        let head = self.setup_data_head();
        if head == 0 {
            return Ok(0);
        }
        let kernel_addr = fw_cfg.read_u32(Item::KernelAddr as u16)? as u64;
        let setup_size = fw_cfg.read_u32(Item::SetupSize as u16)? as u64;
        // SAFETY: the kernel image was just loaded there and is identity-mapped.
        let image = unsafe { phys::slice_mut(range.start, self.size as usize) };
        let mut nodes = [Node::default(); MAX_NODES];
        let n = setup_data::locate(head, kernel_addr, setup_size, image, &mut nodes)?;
        let mut next = 0u64;
        for node in nodes[..n].iter().rev() {
            // The kernel was placed clear of the zone as it was then; the zone
            // grows down from there, so a copy could reach the kernel (a small
            // guest): that is out of room, not an overlap.
            let copy = zone
                .alloc(node.len as u64, 8)
                .filter(|&c| !range.overlaps(&Range::new(c, c + node.len as u64)))
                .ok_or(Error::OutOfFirmwareMemory("setup_data"))?;
            // SAFETY: `copy` is fresh high-zone RAM of node.len bytes, outside the
            // kernel's range (checked above) that `image` covers.
            let dst = unsafe { phys::slice_mut(copy, node.len) };
            dst.copy_from_slice(&image[node.offset..node.offset + node.len]);
            dst[..8].copy_from_slice(&next.to_le_bytes());
            log::debug!(
                "setup_data: type {} ({} bytes) at {copy:#x}",
                node.typ,
                node.len
            );
            next = copy;
        }
        Ok(next)
    }

    /// Loads the initrd (if any) into `range`.
    pub fn load_initrd(&self, fw_cfg: &mut FwCfg<Pio>, range: Option<Range>) -> Result<(), Error> {
        load_initrd(fw_cfg, range)
    }

    /// Loads the command line to its fixed place and terminates it.
    pub fn load_cmdline(&self, fw_cfg: &mut FwCfg<Pio>) -> Result<(), Error> {
        load_cmdline(fw_cfg, self.cmdline_size)
    }

    /// Builds the zero page at its fixed place and returns its address. The
    /// map's entries beyond the zero page's 128 go into `e820_ext` (from
    /// [`reserve_e820_ext`]), linked first in the `setup_data` list.
    pub fn build_zero_page(
        &self,
        kernel: Range,
        initrd: Option<Range>,
        setup_data: u64,
        e820_ext: Option<Range>,
        rsdp: Option<u64>,
        memory: &MemoryMap,
    ) -> Result<u64, Error> {
        // SAFETY: the zero-page area is reserved for this (layout.rs), identity-
        // mapped, and BootParams is plain data.
        let zp: &mut BootParams = unsafe {
            let p = layout::ZERO_PAGE as *mut MaybeUninit<BootParams>;
            p.write_bytes(0, 1);
            phys::object_mut(layout::ZERO_PAGE)
        };
        zp.copy_header_from(self.header);
        let (image, size) = initrd.map_or((0, 0), |r| (r.start, r.len()));
        let hdr = &mut zp.hdr;
        hdr.type_of_loader = LOADER_TYPE_QEMU;
        hdr.code32_start = kernel.start as u32;
        hdr.cmd_line_ptr = layout::CMDLINE as u32;
        hdr.ramdisk_image = image as u32;
        hdr.ramdisk_size = size as u32;
        hdr.setup_data = link_e820_ext(memory, e820_ext, setup_data)?;
        zp.ext_ramdisk_image = (image >> 32) as u32;
        zp.ext_ramdisk_size = (size >> 32) as u32;
        zp.acpi_rsdp_addr = rsdp.unwrap_or(0);
        zp.e820_entries = memory.write_zero_page(&mut zp.e820_table);
        Ok(layout::ZERO_PAGE)
    }

    /// Where to jump.
    pub fn entry_point(&self, kernel: Range) -> (Entry, u64) {
        match self.info.entry {
            Entry::Bits64 => (Entry::Bits64, kernel.start + 0x200),
            Entry::Bits32 => (Entry::Bits32, kernel.start),
        }
    }
}

/// Room in the high zone for a `SETUP_E820_EXT` node, when the final map may
/// have more entries than the zero page's 128: the `memory` of now plus at
/// most `growth` that ferrite's own reservations add. None on an ordinary VM.
/// Taken before the initrd is placed below the zone, clear of `kernel`.
pub fn reserve_e820_ext(
    memory: &MemoryMap,
    zone: &mut HighZone,
    kernel: Range,
    growth: usize,
) -> Result<Option<Range>, Error> {
    let most = memory.len() + growth;
    if most <= E820_MAX_ENTRIES_ZEROPAGE {
        return Ok(None);
    }
    let len = e820::ext_node_len(most - E820_MAX_ENTRIES_ZEROPAGE) as u64;
    let node = zone
        .alloc(len, 8)
        .map(|at| Range::new(at, at + len))
        .filter(|node| !kernel.overlaps(node))
        .ok_or(Error::OutOfFirmwareMemory(
            "the e820 map's SETUP_E820_EXT node",
        ))?;
    Ok(Some(node))
}

/// Room in the high zone for a PVH or multiboot memory map of `entry`-byte
/// entries, when the final map may have more entries than the fixed table
/// for it holds (`inline`): the map of now plus `growth`. None on an ordinary
/// VM. Taken clear of `keep_clear` (the kernel's segments or image).
pub fn reserve_map_room(
    memory: &MemoryMap,
    zone: &mut HighZone,
    inline: usize,
    entry: usize,
    growth: usize,
    keep_clear: Range,
    what: &'static str,
) -> Result<Option<Range>, Error> {
    let most = memory.len() + growth;
    if most <= inline {
        return Ok(None);
    }
    let len = (most * entry) as u64;
    zone.alloc(len, 8)
        .map(|at| Range::new(at, at + len))
        .filter(|room| !keep_clear.overlaps(room) && room.end <= 1 << 32)
        .map(Some)
        .ok_or(Error::OutOfFirmwareMemory(what))
}

/// Writes the final map's entries beyond the zero page's 128 into `node` and
/// returns the new head of the `setup_data` list (`next` when the map fits
/// the zero page).
fn link_e820_ext(memory: &MemoryMap, node: Option<Range>, next: u64) -> Result<u64, Error> {
    if memory.len() <= E820_MAX_ENTRIES_ZEROPAGE {
        return Ok(next);
    }
    let node = node.ok_or(Error::OutOfFirmwareMemory(
        "the e820 map's SETUP_E820_EXT node",
    ))?;
    // SAFETY: `node` is high-zone RAM reserve_e820_ext took for this, reserved
    // in the final map, identity-mapped, used by nothing else.
    let bytes = unsafe { phys::slice_mut(node.start, node.len() as usize) };
    memory
        .write_ext_node(bytes, next)
        .ok_or(Error::OutOfFirmwareMemory(
            "the e820 map's SETUP_E820_EXT node",
        ))?;
    log::debug!(
        "e820: {} entries in the zero page, {} in SETUP_E820_EXT at {:#x}",
        E820_MAX_ENTRIES_ZEROPAGE,
        memory.extended().len(),
        node.start
    );
    Ok(node.start)
}

/// Loads the initrd (if any) into `range` (chosen by `linux::place_initrd*`).
pub fn load_initrd(fw_cfg: &mut FwCfg<Pio>, range: Option<Range>) -> Result<(), Error> {
    let Some(range) = range else { return Ok(()) };
    // Only needed without DMA (the CPU copies), but cheap: one entry per 2 MiB.
    paging::identity_map(range)?;
    // SAFETY: free RAM chosen by place_initrd, identity-mapped.
    unsafe { fw_cfg.read_to_phys(Item::InitrdData as u16, range.start, range.len() as u32) }
}

/// Loads the command line (`size` bytes with its NUL, checked against
/// `layout::CMDLINE_ROOM` by the caller) to its fixed place and terminates it.
pub fn load_cmdline(fw_cfg: &mut FwCfg<Pio>, size: u64) -> Result<(), Error> {
    debug_assert!(size <= layout::CMDLINE_ROOM);
    // SAFETY: the command-line area is reserved for this (layout.rs) and mapped;
    // the callers checked that `size` fits it.
    unsafe {
        fw_cfg.read_to_phys(Item::CmdlineData as u16, layout::CMDLINE, size as u32)?;
        phys::slice_mut(layout::CMDLINE + size.saturating_sub(1), 1)[0] = 0;
    }
    Ok(())
}

const _: () = assert!(core::mem::size_of::<SetupData>() == 16);
