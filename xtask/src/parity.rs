//! ferrite against SeaBIOS: boot Debian's stock kernel under each with the same
//! machine, memory, CPUs and devices, let /init (assets/collect.sh) print what
//! the guest sees of its firmware's set-up, and compare section by section.
//!
//! Differences a user would call harmless (firmware identity, where each
//! firmware keeps its own ROM and tables) are listed in [`HARMLESS`] with the
//! reason; everything else is reported.
//!
//! [`Mode::Strict`] (`cargo xtask compare --strict`, the ignored test
//! `tests/tests/parity_strict.rs`) collects more (ACPI and PCI kernel messages,
//! every firmware-related message, input devices, CPU counts), boots with
//! `nokaslr` so the kernel lands at the same place under both, and accepts only
//! [`FIRMWARE_IDENTITY`]: it is the list of what is left to make the same.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use regex::Regex;

use crate::linux_assets;
use crate::qemu::{Machine, Qemu};

/// One comparison: a machine, its memory and CPUs.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Config {
    pub machine: Machine,
    pub memory_mib: u64,
    pub cpus: u32,
}

/// What each boot printed, by section.
pub type Sections = BTreeMap<String, Vec<String>>;

/// A difference the comparison accepts, and why.
pub struct Harmless {
    pub section: &'static str,
    /// Matched against a line that only one firmware's guest shows.
    pub pattern: &'static str,
    pub reason: &'static str,
}

const DMI_BIOS: Harmless = Harmless {
    section: "dmi",
    pattern: r"^(bios_(vendor|version|date|release)=|modalias=dmi:bvn|uevent=MODALIAS=dmi:bvn)",
    reason: "the firmware's own name, version and date (SMBIOS type 0)",
};

/// What the strict comparison accepts: only what names the firmware.
pub const FIRMWARE_IDENTITY: &[Harmless] = &[
    DMI_BIOS,
    Harmless {
        section: "messages",
        pattern: r"^DMI: .*, BIOS [^ ]+ [0-9]{2}/[0-9]{2}/[0-9]{4}$",
        reason: "the kernel's DMI summary line names the firmware's version and date (SMBIOS type 0)",
    },
];

/// Every accepted difference; README.md lists the same, with these reasons.
pub const HARMLESS: &[Harmless] = &[
    DMI_BIOS,
    Harmless {
        section: "e820",
        pattern: r"reserved$",
        reason: "each firmware reserves its own ROM (SeaBIOS 256 KiB, ferrite 128 KiB) and its own table area below the top of low RAM",
    },
    Harmless {
        section: "e820",
        pattern: r"usable$",
        reason: "the RAM below each firmware's table area ends where that area starts",
    },
    Harmless {
        section: "iomem",
        pattern: r"^ *[0-9a-f]+-[0-9a-f]+ : (Reserved|System RAM|Kernel code|Kernel rodata|Kernel data|Kernel bss|System ROM)$",
        reason: "the same ROM and table areas as in e820, and the kernel placed in RAM that starts elsewhere",
    },
    Harmless {
        section: "ioports",
        pattern: r": cga$",
        reason: "under SeaBIOS the kernel's 16-bit setup asks the video BIOS for a text mode, and Linux claims the CGA ports of a display the machine does not have; ferrite enters at 64 bits and reports no display",
    },
    Harmless {
        section: "warnings",
        pattern: r"(?i)^(tsc: |hrtimer: interrupt took [0-9]+ ns|clocksource: |APIC calibration|.*calibrat)",
        reason: "timing warnings under TCG (TSC and APIC timer calibration, a slow timer interrupt, the clocksource watchdog) depend on host load, not on the firmware",
    },
    Harmless {
        section: "warnings",
        pattern: r"^ *(#[0-9]+ *)+$",
        reason: "pieces of the \"Booting SMP configuration\" line, which timing splits differently",
    },
    Harmless {
        section: "iomem",
        pattern: r"^ *000c[0-9a-f]{4}-000[cd][0-9a-f]{4} : (Adapter ROM|Video ROM)$",
        reason: "SeaBIOS loads its linuxboot option ROM to boot -kernel; ferrite runs no option ROM",
    },
];

/// The device set: virtio-blk, virtio-net without an option ROM, a 64-bit BAR
/// (ivshmem), and a bridge (pc) or PCIe root port (q35) with a device behind.
pub fn devices(machine: Machine, disk: &Path) -> Vec<String> {
    let mut a: Vec<String> = [
        "-drive",
        &format!("if=none,id=d0,format=raw,file={}", disk.display()),
        "-device",
        "virtio-blk-pci,drive=d0",
        "-netdev",
        "user,id=n0",
        "-device",
        "virtio-net-pci,netdev=n0,romfile=",
        "-object",
        "memory-backend-ram,id=shm0,size=64M",
        "-device",
        "ivshmem-plain,memdev=shm0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let bus: &[&str] = match machine {
        Machine::Q35 => &[
            "-device",
            "pcie-root-port,id=rp1,chassis=1",
            "-device",
            "virtio-rng-pci,bus=rp1",
        ],
        _ => &[
            "-device",
            "pci-bridge,id=br1,chassis_nr=1",
            "-device",
            "virtio-rng-pci,bus=br1",
        ],
    };
    a.extend(bus.iter().map(|s| s.to_string()));
    a
}

/// QEMU's SeaBIOS image for pc and q35.
pub const SEABIOS: &str = "/usr/share/seabios/bios-256k.bin";

/// How much to collect and what to accept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum Mode {
    /// The CI gate: the base sections, [`HARMLESS`] accepted.
    #[default]
    Harmless,
    /// Every section, `nokaslr`, only [`FIRMWARE_IDENTITY`] accepted.
    Strict,
}

impl Mode {
    /// The differences this mode accepts.
    pub fn accepted(self) -> &'static [Harmless] {
        match self {
            Mode::Harmless => HARMLESS,
            Mode::Strict => FIRMWARE_IDENTITY,
        }
    }

    /// The kernel command line, the same under both firmwares. `nokaslr`: with
    /// KASLR the kernel's physical address is random on every boot, which
    /// would hide where each firmware lets it land; `parity.full=1` makes
    /// collect.sh print its extra sections.
    pub fn append(self) -> &'static str {
        match self {
            Mode::Harmless => "console=ttyS0 loglevel=1 panic=-1",
            Mode::Strict => "console=ttyS0 loglevel=1 panic=-1 nokaslr parity.full=1",
        }
    }
}

/// Boots `kernel` with `bios` and returns the sections /init printed.
pub fn collect(bios: &Path, cfg: Config, kernel: &Path, work: &Path) -> Result<Sections> {
    collect_with(bios, cfg, kernel, work, Mode::Harmless)
}

/// [`collect`] in `mode`; the serial output is kept as `work/serial.txt`.
pub fn collect_with(
    bios: &Path,
    cfg: Config,
    kernel: &Path,
    work: &Path,
    mode: Mode,
) -> Result<Sections> {
    let initrd = linux_assets::build_collect_initramfs(&work.join("collect.cpio"))?;
    let disk = work.join("disk.img");
    if !disk.exists() {
        std::fs::write(&disk, vec![0u8; 1 << 20])?;
    }
    let mut q = Qemu::new(cfg.machine, bios.to_path_buf());
    q.memory_mib = cfg.memory_mib;
    q.cpus = cfg.cpus;
    q.kernel = Some(kernel.to_path_buf());
    q.initrd = Some(initrd);
    q.append = Some(mode.append().into());
    q.extra = devices(cfg.machine, &disk);
    q.timeout = Duration::from_secs(240);
    let out = q.run()?;
    std::fs::write(work.join("serial.txt"), &out.serial)?;
    if out.timed_out {
        bail!("{} timed out:\n{}", bios.display(), out.serial);
    }
    let sections = parse(&out.serial);
    if !sections.contains_key("end") {
        bail!(
            "{} did not reach the end of /init:\n{}{}",
            bios.display(),
            out.serial,
            out.stderr
        );
    }
    Ok(sections)
}

static KERNEL_MESSAGE: std::sync::LazyLock<Regex> =
    std::sync::LazyLock::new(|| Regex::new(r"^\[ *[0-9]+\.[0-9]+\] ").unwrap());

/// Splits the serial output at "=== name" lines (kernel messages before the
/// first one are dropped).
pub fn parse(serial: &str) -> Sections {
    let mut sections = Sections::new();
    let mut current: Option<String> = None;
    for line in serial.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(name) = line.strip_prefix("=== ") {
            current = Some(name.trim().to_string());
            sections.entry(name.trim().to_string()).or_default();
        } else if let Some(name) = &current {
            // kernel console messages ("[    3.28] reboot: Power down") are not
            // what /init printed
            if !KERNEL_MESSAGE.is_match(line) {
                sections.get_mut(name).unwrap().push(line.to_string());
            }
        }
    }
    sections
}

/// Lines of one section that only one side shows.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Difference {
    pub section: String,
    pub only_seabios: Vec<String>,
    pub only_ferrite: Vec<String>,
    /// Of those, accepted as harmless: (line, reason).
    pub harmless: Vec<(String, &'static str)>,
}

impl Difference {
    pub fn unexplained(&self) -> impl Iterator<Item = &String> {
        self.only_seabios
            .iter()
            .chain(&self.only_ferrite)
            .filter(|l| !self.harmless.iter().any(|(h, _)| h == *l))
    }
}

/// Compares every section; returns those that differ.
pub fn compare(seabios: &Sections, ferrite: &Sections) -> Vec<Difference> {
    compare_with(seabios, ferrite, HARMLESS)
}

/// [`compare`], accepting only the differences in `accepted`.
pub fn compare_with(
    seabios: &Sections,
    ferrite: &Sections,
    accepted: &'static [Harmless],
) -> Vec<Difference> {
    let harmless: Vec<(&Harmless, Regex)> = accepted
        .iter()
        .map(|h| (h, Regex::new(h.pattern).expect("HARMLESS pattern")))
        .collect();
    let empty = Vec::new();
    let names: std::collections::BTreeSet<&String> = seabios.keys().chain(ferrite.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let a = seabios.get(name).unwrap_or(&empty);
        let b = ferrite.get(name).unwrap_or(&empty);
        let only = |x: &Vec<String>, y: &Vec<String>| -> Vec<String> {
            let mut left: Vec<&String> = y.iter().collect();
            x.iter()
                .filter(|l| match left.iter().position(|m| m == l) {
                    Some(i) => {
                        left.remove(i);
                        false
                    }
                    None => true,
                })
                .cloned()
                .collect()
        };
        let d = Difference {
            section: name.clone(),
            only_seabios: only(a, b),
            only_ferrite: only(b, a),
            harmless: Vec::new(),
        };
        if d.only_seabios.is_empty() && d.only_ferrite.is_empty() {
            continue;
        }
        let mut d = d;
        for line in d.only_seabios.iter().chain(&d.only_ferrite) {
            if let Some((h, _)) = harmless
                .iter()
                .find(|(h, re)| h.section == name && re.is_match(line))
            {
                d.harmless.push((line.clone(), h.reason));
            }
        }
        out.push(d);
    }
    out
}

/// A readable report: per section, a unified diff and the accepted lines.
pub fn report(cfg: Config, seabios: &Sections, ferrite: &Sections, diffs: &[Difference]) -> String {
    let lines: usize = diffs
        .iter()
        .map(|d| d.only_seabios.len() + d.only_ferrite.len())
        .sum();
    let unexplained: usize = diffs.iter().map(|d| d.unexplained().count()).sum();
    let mut s = format!(
        "== {} {} MiB {} CPU(s): {} section(s) differ, {lines} line(s), {unexplained} unexplained\n",
        cfg.machine.name(),
        cfg.memory_mib,
        cfg.cpus,
        diffs.len()
    );
    for d in diffs {
        let empty = Vec::new();
        let a = seabios.get(&d.section).unwrap_or(&empty).join("\n");
        let b = ferrite.get(&d.section).unwrap_or(&empty).join("\n");
        s += &format!("--- [{}] seabios\n+++ [{}] ferrite\n", d.section, d.section);
        for change in similar::TextDiff::from_lines(&a, &b).iter_all_changes() {
            match change.tag() {
                similar::ChangeTag::Equal => {}
                similar::ChangeTag::Delete => s += &format!("-{change}"),
                similar::ChangeTag::Insert => s += &format!("+{change}"),
            }
            if !s.ends_with('\n') {
                s.push('\n');
            }
        }
        for (line, reason) in &d.harmless {
            s += &format!("  harmless: {line:?}: {reason}\n");
        }
        for line in d.unexplained() {
            s += &format!("  UNEXPLAINED: {line:?}\n");
            // in the strict mode, say what the CI gate's list thinks of it
            if let Some(h) = HARMLESS
                .iter()
                .find(|h| h.section == d.section && Regex::new(h.pattern).unwrap().is_match(line))
            {
                s += &format!("    (HARMLESS would accept it: {})\n", h.reason);
            }
        }
    }
    s
}

/// Runs one comparison end to end; returns the report and how many lines no
/// [`HARMLESS`] entry explains.
pub fn run(ferrite_rom: &Path, cfg: Config, work: &Path) -> Result<(String, usize)> {
    let c = run_with(ferrite_rom, cfg, work, Mode::Harmless)?;
    Ok((c.report, c.unexplained))
}

/// One comparison's outcome, as `--json` writes it.
#[derive(Debug, serde::Serialize)]
pub struct Comparison {
    pub config: Config,
    pub mode: Mode,
    /// Lines that differ and are not accepted, both sides.
    pub unexplained: usize,
    pub differences: Vec<Difference>,
    pub seabios: Sections,
    pub ferrite: Sections,
    #[serde(skip)]
    pub report: String,
}

/// Runs one comparison end to end in `mode`.
pub fn run_with(ferrite_rom: &Path, cfg: Config, work: &Path, mode: Mode) -> Result<Comparison> {
    let kernel = linux_assets::stock_kernel()?;
    let dir = |name: &str| -> Result<PathBuf> {
        let d = work.join(format!(
            "{}-{}-{}-{name}",
            cfg.machine.name(),
            cfg.memory_mib,
            cfg.cpus
        ));
        std::fs::create_dir_all(&d).with_context(|| d.display().to_string())?;
        Ok(d)
    };
    let seabios = collect_with(Path::new(SEABIOS), cfg, &kernel, &dir("seabios")?, mode)?;
    let ferrite = collect_with(ferrite_rom, cfg, &kernel, &dir("ferrite")?, mode)?;
    let differences = compare_with(&seabios, &ferrite, mode.accepted());
    let unexplained = differences.iter().map(|d| d.unexplained().count()).sum();
    Ok(Comparison {
        config: cfg,
        mode,
        unexplained,
        report: report(cfg, &seabios, &ferrite, &differences),
        differences,
        seabios,
        ferrite,
    })
}

/// `cargo xtask compare`: every combination, each report printed as it
/// comes, all of them in `json` (rewritten after each) when asked. A boot that
/// fails is reported and counted, and the others still run. Returns how many
/// lines (and failed comparisons) are unexplained.
pub fn run_all(
    ferrite_rom: &Path,
    configs: &[Config],
    mode: Mode,
    work: &Path,
    json: Option<&Path>,
) -> Result<usize> {
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for &cfg in configs {
        eprintln!(
            "comparing {} {} MiB {} CPU(s) ({mode:?})...",
            cfg.machine.name(),
            cfg.memory_mib,
            cfg.cpus
        );
        match run_with(ferrite_rom, cfg, work, mode) {
            Ok(c) => {
                println!("{}", c.report);
                done.push(c);
            }
            Err(e) => {
                println!("== {cfg:?}: FAILED: {e:#}");
                failures.push(serde_json::json!({ "config": cfg, "error": format!("{e:#}") }));
            }
        }
        if let Some(path) = json {
            let all = serde_json::json!({ "comparisons": done, "failures": failures });
            std::fs::write(path, serde_json::to_string_pretty(&all)?)
                .with_context(|| path.display().to_string())?;
        }
    }
    let unexplained: usize = done.iter().map(|c| c.unexplained).sum();
    let lines: usize = done
        .iter()
        .flat_map(|c| &c.differences)
        .map(|d| d.only_seabios.len() + d.only_ferrite.len())
        .sum();
    println!(
        "summary: {} comparison(s), {} failed to boot, {lines} differing line(s), {unexplained} unexplained ({mode:?})",
        done.len(),
        failures.len()
    );
    Ok(unexplained + failures.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEA: &str = "[    0.1] kernel noise\n=== dmi\n[    3.281226] reboot: Power down\nbios_vendor=SeaBIOS\nsys_vendor=QEMU\n=== cpus\n0-3\n=== end\n";
    const FER: &str = "=== dmi\nsys_vendor=QEMU\nbios_vendor=ferrite\n=== cpus\n0-2\n=== end\n";

    #[test]
    fn sections_split_and_compare() {
        let a = parse(SEA);
        let b = parse(FER);
        assert_eq!(a["dmi"], ["bios_vendor=SeaBIOS", "sys_vendor=QEMU"]);
        assert!(a.contains_key("end"));
        let d = compare(&a, &b);
        assert_eq!(d.len(), 2);
        // dmi: the vendor differs, and that is harmless; order does not matter
        assert_eq!(d[1].section, "dmi");
        assert_eq!(d[1].only_seabios, ["bios_vendor=SeaBIOS"]);
        assert_eq!(d[1].unexplained().count(), 0);
        // cpus: a real difference
        assert_eq!(d[0].section, "cpus");
        assert_eq!(d[0].unexplained().count(), 2);
        let r = report(
            Config {
                machine: Machine::Q35,
                memory_mib: 512,
                cpus: 4,
            },
            &a,
            &b,
            &d,
        );
        assert!(r.contains("-0-3\n+0-2\n"), "{r}");
        assert!(r.contains("harmless: \"bios_vendor=ferrite\""), "{r}");
    }

    #[test]
    fn identical_boots_have_no_differences() {
        assert!(compare(&parse(SEA), &parse(SEA)).is_empty());
        // a missing section counts as all lines differing
        let mut b = parse(SEA);
        b.remove("cpus");
        assert_eq!(compare(&parse(SEA), &b)[0].only_seabios, ["0-3"]);
    }

    #[test]
    fn harmless_patterns_compile() {
        for h in HARMLESS.iter().chain(FIRMWARE_IDENTITY) {
            Regex::new(h.pattern).unwrap();
        }
    }

    const SEA_FULL: &str = "=== e820\nBIOS-e820: [mem 0x00000000fffc0000-0x00000000ffffffff] reserved\n\
        === dmi\nbios_vendor=SeaBIOS\n\
        === messages\nDMI: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014\n\
        === pci-dmesg\nPCI: Using E820 reservations for host bridge windows\n=== end\n";
    const FER_FULL: &str = "=== e820\nBIOS-e820: [mem 0x00000000fffe0000-0x00000000ffffffff] reserved\n\
        === dmi\nbios_vendor=ferrite\n\
        === messages\nDMI: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 0.1.0 11/24/2026\n\
        === pci-dmesg\nPCI: Ignoring E820 reservations for host bridge windows\n=== end\n";

    #[test]
    fn strict_accepts_only_the_firmware_identity() {
        let (a, b) = (parse(SEA_FULL), parse(FER_FULL));
        let unexplained = |diffs: &[Difference], section: &str| {
            diffs
                .iter()
                .find(|d| d.section == section)
                .map_or(0, |d| d.unexplained().count())
        };
        let strict = compare_with(&a, &b, Mode::Strict.accepted());
        assert_eq!(strict.len(), 4);
        assert_eq!(unexplained(&strict, "dmi"), 0);
        assert_eq!(unexplained(&strict, "messages"), 0);
        // the CI gate accepts the ROM's reservation, the strict mode does not
        assert_eq!(unexplained(&strict, "e820"), 2);
        assert_eq!(unexplained(&compare(&a, &b), "e820"), 0);
        assert_eq!(unexplained(&strict, "pci-dmesg"), 2);
        let cfg = Config {
            machine: Machine::Q35,
            memory_mib: 512,
            cpus: 1,
        };
        let r = report(cfg, &a, &b, &strict);
        assert!(
            r.starts_with(
                "== q35 512 MiB 1 CPU(s): 4 section(s) differ, 8 line(s), 4 unexplained\n"
            ),
            "{r}"
        );
        assert!(
            r.contains("(HARMLESS would accept it: each firmware reserves"),
            "{r}"
        );
        assert!(
            r.contains("-PCI: Using E820 reservations for host bridge windows\n+PCI: Ignoring"),
            "{r}"
        );
    }

    #[test]
    fn the_strict_mode_boots_the_same_kernel_in_place() {
        assert!(Mode::Strict.append().contains(" nokaslr "));
        assert!(Mode::Strict.append().contains("parity.full=1"));
        // the CI gate's command line is unchanged
        assert_eq!(Mode::Harmless.append(), "console=ttyS0 loglevel=1 panic=-1");
    }

    #[test]
    fn comparisons_serialise() {
        let (a, b) = (parse(SEA_FULL), parse(FER_FULL));
        let c = Comparison {
            config: Config {
                machine: Machine::Pc,
                memory_mib: 5120,
                cpus: 4,
            },
            mode: Mode::Strict,
            unexplained: 4,
            differences: compare_with(&a, &b, FIRMWARE_IDENTITY),
            seabios: a,
            ferrite: b,
            report: String::new(),
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["config"]["machine"], "Pc");
        assert_eq!(v["mode"], "Strict");
        assert_eq!(v["differences"][0]["section"], "dmi");
        assert_eq!(v["differences"][0]["harmless"][0][0], "bios_vendor=SeaBIOS");
        assert_eq!(v["ferrite"]["dmi"][0], "bios_vendor=ferrite");
        assert!(v.get("report").is_none());
    }
}
