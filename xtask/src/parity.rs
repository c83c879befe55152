//! ferrite against SeaBIOS: boot Debian's stock kernel under each with the same
//! machine, memory, CPUs and devices, let /init (assets/collect.sh) print what
//! the guest sees of its firmware's set-up, and compare section by section.
//!
//! Differences a user would call harmless (firmware identity, where each
//! firmware keeps its own ROM and tables) are listed in [`HARMLESS`] with the
//! reason; everything else is reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use regex::Regex;

use crate::linux_assets;
use crate::qemu::{Machine, Qemu};

/// One comparison: a machine, its memory and CPUs.
#[derive(Clone, Copy, Debug)]
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

/// Every accepted difference; README.md lists the same, with these reasons.
pub const HARMLESS: &[Harmless] = &[
    Harmless {
        section: "dmi",
        pattern: r"^(bios_(vendor|version|date|release)=|modalias=dmi:bvn|uevent=MODALIAS=dmi:bvn)",
        reason: "the firmware's own name, version and date (SMBIOS type 0)",
    },
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

/// Boots `kernel` with `bios` and returns the sections /init printed.
pub fn collect(bios: &Path, cfg: Config, kernel: &Path, work: &Path) -> Result<Sections> {
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
    q.append = Some("console=ttyS0 loglevel=1 panic=-1".into());
    q.extra = devices(cfg.machine, &disk);
    q.timeout = Duration::from_secs(240);
    let out = q.run()?;
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
#[derive(Debug, Default, PartialEq, Eq)]
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
    let harmless: Vec<(&Harmless, Regex)> = HARMLESS
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
    let mut s = format!(
        "== {} {} MiB {} CPU(s): {} section(s) differ\n",
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
        }
    }
    s
}

/// Runs one comparison end to end; returns the report and how many lines no
/// [`HARMLESS`] entry explains.
pub fn run(ferrite_rom: &Path, cfg: Config, work: &Path) -> Result<(String, usize)> {
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
    let seabios = collect(Path::new(SEABIOS), cfg, &kernel, &dir("seabios")?)?;
    let ferrite = collect(ferrite_rom, cfg, &kernel, &dir("ferrite")?)?;
    let diffs = compare(&seabios, &ferrite);
    let unexplained = diffs.iter().map(|d| d.unexplained().count()).sum();
    Ok((report(cfg, &seabios, &ferrite, &diffs), unexplained))
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
        for h in HARMLESS {
            Regex::new(h.pattern).unwrap();
        }
    }
}
