//! Fuzzing of every parser that reads what QEMU or the kernel hands over, with
//! proptest on the stable toolchain.
//!
//! Why proptest: it is a plain library, so the same targets run as a quick pass
//! inside `cargo test` and as a long run (`cargo xtask fuzz`, release
//! optimisations with overflow checks) without nightly (libFuzzer/cargo-fuzz) or
//! an external instrumented tool (cargo-afl needs AFL++ built and run as its own
//! process); its generators are structure-aware (valid-looking records with
//! hostile fields get past the first length check, random bytes rarely do), and
//! it shrinks a failing input to a small one that goes into the corpus.
//!
//! Each target takes the bytes as QEMU would hand them (several inputs are framed
//! as `u32 length, bytes` one after the other) and checks:
//! * no panic, and no arithmetic overflow (overflow checks are on in both runs);
//! * no access outside the buffers and ranges handed in (the fakes check every
//!   range the code asks for, and guard bytes around buffers stay untouched);
//! * an error, or a result that keeps its invariants (a sorted, non-overlapping
//!   e820 map; tables inside their zone; a kernel and initrd in RAM and outside
//!   every reservation).
//!
//! Inputs come from three sources: the corpus in `firmware/fuzz-corpus/<target>/`
//! (replayed first, every run), structured generators, and mutations of the
//! corpus inputs. The environment steers a long run: `FERRITE_FUZZ_CASES` (cases
//! per target), `FERRITE_FUZZ_TARGET` (one target), `FERRITE_FUZZ_SEED` (the
//! random seed; fixed otherwise, so that `cargo test` is repeatable) and
//! `FERRITE_FUZZ_SAVE` (add to the corpus the first input of every outcome not
//! seen in it yet, and a failing input, shrunk).
//!
//! This file holds the shared machinery (the runner, the corpus, the input
//! helpers and generators more than one target uses); each target, its checker,
//! generator and fakes, is in a file of its own beside it. To add a parser:
//! write, in a file of its own, a `check_*` function over `&[u8]` that returns
//! the outcome's name and a generator, declare the file here, and add one line
//! in [`TARGETS`].

use std::collections::{BTreeMap, BTreeSet};
use std::format;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::vec::Vec;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};

use crate::e820::RECORD_SIZE;

mod e820;
mod fwcfg;
mod kernel;
mod mptable;
mod multiboot;
mod pci;
mod pvh;
mod setup_data;
mod smbios;
mod table_loader;

use e820::{check_e820, gen_e820};
use fwcfg::{check_fwcfg_dir, check_fwcfg_read, gen_fwcfg_dir, gen_fwcfg_read};
use kernel::{check_kernel, gen_kernel};
use mptable::{check_mptable, gen_mptable};
use multiboot::{check_multiboot, gen_multiboot};
use pci::{check_pci, gen_pci};
use pvh::{check_pvh, gen_pvh};
use setup_data::{check_setup_data, gen_setup_data};
use smbios::{check_smbios, gen_smbios};
use table_loader::{check_table_loader, gen_table_loader};

type Check = fn(&[u8]) -> String;
type Gen = fn() -> BoxedStrategy<Vec<u8>>;

/// Every target: name (the corpus folder), checker, generator.
const TARGETS: &[(&str, Check, Gen)] = &[
    ("e820", check_e820, gen_e820),
    ("kernel", check_kernel, gen_kernel),
    ("fwcfg_dir", check_fwcfg_dir, gen_fwcfg_dir),
    ("fwcfg_read", check_fwcfg_read, gen_fwcfg_read),
    ("table_loader", check_table_loader, gen_table_loader),
    ("setup_data", check_setup_data, gen_setup_data),
    ("smbios", check_smbios, gen_smbios),
    ("pci", check_pci, gen_pci),
    ("mptable", check_mptable, gen_mptable),
    ("pvh", check_pvh, gen_pvh),
    ("multiboot", check_multiboot, gen_multiboot),
];

/// Cases per target in the quick pass of `cargo test`.
const QUICK_CASES: u32 = 300;

// ---------------------------------------------------------------------------
// The driver.

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn corpus_dir(target: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus")
        .join(target)
}

fn load_corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir(corpus_dir(target)) {
        for e in dir.flatten() {
            if let Ok(bytes) = std::fs::read(e.path()) {
                out.push((e.file_name().to_string_lossy().into_owned(), bytes));
            }
        }
    }
    out.sort();
    out
}

/// A file name from the bytes' FNV-1a hash: the same input is stored once.
fn corpus_name(prefix: &str, outcome: &str, bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
    });
    let outcome: String = outcome
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    format!("{prefix}-{outcome}-{hash:016x}.bin")
}

/// Mutations of corpus inputs: overwrite, insert, truncate, at random places.
fn mutate(corpus: Vec<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    let n = corpus.len();
    (
        0..n,
        prop::collection::vec((any::<usize>(), any::<u8>(), 0..4u8), 1..8),
    )
        .prop_map(move |(i, edits)| {
            let mut v = corpus[i].clone();
            for (pos, byte, op) in edits {
                let at = if v.is_empty() { 0 } else { pos % v.len() };
                match op {
                    0 | 1 if !v.is_empty() => v[at] = byte,
                    2 => v.insert(at, byte),
                    _ => v.truncate(at),
                }
            }
            v
        })
        .boxed()
}

/// Runs one target: the corpus, then `cases` generated or mutated inputs.
/// Returns the number of inputs checked.
fn run_target(name: &str, check: Check, generate: Gen, cases: u32, seed: u64) -> u64 {
    let corpus = load_corpus(name);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (file, bytes) in &corpus {
        let outcome = std::panic::catch_unwind(|| check(bytes))
            .unwrap_or_else(|_| panic!("fuzz: {name}: corpus input {file} fails"));
        seen.insert(outcome);
    }
    let save = env("FERRITE_FUZZ_SAVE").is_some();
    let new: std::sync::Mutex<BTreeMap<String, Vec<u8>>> = Default::default();
    let count = AtomicU64::new(corpus.len() as u64);
    let strategy = if corpus.is_empty() {
        generate()
    } else {
        let inputs = corpus.iter().map(|(_, b)| b.clone()).collect();
        prop_oneof![3 => generate(), 1 => mutate(inputs)].boxed()
    };
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 20_000,
        ..Config::default()
    };
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    seed_bytes[8..8 + name.len().min(24)].copy_from_slice(&name.as_bytes()[..name.len().min(24)]);
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    // Shrinking panics hundreds of times: keep the last message instead of
    // printing each.
    let hook = std::panic::take_hook();
    std::panic::set_hook(std::boxed::Box::new(|info| {
        *LAST_PANIC.lock().unwrap() = info.to_string();
    }));
    let result = runner.run(&strategy, |input| {
        count.fetch_add(1, Ordering::Relaxed);
        let outcome = check(&input);
        if save && !seen.contains(&outcome) {
            new.lock().unwrap().entry(outcome).or_insert(input);
        }
        Ok(())
    });
    std::panic::set_hook(hook);
    if save {
        let dir = corpus_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (outcome, bytes) in new.into_inner().unwrap() {
            std::fs::write(dir.join(corpus_name("seed", &outcome, &bytes)), bytes).unwrap();
        }
    }
    match result {
        Ok(()) => count.into_inner(),
        Err(TestError::Fail(why, input)) => {
            let file = corpus_name("regression", "failure", &input);
            if save {
                let dir = corpus_dir(name);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(&file), &input).unwrap();
            }
            panic!(
                "fuzz: {name}: {why} ({}); shrunk input ({} bytes{}): {input:02x?}",
                LAST_PANIC.lock().unwrap(),
                input.len(),
                if save {
                    format!(", saved as {file}")
                } else {
                    String::new()
                }
            )
        }
        Err(e) => panic!("fuzz: {name}: {e}"),
    }
}

static LAST_PANIC: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

#[test]
fn fuzz_every_parser() {
    let cases = env("FERRITE_FUZZ_CASES").map_or(QUICK_CASES, |v| v.parse().unwrap());
    let only = env("FERRITE_FUZZ_TARGET");
    let seed = env("FERRITE_FUZZ_SEED").map_or(0x00FE_4417, |v| v.parse().unwrap());
    if let Some(t) = &only {
        assert!(
            TARGETS.iter().any(|(n, ..)| n == t),
            "no fuzz target {t}; there are {:?}",
            TARGETS.iter().map(|t| t.0).collect::<Vec<_>>()
        );
    }
    for &(name, check, generate) in TARGETS {
        if only.as_deref().is_some_and(|t| t != name) {
            continue;
        }
        let start = std::time::Instant::now();
        let n = run_target(name, check, generate, cases, seed);
        // One line per target; `cargo xtask fuzz` collects them.
        std::println!(
            "fuzz-result: target={name} cases={n} seconds={:.1}",
            start.elapsed().as_secs_f64()
        );
    }
}

// ---------------------------------------------------------------------------
// Input helpers.

/// Concatenates inputs as `u32 length, bytes`.
fn frames(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        v.extend_from_slice(&(p.len() as u32).to_le_bytes());
        v.extend_from_slice(p);
    }
    v
}

/// The inverse of [`frames`], lenient: a mutated input still splits somehow, and
/// missing parts are empty.
fn unframe<const N: usize>(mut bytes: &[u8]) -> [&[u8]; N] {
    let mut out = [&[][..]; N];
    for slot in out.iter_mut() {
        if bytes.len() < 4 {
            break;
        }
        let len =
            (u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize).min(bytes.len() - 4);
        *slot = &bytes[4..4 + len];
        bytes = &bytes[4 + len..];
    }
    out
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    if let Some(s) = b.get(at..) {
        let n = s.len().min(8);
        v[..n].copy_from_slice(&s[..n]);
    }
    u64::from_le_bytes(v)
}

/// 64-bit values as QEMU, a kernel or an attacker would write them: small,
/// page- and MiB-aligned, powers of two, near 4 GiB and 2^64, or anything.
fn value64() -> BoxedStrategy<u64> {
    prop_oneof![
        2 => any::<u64>(),
        2 => 0..0x20_0000u64,
        3 => (0..0x4_0000u64).prop_map(|p| p << 12),
        2 => (0..0x1_0000u64).prop_map(|m| m << 20),
        1 => (0..64u32).prop_map(|s| 1u64 << s),
        1 => (0..64u32, 0..3u64).prop_map(|(s, d)| (1u64 << s).wrapping_sub(d)),
        1 => (0..0x1000u64).prop_map(|d| u64::MAX - d),
    ]
    .boxed()
}

fn value32() -> BoxedStrategy<u32> {
    prop_oneof![
        2 => any::<u32>(),
        2 => 0..0x1000u32,
        1 => (0..32u32).prop_map(|s| 1u32 << s),
        1 => (0..0x1000u32).prop_map(|d| u32::MAX - d),
    ]
    .boxed()
}

fn e820_bytes(entries: &[(u64, u64, u32)]) -> Vec<u8> {
    let mut v = Vec::new();
    for &(a, s, t) in entries {
        v.extend_from_slice(&a.to_le_bytes());
        v.extend_from_slice(&s.to_le_bytes());
        v.extend_from_slice(&t.to_le_bytes());
    }
    v
}

/// An `etc/e820` file: realistic maps (sorted RAM with holes and reservations)
/// and hostile ones (overlaps, wraps, zero sizes, odd types, odd lengths).
fn e820_strategy(max: usize) -> BoxedStrategy<Vec<u8>> {
    let typ = prop_oneof![4 => Just(1u32), 2 => Just(2u32), 1 => 3..6u32, 1 => any::<u32>()];
    let hostile =
        prop::collection::vec((value64(), value64(), typ), 0..max).prop_map(|e| e820_bytes(&e));
    // QEMU's shape: RAM from 0, maybe a reserved page, maybe RAM above 4 GiB.
    let realistic = (
        1..0x1_0000u64,
        prop::option::of(0..0x400u64),
        prop::option::of(1..0x4_0000u64),
        prop::collection::vec((value64(), value64(), 2..5u32), 0..4),
    )
        .prop_map(|(low_mib, reserved_page, high_mib, extra)| {
            let low = (low_mib << 20).min(0xE000_0000);
            let mut e = vec![(0u64, low, 1u32)];
            if let Some(p) = reserved_page {
                e.push((0xFEFF_C000 + (p << 12) % 0x4000, 0x4000, 2));
            }
            if let Some(h) = high_mib {
                e.push((1 << 32, h << 20, 1));
            }
            e.extend(extra);
            e820_bytes(&e)
        });
    let junk = (
        prop::collection::vec((value64(), value64(), 1..3u32), 0..8),
        prop::collection::vec(any::<u8>(), 1..RECORD_SIZE),
    )
        .prop_map(|(e, tail)| {
            let mut v = e820_bytes(&e);
            v.extend(tail);
            v
        });
    // Many small ranges of alternating types, sorted: more than the zero
    // page's 128 entries, taken whole on the heap.
    let many = (129..400usize, 1..0x100u64, any::<u64>()).prop_map(|(n, step, seed)| {
        let e: Vec<_> = (0..n as u64)
            .map(|i| {
                let typ = if i % 2 == 0 {
                    1
                } else {
                    2 + (seed >> (i % 60)) as u32 % 3
                };
                (((i + 1) * step) << 20, step << 20, typ)
            })
            .collect();
        e820_bytes(&e)
    });
    prop_oneof![3 => hostile, 4 => realistic, 1 => junk, 1 => many].boxed()
}
