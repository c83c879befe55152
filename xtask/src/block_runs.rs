//! How often each translated block ran, and how often TCG had to look the
//! next block up: part of `cargo xtask translation --runs`.
//!
//! TCG links a block straight to the next one (`goto_tb`) only when the
//! jump's target lies in the same 4 KiB page as the block's first
//! instruction (`translator_use_goto_tb`); a return or an indirect jump is
//! never linked. Every other run of such an exit goes through a look-up of
//! the next block (`helper_lookup_tb_ptr`), a few hundred host instructions
//! each. A loop whose body straddles a page boundary pays that on every
//! iteration: one such loop, the ACPI checksum's, cost a build 0.1 M host
//! instructions more than the one before it (docs/performance-history.md,
//! 2026-12-02). So this boots once with `-d exec,nochain,in_asm`, where
//! QEMU logs every run of a block (`Trace` lines), and replays the order of
//! the runs: each step from one block to the next is a look-up when the
//! first block ended in a return or an indirect jump or call, or when the
//! second starts in another page than the first.

use std::collections::BTreeMap;
use std::io::BufRead;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::block_ends::{Logged, blocks};
use crate::translation::CodeNames;

const PAGE_SHIFT: u32 = 12;

/// Why a step from one block to the next is not linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Unlinked {
    /// The block ended in `ret`, `lret` or `iret`.
    Return,
    /// An indirect jump or call (`jmp *%rax`, `call *...`).
    Indirect,
    /// The next block starts in another 4 KiB page.
    OtherPage,
}

/// A block that ran often, or a step between two blocks that needed a
/// look-up, named by the source line of the block's last instruction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hot {
    pub addr: u64,
    pub runs: u64,
    pub name: String,
    /// For a step: why it is not linked.
    pub why: Option<Unlinked>,
}

/// The runs of one boot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Runs {
    /// Every run of a block.
    pub runs: u64,
    /// Steps from one block to the next that needed a look-up.
    pub lookups: u64,
    /// The blocks that ran most, most first.
    pub hottest: Vec<Hot>,
    /// The unlinked steps that happened most, most first.
    pub lookups_by_exit: Vec<Hot>,
}

/// The `pc` of a `Trace` line of `-d exec`:
/// `Trace 0: 0x7f.. [cs_base/pc/flags/cflags] ...`.
pub fn trace_pc(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("Trace ")?;
    let fields = rest.split_once('[')?.1.split_once(']')?.0;
    let pc = fields.split('/').nth(1)?;
    u64::from_str_radix(pc, 16).ok()
}

/// Whether leaving a block that ends in `last` is never linked, and why.
fn unlinked_end(last: &Logged) -> Option<Unlinked> {
    let m = last.mnemonic.as_str();
    let indirect = last.operands.starts_with('*');
    if m.starts_with("ret") || m.starts_with("lret") || m.starts_with("iret") {
        Some(Unlinked::Return)
    } else if (m.starts_with("jmp") || m.starts_with("call")) && indirect {
        Some(Unlinked::Indirect)
    } else {
        None
    }
}

/// Replays the runs of a `-d exec,nochain,in_asm` log; `top` rows per list.
pub fn analyse(log: impl BufRead, names: &impl CodeNames, top: usize) -> Result<Runs> {
    // The two kinds of lines, apart: the translation of each block, and the
    // order of the runs.
    let mut in_asm = String::new();
    let mut order = Vec::new();
    for line in log.lines() {
        let line = line.context("reading the exec log")?;
        if let Some(pc) = trace_pc(&line) {
            order.push(pc);
        } else {
            in_asm.push_str(&line);
            in_asm.push('\n');
        }
    }
    let mut last_of = BTreeMap::new();
    for block in blocks(in_asm.as_bytes())? {
        if let (Some(first), Some(last)) = (block.first(), block.last()) {
            last_of.insert(first.addr, last.clone());
        }
    }
    let mut runs = BTreeMap::<u64, u64>::new();
    let mut steps = BTreeMap::<(u64, Unlinked), u64>::new();
    for (i, &pc) in order.iter().enumerate() {
        *runs.entry(pc).or_default() += 1;
        let Some(&next) = order.get(i + 1) else {
            continue;
        };
        let why = last_of
            .get(&pc)
            .and_then(unlinked_end)
            .or(((pc >> PAGE_SHIFT) != (next >> PAGE_SHIFT)).then_some(Unlinked::OtherPage));
        if let Some(why) = why {
            *steps.entry((pc, why)).or_default() += 1;
        }
    }
    let name = |pc: u64| {
        let at = last_of.get(&pc).map_or(pc, |l| l.addr);
        names.name(at).unwrap_or_else(|| format!("{at:#x}"))
    };
    let mut hottest: Vec<Hot> = runs
        .iter()
        .map(|(&addr, &n)| Hot {
            addr,
            runs: n,
            name: name(addr),
            why: None,
        })
        .collect();
    hottest.sort_by(|a, b| b.runs.cmp(&a.runs).then(a.addr.cmp(&b.addr)));
    hottest.truncate(top);
    let lookups = steps.values().sum();
    let mut lookups_by_exit: Vec<Hot> = steps
        .into_iter()
        .map(|((addr, why), n)| Hot {
            addr,
            runs: n,
            name: name(addr),
            why: Some(why),
        })
        .collect();
    lookups_by_exit.sort_by(|a, b| b.runs.cmp(&a.runs).then(a.addr.cmp(&b.addr)));
    lookups_by_exit.truncate(top);
    Ok(Runs {
        runs: order.len() as u64,
        lookups,
        hottest,
        lookups_by_exit,
    })
}

/// The report as markdown.
pub fn render(r: &Runs) -> String {
    let mut s = format!(
        "\nBlock runs to the kernel entry: {}; steps to the next block that TCG \
         looks up rather than follows a link: {}\n\n",
        r.runs, r.lookups
    );
    s += "| the blocks that ran most | runs |\n|---|---|\n";
    for h in &r.hottest {
        s += &format!("| {} ({:#x}) | {} |\n", h.name, h.addr, h.runs);
    }
    s += "\n| looked up after the block ending at | why | runs |\n|---|---|---|\n";
    for h in &r.lookups_by_exit {
        let why = match h.why {
            Some(Unlinked::Return) => "a return",
            Some(Unlinked::Indirect) => "an indirect jump or call",
            Some(Unlinked::OtherPage) => "the next block is in another page",
            None => "",
        };
        s += &format!("| {} ({:#x}) | {} | {} |\n", h.name, h.addr, why, h.runs);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Names;
    impl CodeNames for Names {
        fn name(&self, addr: u64) -> Option<String> {
            Some(format!("line{addr:x}"))
        }
    }

    #[test]
    fn a_trace_line_gives_its_pc() {
        let line = "Trace 0: 0x7fd5a4000200 [00000000ffff0000/00000000fffff000/00000040/ff000200] ";
        assert_eq!(trace_pc(line), Some(0xfffff000));
        assert_eq!(trace_pc("IN: "), None);
        assert_eq!(trace_pc("Trace 0: 0x1 [nothing]"), None);
    }

    /// A loop whose two blocks lie in two pages needs a look-up at every
    /// step between them; a loop inside one page, none; every return, one.
    #[test]
    fn steps_across_a_page_and_after_a_return_are_looked_up() {
        let log = "\
IN: 
0x00001ff8:  48 83 c0 01              addq     $1, %rax
0x00001ffc:  eb 02                    jmp      0x2000

IN: 
0x00002000:  48 39 c8                 cmpq     %rcx, %rax
0x00002003:  75 f3                    jne      0x1ff8

IN: 
0x00002005:  c3                       retq     

IN: 
0x00003000:  48 ff c1                 incq     %rcx
0x00003003:  75 fb                    jne      0x3000

Trace 0: 0x7f01 [00000000/0000000000001ff8/00000040/ff000200] 
Trace 0: 0x7f02 [00000000/0000000000002000/00000040/ff000200] 
Trace 0: 0x7f01 [00000000/0000000000001ff8/00000040/ff000200] 
Trace 0: 0x7f02 [00000000/0000000000002000/00000040/ff000200] 
Trace 0: 0x7f03 [00000000/0000000000002005/00000040/ff000200] 
Trace 0: 0x7f04 [00000000/0000000000003000/00000040/ff000200] 
Trace 0: 0x7f04 [00000000/0000000000003000/00000040/ff000200] 
Trace 0: 0x7f04 [00000000/0000000000003000/00000040/ff000200] 
";
        let r = analyse(log.as_bytes(), &Names, 10).unwrap();
        assert_eq!(r.runs, 8);
        // 1ff8 -> 2000 twice and 2000 -> 1ff8 once cross a page; the
        // return once; 2000 -> 2005 and the loop at 3000 stay linked.
        assert_eq!(r.lookups, 4);
        let first = &r.lookups_by_exit[0];
        assert_eq!(
            (first.addr, first.runs, first.why),
            (0x1ff8, 2, Some(Unlinked::OtherPage))
        );
        assert!(
            r.lookups_by_exit
                .iter()
                .any(|h| h.addr == 0x2005 && h.why == Some(Unlinked::Return) && h.runs == 1)
        );
        assert_eq!((r.hottest[0].addr, r.hottest[0].runs), (0x3000, 3));
        // named by the line of the block's last instruction
        assert_eq!(first.name, "line1ffc");
    }
}
