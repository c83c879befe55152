//! `cargo xtask host-profile`: where QEMU's vCPU thread spends the host's CPU
//! while a firmware boots, firmware beside firmware, name by name.
//!
//! The bench's cost model predicts time from deterministic counts (translated
//! code, exits, rebuilds). This measures instead: `perf record` of each boot
//! to the probe kernel's entry under TCG, QEMU's threads named
//! (`-name debug-threads=on`), the samples of the vCPU thread (`CPU 0/TCG`)
//! counted by symbol, in milliseconds of CPU per boot. Boots alternate between
//! the firmwares, so a slow spell of the host falls on all of them.
//!
//! Distribution builds of QEMU keep only their exported symbols: a sample in
//! one of QEMU's static functions (TCG's front end and register allocator,
//! the memory map's rendering) is named `near F`, after the exported function
//! `F` that precedes it in the binary. That places it in a source file more
//! often than not; the name says that it is an approximation.
//!
//! Sampling at tens of kHz slows the thread it samples, so the times run above
//! the wall clock's; the differences between firmwares are what the tool is
//! for. Of the vCPU thread's time, its part in QEMU and its libraries repeats
//! from run to run; its part in the host kernel (clearing the huge pages that
//! QEMU asks for, for guest RAM and for TCG's code buffer) varied here by
//! several times between runs of the same firmware, so the report shows the
//! two apart.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, ensure};
use serde::Serialize;

use crate::bench::Firmware;
use crate::insn_steps::{perf_qemu, perf_script};
use crate::qemu::{Machine, Qemu};

/// The vCPU thread's name under `-name debug-threads=on`, one vCPU, TCG.
pub const VCPU_THREAD: &str = "CPU 0/TCG";

pub struct Options {
    pub machine: Machine,
    /// Side by side, in this order; the first two are compared.
    pub firmwares: Vec<Firmware>,
    pub boots: usize,
    /// Samples a second (`perf record -F`).
    pub frequency: u32,
    /// Names listed.
    pub top: usize,
    pub json: Option<PathBuf>,
}

/// One firmware's boots: CPU time per boot, in ms.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Profile {
    pub firmware: String,
    pub boots: usize,
    /// Every thread of the QEMU process.
    pub process_ms: f64,
    /// The vCPU thread.
    pub vcpu_ms: f64,
    /// The vCPU thread's time in the host kernel (faulting in and clearing
    /// guest RAM, mostly).
    pub vcpu_kernel_ms: f64,
    /// The vCPU thread's time by name.
    pub by_name: BTreeMap<String, f64>,
}

/// The report: one profile per firmware, in the order asked for.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: String,
    pub frequency: u32,
    pub profiles: Vec<Profile>,
}

/// Sample counts of one or more recorded boots.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts {
    pub process: u64,
    pub vcpu: u64,
    pub vcpu_kernel: u64,
    pub by_name: BTreeMap<String, u64>,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.process += other.process;
        self.vcpu += other.vcpu;
        self.vcpu_kernel += other.vcpu_kernel;
        for (name, n) in other.by_name {
            *self.by_name.entry(name).or_default() += n;
        }
    }

    fn profile(&self, firmware: &str, boots: usize, frequency: u32) -> Profile {
        let ms = |n: u64| n as f64 * 1000.0 / frequency as f64 / boots as f64;
        Profile {
            firmware: firmware.into(),
            boots,
            process_ms: ms(self.process),
            vcpu_ms: ms(self.vcpu),
            vcpu_kernel_ms: ms(self.vcpu_kernel),
            by_name: self
                .by_name
                .iter()
                .map(|(k, &n)| (k.clone(), ms(n)))
                .collect(),
        }
    }
}

/// The exported functions of an executable, to name addresses in its static
/// functions by the exported one before them.
pub struct Exports {
    /// (virtual address, name), sorted by address.
    functions: Vec<(u64, String)>,
    /// (file offset, size, virtual address) of each loaded segment.
    segments: Vec<(u64, u64, u64)>,
}

impl Exports {
    pub fn from_elf(image: &[u8]) -> Result<Exports> {
        use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};
        let file = object::File::parse(image).context("not an ELF file")?;
        let mut functions: Vec<(u64, String)> = file
            .dynamic_symbols()
            .chain(file.symbols())
            .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
            .filter_map(|s| Some((s.address(), s.name().ok()?.to_string())))
            .collect();
        functions.sort();
        functions.dedup_by_key(|f| f.0);
        let segments = file
            .segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                (offset, size, s.address())
            })
            .collect();
        Ok(Exports {
            functions,
            segments,
        })
    }

    #[cfg(test)]
    fn new(functions: &[(u64, &str)], segments: &[(u64, u64, u64)]) -> Exports {
        Exports {
            functions: functions.iter().map(|&(a, n)| (a, n.to_string())).collect(),
            segments: segments.to_vec(),
        }
    }

    /// The exported function at or before the address that `offset` in the
    /// file is loaded at.
    pub fn before(&self, offset: u64) -> Option<&str> {
        let &(seg_offset, _, seg_address) = self
            .segments
            .iter()
            .find(|&&(o, size, _)| (o..o + size).contains(&offset))?;
        let address = offset - seg_offset + seg_address;
        let i = self.functions.partition_point(|f| f.0 <= address);
        Some(&self.functions.get(i.checked_sub(1)?)?.1)
    }
}

/// An executable mapping of a process: where, how long, from which offset of
/// which file.
#[derive(Clone, Debug, PartialEq)]
struct Mapping {
    pid: u32,
    start: u64,
    len: u64,
    offset: u64,
    path: String,
}

/// `PERF_RECORD_MMAP2 PID/TID: [0xSTART(0xLEN) @ OFFSET ...]: r-xp PATH`
/// (perf writes a zero offset as `0`, any other as `0x...`).
fn mapping(line: &str) -> Option<Mapping> {
    let rest = &line[line.find("PERF_RECORD_MMAP2 ")? + "PERF_RECORD_MMAP2 ".len()..];
    let (pid, rest) = rest.split_once('/')?;
    let rest = &rest[rest.find("[0x")? + 3..];
    let (start, rest) = rest.split_once("(0x")?;
    let (len, rest) = rest.split_once(") @ ")?;
    let (offset, rest) = rest.split_once(' ')?;
    let offset = match offset {
        "0" => 0,
        o => u64::from_str_radix(o.strip_prefix("0x")?, 16).ok()?,
    };
    let (_, rest) = rest.split_once("]: ")?;
    let (prot, path) = rest.split_once(' ')?;
    prot.contains('x').then_some(())?;
    Some(Mapping {
        pid: pid.trim().parse().ok()?,
        start: u64::from_str_radix(start, 16).ok()?,
        len: u64::from_str_radix(len, 16).ok()?,
        offset,
        path: path.trim().to_string(),
    })
}

/// A sample line of `perf script -F comm,pid,ip,sym,dso`: COMM PID IP SYM (DSO).
/// COMM may hold spaces ("CPU 0/TCG"), so the fields are taken from the right.
fn sample(line: &str) -> Option<(String, u32, u64, &str, &str)> {
    let line = line.trim_end();
    let open = line.rfind(" (")?;
    let dso = line[open + 2..].strip_suffix(')')?;
    let words: Vec<&str> = line[..open].split_whitespace().collect();
    let [comm @ .., pid, ip, sym] = &words[..] else {
        return None;
    };
    (!comm.is_empty()).then_some(())?;
    Some((
        comm.join(" "),
        pid.parse().ok()?,
        u64::from_str_radix(ip, 16).ok()?,
        sym,
        dso,
    ))
}

/// Counts the samples in `script` (`perf script --show-mmap-events -F
/// comm,pid,ip,sym,dso`), naming QEMU's static functions through `exports`
/// (read once per mapped file).
pub fn count(script: &str, exports: &mut ExportCache) -> Counts {
    let mut maps: Vec<Mapping> = Vec::new();
    let mut counts = Counts::default();
    for line in script.lines() {
        if line.contains("PERF_RECORD_") {
            if let Some(m) = mapping(line) {
                maps.push(m);
            }
            continue;
        }
        let Some((comm, pid, ip, sym, dso)) = sample(line) else {
            continue;
        };
        counts.process += 1;
        if comm != VCPU_THREAD {
            continue;
        }
        counts.vcpu += 1;
        let kernel = dso.starts_with("[kernel");
        counts.vcpu_kernel += kernel as u64;
        let name = if kernel {
            format!("[kernel] {sym}")
        } else if sym != "[unknown]" {
            sym.to_string()
        } else {
            maps.iter()
                .rev()
                .find(|m| m.pid == pid && m.path == dso && (m.start..m.start + m.len).contains(&ip))
                .and_then(|m| {
                    let e = exports.get(&m.path)?;
                    e.before(ip - m.start + m.offset)
                        .map(|f| format!("near {f}"))
                })
                .unwrap_or_else(|| unknown(dso))
        };
        *counts.by_name.entry(name).or_default() += 1;
    }
    counts
}

/// The name of a sample perf could not name: by its file, or as generated
/// code when it lies in anonymous executable memory (TCG's translated code,
/// which perf calls `[JIT] tid N` or `perf-PID.map`).
fn unknown(dso: &str) -> String {
    let file = dso.rsplit('/').next().unwrap_or(dso);
    if dso.starts_with("[JIT]") || (file.starts_with("perf-") && file.ends_with(".map")) {
        "[generated code]".into()
    } else {
        format!("[unknown] {file}")
    }
}

/// One boot of `q` under `perf record`, its samples counted; `expect`: the
/// exit statuses of a boot that reached the kernel's entry.
fn record(
    q: &Qemu,
    expect: &[i32],
    frequency: u32,
    data: &Path,
    exports: &mut ExportCache,
) -> Result<Counts> {
    let data_arg = data.to_string_lossy();
    let freq = frequency.to_string();
    let out = perf_qemu(q, &["record", "-q", "-F", &freq, "-o", &data_arg])
        .stdout(Stdio::null())
        .output()
        .context("running perf record")?;
    let code = out.status.code().unwrap_or(-1);
    ensure!(
        expect.contains(&code),
        "the recorded boot did not reach the probe kernel (exit status {code}): {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let script = perf_script(data, &["--show-mmap-events", "-F", "comm,pid,ip,sym,dso"])?;
    Ok(count(&String::from_utf8_lossy(&script), exports))
}

/// Each executable's exports, read once, by path (None: not an ELF file
/// that could be read).
#[derive(Default)]
pub struct ExportCache(HashMap<String, Option<Exports>>);

impl ExportCache {
    pub(crate) fn get(&mut self, path: &str) -> Option<&Exports> {
        self.0
            .entry(path.to_string())
            .or_insert_with(|| Exports::from_elf(&std::fs::read(path).ok()?).ok())
            .as_ref()
    }

    /// A cache that already holds `path`'s exports (or that it has none).
    #[cfg(test)]
    pub(crate) fn holding(path: &str, exports: Option<Exports>) -> ExportCache {
        ExportCache(HashMap::from([(path.to_string(), exports)]))
    }
}

pub fn run(opts: &Options) -> Result<Report> {
    ensure!(opts.boots > 0, "--boots must be at least 1");
    ensure!(!opts.firmwares.is_empty(), "no firmware to profile");
    let ferrite = crate::rom::build_firmware(true)?.path;
    let work = crate::root().join("target").join("host-profile");
    let mut machines = Vec::new();
    for &fw in &opts.firmwares {
        // The boot the translation tool makes, with QEMU's threads named.
        let mut q = fw.stock_size_boot(&ferrite, opts.machine, &work)?;
        q.extra.extend(["-name".into(), "debug-threads=on".into()]);
        machines.push((q, fw.entry_statuses()));
    }
    let mut exports = ExportCache::default();
    let mut counts = vec![Counts::default(); machines.len()];
    let data = work.join("perf.data");
    for boot in 0..opts.boots {
        for ((q, expect), c) in machines.iter().zip(&mut counts) {
            c.add(
                record(q, expect, opts.frequency, &data, &mut exports)
                    .with_context(|| format!("boot {} of {}", boot + 1, q.bios.display()))?,
            );
        }
    }
    let report = Report {
        machine: opts.machine.name().into(),
        frequency: opts.frequency,
        profiles: opts
            .firmwares
            .iter()
            .zip(&counts)
            .map(|(fw, c)| c.profile(fw.name(), opts.boots, opts.frequency))
            .collect(),
    };
    for p in &report.profiles {
        ensure!(
            p.vcpu_ms > 0.0,
            "{}: no sample of QEMU's thread \"{VCPU_THREAD}\"",
            p.firmware
        );
    }
    print!("{}", render(&report, opts.top));
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(report)
}

/// The report as markdown: the totals, then the names that differ most
/// between the first two firmwares.
pub fn render(r: &Report, top: usize) -> String {
    let Some(first) = r.profiles.first() else {
        return String::new();
    };
    let columns: Vec<&str> = r.profiles.iter().map(|p| p.firmware.as_str()).collect();
    let mut s = format!(
        "QEMU's CPU time per boot on {}, to the kernel entry under TCG, ms ({} boots each, \
         perf at {} Hz; sampling slows the sampled thread, compare the columns)\n\n| | {} |\n|---|{}\n",
        r.machine,
        first.boots,
        r.frequency,
        columns.join(" | "),
        "---|".repeat(columns.len())
    );
    let mut row = |label: &str, f: &dyn Fn(&Profile) -> f64| {
        let cells: Vec<String> = r.profiles.iter().map(|p| format!("{:.2}", f(p))).collect();
        s += &format!("| {label} | {} |\n", cells.join(" | "));
    };
    row("the whole process", &|p| p.process_ms);
    row(&format!("the vCPU thread ({VCPU_THREAD})"), &|p| p.vcpu_ms);
    row("… in the host kernel", &|p| p.vcpu_kernel_ms);
    row("… in QEMU and its libraries", &|p| {
        p.vcpu_ms - p.vcpu_kernel_ms
    });
    let get = |p: &Profile, n: &str| p.by_name.get(n).copied().unwrap_or(0.0);
    let mut names: Vec<&String> = r.profiles.iter().flat_map(|p| p.by_name.keys()).collect();
    names.sort();
    names.dedup();
    // Largest difference between the first two firmwares first, or the
    // first's largest alone.
    let second = r.profiles.get(1);
    let key = |n: &str| get(first, n) - second.map_or(0.0, |p| get(p, n));
    names.sort_by(|a, b| key(b).abs().total_cmp(&key(a).abs()));
    let (order, diff_header) = match second {
        Some(second) => {
            let d = format!("{} − {}", first.firmware, second.firmware);
            (d.clone(), format!(" {d} |"))
        }
        None => (first.firmware.clone(), String::new()),
    };
    let width = columns.len() + usize::from(second.is_some());
    s += &format!(
        "\nThe vCPU thread by name, largest {order} first (`near F`: a static function of QEMU \
         after the exported F)\n\n| name | {} |{diff_header}\n|---|{}\n",
        columns.join(" | "),
        "---|".repeat(width)
    );
    for n in names.into_iter().take(top) {
        let cells: Vec<String> = r
            .profiles
            .iter()
            .map(|p| format!("{:.2}", get(p, n)))
            .collect();
        let diff = match second {
            Some(_) => format!(" {:+.2} |", key(n)),
            None => String::new(),
        };
        s += &format!("| {n} | {} |{diff}\n", cells.join(" | "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "\
 qemu-system-x86 100 PERF_RECORD_MMAP2 100/100: [0x5000(0x3000) @ 0x1000 fe:00 7 9]: r-xp /usr/bin/qemu-system-x86_64
 qemu-system-x86 100 PERF_RECORD_MMAP2 100/100: [0x9000(0x1000) @ 0 fe:00 8 9]: rw-p /usr/bin/qemu-system-x86_64
 qemu-system-x86 100 PERF_RECORD_MMAP2 100/100: [0xc000(0x1000) @ 0 00:00 0 0]: r-xp //anon
       CPU 0/TCG   100      5100 [unknown] (/usr/bin/qemu-system-x86_64)
       CPU 0/TCG   100      5900 [unknown] (/usr/bin/qemu-system-x86_64)
       CPU 0/TCG   100      6f00 tcg_gen_code (/usr/bin/qemu-system-x86_64)
       CPU 0/TCG   100 ffffffff81000000 clear_page_erms ([kernel.kallsyms])
       CPU 0/TCG   100      a000 [unknown] ([JIT] tid 100)
 qemu-system-x86   100      6100 main (/usr/bin/qemu-system-x86_64)
        call_rcu   100      6100 [unknown] (/usr/bin/qemu-system-x86_64)
";

    const QEMU: &str = "/usr/bin/qemu-system-x86_64";

    fn exports() -> Exports {
        // file offset 0x1000.. loaded at 0x1000..: two exported functions
        Exports::new(
            &[(0x1000, "alpha"), (0x1800, "beta")],
            &[(0x1000, 0x3000, 0x1000)],
        )
    }

    #[test]
    fn parses_mappings_and_samples() {
        let m = mapping(SCRIPT.lines().next().unwrap()).unwrap();
        assert_eq!(
            m,
            Mapping {
                pid: 100,
                start: 0x5000,
                len: 0x3000,
                offset: 0x1000,
                path: "/usr/bin/qemu-system-x86_64".into()
            }
        );
        assert_eq!(
            mapping(SCRIPT.lines().nth(1).unwrap()),
            None,
            "not executable"
        );
        let anon = mapping(SCRIPT.lines().nth(2).unwrap()).unwrap();
        assert_eq!(
            (anon.start, anon.offset, anon.path.as_str()),
            (0xc000, 0, "//anon")
        );
        assert_eq!(
            sample(SCRIPT.lines().nth(3).unwrap()),
            Some((
                VCPU_THREAD.into(),
                100,
                0x5100,
                "[unknown]",
                "/usr/bin/qemu-system-x86_64"
            ))
        );
        assert_eq!(
            sample(SCRIPT.lines().nth(7).unwrap()),
            Some((
                VCPU_THREAD.into(),
                100,
                0xa000,
                "[unknown]",
                "[JIT] tid 100"
            ))
        );
        for bad in [
            "",
            "PERF_RECORD_MMAP2 x/1: [0xzz(0x1) @ 0x0 a b c]: r-xp /x",
            "CPU 0/TCG 1 zz f (d)",
            "a b c",
        ] {
            assert!(mapping(bad).is_none() && sample(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn names_static_functions_by_the_export_before_them() {
        let c = count(SCRIPT, &mut ExportCache::holding(QEMU, Some(exports())));
        assert_eq!((c.process, c.vcpu, c.vcpu_kernel), (7, 5, 1));
        let names: Vec<(&str, u64)> = c.by_name.iter().map(|(k, &v)| (k.as_str(), v)).collect();
        assert_eq!(
            names,
            [
                ("[generated code]", 1),
                ("[kernel] clear_page_erms", 1),
                // 0x5100 - 0x5000 + 0x1000 = 0x1100: after alpha
                ("near alpha", 1),
                // 0x1900: after beta
                ("near beta", 1),
                ("tcg_gen_code", 1),
            ]
        );
        // the same samples without the binary's exports
        let c = count(SCRIPT, &mut ExportCache::holding(QEMU, None));
        assert_eq!(c.by_name["[unknown] qemu-system-x86_64"], 2);
        assert_eq!(unknown("/tmp/perf-4242.map"), "[generated code]");
        assert_eq!(unknown("/usr/lib/libfoo.so"), "[unknown] libfoo.so");
    }

    #[test]
    fn exports_answer_only_inside_a_segment() {
        let e = exports();
        assert_eq!(e.before(0x1000), Some("alpha"));
        assert_eq!(e.before(0x17ff), Some("alpha"));
        assert_eq!(e.before(0x1800), Some("beta"));
        assert_eq!(e.before(0x0fff), None);
        assert_eq!(e.before(0x4000), None);
        let none = Exports::new(&[(0x2000, "late")], &[(0x1000, 0x3000, 0x1000)]);
        assert_eq!(none.before(0x1800), None, "before the first export");
    }

    #[test]
    fn profiles_are_per_boot_and_render_the_difference() {
        let mut a = count(SCRIPT, &mut ExportCache::holding(QEMU, Some(exports())));
        a.add(a.clone());
        let b = count(
            SCRIPT
                .lines()
                .take(4)
                .collect::<Vec<_>>()
                .join("\n")
                .as_str(),
            &mut ExportCache::holding(QEMU, None),
        );
        let r = Report {
            machine: "pc".into(),
            frequency: 1000,
            profiles: vec![a.profile("ferrite", 2, 1000), b.profile("qboot", 1, 1000)],
        };
        // 14 samples over 2 boots at 1 kHz: 7 ms a boot
        assert_eq!(r.profiles[0].process_ms, 7.0);
        assert_eq!(r.profiles[0].vcpu_ms, 5.0);
        assert_eq!(r.profiles[1].vcpu_ms, 1.0);
        let text = render(&r, 10);
        assert!(
            text.contains("| the vCPU thread (CPU 0/TCG) | 5.00 | 1.00 |"),
            "{text}"
        );
        assert!(
            text.contains("| … in the host kernel | 1.00 | 0.00 |"),
            "{text}"
        );
        assert!(
            text.contains("| tcg_gen_code | 1.00 | 0.00 | +1.00 |"),
            "{text}"
        );
        assert!(
            text.contains("| [unknown] qemu-system-x86_64 | 0.00 | 1.00 | -1.00 |"),
            "{text}"
        );
        assert_eq!(text.matches("\n| ").count(), 4 + 6 + 2, "{text}");
        // one firmware alone: its own times, no difference
        let one = Report {
            profiles: vec![r.profiles[0].clone()],
            ..r.clone()
        };
        let text = render(&one, 10);
        assert!(text.contains("largest ferrite first"), "{text}");
        assert!(text.contains("| tcg_gen_code | 1.00 |\n"), "{text}");
        assert!(text.contains("| name | ferrite |\n|---|---|\n"), "{text}");
    }
}
