//! Capability lists: finding a capability, whether a bridge or port takes
//! hot-plug (PCI Express slot or SHPC), and what QEMU's resource-reserve
//! capability asks a bridge's windows to hold for it (SeaBIOS's
//! pci_find_capability, pci_bridge_has_region and its hot-plug reservation).

use super::config::{Config, STATUS_CAP_LIST, reg};
use super::list::Kind;
use super::{Bdf, Device};

pub(super) const CAP_ID_EXP: u8 = 0x10;
pub(super) const CAP_ID_VNDR: u8 = 0x09;
pub(super) const CAP_ID_SHPC: u8 = 0x0C;

/// Offsets in QEMU's resource-reserve capability (SeaBIOS's fw/dev-pci.h).
pub(super) const RES_RESERVE_BUS: u8 = 4;
const RES_RESERVE_IO: u8 = 8;
const RES_RESERVE_MEM: u8 = 16;
const RES_RESERVE_PREF_32: u8 = 20;
const RES_RESERVE_PREF_64: u8 = 24;
const RES_RESERVE_LEN: u8 = 32;
const REDHAT: u16 = 0x1B36;

/// The capability `id` after `start` (0: from the list's head), or 0.
pub(super) fn find_capability(io: &mut impl Config, bdf: Bdf, id: u8, start: u8) -> u8 {
    if start == 0 && io.read16(bdf, reg::STATUS) & STATUS_CAP_LIST == 0 {
        return 0;
    }
    let mut cap = if start == 0 {
        io.read8(bdf, reg::CAPABILITIES)
    } else {
        io.read8(bdf, start + 1)
    };
    // At most 48 capabilities fit in the 192 bytes after the header.
    for _ in 0..48 {
        cap &= 0xFC;
        if cap == 0 {
            return 0;
        }
        if io.read8(bdf, cap) == id {
            return cap;
        }
        cap = io.read8(bdf, cap + 1);
    }
    0
}

/// QEMU's vendor capability on its root ports and bridges, telling how much to
/// reserve for hot-plug.
pub(super) fn resource_reserve_capability(io: &mut impl Config, d: &Device) -> Option<u8> {
    if d.vendor != REDHAT || !matches!(d.device, 0x000C | 0x0001) {
        return None;
    }
    let mut cap = 0;
    loop {
        cap = find_capability(io, d.bdf, CAP_ID_VNDR, cap);
        if cap == 0 {
            return None;
        }
        if io.read8(d.bdf, cap + 3) == 1 {
            break;
        }
    }
    (io.read8(d.bdf, cap + 2) >= RES_RESERVE_LEN).then_some(cap)
}

/// What the reserve capability asks for `kind`; 0 for "nothing" (all ones).
pub(super) fn reserved_size(io: &mut impl Config, bdf: Bdf, cap: u8, kind: Kind) -> u64 {
    match kind {
        Kind::Io => match io.read64(bdf, cap + RES_RESERVE_IO) {
            u64::MAX => 0,
            v => v,
        },
        Kind::Mem => match io.read32(bdf, cap + RES_RESERVE_MEM) {
            u32::MAX => 0,
            v => v as u64,
        },
        Kind::PrefMem => {
            let p32 = io.read32(bdf, cap + RES_RESERVE_PREF_32);
            let p64 = io.read64(bdf, cap + RES_RESERVE_PREF_64);
            match (p32 != u32::MAX, p64 != u64::MAX) {
                (true, false) => p32 as u64,
                (false, true) => p64,
                _ => 0,
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Hotplug {
    None,
    Pcie,
    Shpc,
}

/// The hot-plug a bridge offers, from its PCI Express capability at `pcie`
/// (0: none) or an SHPC capability.
pub(super) fn hotplug_support(io: &mut impl Config, bdf: Bdf, pcie: u8) -> Hotplug {
    if pcie != 0 {
        let flags = io.read16(bdf, pcie + 2);
        let port_type = (flags & 0xF0) >> 4;
        // 7: PCIe-to-PCI bridge, which may have SHPC instead.
        if port_type != 7 {
            let downstream = port_type == 6 || port_type == 4;
            let slot = flags & 0x100 != 0;
            return if downstream && slot {
                Hotplug::Pcie
            } else {
                Hotplug::None
            };
        }
    }
    if find_capability(io, bdf, CAP_ID_SHPC, 0) != 0 {
        Hotplug::Shpc
    } else {
        Hotplug::None
    }
}
