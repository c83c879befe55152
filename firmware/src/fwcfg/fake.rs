//! A model of QEMU's fw_cfg device, driven through [`PortIo`], for host tests.
//! DMA addresses are host pointers.

use super::*;
use std::collections::BTreeMap;
use std::vec::Vec;

pub struct FakeDevice {
    pub items: BTreeMap<u16, Vec<u8>>,
    pub files: Vec<(String, u16)>,
    pub dma: bool,
    pub present: bool,
    pub fail_dma: bool,
    /// DMA transfers of this item set the error bit (a fault injected into
    /// one file's transfer).
    pub fail_item: Option<u16>,
    selected: u16,
    offset: usize,
    dma_high: u32,
    pub port_accesses: u32,
}

impl FakeDevice {
    pub fn new(dma: bool) -> FakeDevice {
        let mut d = FakeDevice {
            items: BTreeMap::new(),
            files: Vec::new(),
            dma,
            present: true,
            fail_dma: false,
            fail_item: None,
            selected: 0,
            offset: 0,
            dma_high: 0,
            port_accesses: 0,
        };
        d.items.insert(Item::Signature as u16, b"QEMU".to_vec());
        let id: u32 = if dma { 3 } else { 1 };
        d.items.insert(Item::Id as u16, id.to_le_bytes().to_vec());
        d.rebuild_dir();
        d
    }

    /// The items and files QEMU 7.2's x86 machines create before any
    /// device adds its own (hw/i386/fw_cfg.c, fw_cfg_arch_create): CPU
    /// counts, RAM size, the IRQ 0 override and the HPET block as
    /// numbered items, the e820 map as a file.
    pub fn qemu_x86(dma: bool) -> FakeDevice {
        let mut d = FakeDevice::new(dma);
        d.items
            .insert(Item::NbCpus as u16, 2u16.to_le_bytes().to_vec());
        d.items.insert(0x0F, 2u16.to_le_bytes().to_vec()); // FW_CFG_MAX_CPUS
        d.items
            .insert(Item::RamSize as u16, (512u64 << 20).to_le_bytes().to_vec());
        d.items
            .insert(Item::Irq0Override as u16, 1u32.to_le_bytes().to_vec());
        d.items.insert(0x8003, std::vec![0u8; 0x1F]); // FW_CFG_HPET
        d.add_file("etc/e820", &[0u8; 20]);
        d
    }

    pub fn add_file(&mut self, name: &str, data: &[u8]) {
        let sel = 0x20 + self.files.len() as u16;
        self.files.push((name.to_string(), sel));
        self.items.insert(sel, data.to_vec());
        self.rebuild_dir();
    }

    fn rebuild_dir(&mut self) {
        let mut dir = (self.files.len() as u32).to_be_bytes().to_vec();
        for (name, sel) in &self.files {
            dir.extend_from_slice(&(self.items[sel].len() as u32).to_be_bytes());
            dir.extend_from_slice(&sel.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut n = [0u8; 56];
            n[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&n);
        }
        self.items.insert(Item::FileDir as u16, dir);
    }

    fn next_byte(&mut self) -> u8 {
        let b = self
            .items
            .get(&self.selected)
            .and_then(|d| d.get(self.offset))
            .copied()
            .unwrap_or(0);
        self.offset += 1;
        b
    }

    fn run_dma(&mut self, desc_addr: u64) {
        let desc = desc_addr as *mut u32;
        // SAFETY: the driver passes the address of its live descriptor.
        unsafe {
            let control = u32::from_be(desc.read_volatile());
            let len = u32::from_be(desc.add(1).read_volatile()) as usize;
            let addr = u64::from_be((desc.add(2) as *mut u64).read_volatile());
            if control & DmaControl::SELECT.bits() != 0 {
                self.selected = (control >> 16) as u16;
                self.offset = 0;
            }
            let mut result = 0u32;
            if self.fail_dma || self.fail_item == Some(self.selected) {
                result = DmaControl::ERROR.bits();
            } else if control & DmaControl::READ.bits() != 0 {
                let dst = std::slice::from_raw_parts_mut(addr as *mut u8, len);
                for b in dst {
                    *b = self.next_byte();
                }
            } else if control & DmaControl::WRITE.bits() != 0 {
                let src = std::slice::from_raw_parts(addr as *const u8, len);
                let (sel, off) = (self.selected, self.offset);
                match self.items.get_mut(&sel) {
                    Some(item) if off + len <= item.len() => {
                        item[off..off + len].copy_from_slice(src);
                        self.offset += len;
                    }
                    _ => result = DmaControl::ERROR.bits(),
                }
            } else if control & DmaControl::SKIP.bits() != 0 {
                self.offset += len;
            }
            desc.write_volatile(result.to_be());
        }
    }
}

impl PortIo for &mut FakeDevice {
    fn inb(&mut self, port: u16) -> u8 {
        self.port_accesses += 1;
        if self.present && port == PORT_DATA {
            self.next_byte()
        } else {
            0xFF
        }
    }
    fn inw(&mut self, _port: u16) -> u16 {
        self.port_accesses += 1;
        0xFFFF
    }
    fn inl(&mut self, port: u16) -> u32 {
        self.port_accesses += 1;
        match port {
            PORT_DMA_HIGH if self.present && self.dma => u32::from_le_bytes(*b"QEMU"),
            PORT_DMA_LOW if self.present && self.dma => u32::from_le_bytes(*b" CFG"),
            _ => 0xFFFF_FFFF,
        }
    }
    fn outb(&mut self, _port: u16, _value: u8) {
        self.port_accesses += 1;
    }
    fn outw(&mut self, port: u16, value: u16) {
        self.port_accesses += 1;
        if self.present && port == PORT_SELECTOR {
            self.selected = value;
            self.offset = 0;
        }
    }
    fn outl(&mut self, port: u16, value: u32) {
        self.port_accesses += 1;
        if !(self.present && self.dma) {
            return;
        }
        match port {
            PORT_DMA_HIGH => self.dma_high = u32::from_be(value),
            PORT_DMA_LOW => {
                let addr = ((self.dma_high as u64) << 32) | u32::from_be(value) as u64;
                self.dma_high = 0;
                self.run_dma(addr);
            }
            _ => {}
        }
    }
    fn read_bytes(&mut self, port: u16, buf: &mut [u8]) {
        self.port_accesses += 1;
        for b in buf {
            *b = if self.present && port == PORT_DATA {
                self.next_byte()
            } else {
                0xFF
            };
        }
    }
}
