//! The chipset's set-up against recorded port writes.

use super::i440fx::I440FX_ID;
use super::legacy::{
    I8042_DATA, I8042_STATUS, PIC1_DATA, PIC2_DATA, PIT_CH0_MODE0, PIT_CHANNEL0, PIT_MODE,
};
use super::q35::Q35_MCH_ID;
use super::*;
use std::vec::Vec;

#[test]
fn pm_base_follows_seabios() {
    // QEMU's tables describe 0x600; without them SeaBIOS keeps 0xB000
    assert_eq!(pm_base(true), 0x600);
    assert_eq!(pm_base(false), 0xB000);
}

/// Records port writes; answers the host bridge ID, a status byte and the
/// configuration dwords set in `config` (by CONFIG_ADDRESS value).
struct Ports {
    host_id: u32,
    status: u8,
    addr: u32,
    writes: Vec<(u16, u32)>,
    config: std::collections::BTreeMap<u32, u32>,
}
impl Ports {
    fn new(host_id: u32) -> Ports {
        Ports {
            host_id,
            status: 0x1C,
            addr: 0,
            writes: Vec::new(),
            config: Default::default(),
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
        match self.config.get(&self.addr) {
            Some(&v) => v,
            None if self.addr == 0x8000_0000 => self.host_id,
            None => 0xFFFF_FFFF,
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
    // q35: PAM0-3 in the dword at 0x90, PAM4-6 in the dword at 0x94 with
    // 0x97 written back as it was read.
    let mut io = Ports::new(Q35_MCH_ID);
    io.config.insert(HOST_BRIDGE.address(0x94), 0xA500_0000);
    assert!(unlock_bios_area(&mut io, Machine::Q35));
    lock_bios_area(&mut io, Machine::Q35);
    assert_eq!(
        io.writes,
        [(0xCFC, 0x3333_3330), (0xCFC, 0xA533_3333), (0xCFC, 0x10)]
    );
    // i440FX: 0x58 kept, PAM0 at 0x59, PAM1-2 at 0x5A; PAM3-6 the dword at 0x5C.
    let mut io = Ports::new(I440FX_ID);
    io.config.insert(HOST_BRIDGE.address(0x58), 0x0000_005A);
    assert!(unlock_bios_area(&mut io, Machine::I440fx));
    assert_eq!(io.writes, [(0xCFC, 0x3333_305A), (0xCFC, 0x3333_3333)]);
    let mut io = Ports::new(0);
    assert!(!unlock_bios_area(&mut io, Machine::NoPci));
    lock_bios_area(&mut io, Machine::NoPci);
    assert!(io.writes.is_empty());
}

#[test]
fn pic_gets_bios_vectors_and_masks() {
    let mut io = Ports::new(0);
    init_pic_rtc_and_pit(&mut io);
    let pic: Vec<(u16, u32)> = PIC_INIT.iter().map(|&(p, v)| (p, v as u32)).collect();
    assert_eq!(io.writes[..10], pic[..]);
    assert_eq!(io.writes[2], (PIC1_DATA, 0x08));
    assert_eq!(io.writes[3], (PIC2_DATA, 0x70));
    assert_eq!(io.writes[8], (PIC1_DATA, 0xFB));
    assert_eq!(io.writes[9], (PIC2_DATA, 0xFF));
    // last, the PIT's channel 0 left idle: mode 0, a count of 1
    assert_eq!(
        io.writes[io.writes.len() - 3..],
        [
            (PIT_MODE, PIT_CH0_MODE0 as u32),
            (PIT_CHANNEL0, 1),
            (PIT_CHANNEL0, 0)
        ]
    );
    // before a PVH or multiboot jump: every line of both masked
    let mut io = Ports::new(0);
    mask_pics(&mut io);
    assert_eq!(io.writes, [(PIC1_DATA, 0xFF), (PIC2_DATA, 0xFF)]);
}

/// The RTC after the PICs: register A's rate, register B read and written
/// back in 24-hour mode without daylight saving (its other bits kept), C
/// and D read to clear what is pending.
#[test]
fn rtc_is_24_hour_without_dst() {
    /// Answers register B (and C, D) with `b`; records every access.
    struct Cmos {
        b: u8,
        accesses: Vec<(bool, u16, u8)>,
    }
    impl PortIo for Cmos {
        fn inb(&mut self, port: u16) -> u8 {
            self.accesses.push((false, port, self.b));
            self.b
        }
        fn inw(&mut self, _: u16) -> u16 {
            unreachable!()
        }
        fn inl(&mut self, _: u16) -> u32 {
            unreachable!()
        }
        fn outb(&mut self, port: u16, v: u8) {
            self.accesses.push((true, port, v));
        }
        fn outw(&mut self, _: u16, _: u16) {
            unreachable!()
        }
        fn outl(&mut self, _: u16, _: u32) {
            unreachable!()
        }
        fn read_bytes(&mut self, _: u16, _: &mut [u8]) {
            unreachable!()
        }
    }
    for (b, written) in [(0x02, 0x02), (0x01, 0x02), (0xFF, 0xFE), (0x40, 0x42)] {
        let mut io = Cmos {
            b,
            accesses: Vec::new(),
        };
        init_pic_rtc_and_pit(&mut io);
        let rtc = &io.accesses[PIC_INIT.len()..io.accesses.len() - 3];
        assert_eq!(
            rtc,
            [
                (true, CMOS_INDEX, 0x0A),
                (true, CMOS_DATA, 0x26),
                (true, CMOS_INDEX, 0x0B),
                (false, CMOS_DATA, b),
                (true, CMOS_INDEX, 0x0B),
                (true, CMOS_DATA, written),
                (true, CMOS_INDEX, 0x0C),
                (false, CMOS_DATA, b),
                (true, CMOS_INDEX, 0x0D),
                (false, CMOS_DATA, b),
            ],
            "register B read as {b:#x}"
        );
    }
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

/// Records configuration writes as (function, register, width, value) and
/// ELCR port writes.
#[derive(Default)]
struct Configs {
    writes: Vec<(Bdf, u8, u8, u32)>,
    ports: Vec<(u16, u8)>,
}
impl PortIo for Configs {
    fn inb(&mut self, _: u16) -> u8 {
        0
    }
    fn inw(&mut self, _: u16) -> u16 {
        0
    }
    fn inl(&mut self, _: u16) -> u32 {
        0
    }
    fn outb(&mut self, port: u16, v: u8) {
        self.ports.push((port, v));
    }
    fn outw(&mut self, _: u16, _: u16) {}
    fn outl(&mut self, _: u16, _: u32) {}
    fn read_bytes(&mut self, _: u16, _: &mut [u8]) {}
}
impl Config for Configs {
    fn access(&mut self, bdf: Bdf, reg: u8, width: u8, write: bool, value: u32) -> u32 {
        assert!(write);
        self.writes.push((bdf, reg, width, value));
        0
    }
}

fn run_quirks(vendor: u16, device: u16, class: u16, pm: u16) -> (Configs, Option<u8>) {
    let mut c = Configs::default();
    let line = quirks(&mut c, Bdf(0, 1, 0), vendor, device, class, pm);
    (c, line)
}

#[test]
fn chipset_functions_get_seabios_set_up_from_the_table() {
    let b = Bdf(0, 1, 0);
    let elcr = [(0x4D0, 0x00), (0x4D1, 0x0C)];
    // PIIX3 and PIIX4 ISA bridges: PIRQA-D, then the ELCR
    for id in [0x7000, 0x7110] {
        let (c, line) = run_quirks(INTEL, id, 0x0601, 0x600);
        assert_eq!(c.writes, [(b, 0x60, 4, 0x0B0B_0A0A)]);
        assert_eq!(c.ports, elcr);
        assert_eq!(line, None);
    }
    // ICH9 LPC: PIRQA-H, PM base 0xB000 with ACPI on, RCBA, the ELCR
    let (c, line) = run_quirks(INTEL, 0x2918, 0x0601, 0xB000);
    assert_eq!(
        c.writes,
        [
            (b, 0x60, 4, 0x0B0B_0A0A),
            (b, 0x68, 4, 0x0B0B_0A0A),
            (b, 0x40, 4, 0xB001),
            (b, 0x44, 1, 0x80),
            (b, 0xF0, 4, 0xFED1_C001)
        ]
    );
    assert_eq!((c.ports.as_slice(), line), (elcr.as_slice(), None));
    // PIIX4 PM: SCI line, PM and SMBus blocks after 0x600; the line is 9
    let (c, line) = run_quirks(INTEL, 0x7113, 0x0680, 0x600);
    assert_eq!(
        c.writes,
        [
            (b, 0x3C, 1, 9),
            (b, 0x40, 4, 0x601),
            (b, 0x80, 1, 1),
            (b, 0x90, 4, 0x701),
            (b, 0xD2, 1, 9)
        ]
    );
    assert_eq!((c.ports.len(), line), (0, Some(9)));
    // ICH9 SMBus
    let (c, _) = run_quirks(INTEL, 0x2930, 0x0C05, 0xB000);
    assert_eq!(c.writes, [(b, 0x20, 4, 0xB101), (b, 0x40, 1, 1)]);
    // PIIX IDE: legacy decode, only with the IDE class
    for id in [0x7010, 0x7111] {
        let (c, _) = run_quirks(INTEL, id, 0x0101, 0x600);
        assert_eq!(c.writes, [(b, 0x40, 2, 0x8000), (b, 0x42, 2, 0x8000)]);
        let (c, _) = run_quirks(INTEL, id, 0x0106, 0x600);
        assert!(c.writes.is_empty());
    }
    // any other IDE controller: ISA-compatible ports in BARs 0-3
    let (c, line) = run_quirks(0x1AF4, 0x7010, 0x0101, 0x600);
    assert_eq!(
        c.writes,
        [
            (b, 0x10, 4, 0x1F0),
            (b, 0x14, 4, 0x3F4),
            (b, 0x18, 4, 0x170),
            (b, 0x1C, 4, 0x374)
        ]
    );
    assert_eq!((c.ports.len(), line), (0, None));
    // other functions, and chipset IDs of another vendor: nothing
    for (vendor, device, class) in [
        (INTEL, 0x1237, 0x0600),
        (0x1AF4, 0x7113, 0x0680),
        (0x1AF4, 0x2918, 0x0601),
    ] {
        let (c, line) = run_quirks(vendor, device, class, 0x600);
        assert!(c.writes.is_empty() && c.ports.is_empty() && line.is_none());
    }
}

#[test]
fn every_device_id_finds_its_chipset_quirk_by_its_slot_and_no_other() {
    // Every ID, Intel's or another vendor's, against a plain search of
    // QUIRK_IDS: IDs sharing a chipset ID's slot get nothing.
    for device in 0..=u16::MAX {
        let (id, slot_kind) = QUIRK_SLOTS[quirk_slot(device)];
        let found = if id == device { slot_kind } else { Quirk::None };
        let searched = QUIRK_IDS
            .iter()
            .find(|&&(id, _)| id == device)
            .map_or(Quirk::None, |&(_, k)| k);
        assert_eq!(found, searched, "device {device:#06x}");
    }
    // IDs that land in a chipset ID's slot, on an Intel function: nothing.
    for &(id, _) in &QUIRK_IDS {
        let other = (0..=u16::MAX)
            .find(|&d| d != id && quirk_slot(d) == quirk_slot(id))
            .unwrap();
        let (c, line) = run_quirks(INTEL, other, 0x0601, 0x600);
        assert!(c.writes.is_empty() && c.ports.is_empty() && line.is_none());
    }
}

#[test]
fn pm_dependent_set_ups_match_what_the_s3_script_replays() {
    for pm in [ACPI_PM_BASE, LEGACY_PM_BASE] {
        let p = pm as u32;
        let w = i440fx::piix4_pm_setup(pm);
        assert_eq!(w[1], ConfigWrite::dword(0x40, p | 1));
        assert_eq!(w[3], ConfigWrite::dword(0x90, (p + 0x100) | 1));
        assert_eq!(
            q35::ich9_lpc_acpi_setup(pm)[0],
            ConfigWrite::dword(0x40, p | 1)
        );
        assert_eq!(
            q35::ich9_smbus_setup(pm)[0],
            ConfigWrite::dword(0x20, (p + 0x100) | 1)
        );
    }
}
