use std::collections::BTreeMap;
use std::vec::Vec;

use super::*;
use crate::io::PortIo;

/// PCI configuration space behind 0xCF8/0xCFC, and every other port write.
#[derive(Default)]
struct Ports {
    address: u32,
    config: BTreeMap<u32, u8>,
    writes: Vec<(u16, u32)>,
}

impl Ports {
    fn reg(&self, bdf: Bdf, reg: u8, width: usize) -> u32 {
        let base = bdf.address(reg) + (reg as u32 & 3);
        (0..width).fold(0, |v, i| {
            v | (*self.config.get(&(base + i as u32)).unwrap_or(&0) as u32) << (8 * i)
        })
    }
    fn data(&mut self, port: u16, width: usize, value: u32) {
        if (pci::CONFIG_DATA..pci::CONFIG_DATA + 4).contains(&port) {
            let base = self.address + (port - pci::CONFIG_DATA) as u32;
            for i in 0..width {
                self.config
                    .insert(base + i as u32, (value >> (8 * i)) as u8);
            }
        } else {
            self.writes.push((port, value));
        }
    }
}

impl PortIo for Ports {
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
        self.data(port, 1, v as u32);
    }
    fn outw(&mut self, port: u16, v: u16) {
        self.data(port, 2, v as u32);
    }
    fn outl(&mut self, port: u16, v: u32) {
        if port == pci::CONFIG_ADDRESS {
            self.address = v;
        } else {
            self.data(port, 4, v);
        }
    }
    fn read_bytes(&mut self, _: u16, _: &mut [u8]) {}
}

/// What asm/boot.s does with a script: each write in order up to the end mark.
fn replay(script: &Script, io: &mut impl PortIo) -> usize {
    let mut n = 0;
    for w in script.iter().take_while(|w| w.width != 0) {
        match w.width {
            1 => io.outb(w.port, w.value as u8),
            2 => io.outw(w.port, w.value as u16),
            4 => io.outl(w.port, w.value),
            other => panic!("width {other} in a resume script"),
        }
        n += 1;
    }
    assert!(n < SCRIPT_LEN, "the script has no end mark");
    n
}

#[test]
fn pc_script_restores_pam_pm_smbus_pic_and_clears_the_shutdown_status() {
    let mut m = Ports::default();
    let n = replay(&script(Machine::I440fx), &mut m);
    assert_eq!(n, 2 + 7 * 2 + 5 * 2 + 10);
    // the shutdown status first
    assert_eq!(m.writes[..2], [(0x70, 0x0F), (0x71, 0)]);
    let pm = i440fx::PIIX4_PM;
    assert_eq!(m.reg(pm, 0x40, 4), 0x601);
    assert_eq!(m.reg(pm, 0x80, 1), 1);
    assert_eq!(m.reg(pm, 0x90, 4), 0x701);
    assert_eq!(m.reg(pm, 0xD2, 1), 0x09);
    assert_eq!(m.reg(pm, 0x3C, 1), 9);

    // PAM and the PICs as the cold boot leaves them
    let mut cold = Ports::default();
    assert!(chipset::unlock_bios_area(&mut cold, Machine::I440fx));
    chipset::lock_bios_area(&mut cold, Machine::I440fx);

    for reg in 0x59..=0x5F {
        assert_eq!(
            m.reg(HOST_BRIDGE, reg, 1),
            cold.reg(HOST_BRIDGE, reg, 1),
            "PAM {reg:#x}"
        );
    }
    assert_eq!(m.reg(HOST_BRIDGE, 0x59, 1), 0x10);
    assert_eq!(m.writes[2..], cold_pic_writes()[..]);
}

#[test]
fn q35_script_restores_mmconfig_lpc_smbus_pam_and_pic() {
    let mut m = Ports::default();
    let n = replay(&script(Machine::Q35), &mut m);
    assert_eq!(n, 2 + 7 * 2 + (3 + 3 + 2) * 2 + 10);
    assert_eq!(m.writes[..2], [(0x70, 0x0F), (0x71, 0)]);
    let host = HOST_BRIDGE;
    assert_eq!(m.reg(host, 0x60, 4), 0xB000_0001);
    assert_eq!(m.reg(host, 0x64, 4), 0);
    assert_eq!(m.reg(q35::ICH9_LPC, 0x40, 4), 0x601);
    assert_eq!(m.reg(q35::ICH9_LPC, 0x44, 1), 0x80);
    assert_eq!(m.reg(q35::ICH9_LPC, 0xF0, 4), 0xFED1_C001);
    assert_eq!(m.reg(q35::ICH9_SMBUS, 0x20, 4), 0x701);
    assert_eq!(m.reg(q35::ICH9_SMBUS, 0x40, 1), 1);
    assert_eq!(m.reg(host, 0x90, 1), 0x10);
    for reg in 0x91..=0x96 {
        assert_eq!(m.reg(host, reg, 1), 0x33);
    }
    assert_eq!(m.writes[2..], cold_pic_writes()[..]);
}

/// The PICs' writes as the cold boot makes them: its legacy set-up's writes
/// up to the RTC's, which come next (the RTC keeps its state across S3), and
/// then the PIT's (the resumed OS programs its own timer).
fn cold_pic_writes() -> Vec<(u16, u32)> {
    let mut cold = Ports::default();
    chipset::init_pic_rtc_and_pit(&mut cold);
    let rtc = [chipset::CMOS_INDEX, chipset::CMOS_DATA];
    let n = cold.writes.iter().position(|w| rtc.contains(&w.0)).unwrap();
    let pit = cold
        .writes
        .iter()
        .rposition(|w| rtc.contains(&w.0))
        .unwrap()
        + 1;
    assert!(cold.writes[n..pit].iter().all(|w| rtc.contains(&w.0)));
    assert!(
        cold.writes[pit..]
            .iter()
            .all(|w| (0x40..=0x43).contains(&w.0))
    );
    cold.writes.truncate(n);
    cold.writes
}

#[test]
fn scripts_are_well_formed_and_only_pc_and_q35_have_one() {
    for machine in [Machine::I440fx, Machine::Q35] {
        let s = script(machine);
        let n = s.iter().position(|w| w.width == 0).unwrap();
        assert!(s[n..].iter().all(|w| *w == END));
        for (i, w) in s[..n].iter().enumerate() {
            assert!(matches!(w.width, 1 | 2 | 4), "{machine:?} entry {i}");
            // a data write always follows its address
            if (0xCFC..0xD00).contains(&w.port) {
                assert_eq!(s[i - 1].port, 0xCF8);
                assert!(s[i - 1].value & 0x8000_0000 != 0);
            }
        }
        assert!(script_number(machine).is_some());
    }
    assert_eq!(script(Machine::NoPci)[0], END);
    assert_eq!(script_number(Machine::NoPci), None);
    assert_ne!(SCRIPT_PC, SCRIPT_Q35);
}

#[test]
fn every_failed_wake_up_has_its_own_line() {
    assert_eq!(wake_failure(WAKE_OK), None);
    let lines: Vec<_> = [WAKE_NOT_ARMED, WAKE_NO_FACS, WAKE_NO_VECTOR, 99]
        .into_iter()
        .map(|c| wake_failure(c).unwrap())
        .collect();
    for (i, l) in lines.iter().enumerate() {
        assert!(l.contains("booting afresh"));
        assert!(lines[i + 1..].iter().all(|o| o != l));
    }
}

/// Physical memory from 0xE0000 to 0x120000; reads elsewhere fail.
struct Mem {
    base: u64,
    bytes: Vec<u8>,
}

impl Mem {
    fn new() -> Mem {
        Mem {
            base: 0xE_0000,
            bytes: vec![0; 0x4_0000],
        }
    }
    fn put(&mut self, at: u64, data: &[u8]) {
        let i = (at - self.base) as usize;
        self.bytes[i..i + data.len()].copy_from_slice(data);
    }
    fn read(&self, at: u64, buf: &mut [u8]) -> bool {
        let Some(i) = at.checked_sub(self.base) else {
            return false;
        };
        let i = i as usize;
        match self.bytes.get(i..i + buf.len()) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

const RSDP: u64 = 0xF_0010;
const RSDT: u64 = 0x10_0000;
const XSDT: u64 = 0x10_0100;
const APIC: u64 = 0x10_0200;
const FADT: u64 = 0x10_0300;
const FACS: u64 = 0x10_0400;

fn header(sig: &[u8; 4], len: u32) -> Vec<u8> {
    let mut h = vec![0u8; 36];
    h[..4].copy_from_slice(sig);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h
}

/// QEMU's shape: RSDP rev 0 → RSDT → [APIC, FACP] → FACS.
fn tables() -> Mem {
    let mut m = Mem::new();
    let mut rsdp = b"RSD PTR ".to_vec();
    rsdp.extend([0; 8]);
    rsdp.extend((RSDT as u32).to_le_bytes());
    m.put(RSDP, &rsdp);
    let mut rsdt = header(b"RSDT", 44);
    rsdt.extend((APIC as u32).to_le_bytes());
    rsdt.extend((FADT as u32).to_le_bytes());
    m.put(RSDT, &rsdt);
    m.put(APIC, &header(b"APIC", 44));
    let mut fadt = header(b"FACP", 116);
    fadt.resize(116, 0);
    fadt[36..40].copy_from_slice(&(FACS as u32).to_le_bytes());
    m.put(FADT, &fadt);
    m.put(FACS, b"FACS\x40\0\0\0");
    m
}

fn find(m: &Mem, rsdp: u64) -> Option<u32> {
    find_facs(rsdp, |at, buf| m.read(at, buf))
}

#[test]
fn facs_found_through_rsdt_and_fadt() {
    assert_eq!(find(&tables(), RSDP), Some(FACS as u32));
}

#[test]
fn facs_found_through_xsdt_and_x_firmware_ctrl() {
    let mut m = tables();
    // RSDP 2.0 without an RSDT
    let mut rsdp = b"RSD PTR ".to_vec();
    rsdp.extend([0, 0, 0, 0, 0, 0, 0, 2]);
    rsdp.extend(0u32.to_le_bytes());
    rsdp.extend(36u32.to_le_bytes());
    rsdp.extend(XSDT.to_le_bytes());
    m.put(RSDP, &rsdp);
    let mut xsdt = header(b"XSDT", 52);
    xsdt.extend(APIC.to_le_bytes());
    xsdt.extend(FADT.to_le_bytes());
    m.put(XSDT, &xsdt);
    // FIRMWARE_CTRL 0, X_FIRMWARE_CTRL set
    let mut fadt = header(b"FACP", 244);
    fadt.resize(244, 0);
    fadt[132..140].copy_from_slice(&FACS.to_le_bytes());
    m.put(FADT, &fadt);
    assert_eq!(find(&m, RSDP), Some(FACS as u32));
    // ... but never a FACS above 4 GiB
    fadt[132..140].copy_from_slice(&(FACS + (1 << 32)).to_le_bytes());
    m.put(FADT, &fadt);
    assert_eq!(find(&m, RSDP), None);
}

#[test]
fn malformed_tables_give_no_facs() {
    // no RSDP there, or outside memory
    assert_eq!(find(&tables(), RSDP + 16), None);
    assert_eq!(find(&tables(), 0x1000), None);
    assert_eq!(find(&tables(), u64::MAX - 4), None);
    // RSDT pointer 0 on a revision-0 RSDP
    let mut m = tables();
    m.put(RSDP + 16, &0u32.to_le_bytes());
    assert_eq!(find(&m, RSDP), None);
    // RSDT shorter than its header, or absurdly long
    for len in [0u32, 35, 0xFFFF_FFFF] {
        let mut m = tables();
        m.put(RSDT + 4, &len.to_le_bytes());
        assert_eq!(find(&m, RSDP), None, "RSDT length {len}");
    }
    // an RSDT claiming 1 MiB of entries that run off memory: bounded, none found
    let mut m = tables();
    m.put(RSDT + 4, &(1u32 << 20).to_le_bytes());
    m.put(RSDT + 36, &[0; 8]);
    assert_eq!(find(&m, RSDP), None);
    // no FADT listed
    let mut m = tables();
    m.put(RSDT + 40, &(APIC as u32).to_le_bytes());
    assert_eq!(find(&m, RSDP), None);
    // a FADT entry pointing outside memory
    let mut m = tables();
    m.put(RSDT + 40, &0xFFFF_0000u32.to_le_bytes());
    assert_eq!(find(&m, RSDP), None);
    // FADT too short for FIRMWARE_CTRL, FIRMWARE_CTRL 0 in a short FADT
    let mut m = tables();
    m.put(FADT + 4, &38u32.to_le_bytes());
    assert_eq!(find(&m, RSDP), None);
    let mut m = tables();
    m.put(FADT + 36, &0u32.to_le_bytes());
    assert_eq!(find(&m, RSDP), None);
    // the FACS's signature wrong, or the FACS outside memory
    let mut m = tables();
    m.put(FACS, b"FACX");
    assert_eq!(find(&m, RSDP), None);
    let mut m = tables();
    m.put(FADT + 36, &0xFFFF_F000u32.to_le_bytes());
    assert_eq!(find(&m, RSDP), None);
}
