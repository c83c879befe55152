//! The legacy devices a PC BIOS leaves initialised, the same on pc and q35:
//! the interrupt controllers (8259 PIC pair), the RTC and the keyboard
//! controller (i8042), with SeaBIOS's values; and the 8254 timer's channel 0,
//! which ferrite leaves idle (see [`PIT_IDLE`]).

use crate::io::PortIo;

const PIC1_CMD: u16 = 0x20;
pub(super) const PIC1_DATA: u16 = 0x21;
const PIC2_CMD: u16 = 0xA0;
pub(super) const PIC2_DATA: u16 = 0xA1;

/// The 8259 pair as a BIOS leaves it: vectors 0x08 and 0x70, cascaded on IRQ 2,
/// everything but the cascade masked (SeaBIOS's pic_reset). Port, value.
pub const PIC_INIT: [(u16, u8); 10] = [
    (PIC1_CMD, 0x11), // ICW1: edge, cascade, ICW4 follows
    (PIC2_CMD, 0x11),
    (PIC1_DATA, 0x08), // ICW2: vector bases
    (PIC2_DATA, 0x70),
    (PIC1_DATA, 0x04), // ICW3: slave on IRQ 2
    (PIC2_DATA, 0x02),
    (PIC1_DATA, 0x01), // ICW4: 8086 mode
    (PIC2_DATA, 0x01),
    (PIC1_DATA, !0x04), // OCW1: mask all but the cascade
    (PIC2_DATA, 0xFF),
];

/// Masks every line of both 8259s: the PVH entry expects no legacy interrupt
/// (an unmasked timer can reach a kernel that has no IDT yet).
pub fn mask_pics(io: &mut impl PortIo) {
    io.outb(PIC1_DATA, 0xFF);
    io.outb(PIC2_DATA, 0xFF);
}

pub const CMOS_INDEX: u16 = 0x70;
pub const CMOS_DATA: u16 = 0x71;
const RTC_STATUS_A: u8 = 0x0A;
const RTC_STATUS_B: u8 = 0x0B;
const RTC_STATUS_C: u8 = 0x0C;
const RTC_STATUS_D: u8 = 0x0D;
const RTC_B_DSE: u8 = 0x01;
const RTC_B_24HR: u8 = 0x02;

/// One step of the legacy devices' set-up: a byte read from `port`, kept as
/// the last value read, or a byte written to it: the last value read masked
/// with `keep`, then `set` (with `keep` 0, the constant `set`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PortStep {
    port: u16,
    read: bool,
    keep: u8,
    set: u8,
}

const fn write(port: u16, value: u8) -> PortStep {
    modify(port, 0, value)
}

const fn modify(port: u16, keep: u8, set: u8) -> PortStep {
    PortStep {
        port,
        read: false,
        keep,
        set,
    }
}

const fn read(port: u16) -> PortStep {
    PortStep {
        port,
        read: true,
        keep: 0,
        set: 0,
    }
}

/// The RTC as SeaBIOS's rtc_setup leaves it: 32.768 kHz time base with 976 us
/// periodic rate, 24-hour mode without daylight saving (register B read,
/// changed, written back), pending flags cleared (C and D read).
const RTC_INIT: [PortStep; 10] = [
    write(CMOS_INDEX, RTC_STATUS_A),
    write(CMOS_DATA, 0x26),
    write(CMOS_INDEX, RTC_STATUS_B),
    read(CMOS_DATA),
    write(CMOS_INDEX, RTC_STATUS_B),
    modify(CMOS_DATA, !RTC_B_DSE, RTC_B_24HR),
    write(CMOS_INDEX, RTC_STATUS_C),
    read(CMOS_DATA),
    write(CMOS_INDEX, RTC_STATUS_D),
    read(CMOS_DATA),
];

pub(super) const PIT_CHANNEL0: u16 = 0x40;
pub(super) const PIT_MODE: u16 = 0x43;
/// Channel 0, low byte then high byte, mode 0 (interrupt on terminal count),
/// binary.
pub(super) const PIT_CH0_MODE0: u8 = 0x30;

/// The 8254's channel 0 stopped: mode 0 with a count of 1, which runs out
/// within a microsecond and then leaves the output high with no further
/// edge. QEMU starts the channel as a BIOS would leave it, a square wave at
/// 18.2 Hz on IRQ 0, and SeaBIOS keeps it for its clock; ferrite has no
/// clock and Linux programs the channel before it uses it.
///
/// Why it matters, measured under TCG (QEMU 7.2): QEMU's 8259 model updates
/// its output at every input edge, masked or not, and with the local APIC's
/// LINT0 in ExtINT mode (virtual wire, SeaBIOS's set-up that ferrite keeps:
/// `boot::cpus`) each such update, made by QEMU's main thread, kicks the
/// vCPU out of its execution loop. The first kick after the firmware's
/// memory-map rebuilds ends QEMU's RCU grace period, and its thread then
/// frees the old maps holding the global lock, which stalls the vCPU's port
/// accesses. A PVH kernel calibrates its TSC against the PIT within
/// milliseconds of its entry, and a stall there fails the fast calibration:
/// on q35 with the small kernel's vmlinux, half of ferrite's boots (60 of
/// 120; qboot's 4 of 120) fell back to the slow one, about 100 ms longer.
/// Idle, the channel kicks nobody, and the maps are freed at the kernel's
/// first 8259 access, after its calibration, as under qboot: since, 2 of 60
/// such boots failed the fast calibration (qboot's 4 of 60). Three port
/// writes, in the loop that runs the rest of this list.
const PIT_IDLE: [PortStep; 3] = [
    write(PIT_MODE, PIT_CH0_MODE0),
    write(PIT_CHANNEL0, 1),
    write(PIT_CHANNEL0, 0),
];

/// The 8259 pair ([`PIC_INIT`]), the RTC, then the PIT idle: one list of
/// port accesses, run by one loop (under TCG, the loop is translated once
/// where each access written out was instructions of its own).
const LEGACY_INIT: [PortStep; PIC_INIT.len() + RTC_INIT.len() + PIT_IDLE.len()] = {
    let mut steps = [read(0); PIC_INIT.len() + RTC_INIT.len() + PIT_IDLE.len()];
    let mut i = 0;
    while i < PIC_INIT.len() {
        steps[i] = write(PIC_INIT[i].0, PIC_INIT[i].1);
        i += 1;
    }
    let mut j = 0;
    while j < RTC_INIT.len() {
        steps[i] = RTC_INIT[j];
        (i, j) = (i + 1, j + 1);
    }
    j = 0;
    while j < PIT_IDLE.len() {
        steps[i] = PIT_IDLE[j];
        (i, j) = (i + 1, j + 1);
    }
    steps
};

/// The PICs and the RTC as SeaBIOS leaves them, and the PIT's channel 0
/// idle (`LEGACY_INIT`, in order).
pub fn init_pic_rtc_and_pit(io: &mut impl PortIo) {
    let mut last = 0u8;
    // By reference: iterating the array by value copies it first.
    for step in &LEGACY_INIT {
        let step = *crate::mem::block_boundary_ref(step);
        if step.read {
            last = io.inb(step.port);
        } else {
            io.outb(step.port, last & step.keep | step.set);
        }
    }
}

pub(super) const I8042_DATA: u16 = 0x60;
pub(super) const I8042_STATUS: u16 = 0x64;
const I8042_STATUS_INPUT_FULL: u8 = 0x02;
const I8042_CMD_WRITE_CTR: u8 = 0x60;
/// Keyboard interrupt on, mouse port off, scan codes translated to set 1: the
/// controller byte SeaBIOS's ps2port.c leaves. Linux then finds an "AT Translated
/// Set 2 keyboard", as it does after any PC BIOS.
pub const I8042_CTR: u8 = 0x01 | 0x20 | 0x40;

/// Puts the i8042 in translated mode. Returns false if the controller never
/// accepts a byte (no i8042: nothing is written).
pub fn init_i8042(io: &mut impl PortIo) -> bool {
    if io.inb(I8042_STATUS) == 0xFF {
        return false;
    }
    i8042_write(io, I8042_STATUS, I8042_CMD_WRITE_CTR) && i8042_write(io, I8042_DATA, I8042_CTR)
}

fn i8042_write(io: &mut impl PortIo, port: u16, value: u8) -> bool {
    // QEMU's controller empties its input buffer at once; real ones within ms.
    for _ in 0..10_000 {
        if io.inb(I8042_STATUS) & I8042_STATUS_INPUT_FULL == 0 {
            io.outb(port, value);
            return true;
        }
    }
    false
}
