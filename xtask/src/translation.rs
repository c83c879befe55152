//! `cargo xtask translation`: where ferrite's translation time under TCG goes,
//! step by step and source line by source line.
//!
//! Under TCG a firmware's cost is translating code that it runs once (README,
//! "The cost model"). With LTO nearly all of ferrite is inlined into
//! `rust_main`, so a profile by function names one function. This boots a
//! build of ferrite that carries DWARF line tables and inlining records
//! ([`crate::rom::build_firmware_with_lines`]) once with `-d in_asm`, splits
//! the log at the timeline's stamps as the bench does, and gives every
//! translated instruction to the innermost frame of its inlining chain that
//! is ferrite's own source (`firmware/src/...`). Library code inlined there
//! (`core`'s `min`, a slice's bounds check) counts for the line that used it.
//! Code without a line (the assembly of the reset vector and the mode
//! switches) counts under its symbol.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{Context, Result, ensure};
use serde::Serialize;

use crate::bench::cost::{Translated, exec_log, in_asm_log, step_counter, translated_by};
use crate::block_ends::{self, BlockEnds};
use crate::block_runs;
use crate::probe;
use crate::qemu::Machine;
use crate::symbols::Symbols;

/// Where the firmware's own source files are, in a path DWARF records.
const FIRMWARE_SRC: &str = "firmware/src/";

/// The name of the code at an address.
pub trait CodeNames {
    /// `firmware/src/FILE:LINE` of the innermost frame in ferrite's source,
    /// else the symbol, else None.
    fn name(&self, addr: u64) -> Option<String>;
    /// The function `addr` lies in, if known.
    fn function(&self, _addr: u64) -> Option<String> {
        None
    }
}

/// The innermost of `frames` (innermost first: file and line of each) that
/// lies in ferrite's source, as `firmware/src/FILE:LINE`: the path from
/// `firmware/src/` on, so that no machine's directory shows.
pub fn firmware_frame<'a>(
    frames: impl IntoIterator<Item = (Option<&'a str>, Option<u32>)>,
) -> Option<String> {
    frames.into_iter().find_map(|(file, line)| {
        let at = file?.find(FIRMWARE_SRC)?;
        let file = &file?[at..];
        Some(match line {
            Some(l) => format!("{file}:{l}"),
            // line 0: code the compiler made for no one line
            None => format!("{file} (no line)"),
        })
    })
}

type Reader = gimli::EndianRcSlice<gimli::RunTimeEndian>;

/// Names from an ELF's DWARF (addr2line) and its symbol table.
pub struct DwarfNames {
    lines: addr2line::Context<Reader>,
    symbols: SymbolNames,
}

impl DwarfNames {
    pub fn new(elf: &[u8]) -> Result<DwarfNames> {
        use object::{Object, ObjectSection};
        let file = object::File::parse(elf).context("not an ELF file")?;
        let endian = if file.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let dwarf = gimli::Dwarf::load(|id| -> Result<Reader, gimli::Error> {
            let data = file
                .section_by_name(id.name())
                .and_then(|s| s.data().ok())
                .map_or(Cow::Borrowed(&[][..]), Cow::Borrowed);
            Ok(gimli::EndianRcSlice::new(Rc::from(&*data), endian))
        })?;
        ensure!(
            file.section_by_name(".debug_line").is_some(),
            "the firmware's ELF has no line tables (build it with debug information)"
        );
        Ok(DwarfNames {
            lines: addr2line::Context::from_dwarf(dwarf).context("reading the DWARF")?,
            symbols: SymbolNames(Symbols::from_elf(elf)?),
        })
    }

    fn frames(&self, addr: u64) -> Vec<(Option<&str>, Option<u32>)> {
        let mut out = Vec::new();
        if let Ok(mut frames) = self.lines.find_frames(addr).skip_all_loads() {
            while let Ok(Some(frame)) = frames.next() {
                if let Some(loc) = frame.location {
                    out.push((loc.file, loc.line));
                }
            }
        }
        out
    }
}

impl CodeNames for DwarfNames {
    fn name(&self, addr: u64) -> Option<String> {
        firmware_frame(self.frames(addr)).or_else(|| self.symbols.name(addr))
    }
    fn function(&self, addr: u64) -> Option<String> {
        self.symbols.function(addr)
    }
}

/// Names by symbol alone, for a build without line tables.
pub struct SymbolNames(pub Symbols);

impl CodeNames for SymbolNames {
    fn name(&self, addr: u64) -> Option<String> {
        self.0.lookup(addr).map(|s| format!("symbol {s}"))
    }
    fn function(&self, addr: u64) -> Option<String> {
        self.0.lookup(addr).map(str::to_string)
    }
}

/// Translated code under one name, in one step or in all.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cost {
    pub name: String,
    #[serde(flatten)]
    pub code: Translated,
    /// By the calibrated model ([`Translated::model_us`]).
    pub model_us: f64,
}

impl Cost {
    fn new(name: String, code: Translated) -> Cost {
        Cost {
            name,
            code,
            model_us: code.model_us(),
        }
    }
}

/// One boot's translated code, by step and by source line.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: String,
    /// In the timeline's order, then `handoff` (the zero page to the jump).
    pub steps: Vec<Cost>,
    /// Every step's lines, costliest first.
    pub lines: Vec<Cost>,
    /// The same by source file (or symbol), costliest first.
    pub files: Vec<Cost>,
    /// The lines of each step, costliest first, keyed by step.
    pub lines_by_step: BTreeMap<String, Vec<Cost>>,
    /// Instructions translated again: TCG starts a block wherever execution
    /// enters code, so code that an earlier block ran through and that is
    /// then jumped into (a loop's top, where two paths join) is translated a
    /// second time. Their count, and by source line, most first.
    pub second_copies: u64,
    pub second_copies_by_line: Vec<(String, u64)>,
    /// What ends the blocks ([`crate::block_ends`]); filled in by [`run`].
    pub block_ends: BlockEnds,
    /// How often the blocks ran, and the look-ups between them
    /// ([`crate::block_runs`]): with `--runs`.
    pub runs: Option<crate::block_runs::Runs>,
}

/// Step `i` of a boot split at `segments` - 1 stamps: named as the bench
/// names them when the count is the timeline's.
fn step_name(i: usize, segments: usize) -> String {
    use ferrite_contract::timeline::STEPS;
    match (segments == STEPS.len(), STEPS.get(i + 1)) {
        (true, Some(name)) => (*name).to_string(),
        (true, None) => "handoff".into(),
        (false, _) => format!("segment {i}"),
    }
}

/// The file part of a line's name (`firmware/src/acpi.rs:207` and
/// `firmware/src/acpi.rs (no line)`: `firmware/src/acpi.rs`); a symbol's
/// name whole.
fn file_of(name: &str) -> &str {
    if !name.starts_with(FIRMWARE_SRC) {
        return name;
    }
    let end = name.find([':', ' ']).unwrap_or(name.len());
    &name[..end]
}

fn costliest_first(map: BTreeMap<String, Translated>) -> Vec<Cost> {
    let mut v: Vec<Cost> = map.into_iter().map(|(k, t)| Cost::new(k, t)).collect();
    v.sort_by(|a, b| b.model_us.total_cmp(&a.model_us).then(a.name.cmp(&b.name)));
    v
}

/// Attributes a `-d in_asm` log: split at the `stamps` (a block counts
/// where it starts), and named by `names` (`?` for an address with no name).
pub fn attribute(
    log: impl std::io::BufRead,
    stamps: &[u64],
    names: &impl CodeNames,
    machine: &str,
) -> Result<Report> {
    let mut step_of = step_counter(stamps);
    let mut cache = BTreeMap::<u64, String>::new();
    let mut second = BTreeMap::<String, u64>::new();
    let by_step_line = translated_by(log, |addr| {
        let seen = cache.contains_key(&addr);
        let name = cache
            .entry(addr)
            .or_insert_with(|| names.name(addr).unwrap_or_else(|| "?".into()))
            .clone();
        if seen {
            *second.entry(name.clone()).or_default() += 1;
        }
        (step_of(addr), name)
    })?;
    let mut second_copies_by_line: Vec<(String, u64)> = second.into_iter().collect();
    second_copies_by_line.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let segments = by_step_line
        .last_key_value()
        .map_or(1, |((last, _), _)| last + 1);
    let mut steps = vec![Translated::default(); segments];
    let mut lines = BTreeMap::<String, Translated>::new();
    let mut files = BTreeMap::<String, Translated>::new();
    let mut per_step = BTreeMap::<String, BTreeMap<String, Translated>>::new();
    for ((i, name), t) in by_step_line {
        steps[i].add(t);
        lines.entry(name.clone()).or_default().add(t);
        files.entry(file_of(&name).to_string()).or_default().add(t);
        per_step
            .entry(step_name(i, segments))
            .or_default()
            .entry(name)
            .or_default()
            .add(t);
    }
    Ok(Report {
        machine: machine.into(),
        steps: steps
            .into_iter()
            .enumerate()
            .map(|(i, t)| Cost::new(step_name(i, segments), t))
            .collect(),
        lines: costliest_first(lines),
        files: costliest_first(files),
        lines_by_step: per_step
            .into_iter()
            .map(|(k, v)| (k, costliest_first(v)))
            .collect(),
        second_copies: second_copies_by_line.iter().map(|(_, n)| n).sum(),
        second_copies_by_line,
        block_ends: BlockEnds::default(),
        runs: None,
    })
}

pub struct Options {
    pub machine: Machine,
    /// Lines listed per table.
    pub top: usize,
    /// Also list the lines of this step.
    pub step: Option<String>,
    pub json: Option<PathBuf>,
    /// Also count the blocks' runs (one more boot, `-d exec,nochain`).
    pub runs: bool,
    /// Boot a probe shaped like this kernel instead of the stock-size one:
    /// a bzImage's size, or an ELF vmlinux's segments and PVH note (the PVH
    /// path's code).
    pub kernel: Option<PathBuf>,
}

/// The boot to log: the stock-size probe, or one shaped like `kernel`.
fn boot(work: &Path, opts: &Options, rom: PathBuf) -> Result<crate::qemu::Qemu> {
    let mut q = probe::stock_size_boot(work, opts.machine, rom)?;
    if let Some(kernel) = &opts.kernel {
        crate::pvh_probe::boot_like(&mut q, work, kernel)?;
    }
    Ok(q)
}

/// Builds ferrite with line tables, boots it once under TCG with a probe
/// kernel of a stock kernel's size (or shaped like `opts.kernel`) and a
/// 2 MiB initrd, and prints the report.
pub fn run(opts: &Options) -> Result<Report> {
    let rom = crate::rom::build_firmware_with_lines()?;
    let elf = std::fs::read(&rom.elf).with_context(|| format!("reading {}", rom.elf.display()))?;
    let stamps = crate::rom::stamp_addresses(&elf)?;
    let names = DwarfNames::new(&elf)?;
    let scratch = crate::run_dir("translation")?;
    let work = scratch.path().to_path_buf();
    let q = boot(&work, opts, rom.path.clone())?;
    let log = in_asm_log(&q, &work)?;
    let open = || -> Result<_> { Ok(BufReader::new(std::fs::File::open(&log)?)) };
    let mut report = attribute(open()?, &stamps, &names, opts.machine.name())?;
    report.block_ends = block_ends::analyse(&block_ends::blocks(open()?)?, &names);
    if opts.runs {
        // The release build itself: whether a loop straddles a page depends
        // on where its code lands to the byte, and the line-table build's
        // may land a few bytes away. Named by its symbols.
        let release = crate::rom::build_firmware(true)?;
        let elf = std::fs::read(&release.elf)
            .with_context(|| format!("reading {}", release.elf.display()))?;
        let work = work.join("runs");
        let q = boot(&work, opts, release.path)?;
        let log = exec_log(&q, &work)?;
        report.runs = Some(block_runs::analyse(
            BufReader::new(std::fs::File::open(&log)?),
            &SymbolNames(Symbols::from_elf(&elf)?),
            opts.top,
        )?);
    }
    print!("{}", render(&report, opts.top, opts.step.as_deref()));
    if let Some(runs) = &report.runs {
        print!("{}", block_runs::render(runs));
    }
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(report)
}

fn row(c: &Cost) -> String {
    format!(
        "| {} | {} / {} / {} | {:.0} |\n",
        c.name, c.code.blocks, c.code.instructions, c.code.memory, c.model_us
    )
}

/// The report as markdown tables: the steps, the costliest lines of the
/// whole boot, and those of `step` if asked.
pub fn render(r: &Report, top: usize, step: Option<&str>) -> String {
    let mut s = format!(
        "ferrite's code translated under TCG on {}, to the kernel entry: blocks / \
         instructions / memory instructions, and µs by the cost model\n\n",
        r.machine
    );
    s += "| step | translated | µs |\n|---|---|---|\n";
    for c in &r.steps {
        s += &row(c);
    }
    let mut total = Translated::default();
    for c in &r.steps {
        total.add(c.code);
    }
    s += &row(&Cost::new("total".into(), total));
    let mut table = |title: &str, lines: &[Cost]| {
        s += &format!("\n{title}\n\n| source | translated | µs |\n|---|---|---|\n");
        for c in lines.iter().take(top) {
            s += &row(c);
        }
    };
    table("By source file (or symbol):", &r.files);
    table("The costliest source lines of the boot:", &r.lines);
    if let Some(step) = step {
        let lines = r.lines_by_step.get(step).map_or(&[][..], Vec::as_slice);
        table(&format!("The costliest source lines of {step}:"), lines);
    }
    s += &format!(
        "\nTranslated a second time, in a block that entered code an earlier block had \
         run through (a loop's top, a join; see mem::block_boundary): {} of {} instructions\n\n\
         | source | instructions |\n|---|---|\n",
        r.second_copies, total.instructions
    );
    for (name, n) in r.second_copies_by_line.iter().take(top) {
        s += &format!("| {name} | {n} |\n");
    }
    if r.block_ends.blocks > 0 {
        s += &block_ends::render(&r.block_ends, top);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
----------------
IN: 
0xfffffff0:  ea 00 00 00 f0           ljmpw    $0xf000:$0x0

----------------
IN: rust_main
0x00010000:  48 89 44 24 08           movq     %rax, 8(%rsp)
0x00010005:  0f 31                    rdtsc    
0x00010007:  90                       nop      

----------------
IN: 
0x00010010:  0f 31                    rdtsc    
0x00010012:  90                       nop      

----------------
IN: 
0x00010012:  90                       nop      
";

    struct Fake;
    impl CodeNames for Fake {
        fn name(&self, addr: u64) -> Option<String> {
            match addr {
                0x10000..=0x10007 => Some("firmware/src/main.rs:10".into()),
                0x10010.. if addr < 0x20000 => Some("firmware/src/acpi.rs:7".into()),
                _ => None,
            }
        }
    }

    #[test]
    fn splits_at_stamps_and_names_lines() {
        let r = attribute(LOG.as_bytes(), &[0x10005, 0x10010], &Fake, "pc").unwrap();
        let steps: Vec<_> = r
            .steps
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.code.blocks,
                    c.code.instructions,
                    c.code.memory,
                )
            })
            .collect();
        // three segments, not the timeline's eleven: numbered
        assert_eq!(
            steps,
            [
                // the far jump and the store both touch memory
                ("segment 0", 2, 2, 2),
                ("segment 1", 0, 2, 0),
                // the last block enters the one before at its second
                // instruction: translated again
                ("segment 2", 2, 3, 0)
            ]
        );
        let lines: Vec<_> = r
            .lines
            .iter()
            .map(|c| (c.name.as_str(), c.code.blocks, c.code.instructions))
            .collect();
        // costliest first: acpi.rs's two blocks and three register
        // instructions (4.5 µs), main.rs's block and three instructions
        // (2.9 µs), the unnamed reset vector's block and far jump (2.5 µs)
        assert_eq!(
            lines,
            [
                ("firmware/src/acpi.rs:7", 2, 3),
                ("firmware/src/main.rs:10", 1, 3),
                ("?", 1, 1),
            ]
        );
        assert_eq!(r.second_copies, 1);
        assert_eq!(
            r.second_copies_by_line,
            [("firmware/src/acpi.rs:7".to_string(), 1)]
        );
        assert_eq!(r.lines_by_step["segment 1"].len(), 1);
        let total: f64 = r.steps.iter().map(|c| c.model_us).sum();
        let whole = crate::bench::cost::translated(LOG.as_bytes()).unwrap();
        assert!((total - whole.model_us()).abs() < 1e-9);
        let text = render(&r, 2, Some("segment 2"));
        assert!(text.contains("| total | 4 / 7 / 2 |"), "{text}");
        assert!(text.contains("1 of 7 instructions"), "{text}");
        assert!(text.contains("The costliest source lines of segment 2"));
        assert!(text.contains("| firmware/src/acpi.rs:7 |"), "{text}");
        let text = render(&r, 1, None);
        assert!(
            !text.contains("| ? |") && !text.contains("main.rs"),
            "{text}"
        );
    }

    #[test]
    fn lines_group_by_file() {
        assert_eq!(file_of("firmware/src/acpi.rs:207"), "firmware/src/acpi.rs");
        assert_eq!(
            file_of("firmware/src/acpi.rs (no line)"),
            "firmware/src/acpi.rs"
        );
        assert_eq!(file_of("symbol memcpy"), "symbol memcpy");
        assert_eq!(file_of("?"), "?");
    }

    #[test]
    fn steps_take_the_timelines_names() {
        let n = ferrite_contract::timeline::STEPS.len();
        assert_eq!(step_name(0, n), "rust");
        assert_eq!(step_name(n - 2, n), "zero_page");
        assert_eq!(step_name(n - 1, n), "handoff");
        assert_eq!(step_name(3, 5), "segment 3");
    }

    #[test]
    fn the_innermost_frame_in_ferrites_source_names_the_line() {
        let frames = [
            (Some("/rustc/abc/library/core/src/cmp.rs"), Some(1077)),
            (Some("/home/x/ferrite/firmware/src/acpi.rs"), Some(207)),
            (Some("/home/x/ferrite/firmware/src/main.rs"), Some(98)),
        ];
        assert_eq!(
            firmware_frame(frames).as_deref(),
            Some("firmware/src/acpi.rs:207")
        );
        assert_eq!(
            firmware_frame([(Some("/x/firmware/src/pci/bus.rs"), None)]).as_deref(),
            Some("firmware/src/pci/bus.rs (no line)")
        );
        assert_eq!(
            firmware_frame([(Some("/rustc/x/core/src/hint.rs"), Some(1))]),
            None
        );
        assert_eq!(firmware_frame([(None, Some(3))]), None);
        assert_eq!(firmware_frame([]), None);
    }
}
