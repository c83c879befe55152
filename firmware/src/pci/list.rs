//! The lists sizing and assignment work on: per bus and kind, the BARs and
//! bridge windows in SeaBIOS's order (alignment, then size, descending),
//! linked by u16 indices into [`Pci`]'s entries, and the writes that give
//! them their addresses.
//!
//! Each list keeps its sum, largest alignment and whether every entry is
//! 64-bit up to date as entries go in: under TCG, walking a list for each of
//! those (call sites and loops of their own) cost more translated blocks than
//! the walks they saved.

use super::config::{CLASS_SERIAL_USB, Config, reg};
use super::{Bdf, NONE, Pci, PciError, heap};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
    Io = 0,
    Mem = 1,
    PrefMem = 2,
}
pub(super) const KINDS: [Kind; 3] = [Kind::Io, Kind::Mem, Kind::PrefMem];

/// One BAR or one bridge window (`window`) of function `dev` (at `bdf`).
/// `reg` is the BAR's register, or for a window the bus behind the bridge:
/// writing the address needs no look-up of the function.
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    pub(super) dev: u16,
    pub(super) bdf: Bdf,
    pub(super) reg: u8,
    pub(super) window: bool,
    pub(super) size: u64,
    pub(super) align: u64,
    pub(super) is64: bool,
    pub(super) kind: Kind,
    pub(super) next: u16,
}

/// All zeros, for [`Pci::new`]'s image in .bss.
pub(super) const ZERO_ENTRY: Entry = Entry {
    dev: 0,
    bdf: Bdf(0, 0, 0),
    reg: 0,
    window: false,
    size: 0,
    align: 0,
    is64: false,
    kind: Kind::Io,
    next: 0,
};

/// A list of entries in SeaBIOS's order: alignment, then size, descending.
#[derive(Clone, Copy, Debug)]
pub(super) struct List {
    /// The first entry's index, inverted: 0 (NONE) when empty, so that an
    /// empty list is all zeros and resetting every bus's lists is a memset.
    head_inv: u16,
    /// The sizes' sum, saturating: sizes read from hostile hardware must not
    /// wrap around to a sum that fits.
    sum: u64,
    /// The largest alignment (the first entry's), 0 while empty.
    max_align: u64,
    /// Some entry is not 64-bit.
    not64: bool,
}
/// All zeros, also for [`Pci::new`]'s image in .bss.
pub(super) const EMPTY_LIST: List = List {
    head_inv: !NONE,
    sum: 0,
    max_align: 0,
    not64: false,
};

impl List {
    fn head(&self) -> u16 {
        !self.head_inv
    }
    fn with_head(head: u16) -> List {
        List {
            head_inv: !head,
            ..EMPTY_LIST
        }
    }
    pub(super) fn sum(&self) -> u64 {
        self.sum
    }
    /// An empty list aligns to 1.
    pub(super) fn align(&self) -> u64 {
        self.max_align.max(1)
    }
    pub(super) fn all_64(&self) -> bool {
        !self.not64
    }
}

impl Pci {
    /// Inserts `e` into a bus's list, after every entry of larger or equal
    /// (alignment, size): SeaBIOS's pci_region_create_entry.
    pub(super) fn add(&mut self, bus: u8, e: Entry) -> Result<(), PciError> {
        let new = self.entries.len() as u16;
        self.entries.push(e).map_err(heap)?;
        let list = &mut self.buses.lists[bus as usize][e.kind as usize];
        list.sum = list.sum.saturating_add(e.size);
        list.max_align = list.max_align.max(e.align);
        list.not64 |= !e.is64;
        let entries = self.entries.as_mut_slice();
        let mut prev = NONE;
        let mut cur = list.head();
        // NONE is beyond any list's end: `get` ends the walk and checks the index.
        while let Some(c) = entries.get(cur as usize) {
            if (c.align < e.align) | ((c.align == e.align) & (c.size < e.size)) {
                break;
            }
            prev = cur;
            cur = c.next;
        }
        if let Some(n) = entries.get_mut(new as usize) {
            n.next = cur;
        }
        match entries.get_mut(prev as usize) {
            Some(p) => p.next = new,
            None => list.head_inv = !new,
        }
        Ok(())
    }

    /// `head`'s list with its sum, alignment and width worked out again.
    fn summarize(&self, head: u16) -> List {
        let mut list = List::with_head(head);
        let entries = self.entries.as_slice();
        let mut cur = head;
        while let Some(e) = entries.get(cur as usize) {
            list.sum = list.sum.saturating_add(e.size);
            list.max_align = list.max_align.max(e.align);
            list.not64 |= !e.is64;
            cur = e.next;
        }
        list
    }

    /// Moves the root bus's 64-bit entries (USB controllers excepted) to a list of
    /// their own, keeping their order.
    pub(super) fn migrate_64bit(&mut self, kind: Kind) -> List {
        let mut moved = NONE;
        let mut moved_tail: Option<u16> = None;
        let mut prev: Option<u16> = None;
        let mut head = self.buses.lists[0][kind as usize].head();
        let mut cur = head;
        while cur != NONE {
            let e = self.entries[cur as usize];
            let next = e.next;
            if e.is64 && self.devices[e.dev as usize].class != CLASS_SERIAL_USB {
                match prev {
                    Some(p) => self.entries[p as usize].next = next,
                    None => head = next,
                }
                self.entries[cur as usize].next = NONE;
                match moved_tail {
                    Some(t) => self.entries[t as usize].next = cur,
                    None => moved = cur,
                }
                moved_tail = Some(cur);
            } else {
                prev = Some(cur);
            }
            cur = next;
        }
        self.buses.lists[0][kind as usize] = self.summarize(head);
        self.summarize(moved)
    }

    /// Gives the entries of `list` their addresses from `base` up.
    #[inline(always)]
    pub(super) fn map_list(&mut self, io: &mut impl Config, list: List, mut base: u64) {
        let mut cur = list.head();
        while let Some(&e) = self.entries.as_slice().get(cur as usize) {
            let addr = base;
            base += e.size;
            if e.window {
                self.bases[e.reg as usize][e.kind as usize] = addr;
                map_window(io, e.bdf, e.kind, addr, e.size);
            } else {
                io.write32(e.bdf, e.reg, addr as u32);
                if e.is64 {
                    io.write32(e.bdf, e.reg + 4, (addr >> 32) as u32);
                }
            }
            cur = e.next;
        }
    }
}

fn map_window(io: &mut impl Config, bdf: Bdf, kind: Kind, addr: u64, size: u64) {
    let limit = addr.wrapping_add(size).wrapping_sub(1);
    match kind {
        Kind::Io => {
            io.write8(bdf, reg::IO_BASE, (addr >> 8) as u8);
            io.write16(bdf, reg::IO_BASE_UPPER16, 0);
            io.write8(bdf, reg::IO_LIMIT, (limit >> 8) as u8);
            io.write16(bdf, reg::IO_LIMIT_UPPER16, 0);
        }
        Kind::Mem => {
            io.write16(bdf, reg::MEMORY_BASE, (addr >> 16) as u16);
            io.write16(bdf, reg::MEMORY_LIMIT, (limit >> 16) as u16);
        }
        Kind::PrefMem => {
            io.write16(bdf, reg::PREF_MEMORY_BASE, (addr >> 16) as u16);
            io.write16(bdf, reg::PREF_MEMORY_LIMIT, (limit >> 16) as u16);
            io.write32(bdf, reg::PREF_BASE_UPPER32, (addr >> 32) as u32);
            io.write32(bdf, reg::PREF_LIMIT_UPPER32, (limit >> 32) as u32);
        }
    }
}
