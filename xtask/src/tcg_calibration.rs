//! `cargo xtask host-cost --calibrate`: what QEMU's TCG spends translating
//! each kind of guest code, counted by callgrind on synthetic ROMs, and the
//! translated code of each firmware weighed with it, kind by kind.
//!
//! Each synthetic ROM switches to 64-bit mode (as ferrite runs) and then
//! runs `blocks` translation blocks of `per_block` instructions of one kind,
//! each block ended by a `jmp` to the next, and exits through
//! isa-debug-exit. Every block runs once, as a firmware's code does: the
//! host instructions of `tb_gen_code` (inclusive) grow by one block's and
//! `per_block` instructions' translation per block. The differences between
//! ROMs give the cost of a block and of one instruction of each kind:
//!
//! - a block ending in a `jmp`: (ROM of empty blocks − ROM of none) / blocks;
//! - a block ending in a conditional branch: the same with `cmp; je` ends,
//!   less the `cmp` (a register ALU instruction);
//! - an instruction of a kind: (ROM of full blocks − ROM of empty blocks) /
//!   (blocks × per_block).
//!
//! The classification ([`classify`]) reads QEMU's `-d in_asm` lines, so the
//! same weights apply to any firmware's log: [`Breakdown`] counts a log's
//! blocks and instructions by kind and [`Breakdown::predicted`] weighs them.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde::Serialize;

use crate::bench::cost::{is_instruction, is_string, mnemonic_and_operands};
use crate::host_profile::ExportCache;
use crate::qemu::{Machine, Qemu};

/// What TCG translates, as the calibration tells it apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Unit {
    /// A translation block that ends in a conditional branch (`jcc`,
    /// `loop`, `jecxz`): two exits, each a jump to another block.
    CondBlock,
    /// Any other block: ended by `jmp`, `call`, `ret`, a string
    /// instruction, a write to a control register, a page boundary.
    OtherBlock,
    /// `mov` between registers or of an immediate, and other moves without
    /// flags or memory (`movz`, `bswap`, `xchg` of registers, `cltq`).
    Mov,
    /// `lea`.
    Lea,
    /// A register-only instruction that sets the flags (`add`, `xor`,
    /// `cmp`, `test`, shifts, `inc`, `imul`...), and anything not listed.
    Alu,
    /// `setcc` of a register.
    SetCc,
    /// `cmovcc`.
    Cmov,
    /// Reads memory into a register (`mov` from memory, an ALU
    /// instruction with a memory source).
    Load,
    /// Writes a register or an immediate to memory (`mov`, `setcc`, the
    /// string instructions).
    Store,
    /// An ALU instruction with a memory destination (`add %reg, mem`,
    /// `inc mem`, `lock cmpxchg`).
    ReadModifyWrite,
    /// `cmp` or `test` against memory.
    CompareMemory,
    /// `push`, `pop`, and the stack access of `call`, `ret` and `leave`.
    PushPop,
    /// Port I/O (`in`, `out`): a helper call.
    PortIo,
}

impl Unit {
    pub const ALL: [Unit; 13] = [
        Unit::CondBlock,
        Unit::OtherBlock,
        Unit::Mov,
        Unit::Lea,
        Unit::Alu,
        Unit::SetCc,
        Unit::Cmov,
        Unit::Load,
        Unit::Store,
        Unit::ReadModifyWrite,
        Unit::CompareMemory,
        Unit::PushPop,
        Unit::PortIo,
    ];

    /// A block, not an instruction: a calibration ROM's block of it holds
    /// no instructions but its end.
    pub fn is_block(self) -> bool {
        matches!(self, Unit::CondBlock | Unit::OtherBlock)
    }

    pub fn label(self) -> &'static str {
        match self {
            Unit::CondBlock => "a block ending in a conditional branch",
            Unit::OtherBlock => "a block ending otherwise (jmp, call, ret)",
            Unit::Mov => "mov of a register or an immediate",
            Unit::Lea => "lea",
            Unit::Alu => "ALU, registers only (add, xor, cmp, test, shifts)",
            Unit::SetCc => "setcc",
            Unit::Cmov => "cmovcc",
            Unit::Load => "load (mov or ALU from memory)",
            Unit::Store => "store",
            Unit::ReadModifyWrite => "read-modify-write of memory",
            Unit::CompareMemory => "cmp or test against memory",
            Unit::PushPop => "push, pop (and call's, ret's stack access)",
            Unit::PortIo => "port I/O (in, out)",
        }
    }

    /// The instructions a calibration block holds for this kind, cycled:
    /// 64-bit encodings with what each is. `%rbx` points at scratch RAM
    /// (the displacement is added per instruction), `%rsp` at a stack.
    fn body(self) -> &'static [&'static [u8]] {
        match self {
            Unit::CondBlock | Unit::OtherBlock => &[],
            Unit::Mov => &[
                &[0x48, 0x89, 0xC2],             // mov %rax,%rdx
                &[0xBE, 0x05, 0x00, 0x00, 0x00], // mov $5,%esi
            ],
            Unit::Lea => &[&[0x48, 0x8D, 0x74, 0x08, 0x08]], // lea 8(%rax,%rcx),%rsi
            Unit::Alu => &[
                &[0x48, 0x01, 0xC8], // add %rcx,%rax
                &[0x48, 0x31, 0xC2], // xor %rax,%rdx
                &[0x48, 0x21, 0xD6], // and %rdx,%rsi
                &[0x48, 0x29, 0xF7], // sub %rsi,%rdi
            ],
            Unit::SetCc => &[&[0x0F, 0x94, 0xC2]], // sete %dl
            Unit::Cmov => &[&[0x48, 0x0F, 0x45, 0xD0]], // cmovne %rax,%rdx
            Unit::Load => &[&[0x48, 0x8B, 0x53, DISP]], // mov d(%rbx),%rdx
            Unit::Store => &[&[0x48, 0x89, 0x43, DISP]], // mov %rax,d(%rbx)
            Unit::ReadModifyWrite => &[&[0x48, 0x01, 0x4B, DISP]], // add %rcx,d(%rbx)
            Unit::CompareMemory => &[&[0x48, 0x83, 0x7B, DISP, 0x05]], // cmpq $5,d(%rbx)
            Unit::PushPop => &[
                &[0x50], // push %rax
                &[0x5A], // pop %rdx
            ],
            Unit::PortIo => &[&[0xE6, 0x80]], // out %al,$0x80 (QEMU's POST port)
        }
    }
}

/// Stands for the displacement byte in [`Unit::body`]'s encodings.
const DISP: u8 = 0xD5;

/// Instructions a calibration block holds (of the kind measured).
pub const PER_BLOCK: usize = 16;
/// Blocks a calibration ROM holds by default.
pub const BLOCKS: usize = 200;

/// The synthetic ROM's layout (64 KiB, at 0xF0000 below 1 MiB, where the
/// code runs, and at the top of 4 GiB, where the CPU starts).
const ROM_SIZE: usize = 64 * 1024;
const ROM_LOW: u32 = 0xF0000;
/// Page tables (PML4, PDPT, PD) at the ROM's start: the first 2 MiB
/// identity-mapped with one large page. Accessed and dirty bits are set, so
/// that the page walk never writes to the ROM.
const PML4: usize = 0x0000;
const PDPT: usize = 0x1000;
const PD: usize = 0x2000;
/// 64-bit code.
const CODE: usize = 0x3000;
/// GDT (null, 64-bit code, data) and the pointer to it.
const GDT: usize = 0xFF00;
const GDT_PTR: usize = GDT + 24;
/// The 16-bit start: GDT, page tables, long mode, far jump to [`CODE`].
const START16: usize = 0xFF40;
/// The reset vector.
const RESET: usize = 0xFFF0;
/// isa-debug-exit's port and the values written: the exit status is
/// `value * 2 + 1`.
pub const EXIT_PORT: u16 = 0xF7;
pub const EXIT_DONE: i32 = 3;
const EXIT_FAILED: u8 = 2;

/// A synthetic ROM of `blocks` blocks, each `per_block` instructions of
/// `unit`'s body (cycled; none for the block units) and an end: for
/// [`Unit::CondBlock`] `cmp $0x12345,%rax; je fail` (never taken, the next
/// block is its fall-through), for every other unit a `jmp` to the next
/// block.
pub fn rom(unit: Unit, blocks: usize, per_block: usize) -> Result<Vec<u8>> {
    let mut r = vec![0u8; ROM_SIZE];
    let put =
        |r: &mut Vec<u8>, at: usize, bytes: &[u8]| r[at..at + bytes.len()].copy_from_slice(bytes);
    let entry = |table: usize| (ROM_LOW as u64 + table as u64) | 0x23; // present, writable, accessed
    put(&mut r, PML4, &entry(PDPT).to_le_bytes());
    put(&mut r, PDPT, &entry(PD).to_le_bytes());
    put(&mut r, PD, &0xE3u64.to_le_bytes()); // 2 MiB page at 0: present, writable, accessed, dirty
    put(&mut r, GDT + 8, &0x00AF_9A00_0000_FFFFu64.to_le_bytes()); // 64-bit code, selector 8
    put(&mut r, GDT + 16, &0x00CF_9200_0000_FFFFu64.to_le_bytes()); // data
    put(&mut r, GDT_PTR, &23u16.to_le_bytes());
    put(&mut r, GDT_PTR + 2, &(ROM_LOW + GDT as u32).to_le_bytes());
    let code64 = (ROM_LOW + CODE as u32).to_le_bytes();
    let gdt_ptr = (GDT_PTR as u16).to_le_bytes();
    let start16: Vec<u8> = [
        &[0xFA][..],                                             // cli
        &[0x2E, 0x66, 0x0F, 0x01, 0x16, gdt_ptr[0], gdt_ptr[1]], // lgdtl %cs:GDT_PTR
        &[0x66, 0xB8],                                           // mov $PML4,%eax
        &(ROM_LOW + PML4 as u32).to_le_bytes(),
        &[0x0F, 0x22, 0xD8], // mov %eax,%cr3
        &[0x0F, 0x20, 0xE0, 0x66, 0x83, 0xC8, 0x20, 0x0F, 0x22, 0xE0], // cr4 |= PAE
        &[0x66, 0xB9, 0x80, 0x00, 0x00, 0xC0, 0x0F, 0x32], // rdmsr EFER
        &[0x66, 0x0D, 0x00, 0x01, 0x00, 0x00, 0x0F, 0x30], // EFER |= LME; wrmsr
        &[
            0x0F, 0x20, 0xC0, 0x66, 0x0D, 0x01, 0x00, 0x00, 0x80, 0x0F, 0x22, 0xC0,
        ], // cr0 |= PE | PG
        &[0x66, 0xEA],       // ljmpl $8,$CODE
        &code64,
        &[0x08, 0x00],
    ]
    .concat();
    put(&mut r, START16, &start16);
    // ljmp $0xf000,$START16: into the low copy, which the page tables map.
    put(
        &mut r,
        RESET,
        &[0xEA, START16 as u8, (START16 >> 8) as u8, 0x00, 0xF0],
    );

    let mut code: Vec<u8> = [
        &[0xBC, 0x00, 0x80, 0x00, 0x00][..], // mov $0x8000,%esp
        &[0xBB, 0x00, 0x90, 0x00, 0x00],     // mov $0x9000,%ebx
        &[0x31, 0xC0],                       // xor %eax,%eax
        &[0xB9, 0x03, 0x00, 0x00, 0x00],     // mov $3,%ecx
    ]
    .concat();
    // `je fail` sites, patched once `fail` is placed.
    let mut to_fail = Vec::new();
    let body = unit.body();
    let per_block = if unit.is_block() { 0 } else { per_block };
    for _ in 0..blocks {
        for k in 0..per_block {
            let insn = body[k % body.len()];
            let disp = 8 * (k % 16) as u8;
            code.extend(insn.iter().map(|&b| if b == DISP { disp } else { b }));
        }
        if unit == Unit::CondBlock {
            code.extend([0x48, 0x3D, 0x45, 0x23, 0x01, 0x00]); // cmp $0x12345,%rax
            code.extend([0x0F, 0x84]); // je rel32
            to_fail.push(code.len());
            code.extend([0; 4]);
        } else {
            code.extend([0xEB, 0x00]); // jmp to the next instruction
        }
    }
    // Each exit halts after its write: a QEMU whose isa-debug-exit lets the
    // guest run on (10.0 does; 7.2 exits at once) would otherwise go on from
    // the success exit into the failure's and exit with its status.
    const HALT: [u8; 3] = [0xF4, 0xEB, 0xFD]; // hlt; jmp to the hlt
    code.extend([0xB0, (EXIT_DONE - 1) as u8 / 2, 0xE6, EXIT_PORT as u8]); // mov $1,%al; out
    code.extend(HALT);
    let fail = code.len();
    code.extend([0xB0, EXIT_FAILED, 0xE6, EXIT_PORT as u8]); // mov $2,%al; out
    code.extend(HALT);
    for at in to_fail {
        let rel = (fail - (at + 4)) as i32;
        code[at..at + 4].copy_from_slice(&rel.to_le_bytes());
    }
    ensure!(
        CODE + code.len() <= GDT,
        "{blocks} blocks of {per_block} do not fit the synthetic ROM ({} bytes of code)",
        code.len()
    );
    put(&mut r, CODE, &code);
    Ok(r)
}

/// Host instructions TCG spends to translate one of each [`Unit`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct Calibration {
    pub blocks: usize,
    pub per_block: usize,
    pub host_insns: BTreeMap<Unit, f64>,
}

impl Calibration {
    pub fn of(&self, unit: Unit) -> f64 {
        self.host_insns.get(&unit).copied().unwrap_or(0.0)
    }
}

/// Measures every [`Unit`] with ROMs of `blocks` blocks of `per_block`
/// instructions, each booted once under callgrind (in `work`).
pub fn calibrate(work: &Path, blocks: usize, per_block: usize) -> Result<Calibration> {
    ensure!(blocks > 0 && per_block > 0, "nothing to calibrate with");
    std::fs::create_dir_all(work)?;
    let mut exports = ExportCache::default();
    let mut measure = |name: &str, unit: Unit, blocks: usize| {
        let path = work.join(format!("{name}.rom"));
        std::fs::write(&path, rom(unit, blocks, per_block)?)?;
        let cost = crate::host_cost::measure(&boot(&path), &[EXIT_DONE], work, name, &mut exports)?;
        Ok::<f64, anyhow::Error>(cost.of("tb_gen_code") as f64)
    };
    let none = measure("none", Unit::OtherBlock, 0)?;
    let jmp = measure("jmp", Unit::OtherBlock, blocks)?;
    let cond = measure("cond", Unit::CondBlock, blocks)?;
    let mut c = Calibration {
        blocks,
        per_block,
        host_insns: BTreeMap::new(),
    };
    let n = blocks as f64;
    for unit in Unit::ALL.into_iter().filter(|u| !u.is_block()) {
        let t = measure(&format!("{unit:?}"), unit, blocks)?;
        c.host_insns
            .insert(unit, (t - jmp) / (n * per_block as f64));
    }
    c.host_insns.insert(Unit::OtherBlock, (jmp - none) / n);
    // A conditional block's `cmp` is a register ALU instruction.
    c.host_insns
        .insert(Unit::CondBlock, (cond - none) / n - c.of(Unit::Alu));
    Ok(c)
}

/// A boot of a synthetic ROM: pc, nothing else.
pub fn boot(rom: &Path) -> Qemu {
    let mut q = Qemu::new(Machine::Pc, rom.to_path_buf());
    q.exit_ports = vec![EXIT_PORT];
    q
}

/// What one translated instruction is: `None` for a jump (its cost is its
/// block's); `call` and `ret` count as a stack access besides ending their
/// block.
pub fn classify(line: &str) -> Option<Unit> {
    let (m, ops) = mnemonic_and_operands(line)?;
    let memory = ops.contains('(') && !m.starts_with("lea") && !m.starts_with("nop");
    // AT&T: the destination is the last operand.
    let to_memory = ops.rsplit(',').next().is_some_and(|d| d.contains('('));
    let starts = |p: &[&str]| p.iter().any(|p| m.starts_with(p));
    Some(if starts(&["j", "loop"]) {
        return None;
    } else if starts(&["push", "pop", "call", "ret", "leave", "lret", "iret"]) {
        Unit::PushPop
    } else if starts(&["out", "ins"]) || matches!(m, "inb" | "inw" | "inl") {
        Unit::PortIo
    } else if starts(&["lea"]) {
        Unit::Lea
    } else if is_string(m) {
        Unit::Store
    } else if starts(&["set"]) {
        if memory { Unit::Store } else { Unit::SetCc }
    } else if starts(&["cmov"]) {
        if memory { Unit::Load } else { Unit::Cmov }
    } else if memory {
        if starts(&["cmp", "test"]) && !m.starts_with("cmpxchg") {
            Unit::CompareMemory
        } else if !to_memory {
            Unit::Load
        } else if starts(&["mov"]) {
            Unit::Store
        } else {
            Unit::ReadModifyWrite
        }
    } else if starts(&[
        "mov", "xchg", "bswap", "cltq", "cqto", "cltd", "cwtl", "nop",
    ]) {
        Unit::Mov
    } else {
        Unit::Alu
    })
}

/// A `-d in_asm` log counted by [`Unit`]: blocks by how they end,
/// instructions by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Breakdown {
    pub counts: BTreeMap<Unit, u64>,
}

impl Breakdown {
    pub fn of(&self, unit: Unit) -> u64 {
        self.counts.get(&unit).copied().unwrap_or(0)
    }

    /// Host instructions to translate it all, by unit, by the calibration.
    pub fn predicted(&self, c: &Calibration) -> BTreeMap<Unit, f64> {
        self.counts
            .iter()
            .map(|(&u, &n)| (u, n as f64 * c.of(u)))
            .collect()
    }

    pub fn predicted_total(&self, c: &Calibration) -> f64 {
        self.predicted(c).values().sum()
    }
}

/// Counts a `-d in_asm` log.
pub fn breakdown(log: impl BufRead) -> Result<Breakdown> {
    let mut b = Breakdown::default();
    // The last instruction of the block being read.
    let mut last: Option<String> = None;
    let end_block = |b: &mut Breakdown, last: Option<String>| {
        if let Some(line) = last {
            let cond = mnemonic_and_operands(&line).is_some_and(|(m, _)| {
                (m.starts_with('j') && !m.starts_with("jmp")) || m.starts_with("loop")
            });
            let unit = if cond {
                Unit::CondBlock
            } else {
                Unit::OtherBlock
            };
            *b.counts.entry(unit).or_default() += 1;
        }
    };
    for line in log.lines() {
        let line = line.context("reading the in_asm log")?;
        if line.starts_with("IN:") {
            end_block(&mut b, last.take());
        } else if is_instruction(&line) {
            if let Some(unit) = classify(&line) {
                *b.counts.entry(unit).or_default() += 1;
            }
            last = Some(line);
        }
    }
    end_block(&mut b, last);
    Ok(b)
}

/// The calibration as a markdown table.
pub fn render_calibration(c: &Calibration) -> String {
    let mov = c.of(Unit::Mov).max(1.0);
    let mut s = format!(
        "What TCG spends to translate each kind of guest code: host instructions of \
         `tb_gen_code`, callgrind, synthetic 64-bit ROMs of {} blocks ({} instructions a \
         block for each kind)\n\n| guest code | host instructions | × a register mov |\n|---|---|---|\n",
        c.blocks, c.per_block
    );
    for u in Unit::ALL {
        s += &format!(
            "| {} | {:.0} | {:.1} |\n",
            u.label(),
            c.of(u),
            c.of(u) / mov
        );
    }
    s
}

/// Firmwares' translated code by unit, weighed by the calibration, beside
/// what callgrind measured (`measured`: `tb_gen_code`, inclusive).
pub fn render_breakdowns(
    c: &Calibration,
    rows: &[(String, Breakdown, u64)],
    machine: &str,
) -> String {
    let names: Vec<&str> = rows.iter().map(|(n, _, _)| n.as_str()).collect();
    let mut s = format!(
        "\nTranslated code on {machine} to the kernel entry by kind: count, and millions of host \
         instructions by the calibration\n\n| kind | {} |\n|---|{}\n",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    for u in Unit::ALL {
        let cells: Vec<String> = rows
            .iter()
            .map(|(_, b, _)| format!("{} / {:.2}", b.of(u), b.of(u) as f64 * c.of(u) / 1e6))
            .collect();
        s += &format!("| {} | {} |\n", u.label(), cells.join(" | "));
    }
    let cells: Vec<String> = rows
        .iter()
        .map(|(_, b, _)| format!("{:.2}", b.predicted_total(c) / 1e6))
        .collect();
    s += &format!("| **by the calibration** | {} |\n", cells.join(" | "));
    let cells: Vec<String> = rows
        .iter()
        .map(|(_, _, m)| format!("{:.2}", *m as f64 / 1e6))
        .collect();
    s += &format!("| **measured (`tb_gen_code`)** | {} |\n", cells.join(" | "));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rom_starts_at_the_reset_vector_and_ends_with_the_exit() {
        let r = rom(Unit::Load, 3, 5).unwrap();
        assert_eq!(r.len(), ROM_SIZE);
        // ljmp $0xf000,$0xff40
        assert_eq!(&r[RESET..RESET + 5], &[0xEA, 0x40, 0xFF, 0x00, 0xF0]);
        assert_eq!(&r[PD..PD + 8], &0xE3u64.to_le_bytes());
        assert_eq!(
            u64::from_le_bytes(r[PML4..PML4 + 8].try_into().unwrap()),
            0xF1023
        );
        // the blocks: five loads (displacements 0, 8, ...), then the jmp
        let blocks = &r[CODE + 17..];
        assert_eq!(
            &blocks[..8],
            &[0x48, 0x8B, 0x53, 0x00, 0x48, 0x8B, 0x53, 0x08]
        );
        assert_eq!(&blocks[20..22], &[0xEB, 0x00]);
        let exit = &blocks[3 * 22..3 * 22 + 7];
        assert_eq!(exit, &[0xB0, 0x01, 0xE6, 0xF7, 0xF4, 0xEB, 0xFD]);
    }

    #[test]
    fn conditional_blocks_branch_to_the_failure_exit() {
        let r = rom(Unit::CondBlock, 2, 16).unwrap();
        let code = &r[CODE + 17..];
        // cmp; je rel32 (to `fail`, after both blocks and the exit)
        assert_eq!(
            &code[..8],
            &[0x48, 0x3D, 0x45, 0x23, 0x01, 0x00, 0x0F, 0x84]
        );
        let rel = i32::from_le_bytes(code[8..12].try_into().unwrap());
        let fail = 12 + rel as usize;
        assert_eq!(fail, 2 * 12 + 4 + 3);
        assert_eq!(
            &code[fail..fail + 7],
            &[0xB0, 0x02, 0xE6, 0xF7, 0xF4, 0xEB, 0xFD]
        );
    }

    #[test]
    fn a_rom_too_large_is_refused() {
        assert!(rom(Unit::CompareMemory, 1000, 16).is_err());
    }

    #[test]
    fn classifies_in_asm_lines() {
        let cases = [
            (
                "0x000f3011:  48 01 c8                 addq     %rcx, %rax",
                Some(Unit::Alu),
            ),
            (
                "0x00010040:  f0 0f b1 15 18 81 01 00  lock cmpxchgb %dl, 0x18118(%rip)",
                Some(Unit::ReadModifyWrite),
            ),
            (
                "0x000f3014:  48 8b 53 08              movq     8(%rbx), %rdx",
                Some(Unit::Load),
            ),
            (
                "0x000f3014:  48 89 43 08              movq     %rax, 8(%rbx)",
                Some(Unit::Store),
            ),
            (
                "0x00010067:  48 c7 84 24 f0 00 00 00  movq     $0x32c48, 0xf0(%rsp)",
                Some(Unit::Store),
            ),
            (
                "0x000f3014:  48 01 4b 08              addq     %rcx, 8(%rbx)",
                Some(Unit::ReadModifyWrite),
            ),
            (
                "0x000f3014:  48 03 4b 08              addq     8(%rbx), %rcx",
                Some(Unit::Load),
            ),
            (
                "0x0001018c:  80 bc 24 54 25 00 00 00  cmpb     $0, 0x2554(%rsp)",
                Some(Unit::CompareMemory),
            ),
            (
                "0x000f3014:  50                       pushq    %rax",
                Some(Unit::PushPop),
            ),
            (
                "0x000f3014:  c3                       retq     ",
                Some(Unit::PushPop),
            ),
            (
                "0x000f3014:  e8 00 00 00 00           callq    0x10000",
                Some(Unit::PushPop),
            ),
            (
                "0x000f3014:  48 8d 74 08 08           leaq     8(%rax, %rcx), %rsi",
                Some(Unit::Lea),
            ),
            (
                "0x000f3014:  0f 94 c2                 sete     %dl",
                Some(Unit::SetCc),
            ),
            (
                "0x000f3014:  48 0f 45 d0              cmovneq  %rax, %rdx",
                Some(Unit::Cmov),
            ),
            (
                "0x000f3014:  48 89 c2                 movq     %rax, %rdx",
                Some(Unit::Mov),
            ),
            (
                "0x000f3014:  0f b6 c0                 movzbl   %al, %eax",
                Some(Unit::Mov),
            ),
            (
                "0x000f3014:  0f b6 03                 movzbl   (%rbx), %eax",
                Some(Unit::Load),
            ),
            (
                "0xfffff004:  e6 f5                    outb     %al, $0xf5",
                Some(Unit::PortIo),
            ),
            (
                "0xfffff012:  e4 71                    inb      $0x71, %al",
                Some(Unit::PortIo),
            ),
            (
                "0x00010000:  48 ff c0                 incq     %rax",
                Some(Unit::Alu),
            ),
            (
                "0x00010000:  f3 48 ab                 rep stosq %rax, (%rdi)",
                Some(Unit::Store),
            ),
            (
                "0x00010000:  f3 48 a5                 rep movsq (%rsi), (%rdi)",
                Some(Unit::Store),
            ),
            (
                "0x000f0121:  f3 a5                    rep movsl (%esi), %es:(%edi)",
                Some(Unit::Store),
            ),
            (
                "0x00010000:  48 0f be 03              movsbq   (%rbx), %rax",
                Some(Unit::Load),
            ),
            (
                "0x00010000:  48 0f be c0              movsbq   %al, %rax",
                Some(Unit::Mov),
            ),
            (
                "0x00010000:  f3 6c                    rep insb %dx, (%rdi)",
                Some(Unit::PortIo),
            ),
            (
                "0x00010000:  cc                       int3     ",
                Some(Unit::Alu),
            ),
            (
                "0xfffff01d:  0f 20 c0                 movl     %cr0, %eax",
                Some(Unit::Mov),
            ),
            (
                "0x000f3017:  0f 84 00 00 00 00        je       0xf301d",
                None,
            ),
            (
                "0x000f3017:  eb 00                    jmp      0xf3019",
                None,
            ),
            ("IN: ", None),
        ];
        for (line, want) in cases {
            assert_eq!(classify(line), want, "{line}");
        }
    }

    #[test]
    fn counts_blocks_by_how_they_end() {
        let log = "\
----------------
IN: 
0x00010000:  48 89 c2                 movq     %rax, %rdx
0x00010003:  48 3d 45 23 01 00        cmpq     $0x12345, %rax
0x00010009:  0f 84 00 00 00 00        je       0x1000f

----------------
IN: 
0x0001000f:  48 8b 53 08              movq     8(%rbx), %rdx
0x00010013:  e8 00 00 00 00           callq    0x10000

----------------
IN: 
0x00010018:  c3                       retq     
";
        let b = breakdown(log.as_bytes()).unwrap();
        assert_eq!(b.of(Unit::CondBlock), 1);
        assert_eq!(b.of(Unit::OtherBlock), 2);
        assert_eq!(b.of(Unit::Mov), 1);
        assert_eq!(b.of(Unit::Alu), 1);
        assert_eq!(b.of(Unit::Load), 1);
        assert_eq!(b.of(Unit::PushPop), 2);
        let c = Calibration {
            blocks: 1,
            per_block: 1,
            host_insns: [
                (Unit::CondBlock, 1000.0),
                (Unit::OtherBlock, 500.0),
                (Unit::Load, 7.0),
            ]
            .into_iter()
            .collect(),
        };
        // units the calibration lacks weigh nothing
        assert_eq!(b.predicted_total(&c), 1000.0 + 2.0 * 500.0 + 7.0);
        let s = render_breakdowns(&c, &[("x".into(), b, 2_000_000)], "pc");
        assert!(
            s.contains("| a block ending in a conditional branch | 1 / 0.00 |"),
            "{s}"
        );
        assert!(s.contains("| **measured (`tb_gen_code`)** | 2.00 |"), "{s}");
    }
}
