//! How the blocks TCG translated end, from a `-d in_asm` log: part of
//! `cargo xtask translation`.
//!
//! Under TCG a block costs QEMU a fixed amount besides its instructions, and
//! one that ends in a conditional branch costs more than one that ends in a
//! jump (two exits to generate and link: docs/performance-history.md, "The
//! calibration, counted rather than timed"). A block ends at every
//! conditional branch, jump, call, return and `rep` string instruction, and
//! at mode and segment switches. So the blocks a boot translates are counted
//! here by what ends them, and the conditional ends are split by whether
//! this boot ran both sides: a conditional branch whose other side never
//! runs (an error check, a bounds check, a rare case) costs a conditional
//! block all the same. The calls are counted by callee (each call site ends
//! a block, and so does the return to it), and the 4 KiB pages of code by
//! how many the boot ran through (QEMU write-protects each page that holds
//! translated code).

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::bench::cost::{continuation_bytes, is_instruction, is_string, mnemonic_and_operands};
use crate::translation::CodeNames;

/// One instruction of a `-d in_asm` log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub addr: u64,
    /// Its length in bytes (the log's hex bytes).
    pub len: u64,
    pub mnemonic: String,
    pub operands: String,
    /// A `rep` prefix (a block ends at each `rep` string instruction).
    pub rep: bool,
}

impl Logged {
    /// From a log line `0xADDR:  bytes  mnemonic operands`.
    pub fn parse(line: &str) -> Option<Logged> {
        let (addr, rest) = line.strip_prefix("0x")?.split_once(':')?;
        let addr = u64::from_str_radix(addr, 16).ok()?;
        let len = rest
            .split_whitespace()
            .take_while(|w| w.len() == 2 && w.bytes().all(|b| b.is_ascii_hexdigit()))
            .count() as u64;
        let (mnemonic, operands) = mnemonic_and_operands(line)?;
        let rep = rest
            .split_whitespace()
            .nth(len as usize)
            .is_some_and(|w| w.starts_with("rep"));
        Some(Logged {
            addr,
            len,
            mnemonic: mnemonic.to_string(),
            operands,
            rep,
        })
    }

    /// The target of a direct jump or call (`jne 0x1a1bc`), else None.
    fn target(&self) -> Option<u64> {
        u64::from_str_radix(self.operands.strip_prefix("0x")?, 16).ok()
    }

    fn next(&self) -> u64 {
        self.addr + self.len
    }
}

/// The blocks of a `-d in_asm` log, in its order, each its instructions.
pub fn blocks(log: impl BufRead) -> Result<Vec<Vec<Logged>>> {
    let mut out: Vec<Vec<Logged>> = Vec::new();
    for line in log.lines() {
        let line = line.context("reading the in_asm log")?;
        if line.starts_with("IN:") {
            out.push(Vec::new());
        } else if is_instruction(&line) {
            let insn = Logged::parse(&line)
                .with_context(|| format!("not an in_asm instruction line: {line:?}"))?;
            if let Some(block) = out.last_mut() {
                block.push(insn);
            }
        } else if let Some(n) = continuation_bytes(&line) {
            // The rest of a long instruction.
            if let Some(insn) = out.last_mut().and_then(|b| b.last_mut()) {
                insn.len += n;
            }
        }
    }
    out.retain(|b| !b.is_empty());
    Ok(out)
}

/// What ends a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum End {
    /// `jcc`, `loop`, `jecxz`/`jrcxz`: two exits.
    Conditional,
    /// `jmp` (direct or not).
    Jump,
    Call,
    /// `ret`, `lret`, `iret`.
    Return,
    /// A `rep` string instruction.
    String,
    /// Anything else: a segment or control-register load, `wrmsr`, a far
    /// jump, `hlt`, a page boundary, the block size limit.
    Other,
}

impl End {
    fn of(last: &Logged) -> End {
        let m = last.mnemonic.as_str();
        if m.starts_with("jmp") || m.starts_with("ljmp") {
            End::Jump
        } else if m.starts_with('j') || m.starts_with("loop") {
            End::Conditional
        } else if m.starts_with("call") || m.starts_with("lcall") {
            End::Call
        } else if m.starts_with("ret") || m.starts_with("lret") || m.starts_with("iret") {
            End::Return
        } else if last.rep && is_string(m) {
            End::String
        } else {
            End::Other
        }
    }
}

/// What ends the blocks of one boot.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BlockEnds {
    pub blocks: u64,
    pub conditional: u64,
    /// Conditional ends one of whose two successors this boot never ran.
    pub one_sided: u64,
    pub jump: u64,
    pub call: u64,
    #[serde(rename = "return")]
    pub ret: u64,
    pub string: u64,
    pub other: u64,
    /// 4 KiB pages the translated code lies on.
    pub code_pages: u64,
    /// One-sided conditional ends by the source line of the branch (its
    /// [`CodeNames::name`]), most first.
    pub one_sided_by_line: Vec<(String, u64)>,
    /// Direct calls by callee ([`CodeNames::function`], else its name):
    /// the number of call sites this boot ran, most first.
    pub call_sites_by_callee: Vec<(String, u64)>,
}

/// Counts what ends `blocks` (one boot's, in the log's order), naming code
/// by `names`.
pub fn analyse(blocks: &[Vec<Logged>], names: &impl CodeNames) -> BlockEnds {
    let ran: BTreeSet<u64> = blocks.iter().flatten().map(|i| i.addr).collect();
    let pages: BTreeSet<u64> = ran.iter().map(|a| a >> 12).collect();
    let mut e = BlockEnds {
        blocks: blocks.len() as u64,
        code_pages: pages.len() as u64,
        ..BlockEnds::default()
    };
    let mut one_sided = BTreeMap::<String, u64>::new();
    let mut callees = BTreeMap::<String, BTreeSet<u64>>::new();
    let name = |addr: u64| names.name(addr).unwrap_or_else(|| format!("{addr:#x}"));
    for last in blocks.iter().filter_map(|b| b.last()) {
        match End::of(last) {
            End::Conditional => {
                e.conditional += 1;
                let taken = last.target().is_none_or(|t| ran.contains(&t));
                if !(taken && ran.contains(&last.next())) {
                    e.one_sided += 1;
                    *one_sided.entry(name(last.addr)).or_default() += 1;
                }
            }
            End::Jump => e.jump += 1,
            End::Call => {
                e.call += 1;
                if let Some(t) = last.target() {
                    let callee = names.function(t).unwrap_or_else(|| name(t));
                    callees.entry(callee).or_default().insert(last.addr);
                }
            }
            End::Return => e.ret += 1,
            End::String => e.string += 1,
            End::Other => e.other += 1,
        }
    }
    e.one_sided_by_line = most_first(one_sided);
    e.call_sites_by_callee = most_first(
        callees
            .into_iter()
            .map(|(k, v)| (k, v.len() as u64))
            .collect(),
    );
    e
}

fn most_first(map: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = map.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// The counts as markdown: one line of totals, then the `top` lines with the
/// most one-sided conditional ends and the `top` callees with the most call
/// sites.
pub fn render(e: &BlockEnds, top: usize) -> String {
    let mut s = format!(
        "\nBlock ends: {} blocks; {} conditional ({} with a side this boot never ran), {} jumps, \
         {} calls, {} returns, {} string instructions, {} other (mode switches, segment and \
         control registers); code on {} pages of 4 KiB\n\n\
         | source of a one-sided conditional end | ends |\n|---|---|\n",
        e.blocks,
        e.conditional,
        e.one_sided,
        e.jump,
        e.call,
        e.ret,
        e.string,
        e.other,
        e.code_pages
    );
    for (line, n) in e.one_sided_by_line.iter().take(top) {
        s += &format!("| {line} | {n} |\n");
    }
    s += "\n| callee | call sites run |\n|---|---|\n";
    for (callee, n) in e.call_sites_by_callee.iter().take(top) {
        s += &format!("| {callee} | {n} |\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
----------------
IN: 
0x00010000:  48 85 c0                 testq    %rax, %rax
0x00010003:  75 10                    jne      0x10015

----------------
IN: 
0x00010005:  e8 f6 0f 00 00           callq    0x11000

----------------
IN: 
0x00011000:  f3 48 ab                 rep stosq %rax, (%rdi)

----------------
IN: 
0x00011003:  c3                       retq     

----------------
IN: 
0x0001000a:  48 39 d8                 cmpq     %rbx, %rax
0x0001000d:  72 f1                    jb       0x10000

----------------
IN: 
0x0001000f:  e8 ec 0f 00 00           callq    0x11000

----------------
IN: 
0x00010014:  90                       nop      
0x00010015:  eb 09                    jmp      0x10020

----------------
IN: 
0x00010020:  48 c7 84 24 e8 00 00 00  movq     $0x32c48, 0xe8(%rsp)
0x00010028:  48 2c 03 00
0x0001002c:  0f 30                    wrmsr    
";

    struct Fake;
    impl CodeNames for Fake {
        fn name(&self, addr: u64) -> Option<String> {
            (addr < 0x10010).then(|| format!("firmware/src/main.rs:{}", addr & 0xFF))
        }
        fn function(&self, addr: u64) -> Option<String> {
            (addr == 0x11000).then(|| "ferrite::mem::zero".into())
        }
    }

    #[test]
    fn instructions_are_parsed_with_their_length_and_prefix() {
        let i =
            Logged::parse("0x00011000:  f3 48 ab                 rep stosq %rax, (%rdi)").unwrap();
        assert_eq!(
            (i.addr, i.len, i.mnemonic.as_str(), i.rep),
            (0x11000, 3, "stosq", true)
        );
        let j = Logged::parse("0x00010003:  75 10                    jne      0x10015").unwrap();
        assert_eq!(
            (j.target(), j.next(), j.rep),
            (Some(0x10015), 0x10005, false)
        );
        assert_eq!(Logged::parse("IN: rust_main"), None);
        // `movsbl` moves with sign extension: no string instruction
        let m = Logged::parse("0x10:  0f be 07                 movsbl   (%rdi), %eax").unwrap();
        assert_eq!(End::of(&m), End::Other);
    }

    #[test]
    fn ends_are_counted_by_kind_and_one_sided_branches_found() {
        let b = blocks(LOG.as_bytes()).unwrap();
        assert_eq!(b.len(), 8);
        // the 12-byte move's last four bytes are on a line of their own
        assert_eq!(
            b[7].iter().map(|i| (i.addr, i.len)).collect::<Vec<_>>(),
            [(0x10020, 12), (0x1002c, 2)]
        );
        let e = analyse(&b, &Fake);
        assert_eq!(
            (
                e.blocks,
                e.conditional,
                e.jump,
                e.call,
                e.ret,
                e.string,
                e.other
            ),
            (8, 2, 1, 2, 1, 1, 1)
        );
        // Both branches ran both ways: `jne` at 0x10003 to 0x10005 and to
        // 0x10015, `jb` at 0x1000d to 0x10000 and to 0x1000f.
        assert_eq!(e.one_sided, 0);
        assert_eq!(e.code_pages, 2);
        assert_eq!(
            e.call_sites_by_callee,
            [("ferrite::mem::zero".to_string(), 2)]
        );

        // Without the fall-through block of `jne`, that branch is one-sided.
        let without: Vec<Vec<Logged>> = b
            .iter()
            .filter(|blk| blk[0].addr != 0x10005)
            .cloned()
            .collect();
        let e = analyse(&without, &Fake);
        assert_eq!(e.one_sided, 1);
        assert_eq!(
            e.one_sided_by_line,
            [("firmware/src/main.rs:3".to_string(), 1)]
        );
        // one call site left
        assert_eq!(
            e.call_sites_by_callee,
            [("ferrite::mem::zero".to_string(), 1)]
        );
        let text = render(&e, 5);
        assert!(
            text.contains("2 conditional (1 with a side this boot never ran)"),
            "{text}"
        );
        assert!(text.contains("| firmware/src/main.rs:3 | 1 |"), "{text}");
        assert!(text.contains("| ferrite::mem::zero | 1 |"), "{text}");
    }

    #[test]
    fn an_empty_log_has_no_blocks() {
        let e = analyse(&blocks("".as_bytes()).unwrap(), &Fake);
        assert_eq!(e, BlockEnds::default());
    }
}
