//! The chipset's set-up against recorded port writes.

use super::i440fx::I440FX_ID;
use super::legacy::{I8042_DATA, I8042_STATUS, PIC1_DATA, PIC2_DATA};
use super::q35::Q35_MCH_ID;
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
