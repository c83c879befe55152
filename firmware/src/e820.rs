//! The e820 memory map: parsed from QEMU's `etc/e820`, amended with what the
//! firmware reserves, and handed to the kernel in the zero page.
//!
//! The map is kept sorted, without overlaps and with touching entries of the same
//! type merged. When ranges collide, anything that is not RAM wins over RAM: a range
//! somebody reserved is never handed to the kernel as usable.

use core::hint::select_unpredictable;
use core::mem::MaybeUninit;

use alloc::vec::Vec;

use crate::bootparams::{
    E820_MAX_ENTRIES_ZEROPAGE, E820Entry, SetupData, e820_type, setup_data_type,
};
use crate::error::Error;
use crate::fwcfg::FwCfg;
use crate::heap::{self, OutOfHeap, SpillVec};
use crate::io::PortIo;
use crate::mem::{Range, one_test};

/// Entries kept inline, without the heap: QEMU's map plus the firmware's own
/// reservations on any ordinary VM. A larger map moves to the heap whole.
const INLINE: usize = 136;

/// Size of one `etc/e820` record.
pub const RECORD_SIZE: usize = 20;
/// The largest `etc/e820` read into a buffer on the stack (128 records); a
/// larger one is read into the heap.
pub const E820_FILE_INLINE: usize = E820_MAX_ENTRIES_ZEROPAGE * RECORD_SIZE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum E820Error {
    /// `etc/e820` is not a whole number of 20-byte records, or is empty.
    BadLength(usize),
    /// An entry's end lies beyond 2^64.
    Wraps { addr: u64, size: u64 },
    /// More entries than the place they go to holds (a PVH or multiboot
    /// kernel's memory map, 128 entries).
    TooManyEntries,
    /// The heap cannot hold the map (`bytes` asked for).
    OutOfHeap(usize),
    /// No RAM at all, or none at 1 MiB where the kernel goes.
    NoRam,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub range: Range,
    pub typ: u32,
}

impl Region {
    /// As the zero page (and `SETUP_E820_EXT`) store it.
    pub fn entry(&self) -> E820Entry {
        E820Entry {
            addr: self.range.start,
            size: self.range.len(),
            typ: self.typ,
        }
    }
}

impl From<OutOfHeap> for E820Error {
    fn from(e: OutOfHeap) -> Self {
        E820Error::OutOfHeap(e.bytes)
    }
}

pub struct MemoryMap {
    regions: SpillVec<Region, INLINE>,
}

impl Default for MemoryMap {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryMap {
    pub const fn new() -> MemoryMap {
        MemoryMap {
            regions: SpillVec::new(Region {
                range: Range::new(0, 0),
                typ: 0,
            }),
        }
    }

    /// Reads QEMU's `etc/e820` from fw_cfg into this (empty) map, whole: a
    /// missing file, a failed transfer or a map larger than the heap is an
    /// error, never a map cut short.
    pub fn read_from<IO: PortIo>(&mut self, fw_cfg: &mut FwCfg<IO>) -> Result<(), Error> {
        let file = fw_cfg.find_padded(&const { crate::fwcfg::file_key(b"etc/e820") });
        // One test for a missing file and one too large for the stack (a
        // missing one as one of 4 GiB: a select, not a branch of its own).
        let none = crate::fwcfg::File {
            select: 0,
            size: u32::MAX,
        };
        let f = select_unpredictable(file.is_some(), file.unwrap_or(none), none);
        let (select, size) = (f.select, f.size as usize);
        if one_test(size > E820_FILE_INLINE) {
            return self.read_large(fw_cfg, file);
        }
        // (The `min` changes nothing but tells `read_file` the file fits
        // its buffer, with no check of its own to translate.)
        let file = crate::fwcfg::File {
            select,
            size: size.min(E820_FILE_INLINE) as u32,
        };
        let mut buf = [MaybeUninit::uninit(); E820_FILE_INLINE];
        Ok(self.load_qemu(fw_cfg.read_file("etc/e820", file, &mut buf)?)?)
    }

    /// A map of more than 128 records, read into the heap; or no map.
    #[cold]
    #[inline(never)]
    fn read_large<IO: PortIo>(
        &mut self,
        fw_cfg: &mut FwCfg<IO>,
        file: Option<crate::fwcfg::File>,
    ) -> Result<(), Error> {
        let file = file.ok_or(Error::MissingFile("etc/e820"))?;
        let mut buf: Vec<u8> = heap::with_capacity(file.size as usize)
            .map_err(Error::out_of_heap("QEMU's e820 map"))?;
        let bytes = fw_cfg.read_file("etc/e820", file, buf.spare_capacity_mut())?;
        Ok(self.load_qemu(bytes)?)
    }

    /// Parses QEMU's `etc/e820` (packed little-endian `{u64 addr; u64 size; u32 type}`).
    /// Zero-sized records are skipped; overlapping ones are resolved in favour of
    /// the non-RAM type.
    pub fn from_qemu(bytes: &[u8]) -> Result<MemoryMap, E820Error> {
        let mut map = MemoryMap::new();
        map.load_qemu(bytes)?;
        Ok(map)
    }

    /// [`MemoryMap::from_qemu`] into an existing (empty) map: the firmware keeps
    /// its map in .bss rather than copying 3 KiB around.
    pub fn load_qemu(&mut self, bytes: &[u8]) -> Result<(), E820Error> {
        if one_test(bytes.is_empty() | !bytes.len().is_multiple_of(RECORD_SIZE)) {
            return Err(E820Error::BadLength(bytes.len()));
        }
        self.regions.clear();
        let loaded = self.load_disjoint(bytes);
        // The usual outcome in one test; the others out of line.
        if one_test(loaded != Ok(Some(true))) {
            return self.load_otherwise(bytes, loaded);
        }
        Ok(())
    }

    /// What [`MemoryMap::load_qemu`] makes of a map that is not laid
    /// entry by entry, or has no RAM, or did not fit.
    #[cold]
    #[inline(never)]
    fn load_otherwise(
        &mut self,
        bytes: &[u8],
        loaded: Result<Option<bool>, E820Error>,
    ) -> Result<(), E820Error> {
        let has_ram = match loaded? {
            Some(has_ram) => has_ram,
            None => self.load_overlapping(bytes)?,
        };
        if !has_ram {
            return Err(E820Error::NoRam);
        }
        Ok(())
    }

    /// The common case: QEMU's entries do not overlap (they need not be in
    /// order: pc and q35 list the reserved range above 1 TiB first). Each is
    /// laid into the sorted map by the splice the reservations use (one
    /// piece of code for TCG to translate, not two). Returns whether there
    /// is RAM, or None (leaving junk behind) when an entry overlaps another,
    /// or is empty or wraps (such an entry lays nothing): told once, after
    /// the loop, not by a test per entry.
    ///
    /// `bytes` holds at least one record ([`MemoryMap::load_qemu`] checked).
    fn load_disjoint(&mut self, bytes: &[u8]) -> Result<Option<bool>, E820Error> {
        let mut has_ram = false;
        let mut disjoint = true;
        let mut at = 0;
        loop {
            // (Sliced with its bounds check, which never fails, first in
            // the body: TCG then translates the body once as a block of its
            // own, not again for the jump back into it.)
            let rec = &bytes[at..at + RECORD_SIZE];
            at += RECORD_SIZE;
            let (addr, size, typ) = record(rec);
            let (end, wraps) = addr.overflowing_add(size);
            let lays = (size != 0) & !wraps;
            let range = select_unpredictable(lays, Range::new(addr, end), Range::new(0, 0));
            disjoint &= lays & (self.overwrite(range, lays.then_some(typ))? == 0);
            has_ram |= typ == e820_type::RAM;
            if at >= bytes.len() {
                return Ok(disjoint.then_some(has_ram));
            }
        }
    }

    /// Entries that overlap (or are empty, or wrap), taken one by one.
    fn load_overlapping(&mut self, bytes: &[u8]) -> Result<bool, E820Error> {
        self.regions.clear();
        self.insert_all(bytes)?;
        Ok(self.ram().next().is_some())
    }

    fn insert_all(&mut self, bytes: &[u8]) -> Result<(), E820Error> {
        let map = self;
        for rec in bytes.chunks_exact(RECORD_SIZE) {
            let (addr, size, typ) = record(rec);
            if size == 0 {
                continue;
            }
            let end = addr
                .checked_add(size)
                .ok_or(E820Error::Wraps { addr, size })?;
            map.insert(Range::new(addr, end), typ)?;
        }
        Ok(())
    }

    pub fn regions(&self) -> &[Region] {
        self.regions.as_slice()
    }

    /// How many entries the map has.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Whether the map outgrew its inline array and lives on the heap.
    pub fn on_heap(&self) -> bool {
        self.regions.on_heap()
    }

    /// RAM ranges, in ascending order.
    pub fn ram(&self) -> impl Iterator<Item = Range> + '_ {
        self.regions()
            .iter()
            .filter(|r| r.typ == e820_type::RAM)
            .map(|r| r.range)
    }

    /// Total RAM in bytes.
    pub fn ram_bytes(&self) -> u64 {
        self.ram().map(|r| r.len()).sum()
    }

    /// Is `range` entirely RAM?
    pub fn is_ram(&self, range: Range) -> bool {
        self.ram().any(|r| r.contains(&range))
    }

    /// End of the RAM region that contains 1 MiB: the top of "low" memory, below
    /// the PCI hole. The firmware's high zone and the initrd go just below it.
    #[inline]
    pub fn low_ram_top(&self) -> Result<u64, E820Error> {
        self.low_ram_end().ok_or(E820Error::NoRam)
    }

    /// [`MemoryMap::low_ram_top`], returned in registers (an `Option`, where
    /// the `Result` goes through memory).
    fn low_ram_end(&self) -> Option<u64> {
        // (A search that stops at the first hit: on QEMU's map its loop body
        // runs once, and TCG translates it once; its three conditions in one
        // test.)
        self.regions()
            .iter()
            .find(|r| {
                one_test(
                    (r.typ == e820_type::RAM)
                        & (r.range.start <= 0x10_0000)
                        & (0x10_0000 < r.range.end),
                )
            })
            .map(|r| r.range.end.min(1 << 32))
    }

    /// End of the RAM above 4 GiB, or 4 GiB when there is none.
    pub fn high_ram_end(&self) -> u64 {
        self.regions().iter().fold(1 << 32, |end, r| {
            // (The first pass, fallen into, was translated again for the
            // jump back.)
            crate::mem::block_boundary();
            end.max(select_unpredictable(
                r.typ == e820_type::RAM,
                r.range.end,
                0,
            ))
        })
    }

    /// Marks `range` as `typ`. RAM only fills holes; any other type overrides
    /// whatever was there.
    pub fn insert(&mut self, range: Range, typ: u32) -> Result<(), E820Error> {
        if range.is_empty() {
            return Ok(());
        }
        if typ == e820_type::RAM {
            // Add the parts of `range` not already covered by something: the
            // map is sorted, and the gaps pushed go after the entries looked at.
            let mut cursor = range.start;
            for i in 0..self.regions.len() {
                let r = self.regions.as_slice()[i];
                if r.range.end <= cursor || !r.range.overlaps(&range) {
                    continue;
                }
                if r.range.start > cursor {
                    let gap = Range::new(cursor, r.range.start);
                    self.push(Region { range: gap, typ })?;
                }
                cursor = cursor.max(r.range.end);
            }
            if cursor < range.end {
                let gap = Range::new(cursor, range.end);
                self.push(Region { range: gap, typ })?;
            }
            self.normalize();
            Ok(())
        } else {
            Ok(self.overwrite(range, Some(typ)).map(drop)?)
        }
    }

    /// Removes `range` from the map, whatever its type (a hole, as [0xA0000, 0xF0000)).
    pub fn remove(&mut self, range: Range) -> Result<(), E820Error> {
        if range.is_empty() {
            return Ok(());
        }
        Ok(self.overwrite(range, None).map(drop)?)
    }

    /// Writes the map's first 128 entries into a zero page's table and returns
    /// how many; the rest, if any, go to Linux through a `SETUP_E820_EXT` node
    /// ([`MemoryMap::extended`]).
    /// (Inline: one caller, which its call and return would cost two
    /// blocks.)
    #[inline(always)]
    pub fn write_zero_page(&self, table: &mut [E820Entry; E820_MAX_ENTRIES_ZEROPAGE]) -> u8 {
        for (slot, r) in table.iter_mut().zip(self.regions()) {
            crate::mem::block_boundary();
            *slot = r.entry();
        }
        self.regions().len().min(E820_MAX_ENTRIES_ZEROPAGE) as u8
    }

    /// The entries beyond the zero page's 128 (empty on an ordinary VM).
    pub fn extended(&self) -> &[Region] {
        self.regions()
            .get(E820_MAX_ENTRIES_ZEROPAGE..)
            .unwrap_or(&[])
    }

    /// Writes the entries beyond the zero page's 128 as a `SETUP_E820_EXT`
    /// node (Linux's boot protocol: `setup_data` of type 1, its payload packed
    /// 20-byte e820 entries) linked to `next`, into `node`; returns the node's
    /// length, or None when there is nothing beyond the zero page or the
    /// node does not fit `node`.
    pub fn write_ext_node(&self, node: &mut [u8], next: u64) -> Option<usize> {
        let ext = self.extended();
        let len = ext_node_len(ext.len());
        if ext.is_empty() || len > node.len() {
            return None;
        }
        let head = SetupData {
            next,
            typ: setup_data_type::E820_EXT,
            len: (ext.len() * RECORD_SIZE) as u32,
        };
        node[..SETUP_DATA_HEAD].copy_from_slice(&head.to_bytes());
        let payload = &mut node[SETUP_DATA_HEAD..len];
        for (slot, r) in payload.chunks_exact_mut(RECORD_SIZE).zip(ext) {
            slot.copy_from_slice(&r.entry().to_bytes());
        }
        Some(len)
    }
}

/// One `etc/e820` record: address, size and type.
fn record(rec: &[u8]) -> (u64, u64, u32) {
    (
        u64::from_le_bytes(rec[0..8].try_into().unwrap()),
        u64::from_le_bytes(rec[8..16].try_into().unwrap()),
        u32::from_le_bytes(rec[16..20].try_into().unwrap()),
    )
}

const SETUP_DATA_HEAD: usize = core::mem::size_of::<SetupData>();

/// Bytes of a `SETUP_E820_EXT` node holding `entries` entries.
pub fn ext_node_len(entries: usize) -> usize {
    SETUP_DATA_HEAD + entries * RECORD_SIZE
}

// Finding room in the map for the kernel and the initrd.
mod fit;
// Laying a range into the map.
mod splice;
pub use fit::{NOWHERE, Prefer};

#[cfg(test)]
mod tests;
