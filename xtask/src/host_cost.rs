//! `cargo xtask host-cost`: the host instructions QEMU's vCPU thread executes
//! while a firmware boots, counted by callgrind: deterministic, where the
//! wall clock and `perf` samples on a shared host are not.
//!
//! Under TCG everything a firmware costs the host runs in the vCPU thread:
//! translating its code, running the translated code, the device models
//! behind its port and memory accesses, the memory map QEMU rebuilds when it
//! changes a BAR, a command register or the PAM, the ACPI tables QEMU builds
//! when they are first read, the fw_cfg DMA copies. What the thread does not
//! count is the host kernel's part (faulting in and clearing guest RAM), the
//! same for every firmware that touches the same 2 MiB regions (the bench's
//! cost model counts those).
//!
//! Each firmware boots once to the probe kernel's entry under
//! `valgrind --tool=callgrind --separate-threads=yes`; the thread that ran
//! `cpu_exec` is the vCPU's. The report gives its total, a breakdown by what
//! QEMU did (inclusive costs of the functions that start each kind of work),
//! and the functions whose inclusive cost differs most between the first two
//! firmwares. Repeated runs of one ROM agree to a few thousand instructions
//! in millions.
//!
//! QEMU's static functions have no names in a distribution build: as in
//! `host-profile`, one is named `near F` after the exported function before it
//! (an address before any export, `0x… in OBJECT`). Translated guest code is
//! `[generated code]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};
use serde::Serialize;

use crate::bench::Firmware;
use crate::host_profile::ExportCache;
use crate::probe;
use crate::qemu::{Machine, Qemu};
use crate::tcg_calibration::{self, Breakdown, Calibration};

pub mod kernel_init;

pub struct Options {
    pub machine: Machine,
    /// Side by side, in this order, then `roms`; the first two of all are
    /// compared.
    pub firmwares: Vec<Firmware>,
    /// Other ROM images, by name: builds of ferrite to compare (a change
    /// against its base), measured as ferrite is.
    pub roms: Vec<(String, PathBuf)>,
    /// Functions listed.
    pub top: usize,
    pub json: Option<PathBuf>,
    /// Also calibrate what TCG spends per kind of guest code, with synthetic
    /// ROMs of this many blocks ([`tcg_calibration`]), and weigh each
    /// firmware's translated code with it.
    pub calibrate: Option<usize>,
    /// Also boot ferrite, and each of `roms` that has the timeline's
    /// stamps, once more, the vCPU thread cut at the stamps ([`run_steps`]):
    /// the host work step by step.
    pub steps: bool,
    /// Also boot each firmware once more, counting only QEMU's memory-map
    /// rebuilds ([`run_rebuilds`]): each, in order, with its cost.
    pub rebuilds: bool,
    /// Boot a probe shaped like this kernel instead of the stock-size one: a
    /// bzImage's size, or an ELF vmlinux's segments and PVH note (each
    /// firmware's PVH path; the floor ROM boots only bzImages and is left out).
    pub kernel: Option<PathBuf>,
    /// Instead of the probes, boot the small kernel's bzImage and vmlinux to
    /// `kernel_init` under icount: the guest's clock, then this many boots
    /// each under callgrind (none: the clock only) ([`kernel_init`]).
    pub kernel_init: Option<usize>,
    /// With `kernel_init`: the stretches between the kernel's messages that
    /// moved most ([`kernel_init::render_lines`]).
    pub lines: bool,
    /// With `kernel_init`: the kernel's clock in this many phases
    /// ([`kernel_init::guest_clock_with`]; 1: the first only).
    pub phases: usize,
    /// With `kernel_init`: words added to every boot's kernel command line
    /// ([`kernel_init::add_words`]; empty: none).
    pub append: String,
}

/// What QEMU did, by the functions that start each kind of work: the name,
/// and the exported QEMU function whose inclusive cost measures it.
pub const KINDS: &[(&str, &str)] = &[
    ("translating guest code", "tb_gen_code"),
    (
        "rebuilding the memory map",
        "memory_region_transaction_commit",
    ),
    (
        "… of which mapping PCI BARs",
        "memory_region_add_subregion_overlap",
    ),
    (
        "port and MMIO accesses (device models, rebuilds included)",
        "memory_region_dispatch_write",
    ),
    ("… reads", "memory_region_dispatch_read"),
    ("page-table walks for the TLB", "x86_cpu_tlb_fill"),
];

/// Translated guest code, which no object file holds.
pub const GENERATED: &str = "[generated code]";

/// One firmware's boot.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cost {
    pub firmware: String,
    /// Host instructions of the vCPU thread, start to the kernel entry.
    pub vcpu: u64,
    /// Of those, the translated guest code's own (running it).
    pub generated: u64,
    /// Inclusive host instructions by function.
    pub inclusive: BTreeMap<String, u64>,
    /// The vCPU's thread number in callgrind's file names.
    pub thread: String,
}

impl Cost {
    pub fn of(&self, name: &str) -> u64 {
        self.inclusive.get(name).copied().unwrap_or(0)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: String,
    /// Where the counts end: the kernel entry, or `kernel_init`.
    pub end: String,
    pub costs: Vec<Cost>,
    /// With `calibrate`: the calibration, and each firmware's translated
    /// code counted by kind (in the order of `costs`).
    pub calibration: Option<Calibration>,
    pub breakdowns: Vec<Breakdown>,
    /// With `steps`: each ferrite build's vCPU thread step by step.
    pub steps: Vec<Steps>,
    /// With `rebuilds`: each firmware's map rebuilds (in the order of `costs`).
    pub rebuilds: Vec<Vec<Rebuild>>,
}

/// One line of `callgrind_annotate`'s function list: its cost, and the name
/// as the tool prints it (`file:function [object]`, `???:0x… [object]`).
pub fn parse_annotate_line(line: &str) -> Option<(u64, &str, Option<&str>)> {
    let line = line.trim_start();
    let (count, rest) = line.split_once(' ')?;
    let count: u64 = count.replace(',', "").parse().ok()?;
    let rest = rest.trim_start();
    // An optional "(12.34%)" column.
    let rest = match rest.strip_prefix('(') {
        Some(r) => r.split_once(')')?.1.trim_start(),
        None => rest,
    };
    let (symbol, object) = match rest.rsplit_once(" [") {
        Some((s, o)) => (s, o.strip_suffix(']')),
        None => (rest, None),
    };
    let function = symbol.rsplit_once(':').map_or(symbol, |(_, f)| f);
    (!function.is_empty()).then_some((count, function, object))
}

/// A function's name for the report: callgrind's recursion marks (`'2`)
/// dropped; an address in QEMU named after the exported function before it;
/// an address in no object, translated code.
pub fn name_of(function: &str, object: Option<&str>, exports: &mut ExportCache) -> String {
    let function = function.split('\'').next().unwrap_or(function);
    let Some(hex) = function.strip_prefix("0x") else {
        return function.to_string();
    };
    let Ok(offset) = u64::from_str_radix(hex, 16) else {
        return function.to_string();
    };
    match object.filter(|o| o.starts_with('/')) {
        Some(path) => match exports.get(path).and_then(|e| e.before(offset)) {
            Some(f) => format!("near {f}"),
            // Before any export (a PLT stub, say): where it is.
            None => format!("{function} in {}", path.rsplit('/').next().unwrap_or(path)),
        },
        None => GENERATED.to_string(),
    }
}

/// An annotate listing by name. A function callgrind lists again for its
/// recursive calls (`f'2`) counts once: with `inclusive` costs, the outer
/// call's, which holds the inner ones; with self costs, all of them. Distinct
/// functions that get one name (two static functions after one export, the
/// blocks of translated code) add up.
pub fn sum_listing(
    listing: &str,
    exports: &mut ExportCache,
    inclusive: bool,
) -> BTreeMap<String, u64> {
    let mut by_function: BTreeMap<(&str, Option<&str>), u64> = BTreeMap::new();
    for line in listing.lines() {
        if let Some((count, function, object)) = parse_annotate_line(line) {
            let base = function.split('\'').next().unwrap_or(function);
            let c = by_function.entry((base, object)).or_default();
            *c = if inclusive {
                (*c).max(count)
            } else {
                *c + count
            };
        }
    }
    let mut by_name = BTreeMap::new();
    for ((function, object), count) in by_function {
        *by_name
            .entry(name_of(function, object, exports))
            .or_default() += count;
    }
    by_name
}

/// The `totals:` (or `summary:`) line of a callgrind output file.
pub fn total(data: &str) -> Option<u64> {
    data.lines().find_map(|l| {
        l.strip_prefix("totals:")
            .or_else(|| l.strip_prefix("summary:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    })
}

/// Runs one boot under callgrind into `dir` (emptied first): the vCPU
/// thread's callgrind file and its total. The boot must end with one of the
/// `expect`ed exit statuses.
pub fn run_callgrind(q: &Qemu, expect: &[i32], dir: &Path) -> Result<(PathBuf, u64)> {
    callgrind_boot(q, expect, dir, &[])?;
    let mut vcpu = None;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let data = std::fs::read_to_string(&path)?;
        if data.contains(" cpu_exec\n") {
            ensure!(
                vcpu.is_none(),
                "two threads ran cpu_exec (one vCPU expected)"
            );
            let total = total(&data).context("no totals line")?;
            vcpu = Some((path, total));
        }
    }
    vcpu.context("no thread of QEMU ran cpu_exec under callgrind")
}

/// One boot under callgrind, its files in `dir` (emptied first), with
/// `extra` options for valgrind; the boot must end with one of the
/// `expect`ed exit statuses.
fn callgrind_boot(q: &Qemu, expect: &[i32], dir: &Path, extra: &[&str]) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let out = dir.join("cg.out");
    // A guest that never reaches its exit is stopped after ten minutes (or
    // the boot's own timeout, if longer), and killed ten seconds later if
    // QEMU (a vCPU in a tight translated loop can keep it from its signal
    // handler) has not gone.
    let limit = q.timeout.as_secs().max(600).to_string();
    let status = Command::new("timeout")
        .args([
            "--kill-after=10",
            &limit,
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
        ])
        .args(extra)
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(crate::qemu::resolved_binary()?)
        .args(q.args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running valgrind (apt-get install valgrind)")?;
    let code = status.code().unwrap_or(-1);
    ensure!(
        expect.contains(&code),
        "QEMU under callgrind exited with {code}, not at the kernel entry"
    );
    Ok(())
}

/// What QEMU's vCPU thread spent in one stretch of a boot, in host
/// instructions: in all, and in the two kinds of work that vary most with
/// what the firmware does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StepCost {
    pub vcpu: u64,
    /// Translating guest code (`tb_gen_code`).
    pub translating: u64,
    /// Rebuilding the memory map (`memory_region_transaction_commit`).
    pub map_rebuilds: u64,
}

/// QEMU's vCPU thread split at ferrite's timeline stamps.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Steps {
    pub firmware: String,
    /// From QEMU's start to the reset vector's stamp: the vCPU thread's
    /// start-up, the same for any firmware.
    pub before: StepCost,
    /// Each step of the contract's timeline after the reset vector, by name,
    /// then the hand-off (the jump to the kernel and QEMU's exit).
    pub steps: Vec<(String, StepCost)>,
}

impl Steps {
    pub fn total(&self) -> u64 {
        self.before.vcpu + self.steps.iter().map(|(_, c)| c.vcpu).sum::<u64>()
    }
}

/// The name of the stretch after the last stamp.
pub const HANDOFF: &str = "handoff";

/// One boot of a ferrite ROM under callgrind, QEMU's vCPU thread cut where
/// the firmware reads the time-stamp counter. Under TCG each `rdtsc` calls
/// QEMU's `cpu_get_tsc`, where callgrind dumps its counts; with one CPU the
/// timeline's stamps are ferrite's only reads (the wait for other CPUs reads
/// the clock only while there are some to wait for), so the stretches are
/// the steps. The boot must read it once per stamp.
pub fn run_steps(q: &Qemu, expect: &[i32], dir: &Path, firmware: &str) -> Result<Steps> {
    callgrind_boot(q, expect, dir, &["--dump-before=cpu_get_tsc"])?;
    let mut threads = dumps(dir)?;
    let mut vcpu_thread = None;
    for (thread, files) in &threads {
        if let Some((_, last)) = files.last()
            && std::fs::read_to_string(last)?.contains(" cpu_exec\n")
        {
            vcpu_thread = Some(thread.clone());
        }
    }
    let thread = vcpu_thread.context("no thread of QEMU ran cpu_exec under callgrind")?;
    let files = threads.remove(&thread).unwrap_or_default();
    let names = &ferrite_contract::timeline::STEPS;
    ensure!(
        files.len() == names.len() + 1,
        "the boot read the time-stamp counter {} times, not once per stamp ({}): \
         more than one CPU, or a build without the timeline",
        files.len() - 1,
        names.len()
    );
    let mut costs = Vec::new();
    for (_, path) in &files {
        costs.push(stretch_cost(path)?);
    }
    let steps = names[1..]
        .iter()
        .map(|n| n.to_string())
        .chain([HANDOFF.to_string()])
        .zip(costs[1..].iter().copied())
        .collect();
    Ok(Steps {
        firmware: firmware.into(),
        before: costs[0],
        steps,
    })
}

/// The files of a callgrind run with dumps in `dir`, by thread, in the
/// order written: cg.out.N-TT is the Nth dump of thread TT, cg.out-TT what
/// was left at the exit (last).
fn dumps(dir: &Path) -> Result<BTreeMap<String, Vec<(usize, PathBuf)>>> {
    let mut threads: BTreeMap<String, Vec<(usize, PathBuf)>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some((file, thread)) = name.rsplit_once('-') else {
            continue;
        };
        let order = match file.strip_prefix("cg.out") {
            Some("") => usize::MAX,
            Some(n) => match n.strip_prefix('.').and_then(|n| n.parse().ok()) {
                Some(n) => n,
                None => continue,
            },
            None => continue,
        };
        threads
            .entry(thread.to_string())
            .or_default()
            .push((order, path));
    }
    for files in threads.values_mut() {
        files.sort();
    }
    Ok(threads)
}

/// One rebuild of QEMU's memory map that changed it (a no-op one costs a
/// few thousand host instructions and is left out): the step of ferrite's
/// timeline it came in, and its host instructions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rebuild {
    pub step: String,
    pub cost: u64,
}

/// A rebuild below this many host instructions changed nothing.
const REBUILD_MIN: u64 = 20_000;

/// One boot of a ferrite ROM under callgrind, counting only inside
/// `memory_region_transaction_commit` and dumping after each call, and at
/// each of the timeline's stamps (as [`run_steps`]): every rebuild of the
/// memory map the guest caused, in order, with its step and cost. A
/// rebuild's cost grows with what the map holds, so the order of the
/// writes that cause them matters (docs/performance-history.md, 2026-12-02).
/// `vcpu_thread` is the vCPU's thread number in callgrind's file names (the
/// same in every boot of one configuration: [`Cost::thread`]). A ROM without
/// the timeline's stamps gets its rebuilds without steps.
pub fn run_rebuilds(
    q: &Qemu,
    expect: &[i32],
    dir: &Path,
    vcpu_thread: &str,
) -> Result<Vec<Rebuild>> {
    callgrind_boot(
        q,
        expect,
        dir,
        &[
            "--collect-atstart=no",
            "--toggle-collect=memory_region_transaction_commit",
            "--dump-after=memory_region_transaction_commit",
            "--dump-before=cpu_get_tsc",
        ],
    )?;
    // The vCPU's files, each a stamp's dump or a rebuild's (or the exit's).
    let mut seq = Vec::new();
    for (_, path) in dumps(dir)?.remove(vcpu_thread).unwrap_or_default() {
        let data = std::fs::read_to_string(&path)?;
        let stamp = data.contains("Trigger: --dump-before=cpu_get_tsc");
        seq.push((stamp, total(&data).unwrap_or(0)));
    }
    ensure!(
        !seq.is_empty(),
        "no callgrind files of thread {vcpu_thread}"
    );
    Ok(rebuilds_of(&seq))
}

/// The rebuilds among the vCPU's dumps in order (whether each is a stamp's,
/// and its cost), each named by the step it came in (none without stamps).
fn rebuilds_of(seq: &[(bool, u64)]) -> Vec<Rebuild> {
    let names = &ferrite_contract::timeline::STEPS;
    let stamped = seq.iter().any(|&(stamp, _)| stamp);
    let mut stamps = 0;
    let mut out = Vec::new();
    for &(stamp, cost) in seq {
        if stamp {
            stamps += 1;
        } else if cost >= REBUILD_MIN {
            // After k stamps the boot is in step k (the first, the reset
            // vector's, starts `rust`); after the last, the hand-off.
            let step = match stamps {
                _ if !stamped => "–",
                0 => "(QEMU's start)",
                k if k < names.len() => names[k],
                _ => HANDOFF,
            };
            out.push(Rebuild {
                step: step.into(),
                cost,
            });
        }
    }
    out
}

/// The rebuilds of ferrite's boot, as markdown.
pub fn render_rebuilds(rebuilds: &[Rebuild], machine: &str) -> String {
    let mut s = format!(
        "\nRebuilds of QEMU's memory map on {machine} that changed it, in order, \
         millions of host instructions\n\n| # | step | cost |\n|---|---|---|\n"
    );
    for (i, r) in rebuilds.iter().enumerate() {
        s += &format!("| {} | {} | {} |\n", i + 1, r.step, millions(r.cost));
    }
    let total: u64 = rebuilds.iter().map(|r| r.cost).sum();
    s += &format!("| | all | {} |\n", millions(total));
    s
}

/// One dump's counts: its total and two functions' inclusive costs.
fn stretch_cost(path: &Path) -> Result<StepCost> {
    let data = std::fs::read_to_string(path)?;
    let vcpu = total(&data).with_context(|| format!("no totals in {}", path.display()))?;
    let o = Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(path)
        .output()
        .context("running callgrind_annotate")?;
    ensure!(o.status.success(), "callgrind_annotate failed");
    let listing = String::from_utf8_lossy(&o.stdout);
    let of = |function: &str| {
        listing
            .lines()
            .filter_map(parse_annotate_line)
            .filter(|&(_, f, _)| f.split('\'').next() == Some(function))
            .map(|(n, _, _)| n)
            .max()
            .unwrap_or(0)
    };
    Ok(StepCost {
        vcpu,
        translating: of("tb_gen_code"),
        map_rebuilds: of("memory_region_transaction_commit"),
    })
}

/// The steps of ferrite builds side by side, as markdown.
pub fn render_steps(all: &[Steps], machine: &str) -> String {
    let Some(first) = all.first() else {
        return String::new();
    };
    let mut s = format!(
        "\nQEMU's vCPU thread on {machine}, step by step (cut at ferrite's timeline stamps), \
         millions of host instructions: all (translating / rebuilding the memory map)\n\n| step | {} |\n|---|{}\n",
        all.iter()
            .map(|x| x.firmware.as_str())
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(all.len())
    );
    let cell = |c: &StepCost| {
        format!(
            "{} ({} / {})",
            millions(c.vcpu),
            millions(c.translating),
            millions(c.map_rebuilds)
        )
    };
    let mut row = |label: &str, f: &dyn Fn(&Steps) -> Option<String>| {
        let cells: Vec<String> = all.iter().map(|x| f(x).unwrap_or("–".into())).collect();
        s += &format!("| {label} | {} |\n", cells.join(" | "));
    };
    row("QEMU's start, to the reset vector", &|x| {
        Some(cell(&x.before))
    });
    for (i, (name, _)) in first.steps.iter().enumerate() {
        row(name, &|x| {
            x.steps
                .get(i)
                .filter(|(n, _)| n == name)
                .map(|(_, c)| cell(c))
        });
    }
    row("total", &|x| {
        let sum = |f: &dyn Fn(&StepCost) -> u64| {
            f(&x.before) + x.steps.iter().map(|(_, c)| f(c)).sum::<u64>()
        };
        Some(cell(&StepCost {
            vcpu: sum(&|c| c.vcpu),
            translating: sum(&|c| c.translating),
            map_rebuilds: sum(&|c| c.map_rebuilds),
        }))
    });
    s
}

/// Whether valgrind is installed.
pub fn available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs one boot under callgrind and reads its vCPU thread.
pub(crate) fn measure(
    q: &Qemu,
    expect: &[i32],
    work: &Path,
    name: &str,
    exports: &mut ExportCache,
) -> Result<Cost> {
    let (path, vcpu) = run_callgrind(q, expect, &work.join(format!("callgrind-{name}")))
        .with_context(|| name.to_string())?;
    let listing = |inclusive: bool| -> Result<String> {
        let o = Command::new("callgrind_annotate")
            .arg(format!(
                "--inclusive={}",
                if inclusive { "yes" } else { "no" }
            ))
            .args(["--threshold=100"])
            .arg(&path)
            .output()
            .context("running callgrind_annotate")?;
        ensure!(o.status.success(), "callgrind_annotate failed");
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let inclusive = sum_listing(&listing(true)?, exports, true);
    let generated = sum_listing(&listing(false)?, exports, false)
        .get(GENERATED)
        .copied()
        .unwrap_or(0);
    let thread = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit_once('-'))
        .map_or(String::new(), |(_, t)| t.to_string());
    Ok(Cost {
        firmware: name.into(),
        vcpu,
        generated,
        inclusive,
        thread,
    })
}

pub fn run(opts: &Options) -> Result<Report> {
    ensure!(
        !opts.firmwares.is_empty() || !opts.roms.is_empty(),
        "no firmware to measure"
    );
    let scratch = crate::run_dir("host-cost")?;
    let work = scratch.path().to_path_buf();
    let ferrite = if opts.firmwares.is_empty() {
        PathBuf::new()
    } else {
        crate::rom::build_firmware(true)?.path
    };
    if let Some(repeat) = opts.kernel_init {
        return run_to_kernel_init(opts, &ferrite, repeat, &work);
    }
    // Each boot, and whether it is ferrite's own build (with the timeline).
    let elf = match &opts.kernel {
        Some(k) => crate::pvh_probe::is_elf(
            &std::fs::read(k).with_context(|| format!("reading {}", k.display()))?,
        ),
        None => false,
    };
    // A PVH probe's boot must end at its PVH entry: another entry would mean
    // the firmware took another path than the one asked for.
    let pvh_entry = vec![ferrite_contract::qemu_exit(probe::Entry::Pvh.value())];
    let expect = |fw: Firmware| {
        if elf {
            pvh_entry.clone()
        } else {
            fw.entry_statuses()
        }
    };
    let like = |q: &mut Qemu| match &opts.kernel {
        Some(k) => crate::pvh_probe::boot_like(q, &work, k),
        None => Ok(()),
    };
    let mut boots = Vec::new();
    for &fw in &opts.firmwares {
        if elf && fw == Firmware::Floor {
            println!("floor: left out; the floor ROM boots only bzImages");
            continue;
        }
        let mut q = fw.stock_size_boot(&ferrite, opts.machine, &work)?;
        like(&mut q)?;
        boots.push((
            fw.name().to_string(),
            q,
            expect(fw),
            fw == Firmware::Ferrite,
        ));
    }
    for (name, path) in &opts.roms {
        ensure!(path.is_file(), "{name}: no ROM at {}", path.display());
        let mut q = probe::stock_size_boot(&work, opts.machine, path.clone())?;
        like(&mut q)?;
        boots.push((name.clone(), q, expect(Firmware::Ferrite), false));
    }
    let mut exports = ExportCache::default();
    let mut costs = Vec::new();
    for (name, q, expect, _) in &boots {
        costs.push(measure(q, expect, &work, name, &mut exports)?);
    }
    let mut report = Report {
        machine: opts.machine.name().into(),
        end: "the kernel entry".into(),
        costs,
        calibration: None,
        breakdowns: Vec::new(),
        steps: Vec::new(),
        rebuilds: Vec::new(),
    };
    print!("{}", render(&report, opts.top));
    if opts.rebuilds {
        for ((name, q, expect, _), cost) in boots.iter().zip(&report.costs) {
            let dir = work.join(format!("callgrind-rebuilds-{name}"));
            let rebuilds =
                run_rebuilds(q, expect, &dir, &cost.thread).with_context(|| name.clone())?;
            print!("\n{name}:{}", render_rebuilds(&rebuilds, &report.machine));
            report.rebuilds.push(rebuilds);
        }
    }
    if opts.steps {
        // ferrite's own build must have its stamps; another ROM (a build
        // to compare, or another firmware given as one) is cut if it has.
        for (name, q, expect, ferrite) in &boots {
            let dir = work.join(format!("callgrind-steps-{name}"));
            match run_steps(q, expect, &dir, name) {
                Ok(steps) => report.steps.push(steps),
                Err(e) if !ferrite => println!("\n{name}: not cut into steps: {e:#}"),
                Err(e) => return Err(e.context(name.clone())),
            }
        }
        print!("{}", render_steps(&report.steps, &report.machine));
    }
    if let Some(blocks) = opts.calibrate {
        let c = tcg_calibration::calibrate(
            &work.join("calibration"),
            blocks,
            tcg_calibration::PER_BLOCK,
        )?;
        print!("\n{}", tcg_calibration::render_calibration(&c));
        for (_, q, _, _) in &boots {
            let log = crate::bench::cost::in_asm_log(q, &work)?;
            report
                .breakdowns
                .push(tcg_calibration::breakdown(std::io::BufReader::new(
                    std::fs::File::open(&log)?,
                ))?);
        }
        let rows: Vec<(String, Breakdown, u64)> = report
            .costs
            .iter()
            .zip(&report.breakdowns)
            .map(|(cost, b)| (cost.firmware.clone(), b.clone(), cost.of("tb_gen_code")))
            .collect();
        print!(
            "{}",
            tcg_calibration::render_breakdowns(&c, &rows, &report.machine)
        );
        report.calibration = Some(c);
    }
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(report)
}

/// [`run`] with `kernel_init`: the firmwares (not the floor ROM) and `roms`
/// booting the small kernel to `kernel_init`.
fn run_to_kernel_init(
    opts: &Options,
    ferrite: &Path,
    repeat: usize,
    work: &Path,
) -> Result<Report> {
    let mut firmwares = Vec::new();
    for &fw in &opts.firmwares {
        if fw == Firmware::Floor {
            println!("floor: left out; the floor ROM boots only probes");
            continue;
        }
        let image = fw
            .image(ferrite, opts.machine)
            .map_err(|why| anyhow::anyhow!("{}: {why}", fw.name()))?;
        firmwares.push((fw.name().to_string(), image));
    }
    for (name, path) in &opts.roms {
        ensure!(path.is_file(), "{name}: no ROM at {}", path.display());
        firmwares.push((name.clone(), path.clone()));
    }
    if !opts.append.trim().is_empty() {
        println!("every boot's command line also has: {}", opts.append.trim());
    }
    let measured = kernel_init::run(
        opts.machine,
        &firmwares,
        repeat,
        opts.phases.max(1),
        &opts.append,
        work,
    )?;
    print!("\n{}", kernel_init::render(&measured, opts.machine.name()));
    print!("{}", kernel_init::render_phases(&measured));
    if opts.lines {
        print!("{}", kernel_init::render_lines(&measured, opts.top));
    }
    if repeat == 0 {
        if let Some(path) = &opts.json {
            std::fs::write(path, serde_json::to_string_pretty(&measured)?)?;
        }
        return Ok(Report {
            machine: opts.machine.name().into(),
            end: String::new(),
            costs: Vec::new(),
            calibration: None,
            breakdowns: Vec::new(),
            steps: Vec::new(),
            rebuilds: Vec::new(),
        });
    }
    let report = Report {
        machine: opts.machine.name().into(),
        end: "the small kernel's `kernel_init` under icount".into(),
        costs: measured.iter().map(|m| m.cost.clone()).collect(),
        calibration: None,
        breakdowns: Vec::new(),
        steps: Vec::new(),
        rebuilds: Vec::new(),
    };
    print!("\n{}", render(&report, opts.top));
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&measured)?)?;
    }
    Ok(report)
}

fn millions(n: u64) -> String {
    format!("{:.2}", n as f64 / 1e6)
}

/// The report as markdown: the totals and the kinds of work, then the
/// functions whose inclusive cost differs most between the first two.
pub fn render(r: &Report, top: usize) -> String {
    let columns: Vec<&str> = r.costs.iter().map(|c| c.firmware.as_str()).collect();
    let mut s = format!(
        "Host instructions of QEMU's vCPU thread on {}, from QEMU's start to {} \
         under TCG, millions (callgrind, {})\n\n| | {} |\n|---|{}\n",
        r.machine,
        r.end,
        if r.end.contains("kernel_init") {
            "the totals varying with QEMU's TLB sizing"
        } else {
            "deterministic"
        },
        columns.join(" | "),
        "---|".repeat(columns.len())
    );
    let mut row = |label: &str, f: &dyn Fn(&Cost) -> u64| {
        let cells: Vec<String> = r.costs.iter().map(|c| millions(f(c))).collect();
        s += &format!("| {label} | {} |\n", cells.join(" | "));
    };
    row("the vCPU thread", &|c| c.vcpu);
    for &(label, function) in KINDS {
        row(&format!("{label} (`{function}`)"), &|c| c.of(function));
    }
    row("running the translated code", &|c| c.generated);
    let (Some(a), Some(b)) = (r.costs.first(), r.costs.get(1)) else {
        return s;
    };
    let mut names: Vec<&String> = a.inclusive.keys().chain(b.inclusive.keys()).collect();
    names.sort();
    names.dedup();
    // Not the thread's own frames (its entry, the loop around cpu_exec),
    // which are the totals again, nor the translated code, whose inclusive
    // cost callgrind mixes with the helpers it returns to (its own cost is
    // a row above).
    // Nor TCG's helpers, which translated code calls: callgrind charges
    // each with the translated code it returns into (in cycles that can add
    // up past the thread's total); what they do for devices is in the
    // rows above. Nor anything else whose inclusive cost is impossible.
    let frames = |c: &Cost, n: &str| c.of(n) >= c.of("cpu_exec").max(1);
    let impossible = |n: &str| r.costs.iter().any(|c| c.of(n) > c.vcpu);
    let left_out = |n: &str| {
        (frames(a, n) && frames(b, n))
            || n == GENERATED
            || n.starts_with("helper_")
            || impossible(n)
    };
    names.retain(|n| !left_out(n));
    let diff = |n: &str| a.of(n) as i64 - b.of(n) as i64;
    names.sort_by_key(|n| std::cmp::Reverse(diff(n).abs()));
    s += &format!(
        "\nFunctions by inclusive cost, largest difference {} − {} first, millions\n\n| function | {} | {} − {} |\n|---|{}---|\n",
        a.firmware,
        b.firmware,
        columns.join(" | "),
        a.firmware,
        b.firmware,
        "---|".repeat(columns.len())
    );
    for n in names.into_iter().take(top) {
        let cells: Vec<String> = r.costs.iter().map(|c| millions(c.of(n))).collect();
        s += &format!(
            "| {n} | {} | {:+.2} |\n",
            cells.join(" | "),
            diff(n) as f64 / 1e6
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_annotate_lines() {
        assert_eq!(
            parse_annotate_line(
                " 30,085,950 (52.67%)  ???:tb_gen_code [/usr/bin/qemu-system-x86_64]"
            ),
            Some((
                30_085_950,
                "tb_gen_code",
                Some("/usr/bin/qemu-system-x86_64")
            ))
        );
        assert_eq!(
            parse_annotate_line(
                "6,010,954  ./string/../memset.S:__memset_avx2_u [/usr/lib/libc.so.6]"
            ),
            Some((6_010_954, "__memset_avx2_u", Some("/usr/lib/libc.so.6")))
        );
        assert_eq!(
            parse_annotate_line("  371,776 (0.41%)  ???:0x000000000c0010dd'2 [???]"),
            Some((371_776, "0x000000000c0010dd'2", Some("???")))
        );
        assert_eq!(parse_annotate_line("Ir"), None);
        assert_eq!(parse_annotate_line("--------"), None);
        assert_eq!(parse_annotate_line(""), None);
    }

    #[test]
    fn names_translated_code_and_drops_recursion_marks() {
        let mut exports = ExportCache::holding("/nowhere/qemu", None);
        assert_eq!(
            name_of("0x000000000c0010dd'2", Some("???"), &mut exports),
            "[generated code]"
        );
        assert_eq!(
            name_of("tb_gen_code'3", Some("/x"), &mut exports),
            "tb_gen_code"
        );
        // An address in a binary without exports is named by where it is.
        assert_eq!(
            name_of("0x00000000007dec20", Some("/nowhere/qemu"), &mut exports),
            "0x00000000007dec20 in qemu"
        );
    }

    #[test]
    fn sums_by_name_and_finds_totals() {
        let listing = "\
 100 (1%)  ???:0x000000000c000000 [???]
 50 (1%)  ???:0x000000000c000010'2 [???]
 7 (1%)  ???:tb_gen_code [/q]
 3 (1%)  ???:tb_gen_code'2 [/q]
";
        let mut exports = ExportCache::default();
        let m = sum_listing(listing, &mut exports, false);
        assert_eq!(m["[generated code]"], 150);
        assert_eq!(m["tb_gen_code"], 10);
        // Inclusive: the recursive call is inside the outer one.
        let m = sum_listing(listing, &mut exports, true);
        assert_eq!(m["[generated code]"], 150);
        assert_eq!(m["tb_gen_code"], 7);
        assert_eq!(total("events: Ir\nsummary: 12\n"), Some(12));
        assert_eq!(total("totals: 57121804\n"), Some(57_121_804));
        assert_eq!(total("events: Ir\n"), None);
    }

    #[test]
    fn the_steps_of_two_builds_side_by_side() {
        let c = |vcpu, translating, map_rebuilds| StepCost {
            vcpu,
            translating,
            map_rebuilds,
        };
        let build = |name: &str, pci| Steps {
            firmware: name.into(),
            before: c(3_000_000, 100_000, 0),
            steps: vec![
                ("pci_hardware".into(), c(pci, 1_000_000, 4_000_000)),
                (HANDOFF.into(), c(500_000, 400_000, 0)),
            ],
        };
        let (a, b) = (build("ferrite", 9_000_000), build("base", 10_000_000));
        assert_eq!(a.total(), 12_500_000);
        let s = render_steps(&[a, b], "q35");
        assert!(s.contains("| step | ferrite | base |"), "{s}");
        assert!(
            s.contains(
                "| QEMU's start, to the reset vector | 3.00 (0.10 / 0.00) | 3.00 (0.10 / 0.00) |"
            ),
            "{s}"
        );
        assert!(
            s.contains("| pci_hardware | 9.00 (1.00 / 4.00) | 10.00 (1.00 / 4.00) |"),
            "{s}"
        );
        assert!(
            s.contains("| total | 12.50 (1.50 / 4.00) | 13.50 (1.50 / 4.00) |"),
            "{s}"
        );
        // A build whose steps differ has no figure on a row not its own.
        let mut other = build("other", 1);
        other.steps[0].0 = "acpi_smbios".into();
        let s = render_steps(&[build("ferrite", 1), other], "pc");
        assert!(
            s.contains("| pci_hardware | 0.00 (1.00 / 4.00) | – |"),
            "{s}"
        );
        assert_eq!(render_steps(&[], "pc"), "");
    }

    /// The rebuilds among a vCPU's dumps: a stamp's dump moves to the next
    /// step, a dump below the threshold (a rebuild that changed nothing) is
    /// left out, and without stamps no step is named.
    #[test]
    fn rebuilds_are_named_by_the_step_they_come_in() {
        let stamp = (true, 0);
        let seq = [
            (false, 400_000), // before the reset vector's stamp
            stamp,            // the reset vector: `rust` starts
            (false, 3_000),   // changed nothing
            stamp,
            stamp,
            stamp,
            stamp, // kernel_header done: pci_hardware starts
            (false, 420_000),
            (false, 530_000),
            stamp,
            stamp,
            stamp,
            stamp,
            stamp, // cpus_mptable done: zero_page starts
            stamp, // the last: the hand-off
            (false, 25_000),
        ];
        let r = rebuilds_of(&seq);
        let steps: Vec<&str> = r.iter().map(|r| r.step.as_str()).collect();
        assert_eq!(
            steps,
            ["(QEMU's start)", "pci_hardware", "pci_hardware", HANDOFF]
        );
        assert_eq!(r[2].cost, 530_000);
        let md = render_rebuilds(&r, "q35");
        assert!(md.contains("| 2 | pci_hardware | 0.42 |"), "{md}");
        assert!(md.contains("| | all | 1.38 |"), "{md}");
        // without stamps (another firmware): no step
        let r = rebuilds_of(&[(false, 500_000), (false, 10)]);
        assert_eq!(
            r,
            [Rebuild {
                step: "–".into(),
                cost: 500_000
            }]
        );
    }

    #[test]
    fn the_report_puts_the_largest_difference_first() {
        let cost = |name: &str, vcpu, tb, commit| Cost {
            firmware: name.into(),
            vcpu,
            generated: 1_000_000,
            inclusive: [
                ("cpu_exec".to_string(), vcpu - 1_000_000),
                ("tcg_cpus_exec".to_string(), vcpu - 1_000_000),
                (GENERATED.to_string(), 2_000_000),
                ("helper_ret_stb_mmu".to_string(), 99_000_000),
                ("helper_le_stq_mmu".to_string(), 5_000_000),
                ("near flatview_unref".to_string(), 3_000_000),
                ("tb_gen_code".to_string(), tb),
                ("memory_region_transaction_commit".to_string(), commit),
            ]
            .into_iter()
            .collect(),
            thread: "03".into(),
        };
        let r = Report {
            end: "the kernel entry".into(),
            machine: "q35".into(),
            costs: vec![
                cost("ferrite", 57_000_000, 30_000_000, 10_000_000),
                cost("qboot", 40_000_000, 15_000_000, 4_000_000),
            ],
            calibration: None,
            breakdowns: Vec::new(),
            steps: Vec::new(),
            rebuilds: Vec::new(),
        };
        let s = render(&r, 5);
        assert!(s.contains("| the vCPU thread | 57.00 | 40.00 |"), "{s}");
        assert!(
            s.contains("| translating guest code (`tb_gen_code`) | 30.00 | 15.00 |"),
            "{s}"
        );
        let tb = s
            .find("| tb_gen_code | 30.00 | 15.00 | +15.00 |")
            .expect(&s);
        let commit = s.find("| memory_region_transaction_commit |").expect(&s);
        assert!(tb < commit, "{s}");
        // The thread's own frame is the total, not a row.
        assert!(
            !s.contains("| cpu_exec |") && !s.contains("| tcg_cpus_exec |"),
            "{s}"
        );
        assert!(!s.contains(&format!("| {GENERATED} |")), "{s}");
        assert!(!s.contains("helper_"), "{s}");
        assert!(
            s.contains("| near flatview_unref | 3.00 | 3.00 | +0.00 |"),
            "{s}"
        );
        assert!(
            s.contains("| running the translated code | 1.00 | 1.00 |"),
            "{s}"
        );
    }
}
