//! Sizing and assignment (SeaBIOS's pci_bios_check_devices and
//! pci_bios_map_devices): every BAR and option-ROM BAR sized, every bridge
//! window sized from what lies behind it, the root bus's I/O and memory windows
//! placed (64-bit BARs moved above the RAM above 4 GiB when the window below
//! 4 GiB is too small), then the addresses written, largest alignment first.
//!
//! Each bus keeps, per kind, a list of its BARs and bridge windows in
//! SeaBIOS's order, linked by u16 indices into [`Pci`]'s entries.

use super::caps::{
    CAP_ID_EXP, Hotplug, find_capability, hotplug_support, reserved_size,
    resource_reserve_capability,
};
use super::config::{CLASS_SERIAL_USB, read8, read32, reg, write8, write16, write32};
use super::{Bdf, Device, Layout, NONE, Pci, PciError, Platform, heap};
use crate::chipset::{INTEL, Machine, q35};
use crate::io::PortIo;
use crate::mem::Range;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
    Io = 0,
    Mem = 1,
    PrefMem = 2,
}
pub(super) const KINDS: [Kind; 3] = [Kind::Io, Kind::Mem, Kind::PrefMem];

/// One BAR (`bar` 0..=6, 6 = ROM) or one bridge window (`bar` = -1).
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    dev: u16,
    bar: i8,
    size: u64,
    align: u64,
    is64: bool,
    kind: Kind,
    next: u16,
}

pub(super) const EMPTY_ENTRY: Entry = Entry {
    dev: 0,
    bar: 0,
    size: 0,
    align: 0,
    is64: false,
    kind: Kind::Io,
    next: NONE,
};

/// A list of entries in SeaBIOS's order: alignment, then size, descending.
#[derive(Clone, Copy)]
pub(super) struct List {
    head: u16,
}
pub(super) const EMPTY_LIST: List = List { head: NONE };

/// All zeros, for [`Pci::new`]'s image in .bss.
pub(super) const ZERO_ENTRY: Entry = Entry {
    next: 0,
    ..EMPTY_ENTRY
};
pub(super) const ZERO_LIST: List = List { head: 0 };

/// The 32-bit window's end: the I/O APIC's page.
const PCIMEM_END: u64 = 0xFEC0_0000;
const DEVICE_MEM_MIN: u64 = 1 << 12;
const BRIDGE_MEM_MIN: u64 = 1 << 21;
const BRIDGE_IO_MIN: u64 = 0x1000;
const GIB: u64 = 1 << 30;

impl Pci {
    /// SeaBIOS's pci_bios_init_platform: the 32-bit window's start (q35's
    /// MMCONFIG window is open already), into the layout [`Pci::setup`]
    /// hands back.
    pub(super) fn platform(&mut self, p: &Platform) {
        let mut layout = Layout {
            mem32_start: p.low_ram_end,
            mem64: None,
            reserved: [None, None],
            functions: 0,
            max_bus: 0,
        };
        match p.host {
            Machine::I440fx | Machine::NoPci => {
                if p.low_ram_end <= 0x8000_0000 {
                    layout.mem32_start = 0x8000_0000;
                } else if p.low_ram_end <= 0xC000_0000 {
                    layout.mem32_start = 0xC000_0000;
                }
            }
            Machine::Q35 => {
                layout.reserved[0] = Some(p.mmconfig);
                layout.mem32_start = p.mmconfig.end;
            }
        }
        if self.find(INTEL, q35::ICH9_LPC_ID).is_some() {
            layout.reserved[1] = Some(q35::ICH9_RCBA);
        }
        self.layout = layout;
    }

    fn find(&self, vendor: u16, device: u16) -> Option<&Device> {
        self.devices
            .as_slice()
            .iter()
            .find(|d| d.vendor == vendor && d.device == device)
    }

    /// Step 3a (pci_bios_check_devices, first half): every BAR of every function.
    pub(super) fn size_devices(&mut self, io: &mut impl PortIo) -> Result<(), PciError> {
        for i in 0..self.devices.len() {
            let d = self.devices[i];
            if d.is_bridge() {
                self.bus_dev[d.secondary_bus as usize] = i as u16;
            }
            let bus = self.list_bus(d.bdf.0);
            let mut bar = 0;
            while bar < 7 {
                if d.is_bridge() && (2..6).contains(&bar) {
                    bar += 1;
                    continue;
                }
                let (kind, mut size, is64) = size_bar(io, &d, bar);
                if size != 0 {
                    if kind != Kind::Io && size < DEVICE_MEM_MIN {
                        size = DEVICE_MEM_MIN;
                    }
                    self.add(bus, i as u16, bar as i8, size, size, kind, is64)?;
                }
                bar += if is64 { 2 } else { 1 };
            }
        }
        Ok(())
    }

    /// Resources of devices on a bus whose bridge ferrite did not find go to the root.
    fn list_bus(&self, bus: u8) -> u8 {
        if self.bus_dev[bus as usize] == NONE {
            0
        } else {
            bus
        }
    }

    /// Step 3b: each bridge window, from the deepest bus up.
    pub(super) fn size_bridges(&mut self, io: &mut impl PortIo) -> Result<(), PciError> {
        for secondary in (1..=self.max_bus as usize).rev() {
            let dev_index = self.bus_dev[secondary];
            if dev_index == NONE {
                continue;
            }
            let d = self.devices[dev_index as usize];
            let parent = self.list_bus(d.bdf.0);
            let pcie = find_capability(io, d.bdf, CAP_ID_EXP, 0);
            let reserve = resource_reserve_capability(io, &d);
            let hotplug = hotplug_support(io, d.bdf, pcie);
            for kind in KINDS {
                if !bridge_has_region(io, d.bdf, kind) {
                    continue;
                }
                let mut align = if kind == Kind::Io {
                    BRIDGE_IO_MIN
                } else {
                    BRIDGE_MEM_MIN
                };
                let reserved = reserve.map_or(0, |cap| reserved_size(io, d.bdf, cap, kind));
                let list = self.lists[secondary][kind as usize];
                align = align.max(self.list_align(list));
                let mut sum = self.list_sum(list);
                let optional = hotplug == Hotplug::Pcie && pcie != 0 && kind == Kind::Io;
                if sum == 0 && hotplug != Hotplug::None && !optional {
                    sum = align;
                }
                let size = if reserved > sum {
                    if kind == Kind::Io {
                        reserved
                    } else {
                        align_up(reserved, align)
                    }
                } else {
                    align_up(sum, align)
                };
                let is64 =
                    kind == Kind::PrefMem && bridge_pref_is64(io, d.bdf) && self.list_all_64(list);
                self.add(parent, dev_index, -1, size, align, kind, is64)?;
            }
        }
        Ok(())
    }

    /// Inserts an entry into a bus's list, after every entry of larger or equal
    /// (alignment, size): SeaBIOS's pci_region_create_entry.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        bus: u8,
        dev: u16,
        bar: i8,
        size: u64,
        align: u64,
        kind: Kind,
        is64: bool,
    ) -> Result<(), PciError> {
        let new = self.entries.len() as u16;
        self.entries
            .push(Entry {
                dev,
                bar,
                size,
                align,
                is64,
                kind,
                next: NONE,
            })
            .map_err(heap)?;
        let head = &mut self.lists[bus as usize][kind as usize].head;
        let mut prev: Option<u16> = None;
        let mut cur = *head;
        while cur != NONE {
            let e = &self.entries[cur as usize];
            if e.align < align || (e.align == align && e.size < size) {
                break;
            }
            prev = Some(cur);
            cur = e.next;
        }
        self.entries[new as usize].next = cur;
        match prev {
            Some(p) => self.entries[p as usize].next = new,
            None => self.lists[bus as usize][kind as usize].head = new,
        }
        Ok(())
    }

    fn iter(&self, list: List) -> impl Iterator<Item = (u16, &Entry)> + '_ {
        let mut cur = list.head;
        core::iter::from_fn(move || {
            (cur != NONE).then(|| {
                let i = cur;
                cur = self.entries[i as usize].next;
                (i, &self.entries[i as usize])
            })
        })
    }
    /// Saturates: sizes read from hostile hardware must not wrap around to a
    /// sum that fits.
    fn list_sum(&self, list: List) -> u64 {
        self.iter(list)
            .fold(0u64, |sum, (_, e)| sum.saturating_add(e.size))
    }
    /// The first entry has the largest alignment; an empty list aligns to 1.
    fn list_align(&self, list: List) -> u64 {
        self.iter(list).next().map_or(1, |(_, e)| e.align)
    }
    fn list_all_64(&self, list: List) -> bool {
        self.iter(list).all(|(_, e)| e.is64)
    }

    /// Steps 4 and 5 (pci_bios_map_devices). Returns the 64-bit window, if used.
    pub(super) fn map(
        &mut self,
        io: &mut impl PortIo,
        p: &Platform,
        mem32_start: u64,
    ) -> Result<Option<Range>, PciError> {
        let io_sum = self.list_sum(self.lists[0][Kind::Io as usize]);
        let io_low_end: u64 = match p.host {
            Machine::I440fx | Machine::NoPci => 0xA000,
            Machine::Q35 if p.pm_base < 0x1000 => 0x1_0000,
            Machine::Q35 => p.pm_base as u64,
        };
        self.bases[0][Kind::Io as usize] = if io_sum < 0x4000 {
            0xC000
        } else if io_sum < io_low_end - 0x1000 {
            0x1000
        } else {
            return Err(PciError::OutOfIoSpace);
        };

        let mut mem64 = None;
        if !self.place_root_mem(mem32_start) {
            let high_mem = self.migrate_64bit(Kind::Mem);
            let high_pref = self.migrate_64bit(Kind::PrefMem);
            if !self.place_root_mem(mem32_start) {
                return Err(PciError::OutOfMemorySpace);
            }
            let (sum_mem, align_mem) = (self.list_sum(high_mem), self.list_align(high_mem));
            let (sum_pref, align_pref) = (self.list_sum(high_pref), self.list_align(high_pref));
            let mut base = p.reserved_memory_end.max(p.high_ram_end);
            base = align_up(align_up(base, align_mem), GIB);
            let pref_base = align_up(align_up(base.saturating_add(sum_mem), align_pref), GIB);
            let end = align_up(pref_base.saturating_add(sum_pref), GIB);
            // 2^64 is no window (nor are the 52 bits of x86's physical addresses).
            if end > 1 << 52 {
                return Err(PciError::OutOfMemorySpace);
            }
            self.map_list(io, high_mem, base);
            self.map_list(io, high_pref, pref_base);
            mem64 = Some(Range::new(base, end));
        }
        for bus in 0..=self.max_bus as usize {
            for kind in KINDS {
                let list = self.lists[bus][kind as usize];
                let base = self.bases[bus][kind as usize];
                self.map_list(io, list, base);
            }
        }
        Ok(mem64)
    }

    /// pci_bios_init_root_regions_mem: the two memory lists of the root bus at the
    /// top of the 32-bit window, the more aligned one lower.
    fn place_root_mem(&mut self, mem32_start: u64) -> bool {
        let mem = self.lists[0][Kind::Mem as usize];
        let pref = self.lists[0][Kind::PrefMem as usize];
        let (low, high) = if self.list_align(mem) < self.list_align(pref) {
            (Kind::PrefMem, Kind::Mem)
        } else {
            (Kind::Mem, Kind::PrefMem)
        };
        let (low_list, high_list) = (self.lists[0][low as usize], self.lists[0][high as usize]);
        // A sum beyond the window does not fit (and must not wrap around into it).
        let Some(high_base) = PCIMEM_END.checked_sub(self.list_sum(high_list)) else {
            return false;
        };
        let high_base = align_down(high_base, self.list_align(high_list));
        let Some(low_base) = high_base.checked_sub(self.list_sum(low_list)) else {
            return false;
        };
        let low_base = align_down(low_base, self.list_align(low_list));
        self.bases[0][high as usize] = high_base;
        self.bases[0][low as usize] = low_base;
        (mem32_start..=PCIMEM_END).contains(&low_base)
    }

    /// Moves the root bus's 64-bit entries (USB controllers excepted) to a list of
    /// their own, keeping their order.
    fn migrate_64bit(&mut self, kind: Kind) -> List {
        let mut moved = EMPTY_LIST;
        let mut moved_tail: Option<u16> = None;
        let mut prev: Option<u16> = None;
        let mut cur = self.lists[0][kind as usize].head;
        while cur != NONE {
            let e = self.entries[cur as usize];
            let next = e.next;
            if e.is64 && self.devices[e.dev as usize].class != CLASS_SERIAL_USB {
                match prev {
                    Some(p) => self.entries[p as usize].next = next,
                    None => self.lists[0][kind as usize].head = next,
                }
                self.entries[cur as usize].next = NONE;
                match moved_tail {
                    Some(t) => self.entries[t as usize].next = cur,
                    None => moved.head = cur,
                }
                moved_tail = Some(cur);
            } else {
                prev = Some(cur);
            }
            cur = next;
        }
        moved
    }

    fn map_list(&mut self, io: &mut impl PortIo, list: List, mut base: u64) {
        let mut cur = list.head;
        while cur != NONE {
            let e = self.entries[cur as usize];
            let d = self.devices[e.dev as usize];
            let addr = base;
            base += e.size;
            if e.bar < 0 {
                self.bases[d.secondary_bus as usize][e.kind as usize] = addr;
                map_window(io, d.bdf, e.kind, addr, e.size);
            } else {
                let ofs = bar_register(&d, e.bar as u8);
                write32(io, d.bdf, ofs, addr as u32);
                if e.is64 {
                    write32(io, d.bdf, ofs + 4, (addr >> 32) as u32);
                }
            }
            cur = e.next;
        }
    }
}

/// Does the bridge forward this kind (memory always does)? Leaves the probed
/// base register as SeaBIOS does; the window is written later.
fn bridge_has_region(io: &mut impl PortIo, bdf: Bdf, kind: Kind) -> bool {
    let base = match kind {
        Kind::Io => reg::IO_BASE,
        Kind::PrefMem => reg::PREF_MEMORY_BASE,
        Kind::Mem => return true,
    };
    write8(io, bdf, base, 0xFF);
    read8(io, bdf, base) != 0
}

fn bridge_pref_is64(io: &mut impl PortIo, bdf: Bdf) -> bool {
    let mut pmem = read32(io, bdf, reg::PREF_MEMORY_BASE);
    if pmem == 0 {
        write32(io, bdf, reg::PREF_MEMORY_BASE, 0xFFF0_FFF0);
        pmem = read32(io, bdf, reg::PREF_MEMORY_BASE);
        write32(io, bdf, reg::PREF_MEMORY_BASE, 0);
    }
    pmem & 0xF == 1
}

fn bar_register(d: &Device, bar: u8) -> u8 {
    if bar == 6 {
        if d.header_type & 0x7F == 1 {
            reg::ROM_ADDRESS_BRIDGE
        } else {
            reg::ROM_ADDRESS
        }
    } else {
        reg::BAR0 + 4 * bar
    }
}

/// Sizes one BAR by writing all ones (pci_bios_get_bar): (kind, size, 64-bit).
/// The type bits are read-only, so the read-back holds them too; the register
/// is not restored, since every BAR that has a size gets its address later.
fn size_bar(io: &mut impl PortIo, d: &Device, bar: u8) -> (Kind, u64, bool) {
    let ofs = bar_register(d, bar);
    let ones = if bar == 6 { 0xFFFF_F800 } else { !0 };
    write32(io, d.bdf, ofs, ones);
    let val = read32(io, d.bdf, ofs) as u64;
    let (kind, mask, is64) = if bar == 6 {
        (Kind::Mem, 0xFFFF_F800u64, false)
    } else if val & 1 != 0 {
        (Kind::Io, 0xFFFF_FFFC, false)
    } else {
        let kind = if val & 8 != 0 {
            Kind::PrefMem
        } else {
            Kind::Mem
        };
        (kind, 0xFFFF_FFF0, val & 6 == 4)
    };
    let size = if is64 {
        write32(io, d.bdf, ofs + 4, !0);
        let val = val | (read32(io, d.bdf, ofs + 4) as u64) << 32;
        (!(val & (mask | 0xFFFF_FFFF_0000_0000))).wrapping_add(1)
    } else {
        (!(val & mask)).wrapping_add(1) & 0xFFFF_FFFF
    };
    (kind, size, is64)
}

fn map_window(io: &mut impl PortIo, bdf: Bdf, kind: Kind, addr: u64, size: u64) {
    let limit = addr.wrapping_add(size).wrapping_sub(1);
    match kind {
        Kind::Io => {
            write8(io, bdf, reg::IO_BASE, (addr >> 8) as u8);
            write16(io, bdf, reg::IO_BASE_UPPER16, 0);
            write8(io, bdf, reg::IO_LIMIT, (limit >> 8) as u8);
            write16(io, bdf, reg::IO_LIMIT_UPPER16, 0);
        }
        Kind::Mem => {
            write16(io, bdf, reg::MEMORY_BASE, (addr >> 16) as u16);
            write16(io, bdf, reg::MEMORY_LIMIT, (limit >> 16) as u16);
        }
        Kind::PrefMem => {
            write16(io, bdf, reg::PREF_MEMORY_BASE, (addr >> 16) as u16);
            write16(io, bdf, reg::PREF_MEMORY_LIMIT, (limit >> 16) as u16);
            write32(io, bdf, reg::PREF_BASE_UPPER32, (addr >> 32) as u32);
            write32(io, bdf, reg::PREF_LIMIT_UPPER32, (limit >> 32) as u32);
        }
    }
}

/// Saturates at the top: an overflowing size then fits nowhere.
fn align_up(v: u64, align: u64) -> u64 {
    v.checked_next_multiple_of(align.max(1)).unwrap_or(u64::MAX)
}
fn align_down(v: u64, align: u64) -> u64 {
    v / align.max(1) * align.max(1)
}
