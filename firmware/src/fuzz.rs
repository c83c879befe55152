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
//! To add a parser: write a `check_*` function over `&[u8]` that returns the
//! outcome's name, a generator, and one line in [`TARGETS`].

use std::collections::{BTreeMap, BTreeSet};
use std::format;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::vec::Vec;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};

use crate::acpi::{self, LoaderEnv, LoaderError, Zone};
use crate::bootparams::{BootParams, E820_MAX_ENTRIES_ZEROPAGE, E820Entry, SetupHeader, e820_type};
use crate::e820::{MemoryMap, RECORD_SIZE, Range};
use crate::fwcfg::fake::FakeDevice;
use crate::fwcfg::{FwCfg, Item};
use crate::layout::{self, HighZone};
use crate::linux::{self, KernelInfo};
use crate::pci::tests::{Func, Model};
use crate::{mptable, setup_data, smbios};

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

// ---------------------------------------------------------------------------
// e820: MemoryMap::from_qemu and the firmware's amendments.

fn gen_e820() -> BoxedStrategy<Vec<u8>> {
    (
        e820_strategy(150),
        prop::collection::vec((value64(), value64(), 1..4u32), 0..4),
    )
        .prop_map(|(file, amend)| frames(&[&file, &e820_bytes(&amend)]))
        .boxed()
}

/// Sorted, disjoint, non-empty, touching entries of one type merged.
fn assert_map_invariants(map: &MemoryMap) {
    let r = map.regions();
    for w in r.windows(2) {
        assert!(
            w[0].range.end <= w[1].range.start,
            "overlap or unsorted: {r:x?}"
        );
        assert!(
            !(w[0].range.end == w[1].range.start && w[0].typ == w[1].typ),
            "unmerged: {r:x?}"
        );
    }
    assert!(
        r.iter().all(|x| x.range.start < x.range.end),
        "empty entry: {r:x?}"
    );
}

fn type_at(map: &MemoryMap, p: u64) -> Option<u32> {
    map.regions()
        .iter()
        .find(|r| r.range.start <= p && p < r.range.end)
        .map(|r| r.typ)
}

fn check_e820(input: &[u8]) -> String {
    let [file, amend] = unframe::<2>(input);
    let mut map = match MemoryMap::from_qemu(file) {
        Ok(m) => m,
        Err(e) => {
            return format!("{e:?}")
                .split(['(', ' '])
                .next()
                .unwrap()
                .to_string();
        }
    };
    assert_map_invariants(&map);
    // Every input range keeps its meaning: a reserved byte is never RAM, a RAM
    // byte stays RAM unless something reserved it, nothing appears from nowhere.
    let records: Vec<(u64, u64, u32)> = file
        .chunks_exact(RECORD_SIZE)
        .map(|r| {
            (
                le64(r, 0),
                le64(r, 8),
                u32::from_le_bytes(r[16..20].try_into().unwrap()),
            )
        })
        .filter(|r| r.1 != 0)
        .collect();
    for &(a, s, _) in &records {
        for p in [a, a + (s - 1)] {
            let covering = records.iter().filter(|r| r.0 <= p && p - r.0 < r.1);
            let (mut ram, mut other) = (false, false);
            for r in covering {
                if r.2 == e820_type::RAM {
                    ram = true
                } else {
                    other = true
                }
            }
            match type_at(&map, p) {
                Some(t) if other => assert_ne!(t, e820_type::RAM, "reserved {p:#x} became RAM"),
                Some(t) => assert!(ram && t == e820_type::RAM),
                None => panic!("{p:#x} lost from the map"),
            }
        }
    }
    for r in map.regions() {
        assert!(
            records
                .iter()
                .any(|x| x.0 <= r.range.start && r.range.start - x.0 < x.1),
            "{r:x?} is in no input record"
        );
    }
    // The firmware's amendments, then the zero page's table.
    let mut zone = map.low_ram_top().ok().map(HighZone::new);
    let mut result = "ok";
    let mut amendments = vec![
        (layout::LEGACY_HOLE, 0),
        (layout::BIOS_AREA, e820_type::RESERVED),
    ];
    if let Some(z) = &mut zone {
        z.alloc(0x1_0000, 4096);
        amendments.push((z.used(), e820_type::RESERVED));
    }
    for r in amend.chunks_exact(RECORD_SIZE) {
        let (a, s) = (le64(r, 0), le64(r, 8));
        amendments.push((Range::new(a, a.saturating_add(s)), r[16] as u32 % 4));
    }
    for (range, typ) in amendments {
        let before = map.regions().to_vec();
        let done = if typ == 0 {
            map.remove(range)
        } else {
            map.insert(range, typ)
        };
        if done.is_err() {
            result = "amend-too-many";
            break;
        }
        assert_map_invariants(&map);
        // Every byte at an edge of the old map or of `range` (and its
        // neighbour) has the type the amendment gives it: outside `range`
        // nothing changes; inside, a reservation or hole overrides, RAM only
        // fills holes.
        let edges = before
            .iter()
            .flat_map(|r| [r.range.start, r.range.end])
            .chain([range.start, range.end]);
        for e in edges {
            for p in [e.wrapping_sub(1), e] {
                let old = before
                    .iter()
                    .find(|r| r.range.start <= p && p < r.range.end)
                    .map(|r| r.typ);
                let want = if range.start <= p && p < range.end {
                    match typ {
                        0 => None,
                        1 => old.or(Some(1)),
                        t => Some(t),
                    }
                } else {
                    old
                };
                assert_eq!(type_at(&map, p), want, "{p:#x} after {range:x?} as {typ}");
            }
        }
        if typ > 1 && !range.is_empty() {
            assert_eq!(type_at(&map, range.start), Some(typ));
            assert_eq!(type_at(&map, range.end - 1), Some(typ));
        } else if typ == 0 && !range.is_empty() {
            assert_eq!(type_at(&map, range.start), None);
        }
    }
    // The zero page's table and the SETUP_E820_EXT node hold every entry,
    // in order, and nothing else.
    let mut table = [E820Entry::default(); E820_MAX_ENTRIES_ZEROPAGE];
    let n = map.write_zero_page(&mut table) as usize;
    let all = map.regions();
    assert_eq!(n, all.len().min(E820_MAX_ENTRIES_ZEROPAGE));
    for (entry, r) in table.iter().zip(&all[..n]) {
        assert_eq!(*entry, r.entry());
    }
    let extra = all.len() - n;
    let mut node = vec![0xA5u8; crate::e820::ext_node_len(extra) + 8];
    match map.write_ext_node(&mut node, 0x1234) {
        None => assert_eq!(extra, 0),
        Some(len) => {
            assert_eq!(len, crate::e820::ext_node_len(extra));
            assert!(
                node[len..].iter().all(|&b| b == 0xA5),
                "wrote past the node"
            );
            assert_eq!(le64(&node, 0), 0x1234);
            assert_eq!(&node[8..12], &1u32.to_le_bytes());
            assert_eq!(&node[12..16], &((extra * RECORD_SIZE) as u32).to_le_bytes());
            for (rec, r) in node[16..len].chunks_exact(RECORD_SIZE).zip(&all[n..]) {
                assert_eq!(rec, r.entry().to_bytes());
            }
            // one byte short: refused, not cut
            assert_eq!(map.write_ext_node(&mut node[..len - 1], 0), None);
            result = if result == "ok" { "ok-ext" } else { result };
        }
    }
    result.to_string()
}

// ---------------------------------------------------------------------------
// kernel: the setup header and sizes, the kernel's and initrd's placement.

fn gen_kernel() -> BoxedStrategy<Vec<u8>> {
    let fields = (
        prop_oneof![
            Just(0x020Fu16),
            Just(0x0206),
            Just(0x020A),
            Just(0x020C),
            any::<u16>()
        ],
        prop_oneof![Just(1u8), Just(0x81), any::<u8>()],
        prop_oneof![Just(3u16), Just(1), Just(0), any::<u16>()],
        prop_oneof![Just(1u8), Just(0), any::<u8>()],
        prop_oneof![Just(0x20_0000u32), Just(0x100_0000), value32()],
        prop_oneof![Just(0x100_0000u64), Just(0x10_0000), value64()],
        prop_oneof![Just(0x200_0000u32), value32()],
        prop_oneof![Just(0x7FFF_FFFFu32), Just(0x37FF_FFFF), value32()],
        prop_oneof![Just(2047u32), value32()],
    );
    (
        fields,
        prop::collection::vec((0..0x290usize, any::<u8>()), 0..3),
        e820_strategy(12),
        (value32(), value32(), value32()),
    )
        .prop_map(|(f, noise, e820, sizes)| {
            let (version, loadflags, xlf, reloc, align, pref, init, initrd_max, cmdline) = f;
            let mut h = vec![0u8; 0x290];
            h[0x1F1] = 0x1B;
            h[0x1FE..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
            h[0x201] = 0x6A;
            h[0x202..0x206].copy_from_slice(b"HdrS");
            h[0x206..0x208].copy_from_slice(&version.to_le_bytes());
            h[0x211] = loadflags;
            h[0x22C..0x230].copy_from_slice(&initrd_max.to_le_bytes());
            h[0x230..0x234].copy_from_slice(&align.to_le_bytes());
            h[0x234] = reloc;
            h[0x236..0x238].copy_from_slice(&xlf.to_le_bytes());
            h[0x238..0x23C].copy_from_slice(&cmdline.to_le_bytes());
            h[0x258..0x260].copy_from_slice(&pref.to_le_bytes());
            h[0x260..0x264].copy_from_slice(&init.to_le_bytes());
            for (at, b) in noise {
                h[at] = b;
            }
            let mut s = Vec::new();
            for v in [sizes.0, sizes.1, sizes.2] {
                s.extend_from_slice(&v.to_le_bytes());
            }
            frames(&[&h, &e820, &s])
        })
        .boxed()
}

/// The reservations `main.rs` passes to the placement besides the high zone,
/// as on q35 (BIOS area, EBDA, MMCONFIG, RCBA, the ROM): the final map
/// reserves them, so the kernel and initrd must stay clear of them.
const FIXED_RESERVATIONS: [Range; 5] = [
    layout::BIOS_AREA,
    Range::new(0x9_FC00, 0xA_0000),
    crate::chipset::Q35_MMCONFIG,
    Range::new(0xFED1_C000, 0xFED2_0000),
    Range::new((1 << 32) - (128 << 10), 1 << 32),
];

fn check_kernel(input: &[u8]) -> String {
    let [header, e820, sizes] = unframe::<3>(input);
    let mut zp = BootParams::zeroed();
    zp.copy_header_from(header);
    assert_eq!(zp.as_bytes()[0x1EF], 0, "the sentinel was copied");
    let Some(hdr) = SetupHeader::in_image(header) else {
        return "short".into();
    };
    let info = match KernelInfo::from_header(hdr) {
        Ok(i) => i,
        Err(e) => return format!("{:#x}", e.status()),
    };
    let (size, initrd, cmdline) = (
        le64(sizes, 0) as u32 as u64,
        le64(sizes, 4) as u32 as u64,
        le64(sizes, 8) as u32 as u64,
    );
    if let Err(e) = info.check_cmdline(cmdline.saturating_sub(1)) {
        return format!("{:#x}", e.status());
    }
    let Ok(map) = MemoryMap::from_qemu(e820) else {
        return "bad-e820".into();
    };
    let Ok(top) = map.low_ram_top() else {
        return "no-low-ram".into();
    };
    let mut zone = HighZone::new(top);
    zone.alloc(0x2_0000, 4096);
    let mut busy = vec![zone.used()];
    busy.extend(FIXED_RESERVATIONS);
    let kernel = match linux::place_kernel(&info, size, &map, &busy) {
        Ok(k) => k,
        Err(e) => return format!("{:#x}", e.status()),
    };
    assert!(map.is_ram(kernel), "kernel {kernel:x?} outside RAM");
    assert!(
        busy.iter().all(|b| !b.overlaps(&kernel)),
        "kernel {kernel:x?} on a reservation"
    );
    assert!(kernel.len() >= size.max(info.init_size));
    assert!(kernel.start >= linux::KERNEL_FLOOR);
    if info.relocatable {
        assert_eq!(kernel.start % info.alignment, 0);
        assert!(kernel.start >= info.pref_address);
    } else {
        assert_eq!(kernel.start, info.pref_address);
    }
    busy.push(kernel);
    match linux::place_initrd(&info, initrd, &map, &busy) {
        Ok(None) => {
            assert_eq!(initrd, 0);
            "ok-no-initrd".into()
        }
        Ok(Some(r)) => {
            assert!(map.is_ram(r), "initrd {r:x?} outside RAM");
            assert!(
                busy.iter().all(|b| !b.overlaps(&r)),
                "initrd {r:x?} on a reservation"
            );
            assert!(r.len() >= initrd);
            assert!(r.end - 1 <= info.initrd_addr_max || (info.above_4g && r.start >= 1 << 32));
            "ok".into()
        }
        Err(e) => format!("{:#x}", e.status()),
    }
}

// ---------------------------------------------------------------------------
// fw_cfg: the file directory, and reads into buffers.

fn gen_fwcfg_dir() -> BoxedStrategy<Vec<u8>> {
    let name = prop_oneof![
        Just(b"etc/e820".to_vec()),
        Just(b"etc/table-loader".to_vec()),
        Just(b"opt/ferrite/timeline".to_vec()),
        (0..60usize, any::<u64>(), any::<bool>()).prop_map(|(len, seed, nul)| {
            // cheap to generate: bytes from a seed, a NUL inside or not
            (0..len)
                .map(
                    |i| match (seed.rotate_left(i as u32 * 7) as u8) | nul as u8 {
                        0 => 0,
                        b if b % 9 == 0 && nul => 0,
                        b => b,
                    },
                )
                .collect()
        }),
    ];
    (
        any::<bool>(),
        prop_oneof![
            Just(None),
            Just(Some(u32::MAX)),
            any::<u32>().prop_map(Some)
        ],
        prop::collection::vec((value32(), any::<u16>(), name), 0..130),
    )
        .prop_map(|(dma, count, files)| {
            let mut dir = count.unwrap_or(files.len() as u32).to_be_bytes().to_vec();
            for (size, select, name) in &files {
                dir.extend_from_slice(&size.to_be_bytes());
                dir.extend_from_slice(&select.to_be_bytes());
                dir.extend_from_slice(&[0, 0]);
                let mut n = [0u8; 56];
                let k = name.len().min(56);
                n[..k].copy_from_slice(&name[..k]);
                dir.extend_from_slice(&n);
            }
            frames(&[&[dma as u8], &dir])
        })
        .boxed()
}

fn check_fwcfg_dir(input: &[u8]) -> String {
    let [flags, dir] = unframe::<2>(input);
    let mut dev = FakeDevice::new(flags.first().is_some_and(|f| f & 1 != 0));
    dev.items.insert(Item::FileDir as u16, dir.to_vec());
    // Big-endian, and a directory shorter than 4 bytes reads on as zeros.
    let count =
        u32::from_be_bytes(std::array::from_fn(|i| dir.get(i).copied().unwrap_or(0))) as usize;
    let fw = match FwCfg::probe(&mut dev) {
        Ok(fw) => fw,
        // A count no fw_cfg can have, or one beyond the heap: refused.
        Err(e @ crate::error::Error::BadFileDirectory { .. }) => {
            assert!(count > crate::fwcfg::MAX_FILES, "{e:?}");
            return "impossible-count".into();
        }
        Err(e @ crate::error::Error::OutOfHeap { .. }) => {
            assert!(count * 64 > crate::heap::HEAP_SIZE, "{e:?}");
            return "out-of-heap".into();
        }
        Err(e) => panic!("a well-behaved device with any directory: {e:?}"),
    };
    assert_eq!(fw.file_count(), count);
    let n = count;
    // Each entry the directory holds is found under its name, as its first
    // occurrence: the whole directory is looked at.
    let entries: Vec<[u8; 64]> = (0..n.min(200))
        .map(|i| {
            let mut e = [0u8; 64];
            for (k, b) in e.iter_mut().enumerate() {
                *b = dir.get(4 + i * 64 + k).copied().unwrap_or(0);
            }
            e
        })
        .collect();
    let mut first_of: BTreeMap<&[u8], &[u8; 64]> = BTreeMap::new();
    for e in &entries {
        first_of.entry(&e[8..]).or_insert(e);
    }
    for (name, want) in first_of {
        let Some(len) = name.iter().position(|&b| b == 0) else {
            continue;
        };
        if len == 0 || name[len..].iter().any(|&b| b != 0) {
            continue;
        }
        let f = fw.find(&name[..len]).expect("a listed file is found");
        assert_eq!(f.size, u32::from_be_bytes(want[0..4].try_into().unwrap()));
        assert_eq!(f.select, u16::from_be_bytes(want[4..6].try_into().unwrap()));
    }
    assert!(fw.find(&[b'x'; 56]).is_none());
    if count > crate::fwcfg::INLINE_FILES {
        "whole-heap"
    } else {
        "whole"
    }
    .into()
}

fn gen_fwcfg_read() -> BoxedStrategy<Vec<u8>> {
    (
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..300),
        0..400u32,
        any::<bool>(),
    )
        .prop_map(|(dma, item, len, fail)| {
            frames(&[&[dma as u8 | (fail as u8) << 1], &item, &len.to_le_bytes()])
        })
        .boxed()
}

/// Reads of any length of any item, with and without DMA, failing or not: the
/// bytes land in the buffer handed in and nowhere else.
fn check_fwcfg_read(input: &[u8]) -> String {
    const GUARD: usize = 64;
    let [flags, item, len] = unframe::<3>(input);
    let flags = flags.first().copied().unwrap_or(0);
    let len = (le64(len, 0) as u32 as usize) % 512;
    let mut dev = FakeDevice::new(flags & 1 != 0);
    dev.add_file("opt/fuzz", item);
    if flags & 2 != 0 {
        dev.fail_item = Some(0x20);
    }
    let mut fw = FwCfg::probe(&mut dev).unwrap();
    let f = fw.find(b"opt/fuzz").unwrap();
    let mut buf = vec![0xA5u8; len + 2 * GUARD];
    let result = fw.read_into(f.select, &mut buf[GUARD..GUARD + len]);
    assert!(
        buf[..GUARD].iter().all(|&b| b == 0xA5),
        "write before the buffer"
    );
    assert!(
        buf[GUARD + len..].iter().all(|&b| b == 0xA5),
        "write after the buffer"
    );
    match result {
        Ok(()) => {
            let n = item.len().min(len);
            assert_eq!(&buf[GUARD..GUARD + n], &item[..n]);
            "ok".into()
        }
        Err(e) => format!("{:#x}", e.status()),
    }
}

// ---------------------------------------------------------------------------
// The ACPI table-loader script, with the files it points into.

const LOADER_FILES: [&[u8]; 5] = [
    b"etc/acpi/rsdp",
    b"etc/acpi/tables",
    b"etc/tpm/log",
    b"etc/vmgenid_guid",
    b"etc/vmgenid_addr",
];

fn command(kind: u32, fields: &[(usize, &[u8])]) -> [u8; 128] {
    let mut c = [0u8; 128];
    c[..4].copy_from_slice(&kind.to_le_bytes());
    for (at, bytes) in fields {
        let n = bytes.len().min(128 - at);
        c[*at..at + n].copy_from_slice(&bytes[..n]);
    }
    c
}

fn gen_table_loader() -> BoxedStrategy<Vec<u8>> {
    let file = prop_oneof![
        8 => (0..LOADER_FILES.len()).prop_map(|i| LOADER_FILES[i].to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..60),
    ];
    let offset = prop_oneof![3 => 0..64u32, 1 => value32()];
    let cmd = prop_oneof![
        4 => (file.clone(), prop_oneof![Just(16u32), Just(64), value32()], prop_oneof![Just(1u8), Just(2), any::<u8>()])
            .prop_map(|(n, align, zone)| command(1, &[(4, &n), (60, &align.to_le_bytes()), (64, &[zone])])),
        4 => (file.clone(), file.clone(), offset.clone(), prop_oneof![Just(4u8), Just(8), Just(1), Just(2), any::<u8>()])
            .prop_map(|(d, s, off, size)| command(2, &[(4, &d), (60, &s), (116, &off.to_le_bytes()), (120, &[size])])),
        4 => (file.clone(), offset.clone(), offset.clone(), offset.clone())
            .prop_map(|(n, off, start, len)| command(3, &[(4, &n), (60, &off.to_le_bytes()), (64, &start.to_le_bytes()), (68, &len.to_le_bytes())])),
        2 => (file.clone(), file, offset.clone(), offset, prop_oneof![Just(8u8), Just(4), any::<u8>()])
            .prop_map(|(d, s, doff, soff, size)| command(4, &[(4, &d), (60, &s), (116, &doff.to_le_bytes()), (120, &soff.to_le_bytes()), (124, &[size])])),
        1 => (any::<u32>(), prop::collection::vec(any::<u8>(), 124)).prop_map(|(k, b)| command(k, &[(4, &b)])),
    ];
    (
        prop::collection::vec(cmd, 0..24),
        prop::collection::vec(0..300usize, LOADER_FILES.len()),
        0..130usize,
        any::<u8>(),
    )
        .prop_map(|(cmds, sizes, tail, zone_kib)| {
            let mut script: Vec<u8> = cmds.concat();
            if tail < 128 && tail > 100 {
                script.truncate(script.len().saturating_sub(tail - 100));
            }
            let mut parts: Vec<Vec<u8>> = vec![script, vec![zone_kib]];
            for (i, s) in sizes.iter().enumerate() {
                parts.push((0..*s).map(|b| (b * 7 + i) as u8).collect());
            }
            let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
            frames(&refs)
        })
        .boxed()
}

/// Guest memory made of the allocations themselves: an access outside one is
/// an assertion, not a stray write.
struct LoaderFake<'a> {
    files: BTreeMap<&'static [u8], &'a [u8]>,
    writable: BTreeMap<&'static [u8], Vec<u8>>,
    allocations: Vec<(u64, Vec<u8>, Zone)>,
    high: HighZone,
    high_floor: u64,
    fseg_next: u64,
}

const FSEG: Range = Range::new(0xF_1000, 0x10_0000);

impl LoaderFake<'_> {
    fn find(&mut self, addr: u64, len: u32) -> &mut Vec<u8> {
        // The loader asks for whole allocations only.
        let (_, mem, _) = self
            .allocations
            .iter_mut()
            .find(|(a, m, _)| *a == addr && m.len() == len as usize)
            .unwrap_or_else(|| panic!("access {addr:#x}+{len} is no allocation"));
        mem
    }
}

impl LoaderEnv for LoaderFake<'_> {
    fn file_size(&mut self, name: &[u8]) -> Option<u32> {
        self.files.get(name).map(|d| d.len() as u32)
    }
    fn allocate(&mut self, size: u32, align: u32, zone: Zone) -> Option<u64> {
        let addr = match zone {
            Zone::High => self.high.alloc(size as u64, align as u64)?,
            Zone::FSeg => {
                let start = self
                    .fseg_next
                    .checked_next_multiple_of(align.max(16) as u64)?;
                if start + size as u64 > FSEG.end {
                    return None;
                }
                self.fseg_next = start + size as u64;
                start
            }
        };
        self.allocations
            .push((addr, vec![0xA5; size as usize], zone));
        Some(addr)
    }
    fn read_file(&mut self, name: &[u8], addr: u64, len: u32) -> Result<(), LoaderError> {
        let data = *self
            .files
            .get(name)
            .expect("read of a file that does not exist");
        assert_eq!(data.len(), len as usize, "a file is read whole");
        self.find(addr, len).copy_from_slice(data);
        Ok(())
    }
    fn memory(&mut self, addr: u64, len: u32) -> &mut [u8] {
        self.find(addr, len)
    }
    fn write_file(&mut self, name: &[u8], offset: u32, data: &[u8]) -> Result<(), LoaderError> {
        let file = self.writable.get_mut(name).ok_or(LoaderError::Transfer)?;
        let at = offset as usize;
        assert!(
            at + data.len() <= file.len(),
            "WRITE_POINTER outside its file"
        );
        file[at..at + data.len()].copy_from_slice(data);
        Ok(())
    }
}

fn check_table_loader(input: &[u8]) -> String {
    let parts = unframe::<7>(input);
    let (script, zone_kib) = (parts[0], parts[1].first().copied().unwrap_or(0) as u64);
    let mut files = BTreeMap::new();
    for (name, data) in LOADER_FILES.iter().zip(&parts[2..]) {
        files.insert(*name, *data);
    }
    let top = 0x800_0000u64;
    let mut high = HighZone::new(top);
    // A zone with little room left: exhaustion is an error, never an overflow.
    high.alloc(
        layout::HIGH_ZONE_MAX - (zone_kib << 10).min(layout::HIGH_ZONE_MAX - 16),
        16,
    );
    let high_floor = top - layout::HIGH_ZONE_MAX;
    let mut env = LoaderFake {
        writable: BTreeMap::from([(LOADER_FILES[4], vec![0u8; files[LOADER_FILES[4]].len()])]),
        files,
        allocations: Vec::new(),
        high,
        high_floor,
        fseg_next: FSEG.start,
    };
    let result = acpi::run(script, &mut env);
    for (i, (addr, mem, zone)) in env.allocations.iter().enumerate() {
        let r = Range::new(*addr, addr + mem.len() as u64);
        for (a, m, _) in &env.allocations[i + 1..] {
            assert!(
                !r.overlaps(&Range::new(*a, a + m.len() as u64)),
                "allocations overlap"
            );
            assert_ne!(*a, *addr, "two files at one address");
        }
        let inside = match zone {
            Zone::High => Range::new(env.high_floor, top).contains(&r),
            Zone::FSeg => FSEG.contains(&r),
        };
        assert!(inside, "{r:x?} outside its zone {zone:?}");
    }
    match result {
        Ok(outcome) => {
            if let Some(rsdp) = outcome.rsdp {
                assert!(env.allocations.iter().any(|a| a.0 == rsdp));
            }
            "ok".into()
        }
        Err(e) => format!("{e:?}").split('(').next().unwrap().to_string(),
    }
}

// ---------------------------------------------------------------------------
// setup_data: the list QEMU links into the kernel image.

fn gen_setup_data() -> BoxedStrategy<Vec<u8>> {
    let node = (
        0..0x300usize,
        prop_oneof![Just(2u32), Just(1), Just(9), any::<u32>()],
        prop_oneof![0..64u32, value32()],
    );
    (
        prop::collection::vec(node, 0..10),
        0..0x800usize,
        prop_oneof![Just(0x10_0000u64), value64()],
        prop_oneof![Just(0x4000u64), value64()],
        any::<bool>(),
        prop::collection::vec((0..0x800usize, any::<u8>()), 0..4),
    )
        .prop_map(|(nodes, len, kaddr, setup, whole_file, noise)| {
            let mut blob = vec![0u8; len];
            let base = if whole_file {
                kaddr.wrapping_add(setup)
            } else {
                kaddr
            };
            let mut prev: Option<usize> = None;
            let mut first = 0u64;
            for (at, typ, plen) in nodes {
                let at = at & !7;
                if at + 16 > blob.len() {
                    continue;
                }
                blob[at + 8..at + 12].copy_from_slice(&typ.to_le_bytes());
                blob[at + 12..at + 16].copy_from_slice(&plen.to_le_bytes());
                let ptr = base.wrapping_add(at as u64);
                match prev {
                    Some(p) => blob[p..p + 8].copy_from_slice(&ptr.to_le_bytes()),
                    None => first = ptr,
                }
                prev = Some(at);
            }
            for (at, b) in noise {
                if at < blob.len() {
                    blob[at] = b;
                }
            }
            let mut v = Vec::new();
            for x in [first, kaddr, setup] {
                v.extend_from_slice(&x.to_le_bytes());
            }
            frames(&[&blob, &v])
        })
        .boxed()
}

fn check_setup_data(input: &[u8]) -> String {
    let [blob, ptrs] = unframe::<2>(input);
    let mut nodes = [setup_data::Node::default(); setup_data::MAX_NODES];
    match setup_data::locate(
        le64(ptrs, 0),
        le64(ptrs, 8),
        le64(ptrs, 16),
        blob,
        &mut nodes,
    ) {
        Ok(n) => {
            // Copying them out as Kernel::move_setup_data does stays in bounds.
            let mut zone = HighZone::new(0x800_0000);
            for node in &nodes[..n] {
                assert!(node.len >= 16 && node.offset + node.len <= blob.len());
                let copy = zone.alloc(node.len as u64, 8);
                assert!(copy.is_some() || node.len as u64 > layout::HIGH_ZONE_MAX / 2);
            }
            format!("ok-{n}")
        }
        Err(e) => format!("{e:?}"),
    }
}

// ---------------------------------------------------------------------------
// SMBIOS: QEMU's entry point and tables, finished in place.

fn gen_smbios() -> BoxedStrategy<Vec<u8>> {
    let structure = (
        prop_oneof![Just(0u8), Just(1), Just(4), Just(127), any::<u8>()],
        prop_oneof![4 => 4..40u8, 1 => any::<u8>()],
        prop::collection::vec(prop::collection::vec(1..=255u8, 0..12), 0..3),
        any::<bool>(),
    )
        .prop_map(|(kind, len, strings, broken)| {
            let mut s = vec![kind, len];
            s.resize(len.max(2) as usize, 0x11);
            for st in &strings {
                s.extend_from_slice(st);
                s.push(0);
            }
            if strings.is_empty() {
                s.push(0);
            }
            if !broken {
                s.push(0);
            }
            s
        });
    (
        any::<bool>(),
        prop::collection::vec(structure, 0..8),
        prop_oneof![3 => Just(None), 1 => any::<u32>().prop_map(Some)],
        prop::collection::vec((0..0x1Fusize, any::<u8>()), 0..3),
        value64(),
    )
        .prop_map(|(v3, structs, declared, noise, base)| {
            let tables = structs.concat();
            let len = declared.unwrap_or(tables.len() as u32);
            let mut anchor = if v3 {
                let mut a = vec![0u8; 0x18];
                a[..5].copy_from_slice(b"_SM3_");
                a[0x0C..0x10].copy_from_slice(&len.to_le_bytes());
                a
            } else {
                let mut a = vec![0u8; 0x1F];
                a[..4].copy_from_slice(b"_SM_");
                a[0x16..0x18].copy_from_slice(&(len as u16).to_le_bytes());
                a[0x1C..0x1E].copy_from_slice(&(structs.len() as u16).to_le_bytes());
                a
            };
            for (at, b) in noise {
                if at >= 5 && at < anchor.len() {
                    anchor[at] = b;
                }
            }
            frames(&[&anchor, &tables, &base.to_le_bytes()])
        })
        .boxed()
}

fn check_smbios(input: &[u8]) -> String {
    let [anchor, tables, base] = unframe::<3>(input);
    let base = le64(base, 0);
    let mut buf = vec![0u8; smbios::TYPE0_ROOM];
    buf.extend_from_slice(tables);
    match smbios::finish(anchor, &mut buf, base) {
        Ok((done, start)) => {
            assert!(start == 0 || start == smbios::TYPE0_ROOM);
            assert_eq!(done.tables_len, buf.len() - start);
            assert_eq!(
                &buf[smbios::TYPE0_ROOM..],
                tables,
                "QEMU's records were changed"
            );
            let e = &done.entry[..done.entry_len];
            assert!(
                e.len() == 0x18 || acpi::byte_sum(&e[..0x10]) == 0,
                "2.1 entry point checksum"
            );
            if e.len() == 0x18 {
                assert_eq!(acpi::byte_sum(e), 0, "3.0 entry point checksum");
                assert_eq!(le64(e, 0x10), base + start as u64);
            } else {
                assert_eq!(acpi::byte_sum(&e[0x10..]), 0, "2.1 intermediate checksum");
                assert_eq!(le64(e, 0x18) as u32 as u64, base + start as u64);
            }
            format!("ok-{}-{}", e.len(), start)
        }
        Err(e) => format!("{e:?}"),
    }
}

// ---------------------------------------------------------------------------
// PCI: the set-up against a model of QEMU's buses with generated functions,
// optionally with answers that no device model would give.

fn gen_pci() -> BoxedStrategy<Vec<u8>> {
    // One function: vendor, class, header type, parent, device, function, pin,
    // up to 7 BARs (size as log2, type bits), capability bytes.
    let bar = (
        prop_oneof![Just(0u8), 2..42u8, any::<u8>()],
        prop_oneof![Just(0u8), Just(1), Just(4), Just(0xC), any::<u8>()],
    );
    let func = (
        prop_oneof![Just(0x1AF4u16), Just(0x8086), Just(0x1B36), any::<u16>()],
        prop_oneof![
            Just(0x0200u16),
            Just(0x0604),
            Just(0x0101),
            Just(0x0C03),
            Just(0x0300),
            any::<u16>()
        ],
        prop_oneof![Just(0u8), Just(1), Just(0x80), any::<u8>()],
        any::<u8>(),
        0..32u8,
        prop_oneof![3 => Just(0u8), 1 => 0..8u8],
        0..5u8,
        prop::collection::vec(bar, 7),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(
            |(vendor, class, header, parent, dev, func, pin, bars, caps)| {
                let mut v = vec![];
                v.extend_from_slice(&vendor.to_le_bytes());
                v.extend_from_slice(&class.to_le_bytes());
                v.extend_from_slice(&[header, parent, dev, func, pin]);
                for (s, t) in bars {
                    v.extend_from_slice(&[s, t]);
                }
                v.push(caps.len() as u8);
                v.extend(caps);
                v
            },
        );
    // More functions than the inline arrays hold (256): a bridge on bus 0 and
    // multi-function devices on bus 0 and behind it, small BARs.
    let many = (257..320usize, any::<u64>()).prop_map(|(n, seed)| {
        let mut funcs = vec![];
        let mut bridge = vec![0x36u8, 0x1B, 0x04, 0x06, 0x01, 0, 1, 0, 0];
        bridge.extend([0u8; 14]);
        funcs.push(bridge);
        for i in 0..n {
            let behind = i >= 29 * 8;
            let (dev, f) = if behind {
                ((i - 29 * 8) / 8 + 1, i % 8)
            } else {
                (i / 8 + 2, i % 8)
            };
            let r = seed.rotate_left(i as u32 % 64);
            let mut v = vec![
                0xF4,
                0x1A,
                0x00,
                0x02,
                0x80,
                behind as u8,
                dev as u8,
                f as u8,
                (r % 5) as u8,
            ];
            for bar in 0..7u64 {
                let size = if bar < 2 {
                    4 + (r >> (bar * 5)) as u8 % 12
                } else {
                    0
                };
                v.extend([size, 4]); // a 32-bit memory BAR
            }
            funcs.push(v);
        }
        funcs
    });
    let funcs = prop_oneof![8 => prop::collection::vec(func, 0..10), 1 => many];
    (
        any::<bool>(),
        1..0xE00u64,
        prop::option::of(1..0x1000u64),
        funcs,
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(q35, low_mib, high_mib, funcs, noise)| {
            let mut head = vec![q35 as u8];
            head.extend_from_slice(&low_mib.to_le_bytes());
            head.extend_from_slice(&high_mib.unwrap_or(0).to_le_bytes());
            let mut parts: Vec<Vec<u8>> = vec![head, noise];
            parts.extend(funcs);
            let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
            frames(&refs)
        })
        .boxed()
}

/// Answers of the model, XORed now and then with noise: reads of hardware that
/// misbehaves.
struct Noisy {
    model: Model,
    noise: Vec<u8>,
    reads: usize,
}

impl Noisy {
    fn noise(&mut self, v: u32) -> u32 {
        self.reads += 1;
        match self.noise.get(self.reads % 64) {
            Some(&n) if n & 0x80 != 0 => v ^ (n as u32) << ((self.reads % 4) * 8),
            _ => v,
        }
    }
}

/// The noisy model behind both of the PCI set-up's ways in: the ports, and
/// q35's MMCONFIG window turned back into 0xCF8/0xCFC accesses on the model
/// (so that the noise applies to both).
struct NoisyPorts<'a>(&'a core::cell::RefCell<Noisy>);
struct NoisyMmconfig<'a>(&'a core::cell::RefCell<Noisy>);

impl crate::io::PortIo for NoisyPorts<'_> {
    fn inb(&mut self, port: u16) -> u8 {
        self.0.borrow_mut().inb(port)
    }
    fn inw(&mut self, port: u16) -> u16 {
        self.0.borrow_mut().inw(port)
    }
    fn inl(&mut self, port: u16) -> u32 {
        self.0.borrow_mut().inl(port)
    }
    fn outb(&mut self, port: u16, v: u8) {
        self.0.borrow_mut().outb(port, v)
    }
    fn outw(&mut self, port: u16, v: u16) {
        self.0.borrow_mut().outw(port, v)
    }
    fn outl(&mut self, port: u16, v: u32) {
        self.0.borrow_mut().outl(port, v)
    }
    fn read_bytes(&mut self, port: u16, buf: &mut [u8]) {
        self.0.borrow_mut().read_bytes(port, buf)
    }
}

impl NoisyMmconfig<'_> {
    /// Selects the function and dword `addr` names; returns the data port.
    fn select(n: &mut Noisy, addr: u64) -> u16 {
        use crate::io::PortIo;
        let off = addr.wrapping_sub(crate::chipset::Q35_MMCONFIG.start);
        assert!(
            off < 256 << 20,
            "MMCONFIG access outside the window: {addr:#x}"
        );
        n.outl(
            0xCF8,
            0x8000_0000 | ((off >> 12) as u32 & 0xFFFF) << 8 | (off & 0xFC) as u32,
        );
        0xCFC + (off & 3) as u16
    }
}

impl crate::io::Mmio for NoisyMmconfig<'_> {
    fn read(&mut self, addr: u64, width: u8) -> u32 {
        use crate::io::PortIo;
        let n = &mut *self.0.borrow_mut();
        let port = Self::select(n, addr);
        match width {
            1 => n.inb(port) as u32,
            2 => n.inw(port) as u32,
            _ => n.inl(port),
        }
    }
    fn write(&mut self, addr: u64, width: u8, v: u32) {
        use crate::io::PortIo;
        let n = &mut *self.0.borrow_mut();
        let port = Self::select(n, addr);
        match width {
            1 => n.outb(port, v as u8),
            2 => n.outw(port, v as u16),
            _ => n.outl(port, v),
        }
    }
}

impl crate::io::PortIo for Noisy {
    fn inb(&mut self, port: u16) -> u8 {
        let v = self.model.inb(port) as u32;
        self.noise(v) as u8
    }
    fn inw(&mut self, port: u16) -> u16 {
        let v = self.model.inw(port) as u32;
        self.noise(v) as u16
    }
    fn inl(&mut self, port: u16) -> u32 {
        let v = self.model.inl(port);
        self.noise(v)
    }
    fn outb(&mut self, port: u16, v: u8) {
        self.model.outb(port, v)
    }
    fn outw(&mut self, port: u16, v: u16) {
        self.model.outw(port, v)
    }
    fn outl(&mut self, port: u16, v: u32) {
        self.model.outl(port, v)
    }
    fn read_bytes(&mut self, _: u16, _: &mut [u8]) {
        unreachable!()
    }
}

fn check_pci(input: &[u8]) -> String {
    use crate::chipset::Machine;
    use crate::pci::{Pci, Platform};
    let parts = unframe::<330>(input);
    let q35 = parts[0].first().is_some_and(|b| b & 1 != 0);
    // QEMU's low RAM ends by 3.5 GiB on pc, and below MMCONFIG on q35.
    let low = (le64(parts[0], 1) % if q35 { 0xB00 } else { 0xE00 }).max(1) << 20;
    let high = le64(parts[0], 9) % 0x1000;
    let mut funcs = vec![if q35 {
        Func::new(0x8086, 0x29C0, 0x0600, 0).at(None, 0, 0)
    } else {
        Func::new(0x8086, 0x1237, 0x0600, 0).at(None, 0, 0)
    }];
    let mut bridges: Vec<usize> = Vec::new();
    for p in parts[2..].iter().filter(|p| p.len() >= 9) {
        // Vendors 0 and 0xFFFF are no function; a bridge is a PCI-to-PCI bridge by its
        // class and its header type alike (the model goes by the header).
        let vendor = u16::from_le_bytes([p[0], p[1]]).clamp(1, 0xFFFE);
        let mut class = u16::from_le_bytes([p[2], p[3]]);
        let mut header = p[4] & 0x81;
        if class == 0x0604 || header & 1 != 0 {
            class = 0x0604;
            header |= 1;
        }
        let parent = if bridges.is_empty() || p[5] & 1 == 0 {
            None
        } else {
            Some(bridges[p[5] as usize % bridges.len()])
        };
        let (dev, mut func) = (p[6] % 32, p[7] % 8);
        // Functions other than 0 exist only behind a multi-function function 0.
        let multi = funcs
            .iter()
            .any(|f| f.parent == parent && f.devfn == dev << 3 && f.cfg[0x0E] & 0x80 != 0);
        if !multi {
            func = 0;
        }
        if funcs
            .iter()
            .any(|f| f.parent == parent && f.devfn == dev << 3 | func)
            || (parent.is_none() && dev == 0)
        {
            continue;
        }
        let mut f = Func::new(vendor, 0x1000, class, header)
            .at(parent, dev, func)
            .pin(p[8] % 5);
        let is_bridge = header & 0x7F == 1;
        let mut bar = 0;
        while bar < 7 {
            let (Some(&log2), Some(&typ)) = (p.get(9 + 2 * bar), p.get(10 + 2 * bar)) else {
                break;
            };
            let size = if log2 == 0 {
                0
            } else {
                1u64 << (log2 % 44).max(4)
            };
            // An IDE controller's BARs 0-3 get the ISA ports, as under SeaBIOS
            // (the invariant below would call them unassigned).
            // A bridge has BARs 0 and 1 only (a 64-bit one at 0).
            let skip = is_bridge && (2..6).contains(&bar)
                || is_bridge && bar == 1 && (1..=3).contains(&(typ % 5))
                || class == 0x0101 && bar < 4;
            if size != 0 && !skip {
                f = match typ % 5 {
                    0 if bar < 6 => f.io(bar, size.min(256)),
                    1 | 2 if bar < 5 => f.mem64(bar, size),
                    3 if bar < 5 => f.mem64_pref(bar, size),
                    4 if bar == 6 => f.rom(size.min(1 << 24)),
                    _ if bar < 6 => f.mem(bar, size.min(1 << 31)),
                    _ => f.rom(size.clamp(2048, 1 << 24)),
                };
                if typ % 5 != 0 && (1..=3).contains(&(typ % 5)) && bar < 5 {
                    bar += 1;
                }
            }
            bar += 1;
        }
        if let Some(&n) = p.get(23) {
            let caps: &[u8] = p.get(24..24 + n as usize).unwrap_or(&[]);
            if caps.len() >= 2 {
                f = f.caps(&[(caps[0], &caps[1..caps.len().min(6)])]);
            }
        }
        if is_bridge {
            bridges.push(funcs.len());
        }
        funcs.push(f);
    }
    let model = Model::new(funcs);
    let noise = parts[1].to_vec();
    let noisy = !noise.is_empty();
    let io = Noisy {
        model,
        noise,
        reads: 0,
    };
    let platform = Platform {
        host: if q35 { Machine::Q35 } else { Machine::I440fx },
        low_ram_end: low,
        high_ram_end: if high == 0 {
            1 << 32
        } else {
            (1 << 32) + (high << 20)
        },
        reserved_memory_end: 0,
        pm_base: crate::chipset::ACPI_PM_BASE,
        mmconfig: crate::chipset::Q35_MMCONFIG,
    };
    let mut pci = Box::new(Pci::new());
    let cell = core::cell::RefCell::new(io);
    let result = pci.setup(&mut NoisyPorts(&cell), &mut NoisyMmconfig(&cell), &platform);
    let io = cell.into_inner();
    assert!(
        io.model.accesses < 2_000_000,
        "{} port accesses",
        io.model.accesses
    );
    let mut ints = 0;
    pci.bus0_interrupts(|_, pin, _| {
        assert!((1..=4).contains(&pin));
        ints += 1;
    });
    match result {
        Ok(layout) => {
            assert!(layout.mem32_start >= low.min(1 << 32) && layout.mem32_start <= 1 << 32);
            if let Some(w) = layout.mem64 {
                assert!(w.start >= 1 << 32 && w.start <= w.end);
            }
            if !noisy {
                crate::pci::tests::assert_no_overlap(&io.model);
            }
            if layout.functions > crate::pci::MAX_DEVICES {
                return "ok-heap".into();
            }
            format!("ok-{}", layout.functions.min(4))
        }
        Err(e) => format!("{e:?}"),
    }
}

// ---------------------------------------------------------------------------
// The MP table, from the CPU counts and interrupts QEMU reports.

fn gen_mptable() -> BoxedStrategy<Vec<u8>> {
    (
        prop_oneof![1..300u16, any::<u16>()],
        any::<[u64; 4]>(),
        prop_oneof![Just(1u16), 0..300u16],
        prop::collection::vec(any::<(u8, u8, u8)>(), 0..40),
        any::<(bool, bool)>(),
        0..700usize,
    )
        .prop_map(|(max, present, package, ints, (pci, irq0), out)| {
            let mut v = Vec::new();
            v.extend_from_slice(&max.to_le_bytes());
            for p in present {
                v.extend_from_slice(&p.to_le_bytes());
            }
            v.extend_from_slice(&package.to_le_bytes());
            v.extend_from_slice(&[pci as u8, irq0 as u8]);
            v.extend_from_slice(&(out as u16).to_le_bytes());
            let ints: Vec<u8> = ints.iter().flat_map(|&(a, b, c)| [a, b, c]).collect();
            frames(&[&v, &ints])
        })
        .boxed()
}

fn check_mptable(input: &[u8]) -> String {
    let [head, ints] = unframe::<2>(input);
    let present = [
        le64(head, 2),
        le64(head, 10),
        le64(head, 18),
        le64(head, 26),
    ];
    let ints: Vec<(u8, u8, u8)> = ints.chunks_exact(3).map(|c| (c[0], c[1], c[2])).collect();
    let machine = mptable::Machine {
        max_cpus: le64(head, 0) as u16,
        present: &present,
        cpu_signature: 0x663,
        cpu_features: 0x0781_FBFF,
        apic_version: 0x14,
        package_cpus: le64(head, 34) as u16,
        has_pci: head.get(36).is_some_and(|b| b & 1 != 0),
        pci_interrupts: &ints,
        irq0_override: head.get(37).is_some_and(|b| b & 1 != 0),
    };
    let out_len = (le64(head, 38) as u16 as usize) % 1024;
    let mut out = vec![0xA5u8; out_len + 64];
    match mptable::build(&machine, 0xF_5000, &mut out[..out_len]) {
        Some(len) => {
            assert!(len <= out_len.min(mptable::MAX_LEN));
            assert!(out[out_len..].iter().all(|&b| b == 0xA5));
            assert_eq!(acpi::byte_sum(&out[..16]), 0, "floating pointer checksum");
            assert_eq!(
                acpi::byte_sum(&out[16..len]),
                0,
                "configuration table checksum"
            );
            "ok".into()
        }
        None => "too-large".into(),
    }
}

// ---------------------------------------------------------------------------
// pvh: the ELF header, program headers and PVH entry note (pvh::find_entry),
// from the file's first 8 KiB and, for a note further in, from loaded memory.

/// An ELF (either class) with a PT_LOAD at `load` and a PT_NOTE holding the
/// PVH entry note, in the head or in loaded memory; fields fuzzed.
fn gen_pvh() -> BoxedStrategy<Vec<u8>> {
    (
        any::<bool>(),
        prop_oneof![3 => Just(18u32), 1 => any::<u32>()],
        prop_oneof![3 => Just(4usize), 1 => Just(8usize), 1 => 0..16usize],
        value64(),
        (value64(), value64(), value64(), value64()),
        (
            any::<bool>(),
            0..3u16,
            prop::collection::vec(any::<u8>(), 0..64),
        ),
    )
        .prop_map(
            |(
                wide,
                typ,
                descsz,
                entry,
                (load, memsz, note_off, loaded_len),
                (in_head, extra, junk),
            )| {
                let (ehsize, phsize) = if wide { (64, 56) } else { (52, 32) };
                let phnum = 2 + extra;
                let mut h = vec![0u8; ehsize];
                h[..4].copy_from_slice(b"\x7fELF");
                h[4] = if wide { 2 } else { 1 };
                h[5] = 1;
                let phoff = ehsize as u64;
                if wide {
                    h[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
                    h[0x36..0x38].copy_from_slice(&(phsize as u16).to_le_bytes());
                    h[0x38..0x3A].copy_from_slice(&phnum.to_le_bytes());
                } else {
                    h[0x1C..0x20].copy_from_slice(&(phoff as u32).to_le_bytes());
                    h[0x2A..0x2C].copy_from_slice(&(phsize as u16).to_le_bytes());
                    h[0x2C..0x2E].copy_from_slice(&phnum.to_le_bytes());
                }
                let mut note = Vec::new();
                note.extend_from_slice(&4u32.to_le_bytes());
                note.extend_from_slice(&(descsz as u32).to_le_bytes());
                note.extend_from_slice(&typ.to_le_bytes());
                note.extend_from_slice(b"Xen\0");
                let mut desc = entry.to_le_bytes().to_vec();
                desc.resize(descsz.div_ceil(4) * 4, 0);
                note.extend_from_slice(&desc);
                let notes_at = ehsize + phsize * phnum as usize;
                let note_offset = if in_head { notes_at as u64 } else { note_off };
                let seg = |typ: u32, off: u64, paddr: u64, filesz: u64, memsz: u64| {
                    let mut p = vec![0u8; phsize];
                    p[..4].copy_from_slice(&typ.to_le_bytes());
                    if wide {
                        p[0x08..0x10].copy_from_slice(&off.to_le_bytes());
                        p[0x18..0x20].copy_from_slice(&paddr.to_le_bytes());
                        p[0x20..0x28].copy_from_slice(&filesz.to_le_bytes());
                        p[0x28..0x30].copy_from_slice(&memsz.to_le_bytes());
                    } else {
                        p[0x04..0x08].copy_from_slice(&(off as u32).to_le_bytes());
                        p[0x0C..0x10].copy_from_slice(&(paddr as u32).to_le_bytes());
                        p[0x10..0x14].copy_from_slice(&(filesz as u32).to_le_bytes());
                        p[0x14..0x18].copy_from_slice(&(memsz as u32).to_le_bytes());
                    }
                    p
                };
                h.extend(seg(1, 0, load, memsz, memsz));
                h.extend(seg(
                    4,
                    note_offset,
                    load.wrapping_add(0x100),
                    note.len() as u64,
                    0,
                ));
                for _ in 2..phnum {
                    h.extend(seg(4, note_off, note_off, loaded_len & 0x1FFF, 0));
                }
                h.extend_from_slice(&note);
                h.extend_from_slice(&junk);
                let mut memory = vec![0u8; 0x100];
                memory.extend_from_slice(&note);
                let loaded =
                    [load.to_le_bytes(), (loaded_len & 0xFFFF_FFFF).to_le_bytes()].concat();
                frames(&[&h, &loaded, &memory])
            },
        )
        .boxed()
}

/// Guest memory for `find_entry`: `bytes` from `base`, every read inside the
/// loaded segments (asserted), zeros beyond the bytes given.
struct LoadedMemory<'a> {
    base: u64,
    loaded: Range,
    bytes: &'a [u8],
}

impl crate::pvh::Memory for LoadedMemory<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) {
        let end = addr
            .checked_add(buf.len() as u64)
            .expect("a read that wraps");
        assert!(
            self.loaded.contains(&Range::new(addr, end)),
            "read {addr:#x}+{} outside the segments {:x?}",
            buf.len(),
            self.loaded
        );
        for (i, b) in buf.iter_mut().enumerate() {
            let at = (addr - self.base) as usize + i;
            *b = self.bytes.get(at).copied().unwrap_or(0);
        }
    }
}

fn check_pvh(input: &[u8]) -> String {
    let [head, loaded, memory] = unframe::<3>(input);
    let head = &head[..head.len().min(crate::pvh::HEAD_BYTES)];
    let start = le64(loaded, 0);
    let loaded = Range::new(start, start.saturating_add(le64(loaded, 8)));
    let mut mem = LoadedMemory {
        base: start,
        loaded,
        bytes: memory,
    };
    match crate::pvh::find_entry(head, loaded, &mut mem) {
        Ok(entry) => {
            let entry = entry as u64;
            assert!(
                loaded.contains(&Range::new(entry, entry + 1)),
                "entry {entry:#x} outside {loaded:x?}"
            );
            "ok".into()
        }
        Err(e) => format!("{:#x}", e.status()),
    }
}

// ---------------------------------------------------------------------------
// multiboot: the multiboot v1 header in the image's first 8 KiB
// (multiboot::check, multiboot::find_header).

fn gen_multiboot() -> BoxedStrategy<Vec<u8>> {
    (
        (0..2100usize).prop_map(|w| w * 4),
        prop_oneof![
            2 => Just(crate::multiboot::header_flags::MEMORY_INFO),
            2 => Just(crate::multiboot::header_flags::AOUT_KLUDGE | 3),
            1 => any::<u32>(),
        ],
        any::<bool>(),
        (value32(), value32(), value32(), value32(), value32()),
        (0x10_0000..0x20_0000u64, 0..0x4_0000u64, value32()),
        prop::collection::vec(any::<u8>(), 0..32),
    )
        .prop_map(
            |(
                at,
                flags,
                good_sum,
                (header_addr, load, load_end, bss_end, entry_addr),
                (start, len, entry),
                junk,
            )| {
                let mut img = vec![0u8; at];
                let magic = 0x1BAD_B002u32;
                let sum = if good_sum {
                    0u32.wrapping_sub(magic).wrapping_sub(flags)
                } else {
                    flags
                };
                // a consistent a.out kludge now and then
                let (header_addr, load, entry_addr) = if good_sum && header_addr % 2 == 0 {
                    (
                        start as u32 + at as u32,
                        start as u32,
                        start as u32 + (entry_addr % 64),
                    )
                } else {
                    (header_addr, load, entry_addr)
                };
                for w in [
                    magic,
                    flags,
                    sum,
                    header_addr,
                    load,
                    load_end,
                    bss_end,
                    entry_addr,
                    0,
                    0,
                    0,
                    0,
                ] {
                    img.extend_from_slice(&w.to_le_bytes());
                }
                img.extend_from_slice(&junk);
                let image = [start.to_le_bytes(), len.to_le_bytes()].concat();
                let entry = if entry % 2 == 0 { entry_addr } else { entry };
                frames(&[&img, &image, &entry.to_le_bytes()])
            },
        )
        .boxed()
}

fn check_multiboot(input: &[u8]) -> String {
    use crate::multiboot::{self, header_flags};
    let [head, image, entry] = unframe::<3>(input);
    let start = le64(image, 0);
    let image = Range::new(start, start.saturating_add(le64(image, 8)));
    let entry = le64(entry, 0) as u32;
    if let Some((at, h)) = multiboot::find_header(head) {
        assert!(
            at % 4 == 0 && at < multiboot::SEARCH_BYTES,
            "header at {at}"
        );
        assert_eq!(h.magic.wrapping_add(h.flags).wrapping_add(h.checksum), 0);
    }
    match multiboot::check(head, image, entry) {
        Ok(header) => {
            assert!(image.start <= entry as u64 && (entry as u64) < image.end);
            if let Some(h) = header {
                assert_eq!(h.flags & header_flags::VIDEO_MODE, 0);
                if h.flags & header_flags::AOUT_KLUDGE != 0 {
                    assert_eq!(h.entry_addr, entry);
                    assert_eq!(h.load_addr as u64, image.start);
                    return "ok-aout".into();
                }
                return "ok-header".into();
            }
            "ok-no-header".into()
        }
        Err(e) => format!("{:#x}", e.status()),
    }
}
