//! The PC around the CPU, left as SeaBIOS leaves it on pc (i440FX) and q35
//! (ICH9), without SeaBIOS's device probing: PCI, the BIOS segment and its
//! tables (RSDP, SMBIOS, MP table), the MTRRs on every CPU, and the legacy
//! devices. microvm has none of this hardware and pays for none of it.

use core::mem::MaybeUninit;

use crate::board::{Board, Cpu, GuestMemory};
use crate::chipset::{self, Machine, Q35_MMCONFIG};
use crate::e820::MemoryMap;
use crate::error::Error;
use crate::fwcfg::{FILE_NAME_LEN, FwCfg, file_key};
use crate::io::PortIo;
use crate::mem::{HighZone, Reservations};
use crate::pci::{Pci, Platform};
use crate::{mptable, smbios};

use super::bios::{BiosArea, EBDA, F_SEGMENT, MP_POINTER};
use super::cpus::{self, Cpus};

/// fw_cfg items: CPUs started, and possible (QEMU's FW_CFG_NB_CPUS, FW_CFG_MAX_CPUS).
const FW_CFG_NB_CPUS: u16 = 0x05;
const FW_CFG_MAX_CPUS: u16 = 0x0F;

pub struct Pc {
    pub machine: Machine,
    bios: Option<BiosArea>,
    /// The other CPUs, woken when there is a BIOS segment (their start-up
    /// page); none counted without. Not an `Option` beside `bios`: one
    /// test in `finish` rather than two (translation blocks under TCG).
    cpus: Cpus,
}

impl Pc {
    /// The BIOS segment opened, PCI (before QEMU builds the ACPI tables,
    /// which describe what the firmware programmed), the legacy devices, and
    /// the MTRRs written here and sent to the other CPUs. The chipset's
    /// ranges (MMCONFIG, RCBA, the EBDA) go to `reserved`. `qemu_acpi`: QEMU
    /// gives ACPI tables (its table-loader script), which decides the PM base.
    pub fn setup<B: Board>(
        board: &mut B,
        fw_cfg: &mut FwCfg<B::Io>,
        memory: &MemoryMap,
        pci: &mut Pci,
        machine: Machine,
        qemu_acpi: bool,
        reserved: &mut Reservations,
    ) -> Result<Pc, Error> {
        let mut io = board.io();
        let io = &mut io;
        if machine == Machine::NoPci {
            return Ok(Pc {
                machine,
                bios: None,
                cpus: Cpus { count: 0 },
            });
        }
        let platform = Platform {
            host: machine,
            low_ram_end: memory.low_ram_top()?,
            high_ram_end: memory.high_ram_end(),
            reserved_memory_end: read_int(fw_cfg, &const { file_key(b"etc/reserved-memory-end") })?,
            pm_base: chipset::pm_base(qemu_acpi),
            mmconfig: Q35_MMCONFIG,
        };
        // The BIOS segment opened first, as SeaBIOS makes it writable
        // before its PCI set-up: each PAM write makes QEMU rebuild its
        // memory map, and a rebuild costs more once BARs are mapped and a
        // function masters the bus (q35: 0.55 M host instructions a boot
        // under TCG, pc: 0.17 M).
        let bios = BiosArea::open(io, fw_cfg, board.memory(), machine)?;
        if bios.is_some() {
            reserved.add(EBDA);
        }
        let layout = pci.setup(io, board.mmio(), &platform)?;
        log::debug!("pci: {layout:x?}");
        for range in layout.reserved.iter().flatten() {
            crate::mem::block_boundary();
            reserved.add(*range);
        }

        chipset::init_pic_rtc_and_pit(io);
        if !chipset::init_i8042(io) {
            log::info!("no i8042 keyboard controller");
        }
        let cpus = match bios {
            Some(_) => {
                let count = (fw_cfg.read_u32(FW_CFG_NB_CPUS) as u16).max(1);
                let feature_control =
                    read_int(fw_cfg, &const { file_key(b"etc/msr_feature_control") }).unwrap_or(0);
                let (cpu, mem) = board.cpu_and_memory();
                cpus::start(cpu, mem, count, layout.mem32_start, feature_control)?
            }
            None => Cpus { count: 0 },
        };
        Ok(Pc {
            machine,
            bios,
            cpus,
        })
    }

    /// The BIOS segment while it is open, for the ACPI table loader's RSDP.
    pub fn bios_area(&mut self) -> Option<&mut BiosArea> {
        self.bios.as_mut()
    }

    /// SMBIOS: QEMU's tables (plus a type 0 record when they have none) in the
    /// high zone, the entry point in the BIOS segment.
    pub fn install_smbios(
        &mut self,
        fw_cfg: &mut FwCfg<impl PortIo>,
        mem: &mut impl GuestMemory,
        zone: &mut HighZone,
    ) -> Result<(), Error> {
        let Some(bios) = self.bios.as_mut() else {
            return Ok(());
        };
        let (Some(anchor), Some(tables)) = (
            fw_cfg.find_padded(&const { file_key(smbios::ANCHOR_FILE) }),
            fw_cfg.find_padded(&const { file_key(smbios::TABLES_FILE) }),
        ) else {
            log::info!("smbios: QEMU provides no tables");
            return Ok(());
        };
        // Longer than any entry point: QEMU's own data is wrong, as below.
        let anchor_len = anchor.size as usize;
        if anchor_len > smbios::MAX_ANCHOR {
            let size = anchor.size;
            log::warn!("smbios: a {size}-byte entry point is no entry point; no SMBIOS");
            return Ok(());
        }
        // A whole array, zeroed: `finish` copies it in a few moves.
        let mut entry = [0u8; smbios::MAX_ANCHOR];
        fw_cfg.read_into(anchor.select, &mut entry[..anchor_len]);
        let len = smbios::TYPE0_ROOM as u64 + tables.size as u64;
        let base = zone
            .alloc(len, 16)
            .ok_or(Error::OutOfFirmwareMemory("SMBIOS tables"))?;
        // `base` is fresh high-zone RAM, ours alone.
        let tail = base + smbios::TYPE0_ROOM as u64;
        fw_cfg.read_to_guest(mem, tables.select, tail, tables.size)?;
        // The transfer filled the tail, the room is ours.
        let blob = mem.bytes(base, len as usize)?;
        match smbios::finish(&entry, anchor_len, blob, base) {
            Ok((done, _)) => {
                // A boot whose guest finds no SMBIOS must not look like one that does.
                let at = bios
                    .place(mem, &done.entry[..done.entry_len])
                    .ok_or(Error::OutOfFirmwareMemory("the SMBIOS entry point"))?;
                log::debug!(
                    "smbios: entry point at {at:x?}, {} bytes of tables",
                    done.tables_len
                );
            }
            // QEMU's own data is wrong: boot without SMBIOS rather than not at all.
            Err(e) => log::warn!("smbios: QEMU's tables are unusable ({e:?}); no SMBIOS"),
        }
        Ok(())
    }

    /// microvm: an MP table, as qboot builds one. Without ACPI (`-M
    /// microvm,acpi=off`) Linux finds neither the other CPUs nor the I/O APIC
    /// otherwise. With ACPI Linux uses the MADT, but it looks for an MP table
    /// first, and without one it scans the whole BIOS segment in 16-byte
    /// steps, mapping and unmapping each (4,224 steps; 13 ms of the kernel's
    /// boot under TCG, 2026-12-02). Its floating pointer goes to the last KiB
    /// of base memory, the second place Linux scans (microvm has no BIOS
    /// segment RAM), the table itself to the zone, so that any CPU count fits.
    /// QEMU numbers microvm's CPUs 0..n. The last KiB goes to `reserved`.
    pub fn microvm_mptable<B: Board>(
        &self,
        board: &mut B,
        fw_cfg: &mut FwCfg<B::Io>,
        zone: &mut HighZone,
        reserved: &mut Reservations,
    ) -> Result<(), Error> {
        if self.machine != Machine::NoPci {
            return Ok(());
        }
        let count = fw_cfg.read_u32(FW_CFG_NB_CPUS).clamp(1, 256) as usize;
        let max_cpus = (fw_cfg.read_u32(FW_CFG_MAX_CPUS) as usize).clamp(count, 256);
        let mut present = [0u64; 4];
        for id in 0..count {
            present[id / 64] |= 1 << (id % 64);
        }
        let (signature, _, features) = cpus::cpuid1(board.cpu());
        let machine = mptable::Machine {
            max_cpus: max_cpus as u16,
            present: &present,
            cpu_signature: signature,
            cpu_features: features,
            apic_version: cpus::lapic_version(board.cpu()),
            package_cpus: 1,
            has_pci: false,
            pci_interrupts: &[],
            irq0_override: fw_cfg.irq0_override(),
        };
        let len = mptable::max_len(max_cpus, 0);
        let at = zone
            .alloc(len as u64, 16)
            .ok_or(Error::OutOfFirmwareMemory("MP table"))?;
        // Fresh high-zone RAM of `len` bytes, ours alone.
        let table = board.memory().bytes(at, len)?;
        let Some(built) = mptable::build_within(&machine, at as u32, table, len) else {
            return Err(Error::OutOfFirmwareMemory("MP table"));
        };
        // The last KiB of base memory is below 640 KiB, above ferrite's RAM
        // image (linker.ld), and reserved in e820 for this.
        board
            .memory()
            .bytes(MP_POINTER, mptable::FLOATING_LEN)?
            .copy_from_slice(&built.pointer);
        reserved.add(EBDA);
        log::debug!("mptable: {count} of {max_cpus} CPUs, table at {at:#x}");
        Ok(())
    }

    /// Waits for the other CPUs, writes the MP table, write-protects the BIOS
    /// segment.
    pub fn finish<B: Board>(
        self,
        board: &mut B,
        fw_cfg: &mut FwCfg<B::Io>,
        pci: &Pci,
    ) -> Result<(), Error> {
        let (Some(mut bios), cpus) = (self.bios, self.cpus) else {
            return Ok(());
        };
        if !cpus.wait(board.cpu()) {
            log::warn!("not every CPU started: their MTRRs may differ from CPU 0's");
        }
        let ints = pci.bus0_interrupts();
        let (signature, ebx, features) = cpus::cpuid1(board.cpu());
        let package_cpus = if features & (1 << 28) != 0 {
            (((ebx >> 16) & 0xFF) as u16).max(1).next_power_of_two()
        } else {
            1
        };
        // The CPUs that checked in, and this one, which ran no trampoline.
        let mut present = board.cpu().present();
        let bsp = (ebx >> 24) as usize;
        present[bsp / 64] |= 1 << (bsp % 64);
        let machine = mptable::Machine {
            max_cpus: (fw_cfg.read_u32(FW_CFG_MAX_CPUS) as u16).max(cpus.count),
            present: &present,
            cpu_signature: signature,
            cpu_features: features,
            apic_version: cpus::lapic_version(board.cpu()),
            package_cpus,
            has_pci: true,
            pci_interrupts: ints,
            irq0_override: fw_cfg.irq0_override(),
        };
        let at = bios
            .alloc(0, 16)
            .ok_or(Error::OutOfFirmwareMemory("the MP table"))?;
        // Built where it stays, in the segment (cleared by `BiosArea::open`):
        // no buffer to clear and copy (a call each under TCG). `alloc` keeps
        // `at` within the segment.
        let room = (F_SEGMENT.end - at) as usize;
        let out = board.memory().bytes(at, room.min(mptable::MAX_TABLE_LEN))?;
        match mptable::build(&machine, at as u32, out) {
            Some(built) => {
                // Within the room `out` had: cannot fail, no test.
                let claimed = bios.alloc(built.len as u64, 16);
                debug_assert_eq!(claimed, Some(at));
                // The floating pointer goes to the EBDA, where Linux finds
                // it sooner than in this segment.
                board
                    .memory()
                    .bytes(MP_POINTER, mptable::FLOATING_LEN)?
                    .copy_from_slice(&built.pointer);
            }
            None => {
                // Nothing of a table that is not made stays in the segment.
                out.fill(0);
                if room < mptable::MAX_TABLE_LEN && table_fits(&machine, at) {
                    return Err(Error::OutOfFirmwareMemory("the MP table"));
                }
                // More CPUs than 600 bytes describe: SeaBIOS leaves the table
                // out too, and the guest uses the ACPI MADT.
                log::info!("mptable: too large for the BIOS segment, none (as SeaBIOS)");
            }
        }
        bios.close(&mut board.io());
        Ok(())
    }
}

/// Whether the table for `m` is within SeaBIOS's limit, for a segment too
/// full to hold it: then the segment, not the table, is too small.
#[cold]
fn table_fits(m: &mptable::Machine, at: u64) -> bool {
    let mut table = [0u8; mptable::MAX_TABLE_LEN];
    mptable::build(m, at as u32, &mut table).is_some()
}

/// A small fw_cfg file holding a little-endian integer (SeaBIOS's
/// romfile_loadint); 0 when absent. Inline, the reading out of line: for
/// the usual absent file, under TCG, no call of its own and no `Result`
/// through memory.
#[inline(always)]
fn read_int(
    fw_cfg: &mut FwCfg<impl PortIo>,
    name: &'static [u8; FILE_NAME_LEN],
) -> Result<u64, Error> {
    match fw_cfg.find_padded(name) {
        None => Ok(0),
        Some(file) => read_int_file(fw_cfg, name, file),
    }
}

#[inline(never)]
fn read_int_file(
    fw_cfg: &mut FwCfg<impl PortIo>,
    name: &'static [u8; FILE_NAME_LEN],
    file: crate::fwcfg::File,
) -> Result<u64, Error> {
    let mut buf = [MaybeUninit::uninit(); 8];
    let len = name.iter().position(|&b| b == 0).unwrap_or(FILE_NAME_LEN);
    let name = core::str::from_utf8(&name[..len]).unwrap_or("an integer file");
    let bytes = fw_cfg.read_file(name, file, &mut buf)?;
    Ok(bytes.iter().rev().fold(0u64, |v, &b| v << 8 | b as u64))
}
