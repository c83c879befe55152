//! The legacy devices a PC BIOS leaves initialised, the same on pc and q35:
//! the interrupt controllers (8259 PIC pair), the RTC and the keyboard
//! controller (i8042). Values follow SeaBIOS.

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

pub fn init_pic(io: &mut impl PortIo) {
    // By reference: iterating the array by value copies it first.
    for write in &PIC_INIT {
        let &(port, value) = crate::mem::block_boundary_ref(write);
        io.outb(port, value);
    }
}

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

/// The RTC as SeaBIOS's rtc_setup leaves it: 32.768 kHz time base with 976 us
/// periodic rate, 24-hour mode without daylight saving, pending flags cleared.
pub fn init_rtc(io: &mut impl PortIo) {
    io.outb(CMOS_INDEX, RTC_STATUS_A);
    io.outb(CMOS_DATA, 0x26);
    io.outb(CMOS_INDEX, RTC_STATUS_B);
    let b = io.inb(CMOS_DATA);
    io.outb(CMOS_INDEX, RTC_STATUS_B);
    io.outb(CMOS_DATA, (b & !RTC_B_DSE) | RTC_B_24HR);
    io.outb(CMOS_INDEX, RTC_STATUS_C);
    io.inb(CMOS_DATA);
    io.outb(CMOS_INDEX, RTC_STATUS_D);
    io.inb(CMOS_DATA);
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
