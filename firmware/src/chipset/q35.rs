//! `-M q35`: the Q35 MCH (host bridge) with the ICH9 south bridge, and what
//! SeaBIOS programs in them beyond the generic PCI steps: the MMCONFIG window
//! (PCIEXBAR, mch_mmconfig_setup), the LPC bridge's PIRQ routing, ELCR, ACPI
//! PM base and root complex register block (mch_isa_lpc_setup), the SMBus
//! controller's I/O block (ich9_smbus_setup).

use super::{HOST_BRIDGE, PmWrite, at_pm};
use crate::io::{Mmio, PortIo};
use crate::mem::Range;
use crate::pci::{Bdf, Config, ConfigAccess, ConfigWrite};

/// The host bridge's vendor and device ID, as one dword.
pub const Q35_MCH_ID: u32 = 0x29C0_8086;
/// PAM0, the first shadow RAM register.
pub(super) const PAM0: u8 = 0x90;
/// The MCH's PCI Express register range base (MMCONFIG).
const PCIEXBAR: u8 = 0x60;

/// ICH9 device IDs.
pub const ICH9_LPC_ID: u16 = 0x2918;
pub(super) const ICH9_SMBUS_ID: u16 = 0x2930;

/// Where QEMU puts the ICH9 functions whose set-up a wake-up reset undoes
/// (hw/i386/pc_q35.c: fixed slots).
pub const ICH9_LPC: Bdf = Bdf(0, 0x1F, 0);
pub const ICH9_SMBUS: Bdf = Bdf(0, 0x1F, 3);
/// ICH9 LPC's PM base register, its ACPI control register and that
/// register's ACPI enable bit.
pub const ICH9_PMBASE: u8 = 0x40;
pub const ICH9_ACPI_CNTL: u8 = 0x44;
pub const ICH9_ACPI_EN: u8 = 0x80;

/// ICH9's root complex register block, as SeaBIOS places it (e820 reserved).
pub const ICH9_RCBA: Range = Range::new(0xFED1_C000, 0xFED2_0000);

/// PCIEXBAR: disable, upper half, then base with the enable bit (256 MiB:
/// length bits 2:1 = 0).
pub const fn pciexbar_setup(mmconfig: Range) -> [ConfigWrite; 3] {
    [
        ConfigWrite::dword(PCIEXBAR, 0),
        ConfigWrite::dword(PCIEXBAR + 4, (mmconfig.start >> 32) as u32),
        ConfigWrite::dword(PCIEXBAR, mmconfig.start as u32 | 1),
    ]
}

/// Opens the MMCONFIG window (PCIEXBAR, as [`pciexbar_setup`] writes it) and
/// switches the set-up's configuration accesses to it.
pub fn open_mmconfig<IO: PortIo, M: Mmio>(io: &mut ConfigAccess<'_, IO, M>, window: Range) {
    io.apply(HOST_BRIDGE, &pciexbar_setup(window));
    io.use_mmconfig(window.start);
}

/// ICH9 LPC: PM base with ACPI enabled (SCI on IRQ 9), the root complex
/// register block. SeaBIOS's mch_isa_lpc_setup.
pub(super) const ICH9_LPC_ACPI: [PmWrite; 3] = [
    PmWrite::pm_block(ICH9_PMBASE, 0),
    PmWrite::fixed(ConfigWrite::byte(ICH9_ACPI_CNTL, ICH9_ACPI_EN)),
    PmWrite::fixed(ConfigWrite::dword(0xF0, ICH9_RCBA.start as u32 | 1)),
];

/// [`ICH9_LPC_ACPI`]'s writes for the PM base `pm`.
pub const fn ich9_lpc_acpi_setup(pm: u16) -> [ConfigWrite; 3] {
    at_pm(&ICH9_LPC_ACPI, pm)
}

/// ICH9 SMBus: I/O block after the PM one, host enable.
pub(super) const ICH9_SMBUS_SETUP: [PmWrite; 2] = [
    PmWrite::pm_block(0x20, 0x100),
    PmWrite::fixed(ConfigWrite::byte(0x40, 0x01)),
];

/// [`ICH9_SMBUS_SETUP`]'s writes for the PM base `pm`.
pub const fn ich9_smbus_setup(pm: u16) -> [ConfigWrite; 2] {
    at_pm(&ICH9_SMBUS_SETUP, pm)
}
