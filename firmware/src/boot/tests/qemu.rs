//! What QEMU hands the firmware for `-M pc|q35|microvm -m 128 -kernel bzImage
//! -initrd ... -append ...`: the PCI functions, the fw_cfg items and files
//! (e820, the kernel's setup sectors, a miniature ACPI table-loader script).

use super::machine::*;
use crate::bootparams::{SetupHeader, e820_type};
use crate::fwcfg::Item;
use crate::fwcfg::fake::FakeDevice;
use crate::pci::tests::{Func, Model, pc_machine, q35_machine};
use std::cell::RefCell;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

/// The functions of QEMU's `-M pc` and `-M q35` with one virtio-net device.
pub(super) fn pci_functions(kind: Vm) -> Vec<Func> {
    match kind {
        Vm::Pc => pc_machine(Vec::new()),
        Vm::Q35 => q35_machine(vec![
            Func::new(0x1AF4, 0x1000, 0x0200, 0)
                .at(None, 3, 0)
                .pin(1)
                .io(0, 32)
                .mem(1, 4096)
                .mem64_pref(4, 16 << 10),
        ]),
        Vm::Microvm => Vec::new(),
    }
}

pub(super) fn e820_file(entries: &[(u64, u64, u32)]) -> Vec<u8> {
    let mut file = Vec::new();
    for &(start, len, typ) in entries {
        file.extend_from_slice(&start.to_le_bytes());
        file.extend_from_slice(&len.to_le_bytes());
        file.extend_from_slice(&typ.to_le_bytes());
    }
    file
}

/// A bzImage's setup sectors (one) with a 2.15 header: 64-bit entry,
/// relocatable, 16 MiB preferred.
pub(super) fn setup_sectors() -> Vec<u8> {
    let mut img = vec![0u8; 0x400];
    let mut h = crate::test_support::setup_header();
    h.setup_sects = 1;
    h.init_size = 8 * MIB as u32;
    let len = size_of::<SetupHeader>();
    // SAFETY: SetupHeader is repr(C, packed) plain data of `len` bytes.
    let bytes = unsafe { core::slice::from_raw_parts((&raw const h).cast::<u8>(), len) };
    img[0x1F1..0x1F1 + len].copy_from_slice(bytes);
    img
}

pub(super) fn command(cmd: u32, fields: &[(usize, &[u8])]) -> Vec<u8> {
    let mut c = vec![0u8; 128];
    c[..4].copy_from_slice(&cmd.to_le_bytes());
    for &(at, bytes) in fields {
        c[at..at + bytes.len()].copy_from_slice(bytes);
    }
    c
}

pub(super) fn name(n: &[u8]) -> [u8; 56] {
    let mut b = [0u8; 56];
    b[..n.len()].copy_from_slice(n);
    b
}

/// QEMU's ACPI files in miniature: the RSDP (in the BIOS segment when there
/// is one), and `etc/acpi/tables` holding the FACS first, then an RSDT.
pub(super) fn add_acpi(fw_cfg: &mut FakeDevice) {
    add_acpi_padded(fw_cfg, 0)
}

/// The length of [`add_acpi`]'s `etc/acpi/tables`: the FACS and the RSDT.
pub(super) const ACPI_TABLES_LEN: usize = 64 + 36;

/// [`add_acpi`], with `padding` zero bytes after the tables (as an
/// `-acpitable` file would make them longer).
pub(super) fn add_acpi_padded(fw_cfg: &mut FakeDevice, padding: usize) {
    let mut rsdp = vec![0u8; 20];
    rsdp[..8].copy_from_slice(b"RSD PTR ");
    rsdp[9..15].copy_from_slice(b"BOCHS ");
    rsdp[16..20].copy_from_slice(&64u32.to_le_bytes());
    let mut tables = vec![0u8; ACPI_TABLES_LEN + padding];
    tables[..4].copy_from_slice(b"FACS");
    tables[4..8].copy_from_slice(&64u32.to_le_bytes());
    tables[64..68].copy_from_slice(b"RSDT");
    tables[68..72].copy_from_slice(&36u32.to_le_bytes());
    tables[72] = 1;
    let rsdp_name = name(b"etc/acpi/rsdp");
    let tables_name = name(b"etc/acpi/tables");
    let script = [
        command(
            1,
            &[(4, &rsdp_name), (60, &16u32.to_le_bytes()), (64, &[2])],
        ),
        command(
            1,
            &[(4, &tables_name), (60, &64u32.to_le_bytes()), (64, &[1])],
        ),
        command(
            2,
            &[
                (4, &rsdp_name),
                (60, &tables_name),
                (116, &16u32.to_le_bytes()),
                (120, &[4]),
            ],
        ),
        command(
            3,
            &[
                (4, &rsdp_name),
                (60, &8u32.to_le_bytes()),
                (64, &0u32.to_le_bytes()),
                (68, &20u32.to_le_bytes()),
            ],
        ),
        command(
            3,
            &[
                (4, &tables_name),
                (60, &(64u32 + 9).to_le_bytes()),
                (64, &64u32.to_le_bytes()),
                (68, &36u32.to_le_bytes()),
            ],
        ),
    ]
    .concat();
    fw_cfg.add_file("etc/acpi/rsdp", &rsdp);
    fw_cfg.add_file("etc/acpi/tables", &tables);
    fw_cfg.add_file("etc/table-loader", &script);
}

pub(super) const CMDLINE: &[u8] = b"console=ttyS0 root=/dev/vda quiet\0";

pub(super) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// What QEMU's fw_cfg holds for `-M kind -m 128 -append ...` whatever the
/// kernel: the memory map, the command line, the ACPI tables (none on this
/// microvm, which takes the MP table path).
fn machine_fw_cfg(kind: Vm) -> FakeDevice {
    let mut d = FakeDevice::qemu_x86(true);
    d.items
        .insert(Item::RamSize as u16, RAM.to_le_bytes().to_vec());
    let mut map = vec![(0, RAM, e820_type::RAM)];
    if kind != Vm::Microvm {
        // QEMU 7.2 lists the reserved range at 1 TiB first
        map.insert(0, (0xFD_0000_0000, 0x3_0000_0000, e820_type::RESERVED));
    }
    let index = d.files.iter().position(|(n, _)| n == "etc/e820").unwrap();
    let select = d.files[index].1;
    d.items.insert(select, e820_file(&map));
    d.items
        .insert(Item::CmdlineSize as u16, u32_item(CMDLINE.len()));
    d.items.insert(Item::CmdlineData as u16, CMDLINE.to_vec());
    if kind != Vm::Microvm {
        add_acpi(&mut d);
    }
    d.files.sort_by(|a, b| a.0.cmp(&b.0));
    d
}

fn u32_item(v: usize) -> Vec<u8> {
    (v as u32).to_le_bytes().to_vec()
}

/// QEMU's fw_cfg for `-M kind -m 128 -kernel bzImage -initrd ... -append ...`.
pub(super) fn fw_cfg(kind: Vm, kernel: &[u8], initrd: &[u8]) -> FakeDevice {
    let mut d = machine_fw_cfg(kind);
    let setup = setup_sectors();
    d.items
        .insert(Item::SetupSize as u16, u32_item(setup.len()));
    d.items.insert(Item::SetupData as u16, setup);
    d.items.insert(Item::KernelAddr as u16, u32_item(0x10_0000));
    d.items
        .insert(Item::KernelSize as u16, u32_item(kernel.len()));
    d.items.insert(Item::KernelData as u16, kernel.to_vec());
    d.items
        .insert(Item::InitrdSize as u16, u32_item(initrd.len()));
    d.items.insert(Item::InitrdData as u16, initrd.to_vec());
    d
}

/// A PVH vmlinux as QEMU hands it over: its segments already in RAM at
/// [`PVH_LOAD`], the start of the ELF file (a 64-bit header, one PT_LOAD, a
/// PT_NOTE with the PVH entry note) as the setup item.
pub(super) const PVH_LOAD: u64 = 16 * MIB;
pub(super) const PVH_SIZE: u64 = 0x40000;
pub(super) const PVH_ENTRY: u32 = (PVH_LOAD + 0x1234) as u32;

pub(super) fn fw_cfg_pvh(kind: Vm, initrd: &[u8]) -> FakeDevice {
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes()); // name "Xen\0"
    note.extend_from_slice(&4u32.to_le_bytes()); // desc: the 32-bit entry
    note.extend_from_slice(&crate::pvh::XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&PVH_ENTRY.to_le_bytes());
    let mut elf = vec![0u8; 0x100];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2; // ELFCLASS64
    elf[5] = 1; // little-endian
    elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    elf[0x38..0x3A].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
    let mut header = |at: usize, typ: u32, offset: u64, paddr: u64, len: u64| {
        elf[at..at + 4].copy_from_slice(&typ.to_le_bytes());
        elf[at + 8..at + 16].copy_from_slice(&offset.to_le_bytes());
        elf[at + 0x18..at + 0x20].copy_from_slice(&paddr.to_le_bytes());
        elf[at + 0x20..at + 0x28].copy_from_slice(&len.to_le_bytes());
        elf[at + 0x28..at + 0x30].copy_from_slice(&len.to_le_bytes());
    };
    header(64, 1, 0x1000, PVH_LOAD, PVH_SIZE); // PT_LOAD
    header(120, 4, 0x100, 0, note.len() as u64); // PT_NOTE
    elf.extend_from_slice(&note);
    let mut d = machine_fw_cfg(kind);
    d.items.insert(Item::SetupSize as u16, u32_item(elf.len()));
    d.items.insert(Item::SetupData as u16, elf);
    d.items
        .insert(Item::KernelAddr as u16, u32_item(PVH_LOAD as usize));
    d.items
        .insert(Item::KernelSize as u16, u32_item(PVH_SIZE as usize));
    d.items
        .insert(Item::KernelEntry as u16, u32_item(PVH_ENTRY as usize));
    d.items
        .insert(Item::InitrdSize as u16, u32_item(initrd.len()));
    d.items.insert(Item::InitrdData as u16, initrd.to_vec());
    d
}

/// A multiboot kernel as QEMU prepares it: the image (kernel, modules,
/// command lines) at [`MB_LOAD`] with a multiboot header in its first bytes,
/// and the information block at [`MB_INFO`] (as INITRD_ADDR/SIZE/DATA), its
/// memory fields left to the firmware.
pub(super) const MB_LOAD: u64 = MIB;
pub(super) const MB_ENTRY: u32 = (MB_LOAD + 0x40) as u32;
pub(super) const MB_INFO: u64 = 0x9500;

pub(super) fn fw_cfg_multiboot(kind: Vm, image: &mut [u8]) -> FakeDevice {
    const MAGIC: u32 = 0x1BAD_B002;
    let flags: u32 = 1 | 2; // page-aligned modules, memory information
    image[..4].copy_from_slice(&MAGIC.to_le_bytes());
    image[4..8].copy_from_slice(&flags.to_le_bytes());
    image[8..12].copy_from_slice(&MAGIC.wrapping_add(flags).wrapping_neg().to_le_bytes());
    let info = vec![0u8; size_of::<crate::multiboot::Info>()];
    let mut d = machine_fw_cfg(kind);
    d.items.remove(&(Item::CmdlineSize as u16));
    d.items.remove(&(Item::CmdlineData as u16));
    d.items.insert(Item::SetupSize as u16, u32_item(0));
    d.items
        .insert(Item::KernelAddr as u16, u32_item(MB_LOAD as usize));
    d.items
        .insert(Item::KernelSize as u16, u32_item(image.len()));
    d.items.insert(Item::KernelData as u16, image.to_vec());
    d.items
        .insert(Item::KernelEntry as u16, u32_item(MB_ENTRY as usize));
    d.items
        .insert(Item::InitrdAddr as u16, u32_item(MB_INFO as usize));
    d.items
        .insert(Item::InitrdSize as u16, u32_item(info.len()));
    d.items.insert(Item::InitrdData as u16, info);
    d
}

pub(super) fn board(kind: Vm, fw_cfg: FakeDevice) -> FakeBoard {
    let devices = Rc::new(RefCell::new(Devices {
        fw_cfg,
        pci: Model::new(pci_functions(kind)),
        others: Vec::new(),
    }));
    FakeBoard {
        mmio: Mmconfig(devices.clone()),
        devices,
        ram: Ram::new(RAM),
        cpu: FakeCpu {
            others: 1,
            ..FakeCpu::default()
        },
        steps: Vec::new(),
    }
}
