//! The test kernel: entered by ferrite like Linux, it checks everything the boot
//! protocol promises against expectations passed on its command line, prints one
//! line on COM1 and reports through isa-debug-exit on port 0x501:
//! 0x10 pass / 0x11 fail (64-bit entry), 0x12 pass / 0x13 fail (32-bit entry),
//! 0x14 pass / 0x15 fail (PVH entry, when the xtask wraps it as an ELF with a
//! PVH note), 0x16 pass / 0x17 fail (multiboot entry, when the xtask puts a
//! multiboot header in front of it).
//!
//! With `s3.wake=vector` or `s3.wake=none` it then plays a guest waking from S3:
//! it stores a real-mode waking vector in the FACS (or leaves it 0), writes
//! QEMU's "S3 resume" shutdown status to the CMOS and resets the machine. The
//! vector's code reports 0x18 (CS:IP as ACPI prescribes, the ACPI PM timer
//! decoded again) or 0x19; a second entry of the kernel itself passes only for
//! `none`, where the firmware must boot afresh.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, Ordering};

const REPORT_PORT: u16 = 0x501;
const LOAD: u64 = 0x100_0000;

global_asm!(
    r#"
.section .entry32, "ax"
.code32
.globl entry32
entry32:
    mov %cr0, %eax
    test $0x80000000, %eax
    jnz 1f
    mov %cs, %ax
    cmp $0x10, %ax
    jne 1f
    mov %ds, %ax
    cmp $0x18, %ax
    jne 1f
    mov %ss, %ax
    cmp $0x18, %ax
    jne 1f
    cmpl $0x53726448, 0x202(%esi)
    jne 1f
    mov $0x12, %al
    jmp 2f
1:  mov $0x13, %al
2:  mov $0x501, %dx
    out %al, (%dx)
3:  hlt
    jmp 3b

.section .entry64, "ax"
.code64
.globl entry64
entry64:
    mov %rsi, %rdi
    mov %cs, %esi
    mov %ds, %edx
    mov %ss, %ecx
    mov %es, %r8d
    pushf
    pop %r9
    lea stack_top(%rip), %rsp
    call {main}
4:  hlt
    jmp 4b
"#,
    main = sym main64,
    options(att_syntax)
);

// The PVH and multiboot entries: 32-bit protected mode, paging off, EBX =
// hvm_start_info or the multiboot information. Each notes which entry ran;
// the common part records the CPU state as found, builds an identity map of
// the low 4 GiB (2 MiB pages), enters long mode and calls main_flat32.
global_asm!(
    r#"
.section .entrypvh, "ax"
.code32
.globl entry_pvh
entry_pvh:
    movl $1, {state} + 80
    jmp flat32_common

.section .entrymb, "ax"
.code32
.globl entry_mb
entry_mb:
    movl $2, {state} + 80
    jmp flat32_common

.section .text.flat32, "ax"
.code32
flat32_common:
    mov %eax, {state} + 72
    mov %ebx, {state}
    mov %cr0, %eax
    mov %eax, {state} + 8
    mov %cr4, %eax
    mov %eax, {state} + 16
    mov $stack_top, %esp
    pushf
    pop %eax
    mov %eax, {state} + 24
    mov %cs, %eax
    mov %eax, {state} + 32
    mov %ds, %eax
    mov %eax, {state} + 40
    mov %es, %eax
    mov %eax, {state} + 48
    mov %ss, %eax
    mov %eax, {state} + 56
    mov $0xC0000080, %ecx
    rdmsr
    mov %eax, {state} + 64
    mov ${pd} + 3, %eax
    mov %eax, {pdpt}
    add $0x1000, %eax
    mov %eax, {pdpt} + 8
    add $0x1000, %eax
    mov %eax, {pdpt} + 16
    add $0x1000, %eax
    mov %eax, {pdpt} + 24
    mov ${pdpt} + 3, %eax
    mov %eax, {pml4}
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, {pd}(,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jne 1b
    mov ${pml4}, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax
    mov %eax, %cr0
    lgdt flat32_gdt_ptr
    ljmp $0x08, $2f
.code64
2:  mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    lea stack_top(%rip), %rsp
    call {main}
3:  hlt
    jmp 3b

.section .data.flat32_gdt, "aw"
.balign 8
flat32_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF
    .quad 0x00CF93000000FFFF
flat32_gdt_ptr:
    .word flat32_gdt_ptr - flat32_gdt - 1
    .long flat32_gdt
"#,
    state = sym FLAT32_STATE,
    pml4 = sym PVH_PML4,
    pdpt = sym PVH_PDPT,
    pd = sym PVH_PD,
    main = sym main_flat32,
    options(att_syntax)
);

#[repr(C, align(4096))]
struct Table<const N: usize>([u64; N]);

/// What the 32-bit entries found: EBX, CR0, CR4, EFLAGS, CS, DS, ES, SS, EFER
/// (low half), EAX, and which entry ran (1 PVH, 2 multiboot).
#[unsafe(no_mangle)]
static mut FLAT32_STATE: [u64; 11] = [0; 11];
#[unsafe(no_mangle)]
static mut PVH_PML4: Table<512> = Table([0; 512]);
#[unsafe(no_mangle)]
static mut PVH_PDPT: Table<512> = Table([0; 512]);
#[unsafe(no_mangle)]
static mut PVH_PD: Table<2048> = Table([0; 2048]);

fn outb(port: u16, v: u8) {
    // SAFETY: port I/O to COM1 / the debug-exit port of a test VM.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack)) }
}

/// A CMOS byte no firmware or QEMU uses (the S3 test's flag is 0x7E): the boot
/// count of a reboot test, which a machine reset keeps.
const CMOS_BOOT_COUNT: u8 = 0x7D;

struct Serial;
impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            outb(0x3F8, b);
        }
        Ok(())
    }
}

/// The pass value of the entry in use (the fail value is one more).
static PASS: AtomicU8 = AtomicU8::new(0x10);

fn report(pass: bool) -> ! {
    let base = PASS.load(Ordering::Relaxed);
    outb(REPORT_PORT, if pass { base } else { base + 1 });
    loop {
        // SAFETY: halting is always fine here.
        unsafe { asm!("cli; hlt") }
    }
}

macro_rules! fail {
    ($($t:tt)*) => {{
        let _ = write!(Serial, "testkernel: FAIL ");
        let _ = writeln!(Serial, $($t)*);
        report(false)
    }};
}

/// Physical memory (identity-mapped by the firmware).
fn bytes(addr: u64, len: u64) -> &'static [u8] {
    // SAFETY: the firmware promises these ranges are mapped; checks run first.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) }
}
fn rd<const N: usize>(addr: u64) -> [u8; N] {
    bytes(addr, N as u64).try_into().unwrap()
}
fn u8_at(a: u64) -> u8 {
    rd::<1>(a)[0]
}
fn u32_at(a: u64) -> u32 {
    u32::from_le_bytes(rd(a))
}
fn u64_at(a: u64) -> u64 {
    u64::from_le_bytes(rd(a))
}

fn fnv(data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn sum(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn expect<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split(' ')
        .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
}

/// A memory map: the zero page's e820 table (20-byte entries) or a PVH
/// memmap (24-byte entries).
struct E820 {
    base: u64,
    n: u64,
    stride: u64,
}
impl E820 {
    fn entry(&self, i: u64) -> (u64, u64, u32) {
        let e = self.base + self.stride * i;
        (u64_at(e), u64_at(e + 8), u32_at(e + 16))
    }
    /// The type of the entry that wholly contains [start, end), if one does.
    fn type_of(&self, start: u64, end: u64) -> Option<u32> {
        (0..self.n)
            .map(|i| self.entry(i))
            .find(|&(a, s, _)| a <= start && end <= a + s)
            .map(|e| e.2)
    }
}

/// What a kernel is handed, whatever the entry: checked the same way.
struct Handed {
    cmd_ptr: u64,
    /// The command line starts with the kernel's name (multiboot).
    cmd_after_name: bool,
    e820: E820,
    /// The kernel's own range, which must be RAM.
    kernel: (u64, u64),
    initrd: (u64, u64),
    rsdp: u64,
}

/// The command line at `ptr` with its check token verified; with
/// `after_name`, the token covers what follows the first word (multiboot puts
/// the kernel's file name first).
fn cmdline_at(ptr: u64, after_name: bool) -> (&'static str, u64) {
    if ptr == 0 {
        fail!("no command line");
    }
    let mut len = 0;
    while len < 65536 && u8_at(ptr + len) != 0 {
        len += 1;
    }
    let Ok(cmdline) = core::str::from_utf8(bytes(ptr, len)) else {
        fail!("command line is not UTF-8")
    };
    let Some(at) = cmdline.rfind(" check=") else {
        fail!("command line has no check= token: {cmdline}")
    };
    let from = if after_name {
        cmdline.find(' ').map_or(0, |i| i + 1).min(at)
    } else {
        0
    };
    if u64::from_str_radix(&cmdline[at + 7..], 16) != Ok(fnv(&cmdline.as_bytes()[from..at])) {
        fail!("command line corrupted (check token mismatch), {len} bytes");
    }
    (cmdline, len)
}

/// The checks every entry shares: command line, memory map, kernel, initrd,
/// ACPI. Returns the command line and the RAM in the map.
fn check_handed(h: &Handed) -> (&'static str, u64) {
    let (cmdline, len) = cmdline_at(h.cmd_ptr, h.cmd_after_name);
    // Memory map: sorted, disjoint, non-empty entries.
    let e820 = &h.e820;
    if e820.n == 0 || e820.n > 128 {
        fail!("{} e820 entries", e820.n);
    }
    let mut prev_end = 0;
    let mut ram = 0;
    for i in 0..e820.n {
        let (a, s, t) = e820.entry(i);
        if s == 0 || a < prev_end {
            fail!("e820 entry {i} ({a:#x}+{s:#x}) empty, unsorted or overlapping");
        }
        prev_end = a + s;
        if t == 1 {
            ram += s;
        }
    }
    let (kstart, kend) = h.kernel;
    if e820.type_of(kstart, kend) != Some(1) {
        fail!("kernel range {kstart:#x}..{kend:#x} is not RAM in e820");
    }
    if e820.type_of(h.cmd_ptr, h.cmd_ptr + len + 1) != Some(1) {
        fail!("command line not in RAM");
    }
    // Both ends of the kernel's range are mapped and readable.
    let _ = (u8_at(kend - 1), u8_at(kstart));
    if let Some(mib) = expect(cmdline, "expect.mem_mib").and_then(parse_num) {
        let want = mib << 20;
        if ram > want || ram + (4 << 20) < want {
            fail!(
                "e820 RAM {} KiB, expected about {} KiB",
                ram >> 10,
                want >> 10
            );
        }
    }
    // Initrd.
    let (image, size) = h.initrd;
    match expect(cmdline, "expect.initrd_len").and_then(parse_num) {
        Some(want) => {
            if size != want {
                fail!("initrd size {size}, expected {want}");
            }
            if e820.type_of(image, image + size) != Some(1) {
                fail!("initrd {image:#x}+{size:#x} not in RAM");
            }
            let hash =
                expect(cmdline, "expect.initrd_fnv").and_then(|h| u64::from_str_radix(h, 16).ok());
            if hash != Some(fnv(bytes(image, size))) {
                fail!("initrd contents differ ({size} bytes at {image:#x})");
            }
        }
        None if image != 0 || size != 0 => fail!("unexpected initrd {image:#x}+{size:#x}"),
        None => {}
    }
    // The PIT's channel 0 left idle (pc and q35): read-back of its status,
    // latched by itself (0xE2: status only, channel 0), must be mode 0, low
    // and high byte, output high (its count ran out), not QEMU's 18.2 Hz
    // square wave (mode 3).
    if expect(cmdline, "expect.pit_idle") == Some("1") {
        outb(0x43, 0xE2);
        let status = inb(0x40);
        if status & 0xBF != 0xB0 {
            fail!("PIT channel 0 status {status:#x}, want 0xb0 (idle: mode 0, output high)");
        }
    }
    // ACPI.
    let rsdp = h.rsdp;
    if let Some(want) = expect(cmdline, "expect.cpus").and_then(parse_num) {
        if rsdp == 0 {
            fail!("no RSDP address");
        }
        if matches!(e820.type_of(rsdp, rsdp + 20), Some(1) | None) {
            fail!("RSDP at {rsdp:#x} is not in reserved memory");
        }
        match count_cpus(rsdp) {
            Ok(n) if n == want => {}
            Ok(n) => fail!("MADT lists {n} CPUs, expected {want}"),
            Err(e) => fail!("ACPI: {e}"),
        }
    }
    (cmdline, ram)
}

/// Counts enabled CPUs in the MADT reached from the RSDP.
fn count_cpus(rsdp: u64) -> Result<u64, &'static str> {
    if &rd::<8>(rsdp) != b"RSD PTR " || sum(bytes(rsdp, 20)) != 0 {
        return Err("bad RSDP signature or checksum");
    }
    let (root, width) = if u8_at(rsdp + 15) >= 2 && u64_at(rsdp + 24) != 0 {
        if sum(bytes(rsdp, 36)) != 0 {
            return Err("bad RSDP extended checksum");
        }
        (u64_at(rsdp + 24), 8)
    } else {
        (u32_at(rsdp + 16) as u64, 4)
    };
    let len = u32_at(root + 4) as u64;
    if sum(bytes(root, len)) != 0 {
        return Err("bad RSDT/XSDT checksum");
    }
    let mut at = root + 36;
    while at + width <= root + len {
        let table = if width == 8 {
            u64_at(at)
        } else {
            u32_at(at) as u64
        };
        at += width;
        if &rd::<4>(table) != b"APIC" {
            continue;
        }
        let tlen = u32_at(table + 4) as u64;
        if sum(bytes(table, tlen)) != 0 {
            return Err("bad MADT checksum");
        }
        let mut cpus = 0;
        let mut p = table + 44;
        while p + 2 <= table + tlen {
            let (typ, l) = (u8_at(p), u8_at(p + 1) as u64);
            if l < 2 {
                return Err("malformed MADT entry");
            }
            if (typ == 0 && u32_at(p + 4) & 1 != 0) || (typ == 9 && u32_at(p + 8) & 1 != 0) {
                cpus += 1;
            }
            p += l;
        }
        return Ok(cpus);
    }
    Err("no MADT")
}

// The waking vector's code, copied below 1 MiB: real mode, position-independent.
global_asm!(
    r#"
.section .text.s3stub, "ax"
.code16
.globl s3_stub_start
.globl s3_stub_end
s3_stub_start:
    mov %cs, %ax
    cmp ${cs}, %ax
    jne 1f
    call 5f                     # IP: the return address minus its offset
5:  pop %ax
    cmp ${ip} + (5b - s3_stub_start), %ax
    jne 1f
    mov ${pm_timer}, %dx        # the ACPI PM timer reads 0xFFFFFFFF undecoded
    inl %dx, %eax
    cmp $0xFFFFFFFF, %eax
    je 1f
    mov $0x18, %al
    jmp 2f
1:  mov $0x19, %al
2:  mov ${report}, %dx
    out %al, %dx
3:  hlt
    jmp 3b
s3_stub_end:
.code64
"#,
    cs = const S3_VECTOR >> 4,
    ip = const S3_VECTOR & 0xF,
    pm_timer = const 0x608,
    report = const REPORT_PORT,
    options(att_syntax)
);

unsafe extern "C" {
    static s3_stub_start: u8;
    static s3_stub_end: u8;
}

/// Not a multiple of 16: CS and IP must both carry part of it.
const S3_VECTOR: u64 = 0x8003;
/// CMOS byte 0x7e (unused by QEMU) remembers that this kernel already woke once.
const CMOS_FLAG: u8 = 0x7E;
const CMOS_FLAG_WOKEN: u8 = 0x5B;

fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port I/O of a test VM.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack)) };
    v
}

fn cmos_read(reg: u8) -> u8 {
    outb(0x70, reg);
    inb(0x71)
}

fn cmos_write(reg: u8, v: u8) {
    outb(0x70, reg);
    outb(0x71, v);
}

/// The FACS named by the FADT in the RSDT/XSDT.
fn find_facs(rsdp: u64) -> Option<u64> {
    let (root, width) = if u8_at(rsdp + 15) >= 2 && u64_at(rsdp + 24) != 0 {
        (u64_at(rsdp + 24), 8)
    } else {
        (u32_at(rsdp + 16) as u64, 4)
    };
    let len = u32_at(root + 4) as u64;
    let mut at = root + 36;
    while at + width <= root + len {
        let table = if width == 8 {
            u64_at(at)
        } else {
            u32_at(at) as u64
        };
        at += width;
        if &rd::<4>(table) == b"FACP" {
            let facs = u32_at(table + 36) as u64;
            return (&rd::<4>(facs) == b"FACS").then_some(facs);
        }
    }
    None
}

/// `s3.wake=`: the first entry sleeps and "wakes" (a reset with the S3 status);
/// a second entry after `none` passes, after `vector` fails.
fn play_s3_wake(mode: &str, rsdp: u64) {
    if cmos_read(CMOS_FLAG) == CMOS_FLAG_WOKEN {
        cmos_write(CMOS_FLAG, 0);
        if mode == "vector" {
            fail!("entered again after an S3 wake-up: the firmware booted afresh");
        }
        return;
    }
    let Some(facs) = find_facs(rsdp) else {
        fail!("no FACS")
    };
    let vector = match mode {
        "vector" => {
            // SAFETY: the stub's bytes are in our image; 0x8003 is free RAM below
            // 1 MiB (the command line ends well before it).
            unsafe {
                let start = &raw const s3_stub_start;
                let len = (&raw const s3_stub_end).offset_from(start) as usize;
                core::ptr::copy_nonoverlapping(start, S3_VECTOR as *mut u8, len);
            }
            S3_VECTOR as u32
        }
        "none" => 0,
        other => fail!("unknown s3.wake={other}"),
    };
    // SAFETY: the FACS is ACPI NVS-like memory the OS owns; offset 12 is the
    // firmware waking vector.
    unsafe { core::ptr::write_volatile((facs + 12) as *mut u32, vector) };
    cmos_write(CMOS_FLAG, CMOS_FLAG_WOKEN);
    cmos_write(0x0F, 0xFE);
    outb(0xCF9, 0x06); // PIIX/ICH9 reset control: hard reset
    fail!("the reset through 0xCF9 did not happen");
}

extern "C" fn main64(bp: u64, cs: u64, ds: u64, ss: u64, es: u64, rflags: u64) -> ! {
    // CPU state of the 64-bit boot protocol.
    let (cr0, cr4): (u64, u64);
    // SAFETY: reading control registers.
    unsafe { asm!("mov {}, cr0", "mov {}, cr4", out(reg) cr0, out(reg) cr4) };
    if cs & 0xFFFF != 0x10 || ds & 0xFFFF != 0x18 || ss & 0xFFFF != 0x18 || es & 0xFFFF != 0x18 {
        fail!("segments cs={cs:#x} ds={ds:#x} ss={ss:#x} es={es:#x}, want 0x10/0x18");
    }
    if rflags & (1 << 9) != 0 {
        fail!("interrupts enabled at entry");
    }
    if cr0 & (1 << 31) == 0 || cr4 & (1 << 5) == 0 {
        fail!("paging/PAE off at the 64-bit entry: cr0={cr0:#x} cr4={cr4:#x}");
    }
    // The zero page.
    if u32_at(bp + 0x202) != 0x5372_6448 {
        fail!("no HdrS in boot_params at {bp:#x}");
    }
    if u8_at(bp + 0x210) != 0xB0 {
        fail!("type_of_loader {:#x}", u8_at(bp + 0x210));
    }
    if u8_at(bp + 0x1EF) != 0 {
        fail!("sentinel set");
    }
    let init_size = u32_at(bp + 0x260) as u64;
    let handed = Handed {
        cmd_ptr: u32_at(bp + 0x228) as u64 | (u32_at(bp + 0xC8) as u64) << 32,
        cmd_after_name: false,
        e820: E820 {
            base: bp + 0x2D0,
            n: u8_at(bp + 0x1E8) as u64,
            stride: 20,
        },
        kernel: (LOAD, LOAD + init_size),
        initrd: (
            u32_at(bp + 0x218) as u64 | (u32_at(bp + 0xC0) as u64) << 32,
            u32_at(bp + 0x21C) as u64 | (u32_at(bp + 0xC4) as u64) << 32,
        ),
        rsdp: u64_at(bp + 0x70),
    };
    if handed.e820.type_of(bp, bp + 4096) != Some(1) {
        fail!("zero page not in RAM");
    }
    let (cmdline, ram) = check_handed(&handed);
    // setup_data (-dtb).
    if let Some(want) =
        expect(cmdline, "expect.dtb_fnv").and_then(|h| u64::from_str_radix(h, 16).ok())
    {
        let mut p = u64_at(bp + 0x250);
        let mut found = false;
        let mut hops = 0;
        while p != 0 && hops < 16 {
            let (typ, l) = (u32_at(p + 8), u32_at(p + 12) as u64);
            if typ == 2 && fnv(bytes(p + 16, l)) == want {
                found = true;
            }
            p = u64_at(p);
            hops += 1;
        }
        if !found {
            fail!("no setup_data DTB node with the expected contents");
        }
    }
    // Reboots in a row (`test.reboots=N`): each boot is counted in CMOS and
    // printed; until N reboots are done, reset the machine through the PIIX/ICH9
    // reset control register, which brings the CPU back to the firmware.
    if let Some(want) = expect(cmdline, "test.reboots").and_then(parse_num) {
        let boots = cmos_read(CMOS_BOOT_COUNT) as u64 + 1;
        let _ = writeln!(Serial, "testkernel: boot {boots}");
        if boots <= want.min(254) {
            cmos_write(CMOS_BOOT_COUNT, boots as u8);
            outb(0xCF9, 0x06);
            // The reset takes effect when QEMU next looks: wait for it (a reset
            // that never comes is a hang, which the soak reports).
            loop {
                // SAFETY: halting with interrupts off; only the reset ends it.
                unsafe { asm!("cli; hlt") }
            }
        }
    }
    if let Some(mode) = expect(cmdline, "s3.wake") {
        play_s3_wake(mode, handed.rsdp);
    }
    let (image, size) = handed.initrd;
    let _ = writeln!(
        Serial,
        "testkernel: PASS cmdline {} bytes, {} e820 entries, {} MiB RAM, initrd {size} bytes at {image:#x}",
        cmdline.len(),
        handed.e820.n,
        ram >> 20
    );
    report(true)
}


unsafe extern "C" {
    /// The end of the kernel's image (link.ld), bss and stack included.
    static stack_top: u8;
}

/// Reached from the 32-bit entries in long mode.
extern "C" fn main_flat32() -> ! {
    // SAFETY: written once by flat32_common before this call; read-only since.
    let state = unsafe { FLAT32_STATE };
    match state[10] {
        1 => main_pvh(state),
        _ => main_multiboot(state),
    }
}

fn main_pvh(state: [u64; 11]) -> ! {
    PASS.store(0x14, Ordering::Relaxed);
    let [si, cr0, cr4, eflags, cs, ds, es, ss, efer, _, _] = state;
    // CPU state of the PVH entry (Xen's pvh.pandoc): CR0 PE only (ET is
    // hardwired), CR4 0, paging and long mode off, IF, TF and VM clear.
    if cr0 & !(1 << 4) != 1 {
        fail!("CR0 {cr0:#x} at the PVH entry, want PE only");
    }
    if cr4 != 0 {
        fail!("CR4 {cr4:#x} at the PVH entry, want 0");
    }
    if efer & (1 << 8 | 1 << 10) != 0 {
        fail!("EFER {efer:#x}: long mode still enabled");
    }
    if eflags & (1 << 9 | 1 << 8 | 1 << 17) != 0 {
        fail!("EFLAGS {eflags:#x}: IF, TF or VM set");
    }
    if cs == 0 || ds == 0 || ds != es || ds != ss {
        fail!("segments cs={cs:#x} ds={ds:#x} es={es:#x} ss={ss:#x}");
    }
    let (pic1, pic2) = (inb(0x21), inb(0xA1));
    if pic1 != 0xFF || pic2 != 0xFF {
        fail!("8259 masks {pic1:#x}/{pic2:#x}, want both 0xff");
    }
    // hvm_start_info, version 1.
    if si == 0 || u32_at(si) != 0x336E_C578 {
        fail!("no hvm_start_info magic at {si:#x}");
    }
    let (version, flags, nr_modules) = (u32_at(si + 4), u32_at(si + 8), u32_at(si + 12));
    if version < 1 || flags != 0 {
        fail!("start info version {version}, flags {flags:#x}");
    }
    let (memmap, entries) = (u64_at(si + 0x28), u32_at(si + 0x30) as u64);
    if memmap == 0 {
        fail!("no memory map in the start info");
    }
    let initrd = match nr_modules {
        0 => (0, 0),
        1 => {
            let m = u64_at(si + 0x10);
            if m == 0 {
                fail!("one module but no module list");
            }
            (u64_at(m), u64_at(m + 8))
        }
        n => fail!("{n} modules, want at most 1"),
    };
    let end = core::ptr::addr_of!(stack_top) as u64;
    let handed = Handed {
        cmd_ptr: u64_at(si + 0x18),
        cmd_after_name: false,
        e820: E820 {
            base: memmap,
            n: entries,
            stride: 24,
        },
        kernel: (LOAD, end),
        initrd,
        rsdp: u64_at(si + 0x20),
    };
    for (what, at, len) in [
        ("start info", si, 56),
        ("memory map", memmap, entries * 24),
    ] {
        if handed.e820.type_of(at, at + len) != Some(1) {
            fail!("{what} at {at:#x} not in RAM");
        }
    }
    let (cmdline, ram) = check_handed(&handed);
    let _ = writeln!(
        Serial,
        "testkernel: PASS pvh: cmdline {} bytes, {entries} memmap entries, {} MiB RAM, module {} bytes at {:#x}",
        cmdline.len(),
        ram >> 20,
        initrd.1,
        initrd.0
    );
    report(true)
}

/// An RSDP in the BIOS segment, where a multiboot kernel looks for one.
fn scan_rsdp() -> u64 {
    (0xE_0000..0x10_0000)
        .step_by(16)
        .find(|&p| &rd::<8>(p) == b"RSD PTR " && sum(bytes(p, 20)) == 0)
        .unwrap_or(0)
}

fn main_multiboot(state: [u64; 11]) -> ! {
    PASS.store(0x16, Ordering::Relaxed);
    let [mbi, cr0, _, eflags, cs, ds, es, ss, _, eax, _] = state;
    // CPU state of multiboot 0.6.96 (section 3.2).
    if eax != 0x2BAD_B002 {
        fail!("EAX {eax:#x} at the multiboot entry, want 0x2badb002");
    }
    if cr0 & (1 << 31 | 1) != 1 {
        fail!("CR0 {cr0:#x}: want PE set and PG clear");
    }
    if eflags & (1 << 9 | 1 << 17) != 0 {
        fail!("EFLAGS {eflags:#x}: IF or VM set");
    }
    if cs == 0 || ds == 0 || ds != es || ds != ss {
        fail!("segments cs={cs:#x} ds={ds:#x} es={es:#x} ss={ss:#x}");
    }
    let (pic1, pic2) = (inb(0x21), inb(0xA1));
    if pic1 != 0xFF || pic2 != 0xFF {
        fail!("8259 masks {pic1:#x}/{pic2:#x}, want both 0xff");
    }
    // The information block: memory, command line, modules and memory map.
    let flags = u32_at(mbi);
    let want = 1 | 1 << 2 | 1 << 3 | 1 << 6;
    if flags & want != want {
        fail!("multiboot flags {flags:#x} lack memory, cmdline, modules or mmap");
    }
    let (mem_lower, mem_upper) = (u32_at(mbi + 4) as u64, u32_at(mbi + 8) as u64);
    if !(600..=640).contains(&mem_lower) {
        fail!("mem_lower {mem_lower} KiB");
    }
    let (mmap, mmap_len) = (u32_at(mbi + 0x30) as u64, u32_at(mbi + 0x2C) as u64);
    if mmap == 0 || mmap_len == 0 || mmap_len % 24 != 0 {
        fail!("memory map {mmap_len} bytes at {mmap:#x}");
    }
    let n = mmap_len / 24;
    if let Some(i) = (0..n).find(|i| u32_at(mmap + 24 * i) != 20) {
        fail!("memory map entry {i} has size {}, want 20", u32_at(mmap + 24 * i));
    }
    let e820 = E820 {
        base: mmap + 4,
        n,
        stride: 24,
    };
    let upper_end = (0..n)
        .map(|i| e820.entry(i))
        .find(|&(a, s, t)| t == 1 && a <= 0x10_0000 && 0x10_0000 < a + s)
        .map_or(0, |(a, s, _)| a + s);
    if (upper_end.min(1 << 32) - 0x10_0000) / 1024 != mem_upper {
        fail!("mem_upper {mem_upper} KiB, but RAM at 1 MiB ends at {upper_end:#x}");
    }
    let (mods, mods_addr) = (u32_at(mbi + 0x14), u32_at(mbi + 0x18) as u64);
    let initrd = match mods {
        0 => (0, 0),
        1 => {
            let (start, end) = (u32_at(mods_addr) as u64, u32_at(mods_addr + 4) as u64);
            (start, end.saturating_sub(start))
        }
        n => fail!("{n} modules, want at most 1"),
    };
    let end = core::ptr::addr_of!(stack_top) as u64;
    let handed = Handed {
        cmd_ptr: u32_at(mbi + 0x10) as u64,
        cmd_after_name: true,
        e820,
        kernel: (LOAD - 0x1000, end),
        initrd,
        rsdp: scan_rsdp(),
    };
    if handed.e820.type_of(mbi, mbi + 88) != Some(1) {
        fail!("multiboot information at {mbi:#x} not in RAM");
    }
    let (cmdline, ram) = check_handed(&handed);
    let _ = writeln!(
        Serial,
        "testkernel: PASS multiboot: cmdline {} bytes, {n} mmap entries, {} MiB RAM, mem_upper {mem_upper} KiB, module {} bytes at {:#x}",
        cmdline.len(),
        ram >> 20,
        initrd.1,
        initrd.0
    );
    report(true)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    fail!("panic: {info}")
}
