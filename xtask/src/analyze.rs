//! `cargo xtask analyze`: where a boot's time goes, after R. Jones's
//! `boot-analysis`. Boots a kernel N times under one firmware (or several, in
//! interleaved rounds), collects every event with its host time of arrival
//! (QEMU's start and exit, the boot markers, ferrite's own timeline, every
//! kernel message with its printk time, each initcall, /init's start, what a
//! user pattern matches), derives activities from them and reports each
//! activity's mean ± sd and share of the whole boot.
//!
//! How the clocks meet: the serial port and the markers (an `isa-debugcon` on
//! each marker port instead of `isa-debug-exit`, so the boot goes on) are read
//! through FIFOs while QEMU is timed ([`crate::qemu::Qemu::run_with_arrivals`]).
//! ferrite's timeline is in TSC ticks since its reset vector, stretched
//! between its 0xf5 and 0xf4 markers' arrivals. The kernel's printk clock is mapped to host time by
//! the smallest (arrival − printk time) over its messages: messages replayed
//! when the console registers arrive late, live ones within microseconds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferrite_contract::{fw_cfg, marker, timeline};
use rand::seq::SliceRandom;
use regex::Regex;
use serde::Serialize;

use crate::bench::{Firmware, summarize};
use crate::linux_assets::{self, InitramfsSpec};
use crate::qemu::{Arrival, Channel, Machine, Qemu};
use crate::symbols::Symbols;

/// ferrite's first-instruction marker and the kernel-entry marker (value 3
/// for a bzImage), and the userspace marker (/init, or the small kernel's
/// `kernel_init`, writes 2).
const START_PORT: u16 = marker::START_PORT;
const ENTRY_PORT: u16 = marker::KERNEL_PORT;
const USER_PORT: u16 = marker::USER_PORT;
/// ferrite's timeline report (QEMU's default debug console port).
const TIMELINE_PORT: u16 = timeline::PORT;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    QemuStart,
    QemuExit,
    /// A byte written to a marker port (`text` is `0xf5=1`).
    Marker,
    /// A step of ferrite's timeline, placed on the host clock.
    FirmwareStep,
    /// A serial line (a kernel message when it has a printk time).
    Message,
    InitcallStart,
    InitcallDone,
    /// The kernel's "Run /init as init process".
    InitStart,
    /// A serial line the user's pattern matched.
    Pattern,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub kind: Kind,
    /// ms since QEMU was started: the arrival on the host, or (firmware steps)
    /// the place derived from the firmware's own clock.
    pub host_ms: f64,
    /// The kernel's printk time, s.
    pub kernel_s: Option<f64>,
    /// The message, marker, step or initcall name.
    pub text: String,
    /// An initcall's duration as the kernel measured it.
    pub usecs: Option<u64>,
}

impl Event {
    fn new(kind: Kind, host_ms: f64, text: impl Into<String>) -> Event {
        Event {
            kind,
            host_ms,
            kernel_s: None,
            text: text.into(),
            usecs: None,
        }
    }
}

/// `[    1.234567] message` → (1.234567, "message").
pub fn parse_printk(line: &str) -> Option<(f64, &str)> {
    let rest = line.strip_prefix('[')?;
    let (time, msg) = rest.split_once(']')?;
    let secs: f64 = time.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some((secs, msg.strip_prefix(' ').unwrap_or(msg)))
}

#[derive(Clone, Debug, PartialEq)]
pub enum Initcall {
    Start(String),
    Done { name: String, usecs: u64 },
}

/// `calling  foo+0x0/0x40 @ 1` and `initcall foo+0x0/0x40 returned 0 after 12 usecs`.
pub fn parse_initcall(msg: &str) -> Option<Initcall> {
    if let Some(rest) = msg.strip_prefix("calling  ") {
        let (f, _) = rest.split_once(" @ ")?;
        return Some(Initcall::Start(f.trim().to_string()));
    }
    let rest = msg.strip_prefix("initcall ")?;
    let (f, rest) = rest.split_once(" returned ")?;
    let (_, after) = rest.split_once(" after ")?;
    let usecs = after.strip_suffix(" usecs")?.trim().parse().ok()?;
    Some(Initcall::Done {
        name: f.trim().to_string(),
        usecs,
    })
}

/// An initcall as printed (`foo+0x0/0x40`, or a bare address from a kernel
/// without kallsyms) → its function name.
fn initcall_name(printed: &str, symbols: &Symbols) -> String {
    if let Some(hex) = printed.strip_prefix("0x")
        && let Ok(addr) = u64::from_str_radix(hex, 16)
    {
        return symbols.lookup(addr).unwrap_or(printed).to_string();
    }
    printed.split('+').next().unwrap_or(printed).to_string()
}

/// `ferrite-timeline: reset=0 rust=N ...` → the steps and their TSC ticks.
pub fn parse_timeline_ticks(line: &str) -> Option<Vec<(String, u64)>> {
    let steps: Vec<(String, u64)> = line
        .trim()
        .strip_prefix(timeline::PREFIX)?
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect::<Option<_>>()?;
    let increasing = steps.windows(2).all(|w| w[1].1 >= w[0].1);
    (steps.len() >= 2 && increasing).then_some(steps)
}

/// Every event of one run, from what arrived and how QEMU ended.
pub fn events(
    arrivals: &[Arrival],
    exit_ms: f64,
    tsc_khz: Option<f64>,
    pattern: Option<&Regex>,
    symbols: &Symbols,
) -> Vec<Event> {
    let mut out = vec![Event::new(Kind::QemuStart, 0.0, "QEMU started")];
    let mut timeline = None;
    for a in arrivals {
        match a.channel {
            Channel::Debugcon(TIMELINE_PORT) => {
                if let Some(t) = parse_timeline_ticks(&a.text) {
                    timeline = Some((a.host_ms, t));
                }
            }
            Channel::Debugcon(port) => out.push(Event::new(
                Kind::Marker,
                a.host_ms,
                format!("{port:#x}={}", a.text),
            )),
            Channel::Serial => {
                let mut e = Event::new(Kind::Message, a.host_ms, a.text.clone());
                if let Some((secs, msg)) = parse_printk(&a.text) {
                    e.kernel_s = Some(secs);
                    e.text = msg.to_string();
                    match parse_initcall(msg) {
                        Some(Initcall::Start(f)) => {
                            e.kind = Kind::InitcallStart;
                            e.text = initcall_name(&f, symbols);
                        }
                        Some(Initcall::Done { name, usecs }) => {
                            e.kind = Kind::InitcallDone;
                            e.text = initcall_name(&name, symbols);
                            e.usecs = Some(usecs);
                        }
                        None if msg.starts_with("Run ") && msg.ends_with(" as init process") => {
                            e.kind = Kind::InitStart;
                        }
                        None => {}
                    }
                }
                if let Some(p) = pattern
                    && p.is_match(&a.text)
                {
                    out.push(Event::new(Kind::Pattern, a.host_ms, a.text.clone()));
                }
                out.push(e);
            }
        }
    }
    // ferrite's steps: its TSC ticks stretched between its first-instruction
    // and kernel-entry markers (the last stamp is a few instructions before
    // the jump); without both markers, at the host's TSC rate from whichever
    // end is known.
    if let Some((arrived, steps)) = timeline {
        let last = steps.last().map_or(0, |s| s.1).max(1) as f64;
        let start = marker(&out, START_PORT, &[1]);
        let entry = marker(&out, ENTRY_PORT, &[2, 3, 4]);
        let place = match (start, entry, tsc_khz) {
            (Some(s), Some(e), _) if e > s => Some((s, (e - s) / last)),
            (Some(s), _, Some(khz)) => Some((s, 1.0 / khz)),
            (None, _, Some(khz)) => Some((arrived - last / khz, 1.0 / khz)),
            _ => None,
        };
        if let Some((anchor, ms_per_tick)) = place {
            for (name, ticks) in steps {
                out.push(Event::new(
                    Kind::FirmwareStep,
                    anchor + ticks as f64 * ms_per_tick,
                    name,
                ));
            }
        }
    }
    out.push(Event::new(Kind::QemuExit, exit_ms, "QEMU exited"));
    out.sort_by(|a, b| a.host_ms.total_cmp(&b.host_ms));
    out
}

/// The first write of one of `values` to `port`.
fn marker(events: &[Event], port: u16, values: &[u8]) -> Option<f64> {
    markers(events, port, values).next()
}

fn markers<'a>(events: &'a [Event], port: u16, values: &'a [u8]) -> impl Iterator<Item = f64> + 'a {
    events
        .iter()
        .filter(|e| e.kind == Kind::Marker)
        .filter(move |e| {
            e.text.split_once('=').is_some_and(|(p, v)| {
                p == format!("{port:#x}") && v.parse().is_ok_and(|v: u8| values.contains(&v))
            })
        })
        .map(|e| e.host_ms)
}

/// The kernel's printk clock on the host clock: host ms = `zero_ms` +
/// printk ms × `rate`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct KernelClock {
    pub zero_ms: f64,
    pub rate: f64,
}

impl KernelClock {
    pub fn host_ms(&self, kernel_s: f64) -> f64 {
        self.zero_ms + kernel_s * 1000.0 * self.rate
    }
}

/// Puts the printk clock on the host clock. A message arrives after it was
/// stamped (replayed ones much later), so the message with the smallest
/// (arrival − printk time) is one that arrived at once; so is the last one
/// (everything is live by then). Under TCG the kernel's clock may run at
/// another rate than the host's, so the line through those two gives both
/// the offset and the rate (1 when they coincide). Messages stamped 0, or
/// ahead of QEMU's own clock (only a garbled line could be), are left out.
pub fn kernel_clock(events: &[Event]) -> Option<KernelClock> {
    let stamped: Vec<(f64, f64)> = events
        .iter()
        .filter_map(|e| Some((e.kernel_s.filter(|&s| s > 0.0)? * 1000.0, e.host_ms)))
        .filter(|&(k, h)| h - k >= 0.0)
        .collect();
    let first = stamped
        .iter()
        .min_by(|a, b| (a.1 - a.0).total_cmp(&(b.1 - b.0)))?;
    let last = stamped.iter().max_by(|a, b| a.0.total_cmp(&b.0))?;
    let rate = if last.0 > first.0 {
        ((last.1 - first.1) / (last.0 - first.0)).max(0.0)
    } else {
        1.0
    };
    Some(KernelClock {
        zero_ms: first.1 - first.0 * rate,
        rate,
    })
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Activity {
    pub name: String,
    pub start_ms: f64,
    pub end_ms: f64,
}

impl Activity {
    fn new(name: impl Into<String>, start_ms: f64, end_ms: f64) -> Activity {
        Activity {
            name: name.into(),
            start_ms,
            end_ms,
        }
    }

    pub fn ms(&self) -> f64 {
        self.end_ms - self.start_ms
    }
}

/// The whole run's activity: the denominator of every share.
pub const TOTAL: &str = "whole boot (QEMU start to exit)";
pub const FIRMWARE_STEP_PREFIX: &str = "firmware: ";
pub const INITCALL_PREFIX: &str = "initcall ";

/// The activities of one run (see the module's documentation for the clocks).
pub fn activities(events: &[Event]) -> Vec<Activity> {
    let mut out = Vec::new();
    let Some(exit) = events
        .iter()
        .find(|e| e.kind == Kind::QemuExit)
        .map(|e| e.host_ms)
    else {
        return out;
    };
    out.push(Activity::new(TOTAL, 0.0, exit));
    let fw_start = marker(events, START_PORT, &[1]);
    // 2 multiboot, 3 bzImage, 4 PVH
    let entry = marker(events, ENTRY_PORT, &[2, 3, 4]);
    let clock = kernel_clock(events);
    let zero = clock.map(|c| c.zero_ms);
    let rate = clock.map_or(1.0, |c| c.rate);
    let on_kernel_clock = |e: &Event| match (e.kernel_s, clock) {
        (Some(s), Some(c)) => c.host_ms(s),
        _ => e.host_ms,
    };
    if let Some(s) = fw_start {
        out.push(Activity::new("QEMU start-up", 0.0, s));
    }
    if let (Some(s), Some(e)) = (fw_start, entry) {
        out.push(Activity::new("firmware", s, e));
    }
    let steps: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == Kind::FirmwareStep)
        .collect();
    for w in steps.windows(2) {
        out.push(Activity::new(
            format!("{FIRMWARE_STEP_PREFIX}{}", w[1].text),
            w[0].host_ms,
            w[1].host_ms,
        ));
    }
    match (entry, zero) {
        (Some(e), Some(z)) => out.push(Activity::new(
            "kernel decompression and early set-up (entry to printk clock zero)",
            e,
            z,
        )),
        (None, Some(z)) => out.push(Activity::new(
            "QEMU, firmware and kernel decompression",
            0.0,
            z,
        )),
        _ => {}
    }
    // initcalls: each "initcall" closes the latest open "calling" of its name
    let mut open: Vec<(&str, f64)> = Vec::new();
    let mut initcalls = Vec::new();
    for e in events {
        match e.kind {
            Kind::InitcallStart => open.push((&e.text, on_kernel_clock(e))),
            Kind::InitcallDone => {
                if let Some(i) = open.iter().rposition(|o| o.0 == e.text) {
                    let (name, start) = open.remove(i);
                    let ms = e.usecs.unwrap_or(0) as f64 / 1000.0 * rate;
                    initcalls.push(Activity::new(
                        format!("{INITCALL_PREFIX}{name}"),
                        start,
                        start + ms,
                    ));
                }
            }
            _ => {}
        }
    }
    let init_start = events
        .iter()
        .find(|e| e.kind == Kind::InitStart)
        .map(on_kernel_clock);
    let first_initcall = initcalls.first().map(|a| a.start_ms);
    let last_initcall = initcalls.iter().map(|a| a.end_ms).max_by(f64::total_cmp);
    if let Some(z) = zero {
        match (first_initcall, init_start) {
            (Some(f), _) => out.push(Activity::new("kernel set-up to the initcalls", z, f)),
            (None, Some(i)) => out.push(Activity::new("kernel set-up to /init", z, i)),
            _ => {}
        }
    }
    out.extend(initcalls);
    if let (Some(l), Some(i)) = (last_initcall, init_start) {
        out.push(Activity::new("kernel after the initcalls", l, i));
    }
    // /init runs to its own 0xf6 marker (the last one: the small kernel also
    // writes one in kernel_init, before /init), then powers off.
    let user = markers(events, USER_PORT, &[2]).last();
    if let Some(i) = init_start {
        out.push(Activity::new(
            "/init",
            i,
            user.filter(|&u| u > i).unwrap_or(exit),
        ));
    }
    if let Some(u) = user {
        out.push(Activity::new("power-off and QEMU exit", u, exit));
    }
    if let Some(p) = events.iter().find(|e| e.kind == Kind::Pattern) {
        out.push(Activity::new(
            format!("QEMU start to the pattern ({})", p.text.trim()),
            0.0,
            p.host_ms,
        ));
    }
    out
}

#[derive(Clone, Debug, Serialize)]
pub struct ActivityStats {
    pub name: String,
    /// Runs that had it.
    pub runs: usize,
    pub mean_ms: f64,
    pub sd_ms: f64,
    pub mean_start_ms: f64,
    /// mean / the mean whole boot.
    pub share: f64,
}

/// Mean ± sd of each activity over the runs (an activity a run has twice is
/// summed for that run), in order of mean start.
pub fn activity_stats(runs: &[Vec<Activity>]) -> Vec<ActivityStats> {
    let mut by_name: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for run in runs {
        let mut here: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for a in run {
            let e = here.entry(&a.name).or_insert((0.0, a.start_ms));
            e.0 += a.ms();
        }
        for (name, v) in here {
            by_name.entry(name).or_default().push(v);
        }
    }
    let total = by_name
        .get(TOTAL)
        .and_then(|v| summarize(&v.iter().map(|x| x.0).collect::<Vec<_>>()))
        .map_or(f64::NAN, |s| s.mean);
    let mut out: Vec<ActivityStats> = by_name
        .into_iter()
        .filter_map(|(name, v)| {
            let d = summarize(&v.iter().map(|x| x.0).collect::<Vec<_>>())?;
            let s = summarize(&v.iter().map(|x| x.1).collect::<Vec<_>>())?;
            Some(ActivityStats {
                name: name.to_string(),
                runs: v.len(),
                mean_ms: d.mean,
                sd_ms: d.sd,
                mean_start_ms: s.mean,
                share: d.mean / total,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        a.mean_start_ms
            .total_cmp(&b.mean_start_ms)
            .then(b.mean_ms.total_cmp(&a.mean_ms))
    });
    out
}

/// `initcall acpi_init 98.7ms ±5.7ms (11.8%)`, longest first.
pub fn longest(stats: &[ActivityStats], top: usize) -> Vec<String> {
    let mut v: Vec<&ActivityStats> = stats.iter().filter(|s| s.name != TOTAL).collect();
    v.sort_by(|a, b| b.mean_ms.total_cmp(&a.mean_ms));
    v.into_iter()
        .take(top)
        .map(|s| {
            format!(
                "{} {:.1}ms ±{:.1}ms ({:.1}%)",
                s.name,
                s.mean_ms,
                s.sd_ms,
                s.share * 100.0
            )
        })
        .collect()
}

/// What the timeline draws: everything but the smaller initcalls (the `keep`
/// longest of those at or above 0.5 % of the boot).
fn drawn(stats: &[ActivityStats], keep: usize) -> Vec<&ActivityStats> {
    let mut initcalls: Vec<&ActivityStats> = stats
        .iter()
        .filter(|s| s.name.starts_with(INITCALL_PREFIX) && s.share >= 0.005)
        .collect();
    initcalls.sort_by(|a, b| b.mean_ms.total_cmp(&a.mean_ms));
    initcalls.truncate(keep);
    stats
        .iter()
        .filter(|s| {
            !s.name.starts_with(INITCALL_PREFIX) || initcalls.iter().any(|i| i.name == s.name)
        })
        .collect()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One band per activity at its mean start, as long as its mean, with a
/// whisker of ± sd at its end; per firmware, the whole boot and, zoomed, QEMU
/// start to the kernel's entry (the firmware's steps).
pub fn timeline_svg(title: &str, sections: &[(String, Vec<ActivityStats>)]) -> String {
    const ROW: f64 = 18.0;
    const LEFT: f64 = 30.0;
    const WIDTH: f64 = 1100.0;
    const BAR_W: f64 = 640.0;
    let mut body = String::new();
    let mut y = 40.0;
    for (name, stats) in sections {
        let total = stats
            .iter()
            .find(|s| s.name == TOTAL)
            .map_or(1.0, |s| s.mean_ms.max(1.0));
        let whole = drawn(stats, 15);
        let early: Vec<&ActivityStats> = stats
            .iter()
            .filter(|s| s.name == "QEMU start-up" || s.name.starts_with("firmware"))
            .collect();
        let early_end = early
            .iter()
            .map(|s| s.mean_start_ms + s.mean_ms)
            .fold(0.0, f64::max);
        let mut panels = vec![(format!("{name}: the whole boot"), whole, total)];
        if early_end > 0.0 {
            panels.push((
                format!("{name}: QEMU start to the kernel's entry (zoomed)"),
                early,
                early_end * 1.05,
            ));
        }
        for (caption, rows, scale) in panels {
            let _ = writeln!(
                body,
                r#"<text x="{LEFT}" y="{y}" font-size="14" font-weight="bold">{}</text>"#,
                xml_escape(&caption)
            );
            y += 8.0;
            let axis_y = y + ROW * rows.len() as f64 + 4.0;
            for tick in 0..=4 {
                let x = LEFT + BAR_W * tick as f64 / 4.0;
                let _ = writeln!(
                    body,
                    r##"<line x1="{x:.1}" y1="{y}" x2="{x:.1}" y2="{axis_y}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="middle">{:.1} ms</text>"##,
                    axis_y + 12.0,
                    scale * tick as f64 / 4.0
                );
            }
            for s in rows {
                let px = |ms: f64| LEFT + (ms / scale * BAR_W).clamp(0.0, BAR_W);
                let (x0, x1) = (px(s.mean_start_ms), px(s.mean_start_ms + s.mean_ms));
                let color = match s.name.as_str() {
                    n if n.starts_with("QEMU") => "#aaaaaa",
                    n if n.starts_with("firmware") => "#e6781e",
                    n if n.starts_with(INITCALL_PREFIX) => "#3c9b5a",
                    n if n.starts_with("kernel") => "#3c6ebe",
                    n if n.starts_with("/init") => "#8c50b4",
                    _ => "#666666",
                };
                let (w0, w1) = (
                    px(s.mean_start_ms + s.mean_ms - s.sd_ms),
                    px(s.mean_start_ms + s.mean_ms + s.sd_ms),
                );
                let mid = y + ROW / 2.0;
                let _ = writeln!(
                    body,
                    r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"/><line x1="{w0:.1}" y1="{mid:.1}" x2="{w1:.1}" y2="{mid:.1}" stroke="#000"/><text x="{:.1}" y="{:.1}" font-size="11">{} {:.1} ± {:.1} ms ({:.1} %)</text>"##,
                    y + 3.0,
                    (x1 - x0).max(1.5),
                    ROW - 6.0,
                    LEFT + BAR_W + 10.0,
                    y + ROW - 5.0,
                    xml_escape(&s.name),
                    s.mean_ms,
                    s.sd_ms,
                    s.share * 100.0
                );
                y += ROW;
            }
            y += 40.0;
        }
    }
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="20" font-size="16">{}</text>
{body}</svg>
"#,
        xml_escape(title)
    )
}

/// The kernel to boot and what names its addresses.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub name: String,
    pub path: PathBuf,
    /// vmlinux or System.map, when known.
    pub symbols: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub runs: usize,
    pub firmwares: Vec<Firmware>,
    /// Other builds of ferrite beside them, by name: a change against its
    /// base, booted in the same shuffled rounds.
    pub roms: Vec<(String, PathBuf)>,
    pub machine: Machine,
    pub kernel: Kernel,
    pub memory_mib: u64,
    pub cpus: u32,
    pub initcall_debug: bool,
    pub pattern: Option<Regex>,
    /// Also boot each firmware with `quiet`, to state the logging's cost.
    pub quiet_check: bool,
    pub top: usize,
    pub json: Option<PathBuf>,
    pub svg: PathBuf,
}

#[derive(Serialize)]
struct RunRecord {
    round: usize,
    exit_code: Option<i32>,
    events: Vec<Event>,
    activities: Vec<Activity>,
}

#[derive(Serialize)]
struct FirmwareReport {
    firmware: String,
    command_line: String,
    runs: Vec<RunRecord>,
    failures: Vec<String>,
    activities: Vec<ActivityStats>,
    /// To /init's marker, ms, with the serial logging and with `quiet`.
    to_userspace_logging_ms: Vec<f64>,
    to_userspace_quiet_ms: Vec<f64>,
    logging_overhead: Option<Overhead>,
    /// The kernel's messages under this firmware against under the first
    /// one (`kernel_lines`); none for the first.
    kernel_lines: Option<crate::kernel_lines::Comparison>,
}

/// A run's kernel messages (initcalls and `/init`'s start among them) with
/// their printk times (s), in the order printed.
fn kernel_messages(events: &[Event]) -> Vec<(String, f64)> {
    events
        .iter()
        .filter_map(|e| Some((e.text.clone(), e.kernel_s?)))
        .collect()
}

#[derive(Clone, Debug, Serialize)]
pub struct Overhead {
    pub logging_median_ms: f64,
    pub quiet_median_ms: f64,
    pub difference_ms: f64,
    pub test: crate::stats::MannWhitney,
}

#[derive(Serialize)]
struct Report {
    date: String,
    host: String,
    qemu: String,
    machine: String,
    kernel: String,
    kernel_symbols: Option<String>,
    runs_per_firmware: usize,
    firmwares: Vec<FirmwareReport>,
}

/// One firmware image booted side by side with the others.
struct Arm {
    name: String,
    image: PathBuf,
    /// A build of ferrite: its timeline is turned on.
    ferrite: bool,
}

/// The firmwares named, then the other ROMs, each an [`Arm`].
fn arms(opts: &Options, ferrite_rom: &Path) -> Result<Vec<Arm>> {
    let mut arms = Vec::new();
    for &fw in &opts.firmwares {
        arms.push(Arm {
            name: fw.name().into(),
            image: fw
                .image(ferrite_rom, opts.machine)
                .map_err(anyhow::Error::msg)?,
            ferrite: fw == Firmware::Ferrite,
        });
    }
    for (name, image) in &opts.roms {
        if arms.iter().any(|a| a.name == *name) {
            bail!("two firmwares named {name}");
        }
        if !image.exists() {
            bail!("{name}: no ROM at {}", image.display());
        }
        arms.push(Arm {
            name: name.clone(),
            image: image.clone(),
            ferrite: true,
        });
    }
    Ok(arms)
}

struct Cell {
    /// Index into the arms (and the reports).
    arm: usize,
    quiet: bool,
    qemu: Qemu,
}

/// Time to the last userspace marker (/init's), if the run got there.
fn to_userspace(events: &[Event]) -> Option<f64> {
    markers(events, USER_PORT, &[2]).last()
}

pub fn run(opts: &Options, ferrite_rom: &Path) -> Result<()> {
    let symbols = match &opts.kernel.symbols {
        Some(p) => Symbols::load(p)?,
        None => Symbols::default(),
    };
    let work = linux_assets::cache_dir().join("analyze");
    std::fs::create_dir_all(&work)?;
    let token = "ferrite.analyze=1";
    let initrd = linux_assets::build_initramfs(
        &InitramfsSpec {
            expect_cpus: opts.cpus,
            expect_mem_mib: opts.memory_mib,
            cmdline_token: token.into(),
            payload_len: 4096,
            poweroff: true,
            kernel_reserves_mib: 0,
        },
        &work.join(format!(
            "initramfs-{}cpu-{}M.cpio",
            opts.cpus, opts.memory_mib
        )),
    )?;
    // printk times, and every message on the console (initcall_debug's are
    // KERN_DEBUG); the quiet twin differs only in what reaches the serial port.
    let mut append = format!("console=ttyS0 panic=-1 printk.time=1 {token}");
    if opts.initcall_debug {
        append += " initcall_debug";
    }
    if let (Machine::Microvm, Some(khz)) = (opts.machine, crate::bench::tsc_khz()) {
        let _ = write!(append, " tsc_early_khz={khz}");
    }
    let tsc_khz = crate::bench::tsc_khz().map(|k| k as f64);
    let arms = arms(opts, ferrite_rom)?;
    let mut cells = Vec::new();
    for (arm, a) in arms.iter().enumerate() {
        for quiet in [false, true] {
            if quiet && !opts.quiet_check {
                continue;
            }
            let mut q = Qemu::new(opts.machine, a.image.clone());
            q.memory_mib = opts.memory_mib;
            q.cpus = opts.cpus;
            q.kernel = Some(opts.kernel.path.clone());
            q.initrd = Some(initrd.path.clone());
            q.append = Some(format!(
                "{append} {}",
                if quiet { "quiet" } else { "loglevel=8" }
            ));
            q.timeout = Duration::from_secs(if opts.kernel.name == "stock" {
                300
            } else {
                120
            });
            if a.ferrite {
                q.fw_cfg_string(fw_cfg::TIMELINE, "1");
            }
            cells.push(Cell {
                arm,
                quiet,
                qemu: q,
            });
        }
    }
    let ports = [TIMELINE_PORT, ENTRY_PORT, START_PORT, USER_PORT];
    let mut reports: Vec<FirmwareReport> = arms
        .iter()
        .enumerate()
        .map(|(arm, a)| FirmwareReport {
            firmware: a.name.clone(),
            command_line: cells
                .iter()
                .find(|c| c.arm == arm && !c.quiet)
                .map(|c| c.qemu.command_line())
                .unwrap_or_default(),
            runs: Vec::new(),
            failures: Vec::new(),
            activities: Vec::new(),
            to_userspace_logging_ms: Vec::new(),
            to_userspace_quiet_ms: Vec::new(),
            logging_overhead: None,
            kernel_lines: None,
        })
        .collect();
    let mut order: Vec<usize> = (0..cells.len()).collect();
    let mut rng = rand::rng();
    let total = cells.len() * (opts.runs + 1);
    let mut done = 0;
    for round in 0..=opts.runs {
        order.shuffle(&mut rng);
        for &i in &order {
            let cell = &cells[i];
            done += 1;
            eprint!(
                "\r{done}/{total} runs ({} {})        ",
                arms[cell.arm].name,
                if cell.quiet { "quiet" } else { "logging" }
            );
            let (outcome, arrivals) = cell.qemu.run_with_arrivals(&ports)?;
            let exit_ms = outcome.wall.as_secs_f64() * 1000.0;
            let ev = events(&arrivals, exit_ms, tsc_khz, opts.pattern.as_ref(), &symbols);
            let report = &mut reports[cell.arm];
            let reached = to_userspace(&ev);
            if outcome.timed_out || reached.is_none() {
                report.failures.push(format!(
                    "round {round}{}: {} (exit {:?}); last serial line: {:?}",
                    if cell.quiet { " (quiet)" } else { "" },
                    if outcome.timed_out {
                        "timed out"
                    } else {
                        "no /init marker"
                    },
                    outcome.exit_code,
                    outcome.serial.lines().last().unwrap_or("")
                ));
                continue;
            }
            if round == 0 {
                continue; // warm-up
            }
            if cell.quiet {
                report.to_userspace_quiet_ms.extend(reached);
            } else {
                report.to_userspace_logging_ms.extend(reached);
                report.runs.push(RunRecord {
                    round,
                    exit_code: outcome.exit_code,
                    activities: activities(&ev),
                    events: ev,
                });
            }
        }
    }
    eprintln!();
    let mut sections = Vec::new();
    for r in &mut reports {
        let runs: Vec<Vec<Activity>> = r.runs.iter().map(|x| x.activities.clone()).collect();
        r.activities = activity_stats(&runs);
        println!(
            "\n{} on {} with the {} kernel, {} runs: longest activities",
            r.firmware,
            opts.machine.name(),
            opts.kernel.name,
            r.runs.len()
        );
        for line in longest(&r.activities, opts.top) {
            println!("  {line}");
        }
        if let Some(t) = r.activities.iter().find(|s| s.name == TOTAL) {
            println!("  ({TOTAL}: {:.1}ms ±{:.1}ms)", t.mean_ms, t.sd_ms);
        }
        if let (Some(l), Some(q)) = (
            summarize(&r.to_userspace_logging_ms),
            summarize(&r.to_userspace_quiet_ms),
        ) && let Some(test) =
            crate::stats::mann_whitney(&r.to_userspace_logging_ms, &r.to_userspace_quiet_ms)
        {
            println!(
                "  logging overhead: to /init's marker {:.1}ms (median, serial logging) against {:.1}ms (quiet): {:+.1}ms, Mann-Whitney U p = {:.3}{}",
                l.median,
                q.median,
                l.median - q.median,
                test.p,
                if test.p < 0.05 {
                    ""
                } else {
                    " (within the noise)"
                }
            );
            r.logging_overhead = Some(Overhead {
                logging_median_ms: l.median,
                quiet_median_ms: q.median,
                difference_ms: l.median - q.median,
                test,
            });
        }
        for f in &r.failures {
            println!("  failed run: {f}");
        }
        sections.push((r.firmware.clone(), r.activities.clone()));
    }
    // Where the kernel itself runs longer after one firmware than after the
    // first one named: what a firmware leaves costs it too.
    let messages = |r: &FirmwareReport| -> Vec<Vec<(String, f64)>> {
        r.runs.iter().map(|x| kernel_messages(&x.events)).collect()
    };
    if let Some((first, rest)) = reports.split_first_mut() {
        let base = messages(first);
        for r in rest {
            let Some(c) = crate::kernel_lines::compare(&base, &messages(r)) else {
                continue;
            };
            print!(
                "{}",
                crate::kernel_lines::render(
                    &c,
                    &first.firmware,
                    &r.firmware,
                    (first.runs.len(), r.runs.len()),
                    opts.top
                )
            );
            r.kernel_lines = Some(c);
        }
    }
    if opts.kernel.symbols.is_none() && opts.kernel.name != "stock" {
        println!("(no symbols for this kernel: initcalls are named as it prints them)");
    }
    let qemu_version =
        crate::bench::command_output(&crate::qemu::binary().to_string_lossy(), &["--version"])
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
    let title = format!(
        "Boot timeline, mean ± sd of {} runs: {} kernel on {} ({qemu_version}, TCG)",
        opts.runs,
        opts.kernel.name,
        opts.machine.name()
    );
    std::fs::write(&opts.svg, timeline_svg(&title, &sections))
        .with_context(|| format!("writing {}", opts.svg.display()))?;
    println!("timeline: {}", opts.svg.display());
    if let Some(path) = &opts.json {
        let report = Report {
            date: crate::bench::command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
            host: crate::bench::command_output("uname", &["-srm"]),
            qemu: qemu_version,
            machine: opts.machine.name().into(),
            kernel: opts.kernel.name.clone(),
            kernel_symbols: opts.kernel.symbols.as_ref().map(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            }),
            runs_per_firmware: opts.runs,
            firmwares: reports,
        };
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("every run's events: {}", path.display());
    }
    if sections.iter().all(|s| s.1.is_empty()) {
        bail!("no run reached /init");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(firmwares: Vec<Firmware>, roms: Vec<(String, PathBuf)>) -> Options {
        Options {
            runs: 1,
            firmwares,
            roms,
            machine: Machine::Q35,
            kernel: Kernel {
                name: "small".into(),
                path: PathBuf::new(),
                symbols: None,
            },
            memory_mib: 512,
            cpus: 1,
            initcall_debug: false,
            pattern: None,
            quiet_check: false,
            top: 1,
            json: None,
            svg: PathBuf::new(),
        }
    }

    #[test]
    fn other_roms_boot_beside_the_firmwares_as_builds_of_ferrite() {
        let dir = tempfile::tempdir().unwrap();
        let (ours, base) = (dir.path().join("ours.rom"), dir.path().join("base.rom"));
        std::fs::write(&ours, b"rom").unwrap();
        std::fs::write(&base, b"rom").unwrap();
        let both = arms(
            &options(vec![Firmware::Ferrite], vec![("base".into(), base.clone())]),
            &ours,
        )
        .unwrap();
        let seen: Vec<_> = both
            .iter()
            .map(|a| (a.name.as_str(), &a.image, a.ferrite))
            .collect();
        assert_eq!(seen, [("ferrite", &ours, true), ("base", &base, true)]);
        // A name taken twice, or a ROM that is not there, is refused before any boot.
        let twice = options(
            vec![Firmware::Ferrite],
            vec![("ferrite".into(), base.clone())],
        );
        assert!(arms(&twice, &ours).is_err());
        let missing = options(vec![], vec![("gone".into(), dir.path().join("gone.rom"))]);
        assert!(arms(&missing, &ours).is_err());
    }

    fn serial(ms: f64, text: &str) -> Arrival {
        Arrival {
            host_ms: ms,
            channel: Channel::Serial,
            text: text.into(),
        }
    }

    fn debugcon(ms: f64, port: u16, text: &str) -> Arrival {
        Arrival {
            host_ms: ms,
            channel: Channel::Debugcon(port),
            text: text.into(),
        }
    }

    #[test]
    fn the_kernels_messages_are_its_printk_lines_with_initcalls_and_init() {
        let arrivals = [
            debugcon(1.0, START_PORT, "1"),
            serial(2.0, "ferrite: a line without a printk time"),
            serial(3.0, "[    0.001000] Linux version 6.1"),
            serial(4.0, "[    0.002000] calling  acpi_init+0x0/0x4d4 @ 1"),
            serial(
                5.0,
                "[    0.003000] initcall acpi_init+0x0/0x4d4 returned 0 after 9 usecs",
            ),
            serial(6.0, "[    0.004000] Run /init as init process"),
        ];
        let ev = events(&arrivals, 10.0, None, None, &Symbols::default());
        let m = kernel_messages(&ev);
        let texts: Vec<&str> = m.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Linux version 6.1",
                "acpi_init",
                "acpi_init",
                "Run /init as init process"
            ]
        );
        let times: Vec<f64> = m.iter().map(|m| m.1).collect();
        assert_eq!(times, [0.001, 0.002, 0.003, 0.004]);
    }

    #[test]
    fn parses_printk_lines_and_initcalls() {
        assert_eq!(
            parse_printk("[    1.234567] ACPI: Core revision"),
            Some((1.234567, "ACPI: Core revision"))
        );
        assert_eq!(parse_printk("[0.000000] x"), Some((0.0, "x")));
        for bad in ["ferrite-init: PASS", "[abc] x", "[ -1.0] x", "[ 1.0 x", ""] {
            assert_eq!(parse_printk(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_initcall("calling  acpi_init+0x0/0x4d4 @ 1"),
            Some(Initcall::Start("acpi_init+0x0/0x4d4".into()))
        );
        assert_eq!(
            parse_initcall("initcall acpi_init+0x0/0x4d4 returned 0 after 98765 usecs"),
            Some(Initcall::Done {
                name: "acpi_init+0x0/0x4d4".into(),
                usecs: 98765
            })
        );
        assert_eq!(
            parse_initcall("initcall 0xffffffff81c0a1b2 returned -19 after 3 usecs"),
            Some(Initcall::Done {
                name: "0xffffffff81c0a1b2".into(),
                usecs: 3
            })
        );
        for bad in [
            "calling  foo",
            "initcall foo returned 0 after x usecs",
            "initcall foo returned 0",
            "initcall_debug enabled",
        ] {
            assert_eq!(parse_initcall(bad), None, "{bad:?}");
        }
        let syms = Symbols::new(vec![(0xffffffff81c0a000, 0x1000, "pci_init".into())]);
        assert_eq!(initcall_name("0xffffffff81c0a1b2", &syms), "pci_init");
        assert_eq!(initcall_name("0x1234", &syms), "0x1234");
        assert_eq!(initcall_name("acpi_init+0x0/0x4d4", &syms), "acpi_init");
    }

    #[test]
    fn parses_the_timeline_in_ticks() {
        assert_eq!(
            parse_timeline_ticks("ferrite-timeline: reset=0 rust=10 zero_page=30\n"),
            Some(vec![
                ("reset".into(), 0),
                ("rust".into(), 10),
                ("zero_page".into(), 30)
            ])
        );
        assert_eq!(
            parse_timeline_ticks("ferrite-timeline: reset=0 rust=10 e820=5"),
            None
        );
        assert_eq!(parse_timeline_ticks("ferrite-timeline: reset=0"), None);
        assert_eq!(parse_timeline_ticks("ferrite-timeline: reset=x y=1"), None);
        assert_eq!(parse_timeline_ticks("hello"), None);
    }

    /// One made-up boot with every kind of event: QEMU start-up 50 ms,
    /// ferrite 20 ms (two steps), decompression up to printk zero at 100 ms,
    /// two initcalls, /init at 400 ms, its marker at 450 ms, exit at 460 ms.
    fn boot() -> Vec<Arrival> {
        vec![
            debugcon(50.0, START_PORT, "1"),
            debugcon(
                69.5,
                TIMELINE_PORT,
                "ferrite-timeline: reset=0 rust=1000 zero_page=19000",
            ),
            debugcon(70.0, ENTRY_PORT, "3"),
            // replayed when the console registered: late
            serial(300.0, "[    0.000000] Linux version 6.1"),
            serial(301.0, "[    0.010000] early message"),
            serial(302.0, "[    0.100000] calling  a_init+0x0/0x10 @ 1"),
            serial(
                303.0,
                "[    0.150000] initcall a_init+0x0/0x10 returned 0 after 50000 usecs",
            ),
            // live from here: 100 ms after printk zero... plus 0.2 ms
            serial(350.2, "[    0.250000] calling  0xffffffff81000010 @ 1"),
            serial(
                380.3,
                "[    0.280000] initcall 0xffffffff81000010 returned 0 after 30000 usecs",
            ),
            serial(400.1, "[    0.300000] Run /init as init process"),
            serial(420.0, "ferrite-init: PASS cpus=1"),
            debugcon(450.0, USER_PORT, "2"),
        ]
    }

    #[test]
    fn derives_every_activity_of_a_boot() {
        let syms = Symbols::new(vec![(0xffffffff81000000, 0x100, "b_init".into())]);
        let pattern = Regex::new("PASS").unwrap();
        let ev = events(&boot(), 460.0, Some(1000.0), Some(&pattern), &syms);
        assert_eq!(ev.first().unwrap().kind, Kind::QemuStart);
        assert_eq!(ev.last().unwrap().kind, Kind::QemuExit);
        assert_eq!(ev.iter().filter(|e| e.kind == Kind::Marker).count(), 3);
        assert_eq!(ev.iter().filter(|e| e.kind == Kind::Pattern).count(), 1);
        let steps: Vec<(f64, &str)> = ev
            .iter()
            .filter(|e| e.kind == Kind::FirmwareStep)
            .map(|e| (e.host_ms, e.text.as_str()))
            .collect();
        // 19000 ticks stretched over the 20 ms between the markers
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[0], (50.0, "reset"));
        assert!((steps[1].0 - (50.0 + 20.0 / 19.0)).abs() < 1e-9);
        assert_eq!(steps[2], (70.0, "zero_page"));
        let clock = kernel_clock(&ev).unwrap();
        assert!((clock.zero_ms - 100.0).abs() < 0.25, "{clock:?}");
        assert!((clock.rate - 1.0).abs() < 0.01, "{clock:?}");
        let acts = activities(&ev);
        let get = |name: &str| {
            let a = acts
                .iter()
                .find(|a| a.name == name)
                .unwrap_or_else(|| panic!("no {name} in {acts:#?}"));
            (a.start_ms, a.ms())
        };
        let near = |(s, d): (f64, f64), (s2, d2): (f64, f64)| {
            assert!(
                (s - s2).abs() < 0.3 && (d - d2).abs() < 0.3,
                "{s},{d} vs {s2},{d2}"
            )
        };
        near(get(TOTAL), (0.0, 460.0));
        near(get("QEMU start-up"), (0.0, 50.0));
        near(get("firmware"), (50.0, 20.0));
        near(get("firmware: rust"), (50.0, 20.0 / 19.0));
        near(
            get("firmware: zero_page"),
            (50.0 + 20.0 / 19.0, 20.0 * 18.0 / 19.0),
        );
        near(
            get("kernel decompression and early set-up (entry to printk clock zero)"),
            (70.0, 30.0),
        );
        near(get("kernel set-up to the initcalls"), (100.0, 100.0));
        near(get("initcall a_init"), (200.0, 50.0));
        // a bare address named through the symbols
        near(get("initcall b_init"), (350.0, 30.0));
        near(get("kernel after the initcalls"), (380.0, 20.0));
        near(get("/init"), (400.0, 50.0));
        near(get("power-off and QEMU exit"), (450.0, 10.0));
        near(
            get("QEMU start to the pattern (ferrite-init: PASS cpus=1)"),
            (0.0, 420.0),
        );
    }

    #[test]
    fn a_kernel_clock_slower_than_the_host_is_scaled() {
        // printk 1 s arrives (replayed) at 5 s; live: 2 s at 3 s, 4 s at 6 s:
        // 1.5 host ms per kernel ms, zero at 0 ms
        let ev = events(
            &[
                serial(5000.0, "[    1.000000] replayed"),
                serial(3000.0, "[    2.000000] calling  a+0x0/0x1 @ 1"),
                serial(
                    3500.0,
                    "[    2.100000] initcall a+0x0/0x1 returned 0 after 100000 usecs",
                ),
                serial(6000.0, "[    4.000000] last"),
            ],
            7000.0,
            None,
            None,
            &Symbols::default(),
        );
        let c = kernel_clock(&ev).unwrap();
        assert!(
            (c.rate - 1.5).abs() < 1e-9 && c.zero_ms.abs() < 1e-9,
            "{c:?}"
        );
        assert_eq!(c.host_ms(1.0), 1500.0);
        let acts = activities(&ev);
        let a = acts.iter().find(|a| a.name == "initcall a").unwrap();
        assert!((a.start_ms - 3000.0).abs() < 1e-9 && (a.ms() - 150.0).abs() < 1e-9);
    }

    #[test]
    fn a_boot_without_markers_or_messages_still_has_its_total() {
        // a peer firmware writes no markers; quiet kernel: no printk times
        // (and a garbled one ahead of QEMU's clock is not believed)
        let ev = events(
            &[
                serial(10.0, "garbage without a time"),
                serial(20.0, "[  281.0] garbled"),
                debugcon(500.0, USER_PORT, "2"),
            ],
            510.0,
            None,
            None,
            &Symbols::default(),
        );
        let acts = activities(&ev);
        let names: Vec<&str> = acts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, [TOTAL, "power-off and QEMU exit"]);
        // a timeline report without a TSC frequency is not placed
        let ev = events(
            &[debugcon(
                5.0,
                TIMELINE_PORT,
                "ferrite-timeline: reset=0 rust=10",
            )],
            6.0,
            None,
            None,
            &Symbols::default(),
        );
        assert!(ev.iter().all(|e| e.kind != Kind::FirmwareStep));
        // with it but no entry marker: at the TSC rate from the 0xf5 marker
        let ev = events(
            &[
                debugcon(5.0, START_PORT, "1"),
                debugcon(9.0, TIMELINE_PORT, "ferrite-timeline: reset=0 rust=2000"),
            ],
            10.0,
            Some(1000.0),
            None,
            &Symbols::default(),
        );
        let steps: Vec<f64> = ev
            .iter()
            .filter(|e| e.kind == Kind::FirmwareStep)
            .map(|e| e.host_ms)
            .collect();
        assert_eq!(steps, [5.0, 7.0]);
        assert!(activities(&[]).is_empty());
    }

    #[test]
    fn statistics_and_the_longest_list() {
        let run = |scale: f64| {
            vec![
                Activity::new(TOTAL, 0.0, 1000.0 * scale),
                Activity::new("initcall acpi_init", 100.0, 100.0 + 100.0 * scale),
                Activity::new("firmware", 50.0, 70.0),
                // twice in one run: summed
                Activity::new("initcall x", 300.0, 301.0),
                Activity::new("initcall x", 400.0, 402.0),
            ]
        };
        let stats = activity_stats(&[run(1.0), run(1.1), run(0.9)]);
        let acpi = stats
            .iter()
            .find(|s| s.name == "initcall acpi_init")
            .unwrap();
        assert!((acpi.mean_ms - 100.0).abs() < 1e-9);
        assert!((acpi.sd_ms - 10.0).abs() < 1e-9);
        assert!((acpi.share - 0.1).abs() < 1e-9);
        let x = stats.iter().find(|s| s.name == "initcall x").unwrap();
        assert_eq!((x.mean_ms, x.runs), (3.0, 3));
        // in order of start
        let order: Vec<&str> = stats.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            order,
            [TOTAL, "firmware", "initcall acpi_init", "initcall x"]
        );
        let list = longest(&stats, 2);
        assert_eq!(
            list,
            [
                "initcall acpi_init 100.0ms ±10.0ms (10.0%)",
                "firmware 20.0ms ±0.0ms (2.0%)"
            ]
        );
        let svg = timeline_svg("t", &[("ferrite".into(), stats)]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("initcall acpi_init 100.0 ± 10.0 ms (10.0 %)"));
        assert!(svg.contains("ferrite: QEMU start to the kernel's entry (zoomed)"));
        // initcalls below 0.5 % of the boot are left out of the drawing
        assert!(!svg.contains("initcall x"));
    }
}
