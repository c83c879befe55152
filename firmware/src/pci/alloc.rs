//! Sizing and assignment (SeaBIOS's pci_bios_check_devices and
//! pci_bios_map_devices): every BAR and option-ROM BAR sized, every bridge
//! window sized from what lies behind it, the root bus's I/O and memory windows
//! placed (64-bit BARs moved above the RAM above 4 GiB when the window below
//! 4 GiB is too small), then the addresses written, largest alignment first.
//!
//! Each bus keeps, per kind, a list of its BARs and bridge windows in
//! SeaBIOS's order (`list`).

use super::caps::{
    CAP_ID_EXP, Hotplug, find_capability, hotplug_support, reserved_size,
    resource_reserve_capability,
};
use super::config::{Config, reg};
use super::list::{Entry, KINDS, Kind};
use super::{Bdf, Device, NONE, Pci, PciError, Platform};
use crate::chipset::{self, Machine, q35};
use crate::mem::Range;

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
        use core::hint::select_unpredictable as select;
        // Selects, not branches (TCG): i440FX's window starts at 2 or 3 GiB
        // when the RAM below 4 GiB leaves room, q35's after MMCONFIG.
        let low = p.low_ram_end;
        let i440fx_start = select(
            low <= 0x8000_0000,
            0x8000_0000,
            select(low <= 0xC000_0000, 0xC000_0000, low),
        );
        let q35 = p.host == Machine::Q35;
        // Field by field: a whole Layout moved is a `rep movs`, a block of its own.
        let layout = &mut self.layout;
        layout.mem32_start = select(q35, p.mmconfig.end, i440fx_start);
        layout.mem64 = None;
        // `then_some`: the flags stored, no branch (TCG).
        layout.reserved = [
            q35.then_some(p.mmconfig),
            self.has_ich9_lpc.then_some(q35::ICH9_RCBA),
        ];
    }

    /// Step 3a (pci_bios_check_devices, first half): every BAR of every function.
    pub(super) fn size_devices(&mut self, io: &mut impl Config) -> Result<(), PciError> {
        let mut i = 0;
        // `get`: the loop's test and the bounds check in one.
        while let Some(&d) = self.devices.as_slice().get(i) {
            let bridge = d.is_bridge();
            if bridge {
                self.buses.dev_inv[d.secondary_bus as usize] = !(i as u16);
            }
            let bus = self.list_bus(d.bdf.0);
            // The chipset's functions without BARs are not sized: their
            // registers can only read back zeros, an exit per access.
            let known = chipset::implements_no_bars(d.vendor, d.device);
            let mut bar = core::hint::select_unpredictable(known, 7, 0);
            while bar < 7 {
                crate::mem::block_boundary();
                let e = size_bar(io, &d, bar);
                if e.size != 0 {
                    let e = Entry { dev: i as u16, ..e };
                    self.add(bus, e)?;
                }
                bar += 1 + e.is64 as u8;
                // A bridge has BARs 0 and 1, then its ROM.
                bar = core::hint::select_unpredictable(bridge & (bar.wrapping_sub(2) < 4), 6, bar);
            }
            i += 1;
        }
        Ok(())
    }

    /// Resources of devices on a bus whose bridge ferrite did not find go to the root.
    fn list_bus(&self, bus: u8) -> u8 {
        if self.buses.dev_inv[bus as usize] == !NONE {
            0
        } else {
            bus
        }
    }

    /// Step 3b: each bridge window, from the deepest bus up.
    pub(super) fn size_bridges(&mut self, io: &mut impl Config) -> Result<(), PciError> {
        for secondary in (1..=self.max_bus as usize).rev() {
            let dev_index = !self.buses.dev_inv[secondary];
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
                let list = self.buses.lists[secondary][kind as usize];
                align = align.max(list.align());
                let mut sum = list.sum();
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
                let is64 = kind == Kind::PrefMem && bridge_pref_is64(io, d.bdf) && list.all_64();
                let window = Entry {
                    dev: dev_index,
                    bdf: d.bdf,
                    reg: d.secondary_bus,
                    window: true,
                    size,
                    align,
                    is64,
                    kind,
                    next: NONE,
                };
                self.add(parent, window)?;
            }
        }
        Ok(())
    }

    /// Steps 4 and 5 (pci_bios_map_devices). Returns the 64-bit window, if used.
    pub(super) fn map(
        &mut self,
        io: &mut impl Config,
        p: &Platform,
        mem32_start: u64,
    ) -> Result<Option<Range>, PciError> {
        let io_sum = self.buses.lists[0][Kind::Io as usize].sum();
        // Selects, not branches: one test for the whole decision (TCG).
        let q35_end =
            core::hint::select_unpredictable(p.pm_base < 0x1000, 0x1_0000, p.pm_base as u64);
        let io_low_end = core::hint::select_unpredictable(p.host == Machine::Q35, q35_end, 0xA000);
        let small = io_sum < 0x4000;
        if !small & (io_sum >= io_low_end - 0x1000) {
            return Err(PciError::OutOfIoSpace);
        }
        self.bases[0][Kind::Io as usize] = core::hint::select_unpredictable(small, 0xC000, 0x1000);

        let mut mem64 = None;
        if !self.place_root_mem(mem32_start) {
            let high_mem = self.migrate_64bit(Kind::Mem);
            let high_pref = self.migrate_64bit(Kind::PrefMem);
            if !self.place_root_mem(mem32_start) {
                return Err(PciError::OutOfMemorySpace);
            }
            let (sum_mem, align_mem) = (high_mem.sum(), high_mem.align());
            let (sum_pref, align_pref) = (high_pref.sum(), high_pref.align());
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
        // Bus by bus, kind by kind, as one loop over the lists (TCG: one
        // loop translated, not two nested, and no array of the kinds).
        for i in 0..(self.max_bus as usize + 1) * KINDS.len() {
            crate::mem::block_boundary();
            let list = self.buses.lists.as_flattened()[i];
            let base = self.bases.as_flattened()[i];
            self.map_list(io, list, base);
        }
        Ok(mem64)
    }

    /// pci_bios_init_root_regions_mem: the two memory lists of the root bus at the
    /// top of the 32-bit window, the more aligned one lower. Straight-line,
    /// with one test at the end (TCG): the bases are written even when they
    /// do not fit, for a caller that then moves lists or fails. Out of line:
    /// inlined, LLVM splits the final test into one branch per comparison.
    #[inline(never)]
    fn place_root_mem(&mut self, mem32_start: u64) -> bool {
        let [_, mem, pref] = self.buses.lists[0];
        let swap = mem.align() < pref.align();
        let (low, high) = core::hint::select_unpredictable(swap, (pref, mem), (mem, pref));
        let (low_kind, high_kind) = core::hint::select_unpredictable(swap, (2, 1), (1, 2));
        // A sum beyond the window does not fit (and must not wrap around into it).
        let high_base = align_down(PCIMEM_END.wrapping_sub(high.sum()), high.align());
        let low_base = align_down(high_base.wrapping_sub(low.sum()), low.align());
        self.bases[0][high_kind] = high_base;
        self.bases[0][low_kind] = low_base;
        (high.sum() <= PCIMEM_END)
            & (low.sum() <= high_base)
            & (mem32_start <= low_base)
            & (low_base <= PCIMEM_END)
    }
}

/// Does the bridge forward this kind (memory always does)? Leaves the probed
/// base register as SeaBIOS does; the window is written later.
fn bridge_has_region(io: &mut impl Config, bdf: Bdf, kind: Kind) -> bool {
    let base = match kind {
        Kind::Io => reg::IO_BASE,
        Kind::PrefMem => reg::PREF_MEMORY_BASE,
        Kind::Mem => return true,
    };
    io.write8(bdf, base, 0xFF);
    io.read8(bdf, base) != 0
}

fn bridge_pref_is64(io: &mut impl Config, bdf: Bdf) -> bool {
    let mut pmem = io.read32(bdf, reg::PREF_MEMORY_BASE);
    if pmem == 0 {
        io.write32(bdf, reg::PREF_MEMORY_BASE, 0xFFF0_FFF0);
        pmem = io.read32(bdf, reg::PREF_MEMORY_BASE);
        io.write32(bdf, reg::PREF_MEMORY_BASE, 0);
    }
    pmem & 0xF == 1
}

/// Sizes one BAR (`bar` 0-5, 6 the ROM) by writing all ones
/// (pci_bios_get_bar): its entry, of size 0 if it has none, with
/// SeaBIOS's minimum for memory and its own size as alignment. The type bits
/// are read-only, so the read-back holds them too; the register is not
/// restored, since every BAR that has a size gets its address later.
/// Selects rather than branches for the type bits: under TCG each branch is
/// a translated block.
fn size_bar(io: &mut impl Config, d: &Device, bar: u8) -> Entry {
    use core::hint::select_unpredictable as select;
    let rom = bar == 6;
    let rom_reg = select(
        d.header_type & 0x7F == 1,
        reg::ROM_ADDRESS_BRIDGE,
        reg::ROM_ADDRESS,
    );
    let ofs = select(rom, rom_reg, reg::BAR0 + 4 * bar);
    io.write32(d.bdf, ofs, select(rom, 0xFFFF_F800, !0));
    let val = io.read32(d.bdf, ofs) as u64;
    let is_io = !rom & (val & 1 != 0);
    let pref = !rom & !is_io & (val & 8 != 0);
    let is64 = !rom & !is_io & (val & 6 == 4);
    let kind = select(is_io, Kind::Io, select(pref, Kind::PrefMem, Kind::Mem));
    let mask: u64 = select(rom, 0xFFFF_F800, select(is_io, 0xFFFF_FFFC, 0xFFFF_FFF0));
    let mut size = (!(val & mask)).wrapping_add(1) & 0xFFFF_FFFF;
    if is64 {
        io.write32(d.bdf, ofs + 4, !0);
        let val = val | (io.read32(d.bdf, ofs + 4) as u64) << 32;
        size = (!(val & (mask | 0xFFFF_FFFF_0000_0000))).wrapping_add(1);
    }
    // SeaBIOS's minimum for memory BARs
    let size = select(!is_io & (size != 0), size.max(DEVICE_MEM_MIN), size);
    Entry {
        dev: 0,
        bdf: d.bdf,
        reg: ofs,
        window: false,
        size,
        align: size,
        is64,
        kind,
        next: NONE,
    }
}

/// Saturates at the top: an overflowing size then fits nowhere.
fn align_up(v: u64, align: u64) -> u64 {
    v.checked_next_multiple_of(align.max(1)).unwrap_or(u64::MAX)
}
fn align_down(v: u64, align: u64) -> u64 {
    v / align.max(1) * align.max(1)
}
