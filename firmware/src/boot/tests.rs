//! The whole boot on the host: [`boot`] against a model of QEMU's pc, q35 and
//! microvm (the fw_cfg device, the PCI buses, the CPU) and `Vec`-backed guest
//! memory, checked for what the kernel would be handed: the zero page, the
//! e820 map, the ACPI tables, the MP table, the S3 resume data, and the order
//! of the steps.

use super::*;
use crate::board::{Cpu, GuestMemory};
use crate::bootparams::{
    BOOT_FLAG, BootParams, HDRS_MAGIC, LOADER_TYPE_QEMU, SetupHeader, e820_type, loadflags,
    xloadflags,
};
use crate::fwcfg::Item;
use crate::fwcfg::fake::FakeDevice;
use crate::io::{Mmio, PortIo};
use crate::pci::tests::{Func, Model};
use crate::s3::ResumeBlock;
use std::alloc::{self as heap, Layout};
use std::cell::RefCell;
use std::rc::Rc;
use std::string::String;
use std::vec;
use std::vec::Vec;

const MIB: u64 = 1 << 20;
/// The guest's RAM (`-m 128`).
const RAM: u64 = 128 * MIB;
const ROM: Range = Range::new((1 << 32) - 128 * 1024, 1 << 32);
const MMCONFIG: u64 = 0xB000_0000;
const CONFIG_ADDRESS: u16 = 0xCF8;
const CONFIG_DATA: u16 = 0xCFC;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pc,
    Q35,
    Microvm,
}

/// QEMU's devices: fw_cfg, the PCI buses (none on microvm), and every other
/// port the boot writes, recorded.
struct Devices {
    fw_cfg: FakeDevice,
    pci: Model,
    others: Vec<(u16, u32)>,
}

impl Devices {
    fn read(&mut self, port: u16, width: u8) -> u32 {
        match port {
            0x510..=0x51B => {
                let mut dev = &mut self.fw_cfg;
                match width {
                    1 => dev.inb(port) as u32,
                    2 => dev.inw(port) as u32,
                    _ => dev.inl(port),
                }
            }
            CONFIG_ADDRESS..=0xCFF => match width {
                1 => self.pci.inb(port) as u32,
                2 => self.pci.inw(port) as u32,
                _ => self.pci.inl(port),
            },
            // the i8042's status: input buffer empty
            0x64 => 0,
            _ => u32::MAX >> (32 - 8 * width as u32),
        }
    }

    fn write(&mut self, port: u16, width: u8, value: u32) {
        match port {
            0x510..=0x51B => {
                let mut dev = &mut self.fw_cfg;
                match width {
                    1 => dev.outb(port, value as u8),
                    2 => dev.outw(port, value as u16),
                    _ => dev.outl(port, value),
                }
            }
            CONFIG_ADDRESS..=0xCFF => match width {
                1 => self.pci.outb(port, value as u8),
                2 => self.pci.outw(port, value as u16),
                _ => self.pci.outl(port, value),
            },
            _ => self.others.push((port, value)),
        }
    }
}

/// The board's port I/O: a handle on the devices.
#[derive(Clone)]
struct Io(Rc<RefCell<Devices>>);

impl PortIo for Io {
    fn inb(&mut self, port: u16) -> u8 {
        self.0.borrow_mut().read(port, 1) as u8
    }
    fn inw(&mut self, port: u16) -> u16 {
        self.0.borrow_mut().read(port, 2) as u16
    }
    fn inl(&mut self, port: u16) -> u32 {
        self.0.borrow_mut().read(port, 4)
    }
    fn outb(&mut self, port: u16, value: u8) {
        self.0.borrow_mut().write(port, 1, value as u32)
    }
    fn outw(&mut self, port: u16, value: u16) {
        self.0.borrow_mut().write(port, 2, value as u32)
    }
    fn outl(&mut self, port: u16, value: u32) {
        self.0.borrow_mut().write(port, 4, value)
    }
    fn read_bytes(&mut self, port: u16, buf: &mut [u8]) {
        for b in buf {
            *b = self.inb(port);
        }
    }
}

/// q35's MMCONFIG window onto the same PCI model.
struct Mmconfig(Rc<RefCell<Devices>>);

impl Mmconfig {
    /// Selects the dword an MMCONFIG address names; returns its data port.
    fn select(d: &mut Devices, addr: u64) -> u16 {
        let off = addr - MMCONFIG;
        assert!(off < 256 * MIB, "outside the MMCONFIG window: {addr:#x}");
        assert_eq!(off & 0xF00, 0, "extended configuration space");
        let address = 0x8000_0000 | ((off >> 12) as u32) << 8 | (off & 0xFC) as u32;
        d.pci.outl(CONFIG_ADDRESS, address);
        CONFIG_DATA + (off & 3) as u16
    }
}

impl Mmio for Mmconfig {
    fn read(&mut self, addr: u64, width: u8) -> u32 {
        let d = &mut *self.0.borrow_mut();
        let port = Self::select(d, addr);
        d.read(port, width)
    }
    fn write(&mut self, addr: u64, width: u8, value: u32) {
        let d = &mut *self.0.borrow_mut();
        let port = Self::select(d, addr);
        d.write(port, width, value)
    }
}

/// Guest RAM: one zeroed allocation the size of the guest's, which the
/// fake fw_cfg device writes at host addresses (its DMA addresses).
struct Ram {
    base: *mut u8,
    layout: Layout,
}

impl Ram {
    fn new(size: u64) -> Ram {
        let layout = Layout::from_size_align(size as usize, 4096).unwrap();
        // SAFETY: a non-zero size; pages the host zeroes lazily.
        let base = unsafe { heap::alloc_zeroed(layout) };
        assert!(!base.is_null());
        Ram { base, layout }
    }

    fn check(&self, at: u64, len: usize) -> Result<(), Error> {
        match at.checked_add(len as u64) {
            Some(end) if at != 0 && end <= self.layout.size() as u64 => Ok(()),
            _ => Err(Error::GuestMemory {
                at,
                len: len as u64,
            }),
        }
    }

    /// A copy of guest memory, for the checks.
    fn read(&self, at: u64, len: usize) -> Vec<u8> {
        self.check(at, len).unwrap();
        // SAFETY: inside the allocation (checked); no slice of it is live.
        unsafe { core::slice::from_raw_parts(self.base.add(at as usize), len) }.to_vec()
    }

    fn u32_at(&self, at: u64) -> u32 {
        u32::from_le_bytes(self.read(at, 4).try_into().unwrap())
    }
}

impl Drop for Ram {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { heap::dealloc(self.base, self.layout) }
    }
}

// SAFETY: every range `check` accepts lies inside the one allocation, which
// holds no Rust object; a slice of `[at, at + len)` starts at `base + at`, so
// disjoint ranges give disjoint slices.
unsafe impl GuestMemory for Ram {
    fn bytes(&mut self, at: u64, len: usize) -> Result<&mut [u8], Error> {
        self.check(at, len)?;
        // SAFETY: as for the impl, borrowed from `self`.
        Ok(unsafe { core::slice::from_raw_parts_mut(self.base.add(at as usize), len) })
    }
    unsafe fn bytes_unchecked(&mut self, at: u64, len: usize) -> &mut [u8] {
        assert!(self.check(at, len).is_ok(), "an unchecked range");
        // SAFETY: inside the allocation (checked above).
        unsafe { core::slice::from_raw_parts_mut(self.base.add(at as usize), len) }
    }
    fn dma_address(&mut self, at: u64, len: usize) -> Result<u64, Error> {
        self.check(at, len)?;
        Ok(self.base as u64 + at)
    }
    fn map(&mut self, range: Range) -> Result<(), Error> {
        self.check(range.start, range.len() as usize)
    }
}

/// A CPU with MTRRs and a local APIC, whose other CPUs check in as soon as
/// they are sent the start-up IPI.
#[derive(Default)]
struct FakeCpu {
    msrs: Vec<(u32, u64)>,
    lapic: Vec<(u32, u32)>,
    others: u16,
    started: bool,
    ticks: u64,
}

impl Cpu for FakeCpu {
    fn cpuid(&mut self, leaf: u32) -> [u32; 4] {
        match leaf {
            // family 6 model 6; APIC ID 0; FPU, MSR, APIC, MTRR
            1 => [0x663, 0, 0, 1 | 1 << 5 | 1 << 9 | 1 << 12],
            0x8000_0000 => [0x8000_0008, 0, 0, 0],
            0x8000_0008 => [40, 0, 0, 0],
            _ => [0; 4],
        }
    }
    fn mtrr_cap(&mut self) -> u64 {
        // 8 variable ranges, fixed ranges, write-combining
        0x508
    }
    fn write_msrs(&mut self, msrs: &crate::mtrr::MsrList) {
        self.msrs.extend_from_slice(msrs.as_slice());
    }
    fn lapic_read(&mut self, reg: u32) -> u32 {
        match reg {
            0x30 => 0x0005_0014,
            _ => 0,
        }
    }
    fn lapic_write(&mut self, reg: u32, value: u32) {
        self.lapic.push((reg, value));
        if reg == 0x300 && value & 0x700 == 0x600 {
            self.started = true;
        }
    }
    fn ticks(&mut self) -> u64 {
        self.ticks += 1000;
        self.ticks
    }
    fn ap_code(&self) -> &'static [u8] {
        // cli; hlt
        &[0xFA, 0xF4]
    }
    fn checked_in(&mut self) -> u16 {
        if self.started { self.others } else { 0 }
    }
    fn present(&mut self) -> [u64; 4] {
        [(1 << (self.others + 1)) - 1, 0, 0, 0]
    }
}

struct FakeBoard {
    devices: Rc<RefCell<Devices>>,
    mmio: Mmconfig,
    ram: Ram,
    cpu: FakeCpu,
    steps: Vec<Step>,
}

impl Board for FakeBoard {
    type Io = Io;
    type Mmio = Mmconfig;
    type Memory = Ram;
    type Cpu = FakeCpu;

    const ROM: Range = ROM;

    fn io(&self) -> Io {
        Io(self.devices.clone())
    }
    fn mmio(&mut self) -> &mut Mmconfig {
        &mut self.mmio
    }
    fn memory(&mut self) -> &mut Ram {
        &mut self.ram
    }
    fn cpu(&mut self) -> &mut FakeCpu {
        &mut self.cpu
    }
    fn cpu_and_memory(&mut self) -> (&mut FakeCpu, &mut Ram) {
        (&mut self.cpu, &mut self.ram)
    }
    fn mark(&mut self, step: Step) {
        self.steps.push(step);
    }
    fn configure(&mut self, _: &mut FwCfg<Io>) -> Result<(), Error> {
        Ok(())
    }
}

/// The functions of QEMU's `-M pc` and `-M q35` with one virtio-net device.
fn pci_functions(kind: Kind) -> Vec<Func> {
    let net = Func::new(0x1AF4, 0x1000, 0x0200, 0)
        .at(None, 3, 0)
        .pin(1)
        .io(0, 32)
        .mem(1, 4096)
        .mem64_pref(4, 16 << 10);
    match kind {
        Kind::Pc => vec![
            Func::new(0x8086, 0x1237, 0x0600, 0).at(None, 0, 0),
            Func::new(0x8086, 0x7000, 0x0601, 0x80).at(None, 1, 0),
            Func::new(0x8086, 0x7010, 0x0101, 0)
                .at(None, 1, 1)
                .io(4, 16),
            Func::new(0x8086, 0x7113, 0x0680, 0).at(None, 1, 3).pin(1),
            net,
        ],
        Kind::Q35 => vec![
            Func::new(0x8086, 0x29C0, 0x0600, 0).at(None, 0, 0),
            Func::new(0x8086, 0x2918, 0x0601, 0x80).at(None, 0x1F, 0),
            Func::new(0x8086, 0x2922, 0x0106, 0x80)
                .at(None, 0x1F, 2)
                .pin(1)
                .io(4, 32)
                .mem(5, 4096),
            Func::new(0x8086, 0x2930, 0x0C05, 0x80)
                .at(None, 0x1F, 3)
                .pin(1)
                .io(4, 64),
            net,
        ],
        Kind::Microvm => Vec::new(),
    }
}

fn e820_file(entries: &[(u64, u64, u32)]) -> Vec<u8> {
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
fn setup_sectors() -> Vec<u8> {
    let mut img = vec![0u8; 0x400];
    img[0x1FE..0x200].copy_from_slice(&BOOT_FLAG.to_le_bytes());
    img[0x202..0x206].copy_from_slice(&HDRS_MAGIC.to_le_bytes());
    let mut h = *SetupHeader::in_image(&img).unwrap();
    h.setup_sects = 1;
    h.version = 0x020F;
    h.loadflags = loadflags::LOADED_HIGH;
    h.xloadflags = xloadflags::KERNEL_64 | xloadflags::CAN_BE_LOADED_ABOVE_4G;
    h.relocatable_kernel = 1;
    h.kernel_alignment = 2 * MIB as u32;
    h.pref_address = 16 * MIB;
    h.init_size = 8 * MIB as u32;
    h.cmdline_size = 2047;
    h.initrd_addr_max = 0x7FFF_FFFF;
    let len = size_of::<SetupHeader>();
    // SAFETY: SetupHeader is repr(C, packed) plain data of `len` bytes.
    let bytes = unsafe { core::slice::from_raw_parts((&raw const h).cast::<u8>(), len) };
    img[0x1F1..0x1F1 + len].copy_from_slice(bytes);
    img
}

fn command(cmd: u32, fields: &[(usize, &[u8])]) -> Vec<u8> {
    let mut c = vec![0u8; 128];
    c[..4].copy_from_slice(&cmd.to_le_bytes());
    for &(at, bytes) in fields {
        c[at..at + bytes.len()].copy_from_slice(bytes);
    }
    c
}

fn name(n: &[u8]) -> [u8; 56] {
    let mut b = [0u8; 56];
    b[..n.len()].copy_from_slice(n);
    b
}

/// QEMU's ACPI files in miniature: the RSDP (in the BIOS segment when there
/// is one), and `etc/acpi/tables` holding the FACS first, then an RSDT.
fn add_acpi(fw_cfg: &mut FakeDevice) {
    let mut rsdp = vec![0u8; 20];
    rsdp[..8].copy_from_slice(b"RSD PTR ");
    rsdp[9..15].copy_from_slice(b"BOCHS ");
    rsdp[16..20].copy_from_slice(&64u32.to_le_bytes());
    let mut tables = vec![0u8; 64 + 36];
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

const CMDLINE: &[u8] = b"console=ttyS0 root=/dev/vda quiet\0";

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// QEMU's fw_cfg for `-M kind -m 128 -kernel bzImage -initrd ... -append ...`.
fn fw_cfg(kind: Kind, kernel: &[u8], initrd: &[u8]) -> FakeDevice {
    let mut d = FakeDevice::qemu_x86(true);
    d.items
        .insert(Item::RamSize as u16, RAM.to_le_bytes().to_vec());
    let mut map = vec![(0, RAM, e820_type::RAM)];
    if kind != Kind::Microvm {
        // QEMU 7.2 lists the reserved range at 1 TiB first
        map.insert(0, (0xFD_0000_0000, 0x3_0000_0000, e820_type::RESERVED));
    }
    let index = d.files.iter().position(|(n, _)| n == "etc/e820").unwrap();
    let select = d.files[index].1;
    d.items.insert(select, e820_file(&map));
    let u32_item = |v: usize| (v as u32).to_le_bytes().to_vec();
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
    d.items
        .insert(Item::CmdlineSize as u16, u32_item(CMDLINE.len()));
    d.items.insert(Item::CmdlineData as u16, CMDLINE.to_vec());
    if kind != Kind::Microvm {
        add_acpi(&mut d);
    }
    d.files.sort_by(|a, b| a.0.cmp(&b.0));
    d
}

fn board(kind: Kind, fw_cfg: FakeDevice) -> FakeBoard {
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

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b))
}

/// The final e820 map from the zero page.
fn e820(zp: &BootParams) -> Vec<(Range, u32)> {
    zp.e820_table[..zp.e820_entries as usize]
        .iter()
        .map(|e| {
            let (addr, size, typ) = (e.addr, e.size, e.typ);
            (Range::new(addr, addr + size), typ)
        })
        .collect()
}

fn covered_by(map: &[(Range, u32)], r: Range, typ: u32) -> bool {
    map.iter()
        .any(|&(m, t)| t == typ && m.start <= r.start && r.end <= m.end)
}

/// Boots a bzImage on `kind` and checks everything the kernel is handed.
fn boot_bzimage_on(kind: Kind) {
    let kernel = pattern(300 * 1024, 7);
    let initrd = pattern(200 * 1024, 99);
    let mut board = board(kind, fw_cfg(kind, &kernel, &initrd));
    let mut storage = std::boxed::Box::new(Storage::new());
    let handoff = boot(&mut board, &mut storage).expect("the boot succeeds");

    // the steps, in the timeline's order
    use Step::*;
    let expected = [
        FwCfg,
        MemoryMap,
        Hardware,
        KernelHeader,
        Acpi,
        KernelLoaded,
        InitrdLoaded,
        Cpus,
        ZeroPage,
    ];
    assert_eq!(board.steps, expected, "{kind:?}");

    // the zero page and what it points at
    assert_eq!(handoff.kind, super::Kind::Linux64);
    assert_eq!(handoff.boot_info, layout::ZERO_PAGE);
    let page = board.ram.read(layout::ZERO_PAGE, size_of::<BootParams>());
    // SAFETY: 4096 bytes read from the zero page; BootParams is plain data
    // with alignment 1.
    let zp: BootParams = unsafe { core::ptr::read_unaligned(page.as_ptr().cast()) };
    let hdr = zp.hdr;
    let (code32_start, cmd_line_ptr) = (hdr.code32_start, hdr.cmd_line_ptr);
    let (ramdisk_image, ramdisk_size) = (hdr.ramdisk_image, hdr.ramdisk_size);
    assert_eq!(hdr.type_of_loader, LOADER_TYPE_QEMU);
    assert_eq!(
        code32_start as u64,
        16 * MIB,
        "the preferred address is free"
    );
    assert_eq!(handoff.entry, 16 * MIB + 0x200);
    assert!(board.ram.read(code32_start as u64, kernel.len()) == kernel);
    assert_eq!(ramdisk_size as usize, initrd.len());
    let loaded = board.ram.read(ramdisk_image as u64, initrd.len());
    let first_difference = loaded.iter().zip(&initrd).position(|(a, b)| a != b);
    assert_eq!(first_difference, None, "initrd at {ramdisk_image:#x}");
    assert_eq!(
        board.ram.read(cmd_line_ptr as u64, CMDLINE.len()),
        CMDLINE,
        "the command line with its NUL"
    );

    // the memory map: sorted, disjoint, the legacy hole gone, the firmware's
    // ranges reserved, the kernel and initrd in RAM that stays RAM
    let map = e820(&zp);
    for pair in map.windows(2) {
        assert!(pair[0].0.end <= pair[1].0.start, "{map:x?}");
    }
    assert!(
        !map.iter()
            .any(|&(r, t)| t == e820_type::RAM && r.overlaps(&layout::LEGACY_HOLE)),
        "{map:x?}"
    );
    assert!(covered_by(&map, ROM, e820_type::RESERVED), "{map:x?}");
    assert!(covered_by(&map, layout::BIOS_AREA, e820_type::RESERVED));
    let kernel_range = Range::new(code32_start as u64, code32_start as u64 + 8 * MIB);
    assert!(covered_by(&map, kernel_range, e820_type::RAM), "{map:x?}");
    let initrd_range = Range::new(
        ramdisk_image as u64,
        ramdisk_image as u64 + ramdisk_size as u64,
    );
    assert!(covered_by(&map, initrd_range, e820_type::RAM), "{map:x?}");
    assert!(!initrd_range.overlaps(&kernel_range));

    let rsdp = zp.acpi_rsdp_addr;
    if kind == Kind::Microvm {
        // no ACPI: the MP table, its floating pointer in the last KiB of
        // base memory, reserved
        assert_eq!(rsdp, 0);
        assert_eq!(board.ram.read(EBDA.start, 4), b"_MP_");
        assert_eq!(sum(&board.ram.read(EBDA.start, 16)), 0);
        let table = board.ram.u32_at(EBDA.start + 4) as u64;
        assert_eq!(board.ram.read(table, 4), b"PCMP");
        assert!(covered_by(&map, EBDA, e820_type::RESERVED), "{map:x?}");
        assert!(covered_by(
            &map,
            Range::new(table, table + 16),
            e820_type::RESERVED
        ));
        assert!(board.cpu.msrs.is_empty(), "microvm has no MTRR set-up");
        return;
    }

    // ACPI: the RSDP in the BIOS segment, checksummed, pointing at the RSDT
    // in reserved memory; the S3 resume block points at the FACS
    assert!(
        F_SEGMENT.contains(&Range::new(rsdp, rsdp + 20)),
        "{rsdp:#x}"
    );
    let rsdp_bytes = board.ram.read(rsdp, 20);
    assert_eq!(&rsdp_bytes[..8], b"RSD PTR ");
    assert_eq!(sum(&rsdp_bytes), 0);
    let rsdt = board.ram.u32_at(rsdp + 16) as u64;
    let rsdt_bytes = board.ram.read(rsdt, 36);
    assert_eq!(&rsdt_bytes[..4], b"RSDT");
    assert_eq!(sum(&rsdt_bytes), 0);
    assert!(covered_by(
        &map,
        Range::new(rsdt, rsdt + 36),
        e820_type::RESERVED
    ));
    let block = board.ram.read(RESUME_BLOCK, size_of::<ResumeBlock>());
    let facs = u32::from_le_bytes(block[4..8].try_into().unwrap()) as u64;
    assert_eq!(
        u32::from_le_bytes(block[..4].try_into().unwrap()),
        crate::s3::RESUME_MAGIC
    );
    assert_eq!(facs, rsdt - 64, "the FACS, first in etc/acpi/tables");

    // the BIOS segment: the EBDA in the BDA, the MP table; MTRRs on every CPU
    assert_eq!(
        u16::from_le_bytes(board.ram.read(0x40E, 2).try_into().unwrap()) as u64,
        EBDA.start >> 4
    );
    assert!(covered_by(&map, EBDA, e820_type::RESERVED));
    let fseg = board.ram.read(F_SEGMENT.start, F_SEGMENT.len() as usize);
    let mp = fseg
        .chunks(16)
        .position(|c| c.starts_with(b"_MP_"))
        .expect("an MP floating pointer in the BIOS segment");
    assert_eq!(sum(&fseg[mp * 16..mp * 16 + 16]), 0);
    assert_eq!(&fseg[..2], &[0xFA, 0xF4], "the start-up code on its page");
    assert!(
        board.cpu.msrs.iter().any(|&(msr, _)| msr == 0x2FF),
        "MTRRdefType written: {:x?}",
        board.cpu.msrs
    );
    assert!(board.cpu.started, "the other CPU was woken");

    // PCI: every BAR assigned, without overlaps; q35's MMCONFIG reserved
    crate::pci::tests::assert_no_overlap(&board.devices.borrow().pci);
    if kind == Kind::Q35 {
        assert!(covered_by(
            &map,
            Range::new(MMCONFIG, MMCONFIG + 256 * MIB),
            e820_type::RESERVED
        ));
    }
    let others: String = std::format!("{:x?}", board.devices.borrow().others);
    assert!(!others.is_empty());
}

#[test]
fn end_to_end_bzimage_on_pc() {
    boot_bzimage_on(Kind::Pc);
}

#[test]
fn end_to_end_bzimage_on_q35() {
    boot_bzimage_on(Kind::Q35);
}

#[test]
fn end_to_end_bzimage_on_microvm() {
    boot_bzimage_on(Kind::Microvm);
}

#[test]
fn end_to_end_without_a_kernel_stops_with_its_status() {
    let mut fw_cfg = fw_cfg(Kind::Q35, &[], &[]);
    fw_cfg
        .items
        .insert(Item::KernelSize as u16, 0u32.to_le_bytes().to_vec());
    let mut board = board(Kind::Q35, fw_cfg);
    let mut storage = std::boxed::Box::new(Storage::new());
    assert_eq!(boot(&mut board, &mut storage), Err(Error::NoKernel));
    assert_eq!(board.steps, [Step::FwCfg, Step::MemoryMap, Step::Hardware]);
}
