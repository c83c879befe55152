//! What a failed boot does once its error line is on COM1 and its status on
//! port 0xf4: power the machine off (the default), reset it, or halt.
//!
//! Chosen with `-fw_cfg name=opt/ferrite/on-error,string=poweroff|reboot|halt`.
//! The default is `poweroff`: without a debug-exit device (every real
//! deployment) a VM that cannot boot then ends at once, its orchestrator sees
//! it end, and it gives back its memory and slot; a reboot loop would burn CPU
//! and print the same error again and again, a halt holds the slot until a
//! time-out.
//!
//! The mechanisms, per machine, all as QEMU 7.2 implements them:
//! * pc (PIIX4 PM at 00:01.3) and q35 (ICH9 LPC at 00:1f.0): ACPI PM1a
//!   control, `SLP_EN` with the `SLP_TYP` of QEMU's `\_S5` (0), at PM base +
//!   4. The PM I/O base is programmed here (the same value the PCI set-up
//!   writes), since the error may come before that set-up ran. Reset through
//!   the reset control register at 0xCF9, which both chipsets have.
//! * microvm with ACPI: the hardware-reduced sleep and reset registers of its
//!   generic event device (GED), written from the CPU side (MMIO).
//! * a machine without a power-off device (pc and microvm with `acpi=off`)
//!   halts; without 0xCF9 or the GED, a reset is a triple fault.

use crate::chipset::i440fx::{PIIX4_PM, PIIX4_PM_ID, PIIX4_PMBA, PIIX4_PMREGMISC};
use crate::chipset::q35::{ICH9_ACPI_CNTL, ICH9_ACPI_EN, ICH9_LPC, ICH9_LPC_ID, ICH9_PMBASE};
use crate::chipset::{ACPI_PM_BASE, Machine, intel_id};
use crate::io::PortIo;
use crate::pci;

/// The fw_cfg file that chooses the policy.
pub const FILE: &[u8] = ferrite_contract::fw_cfg::ON_ERROR.as_bytes();

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OnError {
    PowerOff = 0,
    Reboot = 1,
    Halt = 2,
}

impl OnError {
    pub const DEFAULT: OnError = OnError::PowerOff;

    /// The value exactly as documented, with at most one trailing newline
    /// (a `file=` written by `echo`); anything else is not a policy.
    pub fn parse(text: &[u8]) -> Option<OnError> {
        let word = text.strip_suffix(b"\n").unwrap_or(text);
        match word {
            b"poweroff" => Some(OnError::PowerOff),
            b"reboot" => Some(OnError::Reboot),
            b"halt" => Some(OnError::Halt),
            _ => None,
        }
    }

    pub fn from_u8(v: u8) -> OnError {
        match v {
            1 => OnError::Reboot,
            2 => OnError::Halt,
            _ => OnError::PowerOff,
        }
    }
}

/// ACPI PM1a control register, relative to the PM I/O base.
const PM1_CNT: u16 = 0x04;
/// PM1 control: sleep enable, and the sleep type field (bits 12:10).
const SLP_EN: u16 = 1 << 13;
const SLP_TYP_SHIFT: u16 = 10;
/// `SLP_TYP` of `\_S5` in QEMU's DSDT on pc and q35 (hw/i386/acpi-build.c),
/// which QEMU's PM1 control turns into a power-off (hw/acpi/core.c).
const S5_SLP_TYP: u16 = 0;

/// Turns the machine off through its ACPI PM1a control register, after
/// enabling the PM I/O block at [`ACPI_PM_BASE`]. Returns false, having
/// written nothing, when the machine has no such device (microvm, pc with
/// `acpi=off`). QEMU powers off during the port write, so a return of true
/// means the write was ignored.
pub fn acpi_power_off(io: &mut impl PortIo, machine: Machine) -> bool {
    let base = ACPI_PM_BASE as u32 | 1;
    match machine {
        Machine::I440fx if pci::read32(io, PIIX4_PM, 0) == intel_id(PIIX4_PM_ID) => {
            pci::write32(io, PIIX4_PM, PIIX4_PMBA, base);
            pci::write8(io, PIIX4_PM, PIIX4_PMREGMISC, 1);
        }
        Machine::Q35 if pci::read32(io, ICH9_LPC, 0) == intel_id(ICH9_LPC_ID) => {
            pci::write32(io, ICH9_LPC, ICH9_PMBASE, base);
            pci::write8(io, ICH9_LPC, ICH9_ACPI_CNTL, ICH9_ACPI_EN);
        }
        _ => return false,
    }
    io.outw(ACPI_PM_BASE + PM1_CNT, SLP_EN | S5_SLP_TYP << SLP_TYP_SHIFT);
    true
}

/// PIIX3 / ICH9 reset control register: bit 2 starts the reset, bit 1 makes
/// it a hard one.
const RESET_CONTROL: u16 = 0xCF9;
const RESET_HARD: u8 = 0x02;
const RESET_NOW: u8 = 0x04;

/// Resets the machine through 0xCF9 on pc and q35. Returns false, having
/// written nothing, on machines without it.
pub fn reset_control(io: &mut impl PortIo, machine: Machine) -> bool {
    if machine == Machine::NoPci {
        return false;
    }
    io.outb(RESET_CONTROL, RESET_HARD);
    io.outb(RESET_CONTROL, RESET_HARD | RESET_NOW);
    true
}

/// microvm's generic event device: its registers (hw/i386/microvm.c,
/// `MICROVM_GED_MMIO_BASE_REGS`), each one byte wide.
pub const MICROVM_GED_REGS: u64 = 0xFEA0_0200;
/// Sleep control: `SLP_EN` (bit 5) with `SLP_TYP` 5 (bits 4:2) powers off.
pub const GED_SLEEP_CTL: u64 = MICROVM_GED_REGS;
pub const GED_SLEEP_S5: u8 = 1 << 5 | 5 << 2;
/// Reset register and the value that resets.
pub const GED_RESET: u64 = MICROVM_GED_REGS + 2;
pub const GED_RESET_VALUE: u8 = 0x42;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::Bdf;
    use std::vec::Vec;

    #[test]
    fn only_the_exact_words_are_policies() {
        assert_eq!(OnError::parse(b"poweroff"), Some(OnError::PowerOff));
        assert_eq!(OnError::parse(b"reboot"), Some(OnError::Reboot));
        assert_eq!(OnError::parse(b"halt"), Some(OnError::Halt));
        assert_eq!(OnError::parse(b"halt\n"), Some(OnError::Halt));
        for bad in [
            &b""[..],
            b"\n",
            b"Poweroff",
            b"power-off",
            b"poweroff ",
            b" halt",
            b"halt\n\n",
            b"halt\0",
            b"rebooot",
            b"reboo",
            b"shutdown",
            b"halt\nreboot",
            &[0xFF; 16],
        ] {
            assert_eq!(OnError::parse(bad), None, "{bad:?}");
        }
        assert_eq!(OnError::DEFAULT, OnError::PowerOff);
        for p in [OnError::PowerOff, OnError::Reboot, OnError::Halt] {
            assert_eq!(OnError::from_u8(p as u8), p);
        }
    }

    /// The configuration space of one chipset function and the port writes.
    struct Chipset {
        function: Bdf,
        id: u32,
        config: [u8; 256],
        address: u32,
        writes: Vec<(u16, u32)>,
    }

    impl Chipset {
        fn new(function: Bdf, id: u32) -> Chipset {
            Chipset {
                function,
                id,
                config: [0; 256],
                address: 0,
                writes: Vec::new(),
            }
        }
        fn selected(&self) -> Option<usize> {
            let f = self.function;
            let want = 0x8000_0000 | (f.0 as u32) << 16 | (f.1 as u32) << 11 | (f.2 as u32) << 8;
            (self.address & !0xFF == want).then_some((self.address & 0xFC) as usize)
        }
        fn config_write(&mut self, port: u16, bytes: &[u8]) {
            if let Some(reg) = self.selected() {
                let at = reg + (port - 0xCFC) as usize;
                self.config[at..at + bytes.len()].copy_from_slice(bytes);
            }
        }
    }

    impl PortIo for &mut Chipset {
        fn inb(&mut self, _port: u16) -> u8 {
            0xFF
        }
        fn inw(&mut self, _port: u16) -> u16 {
            0xFFFF
        }
        fn inl(&mut self, port: u16) -> u32 {
            match (port, self.selected()) {
                (0xCFC, Some(0)) => self.id,
                (0xCFC, Some(r)) => u32::from_le_bytes(self.config[r..r + 4].try_into().unwrap()),
                _ => 0xFFFF_FFFF,
            }
        }
        fn outb(&mut self, port: u16, value: u8) {
            match port {
                0xCFC..=0xCFF => self.config_write(port, &[value]),
                _ => self.writes.push((port, value as u32)),
            }
        }
        fn outw(&mut self, port: u16, value: u16) {
            match port {
                0xCFC..=0xCFF => self.config_write(port, &value.to_le_bytes()),
                _ => self.writes.push((port, value as u32)),
            }
        }
        fn outl(&mut self, port: u16, value: u32) {
            match port {
                0xCF8 => self.address = value,
                0xCFC => self.config_write(port, &value.to_le_bytes()),
                _ => self.writes.push((port, value)),
            }
        }
        fn read_bytes(&mut self, _port: u16, buf: &mut [u8]) {
            buf.fill(0xFF);
        }
    }

    #[test]
    fn power_off_enables_the_pm_block_then_sets_slp_en() {
        let mut pc = Chipset::new(PIIX4_PM, intel_id(PIIX4_PM_ID));
        assert!(acpi_power_off(&mut &mut pc, Machine::I440fx));
        assert_eq!(&pc.config[0x40..0x44], &[0x01, 0x06, 0, 0]);
        assert_eq!(pc.config[0x80], 1);
        assert_eq!(pc.writes, [(0x604, 0x2000)]);

        let mut q35 = Chipset::new(ICH9_LPC, intel_id(ICH9_LPC_ID));
        assert!(acpi_power_off(&mut &mut q35, Machine::Q35));
        assert_eq!(&q35.config[0x40..0x44], &[0x01, 0x06, 0, 0]);
        assert_eq!(q35.config[0x44], 0x80);
        assert_eq!(q35.writes, [(0x604, 0x2000)]);
    }

    #[test]
    fn no_pm_device_means_no_power_off_and_no_writes() {
        // pc with acpi=off: no PIIX4 PM function
        let mut pc = Chipset::new(Bdf(0, 2, 0), 0x1111_1234);
        assert!(!acpi_power_off(&mut &mut pc, Machine::I440fx));
        assert!(pc.writes.is_empty());
        // the other chipset's function where this one's should be
        let mut odd = Chipset::new(ICH9_LPC, intel_id(PIIX4_PM_ID));
        assert!(!acpi_power_off(&mut &mut odd, Machine::Q35));
        assert!(odd.writes.is_empty() && odd.config == [0; 256]);
        let mut microvm = Chipset::new(PIIX4_PM, intel_id(PIIX4_PM_ID));
        assert!(!acpi_power_off(&mut &mut microvm, Machine::NoPci));
        assert!(microvm.writes.is_empty());
    }

    #[test]
    fn reset_goes_through_0xcf9_only_where_it_exists() {
        for machine in [Machine::I440fx, Machine::Q35] {
            let mut c = Chipset::new(PIIX4_PM, 0);
            assert!(reset_control(&mut &mut c, machine));
            assert_eq!(c.writes, [(0xCF9, 0x02), (0xCF9, 0x06)]);
        }
        let mut c = Chipset::new(PIIX4_PM, 0);
        assert!(!reset_control(&mut &mut c, Machine::NoPci));
        assert!(c.writes.is_empty());
    }
}
