//! Where the kernel itself runs longer after one firmware than after another,
//! from its own clock: the time between each two of its messages that every
//! run of both prints, compared run set against run set.
//!
//! A firmware's cost does not end at its hand-off. What it leaves (where its
//! tables are, which devices decode, whether there is an MP table) changes
//! how long the kernel's own set-up takes: the MP floating pointer that
//! ferrite once left out on microvm cost the kernel 13.5 ms between two
//! messages (`docs/performance-history.md`, 2026-12-02, evening), found by
//! comparing each message's time by hand. This does it for every message.
//!
//! Messages are matched by their text with every number in it made `#`
//! (addresses, sizes and counts differ from firmware to firmware), and by
//! how many times that text came before in the run. The printk clock is the
//! guest's TSC-based clock, with the same origin under every firmware.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::bench::{Shift, shift, summarize};

/// A message's text with every number made `#` (a run of digits that does
/// not continue a word, with a hexadecimal number's letters after `0x`):
/// `RAMDISK: [mem 0x1fb3e000-0x1fd3dfff]` → `RAMDISK: [mem #-#]`.
pub fn key(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars().peekable();
    // A digit inside a word (`x86`, `ttyS0`) is part of the word's name.
    let mut in_word = false;
    while let Some(c) = chars.next() {
        if !c.is_ascii_digit() || in_word {
            out.push(c);
            in_word = c.is_alphanumeric() || c == '_';
            continue;
        }
        let hex = c == '0' && chars.peek() == Some(&'x');
        if hex {
            chars.next();
        }
        while let Some(&d) = chars.peek() {
            let more = d.is_ascii_digit() || (hex && d.is_ascii_hexdigit());
            if !more {
                break;
            }
            chars.next();
        }
        out.push('#');
        in_word = false;
    }
    out
}

/// A message as matched across runs: its [`key`] and how many times that
/// key came before it in its run.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Line {
    pub key: String,
    pub occurrence: usize,
}

/// Where a message stands in one run: its printk time in ms, its place
/// among the run's messages, and its text.
type Seen<'a> = BTreeMap<Line, (f64, usize, &'a str)>;

/// One run's messages (text, printk time in seconds), in the order printed.
fn lines(run: &[(String, f64)]) -> Seen<'_> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (place, (text, secs)) in run.iter().enumerate() {
        let key = key(text);
        let n = seen.entry(key.clone()).or_default();
        out.insert(
            Line {
                key,
                occurrence: *n,
            },
            (secs * 1000.0, place, text.as_str()),
        );
        *n += 1;
    }
    out
}

/// The stretch of the kernel's boot between two consecutive messages that
/// every run of both firmwares printed.
#[derive(Clone, Debug, Serialize)]
pub struct Gap {
    /// The message that starts the stretch and the one that ends it (an
    /// example of each, as the first run of the base printed it).
    pub from: String,
    pub to: String,
    /// Its median length in ms under each firmware.
    pub base_ms: f64,
    pub other_ms: f64,
    /// How much longer (+) or shorter (−) it is under the other firmware
    /// (Hodges-Lehmann), and the Mann-Whitney test.
    pub shift: Shift,
}

/// One firmware's runs against another's.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Messages that every run of both printed.
    pub common: usize,
    /// Every stretch between consecutive common messages, largest shift
    /// (either way) first.
    pub gaps: Vec<Gap>,
    /// The last common message (by the base's median time) and its median
    /// time in ms since the kernel's clock started, under each firmware.
    pub last: Option<(String, f64, f64)>,
    /// Messages that at least half of one firmware's runs printed and no
    /// run of the other did (an example text each).
    pub only_base: Vec<String>,
    pub only_other: Vec<String>,
}

/// Compares the kernel's messages of `base`'s runs with `other`'s; each run
/// is its messages (text, printk time in seconds) in the order printed.
/// None when either has no run.
pub fn compare(base: &[Vec<(String, f64)>], other: &[Vec<(String, f64)>]) -> Option<Comparison> {
    if base.is_empty() || other.is_empty() {
        return None;
    }
    let base: Vec<_> = base.iter().map(|r| lines(r)).collect();
    let other: Vec<_> = other.iter().map(|r| lines(r)).collect();
    let in_all = |runs: &[Seen], line: &Line| runs.iter().all(|r| r.contains_key(line));
    let median = |runs: &[Seen], line: &Line, of: fn(&(f64, usize, &str)) -> f64| {
        let values: Vec<f64> = runs.iter().filter_map(|r| r.get(line)).map(of).collect();
        summarize(&values).map_or(f64::NAN, |s| s.median)
    };
    let median_at = |runs: &[Seen], line: &Line| median(runs, line, |t| t.0);
    // In the order of the base's median times (a message whose place in the
    // log varies from run to run still gets one place), and of the median
    // places of messages of one time: the kernel stamps its earliest
    // messages 0, before its clock starts.
    let mut common: Vec<(f64, f64, Line)> = base[0]
        .keys()
        .filter(|l| in_all(&base, l) && in_all(&other, l))
        .map(|l| {
            (
                median_at(&base, l),
                median(&base, l, |t| t.1 as f64),
                l.clone(),
            )
        })
        .collect();
    common.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.total_cmp(&b.1)));
    let text = |line: &Line| base[0][line].2.to_string();

    let mut gaps = Vec::new();
    for pair in common.windows(2) {
        let (from, to) = (&pair[0].2, &pair[1].2);
        let lengths =
            |runs: &[Seen]| -> Vec<f64> { runs.iter().map(|r| r[to].0 - r[from].0).collect() };
        let (b, o) = (lengths(&base), lengths(&other));
        let (Some(sb), Some(so), Some(shift)) = (summarize(&b), summarize(&o), shift(&o, &b))
        else {
            continue;
        };
        gaps.push(Gap {
            from: text(from),
            to: text(to),
            base_ms: sb.median,
            other_ms: so.median,
            shift,
        });
    }
    gaps.sort_by(|a, b| b.shift.ms.abs().total_cmp(&a.shift.ms.abs()));
    let last = common
        .last()
        .map(|(_, _, l)| (text(l), median_at(&base, l), median_at(&other, l)));

    let only = |runs: &[Seen], never: &[Seen]| {
        let mut counts: BTreeMap<&Line, (usize, &str)> = BTreeMap::new();
        for r in runs {
            for (line, &(_, _, example)) in r {
                counts.entry(line).or_insert((0, example)).0 += 1;
            }
        }
        let mut out: BTreeSet<String> = BTreeSet::new();
        for (line, (n, example)) in counts {
            if 2 * n >= runs.len() && !never.iter().any(|r| r.contains_key(line)) {
                out.insert(example.to_string());
            }
        }
        out.into_iter().collect::<Vec<_>>()
    };
    Some(Comparison {
        common: common.len(),
        only_base: only(&base, &other),
        only_other: only(&other, &base),
        gaps,
        last,
    })
}

/// The comparison as lines of text: the `top` stretches that moved most,
/// the last common message, and the messages only one firmware's runs print.
pub fn render(c: &Comparison, base: &str, other: &str, runs: (usize, usize), top: usize) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let significant = c.gaps.iter().filter(|g| g.shift.test.p < 0.01).count();
    let _ = writeln!(
        s,
        "\nThe kernel's own time between its messages, {other} against {base} ({} and {} runs, \
         the printk clock; {} messages in every run of both): the {} stretches that moved most, \
         + where the kernel runs longer under {other}",
        runs.0,
        runs.1,
        c.common,
        top.min(c.gaps.len())
    );
    for g in c.gaps.iter().take(top) {
        let _ = writeln!(
            s,
            "  {:+.1}ms (p {:.3}; {base} {:.1}ms, {other} {:.1}ms): {:?} → {:?}",
            g.shift.ms, g.shift.test.p, g.base_ms, g.other_ms, g.from, g.to
        );
    }
    let _ = writeln!(
        s,
        "  ({significant} of {} stretches at p < 0.01, where chance alone would put about {:.0})",
        c.gaps.len(),
        c.gaps.len() as f64 * 0.01
    );
    if let Some((text, b, o)) = &c.last {
        let _ = writeln!(
            s,
            "  the last message in every run, {text:?}: {base} {b:.1}ms, {other} {o:.1}ms (median)"
        );
    }
    for (who, list) in [(base, &c.only_base), (other, &c.only_other)] {
        for m in list.iter().take(top) {
            let _ = writeln!(s, "  only under {who}: {m:?}");
        }
        if list.len() > top {
            let _ = writeln!(s, "  only under {who}: {} more", list.len() - top);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[(&str, f64)]) -> Vec<(String, f64)> {
        lines
            .iter()
            .map(|&(t, ms)| (t.to_string(), ms / 1000.0))
            .collect()
    }

    #[test]
    fn numbers_do_not_tell_messages_apart() {
        assert_eq!(
            key("RAMDISK: [mem 0x1fb3e000-0x1fd3dfff]"),
            "RAMDISK: [mem #-#]"
        );
        assert_eq!(
            key("Memory: 480844K/523768K available"),
            "Memory: #K/#K available"
        );
        assert_eq!(
            key("x86/PAT: Configuration [0-7]"),
            "x86/PAT: Configuration [#-#]"
        );
        assert_eq!(key("console [ttyS0] enabled"), "console [ttyS0] enabled");
        assert_eq!(key("acpi_init+0x0/0x4d4 @ 1"), "acpi_init+#/# @ #");
        // a hexadecimal number's letters go with it; a word's do not
        assert_eq!(key("at 0xfee00000 deadbeef"), "at # deadbeef");
        assert_eq!(key("no digits"), "no digits");
        assert_eq!(key(""), "");
        // 0 alone, and 0x with nothing after it
        assert_eq!(key("irq 0, 0x"), "irq #, #");
    }

    /// Ten runs of each, the kernel's messages at the same times but for a
    /// stretch that `extra` ms lengthens under the other firmware.
    fn runs(extra: f64, jitter: f64) -> Vec<Vec<(String, f64)>> {
        (0..10)
            .map(|i| {
                let j = jitter * (i as f64 % 5.0);
                run(&[
                    ("Linux version 6.1", 0.0),
                    ("x86/PAT: Configuration [0-7]", 1.0 + j),
                    ("RAMDISK: [mem 0x1000-0x2000]", 2.0 + extra + j),
                    ("ACPI: Core revision", 10.0 + extra + 2.0 * j),
                    ("ACPI: Core revision", 11.0 + extra + 2.0 * j),
                    ("Run /init", 50.0 + extra + 3.0 * j),
                ])
            })
            .collect()
    }

    #[test]
    fn the_stretch_that_moved_comes_first() {
        let c = compare(&runs(0.0, 0.1), &runs(13.5, 0.1)).unwrap();
        assert_eq!(
            c.common, 6,
            "a repeated message is matched by its place among its kind"
        );
        assert_eq!(c.gaps.len(), 5);
        let g = &c.gaps[0];
        assert_eq!(g.from, "x86/PAT: Configuration [0-7]");
        assert_eq!(g.to, "RAMDISK: [mem 0x1000-0x2000]");
        assert!((g.shift.ms - 13.5).abs() < 1e-9, "{}", g.shift.ms);
        assert!(g.shift.test.p < 0.001, "{}", g.shift.test.p);
        assert!((g.other_ms - g.base_ms - 13.5).abs() < 1e-9);
        // the others did not move
        for g in &c.gaps[1..] {
            assert!(g.shift.ms.abs() < 1e-9, "{g:?}");
        }
        let (text, b, o) = c.last.clone().unwrap();
        assert_eq!(text, "Run /init");
        assert!((o - b - 13.5).abs() < 1e-9);
        assert!(c.only_base.is_empty() && c.only_other.is_empty());
        let out = render(&c, "ferrite", "qboot", (10, 10), 3);
        assert!(out.contains("+13.5ms"), "{out}");
        assert!(
            out.contains("\"x86/PAT: Configuration [0-7]\" → \"RAMDISK"),
            "{out}"
        );
        assert!(out.contains("1 of 5 stretches at p < 0.01"), "{out}");
    }

    #[test]
    fn messages_stamped_before_the_clock_starts_keep_their_order() {
        // Four messages at time 0, in an order that is not the alphabet's:
        // each stretch joins two neighbours in the log.
        let log = |extra: f64| {
            run(&[
                ("Linux version 6.1", 0.0),
                ("tsc: Fast TSC calibration using PIT", 0.0),
                ("ACPI: Core revision", 0.0),
                ("Booting paravirtualized kernel", 0.0),
                ("clocksource: tsc-early", 1.0 + extra),
            ])
        };
        let base: Vec<_> = (0..5).map(|_| log(0.0)).collect();
        let other: Vec<_> = (0..5).map(|_| log(2.0)).collect();
        let c = compare(&base, &other).unwrap();
        let pairs: Vec<(&str, &str)> = c
            .gaps
            .iter()
            .map(|g| (g.from.as_str(), g.to.as_str()))
            .collect();
        assert_eq!(
            pairs[0],
            ("Booting paravirtualized kernel", "clocksource: tsc-early")
        );
        for pair in [
            ("Linux version 6.1", "tsc: Fast TSC calibration using PIT"),
            ("tsc: Fast TSC calibration using PIT", "ACPI: Core revision"),
            ("ACPI: Core revision", "Booting paravirtualized kernel"),
        ] {
            assert!(pairs.contains(&pair), "{pairs:?}");
        }
    }

    #[test]
    fn a_message_one_firmware_never_prints_is_named_not_matched() {
        let base = runs(0.0, 0.1);
        let mut other = runs(0.0, 0.1);
        for r in &mut other {
            r.insert(2, ("found SMP MP-table at [mem 0x9fc10]".into(), 0.0015));
        }
        // printed by a single run of the base: not "only under" either
        let mut base2 = base.clone();
        base2[3].push(("random: crng init done".into(), 0.040));
        let c = compare(&base2, &other).unwrap();
        assert_eq!(c.common, 6);
        assert_eq!(c.only_other, ["found SMP MP-table at [mem 0x9fc10]"]);
        assert!(c.only_base.is_empty(), "{:?}", c.only_base);
        let out = render(&c, "ferrite", "qboot", (10, 10), 5);
        assert!(
            out.contains("only under qboot: \"found SMP MP-table"),
            "{out}"
        );
    }

    #[test]
    fn a_message_missing_from_one_run_is_not_compared() {
        let base = runs(0.0, 0.1);
        let mut other = runs(0.0, 0.1);
        other[4].remove(3); // the first "ACPI: Core revision"
        let c = compare(&base, &other).unwrap();
        // the second one is now the first of its kind in that run: only
        // the first occurrence is in every run of both
        assert_eq!(c.common, 5);
        assert!(
            c.gaps.iter().all(|g| g.shift.ms.abs() < 1.0),
            "{:?}",
            c.gaps
        );
    }

    #[test]
    fn no_runs_no_comparison_and_one_message_no_stretch() {
        assert!(compare(&[], &runs(0.0, 0.0)).is_none());
        assert!(compare(&runs(0.0, 0.0), &[]).is_none());
        let one = vec![run(&[("only", 1.0)])];
        let c = compare(&one, &one).unwrap();
        assert_eq!(c.common, 1);
        assert!(c.gaps.is_empty());
        let out = render(&c, "a", "b", (1, 1), 10);
        assert!(out.contains("0 of 0 stretches"), "{out}");
    }
}
