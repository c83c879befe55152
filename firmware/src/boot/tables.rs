//! Running QEMU's ACPI table-loader script against fw_cfg and the high zone.

use alloc::vec::Vec;
use core::mem::MaybeUninit;

use crate::acpi::{self, LoaderEnv, LoaderError, Outcome, Zone};
use crate::board::GuestMemory;
use crate::error::Error;
use crate::fwcfg::{File, FwCfg};
use crate::heap;
use crate::io::PortIo;
use crate::mem::HighZone;

use super::bios::BiosArea;

/// Scripts are a few KiB (QEMU emits a few dozen 128-byte commands): read
/// on the stack up to this, into the heap beyond.
const INLINE_SCRIPT: usize = 16 * 1024;

struct Env<'a, IO: PortIo, M: GuestMemory> {
    fw_cfg: &'a mut FwCfg<IO>,
    mem: &'a mut M,
    zone: &'a mut HighZone,
    bios: Option<&'a mut BiosArea>,
}

impl<IO: PortIo, M: GuestMemory> LoaderEnv for Env<'_, IO, M> {
    type File = File;

    fn file(&mut self, name: &acpi::Name) -> Option<(File, u32)> {
        self.fw_cfg.find_padded(name.padded()).map(|f| (f, f.size))
    }

    fn allocate(&mut self, size: u32, align: u32, zone: Zone) -> Option<u64> {
        // The RSDP goes to the BIOS segment, where guests scan for it, when the
        // machine has one; the zero page points at it either way.
        // One test: the BIOS segment if asked for and there is one.
        let fseg = zone == Zone::FSeg;
        match self.bios.as_deref_mut().filter(|_| fseg) {
            Some(bios) => bios.alloc(size as u64, align as u64),
            None => self.zone.alloc(size as u64, align as u64),
        }
    }

    fn read_file(&mut self, file: File, addr: u64, len: u32) -> Result<(), LoaderError> {
        // `addr` comes from `allocate`: high-zone RAM below 4 GiB or the open
        // BIOS segment, that nothing else uses.
        self.fw_cfg
            .read_to_guest(self.mem, file.select, addr, len)
            .map_err(|_| LoaderError::Transfer)
    }

    fn memory(&mut self, addr: u64, len: u32) -> &mut [u8] {
        // As in read_file; the loader only asks for what `allocate` gave it.
        match self.mem.bytes(addr, len as usize) {
            Ok(bytes) => bytes,
            Err(_) => &mut [],
        }
    }

    fn write_file(&mut self, file: File, offset: u32, data: &[u8]) -> Result<(), LoaderError> {
        self.fw_cfg
            .write_file(file.select, offset, data)
            .map_err(|_| LoaderError::Transfer)
    }
}

/// A script larger than [`INLINE_SCRIPT`], read into the heap (and left
/// there: ferrite's heap is given up whole at the handoff).
#[cold]
#[inline(never)]
fn read_large(fw_cfg: &mut FwCfg<impl PortIo>, file: File) -> Result<&'static [u8], Error> {
    let len = file.size as usize;
    let mut buf: Vec<MaybeUninit<u8>> =
        heap::with_capacity(len).map_err(Error::out_of_heap("etc/table-loader"))?;
    buf.resize(len, MaybeUninit::uninit()); // within the capacity: no allocation
    fw_cfg.read_file("etc/table-loader", file, buf.leak())
}

/// What the installed tables give the later steps.
#[derive(Clone, Copy, Default)]
pub struct Installed {
    /// The RSDP's address, if the machine has ACPI.
    pub rsdp: Option<u64>,
    /// Where `etc/acpi/tables` went: QEMU puts the FACS, which the S3
    /// resume path needs, first in it.
    pub tables: Option<u64>,
}

/// Installs QEMU's ACPI tables by running `loader`, QEMU's table-loader
/// script (none: no ACPI); `files` is the loader's scratch.
pub fn install(
    fw_cfg: &mut FwCfg<impl PortIo>,
    loader: Option<File>,
    mem: &mut impl GuestMemory,
    zone: &mut HighZone,
    bios: Option<&mut BiosArea>,
    files: &mut acpi::Files,
) -> Result<Installed, Error> {
    let Some(file) = loader else {
        log::info!("acpi: no etc/table-loader, booting without ACPI tables");
        return Ok(Installed::default());
    };
    let mut buf = [MaybeUninit::<u8>::uninit(); INLINE_SCRIPT];
    let script = if file.size as usize > INLINE_SCRIPT {
        read_large(fw_cfg, file)?
    } else {
        fw_cfg.read_file("etc/table-loader", file, &mut buf)?
    };
    let Outcome {
        rsdp,
        tables,
        skipped,
    } = acpi::run_in(
        script,
        &mut Env {
            fw_cfg,
            mem,
            zone,
            bios,
        },
        files,
    )?;
    if skipped > 0 {
        log::warn!("acpi: {skipped} table-loader commands skipped");
    }
    log::debug!("acpi: RSDP at {:#x}", rsdp.unwrap_or(0));
    Ok(Installed { rsdp, tables })
}
