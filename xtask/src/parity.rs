//! ferrite against SeaBIOS: boot Debian's stock kernel under each with the same
//! machine, memory, CPUs, devices and command line, let /init
//! (assets/collect.sh) print what the guest sees of its firmware's set-up and
//! what the kernel decided from it, and compare section by section.
//!
//! The few differences a user would call harmless (the firmware's name, where
//! each firmware keeps its own ROM and tables, the text console SeaBIOS's video
//! BIOS sets up) are listed in [`HARMLESS`], each matching one kind of line of
//! one section, with the reason; everything else is reported as unexplained.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use regex::Regex;

use crate::linux_assets;
use crate::qemu::{Machine, Qemu};

/// One comparison: a machine, its memory and CPUs, and whether the machine
/// has ACPI (`-M pc,acpi=off`: Linux then takes the interrupt routing from the
/// MP table, which the MADT otherwise hides).
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Config {
    pub machine: Machine,
    pub memory_mib: u64,
    pub cpus: u32,
    pub acpi: bool,
}

impl Config {
    /// "q35 512 MiB 2 CPU(s)", with ", ACPI off" when it is.
    pub fn name(&self) -> String {
        format!(
            "{} {} MiB {} CPU(s){}",
            self.machine.name(),
            self.memory_mib,
            self.cpus,
            if self.acpi { "" } else { ", ACPI off" }
        )
    }
}

/// What each boot printed, by section.
pub type Sections = BTreeMap<String, Vec<String>>;

/// A difference the comparison accepts, and why.
pub struct Harmless {
    pub section: &'static str,
    /// Matched against a line that only one firmware's guest shows.
    pub pattern: &'static str,
    pub reason: &'static str,
    /// Accepted only when a line of the other firmware's in the same section
    /// ends at the same address (a range's last byte): for a range that
    /// must end where the other firmware's does.
    pub same_end: bool,
}

/// Every accepted difference; README.md lists the same, with these reasons.
pub const HARMLESS: &[Harmless] = &[
    Harmless {
        section: "dmi",
        pattern: r"^(bios_(vendor|version)=|(uevent=MODALIAS=|modalias=)dmi:bvn[^:]*:bvr[^:]*:bd04/01/2014:)",
        reason: "the firmware's own name and version (SMBIOS type 0); the date is the same",
        same_end: false,
    },
    Harmless {
        section: "messages",
        pattern: r"^DMI: .+, BIOS [^ ]+ 04/01/2014$",
        reason: "the kernel's DMI summary names the firmware's version (SMBIOS type 0)",
        same_end: false,
    },
    Harmless {
        section: "e820",
        pattern: r"^BIOS-e820: \[mem 0x00000000fff[ce]0000-0x00000000ffffffff\] reserved$",
        reason: "each firmware reserves its own ROM image below 4 GiB: SeaBIOS 256 KiB, ferrite 128 KiB",
        same_end: false,
    },
    Harmless {
        section: "e820",
        pattern: r"^BIOS-e820: \[mem 0x00000000(?:0[1-9a-f]|[1-9a-f][0-9a-f])[0-9a-f][c-f][0-9a-f]000-0x00000000[0-9a-f]{3}fffff\] reserved$",
        reason: "each firmware reserves its own table area (ACPI, SMBIOS) of its own size at the top of the RAM below 4 GiB",
        same_end: false,
    },
    Harmless {
        section: "e820",
        pattern: r"^BIOS-e820: \[mem 0x0000000000100000-0x00000000(?:0[1-9a-f]|[1-9a-f][0-9a-f])[0-9a-f](?:[c-e][0-9a-f]|f[0-9a-e])fff\] usable$",
        reason: "the RAM from 1 MiB ends where that firmware's table area starts",
        same_end: false,
    },
    Harmless {
        section: "e820",
        pattern: r"^BIOS-e820: \[mem 0x00000000000(?:f0|[c-e][0-9a-f])000-0x00000000000fffff\] reserved$",
        reason: "the reservation that ends at 1 MiB: the BIOS segment alone under SeaBIOS, which keeps its tables at the top of the RAM below 4 GiB; from ferrite's tables up under ferrite, which keeps them below 1 MiB (in the shadow RAM from 0xC0000) when they fit there",
        same_end: false,
    },
    Harmless {
        section: "e820",
        pattern: r"^BIOS-e820: \[mem 0x0000000000100000-0x00000000[0-9a-f]{3}fffff\] usable$",
        reason: "the RAM from 1 MiB to the end of the RAM below 4 GiB, where the other firmware's table area ends: ferrite reserves no table area there when its tables are below 1 MiB",
        same_end: true,
    },
    Harmless {
        section: "iomem",
        pattern: r"^fff[ce]0000-ffffffff : Reserved$",
        reason: "the ROM reservation of e820: SeaBIOS 256 KiB, ferrite 128 KiB",
        same_end: false,
    },
    Harmless {
        section: "iomem",
        pattern: r"^(?:0[1-9a-f]|[1-9a-f][0-9a-f])[0-9a-f][c-f][0-9a-f]000-[0-9a-f]{3}fffff : Reserved$",
        reason: "the table area of e820, each firmware's own size",
        same_end: false,
    },
    Harmless {
        section: "iomem",
        pattern: r"^00100000-(?:0[1-9a-f]|[1-9a-f][0-9a-f])[0-9a-f](?:[c-e][0-9a-f]|f[0-9a-e])fff : System RAM$",
        reason: "the RAM from 1 MiB of e820, which ends where that firmware's table area starts",
        same_end: false,
    },
    Harmless {
        section: "iomem",
        pattern: r"^000(?:f0|[c-e][0-9a-f])000-000fffff : Reserved$",
        reason: "the reservation of e820 that ends at 1 MiB: the BIOS segment alone under SeaBIOS, from ferrite's tables up under ferrite",
        same_end: false,
    },
    Harmless {
        section: "iomem",
        pattern: r"^00100000-[0-9a-f]{3}fffff : System RAM$",
        reason: "the RAM from 1 MiB of e820, to the end of the RAM below 4 GiB (where the other firmware's table area ends) when ferrite's tables are below 1 MiB",
        same_end: true,
    },
    Harmless {
        section: "iomem",
        pattern: r"^000[c-e][0-9a-f]{4}-000[c-e][0-9a-f]{4} : (Video ROM|Adapter ROM)$",
        reason: "SeaBIOS runs QEMU's linuxboot_dma.bin option ROM (at 0xC0000) to boot -kernel, and keeps a 32 KiB block at 0xE8000 that starts with an option ROM signature (55 AA, 64 blocks), which Linux claims now and then: only when its changing contents happen to sum to zero; ferrite runs no option ROM and keeps nothing there",
        same_end: false,
    },
    Harmless {
        section: "ioports",
        pattern: r"^ *03d4-03d5 : cga$",
        reason: "under SeaBIOS the kernel's 16-bit setup asks the BIOS (int 10h) for the video mode, and from its answer Linux assumes a CGA text display the machine does not have (-vga none) and claims its ports; ferrite enters at 64 bits and sets up no display",
        same_end: false,
    },
    Harmless {
        section: "messages",
        pattern: r"^Console: colour (\*CGA|dummy device) 80x25$",
        reason: "as for the CGA ports: Linux's text console on that assumed CGA display under SeaBIOS, its dummy console under ferrite, which sets up no display; the serial console is the same",
        same_end: false,
    },
    Harmless {
        section: "acpi-dmesg",
        pattern: r"^ACPI: RSDP 0x00000000000F[0-9A-F]{4} 000014 \(v00 BOCHS \)$",
        reason: "each firmware puts the RSDP (QEMU's, the same bytes) at its own place in the BIOS segment, where Linux looks for it",
        same_end: false,
    },
    Harmless {
        section: "messages",
        pattern: r"^found SMP MP-table at \[mem (0x000f[0-9a-f]{4}-0x000f[0-9a-f]{4}|0x0009fc10-0x0009fc1f)\]$",
        reason: "each firmware puts the MP table's floating pointer where Linux looks for it: SeaBIOS in the BIOS segment, ferrite in the EBDA's first KiB (the first place the MP specification names; Linux finds it there after 66 of its 16-byte steps, each a mapping made and unmade)",
        same_end: false,
    },
    Harmless {
        section: "messages",
        pattern: r"^RAMDISK: \[mem 0x[0-9a-f]{8}-0x[0-9a-f]{8}\]$",
        reason: "where the initrd lies until Linux unpacks and frees it: under SeaBIOS, QEMU's loader puts it below the room it keeps for the ACPI tables at the top of low RAM; ferrite ends it at the highest 2 MiB boundary below the top of low RAM (or its table area, when that is there) and below the kernel's initrd_addr_max (2 GiB for Debian's kernel), which QEMU's loader does not apply to a kernel that can be loaded above 4 GiB",
        same_end: false,
    },
    Harmless {
        section: "messages",
        pattern: r"^\[mem 0x[0-9a-f]{8}-0xfff[bd]ffff\] available for PCI devices$",
        reason: "the largest gap below 4 GiB in the e820 map, which Linux offers to PCI devices, ends where each firmware's ROM reservation starts",
        same_end: false,
    },
    Harmless {
        section: "messages",
        pattern: r"^MPTABLE: (OEM ID: (BOCHSCPU|FERRITE )|Product ID: (0\.1 {9}|QEMU {8}))$",
        reason: "the MP table's OEM and product IDs name the firmware that built it (SeaBIOS: BOCHSCPU, 0.1; ferrite: FERRITE, QEMU); Linux only prints them",
        same_end: false,
    },
    Harmless {
        section: "pci-dmesg",
        pattern: r"^pci 0000:00:[0-9a-f]{2}\.[0-7]: PIIX/ICH IRQ router \[[0-9a-f]{4}:[0-9a-f]{4}\]$",
        reason: "with ACPI off Linux reads the PCI interrupt routing table ($PIR) SeaBIOS leaves in the BIOS segment for its PCI BIOS services and names the router it lists (on q35, whatever device is at 00:01.0); ferrite offers no BIOS services and leaves no $PIR; under both Linux routes PCI interrupts through the I/O APIC from the MP table, and every function's irq is the same",
        same_end: false,
    },
    Harmless {
        section: "input",
        pattern: r"^S: Sysfs=/devices/platform/i8042/serio0/input/input[01]$",
        reason: "the keyboard's number: Linux numbers input devices as drivers try ports, and now and then under TCG (so far 5 of 84 boots under SeaBIOS, none of 69 under ferrite) the keyboard driver tries the mouse port first, fails there and the keyboard becomes input1; what the firmware left in the i8042 is the same, byte for byte",
        same_end: false,
    },
    Harmless {
        section: "pci-dmesg",
        pattern: r"^pci [0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]: [A-Za-z0-9_.]+\+0x[0-9a-f]+/0x[0-9a-f]+ took [0-9]+ usecs$",
        reason: "Linux reports a PCI quirk that took more than 10 ms (drivers/pci/quirks.c); under TCG that depends on host load",
        same_end: false,
    },
    Harmless {
        section: "warnings",
        pattern: r"(?i)^(tsc: |hrtimer: interrupt took [0-9]+ ns|hpet: Lost [0-9]+ RTC interrupts$|clocksource: |APIC calibration|.*calibrat)",
        reason: "timing warnings under TCG (TSC and APIC timer calibration, a slow timer interrupt, RTC ticks the HPET's RTC emulation missed, the clocksource watchdog) depend on host load, not on the firmware",
        same_end: false,
    },
    Harmless {
        section: "warnings",
        pattern: r#"^(Unstable clock detected, switching default tracing clock to "global"|If you want to keep using the local clock, then add:| *"trace_clock=local"|on the kernel command line|TSC found unstable after boot, most likely due to broken BIOS\. Use 'tsc=unstable'\.)$"#,
        reason: "when host load makes the TSC look unstable, tracing switches to its global clock and says so in four lines, and the scheduler's clock leaves the TSC with a line that blames the BIOS: load, not the firmware (seen under full test runs on a loaded 2-core host; the TSC line under SeaBIOS, and either firmware can print it)",
        same_end: false,
    },
    Harmless {
        section: "messages",
        pattern: r"^TSC found unstable after boot, most likely due to broken BIOS\. Use 'tsc=unstable'\.$",
        reason: "the same load-dependent line as in the warnings, also kept among the messages because it names the BIOS (seen with ACPI off on q35 under SeaBIOS in a full test run)",
        same_end: false,
    },
    Harmless {
        section: "warnings",
        pattern: r"^ *(#[0-9]+ *)+$",
        reason: "pieces of the \"Booting SMP configuration\" line, which timing splits differently",
        same_end: false,
    },
];

/// The kernel's ACPI lines that give a table's address: `ACPI: DSDT
/// 0x000000001FFE0040 0024F3 (v01 BOCHS ...)` and `ACPI: Reserving DSDT table
/// memory at [mem 0x1ffe0040-0x1ffe2532]`. The RSDP's line is left alone
/// ([`HARMLESS`] checks that it is in the BIOS segment).
static TABLE_ADDRESS: std::sync::LazyLock<[Regex; 2]> = std::sync::LazyLock::new(|| {
    [
        Regex::new(r"^(ACPI: [A-Z0-9_$]{4} )0x[0-9A-F]{16}( .*)?$").unwrap(),
        Regex::new(
            r"^(ACPI: Reserving [A-Z0-9_$]{4} table memory at )\[mem 0x[0-9a-f]+-0x[0-9a-f]+\]$",
        )
        .unwrap(),
    ]
});

/// `sections` with each ACPI table's address replaced by `<address>`, so that
/// the rest of its lines (the table, its length, revision, OEM and creator)
/// is compared: QEMU builds the tables, and each firmware puts them at its
/// own place, SeaBIOS at the top of the RAM below 4 GiB, ferrite below 1 MiB
/// when they fit there (the e820 map, compared too, reserves either).
pub fn without_table_addresses(sections: &Sections) -> Sections {
    let mut out = sections.clone();
    if let Some(lines) = out.get_mut("acpi-dmesg") {
        for line in lines.iter_mut().filter(|l| !l.starts_with("ACPI: RSDP ")) {
            for re in TABLE_ADDRESS.iter() {
                if let std::borrow::Cow::Owned(l) = re.replace(line, "${1}<address>${2}") {
                    *line = l;
                }
            }
        }
    }
    out
}

/// The kernel command line, the same under both firmwares. `nokaslr`: with
/// KASLR the kernel lands at a random physical address on every boot, which
/// would hide where each firmware lets it land. `no_timer_check`: Linux then
/// trusts the timer's I/O APIC pin that the MADT or MP table names instead
/// of counting its ticks over a short delay, which on a loaded TCG host fails
/// now and then under either firmware and reroutes the timer; the pin is
/// still compared (the `..TIMER:` line).
pub const APPEND: &str = "console=ttyS0 loglevel=1 panic=-1 nokaslr no_timer_check";

/// The command line of one configuration: [`APPEND`], plus `acpi=off` on q35
/// with the machine's ACPI off. There SeaBIOS builds ACPI tables of its own
/// (QEMU gives none, and SeaBIOS finds the ICH9's PM block) and Linux would
/// take the interrupt routing from them; ferrite builds none. With `acpi=off`
/// the guest reads the MP table under both, which is what the comparison is
/// for. On pc with `acpi=off` QEMU has no PM device, SeaBIOS builds nothing,
/// and the command line stays as it is.
pub fn append(cfg: &Config) -> String {
    if !cfg.acpi && cfg.machine == Machine::Q35 {
        format!("{APPEND} acpi=off")
    } else {
        APPEND.to_string()
    }
}

/// The device set: virtio-blk, virtio-net without an option ROM, ivshmem with a
/// 64-bit BAR of 1 GiB, and a bridge (pc) or PCIe root port (q35) with a
/// device behind it. With 5 GiB of RAM the 32-bit PCI window (from 3 GiB on pc,
/// from the MMCONFIG end on q35, to the I/O APIC) cannot hold the 1 GiB BAR, so
/// the firmware must move the 64-bit BARs above the RAM above 4 GiB, as SeaBIOS
/// does; with 512 MiB they all stay below 4 GiB. The guest never touches the
/// ivshmem memory, so QEMU never allocates it.
/// With ACPI off, pc's bridge has its standard hot-plug controller (SHPC),
/// which does not take a device in slot 0: the device behind it goes to slot 1.
pub fn devices(machine: Machine, acpi: bool, disk: &Path) -> Vec<String> {
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
        "memory-backend-ram,id=shm0,size=1G",
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
        _ if acpi => &[
            "-device",
            "pci-bridge,id=br1,chassis_nr=1",
            "-device",
            "virtio-rng-pci,bus=br1",
        ],
        _ => &[
            "-device",
            "pci-bridge,id=br1,chassis_nr=1",
            "-device",
            "virtio-rng-pci,bus=br1,addr=1",
        ],
    };
    a.extend(bus.iter().map(|s| s.to_string()));
    a
}

/// QEMU's SeaBIOS image for pc and q35.
pub const SEABIOS: &str = "/usr/share/seabios/bios-256k.bin";

/// One boot's sections and QEMU's peak RSS.
#[derive(Debug, serde::Serialize)]
pub struct Boot {
    pub sections: Sections,
    pub qemu_max_rss_kib: u64,
}

/// Boots `kernel` with `bios`: the sections /init printed and QEMU's peak RSS;
/// the serial output is kept as `work/serial.txt`.
fn boot(bios: &Path, cfg: Config, kernel: &Path, work: &Path) -> Result<Boot> {
    let initrd = linux_assets::build_collect_initramfs(&work.join("collect.cpio"))?;
    let disk = work.join("disk.img");
    if !disk.exists() {
        std::fs::write(&disk, vec![0u8; 1 << 20])?;
    }
    let mut q = Qemu::new(cfg.machine, bios.to_path_buf());
    q.memory_mib = cfg.memory_mib;
    q.cpus = cfg.cpus;
    q.acpi = cfg.acpi;
    q.kernel = Some(kernel.to_path_buf());
    q.initrd = Some(initrd);
    q.append = Some(append(&cfg));
    q.extra = devices(cfg.machine, cfg.acpi, &disk);
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
    Ok(Boot {
        sections,
        qemu_max_rss_kib: out.max_rss_kib,
    })
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

static HARMLESS_RE: std::sync::LazyLock<Vec<Regex>> = std::sync::LazyLock::new(|| {
    HARMLESS
        .iter()
        .map(|h| Regex::new(h.pattern).expect("HARMLESS pattern"))
        .collect()
});

/// The [`HARMLESS`] entries whose pattern matches `line` of `section`.
fn matching<'a>(section: &'a str, line: &'a str) -> impl Iterator<Item = &'static Harmless> + 'a {
    HARMLESS
        .iter()
        .zip(HARMLESS_RE.iter())
        .filter(move |(h, re)| h.section == section && re.is_match(line))
        .map(|(h, _)| h)
}

/// The [`HARMLESS`] entry whose pattern accepts `line` of `section`, if any,
/// whatever the other firmware's lines ([`harmless_against`] checks those).
pub fn harmless(section: &str, line: &str) -> Option<&'static Harmless> {
    matching(section, line).next()
}

/// The last address of the range a line of e820 or iomem gives
/// (`[mem 0x...-0x000000001fffffff] usable`, `00100000-1fffffff : System RAM`).
fn range_end(line: &str) -> Option<u64> {
    static END: std::sync::LazyLock<Regex> =
        std::sync::LazyLock::new(|| Regex::new(r"-(?:0x)?([0-9a-f]+)(?:\] | :)").unwrap());
    u64::from_str_radix(END.captures(line)?.get(1)?.as_str(), 16).ok()
}

/// [`harmless`], for a line that `other`, the other firmware's lines of the
/// same section, does not show: an entry with [`Harmless::same_end`] accepts
/// it only when one of those ends where it does.
pub fn harmless_against(section: &str, line: &str, other: &[String]) -> Option<&'static Harmless> {
    matching(section, line).find(|h| {
        !h.same_end
            || range_end(line).is_some_and(|end| other.iter().any(|o| range_end(o) == Some(end)))
    })
}

/// Lines that are not harmless but that host load alone can cause under
/// TCG: every kernel warning, and the timer check. Linux checks that the
/// timer ticks through the I/O APIC pin the MADT or the MP table names by
/// counting ticks over a short delay, and on a loaded host now and then too
/// few come (seen under both firmwares, with ACPI on and off); it then reports
/// an "MP-BIOS bug" and routes the timer through the 8259 or the local APIC's
/// virtual wire. Which pin it tried is in the `..TIMER:` line, compared as
/// always. The local APIC timer's own check (against the PM timer or jiffies)
/// fails the same way now and then, under SeaBIOS too: "APIC timer disabled
/// due to verification failure". And when host load makes the TSC look
/// unstable, tracing says it switches clocks. A comparison whose unexplained lines are all of this kind is worth
/// a second boot: a difference the firmware causes comes back.
pub fn load_dependent(section: &str, line: &str) -> bool {
    static TIMER: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(
            r#"^(\.\.MP-BIOS bug: 8254 timer not connected to IO-APIC|\.\.\.trying to set up timer \(IRQ0\) through the 8259A \.\.\.|APIC timer disabled due to verification failure|Unstable clock detected, switching default tracing clock to "global")$"#,
        )
        .unwrap()
    });
    static ROUTE: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(r"^0: (IO-APIC|local-APIC|XT-PIC) 2-edge timer$").unwrap()
    });
    match section {
        "warnings" => true,
        "messages" => TIMER.is_match(line),
        "interrupts" => ROUTE.is_match(line),
        _ => false,
    }
}

/// Compares every section; returns those that differ, with the lines
/// [`HARMLESS`] accepts.
pub fn compare(seabios: &Sections, ferrite: &Sections) -> Vec<Difference> {
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
        let mut d = Difference {
            section: name.clone(),
            only_seabios: only(a, b),
            only_ferrite: only(b, a),
            harmless: Vec::new(),
        };
        if d.only_seabios.is_empty() && d.only_ferrite.is_empty() {
            continue;
        }
        for (line, other) in d
            .only_seabios
            .iter()
            .map(|l| (l, b))
            .chain(d.only_ferrite.iter().map(|l| (l, a)))
        {
            if let Some(h) = harmless_against(name, line, other) {
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
        "== {}: {} section(s) differ, {lines} line(s), {unexplained} unexplained\n",
        cfg.name(),
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

/// One comparison's outcome, as `--json` writes it.
#[derive(Debug, serde::Serialize)]
pub struct Comparison {
    pub config: Config,
    pub append: String,
    /// Lines that differ and are not accepted, both sides.
    pub unexplained: usize,
    pub differences: Vec<Difference>,
    pub seabios: Boot,
    pub ferrite: Boot,
    #[serde(skip)]
    pub report: String,
}

impl Comparison {
    /// Whether every unexplained line is [`load_dependent`], or tells of an
    /// i8042 device one side's kernel did not find ([`i8042_lost`]).
    pub fn only_load_dependent(&self) -> bool {
        let lost = i8042_lost(&self.seabios.sections, &self.ferrite.sections);
        self.differences.iter().all(|d| {
            d.unexplained()
                .all(|l| load_dependent(&d.section, l) || lost.contains(&(d.section.as_str(), l)))
        })
    }
}

/// The lines that tell of an i8042 device (the keyboard, the mouse) that
/// Linux found under one firmware and not under the other, as (section,
/// line): the device's block of `/proc/bus/input/devices`, and its
/// interrupt's line where the other side has none for that IRQ. Linux probes
/// the i8042's ports with timeouts, and on a loaded host under TCG a probe now
/// and then gives up (seen under SeaBIOS in a CI run: neither the keyboard nor
/// IRQ 12). Worth a second boot like [`load_dependent`] lines: what the
/// firmware left in the controller would fail the probe again.
pub fn i8042_lost<'a>(
    seabios: &'a Sections,
    ferrite: &'a Sections,
) -> Vec<(&'static str, &'a str)> {
    let section =
        |s: &'a Sections, name: &str| -> &'a [String] { s.get(name).map_or(&[], |v| v.as_slice()) };
    // The input devices' blocks (separated by blank lines) on an i8042 port.
    let blocks = |s: &'a Sections| -> Vec<&'a [String]> {
        section(s, "input")
            .split(|l| l.is_empty())
            .filter(|b| b.iter().any(|l| l.starts_with("P: Phys=isa0060/serio")))
            .collect()
    };
    let port = |b: &[String]| b.iter().find(|l| l.starts_with("P: Phys=")).cloned();
    // An interrupt line of the i8042's and its IRQ ("12: IO-APIC 12-edge i8042").
    let irqs = |s: &'a Sections| -> Vec<(&'a str, &'a str)> {
        section(s, "interrupts")
            .iter()
            .filter(|l| l.ends_with(" i8042"))
            .filter_map(|l| Some((l.split_once(':')?.0, l.as_str())))
            .collect()
    };
    let mut lost = Vec::new();
    for (one, other) in [(seabios, ferrite), (ferrite, seabios)] {
        let theirs: Vec<_> = blocks(other).into_iter().map(port).collect();
        for b in blocks(one) {
            if !theirs.contains(&port(b)) {
                // and the blank line that ends it
                lost.extend(b.iter().map(|l| ("input", l.as_str())));
                lost.push(("input", ""));
            }
        }
        let their_irqs: Vec<_> = section(other, "interrupts")
            .iter()
            .filter_map(|l| l.split_once(':').map(|(irq, _)| irq))
            .collect();
        for (irq, line) in irqs(one) {
            if !their_irqs.contains(&irq) {
                lost.push(("interrupts", line));
            }
        }
    }
    lost
}

/// Runs one comparison end to end: both boots, their differences, how many
/// lines no [`HARMLESS`] entry explains, and the report.
pub fn comparison(ferrite_rom: &Path, cfg: Config, work: &Path) -> Result<Comparison> {
    let kernel = linux_assets::stock_kernel()?;
    let dir = |name: &str| -> Result<PathBuf> {
        let d = work.join(format!(
            "{}-{}-{}{}-{name}",
            cfg.machine.name(),
            cfg.memory_mib,
            cfg.cpus,
            if cfg.acpi { "" } else { "-noacpi" }
        ));
        std::fs::create_dir_all(&d).with_context(|| d.display().to_string())?;
        Ok(d)
    };
    let seabios = boot(Path::new(SEABIOS), cfg, &kernel, &dir("seabios")?)?;
    let ferrite = boot(ferrite_rom, cfg, &kernel, &dir("ferrite")?)?;
    let (s, f) = (
        without_table_addresses(&seabios.sections),
        without_table_addresses(&ferrite.sections),
    );
    let differences = compare(&s, &f);
    let unexplained = differences.iter().map(|d| d.unexplained().count()).sum();
    Ok(Comparison {
        config: cfg,
        append: append(&cfg),
        unexplained,
        report: report(cfg, &s, &f, &differences),
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
    work: &Path,
    json: Option<&Path>,
) -> Result<usize> {
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for &cfg in configs {
        eprintln!("comparing {}...", cfg.name());
        match comparison(ferrite_rom, cfg, work) {
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
        "summary: {} comparison(s), {} failed to boot, {lines} differing line(s), {unexplained} unexplained",
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
                acpi: true,
            },
            &a,
            &b,
            &d,
        );
        assert!(
            r.starts_with(
                "== q35 512 MiB 4 CPU(s): 2 section(s) differ, 4 line(s), 2 unexplained\n"
            ),
            "{r}"
        );
        assert!(r.contains("-0-3\n+0-2\n"), "{r}");
        assert!(
            r.contains("harmless: \"bios_vendor=ferrite\": the firmware's own name"),
            "{r}"
        );
        assert!(r.contains("UNEXPLAINED: \"0-2\""), "{r}");
    }

    #[test]
    fn identical_boots_have_no_differences() {
        assert!(compare(&parse(SEA), &parse(SEA)).is_empty());
        // a missing section counts as all lines differing
        let mut b = parse(SEA);
        b.remove("cpus");
        assert_eq!(compare(&parse(SEA), &b)[0].only_seabios, ["0-3"]);
    }

    /// Lines the guests printed (pc and q35, 512 MiB and 5 GiB), each with
    /// whether it may differ: every entry accepts its kind of line and nothing
    /// next to it.
    const LINES: &[(&str, &str, bool)] = &[
        ("dmi", "bios_vendor=SeaBIOS", true),
        ("dmi", "bios_version=0.1.0", true),
        (
            "dmi",
            "modalias=dmi:bvnferrite:bvr0.1.0:bd04/01/2014:br0.0:svnQEMU:pnStandardPC(Q35+ICH9,2009):pvrpc-q35-7.2:cvnQEMU:ct1:cvrpc-q35-7.2:sku:",
            true,
        ),
        (
            "dmi",
            "uevent=MODALIAS=dmi:bvnSeaBIOS:bvr1.16.2-debian-1.16.2-1:bd04/01/2014:br0.0:svnQEMU:pnStandardPC(i440FX+PIIX,1996):pvrpc-i440fx-7.2:cvnQEMU:ct1:cvrpc-i440fx-7.2:sku:",
            true,
        ),
        // the date is the same under both: Linux decides things from its year
        ("dmi", "bios_date=11/24/2026", false),
        (
            "dmi",
            "modalias=dmi:bvnferrite:bvr0.1.0:bd11/24/2026:br0.0:svnQEMU:pnStandardPC(Q35+ICH9,2009):pvrpc-q35-7.2:cvnQEMU:ct1:cvrpc-q35-7.2:sku:",
            false,
        ),
        ("dmi", "sys_vendor=QEMU", false),
        (
            "messages",
            "DMI: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 0.1.0 04/01/2014",
            true,
        ),
        (
            "messages",
            "DMI: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 0.1.0 11/24/2026",
            false,
        ),
        (
            "e820",
            "BIOS-e820: [mem 0x00000000fffc0000-0x00000000ffffffff] reserved",
            true,
        ),
        (
            "e820",
            "BIOS-e820: [mem 0x00000000fffe0000-0x00000000ffffffff] reserved",
            true,
        ),
        (
            "e820",
            "BIOS-e820: [mem 0x00000000bffdd000-0x00000000bfffffff] reserved",
            true,
        ),
        (
            "e820",
            "BIOS-e820: [mem 0x000000001ffdf000-0x000000001fffffff] reserved",
            true,
        ),
        (
            "e820",
            "BIOS-e820: [mem 0x0000000000100000-0x000000007ffdefff] usable",
            true,
        ),
        (
            "e820",
            "BIOS-e820: [mem 0x0000000100000000-0x000000017fffffff] usable",
            false,
        ),
        (
            "e820",
            "BIOS-e820: [mem 0x000000000009fc00-0x000000000009ffff] reserved",
            false,
        ),
        (
            "e820",
            "BIOS-e820: [mem 0x00000000000f0000-0x00000000000fffff] reserved",
            true,
        ),
        (
            "e820",
            "BIOS-e820: [mem 0x00000000000cf000-0x00000000000fffff] reserved",
            true,
        ),
        (
            "e820",
            "BIOS-e820: [mem 0x000000000009f000-0x00000000000fffff] reserved",
            false,
        ),
        (
            "e820",
            "BIOS-e820: [mem 0x00000000000cf000-0x00000000000effff] reserved",
            false,
        ),
        (
            "e820",
            "BIOS-e820: [mem 0x0000000000100000-0x000000001fffffff] usable",
            true,
        ),
        (
            "e820",
            "BIOS-e820: [mem 0x000000fd00000000-0x000000ffffffffff] reserved",
            false,
        ),
        ("iomem", "fffc0000-ffffffff : Reserved", true),
        ("iomem", "7ffdf000-7fffffff : Reserved", true),
        ("iomem", "00100000-bffdcfff : System RAM", true),
        ("iomem", "000c0000-000c05ff : Video ROM", true),
        ("iomem", "000e8000-000effff : Adapter ROM", true),
        ("iomem", "000f0000-000fffff : System ROM", false),
        // with nokaslr the kernel lands at the same place under both
        ("iomem", "  01000000-01e01d31 : Kernel code", false),
        ("iomem", "  03310000-043fffff : Kernel bss", false),
        ("iomem", "100000000-17fffffff : System RAM", false),
        ("iomem", "  1c0000000-1ffffffff : 0000:00:04.0", false),
        ("iomem", "  b0000000-bfffffff : Reserved", false),
        ("iomem", "b0000000-bfffffff : Reserved", false),
        ("iomem", "000f0000-000fffff : Reserved", true),
        ("iomem", "000cf000-000fffff : Reserved", true),
        ("iomem", "0009f000-000fffff : Reserved", false),
        ("iomem", "00100000-1fffffff : System RAM", true),
        (
            "e820",
            "BIOS-e820: [mem 0x00000000b0000000-0x00000000bfffffff] reserved",
            false,
        ),
        // a range to the end of a MiB: accepted only beside the other
        // firmware's range with the same end (below)
        (
            "e820",
            "BIOS-e820: [mem 0x0000000000100000-0x00000000afffffff] usable",
            true,
        ),
        ("ioports", "  03d4-03d5 : cga", true),
        ("ioports", "03d4-03d5 : cga", true),
        ("ioports", "0600-067f : 0000:00:1f.0", false),
        ("messages", "MPTABLE: OEM ID: BOCHSCPU", true),
        (
            "messages",
            "TSC found unstable after boot, most likely due to broken BIOS. Use 'tsc=unstable'.",
            true,
        ),
        (
            "messages",
            "TSC found unstable after boot, most likely due to broken BIOS.",
            false,
        ),
        ("messages", "MPTABLE: OEM ID: FERRITE ", true),
        ("messages", "MPTABLE: Product ID: 0.1         ", true),
        ("messages", "MPTABLE: Product ID: QEMU        ", true),
        ("messages", "MPTABLE: OEM ID: OTHER   ", false),
        ("messages", "MPTABLE: APIC at: 0xFEE00000", false),
        ("messages", "Processors: 1", false),
        (
            "messages",
            "..TIMER: vector=0x30 apic1=0 pin1=0 apic2=-1 pin2=-1",
            false,
        ),
        (
            "messages",
            "APIC timer disabled due to verification failure",
            false,
        ),
        (
            "warnings",
            "APIC timer disabled due to verification failure",
            false,
        ),
        (
            "pci-dmesg",
            "pci 0000:00:01.0: PIIX/ICH IRQ router [8086:7000]",
            true,
        ),
        (
            "pci-dmesg",
            "pci 0000:00:01.0: PIIX/ICH IRQ router [1af4:1001]",
            true,
        ),
        (
            "pci-dmesg",
            "pci 0000:00:1f.0: quirk: [io  0xb000-0xb07f] claimed by ICH6 ACPI/GPIO/TCO",
            false,
        ),
        ("ioports", "  03c0-03df : vga+", false),
        ("messages", "Console: colour *CGA 80x25", true),
        ("messages", "Console: colour dummy device 80x25", true),
        ("messages", "Console: colour VGA+ 80x25", false),
        (
            "acpi-dmesg",
            "ACPI: RSDP 0x00000000000F59B0 000014 (v00 BOCHS )",
            true,
        ),
        (
            "acpi-dmesg",
            "ACPI: RSDP 0x00000000000F1000 000014 (v00 BOCHS )",
            true,
        ),
        (
            "acpi-dmesg",
            "ACPI: RSDP 0x000000007FFE0000 000014 (v00 BOCHS )",
            false,
        ),
        (
            "acpi-dmesg",
            "ACPI: FACP 0x000000007FFE1A3C 0000F4 (v03 BOCHS  BXPC     00000001 BXPC 00000001)",
            false,
        ),
        (
            "messages",
            "found SMP MP-table at [mem 0x000f5b90-0x000f5b9f]",
            true,
        ),
        (
            "messages",
            "found SMP MP-table at [mem 0x7ffe0000-0x7ffe000f]",
            false,
        ),
        (
            "messages",
            "found SMP MP-table at [mem 0x0009fc10-0x0009fc1f]",
            true,
        ),
        (
            "messages",
            "found SMP MP-table at [mem 0x0009fc00-0x0009fc0f]",
            false,
        ),
        ("messages", "RAMDISK: [mem 0x7fe1b000-0x7fffffff]", true),
        (
            "messages",
            "[mem 0xc0000000-0xfffbffff] available for PCI devices",
            true,
        ),
        (
            "messages",
            "[mem 0xc0000000-0xfebfffff] available for PCI devices",
            false,
        ),
        (
            "messages",
            "rtc_cmos 00:04: alarms up to one day, y3k, 242 bytes nvram",
            false,
        ),
        (
            "pci-dmesg",
            "PCI: Ignoring E820 reservations for host bridge windows",
            false,
        ),
        (
            "input",
            "S: Sysfs=/devices/platform/i8042/serio0/input/input1",
            true,
        ),
        ("input", "N: Name=\"AT Translated Set 2 keyboard\"", false),
        (
            "input",
            "S: Sysfs=/devices/platform/i8042/serio1/input/input2",
            false,
        ),
        (
            "pci-dmesg",
            "pci 0000:00:01.3: acpi_pm_check_blacklist+0x0/0x30 took 11718 usecs",
            true,
        ),
        (
            "pci-dmesg",
            "pci 0000:00:01.3: quirk: [io  0x0600-0x063f] claimed by PIIX4 ACPI",
            false,
        ),
        (
            "messages",
            "Calibrating delay loop (skipped), value calculated using timer frequency.. 5199.99 BogoMIPS (lpj=10399996)",
            false,
        ),
        ("warnings", "tsc: Unable to calibrate against PIT", true),
        (
            "warnings",
            "Unstable clock detected, switching default tracing clock to \"global\"",
            true,
        ),
        (
            "warnings",
            "If you want to keep using the local clock, then add:",
            true,
        ),
        ("warnings", "  \"trace_clock=local\"", true),
        ("warnings", "on the kernel command line", true),
        (
            "warnings",
            "TSC found unstable after boot, most likely due to broken BIOS. Use 'tsc=unstable'.",
            true,
        ),
        (
            "warnings",
            "TSC found unstable after boot, most likely due to broken BIOS.",
            false,
        ),
        ("warnings", "trace_clock=local is wrong", false),
        (
            "warnings",
            "APIC calibration not consistent with PM-Timer: 101ms instead of 100ms",
            true,
        ),
        ("warnings", "hrtimer: interrupt took 3519072 ns", true),
        ("warnings", "hpet: Lost 1 RTC interrupts", true),
        ("warnings", "hpet: Lost interrupts everywhere", false),
        ("warnings", " #2 #3", true),
        (
            "warnings",
            "pci 0000:00:04.0: BAR 2: failed to assign [mem size 0x40000000 64bit pref]",
            false,
        ),
        (
            "pci",
            "  res 0x00000001c0000000 0x00000001ffffffff 0x000000000014220c",
            false,
        ),
        (
            "mtrr",
            "reg02: base=0x0c0000000 ( 3072MB), size= 1024MB, count=1: uncachable",
            false,
        ),
    ];

    #[test]
    fn each_harmless_entry_accepts_only_its_kind_of_line() {
        for &(section, line, ok) in LINES {
            assert_eq!(
                harmless(section, line).is_some(),
                ok,
                "[{section}] {line:?}"
            );
        }
        // and every entry is needed by one of them
        for h in HARMLESS {
            assert!(
                LINES
                    .iter()
                    .any(|&(s, l, ok)| ok && harmless(s, l).is_some_and(|m| m.pattern == h.pattern)),
                "no example for {:?}",
                h.pattern
            );
        }
    }

    #[test]
    fn ram_to_the_end_of_low_ram_is_harmless_only_where_the_other_table_area_ends() {
        let seabios: Vec<String> = [
            "BIOS-e820: [mem 0x00000000000f0000-0x00000000000fffff] reserved",
            "BIOS-e820: [mem 0x0000000000100000-0x000000007ffdcfff] usable",
            "BIOS-e820: [mem 0x000000007ffdd000-0x000000007fffffff] reserved",
        ]
        .map(String::from)
        .to_vec();
        let ram =
            |end: &str| std::format!("BIOS-e820: [mem 0x0000000000100000-0x00000000{end}] usable");
        assert!(harmless_against("e820", &ram("7fffffff"), &seabios).is_some());
        // RAM beyond the end of low RAM, into MMCONFIG
        assert!(harmless_against("e820", &ram("afffffff"), &seabios).is_none());
        let iomem: Vec<String> = ["7ffdd000-7fffffff : Reserved".to_string()].to_vec();
        assert!(harmless_against("iomem", "00100000-7fffffff : System RAM", &iomem).is_some());
        assert!(harmless_against("iomem", "00100000-bfffffff : System RAM", &iomem).is_none());
        // entries without the condition do not look at the other side
        assert!(harmless_against("dmi", "bios_vendor=ferrite", &[]).is_some());
        // and compare() applies it
        let sections = |lines: &[String]| Sections::from([("e820".to_string(), lines.to_vec())]);
        let mut ferrite = seabios.clone();
        ferrite[1] = ram("7fffffff");
        ferrite.remove(2);
        let d = compare(&sections(&seabios), &sections(&ferrite));
        assert_eq!(d[0].unexplained().count(), 0, "{d:?}");
        ferrite[1] = ram("afffffff");
        let d = compare(&sections(&seabios), &sections(&ferrite));
        assert_eq!(d[0].unexplained().collect::<Vec<_>>(), [&ram("afffffff")]);
    }

    #[test]
    fn acpi_table_addresses_are_not_compared_but_the_rest_of_their_lines_is() {
        let acpi = |lines: &[&str]| {
            Sections::from([(
                "acpi-dmesg".to_string(),
                lines.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
            )])
        };
        let seabios = acpi(&[
            "ACPI: RSDP 0x00000000000F59C0 000014 (v00 BOCHS )",
            "ACPI: DSDT 0x000000001FFE0040 0024F3 (v01 BOCHS  BXPC     00000001 BXPC 00000001)",
            "ACPI: FACS 0x000000001FFE0000 000040",
            "ACPI: Reserving DSDT table memory at [mem 0x1ffe0040-0x1ffe2532]",
        ]);
        let ferrite = acpi(&[
            "ACPI: RSDP 0x00000000000F1000 000014 (v00 BOCHS )",
            "ACPI: DSDT 0x00000000000D0040 0024F3 (v01 BOCHS  BXPC     00000001 BXPC 00000001)",
            "ACPI: FACS 0x00000000000D0000 000040",
            "ACPI: Reserving DSDT table memory at [mem 0xd0040-0xd2532]",
        ]);
        let (s, f) = (
            without_table_addresses(&seabios),
            without_table_addresses(&ferrite),
        );
        assert_eq!(
            f["acpi-dmesg"][1],
            "ACPI: DSDT <address> 0024F3 (v01 BOCHS  BXPC     00000001 BXPC 00000001)"
        );
        assert_eq!(f["acpi-dmesg"][2], "ACPI: FACS <address> 000040");
        let d = compare(&s, &f);
        // only the RSDP's lines differ, and they are harmless
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].only_seabios.len() + d[0].only_ferrite.len(), 2);
        assert_eq!(d[0].unexplained().count(), 0);
        // a table of another length, or another OEM, still differs
        let longer = acpi(&[
            "ACPI: DSDT 0x00000000000D0040 0024F4 (v01 BOCHS  BXPC     00000001 BXPC 00000001)",
        ]);
        let d = compare(&s, &without_table_addresses(&longer));
        assert!(d[0].unexplained().any(|l| l.contains("0024F4")), "{d:?}");
    }

    #[test]
    fn an_i8042_device_found_under_one_firmware_only_is_worth_a_second_boot() {
        let keyboard = [
            "I: Bus=0011 Vendor=0001 Product=0001 Version=ab41",
            "N: Name=\"AT Translated Set 2 keyboard\"",
            "P: Phys=isa0060/serio0/input0",
            "S: Sysfs=/devices/platform/i8042/serio0/input/input0",
            "U: Uniq=",
            "H: Handlers=sysrq kbd event0",
            "",
        ];
        let speaker = [
            "I: Bus=0010 Vendor=001f Product=0001 Version=0100",
            "N: Name=\"PC Speaker\"",
            "P: Phys=isa0061/input0",
            "U: Uniq=",
            "H: Handlers=kbd event1",
            "",
        ];
        let sections = |input: Vec<&str>, interrupts: &[&str]| -> Sections {
            let mut s = Sections::new();
            s.insert(
                "input".into(),
                input.into_iter().map(String::from).collect(),
            );
            s.insert(
                "interrupts".into(),
                interrupts.iter().map(|l| l.to_string()).collect(),
            );
            s
        };
        let both: Vec<&str> = keyboard.iter().chain(&speaker).copied().collect();
        let irqs = [
            "0: IO-APIC 2-edge timer",
            "1: IO-APIC 1-edge i8042",
            "12: IO-APIC 12-edge i8042",
        ];
        // The same devices: nothing lost.
        let full = sections(both.clone(), &irqs);
        assert!(i8042_lost(&full, &full).is_empty());
        // SeaBIOS's kernel found no keyboard and no IRQ 12: the keyboard's
        // block and ferrite's IRQ 12 are what one probe lost.
        let seabios = sections(speaker.to_vec(), &irqs[..2]);
        let lost = i8042_lost(&seabios, &full);
        for l in keyboard {
            assert!(lost.contains(&("input", l)), "{l:?}");
        }
        assert!(lost.contains(&("interrupts", "12: IO-APIC 12-edge i8042")));
        assert!(!lost.iter().any(|(_, l)| l.contains("Speaker")));
        // The same IRQ routed otherwise is the firmware's, not the probe's.
        let xt = sections(
            both,
            &["0: IO-APIC 2-edge timer", "1: XT-PIC 1-edge i8042", irqs[2]],
        );
        assert!(i8042_lost(&xt, &full).is_empty());
    }

    #[test]
    fn only_warnings_and_the_timer_check_are_worth_a_second_boot() {
        for (section, line, ok) in [
            ("warnings", "hpet: Lost 3 RTC interrupts", true),
            (
                "warnings",
                "..MP-BIOS bug: 8254 timer not connected to IO-APIC",
                true,
            ),
            (
                "messages",
                "..MP-BIOS bug: 8254 timer not connected to IO-APIC",
                true,
            ),
            (
                "messages",
                "...trying to set up timer (IRQ0) through the 8259A ...",
                true,
            ),
            ("interrupts", "0: IO-APIC 2-edge timer", true),
            ("interrupts", "0: local-APIC 2-edge timer", true),
            (
                "messages",
                "APIC timer disabled due to verification failure",
                true,
            ),
            (
                "messages",
                "Unstable clock detected, switching default tracing clock to \"global\"",
                true,
            ),
            // the pin Linux tried comes from the firmware's table
            (
                "messages",
                "..TIMER: vector=0x30 apic1=0 pin1=0 apic2=-1 pin2=-1",
                false,
            ),
            ("interrupts", "0: IO-APIC 0-edge timer", false),
            ("interrupts", "1: IO-APIC 1-edge i8042", false),
            ("messages", "Processors: 1", false),
            ("cpus", "nproc=1", false),
        ] {
            assert_eq!(load_dependent(section, line), ok, "[{section}] {line:?}");
        }
    }

    #[test]
    fn the_readme_lists_every_harmless_difference() {
        let readme = std::fs::read_to_string(crate::root().join("README.md")).unwrap();
        let start = readme
            .find("| section | what differs | why it is harmless |")
            .expect("the README's table of harmless differences");
        let rows = readme[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect::<Vec<_>>();
        assert_eq!(rows.len(), HARMLESS.len(), "{rows:#?}");
        for (h, row) in HARMLESS.iter().zip(&rows) {
            assert!(
                row.starts_with(&format!("| `{}` |", h.section))
                    && row.ends_with(&format!("| {} |", h.reason)),
                "README row {row:?} should be section {:?}, reason {:?}",
                h.section,
                h.reason
            );
        }
    }

    #[test]
    fn both_firmwares_boot_the_kernel_in_place() {
        assert!(APPEND.split(' ').any(|a| a == "nokaslr"));
        assert!(APPEND.split(' ').any(|a| a == "no_timer_check"));
        assert!(!APPEND.contains("parity.full"));
        let cfg = |machine, acpi| Config {
            machine,
            memory_mib: 512,
            cpus: 2,
            acpi,
        };
        assert_eq!(append(&cfg(Machine::Q35, true)), APPEND);
        assert_eq!(append(&cfg(Machine::Pc, false)), APPEND);
        assert_eq!(
            append(&cfg(Machine::Q35, false)),
            format!("{APPEND} acpi=off")
        );
    }

    #[test]
    fn comparisons_serialise() {
        let (a, b) = (parse(SEA), parse(FER));
        let c = Comparison {
            config: Config {
                machine: Machine::Pc,
                memory_mib: 5120,
                cpus: 4,
                acpi: false,
            },
            append: APPEND.to_string(),
            unexplained: 2,
            differences: compare(&a, &b),
            seabios: Boot {
                sections: a,
                qemu_max_rss_kib: 1,
            },
            ferrite: Boot {
                sections: b,
                qemu_max_rss_kib: 2,
            },
            report: String::new(),
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["config"]["machine"], "Pc");
        assert_eq!(v["config"]["acpi"], false);
        assert_eq!(v["differences"][1]["section"], "dmi");
        assert_eq!(v["differences"][1]["harmless"][0][0], "bios_vendor=SeaBIOS");
        assert_eq!(v["ferrite"]["sections"]["dmi"][1], "bios_vendor=ferrite");
        assert_eq!(v["ferrite"]["qemu_max_rss_kib"], 2);
        assert!(v.get("report").is_none());
    }
}
