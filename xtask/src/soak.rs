//! `cargo xtask soak`: ferrite at the edges of what QEMU hands it, booted.
//!
//! * the size matrix: memory from 64 MiB to 16 GiB, 1 to 255 CPUs (TCG's
//!   maximum on every machine type), CPU models, ACPI and the HPET off, NUMA
//!   nodes, hot-pluggable memory, fw_cfg without DMA; the test kernel everywhere
//!   and Debian's stock kernel on a cut of it;
//! * a mixed soak of N boots drawn from the same dimensions;
//! * guest reboots in a row, each back through ferrite.
//!
//! Every boot must pass (the test kernel's or /init's checks) or fail the way a
//! case documents; a hang, a triple fault or any other status is a failure and
//! is reported with its command line and serial log.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use ferrite_contract::{marker, qemu_exit};

use crate::linux_assets::{self, InitramfsSpec};
use crate::qemu::{Machine, Outcome, Qemu};
use crate::testkernel::{self, BzImageSpec, PASS_64, with_check};

/// Which kernel a case boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// The fake bzImage that checks what it was handed (tests/testkernel).
    Test,
    /// Debian's stock kernel with the checking initramfs.
    Stock,
}

/// One boot of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    pub machine: Machine,
    pub memory_mib: u64,
    pub cpus: u32,
    pub cpu_model: Option<&'static str>,
    pub acpi: bool,
    pub hpet: bool,
    /// NUMA nodes (0: none), the CPUs and memory split evenly.
    pub numa_nodes: u32,
    /// `-m M,slots=4,maxmem=64G`: a memory hot-plug area above the RAM.
    pub hotplug: bool,
    pub dma: bool,
    pub kernel: Kernel,
}

impl Case {
    pub const fn new(machine: Machine) -> Case {
        Case {
            machine,
            memory_mib: 512,
            cpus: 1,
            cpu_model: None,
            acpi: true,
            hpet: true,
            numa_nodes: 0,
            hotplug: false,
            dma: true,
            kernel: Kernel::Test,
        }
    }

    /// The machine has the device (`-M ...,hpet=off` is only accepted there).
    fn has_hpet(self) -> bool {
        self.machine != Machine::Microvm
    }

    /// The QEMU run, without its kernel and command line.
    fn qemu(&self, rom: &Path) -> Qemu {
        let mut q = Qemu::new(self.machine, rom.to_path_buf());
        q.memory_mib = self.memory_mib;
        q.cpus = self.cpus;
        q.timeout = Duration::from_secs(match self.kernel {
            Kernel::Test => 120,
            Kernel::Stock => 300,
        });
        let mut extra: Vec<String> = Vec::new();
        if !self.acpi {
            extra.extend(["-M".into(), "acpi=off".into()]);
        }
        if !self.hpet && self.has_hpet() {
            extra.extend(["-M".into(), "hpet=off".into()]);
        }
        if let Some(model) = self.cpu_model {
            extra.extend(["-cpu".into(), model.into()]);
        }
        if self.hotplug {
            extra.extend([
                "-m".into(),
                format!("{}M,slots=4,maxmem=64G", self.memory_mib),
            ]);
        }
        if !self.dma {
            extra.extend(["-global".into(), "fw_cfg_io.dma_enabled=off".into()]);
        }
        let nodes = self.numa_nodes as u64;
        for n in 0..nodes {
            let (per_cpu, per_mem) = (self.cpus as u64 / nodes, self.memory_mib / nodes);
            extra.extend([
                "-object".into(),
                format!("memory-backend-ram,id=numa{n},size={per_mem}M"),
                "-numa".into(),
                format!(
                    "node,nodeid={n},memdev=numa{n},cpus={}-{}",
                    n * per_cpu,
                    (n + 1) * per_cpu - 1
                ),
            ]);
        }
        q.extra = extra;
        q
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} MiB {} CPU(s)",
            self.machine.name(),
            self.memory_mib,
            self.cpus
        )?;
        if let Some(m) = self.cpu_model {
            write!(f, " -cpu {m}")?;
        }
        for (on, what) in [
            (!self.acpi, "acpi=off"),
            (!self.hpet && self.has_hpet(), "hpet=off"),
            (self.hotplug, "slots=4,maxmem=64G"),
            (!self.dma, "no DMA"),
        ] {
            if on {
                write!(f, " {what}")?;
            }
        }
        if self.numa_nodes > 0 {
            write!(f, " {} NUMA nodes", self.numa_nodes)?;
        }
        if self.kernel == Kernel::Stock {
            write!(f, " (stock kernel)")?;
        }
        Ok(())
    }
}

/// QEMU's sizes at their edges: the memory sizes around the 32-bit PCI hole
/// and 4 GiB, the CPU counts up to TCG's maximum (255), the CPU models.
pub const MEMORY_MIB: [u64; 8] = [64, 128, 1024, 2816, 3072, 3584, 4096, 16384];
pub const CPUS: [u32; 5] = [1, 2, 8, 64, 255];
pub const CPU_MODELS: [&str; 3] = ["qemu64", "max", "Haswell"];

/// The exhaustive matrix: every dimension varied on its own, on every machine,
/// with the test kernel; the stock kernel on a cut of it.
pub fn matrix() -> Vec<Case> {
    let mut cases = Vec::new();
    for machine in Machine::ALL {
        let base = Case::new(machine);
        for memory_mib in MEMORY_MIB {
            cases.push(Case { memory_mib, ..base });
        }
        for cpus in CPUS {
            cases.push(Case { cpus, ..base });
        }
        for model in CPU_MODELS {
            cases.push(Case {
                cpus: 2,
                cpu_model: Some(model),
                ..base
            });
        }
        cases.push(Case {
            cpus: 2,
            acpi: false,
            ..base
        });
        if base.has_hpet() {
            cases.push(Case {
                hpet: false,
                ..base
            });
        }
        cases.push(Case {
            memory_mib: 1024,
            cpus: 8,
            numa_nodes: 4,
            ..base
        });
        cases.push(Case {
            memory_mib: 1024,
            hotplug: true,
            ..base
        });
        cases.push(Case { dma: false, ..base });
        for (memory_mib, cpus, acpi) in [(512, 2, true), (4096, 4, true), (512, 2, false)] {
            cases.push(Case {
                memory_mib,
                cpus,
                acpi,
                kernel: Kernel::Stock,
                ..base
            });
        }
    }
    cases
}

/// `n` boots drawn from the matrix's dimensions (a few combined at a time),
/// one in 50 with the stock kernel. Deterministic for a seed.
pub fn mixed(n: usize, seed: u64) -> Vec<Case> {
    let mut x = seed | 1;
    let mut next = move |bound: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % bound as u64) as usize
    };
    (0..n)
        .map(|_| {
            let machine = Machine::ALL[next(3)];
            let mut c = Case::new(machine);
            c.memory_mib = MEMORY_MIB[next(MEMORY_MIB.len())];
            c.cpus = CPUS[next(CPUS.len() - 1)];
            if next(4) == 0 {
                c.cpu_model = Some(CPU_MODELS[next(CPU_MODELS.len())]);
            }
            c.acpi = next(6) != 0;
            c.hpet = next(6) != 0;
            c.dma = next(8) != 0;
            c.hotplug = c.memory_mib >= 128 && next(8) == 0;
            if next(10) == 0 && c.memory_mib >= 1024 {
                c.cpus = 8;
                c.numa_nodes = 4;
            }
            if next(50) == 0 {
                c.kernel = Kernel::Stock;
                c.memory_mib = c.memory_mib.max(512);
                c.cpus = c.cpus.min(8);
            }
            c
        })
        .collect()
}

/// Files a run needs, made once.
pub struct Assets {
    pub rom: PathBuf,
    work: PathBuf,
    test_kernel: PathBuf,
    stock_kernel: Option<PathBuf>,
}

impl Assets {
    pub fn new(rom: &Path, work: &Path) -> Result<Assets> {
        std::fs::create_dir_all(work)?;
        let test_kernel = testkernel::build(&BzImageSpec::default(), &work.join("test.bzImage"))?;
        Ok(Assets {
            rom: rom.to_path_buf(),
            work: work.to_path_buf(),
            test_kernel,
            stock_kernel: None,
        })
    }

    fn stock_kernel(&mut self) -> Result<PathBuf> {
        if self.stock_kernel.is_none() {
            self.stock_kernel = Some(linux_assets::stock_kernel()?);
        }
        Ok(self.stock_kernel.clone().unwrap())
    }
}

/// The outcome of one case.
pub struct Verdict {
    pub case: Case,
    pub wall: Duration,
    /// None: passed; Some(why, command line, serial log) otherwise.
    pub failure: Option<(String, String, String)>,
}

/// The CPUs Linux brings up. Without ACPI it takes them from the MP table,
/// which on pc and q35 lists one CPU per package, as SeaBIOS's does (QEMU's
/// default topology puts every CPU in one socket).
pub fn visible_cpus(case: &Case) -> u32 {
    if case.acpi || case.machine == Machine::Microvm {
        case.cpus
    } else {
        1
    }
}

/// Boots one case and judges it.
pub fn run_case(case: &Case, assets: &mut Assets) -> Result<Verdict> {
    let mut q = case.qemu(&assets.rom);
    let expect_code;
    let pass_line;
    match case.kernel {
        Kernel::Test => {
            q.kernel = Some(assets.test_kernel.clone());
            q.exit_ports = vec![testkernel::REPORT_PORT];
            // Without ACPI (or with CPUs the MADT lists as possible), the CPU
            // count is not checked; the memory always is.
            let cpus = if case.acpi {
                format!(" expect.cpus={}", case.cpus)
            } else {
                String::new()
            };
            q.append = Some(with_check(&format!(
                "console=ttyS0 expect.mem_mib={}{cpus}",
                case.memory_mib
            )));
            expect_code = PASS_64;
            pass_line = "testkernel: PASS";
        }
        Kernel::Stock => {
            let token = "ferrite.soak=1";
            let spec = InitramfsSpec {
                expect_cpus: visible_cpus(case),
                expect_mem_mib: case.memory_mib,
                cmdline_token: token.into(),
                payload_len: 1 << 20,
                poweroff: true,
                // Found by the soak (under SeaBIOS as under ferrite): with
                // maxmem=64G Linux takes 64 MiB of bounce buffers even from
                // 512 MiB, MemTotal 400 MB.
                kernel_reserves_mib: if case.hotplug { 64 } else { 0 },
            };
            let name = format!(
                "initramfs-{}-{}{}.cpio",
                visible_cpus(case),
                case.memory_mib,
                if case.hotplug { "-hotplug" } else { "" }
            );
            let initrd = linux_assets::build_initramfs(&spec, &assets.work.join(name))?;
            q.kernel = Some(assets.stock_kernel()?);
            q.initrd = Some(initrd.path);
            let mut append = format!("console=ttyS0 panic=-1 {token}");
            if case.machine == Machine::Microvm
                && let Some(khz) = crate::bench::tsc_khz()
            {
                append += &format!(" tsc_early_khz={khz}");
            }
            q.append = Some(append);
            q.exit_ports = vec![marker::USER_PORT];
            expect_code = qemu_exit(marker::USER);
            // /init writes the marker only after its checks passed; its PASS
            // line goes through the kernel's tty and may still be in the
            // UART's queue when the marker ends QEMU.
            pass_line = "";
        }
    }
    let out = q.run()?;
    let failure = judge(&out, expect_code, pass_line)
        .err()
        .map(|why| (why, q.command_line(), out.serial.clone()));
    Ok(Verdict {
        case: *case,
        wall: out.wall,
        failure,
    })
}

/// Why `out` is not a pass, if it is not: a hang, a triple fault (exit 0 under
/// -no-reboot), another status, or a pass status without the pass line.
pub fn judge(out: &Outcome, want: i32, pass_line: &str) -> Result<(), String> {
    if out.timed_out {
        return Err("QEMU timed out (a hang)".into());
    }
    match out.exit_code {
        Some(c) if c == want && out.serial.contains(pass_line) => Ok(()),
        Some(c) if c == want => Err(format!("exit {c} without {pass_line:?} on serial")),
        Some(0) => Err("QEMU exited with 0: a triple fault or a reset".into()),
        Some(c) => Err(format!(
            "QEMU exit {c} (debug-exit value {:#x}), expected {want}",
            (c - 1) / 2
        )),
        None => Err(format!("QEMU killed by signal {:?}", out.signal)),
    }
}

/// Guest reboots in a row: the test kernel counts its boots in CMOS, resets the
/// machine through 0xCF9 until it has booted `reboots + 1` times, then reports.
pub fn reboots(machine: Machine, reboots: u32, assets: &Assets) -> Result<Verdict> {
    let case = Case::new(machine);
    let mut q = case.qemu(&assets.rom);
    q.kernel = Some(assets.test_kernel.clone());
    q.exit_ports = vec![testkernel::REPORT_PORT];
    q.allow_reboot = true;
    q.timeout = Duration::from_secs(60 + reboots as u64 * 2);
    q.append = Some(with_check(&format!(
        "console=ttyS0 expect.mem_mib=512 expect.cpus=1 test.reboots={reboots}"
    )));
    let out = q.run()?;
    let boots = out.serial.matches("testkernel: boot ").count() as u32;
    let failure = judge(&out, PASS_64, "testkernel: PASS")
        .and_then(|()| {
            if boots == reboots + 1 {
                Ok(())
            } else {
                Err(format!(
                    "{boots} boots seen on serial, expected {}",
                    reboots + 1
                ))
            }
        })
        .err()
        .map(|why| (why, q.command_line(), out.serial.clone()));
    Ok(Verdict {
        case,
        wall: out.wall,
        failure,
    })
}

/// Runs `cases` in order, printing one line per boot, then the failures with
/// their serial logs. Returns the number of failures.
pub fn run_all(cases: &[Case], assets: &mut Assets) -> Result<usize> {
    let started = Instant::now();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let v = run_case(case, assets)?;
        let status = match &v.failure {
            None => "ok".to_string(),
            Some((why, _, _)) => format!("FAILED: {why}"),
        };
        println!(
            "[{:>4}/{}] {case}: {status} ({:.2} s)",
            i + 1,
            cases.len(),
            v.wall.as_secs_f64()
        );
        if v.failure.is_some() {
            failures.push(v);
        }
    }
    for v in &failures {
        let (why, cmd, serial) = v.failure.as_ref().unwrap();
        println!("\n== {}: {why}\n{cmd}\n{serial}", v.case);
    }
    println!(
        "{} of {} boots passed in {:.0} s",
        cases.len() - failures.len(),
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(failures.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrite_contract::status;

    #[test]
    fn the_matrix_covers_every_dimension_on_every_machine() {
        let m = matrix();
        for machine in Machine::ALL {
            let on = |f: &dyn Fn(&Case) -> bool| m.iter().any(|c| c.machine == machine && f(c));
            for mib in MEMORY_MIB {
                assert!(on(&|c| c.memory_mib == mib), "{machine:?} {mib} MiB");
            }
            for n in CPUS {
                assert!(on(&|c| c.cpus == n), "{machine:?} {n} CPUs");
            }
            for model in CPU_MODELS {
                assert!(on(&|c| c.cpu_model == Some(model)));
            }
            assert!(on(&|c| !c.acpi));
            assert!(on(&|c| c.numa_nodes > 1));
            assert!(on(&|c| c.hotplug));
            assert!(on(&|c| !c.dma));
            assert!(on(&|c| c.kernel == Kernel::Stock));
        }
        assert!(m.iter().any(|c| !c.hpet && c.has_hpet()));
    }

    #[test]
    fn mixed_soak_is_deterministic_and_varied() {
        let a = mixed(500, 7);
        assert_eq!(a, mixed(500, 7));
        assert_ne!(a, mixed(500, 8));
        for machine in Machine::ALL {
            assert!(a.iter().any(|c| c.machine == machine));
        }
        assert!(a.iter().any(|c| c.kernel == Kernel::Stock));
        assert!(a.iter().any(|c| !c.dma && !c.acpi));
        // the stock kernel only where it has room and a sane CPU count
        assert!(
            a.iter()
                .filter(|c| c.kernel == Kernel::Stock)
                .all(|c| c.memory_mib >= 512 && c.cpus <= 8)
        );
    }

    #[test]
    fn qemu_arguments_of_a_case() {
        let c = Case {
            memory_mib: 1024,
            cpus: 8,
            numa_nodes: 4,
            hotplug: true,
            acpi: false,
            hpet: false,
            dma: false,
            cpu_model: Some("max"),
            ..Case::new(Machine::Q35)
        };
        let args = c.qemu(Path::new("ferrite.rom")).args().join(" ");
        for want in [
            "-M acpi=off",
            "-M hpet=off",
            "-cpu max",
            "-m 1024M,slots=4,maxmem=64G",
            "fw_cfg_io.dma_enabled=off",
            "memory-backend-ram,id=numa3,size=256M",
            "node,nodeid=3,memdev=numa3,cpus=6-7",
        ] {
            assert!(args.contains(want), "{want} missing from {args}");
        }
        // microvm has no HPET property to turn off
        let m = Case {
            hpet: false,
            ..Case::new(Machine::Microvm)
        };
        assert!(!m.qemu(Path::new("r")).args().join(" ").contains("hpet"));
        assert_eq!(
            m.to_string(),
            "microvm 512 MiB 1 CPU(s)",
            "no hpet=off shown where it does not apply"
        );
    }

    fn outcome(code: Option<i32>, serial: &str, timed_out: bool) -> Outcome {
        Outcome {
            exit_code: code,
            timed_out,
            serial: serial.into(),
            ..Outcome::default()
        }
    }

    #[test]
    fn judging_needs_the_status_and_the_pass_line() {
        let pass = "testkernel: PASS";
        assert!(judge(&outcome(Some(33), pass, false), 33, pass).is_ok());
        assert!(judge(&outcome(Some(33), "", false), 33, pass).is_err());
        assert!(judge(&outcome(Some(0), pass, false), 33, pass).is_err());
        assert!(judge(&outcome(Some(33), pass, true), 33, pass).is_err());
        let e = judge(
            &outcome(Some(qemu_exit(status::KERNEL_DOES_NOT_FIT)), "", false),
            33,
            pass,
        )
        .unwrap_err();
        assert!(e.contains("0x25"), "{e}");
    }
}
