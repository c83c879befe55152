//! `-M pc`: the i440FX host bridge with the PIIX3 (or PIIX4) south bridge, and
//! what SeaBIOS programs in them beyond the generic PCI steps (its
//! pci_device_tbl and piix_isa_bridge_setup, piix_ide_setup,
//! piix4_pm_config_setup).

use super::{PCI_IRQS, write_elcr};
use crate::io::PortIo;
use crate::pci::{Bdf, ConfigWrite, reg, write16, write32};

/// The host bridge's vendor and device ID, as one dword.
pub const I440FX_ID: u32 = 0x1237_8086;
/// PAM0, the first shadow RAM register.
pub(super) const PAM0: u8 = 0x59;

/// PIIX3 / PIIX4 device IDs.
pub(super) const PIIX3_ISA_ID: u16 = 0x7000;
pub(super) const PIIX4_ISA_ID: u16 = 0x7110;
pub(super) const PIIX3_IDE_ID: u16 = 0x7010;
pub(super) const PIIX4_IDE_ID: u16 = 0x7111;
pub const PIIX4_PM_ID: u16 = 0x7113;

/// The interrupt line of PIIX4 PM's SCI.
pub(super) const SCI_IRQ: u8 = 9;

/// Where QEMU puts PIIX4 PM, whose set-up a wake-up reset undoes
/// (hw/i386/pc_piix.c: a fixed slot).
pub const PIIX4_PM: Bdf = Bdf(0, 1, 3);
/// PIIX4 PM's PM base address register and its I/O enable (PMREGMISC bit 0).
pub const PIIX4_PMBA: u8 = 0x40;
pub const PIIX4_PMREGMISC: u8 = 0x80;

/// PIIX4 PM: SCI on IRQ 9, the PM I/O block at `pm` (enabled), the SMBus I/O
/// block after it (enabled). SeaBIOS's piix4_pm_config_setup.
pub const fn piix4_pm_setup(pm: u16) -> [ConfigWrite; 5] {
    let pm = pm as u32;
    [
        ConfigWrite::byte(reg::INTERRUPT_LINE, SCI_IRQ),
        ConfigWrite::dword(PIIX4_PMBA, pm | 1),
        ConfigWrite::byte(PIIX4_PMREGMISC, 0x01),
        ConfigWrite::dword(0x90, (pm + 0x100) | 1),
        ConfigWrite::byte(0xD2, 0x09),
    ]
}

/// PIIX3 / PIIX4 ISA bridge: PIRQA-D routing, level-triggered in the ELCR.
pub(super) fn isa_bridge_setup(io: &mut impl PortIo, bdf: Bdf) {
    write32(io, bdf, 0x60, u32::from_le_bytes(PCI_IRQS));
    write_elcr(io);
}

/// PIIX3 / PIIX4 IDE: legacy decode of both channels.
pub(super) fn ide_setup(io: &mut impl PortIo, bdf: Bdf) {
    write16(io, bdf, 0x40, 0x8000);
    write16(io, bdf, 0x42, 0x8000);
}
