//! Identity paging, but for ferrite's own code.
//!
//! The low 4 GiB are identity-mapped with 2 MiB pages by tables that are built at
//! compile time and used in place from the ROM: no start-up loop fills them and
//! nothing clears them. Their Accessed and Dirty bits are preset, so the CPU never
//! needs to write them. Memory above 4 GiB (a kernel or initrd placed there) gets
//! RAM tables on demand.
//!
//! The first 2 MiB are mapped with 4 KiB pages, so that one window of them,
//! [`CODE_WINDOW`] bytes from the start of [`FIRMWARE_RAM`] where `.text` and
//! `.rodata` are linked, can be the copy of those sections in the ROM: ferrite
//! runs its code in place, and the start-up copies only `.data` to RAM. Under
//! TCG the copy was some 10,000 iterations of a `rep movsq`, about 0.37 M of
//! QEMU's host instructions per boot. The RAM behind the window is ferrite's
//! own ([`FIRMWARE_RAM`]): nothing else is put there before the kernel runs.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;

use ferrite::error::Error;
use ferrite::mem::{FIRMWARE_RAM, Range};
use x86_64::PhysAddr;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::{PageTableFlags as Flags, PhysFrame};

use crate::entry::{ROM_BASE, parse};

const ENTRIES: usize = 512;
const FOUR_KIB: u64 = 4 << 10;
const TWO_MIB: u64 = 2 << 20;
const ONE_GIB: u64 = 1 << 30;
pub const FOUR_GIB: u64 = 4 << 30;

/// The bytes of addresses from [`FIRMWARE_RAM`]'s start that the ROM's copy
/// of `.text` and `.rodata` backs (firmware/build.rs; linker.ld checks that
/// they fit).
pub const CODE_WINDOW: u64 = parse(env!("FERRITE_CODE_WINDOW"));
const _: () = assert!(CODE_WINDOW.is_multiple_of(FOUR_KIB));
const _: () = assert!(FIRMWARE_RAM.start.is_multiple_of(FOUR_KIB));
const _: () = assert!(FIRMWARE_RAM.start + CODE_WINDOW <= FIRMWARE_RAM.end);

#[repr(C, align(4096))]
pub struct RomTables {
    pml4: [u64; ENTRIES],    // +0x0000
    pdpt: [u64; ENTRIES],    // +0x1000
    pd: [[u64; ENTRIES]; 4], // +0x2000: a page directory per GiB
    pt: [u64; ENTRIES],      // +0x6000: the first 2 MiB
}
const _: () = assert!(core::mem::size_of::<RomTables>() == 0x7000);
const _: () = assert!(core::mem::offset_of!(RomTables, pt) == 0x6000);

/// Where the ROM tables are: the start of the ROM (asserted in linker.ld).
const ROM_TABLES: u64 = ROM_BASE;
/// Where `.text` starts in the ROM: right after the tables (linker.ld).
const ROM_CODE: u64 = ROM_TABLES + core::mem::size_of::<RomTables>() as u64;
const TABLE: u64 = Flags::PRESENT.bits() | Flags::WRITABLE.bits() | Flags::ACCESSED.bits();
const PAGE_4K: u64 = TABLE | Flags::DIRTY.bits();
const PAGE_2M: u64 = PAGE_4K | Flags::HUGE_PAGE.bits();
/// The code window's pages: read-only, as the ROM behind them is.
const PAGE_CODE: u64 = PAGE_4K & !Flags::WRITABLE.bits();

/// The physical page behind address `page` of the first 2 MiB.
const fn low_page(page: u64) -> u64 {
    let window = page.wrapping_sub(FIRMWARE_RAM.start);
    if window < CODE_WINDOW {
        (ROM_CODE + window) | PAGE_CODE
    } else {
        page | PAGE_4K
    }
}

const fn rom_tables(base: u64) -> RomTables {
    let mut t = RomTables {
        pml4: [0; ENTRIES],
        pdpt: [0; ENTRIES],
        pd: [[0; ENTRIES]; 4],
        pt: [0; ENTRIES],
    };
    t.pml4[0] = (base + 0x1000) | TABLE;
    let mut g = 0;
    while g < 4 {
        t.pdpt[g] = (base + 0x2000 + 0x1000 * g as u64) | TABLE;
        let mut i = 0;
        while i < ENTRIES {
            t.pd[g][i] = (g as u64 * ONE_GIB + i as u64 * TWO_MIB) | PAGE_2M;
            i += 1;
        }
        g += 1;
    }
    t.pd[0][0] = (base + 0x6000) | TABLE;
    let mut i = 0;
    while i < ENTRIES {
        t.pt[i] = low_page(i as u64 * FOUR_KIB);
        i += 1;
    }
    t
}

/// The tables boot.s loads into CR3. Never referenced from Rust code (it sits
/// 4 GiB away from it); `ROM_TABLES` is its address.
#[unsafe(link_section = ".rom.pagetables")]
#[used]
#[unsafe(no_mangle)]
pub static ROM_PAGE_TABLES: RomTables = rom_tables(ROM_TABLES);

/// Page directories available for memory above 4 GiB: 8 of them map 8 GiB.
const HIGH_PDS: usize = 8;

#[repr(C, align(4096))]
struct HighTables {
    pml4: [u64; ENTRIES],
    pdpt: [u64; ENTRIES],
    pd: [[u64; ENTRIES]; HIGH_PDS],
}

struct Tables(UnsafeCell<MaybeUninit<HighTables>>);
// SAFETY: the firmware runs on one CPU with interrupts off; `map` is the only user.
unsafe impl Sync for Tables {}

#[unsafe(link_section = ".noinit")]
static HIGH: Tables = Tables(UnsafeCell::new(MaybeUninit::uninit()));
static HIGH_STATE: spin::Mutex<Option<usize>> = spin::Mutex::new(None);

/// Makes sure `range` is identity-mapped (the low 4 GiB always are).
pub fn identity_map(range: Range) -> Result<(), Error> {
    if range.end <= FOUR_GIB || range.is_empty() {
        return Ok(());
    }
    if range.end > 512 * ONE_GIB {
        return Err(Error::OutOfFirmwareMemory("page tables above 512 GiB"));
    }
    let mut used = HIGH_STATE.lock();
    // SAFETY: HIGH is only accessed here, under HIGH_STATE's lock.
    let t = unsafe { &mut *HIGH.0.get() };
    let t = match *used {
        Some(_) => {
            // SAFETY: initialised below on first use.
            unsafe { t.assume_init_mut() }
        }
        None => {
            // SAFETY: all-zero is a valid HighTables; clearing in place avoids a
            // 40 KiB temporary on the stack.
            let t = unsafe {
                t.as_mut_ptr().write_bytes(0, 1);
                t.assume_init_mut()
            };
            // Copy the low 4 GiB from the ROM tables, then switch to the RAM copy.
            // SAFETY: the ROM tables are readable at their physical address.
            let rom = unsafe { &*(ROM_TABLES as *const RomTables) };
            t.pdpt[..4].copy_from_slice(&rom.pdpt[..4]);
            t.pml4[0] = t.pdpt.as_ptr() as u64 | TABLE;
            let frame = PhysFrame::containing_address(PhysAddr::new(t.pml4.as_ptr() as u64));
            let (_, flags) = Cr3::read();
            // SAFETY: the new tables map the low 4 GiB exactly as the old ones did.
            unsafe { Cr3::write(frame, flags) };
            *used = Some(0);
            t
        }
    };
    let mut addr = range.start.max(FOUR_GIB) & !(TWO_MIB - 1);
    while addr < range.end {
        let gib = (addr / ONE_GIB) as usize;
        if t.pdpt[gib] == 0 {
            let n = used.unwrap();
            if n == HIGH_PDS {
                return Err(Error::OutOfFirmwareMemory("page tables above 4 GiB"));
            }
            t.pdpt[gib] = t.pd[n].as_ptr() as u64 | TABLE;
            *used = Some(n + 1);
        }
        let pd = (t.pdpt[gib] & !0xFFF) as *mut u64;
        let i = ((addr % ONE_GIB) / TWO_MIB) as usize;
        // SAFETY: `pd` is one of HIGH's page directories, `i` < 512.
        unsafe { pd.add(i).write(addr | PAGE_2M) };
        addr += TWO_MIB;
    }
    x86_64::instructions::tlb::flush_all();
    Ok(())
}
