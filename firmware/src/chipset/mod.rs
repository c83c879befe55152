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
    CMOS_DATA, CMOS_INDEX, I8042_CTR, PIC_INIT, init_i8042, init_pic_rtc_and_pit, mask_pics,
};

use crate::io::PortIo;
use crate::mem::Range;
use crate::pci::config::CLASS_STORAGE_IDE;
use crate::pci::{self, Bdf, Config, ConfigWrite, reg};

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

/// An Intel function's vendor and device ID as one configuration dword.
pub const fn intel_id(device: u16) -> u32 {
    (device as u32) << 16 | INTEL as u32
}

/// The chipset's own functions that implement no BAR and no option ROM, as
/// vendor and device ID dwords: the i440FX and Q35 host bridges, the PIIX3
/// ISA bridge, PIIX4 PM and the ICH9 LPC bridge. Their ranges are set
/// through registers of their own (PAM, PCIEXBAR, PM and SMBus bases,
/// RCBA), and QEMU registers no BAR for them (hw/pci-host/i440fx.c and
/// q35.c, hw/isa/piix3.c and lpc_ich9.c, hw/acpi/piix4.c).
const WITHOUT_BARS: [u32; 5] = [
    i440fx::I440FX_ID,
    intel_id(i440fx::PIIX3_ISA_ID),
    intel_id(i440fx::PIIX4_PM_ID),
    q35::Q35_MCH_ID,
    intel_id(q35::ICH9_LPC_ID),
];

/// Whether the function `vendor:device` is one of the chipset's that has no
/// BAR to size: sizing its seven BAR registers would read back zeros, 14
/// configuration accesses and on pc 21 exits to QEMU. Compared with all five
/// at once, no branch and no loop (TCG would translate a loop's body twice).
pub fn implements_no_bars(vendor: u16, device: u16) -> bool {
    let id = (device as u32) << 16 | vendor as u32;
    let [a, b, c, d, e] = WITHOUT_BARS;
    // (Behind `one_test`: LLVM would make a switch of the comparisons.)
    crate::mem::one_test((id == a) | (id == b) | (id == c) | (id == d) | (id == e))
}

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
///
/// Table-driven for TCG, where each distinct branch is a translated block:
/// the ID is looked up in one loop of selects, and every set-up is a slice of
/// [`QUIRK_WRITES`] written by one loop.
pub fn quirks(
    io: &mut impl Config,
    bdf: Bdf,
    vendor: u16,
    device: u16,
    class: u16,
    pm_base: u16,
) -> Option<u8> {
    let (id, k) = QUIRK_SLOTS[quirk_slot(device)];
    let mut kind =
        core::hint::select_unpredictable((vendor == INTEL) & (device == id), k, Quirk::None);
    let ide = class == CLASS_STORAGE_IDE;
    // PIIX IDE IDs on another class get nothing; any other IDE controller
    // gets the ISA-compatible ports.
    let piix_ide = kind == Quirk::PiixIde;
    let legacy_ide = (kind == Quirk::None) & ide;
    kind = core::hint::select_unpredictable(piix_ide & !ide, Quirk::None, kind);
    kind = core::hint::select_unpredictable(legacy_ide, Quirk::LegacyIde, kind);
    let (start, end, elcr, line) = QUIRKS[kind as usize];
    // By index, the table padded to a power of two: one test per write and
    // no bounds check (TCG).
    let mut k = start as usize;
    while k < end as usize {
        let w = QUIRK_WRITES[k % QUIRK_WRITES.len()].at(pm_base);
        io.access(bdf, w.reg, w.width, true, w.value);
        k += 1;
    }
    if elcr {
        write_elcr(io);
    }
    line
}

/// What [`quirks`] does per function: a set-up of its own, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Quirk {
    None,
    PiixIsa,
    Ich9Lpc,
    PiixIde,
    PiixPm,
    Ich9Smbus,
    LegacyIde,
}

/// The chipset functions by device ID (all Intel's).
const QUIRK_IDS: [(u16, Quirk); 7] = [
    (i440fx::PIIX3_ISA_ID, Quirk::PiixIsa),
    (i440fx::PIIX4_ISA_ID, Quirk::PiixIsa),
    (q35::ICH9_LPC_ID, Quirk::Ich9Lpc),
    (i440fx::PIIX3_IDE_ID, Quirk::PiixIde),
    (i440fx::PIIX4_IDE_ID, Quirk::PiixIde),
    (i440fx::PIIX4_PM_ID, Quirk::PiixPm),
    (q35::ICH9_SMBUS_ID, Quirk::Ich9Smbus),
];

/// [`QUIRK_IDS`]' slot in [`QUIRK_SLOTS`]: a multiply and a shift that give
/// each chipset ID a slot of its own (checked at compile time). Under TCG one
/// look-up is less code to translate than a loop over the IDs.
const fn quirk_slot(device: u16) -> usize {
    ((device as u32 * 109) >> 8) as usize & 7
}

/// [`QUIRK_IDS`] by [`quirk_slot`]; the empty slots hold no quirk.
const QUIRK_SLOTS: [(u16, Quirk); 8] = {
    let mut slots = [(0, Quirk::None); 8];
    let mut i = 0;
    while i < QUIRK_IDS.len() {
        let slot = quirk_slot(QUIRK_IDS[i].0);
        assert!(
            matches!(slots[slot].1, Quirk::None),
            "two chipset IDs share a slot"
        );
        slots[slot] = QUIRK_IDS[i];
        i += 1;
    }
    slots
};

/// One write of a chipset function's set-up whose value may hang on the PM
/// I/O base: `value | ((pm + pm_add) & pm_mask)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PmWrite {
    reg: u8,
    width: u8,
    value: u32,
    pm_add: u32,
    pm_mask: u32,
}

impl PmWrite {
    pub(crate) const fn fixed(w: ConfigWrite) -> PmWrite {
        PmWrite {
            reg: w.reg,
            width: w.width,
            value: w.value,
            pm_add: 0,
            pm_mask: 0,
        }
    }
    /// A dword register enabled (bit 0) at `pm + offset`.
    pub(crate) const fn pm_block(reg: u8, offset: u32) -> PmWrite {
        PmWrite {
            reg,
            width: 4,
            value: 1,
            pm_add: offset,
            pm_mask: !0,
        }
    }
    pub(crate) const fn at(self, pm: u16) -> ConfigWrite {
        ConfigWrite {
            reg: self.reg,
            width: self.width,
            value: self.value | ((pm as u32 + self.pm_add) & self.pm_mask),
        }
    }
}

/// `writes` for the PM base `pm`, at compile time or at run time.
pub(crate) const fn at_pm<const K: usize>(writes: &[PmWrite], pm: u16) -> [ConfigWrite; K] {
    let mut out = [ConfigWrite::byte(0, 0); K];
    let mut i = 0;
    while i < K {
        out[i] = writes[i].at(pm);
        i += 1;
    }
    out
}

/// The PIRQ routing register value: PIRQA-D to [`PCI_IRQS`].
const PIRQ: u32 = u32::from_le_bytes(PCI_IRQS);

/// Every chipset function's writes, back to back; [`QUIRKS`] slices it.
/// 19 used, padded to 32 for [`quirks`]' index.
const QUIRK_WRITES: [PmWrite; 32] = {
    let mut t = [PmWrite::fixed(ConfigWrite::byte(0, 0)); 32];
    // PIIX3/4 ISA bridge: PIRQA-D (then the ELCR)
    t[0] = PmWrite::fixed(ConfigWrite::dword(0x60, PIRQ));
    // ICH9 LPC: PIRQA-D and E-H (then the ELCR), PM base with ACPI, RCBA
    t[1] = PmWrite::fixed(ConfigWrite::dword(0x60, PIRQ));
    t[2] = PmWrite::fixed(ConfigWrite::dword(0x68, PIRQ));
    let mut i = 0;
    while i < 3 {
        t[3 + i] = q35::ICH9_LPC_ACPI[i];
        i += 1;
    }
    // PIIX IDE: legacy decode of both channels
    t[6] = PmWrite::fixed(ConfigWrite::word(0x40, 0x8000));
    t[7] = PmWrite::fixed(ConfigWrite::word(0x42, 0x8000));
    // PIIX4 PM, ICH9 SMBus
    let mut i = 0;
    while i < 5 {
        t[8 + i] = i440fx::PIIX4_PM_SETUP[i];
        i += 1;
    }
    t[13] = q35::ICH9_SMBUS_SETUP[0];
    t[14] = q35::ICH9_SMBUS_SETUP[1];
    // any other IDE controller: ISA-compatible ports in BARs 0-3
    let ports = [0x1F0u32, 0x3F4, 0x170, 0x374];
    let mut i = 0;
    while i < 4 {
        t[15 + i] = PmWrite::fixed(ConfigWrite::dword(reg::BAR0 + 4 * i as u8, ports[i]));
        i += 1;
    }
    t
};

/// Per [`Quirk`]: its slice of [`QUIRK_WRITES`], whether the ELCR follows,
/// the interrupt line it sets.
const QUIRKS: [(u8, u8, bool, Option<u8>); 7] = [
    (0, 0, false, None),
    (0, 1, true, None),
    (1, 6, true, None),
    (6, 8, false, None),
    (8, 13, false, Some(i440fx::SCI_IRQ)),
    (13, 15, false, None),
    (15, 19, false, None),
];
const _: () = assert!(QUIRK_WRITES.len().is_power_of_two());

/// Edge/level control: PCI IRQs (10, 11) level-triggered. Out of line:
/// inline, under TCG the code after it was translated twice, once
/// straight after the writes and once where the skip lands.
#[inline(never)]
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
///
/// PAM0-6 go in the two aligned dwords that hold them, each read first so that
/// the one byte beside them (0x58 on i440FX, 0x97 on q35) is written back as it
/// was. QEMU rebuilds its memory map after every write that touches a PAM
/// register (80-150 us each under TCG here, and KVM's memory slots change
/// with it); three writes of exact widths cost one rebuild more.
pub fn unlock_bios_area(io: &mut impl PortIo, machine: Machine) -> bool {
    let dwords = match machine {
        Machine::I440fx => I440FX_UNLOCK,
        Machine::Q35 => Q35_UNLOCK,
        Machine::NoPci => return false,
    };
    let [low, high] = dwords;
    low.apply(io);
    high.apply(io);
    true
}

/// One aligned dword of the PAM registers: the lanes that are PAM (`mask`)
/// and the values they get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PamDword {
    reg: u8,
    mask: u32,
    value: u32,
}

impl PamDword {
    /// Sets the PAM lanes, writing the others back as read: the address once
    /// for the read and the write (three port exits, as two writes of exact
    /// widths took).
    #[inline(always)]
    fn apply(self, io: &mut impl PortIo) {
        io.outl(pci::CONFIG_ADDRESS, HOST_BRIDGE.address(self.reg));
        let kept = io.inl(pci::CONFIG_DATA) & !self.mask;
        io.outl(pci::CONFIG_DATA, kept | self.value);
    }
}

/// [`unlock_bios_area`]'s dwords, worked out at compile time.
const I440FX_UNLOCK: [PamDword; 2] = unlock_dwords(Machine::I440fx);
const Q35_UNLOCK: [PamDword; 2] = unlock_dwords(Machine::Q35);

/// PAM0 (the BIOS segment, writable) and PAM1-6 (RAM) in the two aligned
/// dwords that cover them; fails to compile if seven registers from PAM0 do
/// not fit in two.
const fn unlock_dwords(machine: Machine) -> [PamDword; 2] {
    let Some(pam0) = machine.pam0() else {
        panic!("a machine without PAM");
    };
    let first = pam0 & !3;
    assert!(pam0 - first <= 1, "PAM0-6 do not fit in two dwords");
    let mut dwords = [
        PamDword {
            reg: first,
            mask: 0,
            value: 0,
        },
        PamDword {
            reg: first + 4,
            mask: 0,
            value: 0,
        },
    ];
    let mut i = 0;
    while i < 7 {
        let at = (pam0 - first) as usize + i;
        let value = if i == 0 { PAM_F_SEGMENT_RW } else { PAM_RAM_RW };
        let lane = 8 * (at % 4);
        dwords[at / 4].mask |= 0xFF << lane;
        dwords[at / 4].value |= (value as u32) << lane;
        i += 1;
    }
    dwords
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
