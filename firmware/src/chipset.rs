//! The chipset around the PCI buses: which machine this is, the shadow RAM of the
//! BIOS segment (PAM), and the legacy devices a PC BIOS leaves initialised: the
//! interrupt controllers (PIC), the keyboard controller (i8042) and the RTC.
//! Values follow SeaBIOS so that a guest sees the same machine.

use crate::e820::Range;
use crate::io::PortIo;
use crate::pci::{self, ConfigWrite, HOST_BRIDGE};

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
    pub fn host_bridge(self) -> Option<pci::HostBridge> {
        match self {
            Machine::I440fx => Some(pci::HostBridge::I440fx),
            Machine::Q35 => Some(pci::HostBridge::Q35),
            Machine::NoPci => None,
        }
    }

    /// The first PAM register (PAM0: bits 5:4 govern 0xF0000-0xFFFFF; PAM1-6
    /// govern 0xC0000-0xEFFFF in 16 KiB halves).
    const fn pam0(self) -> Option<u8> {
        match self {
            Machine::I440fx => Some(0x59),
            Machine::Q35 => Some(0x90),
            Machine::NoPci => None,
        }
    }
}

const I440FX_ID: u32 = 0x1237_8086;
const Q35_MCH_ID: u32 = 0x29C0_8086;

/// Identifies the machine from its host bridge.
pub fn identify(io: &mut impl PortIo) -> Machine {
    match pci::read32(io, HOST_BRIDGE, 0) {
        I440FX_ID => Machine::I440fx,
        Q35_MCH_ID => Machine::Q35,
        _ => Machine::NoPci,
    }
}

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

const PIC1_CMD: u16 = 0x20;
const PIC1_DATA: u16 = 0x21;
const PIC2_CMD: u16 = 0xA0;
const PIC2_DATA: u16 = 0xA1;

/// The 8259 pair as a BIOS leaves it: vectors 0x08 and 0x70, cascaded on IRQ 2,
/// everything but the cascade masked (SeaBIOS's pic_reset). Port, value.
pub const PIC_INIT: [(u16, u8); 10] = [
    (PIC1_CMD, 0x11), // ICW1: edge, cascade, ICW4 follows
    (PIC2_CMD, 0x11),
    (PIC1_DATA, 0x08), // ICW2: vector bases
    (PIC2_DATA, 0x70),
    (PIC1_DATA, 0x04), // ICW3: slave on IRQ 2
    (PIC2_DATA, 0x02),
    (PIC1_DATA, 0x01), // ICW4: 8086 mode
    (PIC2_DATA, 0x01),
    (PIC1_DATA, !0x04), // OCW1: mask all but the cascade
    (PIC2_DATA, 0xFF),
];

pub fn init_pic(io: &mut impl PortIo) {
    // By reference: iterating the array by value copies it first.
    for &(port, value) in &PIC_INIT {
        io.outb(port, value);
    }
}

/// Masks every line of both 8259s: the PVH entry expects no legacy interrupt
/// (an unmasked timer can reach a kernel that has no IDT yet).
pub fn mask_pics(io: &mut impl PortIo) {
    io.outb(PIC1_DATA, 0xFF);
    io.outb(PIC2_DATA, 0xFF);
}

pub const CMOS_INDEX: u16 = 0x70;
pub const CMOS_DATA: u16 = 0x71;
const RTC_STATUS_A: u8 = 0x0A;
const RTC_STATUS_B: u8 = 0x0B;
const RTC_STATUS_C: u8 = 0x0C;
const RTC_STATUS_D: u8 = 0x0D;
const RTC_B_DSE: u8 = 0x01;
const RTC_B_24HR: u8 = 0x02;

/// The RTC as SeaBIOS's rtc_setup leaves it: 32.768 kHz time base with 976 us
/// periodic rate, 24-hour mode without daylight saving, pending flags cleared.
pub fn init_rtc(io: &mut impl PortIo) {
    io.outb(CMOS_INDEX, RTC_STATUS_A);
    io.outb(CMOS_DATA, 0x26);
    io.outb(CMOS_INDEX, RTC_STATUS_B);
    let b = io.inb(CMOS_DATA);
    io.outb(CMOS_INDEX, RTC_STATUS_B);
    io.outb(CMOS_DATA, (b & !RTC_B_DSE) | RTC_B_24HR);
    io.outb(CMOS_INDEX, RTC_STATUS_C);
    io.inb(CMOS_DATA);
    io.outb(CMOS_INDEX, RTC_STATUS_D);
    io.inb(CMOS_DATA);
}

const I8042_DATA: u16 = 0x60;
const I8042_STATUS: u16 = 0x64;
const I8042_STATUS_INPUT_FULL: u8 = 0x02;
const I8042_CMD_WRITE_CTR: u8 = 0x60;
/// Keyboard interrupt on, mouse port off, scan codes translated to set 1: the
/// controller byte SeaBIOS's ps2port.c leaves. Linux then finds an "AT Translated
/// Set 2 keyboard", as it does after any PC BIOS.
pub const I8042_CTR: u8 = 0x01 | 0x20 | 0x40;

/// Puts the i8042 in translated mode. Returns false if the controller never
/// accepts a byte (no i8042: nothing is written).
pub fn init_i8042(io: &mut impl PortIo) -> bool {
    if io.inb(I8042_STATUS) == 0xFF {
        return false;
    }
    i8042_write(io, I8042_STATUS, I8042_CMD_WRITE_CTR) && i8042_write(io, I8042_DATA, I8042_CTR)
}

fn i8042_write(io: &mut impl PortIo, port: u16, value: u8) -> bool {
    // QEMU's controller empties its input buffer at once; real ones within ms.
    for _ in 0..10_000 {
        if io.inb(I8042_STATUS) & I8042_STATUS_INPUT_FULL == 0 {
            io.outb(port, value);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn pm_base_follows_seabios() {
        // QEMU's tables describe 0x600; without them SeaBIOS keeps 0xB000
        assert_eq!(pm_base(true), 0x600);
        assert_eq!(pm_base(false), 0xB000);
    }

    /// Records port writes; answers the host bridge ID and a status byte.
    struct Ports {
        host_id: u32,
        status: u8,
        addr: u32,
        writes: Vec<(u16, u32)>,
    }
    impl Ports {
        fn new(host_id: u32) -> Ports {
            Ports {
                host_id,
                status: 0x1C,
                addr: 0,
                writes: Vec::new(),
            }
        }
    }
    impl PortIo for Ports {
        fn inb(&mut self, port: u16) -> u8 {
            match port {
                I8042_STATUS => self.status,
                _ => 0x02,
            }
        }
        fn inw(&mut self, _: u16) -> u16 {
            0xFFFF
        }
        fn inl(&mut self, _: u16) -> u32 {
            if self.addr == 0x8000_0000 {
                self.host_id
            } else {
                0xFFFF_FFFF
            }
        }
        fn outb(&mut self, port: u16, v: u8) {
            self.writes.push((port, v as u32));
        }
        fn outw(&mut self, port: u16, v: u16) {
            self.writes.push((port, v as u32));
        }
        fn outl(&mut self, port: u16, v: u32) {
            if port == 0xCF8 {
                self.addr = v;
            } else {
                self.writes.push((port, v));
            }
        }
        fn read_bytes(&mut self, _: u16, _: &mut [u8]) {}
    }

    #[test]
    fn identifies_machines() {
        for (id, m) in [
            (I440FX_ID, Machine::I440fx),
            (Q35_MCH_ID, Machine::Q35),
            (0xFFFF_FFFF, Machine::NoPci),
        ] {
            assert_eq!(identify(&mut Ports::new(id)), m);
        }
    }

    #[test]
    fn pam_opens_the_bios_area_then_write_protects_the_f_segment() {
        let mut io = Ports::new(Q35_MCH_ID);
        assert!(unlock_bios_area(&mut io, Machine::Q35));
        lock_bios_area(&mut io, Machine::Q35);
        // PAM0-3 in one dword at 0x90, PAM4-5 as a word at 0x94, PAM6 a byte
        assert_eq!(
            io.writes,
            [
                (0xCFC, 0x3333_3330),
                (0xCFC, 0x3333),
                (0xCFE, 0x33),
                (0xCFC, 0x10)
            ]
        );
        let mut io = Ports::new(I440FX_ID);
        assert!(unlock_bios_area(&mut io, Machine::I440fx));
        // i440FX: PAM0 at 0x59 (lane 1), PAM1-2 a word at 0x5A, PAM3-6 a dword
        assert_eq!(
            io.writes,
            [(0xCFD, 0x30), (0xCFE, 0x3333), (0xCFC, 0x3333_3333)]
        );
        let mut io = Ports::new(0);
        assert!(!unlock_bios_area(&mut io, Machine::NoPci));
        lock_bios_area(&mut io, Machine::NoPci);
        assert!(io.writes.is_empty());
    }

    #[test]
    fn pic_gets_bios_vectors_and_masks() {
        let mut io = Ports::new(0);
        init_pic(&mut io);
        assert_eq!(io.writes.len(), 10);
        assert_eq!(io.writes[2], (PIC1_DATA, 0x08));
        assert_eq!(io.writes[3], (PIC2_DATA, 0x70));
        assert_eq!(io.writes[8], (PIC1_DATA, 0xFB));
        assert_eq!(io.writes[9], (PIC2_DATA, 0xFF));
        // before a PVH or multiboot jump: every line of both masked
        let mut io = Ports::new(0);
        mask_pics(&mut io);
        assert_eq!(io.writes, [(PIC1_DATA, 0xFF), (PIC2_DATA, 0xFF)]);
    }

    #[test]
    fn rtc_is_24_hour_without_dst() {
        let mut io = Ports::new(0);
        init_rtc(&mut io);
        assert_eq!(io.writes[1], (CMOS_DATA, 0x26));
        // register B read as 0x02 (our fake), written back with 24HR and no DSE
        assert_eq!(io.writes[4], (CMOS_DATA, 0x02));
    }

    #[test]
    fn i8042_translated_mode_or_nothing() {
        let mut io = Ports::new(0);
        assert!(init_i8042(&mut io));
        assert_eq!(io.writes, [(I8042_STATUS, 0x60), (I8042_DATA, 0x61)]);
        // absent controller (floating bus)
        let mut io = Ports::new(0);
        io.status = 0xFF;
        assert!(!init_i8042(&mut io));
        assert!(io.writes.is_empty());
        // a controller that never drains its input buffer: bounded, no write
        let mut io = Ports::new(0);
        io.status = 0x02;
        assert!(!init_i8042(&mut io));
        assert!(io.writes.is_empty());
    }
}
