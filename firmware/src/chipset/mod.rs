//! The chipset around the PCI buses: which machine this is, the shadow RAM of the
//! BIOS segment (PAM), the PCI interrupt routing, what SeaBIOS programs in the
//! chipset's own functions ([`quirks`], by chipset in [`i440fx`] and [`q35`]),
//! and the legacy devices a PC BIOS leaves initialised (`legacy`: the
//! interrupt controllers, the RTC, the keyboard controller).
//! Values follow SeaBIOS so that a guest sees the same machine.

pub mod i440fx;
mod legacy;
pub mod q35;

pub use legacy::{
    CMOS_DATA, CMOS_INDEX, I8042_CTR, PIC_INIT, init_i8042, init_pic, init_rtc, mask_pics,
};

use crate::io::PortIo;
use crate::mem::Range;
use crate::pci::config::CLASS_STORAGE_IDE;
use crate::pci::{self, Bdf, ConfigWrite, reg};

/// ACPI PM I/O base (QEMU's FADT and DSDT use what the firmware programs; 0x600
/// is what SeaBIOS uses).
pub const ACPI_PM_BASE: u16 = 0x600;
/// The PM I/O base SeaBIOS keeps when QEMU gives no ACPI tables (`-M q35,acpi=off`):
/// it moves the base to 0x600 only when `etc/table-loader` exists.
pub const LEGACY_PM_BASE: u16 = 0xB000;

/// Where the PM and SMBus I/O blocks go, as SeaBIOS places them: 0x600 when
/// QEMU provides ACPI tables (which describe that base), 0xB000 when not.
pub fn pm_base(qemu_acpi_tables: bool) -> u16 {
    if qemu_acpi_tables {
        ACPI_PM_BASE
    } else {
        LEGACY_PM_BASE
    }
}
/// q35 MMCONFIG window (as SeaBIOS and qboot place it).
pub const Q35_MMCONFIG: Range = Range::new(0xB000_0000, 0xC000_0000);

/// Where the host bridge is, on every machine with PCI.
pub const HOST_BRIDGE: Bdf = Bdf(0, 0, 0);

/// The vendor ID of the chipset's own functions.
pub const INTEL: u16 = 0x8086;

/// The machine, told apart by its PCI host bridge ([`identify`]): what the PCI
/// set-up, the BIOS segment, the S3 resume script and a failed boot's power-off
/// go by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// `-M pc`: i440FX host bridge, PIIX3/PIIX4.
    I440fx,
    /// `-M q35`: Q35 MCH, ICH9.
    Q35,
    /// No PCI host bridge: `-M microvm` (or anything else without PCI).
    NoPci,
}

impl Machine {
    /// The first PAM register (PAM0: bits 5:4 govern 0xF0000-0xFFFFF; PAM1-6
    /// govern 0xC0000-0xEFFFF in 16 KiB halves).
    const fn pam0(self) -> Option<u8> {
        match self {
            Machine::I440fx => Some(i440fx::PAM0),
            Machine::Q35 => Some(q35::PAM0),
            Machine::NoPci => None,
        }
    }

    /// The ISA IRQ that pin `pin` (0-3 for INTA#-INTD#, plus the rotation of
    /// the bridges between) of a function in root slot `slot` reaches, as
    /// QEMU routes it and its ACPI _PRT says (piix_pci_slot_get_irq,
    /// mch_pci_slot_get_irq: ICH9's slots 25-31 take their pins unrotated).
    /// A machine without PCI has no interrupt to route; it gets i440FX's answer.
    #[inline]
    pub fn slot_irq(self, slot: usize, pin: usize) -> u8 {
        let index = match self {
            // slot - 1, modulo 4 without underflow at slot 0
            Machine::I440fx | Machine::NoPci => pin + slot + 3,
            Machine::Q35 if slot <= 24 => pin + slot,
            Machine::Q35 => pin,
        };
        PCI_IRQS[index & 3]
    }
}

/// Identifies the machine from its host bridge.
pub fn identify(io: &mut impl PortIo) -> Machine {
    match pci::read32(io, HOST_BRIDGE, 0) {
        i440fx::I440FX_ID => Machine::I440fx,
        q35::Q35_MCH_ID => Machine::Q35,
        _ => Machine::NoPci,
    }
}

/// The ISA IRQs behind PCI interrupt lines A-D (QEMU's ACPI tables say the same).
pub const PCI_IRQS: [u8; 4] = [10, 10, 11, 11];

/// Chipset functions SeaBIOS programs beyond the generic steps (its
/// pci_device_tbl), by vendor and device ID; IDE controllers by their class.
/// Returns the interrupt line written, if it is not the routed one (PIIX4
/// PM's SCI).
pub fn quirks(
    io: &mut impl PortIo,
    bdf: Bdf,
    vendor: u16,
    device: u16,
    class: u16,
    pm_base: u16,
) -> Option<u8> {
    match (vendor, device) {
        (INTEL, i440fx::PIIX3_ISA_ID) | (INTEL, i440fx::PIIX4_ISA_ID) => {
            i440fx::isa_bridge_setup(io, bdf)
        }
        (INTEL, q35::ICH9_LPC_ID) => q35::lpc_setup(io, bdf, pm_base),
        (INTEL, i440fx::PIIX3_IDE_ID) | (INTEL, i440fx::PIIX4_IDE_ID)
            if class == CLASS_STORAGE_IDE =>
        {
            i440fx::ide_setup(io, bdf)
        }
        (INTEL, i440fx::PIIX4_PM_ID) => {
            pci::apply(io, bdf, &i440fx::piix4_pm_setup(pm_base));
            return Some(i440fx::SCI_IRQ);
        }
        (INTEL, q35::ICH9_SMBUS_ID) => pci::apply(io, bdf, &q35::ich9_smbus_setup(pm_base)),
        // Any other IDE controller: ISA-compatible ports.
        _ if class == CLASS_STORAGE_IDE => {
            for (bar, port) in [0x1F0u32, 0x3F4, 0x170, 0x374].into_iter().enumerate() {
                pci::write32(io, bdf, reg::BAR0 + 4 * bar as u8, port);
            }
        }
        _ => {}
    }
    None
}

/// Edge/level control: PCI IRQs (10, 11) level-triggered.
fn write_elcr(io: &mut impl PortIo) {
    io.outb(0x4D0, ELCR[0]);
    io.outb(0x4D1, ELCR[1]);
}

/// The ELCR bits of [`PCI_IRQS`], worked out at compile time.
const ELCR: [u8; 2] = {
    let mut elcr = [0u8; 2];
    let mut i = 0;
    while i < PCI_IRQS.len() {
        let irq = PCI_IRQS[i];
        elcr[irq as usize >> 3] |= 1 << (irq & 7);
        i += 1;
    }
    elcr
};

/// PAM values: RAM read and write, RAM read-only.
const PAM_RAM_RW: u8 = 0x33;
const PAM_F_SEGMENT_RW: u8 = 0x30;
const PAM_F_SEGMENT_RO: u8 = 0x10;

/// Makes 0xC0000-0xFFFFF writable shadow RAM, as SeaBIOS does before it fills
/// the BIOS segment. Returns false on machines without PAM.
pub fn unlock_bios_area(io: &mut impl PortIo, machine: Machine) -> bool {
    let (writes, n) = match machine {
        Machine::I440fx => &I440FX_UNLOCK,
        Machine::Q35 => &Q35_UNLOCK,
        Machine::NoPci => return false,
    };
    pci::apply(io, HOST_BRIDGE, &writes[..*n]);
    true
}

/// [`unlock_bios_area`]'s writes, worked out at compile time: under TCG the
/// width search would be code translated for one use.
const I440FX_UNLOCK: ([ConfigWrite; 7], usize) = unlock_writes(Machine::I440fx);
const Q35_UNLOCK: ([ConfigWrite; 7], usize) = unlock_writes(Machine::Q35);

/// PAM0-6 set for writable shadow RAM in the widest aligned writes that cover
/// exactly them: each write is a VM exit, and QEMU rebuilds its memory map
/// after every one.
const fn unlock_writes(machine: Machine) -> ([ConfigWrite; 7], usize) {
    let Some(pam0) = machine.pam0() else {
        panic!("a machine without PAM");
    };
    let mut value = [PAM_RAM_RW; 7];
    value[0] = PAM_F_SEGMENT_RW;
    let mut writes = [ConfigWrite {
        reg: 0,
        width: 0,
        value: 0,
    }; 7];
    let (mut at, mut n) = (0, 0);
    while at < value.len() {
        let reg = pam0 + at as u8;
        let mut width = 4;
        while !((reg as usize).is_multiple_of(width) && at + width <= value.len()) {
            width /= 2;
        }
        let mut v = 0u32;
        let mut i = 0;
        while i < width {
            v |= (value[at + i] as u32) << (8 * i);
            i += 1;
        }
        writes[n] = ConfigWrite {
            reg,
            width: width as u8,
            value: v,
        };
        n += 1;
        at += width;
    }
    (writes, n)
}

/// Write-protects the BIOS segment (SeaBIOS's make_bios_readonly leaves PAM0 at
/// 0x10; 0xC0000-0xEFFFF stays RAM, there are no option ROMs to protect).
pub fn lock_bios_area(io: &mut impl PortIo, machine: Machine) {
    if let Some(pam0) = machine.pam0() {
        pci::write8(io, HOST_BRIDGE, pam0, PAM_F_SEGMENT_RO);
    }
}

/// The PAM registers as ferrite leaves them for the kernel (the BIOS segment
/// read-only shadow RAM, 0xC0000-0xEFFFF RAM): what the S3 resume path puts
/// back. Empty on machines without PAM.
pub const fn locked_pam(machine: Machine) -> [Option<ConfigWrite>; 7] {
    let mut writes = [None; 7];
    if let Some(pam0) = machine.pam0() {
        let mut i = 0;
        while i < 7 {
            let value = if i == 0 { PAM_F_SEGMENT_RO } else { PAM_RAM_RW };
            writes[i] = Some(ConfigWrite {
                reg: pam0 + i as u8,
                width: 1,
                value: value as u32,
            });
            i += 1;
        }
    }
    writes
}

#[cfg(test)]
mod tests;
