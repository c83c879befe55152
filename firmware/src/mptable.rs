//! The Intel MultiProcessor Specification 1.4 table, built as SeaBIOS's
//! mptable_setup does (`src/fw/mptable.c`): processors, the PCI and ISA buses,
//! the I/O APIC, PCI and ISA interrupt sources and the local interrupts. Linux
//! prefers ACPI's MADT but reads this table with `acpi=off` (and old guests
//! need it). Like SeaBIOS, no table is made when it would exceed 600 bytes.
//!
//! The runs of entries that depend only on whether there is PCI and an IRQ 0
//! override (the buses and the I/O APIC; the ISA and local interrupts) and
//! the headers are worked out at build time: under TCG, a loop that builds
//! them at every boot is code to translate, a copy of a constant is not.

use crate::acpi::{byte_sum, sum16};

/// SeaBIOS's BUILD_MAX_MPTABLE_FSEG: the floating pointer and the
/// configuration table together (`copy_mptable` in `src/fw/biostables.c`).
pub const MAX_LEN: usize = 600;
/// The most the configuration table alone may take.
pub const MAX_TABLE_LEN: usize = MAX_LEN - FLOATING_LEN;
pub const LAPIC_ADDRESS: u32 = 0xFEE0_0000;
pub const IOAPIC_ADDRESS: u32 = 0xFEC0_0000;
const IOAPIC_ID: u8 = 0;
/// ISA IRQs that are PCI interrupt lines (5, 9, 10, 11): no ISA entry.
const PCI_IRQ_MASK: u16 = 1 << 5 | 1 << 9 | 1 << 10 | 1 << 11;

pub const FLOATING_LEN: usize = 16;
const CONFIG_HEADER_LEN: usize = 44;

/// A bus-0 PCI function's interrupt, as the MP table lists it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PciInterrupt {
    pub device: u8,
    /// INTA#..INTD# as 1..4.
    pub pin: u8,
    pub irq: u8,
}

/// What goes into the table.
pub struct Machine<'a> {
    /// Possible CPUs (fw_cfg max_cpus); APIC IDs 0..max_cpus.
    pub max_cpus: u16,
    /// APIC IDs that answered (bit n: APIC ID n).
    pub present: &'a [u64; 4],
    /// CPUID.1 EAX and EDX; the local APIC's version register.
    pub cpu_signature: u32,
    pub cpu_features: u32,
    pub apic_version: u8,
    /// Logical CPUs per package to skip between entries (1 without HTT).
    pub package_cpus: u16,
    pub has_pci: bool,
    /// Bus-0 functions' interrupts, in bus order.
    pub pci_interrupts: &'a [PciInterrupt],
    /// fw_cfg item FW_CFG_IRQ0_OVERRIDE: the PIT is wired to I/O APIC pin 2.
    pub irq0_override: bool,
}

/// The smallest configuration table: the header, the ISA bus, the I/O APIC
/// and the two local interrupts.
const MIN_LEN: usize = CONFIG_HEADER_LEN + 4 * 8;

/// Appends entries to the configuration table. Shaped for TCG, where each
/// conditional branch ends a translation block: an entry is written whether
/// it is kept or not (one that is not, or the padding after a shorter one, is
/// overwritten by the next write, which reaches at least as far: the local
/// interrupts always come last), and one that does not fit goes to the end of
/// `out` instead and marks the table as too large, tested once at the end
/// (the table is then not made).
struct Writer<'a> {
    /// At least [`MIN_LEN`] bytes.
    out: &'a mut [u8],
    at: usize,
    entries: u16,
    full: bool,
}

impl Writer<'_> {
    /// Writes `entry`, the first `len` bytes of which are `count` table
    /// entries (none: not kept).
    #[inline(always)]
    fn put<const N: usize>(&mut self, entry: [u8; N], len: usize, count: u16) {
        let room = self.out.len();
        self.full |= self.at + N > room;
        let at = usize::min(self.at, room.saturating_sub(N));
        self.out[at..at + N].copy_from_slice(&entry);
        self.at += len;
        // Wraps only in a table that is too large anyway.
        self.entries = self.entries.wrapping_add(count);
    }

    /// Writes `entries`, `count` table entries, the table's last: as
    /// [`Writer::put`], of a length known at run time (one copy).
    fn put_last(&mut self, entries: &[u8], count: u16) {
        let room = self.out.len();
        self.full |= self.at + entries.len() > room;
        // Cut to the room: the table is then too large, and not made.
        let entries = &entries[..usize::min(entries.len(), room)];
        let at = usize::min(self.at, room - entries.len());
        self.out[at..at + entries.len()].copy_from_slice(entries);
        self.at += entries.len();
        self.entries = self.entries.wrapping_add(count);
    }

    /// As [`Writer::put`], without marking the table as too large: only for
    /// an entry written before one that reaches at least as far (the ISA
    /// and local interrupts', always last, and [`Writer::put_last`] there),
    /// which then marks it. Four
    /// instructions fewer per entry, which under TCG is what costs.
    #[inline(always)]
    fn put_before_last<const N: usize>(&mut self, entry: [u8; N], len: usize, count: u16) {
        let at = usize::min(self.at, self.out.len().saturating_sub(N));
        self.out[at..at + N].copy_from_slice(&entry);
        self.at += len;
        self.entries = self.entries.wrapping_add(count);
    }
}

/// An interrupt entry: type 3 (I/O) or 4 (local).
const fn interrupt(
    kind: u8,
    irq_type: u8,
    flags: u16,
    bus: u8,
    bus_irq: u8,
    apic: u8,
    pin: u8,
) -> [u8; 8] {
    let f = flags.to_le_bytes();
    [kind, irq_type, f[0], f[1], bus, bus_irq, apic, pin]
}

/// Entries worked out at build time, to be copied whole: the first `count`
/// are the table's, the rest zeros.
struct Fixed<const N: usize> {
    entries: [[u8; 8]; N],
    count: u16,
}

impl<const N: usize> Fixed<N> {
    const fn new() -> Self {
        Fixed {
            entries: [[0; 8]; N],
            count: 0,
        }
    }

    const fn push(mut self, entry: [u8; 8]) -> Self {
        self.entries[self.count as usize] = entry;
        self.count += 1;
        self
    }
}

/// The buses (PCI, if any, is bus 0, ISA the next) and the I/O APIC, which
/// follow the processors: without PCI and with.
const BUSES: [Fixed<3>; 2] = [buses(false), buses(true)];

const fn buses(pci: bool) -> Fixed<3> {
    let isa = pci as u8;
    let [a0, a1, a2, a3] = IOAPIC_ADDRESS.to_le_bytes();
    let t = Fixed::new();
    let t = if pci { t.push(*b"\x01\x00PCI   ") } else { t };
    t.push([1, isa, b'I', b'S', b'A', b' ', b' ', b' '])
        .push([2, IOAPIC_ID, 0x11, 1, a0, a1, a2, a3])
}

/// The ISA interrupts and then the local interrupts, which end the table:
/// for each of (PCI, IRQ 0 override), at index `2 * pci + override`.
const LAST: [Fixed<18>; 4] = [
    last(false, false),
    last(false, true),
    last(true, false),
    last(true, true),
];

/// ISA interrupts identity-mapped, but IRQ 0 to pin 2 with the override
/// (and no entry for IRQ 2 then); with PCI, none for the ISA IRQs that PCI
/// interrupt lines use. LINT0: ExtINT to the BSP; LINT1: NMI to all local
/// APICs.
const fn last(pci: bool, irq0_override: bool) -> Fixed<18> {
    let isa = pci as u8;
    let skip = if pci { PCI_IRQ_MASK } else { 0 } | (irq0_override as u16) << 2;
    let mut t = Fixed::new();
    let mut irq = 0;
    while irq < 16 {
        if skip >> irq & 1 == 0 {
            let pin = if irq == 0 && irq0_override { 2 } else { irq };
            t = t.push(interrupt(3, 0, 0, isa, irq, IOAPIC_ID, pin));
        }
        irq += 1;
    }
    t.push(interrupt(4, 3, 0, isa, 0, 0, 0))
        .push(interrupt(4, 1, 0, isa, 0, 0xFF, 1))
}

/// The configuration table's header; its length, entry count and checksum
/// are filled in.
const HEADER: [u8; CONFIG_HEADER_LEN] = {
    let mut h = [0u8; CONFIG_HEADER_LEN];
    let fields: [(usize, &[u8]); 5] = [
        (0, b"PCMP"),
        (6, &[4]), // spec 1.4
        (8, b"FERRITE "),
        (16, b"QEMU        "),
        (36, &LAPIC_ADDRESS.to_le_bytes()),
    ];
    let mut f = 0;
    while f < fields.len() {
        let (at, bytes) = fields[f];
        let mut i = 0;
        while i < bytes.len() {
            h[at + i] = bytes[i];
            i += 1;
        }
        f += 1;
    }
    h
};

/// The floating pointer; the table's address and its checksum are filled
/// in.
const FLOATING: [u8; FLOATING_LEN] = {
    let mut p = [0u8; FLOATING_LEN];
    p[0] = b'_';
    p[1] = b'M';
    p[2] = b'P';
    p[3] = b'_';
    p[8] = 1; // length in 16-byte units
    p[9] = 4;
    p
};

/// A configuration table built into the start of `out`.
#[derive(Debug, PartialEq, Eq)]
pub struct Table {
    /// The table's length in bytes.
    pub len: usize,
    /// The floating pointer that points at the table, for the caller to
    /// place where guests look for it (the EBDA's first KiB, say).
    pub pointer: [u8; FLOATING_LEN],
}

/// Writes the configuration table into `out`, which will live at
/// `address`, and makes its floating pointer. None if the two would exceed
/// SeaBIOS's [`MAX_LEN`], or the table `out`.
pub fn build(m: &Machine, address: u32, out: &mut [u8]) -> Option<Table> {
    build_within(m, address, out, MAX_TABLE_LEN)
}

/// The bytes a configuration table for `m` can take at most.
pub const fn max_len(cpus: usize, pci_interrupts: usize) -> usize {
    CONFIG_HEADER_LEN + 20 * cpus + 2 * 8 + 8 + 8 * pci_interrupts + 16 * 8 + 2 * 8
}

/// As [`build`], with a limit of `limit` bytes on the configuration table
/// instead of SeaBIOS's.
pub fn build_within(m: &Machine, address: u32, out: &mut [u8], limit: usize) -> Option<Table> {
    let limit = out.len().min(limit);
    if limit < MIN_LEN {
        return None;
    }
    let mut w = Writer {
        out: &mut out[..limit],
        at: CONFIG_HEADER_LEN,
        entries: 0,
        full: false,
    };
    let step = m.package_cpus.max(1) as usize;
    let mut id = 0;
    // Up to the first CPU that does not fit (one test: no && there).
    while (id < m.max_cpus as usize) & !w.full {
        let present = (id < 256) & (m.present[id / 64 % 4] >> (id % 64) & 1 != 0);
        let flags = present as u8 | ((id == 0) as u8) << 1;
        let mut cpu = [0u8; 20];
        cpu[..4].copy_from_slice(&[0, id as u8, m.apic_version, flags]);
        cpu[4..8].copy_from_slice(&m.cpu_signature.to_le_bytes());
        cpu[8..12].copy_from_slice(&m.cpu_features.to_le_bytes());
        w.put(cpu, 20, 1);
        id += step;
    }
    // The buses and the I/O APIC, worked out at build time.
    let buses = &BUSES[m.has_pci as usize];
    let fixed: [u8; 24] = *buses.entries.as_flattened().as_array().unwrap();
    w.put_before_last(fixed, 8 * buses.count as usize, buses.count);

    // PCI interrupts: one entry per (device, pin), active high, level. Pins
    // other than 1..=4 are left out.
    let mut last_dev = u16::MAX; // none yet
    let mut pins = 0u8;
    for int in m.pci_interrupts {
        let &PciInterrupt {
            device: dev,
            pin,
            irq,
        } = crate::mem::block_boundary_ref(int);
        let valid = pin.wrapping_sub(1) < 4;
        let seen = if last_dev == dev as u16 { pins } else { 0 };
        let bit = 1u8 << (pin & 7);
        let keep = valid & (seen & bit == 0);
        last_dev = if valid { dev as u16 } else { last_dev };
        pins = if valid { seen | bit } else { pins };
        let bus_irq = dev << 2 | pin.wrapping_sub(1);
        let entry = interrupt(3, 0, 1, 0, bus_irq, IOAPIC_ID, irq);
        w.put_before_last(entry, 8 * keep as usize, keep as u16);
    }
    // The ISA and local interrupts, worked out at build time.
    let last = &LAST[2 * m.has_pci as usize + m.irq0_override as usize];
    let entries = last.entries.as_flattened();
    w.put_last(
        &entries[..usize::min(8 * last.count as usize, entries.len())],
        last.count,
    );
    if w.full {
        return None;
    }
    let (len, entries) = (w.at, w.entries);

    let mut header = HEADER;
    header[4..6].copy_from_slice(&(len as u16).to_le_bytes());
    header[34..36].copy_from_slice(&entries.to_le_bytes());
    out[..CONFIG_HEADER_LEN].copy_from_slice(&header);
    // Within `out` since nothing overflowed (the min makes that no check).
    let len = usize::min(len, out.len());
    out[7] = byte_sum(&out[..len]).wrapping_neg();

    let mut pointer = FLOATING;
    pointer[4..8].copy_from_slice(&address.to_le_bytes());
    pointer[10] = sum16(&pointer).wrapping_neg();
    Some(Table { len, pointer })
}

#[cfg(test)]
mod model;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_pci_every_isa_irq_has_an_entry_and_any_cpu_count_fits() {
        let present = [u64::MAX; 4];
        let mut m = machine(&present, &[], 64);
        m.has_pci = false;
        let mut out = std::vec![0u8; max_len(64, 0)];
        assert_eq!(
            build(&m, 0x9FC00, &mut out),
            None,
            "over SeaBIOS's 600 bytes"
        );
        let table = build_within(&m, 0x10_0000, &mut out, usize::MAX).unwrap();
        assert!(table.len <= out.len());
        let cfg = &out[..table.len];
        assert_eq!(byte_sum(cfg), 0);
        assert_eq!(u16::from_le_bytes([cfg[34], cfg[35]]), 64 + 1 + 1 + 15 + 2);
        assert_pointer(&table.pointer, 0x10_0000);
        // ISA IRQ 10 has its entry (no PCI to take it), IRQ 0 goes to pin 2
        let ints: std::vec::Vec<&[u8]> = cfg[44 + 64 * 20 + 16..]
            .chunks(8)
            .filter(|e| e[0] == 3)
            .collect();
        assert!(ints.iter().any(|e| e[5] == 10 && e[7] == 10));
        assert!(ints.iter().any(|e| e[5] == 0 && e[7] == 2));
        assert!(!ints.iter().any(|e| e[5] == 2));
    }

    /// A floating pointer: signature, checksum, one 16-byte unit, spec 1.4,
    /// no default configuration, pointing at `table`.
    fn assert_pointer(pointer: &[u8; 16], table: u32) {
        assert_eq!(&pointer[..4], b"_MP_");
        assert_eq!(u32::from_le_bytes(pointer[4..8].try_into().unwrap()), table);
        assert_eq!(pointer[8..10], [1, 4]);
        assert_eq!(pointer[11..], [0; 5]);
        assert_eq!(byte_sum(pointer), 0);
    }

    fn int(device: u8, pin: u8, irq: u8) -> PciInterrupt {
        PciInterrupt { device, pin, irq }
    }

    fn machine<'a>(present: &'a [u64; 4], ints: &'a [PciInterrupt], cpus: u16) -> Machine<'a> {
        Machine {
            max_cpus: cpus,
            present,
            cpu_signature: 0x663,
            cpu_features: 0x0781_ABFD,
            apic_version: 0x14,
            package_cpus: 1,
            has_pci: true,
            pci_interrupts: ints,
            irq0_override: true,
        }
    }

    #[test]
    fn four_cpus_on_pc() {
        let present = [0b0111, 0, 0, 0];
        // device 1 pin 1 (PM), device 3 pins 1 and 1 again (two functions)
        let ints = [int(1, 1, 9), int(3, 1, 11), int(3, 1, 11), int(4, 2, 11)];
        let mut out = [0u8; 1024];
        let table = build(&machine(&present, &ints, 4), 0xF5000, &mut out).unwrap();
        assert_pointer(&table.pointer, 0xF5000);
        let cfg = &out[..table.len];
        assert_eq!(&cfg[..4], b"PCMP");
        assert_eq!(u16::from_le_bytes([cfg[4], cfg[5]]) as usize, cfg.len());
        assert_eq!(byte_sum(cfg), 0);
        // 4 CPUs + 2 buses + I/O APIC + 3 PCI + 11 ISA (16 - 4 PCI IRQs - IRQ 2) + 2 local
        assert_eq!(
            u16::from_le_bytes([cfg[34], cfg[35]]),
            4 + 2 + 1 + 3 + 11 + 2
        );
        assert_eq!(cfg.len(), 44 + 4 * 20 + (2 + 1 + 3 + 11 + 2) * 8);
        // CPU 0: enabled + BSP; CPU 3: absent
        assert_eq!(cfg[44 + 3], 3);
        assert_eq!(cfg[44 + 60 + 3], 0);
        // IRQ 0 goes to pin 2 with the override
        let isa0 = 44 + 80 + 16 + 8 + 3 * 8;
        assert_eq!(&cfg[isa0..isa0 + 8], &[3, 0, 0, 0, 1, 0, 0, 2]);
    }

    /// Entries that are not kept, and writes that do not fit, leave nothing
    /// behind: the table fits exactly or is not made, and the bytes after it
    /// are untouched.
    #[test]
    fn a_table_fits_exactly_or_is_not_made() {
        let present = [0b1011, 0, 0, 0];
        // pins out of range, repeated, and a new device
        let ints = [
            int(1, 0, 9),
            int(1, 1, 9),
            int(1, 1, 9),
            int(2, 5, 10),
            int(2, 4, 10),
        ];
        for (pci, irq0) in [(true, true), (false, false), (true, false)] {
            let mut m = machine(&present, &ints, 4);
            (m.has_pci, m.irq0_override) = (pci, irq0);
            let mut out = [0xA5u8; 1024];
            let table = build(&m, 0xF5000, &mut out).unwrap();
            let len = table.len;
            assert!(out[len..].iter().all(|&b| b == 0xA5));
            let cfg = &out[..len];
            assert_eq!(byte_sum(cfg), 0);
            let entries = u16::from_le_bytes([cfg[34], cfg[35]]) as usize;
            // CPUs, buses, I/O APIC, PCI (device 1 pin 1, device 2 pin 4), ISA, local
            let isa = 16 - 4 * pci as usize - irq0 as usize;
            assert_eq!(entries, 4 + (1 + pci as usize) + 1 + 2 + isa + 2);
            assert_eq!(cfg.len(), 44 + 4 * 20 + (entries - 4) * 8);
            let mut exact = std::vec![0xA5u8; len + 8];
            assert_eq!(build_within(&m, 0xF5000, &mut exact, len), Some(table));
            assert_eq!(exact[..len], out[..len]);
            assert!(exact[len..].iter().all(|&b| b == 0xA5));
            assert_eq!(build_within(&m, 0xF5000, &mut exact, len - 1), None);
        }
    }

    #[test]
    fn too_many_cpus_means_no_table() {
        let present = [u64::MAX; 4];
        let mut out = [0u8; 4096];
        assert_eq!(build(&machine(&present, &[], 32), 0xF5000, &mut out), None);
        assert!(build(&machine(&present, &[], 20), 0xF5000, &mut out).is_some());
        let mut small = [0u8; 100];
        assert_eq!(build(&machine(&present, &[], 1), 0xF5000, &mut small), None);
    }

    /// SeaBIOS's 600 bytes count the floating pointer too: without PCI or
    /// the IRQ 0 override, 19 CPUs make a 584-byte table, which is made, and
    /// 20 one that is not.
    #[test]
    fn the_600_bytes_include_the_pointer() {
        let present = [u64::MAX; 4];
        let mut out = [0u8; 4096];
        for (cpus, made) in [(19, Some(584)), (20, None)] {
            let mut m = machine(&present, &[], cpus);
            (m.has_pci, m.irq0_override) = (false, false);
            assert_eq!(build(&m, 0xF5000, &mut out).map(|t| t.len), made);
        }
    }
}
