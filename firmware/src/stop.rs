//! The end of a boot that cannot go on: after the error line, the status on
//! port 0xf4, then what `opt/ferrite/on-error` asks for (`ferrite::on_error`):
//! power off (the default), reset, or halt.

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

use ferrite::chipset::{self, Machine};
use ferrite::error::{Error, STATUS_PORT};
use ferrite::fwcfg::{File, FwCfg};
use ferrite::io::PortIo;
use ferrite::on_error::{self, OnError};
use x86_64::VirtAddr;
use x86_64::structures::DescriptorTablePointer;

use crate::pio::Pio;

/// The policy; the default until fw_cfg says otherwise (an error before
/// fw_cfg is read ends with the default).
static POLICY: AtomicU8 = AtomicU8::new(OnError::DEFAULT as u8);

/// Reads `opt/ferrite/on-error` (`file`, found by the caller). A value that is
/// not exactly a policy gets one warning line, shown at any log level, and
/// the default stays.
pub fn read_policy(fw_cfg: &mut FwCfg<Pio>, file: File) -> Result<(), Error> {
    let mut buf = [MaybeUninit::uninit(); 16];
    let text = fw_cfg.read_prefix(file, &mut buf)?;
    let policy = (file.size as usize <= text.len())
        .then(|| OnError::parse(text))
        .flatten();
    match policy {
        Some(p) => POLICY.store(p as u8, Ordering::Relaxed),
        None => {
            let level = log::max_level();
            log::set_max_level(level.max(log::LevelFilter::Warn));
            log::warn!(
                "{} is not poweroff, reboot or halt; using poweroff",
                core::str::from_utf8(on_error::FILE).unwrap_or("")
            );
            log::set_max_level(level);
        }
    }
    Ok(())
}

/// Writes `status` to the debug-exit port, then powers off, resets or halts.
pub fn stop(status: u8) -> ! {
    // SAFETY: the boot path is over; this is the last thing ferrite does.
    let mut io = unsafe { Pio::new() };
    io.outb(STATUS_PORT, status);
    let machine = chipset::identify(&mut io);
    match OnError::from_u8(POLICY.load(Ordering::Relaxed)) {
        OnError::PowerOff => power_off(&mut io, machine),
        OnError::Reboot => reboot(&mut io, machine),
        OnError::Halt => {}
    }
    halt()
}

/// ACPI power-off where the machine has it; QEMU ends during the write. On a
/// machine without a power-off device this returns and ferrite halts.
fn power_off(io: &mut Pio, machine: Machine) {
    if on_error::acpi_power_off(io, machine) {
        return;
    }
    if machine == Machine::NoPci {
        // microvm: its GED's sleep register; with acpi=off nothing is there
        // and the write is dropped.
        mmio_write8(on_error::GED_SLEEP_CTL, on_error::GED_SLEEP_S5);
    } else {
        log::warn!("no ACPI power-off on this machine (acpi=off?); halting");
    }
}

/// A reset through the chipset (0xCF9) or microvm's GED, and a triple fault
/// in case neither is there: QEMU resets the machine, or exits under
/// `-no-reboot`.
fn reboot(io: &mut Pio, machine: Machine) -> ! {
    if !on_error::reset_control(io, machine) && machine == Machine::NoPci {
        mmio_write8(on_error::GED_RESET, on_error::GED_RESET_VALUE);
    }
    let empty = DescriptorTablePointer {
        limit: 0,
        base: VirtAddr::zero(),
    };
    // SAFETY: an empty IDT makes the breakpoint below a triple fault, which
    // is the point: nothing of ferrite runs after it.
    unsafe { x86_64::instructions::tables::lidt(&empty) };
    x86_64::instructions::interrupts::int3();
    halt()
}

fn mmio_write8(addr: u64, value: u8) {
    // SAFETY: a device register below 4 GiB (identity-mapped), written only on
    // microvm, where nothing else lives at that address; ferrite is stopping.
    unsafe { core::ptr::write_volatile(addr as *mut u8, value) };
}

fn halt() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
