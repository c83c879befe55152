//! `cargo xtask profile`: which guest functions a boot's work goes to, after
//! the "Tracing QEMU guest execution" approach. One boot under TCG with
//! `-d in_asm,exec,nochain`: `in_asm` prints each translation block once as it
//! is translated (its instructions), `exec` with chaining off prints every
//! execution of a block. The log streams through a FIFO and is counted on the
//! fly (it runs to gigabytes): instructions executed are each execution's
//! block size (the block's latest translation), attributed to the function
//! holding the block's first instruction; code translated is the
//! instructions of every translation. Names come from the firmware's ELF
//! (ferrite's own, or `--firmware-symbols` for qboot and SeaBIOS) and the
//! kernel's vmlinux or System.map; the kernel's early code, which runs at
//! physical addresses, is named through `__START_KERNEL_map`. Host time is not
//! attributed: the log itself slows the guest many times over and unevenly.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferrite_contract::{marker, qemu_exit};
use serde::Serialize;

use crate::bench::Firmware;
use crate::qemu::{Machine, Qemu};
use crate::symbols::Symbols;

/// Where x86-64 Linux maps its image: virtual = physical + this.
const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;

/// Counts per translation block, by its first instruction's linear address.
#[derive(Clone, Debug, Default)]
pub struct Blocks {
    /// Instructions of the block's latest translation.
    pub size: HashMap<u64, u32>,
    /// Executions.
    pub executed: HashMap<u64, u64>,
    /// Instructions translated, over every translation of the block.
    pub translated: HashMap<u64, u64>,
    /// Executions of a block never seen translated (counted as 1 instruction).
    pub unsized_executions: u64,
}

/// Reads QEMU's `-d in_asm,exec` log, line by line.
#[derive(Default)]
pub struct LogParser {
    pub blocks: Blocks,
    /// The block being disassembled: its start and instructions so far.
    current: Option<(u64, u32)>,
}

/// `Trace 0: 0x7f.. [00000000/00000000fffffff0/00000000/ff000000] sym` → the
/// block's pc (the second bracketed field).
pub fn exec_pc(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("Trace ")?;
    let (_, fields) = rest.split_once('[')?;
    let (fields, _) = fields.split_once(']')?;
    let pc = fields.split('/').nth(1)?;
    u64::from_str_radix(pc, 16).ok()
}

/// `0x000fffff:  jmp ...` → the instruction's address.
fn insn_address(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("0x")?;
    let (addr, _) = rest.split_once(':')?;
    u64::from_str_radix(addr.trim(), 16).ok()
}

impl LogParser {
    pub fn line(&mut self, line: &str) {
        if let Some(pc) = exec_pc(line) {
            self.finish_block();
            *self.blocks.executed.entry(pc).or_default() += 1;
            if !self.blocks.size.contains_key(&pc) {
                self.blocks.unsized_executions += 1;
            }
            return;
        }
        if line.starts_with("----------------") || line.starts_with("IN:") {
            self.finish_block();
            if line.starts_with("IN:") {
                self.current = Some((u64::MAX, 0));
            }
            return;
        }
        if let (Some(addr), Some((start, n))) = (insn_address(line), self.current.as_mut()) {
            if *n == 0 {
                *start = addr;
            }
            *n += 1;
            return;
        }
        if line.trim().is_empty() {
            self.finish_block();
        }
    }

    fn finish_block(&mut self) {
        if let Some((start, n)) = self.current.take()
            && n > 0
        {
            self.blocks.size.insert(start, n);
            *self.blocks.translated.entry(start).or_default() += n as u64;
        }
    }

    pub fn finish(mut self) -> Blocks {
        self.finish_block();
        self.blocks
    }
}

/// Names addresses: the firmware's symbols, the kernel's (virtual, and
/// physical through `__START_KERNEL_map`), else the MiB they lie in.
pub struct Resolver {
    pub firmware_name: String,
    pub firmware: Symbols,
    pub kernel: Symbols,
    /// Where the bzImage runs and decompresses (`pref_address` … `+ init_size`).
    pub kernel_image: Option<(u64, u64)>,
}

/// `pref_address` … `+ init_size` from a bzImage's setup header (protocol
/// 2.10 on), where the kernel's decompressor runs.
pub fn bzimage_run_range(image: &[u8]) -> Option<(u64, u64)> {
    use ferrite_contract::setup_header as at;
    let u16_at = |o: usize| Some(u16::from_le_bytes(image.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(image.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(image.get(o..o + 8)?.try_into().ok()?));
    if u32_at(at::HEADER)? != at::MAGIC || u16_at(at::VERSION)? < 0x020A {
        return None;
    }
    let start = u64_at(at::PREF_ADDRESS)?;
    Some((start, start.checked_add(u32_at(at::INIT_SIZE)? as u64)?))
}

impl Resolver {
    pub fn name(&self, addr: u64) -> String {
        if let Some(f) = self.kernel.lookup(addr) {
            return format!("kernel {f}");
        }
        if let Some(f) = self.firmware.lookup(addr) {
            return format!("{} {f}", self.firmware_name);
        }
        if let Some(f) = self.kernel.lookup(addr.wrapping_add(START_KERNEL_MAP)) {
            return format!("kernel {f} (physical)");
        }
        if addr >= START_KERNEL_MAP {
            return "[kernel, no symbol]".into();
        }
        if let Some((start, end)) = self.kernel_image
            && (start..end).contains(&addr)
        {
            return "[kernel image, no symbol: the bzImage decompressor or early code]".into();
        }
        if (0xFFFC_0000..1 << 32).contains(&addr) || (0xC_0000..0x10_0000).contains(&addr) {
            return format!("[{} ROM or BIOS segment, no symbol]", self.firmware_name);
        }
        let mib = addr >> 20;
        format!("[no symbol, {mib} MiB–{} MiB]", mib + 1)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FunctionCost {
    pub function: String,
    pub executed: u64,
    pub translated: u64,
}

/// Instructions executed and translated per function, most executed first.
pub fn attribute(blocks: &Blocks, resolver: &Resolver) -> Vec<FunctionCost> {
    let mut by: HashMap<String, (u64, u64)> = HashMap::new();
    let mut names: HashMap<u64, String> = HashMap::new();
    let mut name = |pc: u64| names.entry(pc).or_insert_with(|| resolver.name(pc)).clone();
    for (&pc, &n) in &blocks.executed {
        let size = blocks.size.get(&pc).copied().unwrap_or(1) as u64;
        by.entry(name(pc)).or_default().0 += n * size;
    }
    for (&pc, &n) in &blocks.translated {
        by.entry(name(pc)).or_default().1 += n;
    }
    let mut out: Vec<FunctionCost> = by
        .into_iter()
        .map(|(function, (executed, translated))| FunctionCost {
            function,
            executed,
            translated,
        })
        .collect();
    out.sort_by(|a, b| {
        b.executed
            .cmp(&a.executed)
            .then(b.translated.cmp(&a.translated))
            .then(a.function.cmp(&b.function))
    });
    out
}

/// The lines of the functions at or above `min_share` of the total of `key`.
pub fn listing(
    costs: &[FunctionCost],
    key: fn(&FunctionCost) -> u64,
    min_share: f64,
) -> Vec<String> {
    let total: u64 = costs.iter().map(key).sum();
    if total == 0 {
        return Vec::new();
    }
    let mut v: Vec<&FunctionCost> = costs
        .iter()
        .filter(|c| key(c) as f64 / total as f64 >= min_share)
        .collect();
    v.sort_by_key(|c| std::cmp::Reverse(key(c)));
    v.into_iter()
        .map(|c| {
            format!(
                "{:6.2} % {:>14} {}",
                key(c) as f64 * 100.0 / total as f64,
                key(c),
                c.function
            )
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct Options {
    pub firmware: Firmware,
    pub firmware_symbols: Option<PathBuf>,
    pub machine: Machine,
    pub kernel_name: String,
    pub kernel: PathBuf,
    pub kernel_symbols: Option<PathBuf>,
    /// List functions at or above this share (0.002 = 0.2 %).
    pub min_share: f64,
    pub json: Option<PathBuf>,
}

#[derive(Serialize)]
struct Report<'a> {
    firmware: &'a str,
    machine: &'a str,
    kernel: &'a str,
    end: &'a str,
    executed_total: u64,
    translated_total: u64,
    functions: &'a [FunctionCost],
}

/// Streams the log at `fifo` into a parser until its writer closes it.
fn read_log(fifo: PathBuf) -> std::thread::JoinHandle<Result<Blocks>> {
    std::thread::spawn(move || {
        let file = std::fs::File::open(&fifo).with_context(|| fifo.display().to_string())?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut parser = LogParser::default();
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                break;
            }
            parser.line(line.trim_end());
        }
        Ok(parser.finish())
    })
}

pub fn run(opts: &Options, ferrite: &crate::rom::Rom) -> Result<()> {
    let firmware_symbols = match (&opts.firmware_symbols, opts.firmware) {
        (Some(p), _) => Symbols::load(p)?,
        (None, Firmware::Ferrite) => Symbols::load(&ferrite.elf)?,
        (None, _) => Symbols::default(),
    };
    let kernel_symbols = match &opts.kernel_symbols {
        Some(p) => Symbols::load(p)?,
        None => Symbols::default(),
    };
    let image = opts
        .firmware
        .image(&ferrite.path, opts.machine)
        .map_err(anyhow::Error::msg)?;
    let work = crate::linux_assets::cache_dir().join("profile");
    std::fs::create_dir_all(&work)?;
    let token = "ferrite.profile=1";
    let initrd = crate::linux_assets::build_initramfs(
        &crate::linux_assets::InitramfsSpec {
            expect_cpus: 1,
            expect_mem_mib: 512,
            cmdline_token: token.into(),
            payload_len: 4096,
            poweroff: true,
            kernel_reserves_mib: 0,
        },
        &work.join("initramfs.cpio"),
    )?;
    let fifo = work.join("exec-log.fifo");
    crate::qemu::make_fifo(&fifo)?;
    let mut q = Qemu::new(opts.machine, image);
    q.memory_mib = 512;
    q.kernel = Some(opts.kernel.clone());
    q.initrd = Some(initrd.path);
    let mut append = format!("console=ttyS0 quiet panic=-1 nokaslr {token}");
    if let (Machine::Microvm, Some(khz)) = (opts.machine, crate::bench::tsc_khz()) {
        append += &format!(" tsc_early_khz={khz}");
    }
    q.append = Some(append);
    // The small kernel writes 2 to 0xf6 in kernel_init, /init does too.
    q.exit_ports = vec![marker::USER_PORT];
    q.timeout = Duration::from_secs(3600);
    q.extra.extend([
        "-d".into(),
        "in_asm,exec,nochain".into(),
        "-D".into(),
        fifo.display().to_string(),
    ]);
    let end = "the first 0xf6 marker (the small kernel's kernel_init, or /init)";
    eprintln!(
        "profiling {} + the {} kernel on {} to {end}: one TCG boot with every block logged (minutes)",
        opts.firmware.name(),
        opts.kernel_name,
        opts.machine.name()
    );
    let reader = read_log(fifo.clone());
    let outcome = q.run();
    // If QEMU never opened the log, the reader still waits in open(2).
    {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo);
    }
    let blocks = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the log reader panicked"))??;
    let _ = std::fs::remove_file(&fifo);
    let outcome = outcome?;
    ensure!(
        outcome.exit_code == Some(qemu_exit(marker::USER)),
        "the profiled boot did not reach its marker (exit {:?}{}): {}",
        outcome.exit_code,
        if outcome.timed_out { ", timed out" } else { "" },
        outcome.stderr.lines().last().unwrap_or("")
    );
    let resolver = Resolver {
        firmware_name: opts.firmware.name().to_string(),
        firmware: firmware_symbols,
        kernel: kernel_symbols,
        kernel_image: bzimage_run_range(&std::fs::read(&opts.kernel)?),
    };
    let costs = attribute(&blocks, &resolver);
    let executed: u64 = costs.iter().map(|c| c.executed).sum();
    let translated: u64 = costs.iter().map(|c| c.translated).sum();
    println!(
        "{} + {} kernel on {}, QEMU start to {end}, one TCG boot ({:.1} s with the log):",
        opts.firmware.name(),
        opts.kernel_name,
        opts.machine.name(),
        outcome.wall.as_secs_f64()
    );
    println!(
        "  {executed} guest instructions executed (block-granular), {translated} translated, {} blocks",
        blocks.size.len()
    );
    if resolver.kernel.is_empty() {
        println!(
            "  the {} kernel has no symbols here (give --kernel-symbols): its code is counted as '[kernel, no symbol]' or by MiB",
            opts.kernel_name
        );
    }
    if resolver.firmware.is_empty() {
        println!(
            "  no symbols for {} (give --firmware-symbols with its ELF): its code is counted by region",
            opts.firmware.name()
        );
    }
    println!(
        "functions ≥ {:.1} % of the instructions executed:",
        opts.min_share * 100.0
    );
    for l in listing(&costs, |c| c.executed, opts.min_share) {
        println!("  {l}");
    }
    println!(
        "functions ≥ {:.1} % of the code translated:",
        opts.min_share * 100.0
    );
    for l in listing(&costs, |c| c.translated, opts.min_share) {
        println!("  {l}");
    }
    let prefix = format!("{} ", opts.firmware.name());
    let fw: Vec<FunctionCost> = costs
        .iter()
        .filter(|c| c.function.starts_with(&prefix) || c.function.contains(&prefix))
        .cloned()
        .collect();
    let fw_total: u64 = fw.iter().map(|c| c.executed).sum();
    if fw_total > 0 {
        println!(
            "the firmware alone ({fw_total} instructions, {:.3} % of the boot), functions ≥ 1 % of it:",
            fw_total as f64 * 100.0 / executed.max(1) as f64
        );
        for l in listing(&fw, |c| c.executed, 0.01) {
            println!("  {l}");
        }
    }
    if let Some(path) = &opts.json {
        let report = Report {
            firmware: opts.firmware.name(),
            machine: opts.machine.name(),
            kernel: &opts.kernel_name,
            end,
            executed_total: executed,
            translated_total: translated,
            functions: &costs,
        };
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("every function: {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
----------------
IN: 
0xfffffff0:  ljmpl    $0xf000, $0xe05b

Trace 0: 0x7f0000000100 [00000000/00000000fffffff0/00000000/ff000000] 
----------------
IN: 
0x00010000:  pushq    %rbp
0x00010001:  movq     %rsp, %rbp
0x00010004:  jmp      0x10010

Trace 0: 0x7f0000000200 [00000000/0000000000010000/00c000b3/ff000000] 
Trace 0: 0x7f0000000200 [00000000/0000000000010000/00c000b3/ff000000] 
----------------
IN: 
0xffffffff81000000:  nop
0xffffffff81000001:  ret

Trace 0: 0x7f0000000300 [00000000/ffffffff81000000/00c000b3/ff000000] 
Trace 0: 0x7f0000000400 [00000000/0000000001000100/00c000b3/ff000000] 
garbage line
";

    fn parse(log: &str) -> Blocks {
        let mut p = LogParser::default();
        for l in log.lines() {
            p.line(l);
        }
        p.finish()
    }

    #[test]
    fn parses_translations_and_executions() {
        let b = parse(LOG);
        assert_eq!(b.size[&0xfffffff0], 1);
        assert_eq!(b.size[&0x10000], 3);
        assert_eq!(b.size[&0xffffffff81000000], 2);
        assert_eq!(b.executed[&0x10000], 2);
        assert_eq!(b.translated[&0x10000], 3);
        // executed, never seen translated
        assert_eq!(b.executed[&0x1000100], 1);
        assert_eq!(b.unsized_executions, 1);
        assert_eq!(
            exec_pc("Trace 0: 0x1 [00000000/00000000000f0000/0/0] x"),
            Some(0xf0000)
        );
        for bad in ["Trace 0: 0x1", "Trace 0: [zz/yy]", "0x10: nop", ""] {
            assert_eq!(exec_pc(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_where_a_bzimage_runs() {
        let mut hdr = vec![0u8; 0x300];
        hdr[0x202..0x206].copy_from_slice(b"HdrS");
        hdr[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
        hdr[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
        hdr[0x260..0x264].copy_from_slice(&0x80_0000u32.to_le_bytes());
        assert_eq!(bzimage_run_range(&hdr), Some((0x100_0000, 0x180_0000)));
        hdr[0x206..0x208].copy_from_slice(&0x0209u16.to_le_bytes());
        assert_eq!(bzimage_run_range(&hdr), None);
        assert_eq!(bzimage_run_range(b"short"), None);
        assert_eq!(bzimage_run_range(&[0u8; 0x300]), None);
    }

    #[test]
    fn attributes_to_functions() {
        let resolver = Resolver {
            firmware_name: "ferrite".into(),
            firmware: Symbols::new(vec![(0x10000, 0x100, "rust_main".into())]),
            kernel: Symbols::new(vec![
                (0xffffffff81000000, 0x100, "startup_64".into()),
                (0xffffffff81000100, 0x100, "early_setup".into()),
            ]),
            kernel_image: Some((0x100_0000, 0x200_0000)),
        };
        assert_eq!(resolver.name(0x10004), "ferrite rust_main");
        assert_eq!(resolver.name(0xffffffff81000001), "kernel startup_64");
        // physical addresses of the kernel's early code
        assert_eq!(resolver.name(0x1000100), "kernel early_setup (physical)");
        assert_eq!(
            resolver.name(0xfffffff0),
            "[ferrite ROM or BIOS segment, no symbol]"
        );
        assert_eq!(resolver.name(0xffffffff90000000), "[kernel, no symbol]");
        assert_eq!(resolver.name(0x2345678), "[no symbol, 35 MiB–36 MiB]");
        assert!(resolver.name(0x1F00000).contains("decompressor"));
        let costs = attribute(&parse(LOG), &resolver);
        let get = |f: &str| costs.iter().find(|c| c.function == f).unwrap();
        assert_eq!(get("ferrite rust_main").executed, 6);
        assert_eq!(get("ferrite rust_main").translated, 3);
        assert_eq!(get("kernel startup_64").executed, 2);
        assert_eq!(get("kernel early_setup (physical)").executed, 1);
        assert_eq!(costs[0].function, "ferrite rust_main");
        let total: u64 = costs.iter().map(|c| c.executed).sum();
        assert_eq!(total, 10);
        // 1 of 10 is 10 %: kept at 10 %, dropped at 11 %
        let l = listing(&costs, |c| c.executed, 0.10);
        assert_eq!(l.len(), 4, "{l:?}");
        assert!(l[0].contains("60.00 %") && l[0].ends_with("ferrite rust_main"));
        assert_eq!(listing(&costs, |c| c.executed, 0.11).len(), 2);
        assert!(listing(&[], |c| c.executed, 0.0).is_empty());
    }
}
