//! Loading the kernel, its initrd and command line from fw_cfg, and building the
//! zero page. Each blob is one fw_cfg transfer straight to its final address.

use core::mem::size_of;

use crate::board::{Board, GuestMemory};
use crate::bootparams::{
    BootParams, E820_MAX_ENTRIES_ZEROPAGE, HDRS_MAGIC, LOADER_TYPE_QEMU, SetupData, SetupHeader,
};
use crate::e820::{self, MemoryMap};
use crate::error::Error;
use crate::fwcfg::{FwCfg, Item};
use crate::io::PortIo;
use crate::linux::{Entry, KernelInfo};
use crate::mem::Range;
use crate::mem::{self, HighZone, one_test};
use crate::pvh;
use crate::setup_data::{self, MAX_NODES, Node};

use super::mb_kernel::MultibootKernel;
use super::vmlinux::Vmlinux;

/// Enough of the setup sectors to hold any setup header (it ends by 0x281).
pub const HEADER_BYTES: usize = 0x290;

/// The start of QEMU's SETUP_DATA item, read once per boot by [`identify`].
pub type Header = [u8; HEADER_BYTES];

/// The kernel QEMU was given, validated. It lives in the boot's
/// [`Storage`](super::Storage) and [`identify`] fills it in place: moved by
/// value (through `identify`'s result, across the hardware set-up and into
/// the bzImage steps), its copies cost more code than its parsing.
pub struct Kernel {
    pub info: KernelInfo,
    /// The start of QEMU's SETUP_DATA item: boot sector and setup header.
    header: Header,
    pub size: u64,
    pub initrd_size: u64,
    cmdline_size: u64,
}

/// What QEMU was given with `-kernel`.
pub enum Payload<'s> {
    /// A bzImage, booted through the Linux boot protocol.
    BzImage(&'s Kernel),
    /// An ELF kernel QEMU loaded itself, booted through its PVH entry.
    Pvh(Vmlinux),
    /// A multiboot kernel QEMU prepared, with its information block.
    Multiboot(MultibootKernel),
}

/// Tells the kinds of kernel apart by the start of QEMU's SETUP_DATA item and
/// validates the kernel: fails on anything ferrite cannot boot.
pub fn identify<'s, B: Board>(
    board: &mut B,
    fw_cfg: &mut FwCfg<B::Io>,
    memory: &MemoryMap,
    kernel: &'s mut Kernel,
) -> Result<Payload<'s>, Error> {
    let size = fw_cfg.read_u32(Item::KernelSize as u16) as u64;
    if size == 0 {
        return Err(Error::NoKernel);
    }
    let header = &mut kernel.header;
    fw_cfg.read_into(Item::SetupData as u16, header);
    let elf = pvh::is_elf(header);
    let hdrs = header[0x202..0x206] == HDRS_MAGIC.to_le_bytes();
    // The usual bzImage after one test (a translation block under TCG)
    // rather than one for each of the other kinds.
    if one_test(!hdrs | elf)
        && let Some(payload) = identify_other(board, fw_cfg, memory, size, elf)?
    {
        return Ok(payload);
    }
    kernel.validate(fw_cfg, size)?;
    Ok(Payload::BzImage(kernel))
}

/// [`identify`] for a kernel without a bzImage's setup header: an ELF
/// kernel, a multiboot kernel, or None for a kernel that is neither (which
/// `Kernel::from_header` refuses).
#[cold]
#[inline(never)]
fn identify_other<'s, B: Board>(
    board: &mut B,
    fw_cfg: &mut FwCfg<B::Io>,
    memory: &MemoryMap,
    size: u64,
    elf: bool,
) -> Result<Option<Payload<'s>>, Error> {
    if elf {
        let vmlinux = Vmlinux::from_fw_cfg(fw_cfg, board.memory(), memory, size)?;
        return Ok(Some(Payload::Pvh(vmlinux)));
    }
    // QEMU gives a multiboot kernel no setup item at all (it reads as zeros).
    if fw_cfg.read_u32(Item::SetupSize as u16) == 0 {
        let kernel = MultibootKernel::from_fw_cfg(fw_cfg, memory, size)?;
        return Ok(Some(Payload::Multiboot(kernel)));
    }
    Ok(None)
}

impl Kernel {
    /// An empty description, for the boot's storage.
    pub const fn new() -> Kernel {
        Kernel {
            info: KernelInfo::EMPTY,
            header: [0; HEADER_BYTES],
            size: 0,
            initrd_size: 0,
            cmdline_size: 0,
        }
    }

    /// Validates the setup header (already in `self.header`) and reads the
    /// other sizes. Fields are written as they are known: nothing is kept
    /// live across the fw_cfg reads.
    fn validate(&mut self, fw_cfg: &mut FwCfg<impl PortIo>, size: u64) -> Result<(), Error> {
        let hdr = SetupHeader::in_image(&self.header).ok_or(Error::NotBzImage)?;
        self.info.read_header(hdr)?;
        self.size = size;
        let cmdline_size = fw_cfg.read_u32(Item::CmdlineSize as u16) as u64;
        self.cmdline_size = cmdline_size;
        // CMDLINE_SIZE counts the NUL; the kernel's limit does not.
        let len = cmdline_size.saturating_sub(1);
        let max = self.info.cmdline_max as u64;
        // Both limits in one test; which one failed, out of line.
        if one_test((len > max) | (cmdline_size > mem::CMDLINE_ROOM)) {
            return Err(cmdline_error(len, max));
        }
        self.initrd_size = fw_cfg.read_u32(Item::InitrdSize as u16) as u64;
        Ok(())
    }

    fn setup_data_head(&self) -> u64 {
        SetupHeader::in_image(&self.header).map_or(0, |h| h.setup_data)
    }

    /// At most how many bytes of `setup_data` nodes QEMU appended to the
    /// kernel image ([`Kernel::move_setup_data`] copies them to the zone):
    /// the image from the list's head on, read either way QEMU versions
    /// count the head's offset (see `setup_data`). 0 without a list.
    #[inline(always)]
    pub fn setup_data_bound(&self, fw_cfg: &mut FwCfg<impl PortIo>) -> u64 {
        let head = self.setup_data_head();
        if one_test(head != 0) {
            return self.setup_data_tail(fw_cfg, head);
        }
        0
    }

    /// [`Kernel::setup_data_bound`] for a list that starts at `head`.
    #[cold]
    #[inline(never)]
    fn setup_data_tail(&self, fw_cfg: &mut FwCfg<impl PortIo>, head: u64) -> u64 {
        let kernel_addr = fw_cfg.read_u32(Item::KernelAddr as u16) as u64;
        let setup_size = fw_cfg.read_u32(Item::SetupSize as u16) as u64;
        // The smaller of the two offsets leaves the longer tail.
        let offset = head.saturating_sub(kernel_addr).saturating_sub(setup_size);
        self.size.saturating_sub(offset)
    }

    /// Loads the protected-mode kernel into `range` (from `linux::place_kernel`).
    pub fn load(
        &self,
        fw_cfg: &mut FwCfg<impl PortIo>,
        mem: &mut impl GuestMemory,
        range: Range,
    ) -> Result<(), Error> {
        fw_cfg.read_to_guest(mem, Item::KernelData as u16, range.start, self.size as u32)
    }

    /// Copies QEMU's setup_data nodes out of the loaded kernel image into the
    /// high zone (the kernel would decompress over them) and links the copies.
    /// Returns the new list head, or 0.
    ///
    /// (Inline, the nodes moved out of line: with none, as QEMU gives
    /// without a DTB or the like, one test in the caller, falling through.)
    #[inline(always)]
    pub fn move_setup_data(
        &self,
        fw_cfg: &mut FwCfg<impl PortIo>,
        mem: &mut impl GuestMemory,
        range: Range,
        zone: &mut HighZone,
    ) -> Result<u64, Error> {
        let head = self.setup_data_head();
        if one_test(head != 0) {
            return self.move_setup_nodes(fw_cfg, mem, range, zone, head);
        }
        Ok(0)
    }

    /// [`Kernel::move_setup_data`] for a list that starts at `head`.
    #[cold]
    #[inline(never)]
    fn move_setup_nodes(
        &self,
        fw_cfg: &mut FwCfg<impl PortIo>,
        mem: &mut impl GuestMemory,
        range: Range,
        zone: &mut HighZone,
        head: u64,
    ) -> Result<u64, Error> {
        let kernel_addr = fw_cfg.read_u32(Item::KernelAddr as u16) as u64;
        let setup_size = fw_cfg.read_u32(Item::SetupSize as u16) as u64;
        let mut nodes = [Node::default(); MAX_NODES];
        let image = mem.bytes(range.start, self.size as usize)?;
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
            mem.copy(range.start + node.offset as u64, copy, node.len)?;
            mem.bytes(copy, 8)?.copy_from_slice(&next.to_le_bytes());
            log::debug!(
                "setup_data: type {} ({} bytes) at {copy:#x}",
                node.typ,
                node.len
            );
            next = copy;
        }
        Ok(next)
    }

    /// Loads the command line to its fixed place and terminates it.
    pub fn load_cmdline(
        &self,
        fw_cfg: &mut FwCfg<impl PortIo>,
        mem: &mut impl GuestMemory,
    ) -> Result<(), Error> {
        load_cmdline(fw_cfg, mem, self.cmdline_size)
    }

    /// Builds the zero page at its fixed place and returns its address. The
    /// map's entries beyond the zero page's 128 go into `e820_ext` (from
    /// [`reserve_e820_ext`]), linked first in the `setup_data` list.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn build_zero_page(
        &self,
        mem: &mut impl GuestMemory,
        kernel: Range,
        initrd: Option<Range>,
        setup_data: u64,
        e820_ext: Option<Range>,
        rsdp: Option<u64>,
        memory: &MemoryMap,
    ) -> Result<u64, Error> {
        // The e820 extension first: the zero page's borrow of `mem` follows.
        let setup_data = link_e820_ext(mem, memory, e820_ext, setup_data)?;
        // The zero-page area is reserved for this (mem.rs).
        mem::zero(mem.bytes(mem::ZERO_PAGE, size_of::<BootParams>())?);
        let zp: &mut BootParams = mem.object(mem::ZERO_PAGE)?;
        zp.copy_header_from(&self.header);
        let (image, size) = initrd.map_or((0, 0), |r| (r.start, r.len()));
        let hdr = &mut zp.hdr;
        hdr.type_of_loader = LOADER_TYPE_QEMU;
        hdr.code32_start = kernel.start as u32;
        hdr.cmd_line_ptr = mem::CMDLINE as u32;
        hdr.ramdisk_image = image as u32;
        hdr.ramdisk_size = size as u32;
        hdr.setup_data = setup_data;
        zp.ext_ramdisk_image = (image >> 32) as u32;
        zp.ext_ramdisk_size = (size >> 32) as u32;
        zp.acpi_rsdp_addr = rsdp.unwrap_or(0);
        zp.e820_entries = memory.write_zero_page(&mut zp.e820_table);
        Ok(mem::ZERO_PAGE)
    }

    /// Where to jump.
    pub fn entry_point(&self, kernel: Range) -> (Entry, u64) {
        match self.info.entry {
            Entry::Bits64 => (Entry::Bits64, kernel.start + 0x200),
            Entry::Bits32 => (Entry::Bits32, kernel.start),
        }
    }
}

/// The error for a command line of `len` bytes (without its NUL) longer
/// than the kernel (`kernel_max`) or ferrite's room for it takes, the
/// kernel's limit first. (Scalars: a reference would keep the kernel's
/// description in memory.)
#[cold]
#[inline(never)]
fn cmdline_error(len: u64, kernel_max: u64) -> Error {
    let max = if len > kernel_max {
        kernel_max
    } else {
        mem::CMDLINE_ROOM - 1
    };
    Error::CmdlineTooLong { len, max }
}

/// Room in the high zone for a `SETUP_E820_EXT` node, when the final map may
/// have more entries than the zero page's 128: the `memory` of now plus at
/// most `growth` that ferrite's own reservations add. None on an ordinary VM.
/// Taken before the initrd is placed below the zone, clear of `kernel`.
/// (Inline: the usual None is a test in the caller, not a call and a
/// `Result` returned through memory.)
#[inline(always)]
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
    e820_ext_node(zone, kernel, most)
}

/// [`reserve_e820_ext`] for a map of up to `most` entries, more than the
/// zero page holds.
#[cold]
#[inline(never)]
fn e820_ext_node(zone: &mut HighZone, kernel: Range, most: usize) -> Result<Option<Range>, Error> {
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
fn link_e820_ext(
    mem: &mut impl GuestMemory,
    memory: &MemoryMap,
    node: Option<Range>,
    next: u64,
) -> Result<u64, Error> {
    if memory.len() <= E820_MAX_ENTRIES_ZEROPAGE {
        return Ok(next);
    }
    let node = node.ok_or(Error::OutOfFirmwareMemory(
        "the e820 map's SETUP_E820_EXT node",
    ))?;
    // `node` is high-zone RAM reserve_e820_ext took for this, reserved in
    // the final map.
    let bytes = mem.bytes(node.start, node.len() as usize)?;
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
/// (Inline: a boot calls it once, and `range` stays in registers.)
#[inline(always)]
pub fn load_initrd(
    fw_cfg: &mut FwCfg<impl PortIo>,
    mem: &mut impl GuestMemory,
    range: Option<Range>,
) -> Result<(), Error> {
    let Some(range) = range else { return Ok(()) };
    fw_cfg.read_to_guest(
        mem,
        Item::InitrdData as u16,
        range.start,
        range.len() as u32,
    )
}

/// Loads the command line (`size` bytes with its NUL, checked against
/// `mem::CMDLINE_ROOM` by the caller) to its fixed place and terminates it.
pub fn load_cmdline(
    fw_cfg: &mut FwCfg<impl PortIo>,
    mem: &mut impl GuestMemory,
    size: u64,
) -> Result<(), Error> {
    debug_assert!(size <= mem::CMDLINE_ROOM);
    // The command-line area is reserved for this (mem.rs), and taken whole:
    // a fixed range, its check settled at build time rather than a branch
    // (a translation block under TCG). `size` is within it (the caller's
    // check; the `min` only lets the compiler see that, and drop the slices'
    // own checks). At least the first byte is written, the NUL of an empty
    // line.
    let area = mem.bytes(mem::CMDLINE, mem::CMDLINE_ROOM as usize)?;
    let size = (size as usize).min(area.len());
    fw_cfg.read_into(Item::CmdlineData as u16, &mut area[..size]);
    // Terminated whatever the read's outcome (a failure is the device's to
    // report: FwCfg::check).
    area[size.max(1) - 1] = 0;
    Ok(())
}

const _: () = assert!(size_of::<SetupData>() == 16);

#[cfg(test)]
mod tests {
    use super::*;

    /// The merged command-line test's error: the kernel's limit first, then
    /// ferrite's room, as the two tests it replaced gave them.
    #[test]
    fn a_command_line_too_long_names_the_limit_it_broke() {
        let room = mem::CMDLINE_ROOM - 1;
        // Beyond the kernel's limit (and ferrite's room, or not).
        for len in [256, room + 1, u64::MAX - 1] {
            assert_eq!(
                cmdline_error(len, 255),
                Error::CmdlineTooLong { len, max: 255 }
            );
        }
        // Within the kernel's limit, beyond ferrite's room.
        let len = room + 1;
        assert_eq!(
            cmdline_error(len, u32::MAX as u64),
            Error::CmdlineTooLong { len, max: room }
        );
    }
}
