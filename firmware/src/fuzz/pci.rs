//! Fuzz target `pci`: the PCI set-up against a model of QEMU's buses with
//! generated functions, optionally with answers that no device model would give.

use std::format;
use std::string::String;
use std::vec::Vec;

use proptest::prelude::*;

use super::{frames, le64, unframe};
use crate::pci::tests::{Func, Model};

pub(super) fn gen_pci() -> BoxedStrategy<Vec<u8>> {
    // One function: vendor, class, header type, parent, device, function, pin,
    // up to 7 BARs (size as log2, type bits), capability bytes.
    let bar = (
        prop_oneof![Just(0u8), 2..42u8, any::<u8>()],
        prop_oneof![Just(0u8), Just(1), Just(4), Just(0xC), any::<u8>()],
    );
    let func = (
        prop_oneof![Just(0x1AF4u16), Just(0x8086), Just(0x1B36), any::<u16>()],
        prop_oneof![
            Just(0x0200u16),
            Just(0x0604),
            Just(0x0101),
            Just(0x0C03),
            Just(0x0300),
            any::<u16>()
        ],
        prop_oneof![Just(0u8), Just(1), Just(0x80), any::<u8>()],
        any::<u8>(),
        0..32u8,
        prop_oneof![3 => Just(0u8), 1 => 0..8u8],
        0..5u8,
        prop::collection::vec(bar, 7),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(
            |(vendor, class, header, parent, dev, func, pin, bars, caps)| {
                let mut v = vec![];
                v.extend_from_slice(&vendor.to_le_bytes());
                v.extend_from_slice(&class.to_le_bytes());
                v.extend_from_slice(&[header, parent, dev, func, pin]);
                for (s, t) in bars {
                    v.extend_from_slice(&[s, t]);
                }
                v.push(caps.len() as u8);
                v.extend(caps);
                v
            },
        );
    // More functions than the inline arrays hold (256): a bridge on bus 0 and
    // multi-function devices on bus 0 and behind it, small BARs.
    let many = (257..320usize, any::<u64>()).prop_map(|(n, seed)| {
        let mut funcs = vec![];
        let mut bridge = vec![0x36u8, 0x1B, 0x04, 0x06, 0x01, 0, 1, 0, 0];
        bridge.extend([0u8; 14]);
        funcs.push(bridge);
        for i in 0..n {
            let behind = i >= 29 * 8;
            let (dev, f) = if behind {
                ((i - 29 * 8) / 8 + 1, i % 8)
            } else {
                (i / 8 + 2, i % 8)
            };
            let r = seed.rotate_left(i as u32 % 64);
            let mut v = vec![
                0xF4,
                0x1A,
                0x00,
                0x02,
                0x80,
                behind as u8,
                dev as u8,
                f as u8,
                (r % 5) as u8,
            ];
            for bar in 0..7u64 {
                let size = if bar < 2 {
                    4 + (r >> (bar * 5)) as u8 % 12
                } else {
                    0
                };
                v.extend([size, 4]); // a 32-bit memory BAR
            }
            funcs.push(v);
        }
        funcs
    });
    let funcs = prop_oneof![8 => prop::collection::vec(func, 0..10), 1 => many];
    (
        any::<bool>(),
        1..0xE00u64,
        prop::option::of(1..0x1000u64),
        funcs,
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(q35, low_mib, high_mib, funcs, noise)| {
            let mut head = vec![q35 as u8];
            head.extend_from_slice(&low_mib.to_le_bytes());
            head.extend_from_slice(&high_mib.unwrap_or(0).to_le_bytes());
            let mut parts: Vec<Vec<u8>> = vec![head, noise];
            parts.extend(funcs);
            let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
            frames(&refs)
        })
        .boxed()
}

/// Answers of the model, XORed now and then with noise: reads of hardware that
/// misbehaves.
struct Noisy {
    model: Model,
    noise: Vec<u8>,
    reads: usize,
}

impl Noisy {
    fn noise(&mut self, v: u32) -> u32 {
        self.reads += 1;
        match self.noise.get(self.reads % 64) {
            Some(&n) if n & 0x80 != 0 => v ^ (n as u32) << ((self.reads % 4) * 8),
            _ => v,
        }
    }
}

/// The noisy model behind both of the PCI set-up's ways in: the ports (the
/// cell itself), and q35's MMCONFIG window turned back into 0xCF8/0xCFC accesses on the model
/// (so that the noise applies to both).
struct NoisyMmconfig<'a>(&'a core::cell::RefCell<Noisy>);

impl NoisyMmconfig<'_> {
    /// Selects the function and dword `addr` names; returns the data port.
    fn select(n: &mut Noisy, addr: u64) -> u16 {
        use crate::io::PortIo;
        let off = addr.wrapping_sub(crate::chipset::Q35_MMCONFIG.start);
        assert!(
            off < 256 << 20,
            "MMCONFIG access outside the window: {addr:#x}"
        );
        n.outl(
            0xCF8,
            0x8000_0000 | ((off >> 12) as u32 & 0xFFFF) << 8 | (off & 0xFC) as u32,
        );
        0xCFC + (off & 3) as u16
    }
}

impl crate::io::Mmio for NoisyMmconfig<'_> {
    fn read(&mut self, addr: u64, width: u8) -> u32 {
        use crate::io::PortIo;
        let n = &mut *self.0.borrow_mut();
        let port = Self::select(n, addr);
        match width {
            1 => n.inb(port) as u32,
            2 => n.inw(port) as u32,
            _ => n.inl(port),
        }
    }
    fn write(&mut self, addr: u64, width: u8, v: u32) {
        use crate::io::PortIo;
        let n = &mut *self.0.borrow_mut();
        let port = Self::select(n, addr);
        match width {
            1 => n.outb(port, v as u8),
            2 => n.outw(port, v as u16),
            _ => n.outl(port, v),
        }
    }
}

impl crate::io::PortIo for Noisy {
    fn inb(&mut self, port: u16) -> u8 {
        let v = self.model.inb(port) as u32;
        self.noise(v) as u8
    }
    fn inw(&mut self, port: u16) -> u16 {
        let v = self.model.inw(port) as u32;
        self.noise(v) as u16
    }
    fn inl(&mut self, port: u16) -> u32 {
        let v = self.model.inl(port);
        self.noise(v)
    }
    fn outb(&mut self, port: u16, v: u8) {
        self.model.outb(port, v)
    }
    fn outw(&mut self, port: u16, v: u16) {
        self.model.outw(port, v)
    }
    fn outl(&mut self, port: u16, v: u32) {
        self.model.outl(port, v)
    }
    fn read_bytes(&mut self, _: u16, _: &mut [u8]) {
        unreachable!()
    }
}

pub(super) fn check_pci(input: &[u8]) -> String {
    use crate::chipset::Machine;
    use crate::pci::{Pci, Platform};
    let parts = unframe::<330>(input);
    let q35 = parts[0].first().is_some_and(|b| b & 1 != 0);
    // QEMU's low RAM ends by 3.5 GiB on pc, and below MMCONFIG on q35.
    let low = (le64(parts[0], 1) % if q35 { 0xB00 } else { 0xE00 }).max(1) << 20;
    let high = le64(parts[0], 9) % 0x1000;
    let mut funcs = vec![if q35 {
        Func::new(0x8086, 0x29C0, 0x0600, 0).at(None, 0, 0)
    } else {
        Func::new(0x8086, 0x1237, 0x0600, 0).at(None, 0, 0)
    }];
    let mut bridges: Vec<usize> = Vec::new();
    for p in parts[2..].iter().filter(|p| p.len() >= 9) {
        // Vendors 0 and 0xFFFF are no function; a bridge is a PCI-to-PCI bridge by its
        // class and its header type alike (the model goes by the header).
        let vendor = u16::from_le_bytes([p[0], p[1]]).clamp(1, 0xFFFE);
        let mut class = u16::from_le_bytes([p[2], p[3]]);
        let mut header = p[4] & 0x81;
        if class == 0x0604 || header & 1 != 0 {
            class = 0x0604;
            header |= 1;
        }
        let parent = if bridges.is_empty() || p[5] & 1 == 0 {
            None
        } else {
            Some(bridges[p[5] as usize % bridges.len()])
        };
        let (dev, mut func) = (p[6] % 32, p[7] % 8);
        // Functions other than 0 exist only behind a multi-function function 0.
        let multi = funcs
            .iter()
            .any(|f| f.parent == parent && f.devfn == dev << 3 && f.cfg[0x0E] & 0x80 != 0);
        if !multi {
            func = 0;
        }
        if funcs
            .iter()
            .any(|f| f.parent == parent && f.devfn == dev << 3 | func)
            || (parent.is_none() && dev == 0)
        {
            continue;
        }
        let mut f = Func::new(vendor, 0x1000, class, header)
            .at(parent, dev, func)
            .pin(p[8] % 5);
        let is_bridge = header & 0x7F == 1;
        let mut bar = 0;
        while bar < 7 {
            let (Some(&log2), Some(&typ)) = (p.get(9 + 2 * bar), p.get(10 + 2 * bar)) else {
                break;
            };
            let size = if log2 == 0 {
                0
            } else {
                1u64 << (log2 % 44).max(4)
            };
            // An IDE controller's BARs 0-3 get the ISA ports, as under SeaBIOS
            // (the invariant below would call them unassigned).
            // A bridge has BARs 0 and 1 only (a 64-bit one at 0).
            let skip = is_bridge && (2..6).contains(&bar)
                || is_bridge && bar == 1 && (1..=3).contains(&(typ % 5))
                || class == 0x0101 && bar < 4;
            if size != 0 && !skip {
                f = match typ % 5 {
                    0 if bar < 6 => f.io(bar, size.min(256)),
                    1 | 2 if bar < 5 => f.mem64(bar, size),
                    3 if bar < 5 => f.mem64_pref(bar, size),
                    4 if bar == 6 => f.rom(size.min(1 << 24)),
                    _ if bar < 6 => f.mem(bar, size.min(1 << 31)),
                    _ => f.rom(size.clamp(2048, 1 << 24)),
                };
                if typ % 5 != 0 && (1..=3).contains(&(typ % 5)) && bar < 5 {
                    bar += 1;
                }
            }
            bar += 1;
        }
        if let Some(&n) = p.get(23) {
            let caps: &[u8] = p.get(24..24 + n as usize).unwrap_or(&[]);
            if caps.len() >= 2 {
                f = f.caps(&[(caps[0], &caps[1..caps.len().min(6)])]);
            }
        }
        if is_bridge {
            bridges.push(funcs.len());
        }
        funcs.push(f);
    }
    let model = Model::new(funcs);
    let noise = parts[1].to_vec();
    let noisy = !noise.is_empty();
    let io = Noisy {
        model,
        noise,
        reads: 0,
    };
    let platform = Platform {
        host: if q35 { Machine::Q35 } else { Machine::I440fx },
        low_ram_end: low,
        high_ram_end: if high == 0 {
            1 << 32
        } else {
            (1 << 32) + (high << 20)
        },
        reserved_memory_end: 0,
        pm_base: crate::chipset::ACPI_PM_BASE,
        mmconfig: crate::chipset::Q35_MMCONFIG,
    };
    let mut pci = Box::new(Pci::new());
    let cell = core::cell::RefCell::new(io);
    let result = pci
        .setup(&mut &cell, &mut NoisyMmconfig(&cell), &platform)
        .copied();
    let io = cell.into_inner();
    assert!(
        io.model.accesses < 2_000_000,
        "{} port accesses",
        io.model.accesses
    );
    for int in pci.bus0_interrupts() {
        assert!((1..=4).contains(&int.pin) && int.device < 32, "{int:?}");
    }
    match result {
        Ok(layout) => {
            assert!(layout.mem32_start >= low.min(1 << 32) && layout.mem32_start <= 1 << 32);
            if let Some(w) = layout.mem64 {
                assert!(w.start >= 1 << 32 && w.start <= w.end);
            }
            if !noisy {
                crate::pci::tests::assert_no_overlap(&io.model);
            }
            if layout.functions > crate::pci::MAX_DEVICES {
                return "ok-heap".into();
            }
            format!("ok-{}", layout.functions.min(4))
        }
        Err(e) => format!("{e:?}"),
    }
}
