//! The MP table builder as it was before the const tables (2026-12-02):
//! the model the new one is checked against, table for table, on machines
//! drawn at random.

use super::*;
use crate::test_support::Rng;

// The entries go through the builder's own `Writer`: it only appends
// bytes, and the model is of what is appended.

/// Entries one after the other.
fn concat<const N: usize, const M: usize>(entries: [[u8; 8]; N]) -> [u8; M] {
    const { assert!(M == 8 * N) };
    let mut out = [0; M];
    for (o, e) in out.chunks_exact_mut(8).zip(entries) {
        o.copy_from_slice(&e);
    }
    out
}

/// An interrupt entry: type 3 (I/O) or 4 (local).
fn interrupt(
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

/// `build_within` as it was.
pub fn old_build_within(m: &Machine, address: u32, out: &mut [u8], limit: usize) -> Option<usize> {
    let limit = out.len().min(limit);
    if limit < MIN_LEN {
        return None;
    }
    let mut w = Writer {
        out: &mut out[..limit],
        at: FLOATING_LEN + CONFIG_HEADER_LEN,
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
    // The buses (PCI, if any, is bus 0) and the I/O APIC.
    let isa = m.has_pci as u8;
    let [a0, a1, a2, a3] = IOAPIC_ADDRESS.to_le_bytes();
    let isa_bus = [1, isa, b'I', b'S', b'A', b' ', b' ', b' '];
    let ioapic = [2, IOAPIC_ID, 0x11, 1, a0, a1, a2, a3];
    // Selects of 8-byte entries, not branches.
    let pick = |with_pci: [u8; 8], without: [u8; 8]| if m.has_pci { with_pci } else { without };
    let fixed = concat([
        pick(*b"\x01\x00PCI   ", isa_bus),
        pick(isa_bus, ioapic),
        pick(ioapic, [0; 8]),
    ]);
    let count = 2 + m.has_pci as u16;
    w.put_before_last::<24>(fixed, 8 * count as usize, count);

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
    // ISA interrupts, identity-mapped except IRQ 0 with the override; with PCI,
    // not the ISA IRQs that PCI interrupt lines use.
    let skip = if m.has_pci { PCI_IRQ_MASK } else { 0 } | (m.irq0_override as u16) << 2;
    for irq in 0..16u8 {
        crate::mem::block_boundary();
        let pin = irq | (((irq == 0) & m.irq0_override) as u8) << 1;
        let keep = skip >> irq & 1 == 0;
        let entry = interrupt(3, 0, 0, isa, irq, IOAPIC_ID, pin);
        w.put_before_last(entry, 8 * keep as usize, keep as u16);
    }
    // LINT0: ExtINT to the BSP; LINT1: NMI to all local APICs.
    w.put::<16>(
        concat([
            interrupt(4, 3, 0, isa, 0, 0, 0),
            interrupt(4, 1, 0, isa, 0, 0xFF, 1),
        ]),
        16,
        2,
    );
    if w.full {
        return None;
    }
    let (end, entries) = (w.at, w.entries);

    let config = FLOATING_LEN;
    let length = (end - config) as u16;
    let mut header = [0u8; CONFIG_HEADER_LEN];
    header[0..4].copy_from_slice(b"PCMP");
    header[4..6].copy_from_slice(&length.to_le_bytes());
    header[6] = 4; // spec 1.4
    header[8..16].copy_from_slice(b"FERRITE ");
    header[16..28].copy_from_slice(b"QEMU        ");
    header[34..36].copy_from_slice(&entries.to_le_bytes());
    header[36..40].copy_from_slice(&LAPIC_ADDRESS.to_le_bytes());
    out[config..config + CONFIG_HEADER_LEN].copy_from_slice(&header);
    let table = &mut out[config..];
    // Within `out` since nothing overflowed (the min makes that no check).
    let len = usize::min(end - config, table.len());
    table[7] = byte_sum(&table[..len]).wrapping_neg();

    let mut floating = [0u8; FLOATING_LEN];
    floating[0..4].copy_from_slice(b"_MP_");
    floating[4..8].copy_from_slice(&(address + config as u32).to_le_bytes());
    floating[8] = 1; // length in 16-byte units
    floating[9] = 4;
    floating[10] = sum16(&floating).wrapping_neg();
    out[..FLOATING_LEN].copy_from_slice(&floating);
    Some(end)
}

/// The builder makes the same table and pointer as the one it replaced, byte
/// for byte, on machines drawn at random (CPU counts and presence, packages,
/// PCI or not, the IRQ 0 override, PCI interrupts with repeated and invalid
/// pins), in room that is ample, exact, a byte short or tiny; and where the
/// old one made no table, neither does it.
#[test]
fn builds_the_tables_the_old_builder_built() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut made = 0;
    for case in 0..20_000 {
        let present = [rng.next(), rng.next(), rng.next(), rng.next()];
        let ints: std::vec::Vec<PciInterrupt> = (0..rng.below(12))
            .map(|_| PciInterrupt {
                device: rng.below(32) as u8,
                pin: rng.below(7) as u8,
                irq: [5, 9, 10, 11][rng.below(4) as usize],
            })
            .collect();
        let m = Machine {
            max_cpus: rng.below(40) as u16,
            present: &present,
            cpu_signature: rng.next() as u32,
            cpu_features: rng.next() as u32,
            apic_version: rng.next() as u8,
            package_cpus: [0, 1, 2, 4][rng.below(4) as usize],
            has_pci: rng.below(2) == 1,
            pci_interrupts: &ints,
            irq0_override: rng.below(2) == 1,
        };
        let address = 0xF_0000 + 16 * rng.below(0x1000) as u32;
        let full = old_build_within(&m, address, &mut [0; 2048], 2048);
        let limits = [
            2048,
            MAX_LEN,
            full.unwrap_or(100),
            full.unwrap_or(100).saturating_sub(1),
            rng.below(200) as usize,
        ];
        for limit in limits {
            // The old builder wrote the pointer in front of the table, and
            // counted it in the limit; the new one hands it back.
            let (mut old, mut new) = ([0xA5u8; 2048], [0xA5u8; 2048 - FLOATING_LEN]);
            let want = old_build_within(&m, address, &mut old, limit);
            let got = build_within(
                &m,
                address + FLOATING_LEN as u32,
                &mut new,
                limit.saturating_sub(FLOATING_LEN),
            );
            let got_len = got.as_ref().map(|t| t.len + FLOATING_LEN);
            assert_eq!(got_len, want, "case {case}, limit {limit}");
            if let Some(table) = got {
                assert_eq!(
                    table.pointer,
                    old[..FLOATING_LEN],
                    "case {case}, limit {limit}"
                );
                assert_eq!(new, old[FLOATING_LEN..], "case {case}, limit {limit}");
                made += 1;
            }
        }
    }
    assert!(made > 20_000, "{made} tables made");
}
