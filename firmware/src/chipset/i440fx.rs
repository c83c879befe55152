//! `-M pc`: the i440FX host bridge with the PIIX3 (or PIIX4) south bridge, and
//! what SeaBIOS programs in them beyond the generic PCI steps (its
//! pci_device_tbl and piix_isa_bridge_setup, piix_ide_setup,
//! piix4_pm_config_setup).

use super::{PmWrite, at_pm};
use crate::pci::{Bdf, ConfigWrite, reg};

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

/// PIIX4 PM: SCI on IRQ 9, the PM I/O block at the PM base (enabled), the
/// SMBus I/O block after it (enabled). SeaBIOS's piix4_pm_config_setup.
pub(super) const PIIX4_PM_SETUP: [PmWrite; 5] = [
    PmWrite::fixed(ConfigWrite::byte(reg::INTERRUPT_LINE, SCI_IRQ)),
    PmWrite::pm_block(PIIX4_PMBA, 0),
    PmWrite::fixed(ConfigWrite::byte(PIIX4_PMREGMISC, 0x01)),
    PmWrite::pm_block(0x90, 0x100),
    PmWrite::fixed(ConfigWrite::byte(0xD2, 0x09)),
];

/// [`PIIX4_PM_SETUP`]'s writes for the PM base `pm`.
pub const fn piix4_pm_setup(pm: u16) -> [ConfigWrite; 5] {
    at_pm(&PIIX4_PM_SETUP, pm)
}
