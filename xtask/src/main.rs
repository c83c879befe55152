//! `cargo xtask`: build the ROM, boot a kernel with it, build the test kernel, the
//! small bench kernel, and run the benchmark.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use xtask::bench::{self, Firmware};
use xtask::qemu::{Accel, Machine, Qemu};
use xtask::{analyze, linux_assets, parity, profile, range, rom, small_kernel, soak, testkernel};

#[derive(Parser)]
#[command(about = "ferrite's build, run and benchmark tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Subcommand)]
enum Task {
    /// Build target/ferrite.rom.
    Build {
        /// Unoptimised build (target/ferrite-debug.rom).
        #[arg(long)]
        debug: bool,
    },
    /// Boot a kernel under QEMU with ferrite (default: Debian's stock kernel and a
    /// checking initramfs), serial on the terminal.
    Run {
        #[arg(long, default_value = "q35")]
        machine: Machine,
        #[arg(long)]
        kernel: Option<PathBuf>,
        #[arg(long)]
        initrd: Option<PathBuf>,
        #[arg(long)]
        append: Option<String>,
        #[arg(long, default_value_t = 512)]
        memory: u64,
        #[arg(long, default_value_t = 2)]
        cpus: u32,
        /// Use KVM (slow on this machine type: its KVM emulates every instruction).
        #[arg(long)]
        kvm: bool,
        /// ferrite's log level (error, warn, info, debug, trace).
        #[arg(long)]
        log_level: Option<String>,
    },
    /// Build the fake-bzImage test kernel.
    Testkernel,
    /// Build the small instrumented Linux for the bench (needs root for apt-get).
    Kernel,
    /// Boot the stock kernel under SeaBIOS and ferrite with the same devices and
    /// report every difference the guest sees (iomem, PCI, MTRRs, e820, DMI...).
    Compare {
        #[arg(
            long,
            alias = "machine",
            value_delimiter = ',',
            default_value = "pc,q35"
        )]
        machines: Vec<Machine>,
        #[arg(long, value_delimiter = ',', default_value = "512,5120")]
        memory: Vec<u64>,
        #[arg(long, value_delimiter = ',', default_value = "1,4")]
        cpus: Vec<u32>,
        /// With the machine's ACPI on, off or both (`on,off`); off boots
        /// `-M <machine>,acpi=off`, where Linux reads the MP table.
        #[arg(long, value_delimiter = ',', default_value = "on")]
        acpi: Vec<OnOff>,
        /// Write every section and difference here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Boot ferrite at the edges of QEMU's sizes (memory, CPUs, CPU models,
    /// ACPI/HPET off, NUMA, memory hot-plug, no DMA), a mixed soak, and guest
    /// reboots in a row; report every failure with its serial log.
    Soak {
        /// The exhaustive size matrix (the default when nothing else is asked).
        #[arg(long)]
        matrix: bool,
        /// A mixed soak of this many boots drawn from the matrix's dimensions.
        #[arg(long)]
        boots: Option<usize>,
        /// Seed of the mixed soak.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Guest reboots in a row on pc and q35, each back through ferrite.
        #[arg(long)]
        reboots: Option<u32>,
    },
    /// Fuzz every parser of what QEMU or the kernel hands over (firmware/src/fuzz.rs)
    /// in an optimised build with overflow checks; reports the cases per parser.
    Fuzz {
        /// Generated cases per parser (the corpus is replayed on top).
        #[arg(long, default_value_t = 1_000_000)]
        cases: u64,
        /// Only this parser (e820, kernel, fwcfg_dir, fwcfg_read, table_loader,
        /// setup_data, smbios, pci, mptable, pvh, multiboot).
        #[arg(long)]
        parser: Option<String>,
        /// Random seed (default: from the clock; printed, to repeat a run).
        #[arg(long)]
        seed: Option<u64>,
        /// Do not add inputs with new outcomes to firmware/fuzz-corpus/.
        #[arg(long)]
        no_save: bool,
    },
    /// Measure tQEMU, tFW and tKernel for ferrite, qboot, SeaBIOS, the floor ROM
    /// (and OVMF), with the cost model.
    Bench {
        /// Measured runs per cell (after one warm-up).
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// A useful answer in under two minutes: 3 runs, q35 only (unless
        /// --machines names others), tKernel after ferrite only.
        #[arg(long)]
        quick: bool,
        /// Machines to boot [default: pc,q35,microvm].
        #[arg(long, value_delimiter = ',')]
        machines: Option<Vec<Machine>>,
        /// Also run OVMF (takes seconds per boot).
        #[arg(long)]
        ovmf: bool,
        /// Kernel to boot: a path (a bzImage, or an ELF vmlinux booted through
        /// PVH), "stock" (Debian's), "small" (cargo xtask kernel) or
        /// "small-vmlinux" (the same kernel's vmlinux, PVH entry).
        #[arg(long, default_value = "stock")]
        kernel: String,
        #[arg(long, default_value_t = 512)]
        memory: u64,
        #[arg(long, default_value_t = 1)]
        cpus: u32,
        /// Write every raw sample, command line, QEMU version, host and date here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the results as a Markdown table here.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Skip the cost model (translated code, KVM exits and instructions, host counts).
        #[arg(long)]
        no_counts: bool,
        /// Vary one parameter: memory=128,512,2048 | cpus=1,2,4 | kernel-size=2,8,32 (MiB).
        #[arg(long)]
        sweep: Option<bench::Sweep>,
        /// Also time every firmware to the small kernel's kernel_init marker
        /// (cargo xtask kernel), beside the bench kernel's /init.
        #[arg(long)]
        end_to_end: bool,
        /// Start N VMs together per firmware and machine (e.g. 1,4,16): median
        /// and p95 to the kernel entry and to the small kernel's marker, peak RSS.
        #[arg(long, value_delimiter = ',')]
        density: Vec<usize>,
        /// Print only one "Result: tFW ..." line per firmware and machine.
        #[arg(long)]
        summary: bool,
    },
    /// Boot a kernel N times and report where the time goes: every event on the
    /// serial port and from the host, activities with mean ± sd and share, a
    /// timeline SVG and every run's events as JSON.
    Analyze {
        /// Measured runs per firmware (after one warm-up).
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Kernel to boot: "small" (cargo xtask kernel), "stock" (Debian's) or a path.
        #[arg(long, default_value = "small")]
        kernel: String,
        /// The kernel's symbols (vmlinux or System.map) for a kernel given by path;
        /// the small kernel's vmlinux is found by itself.
        #[arg(long)]
        kernel_symbols: Option<PathBuf>,
        /// Firmwares side by side: ferrite, qboot, seabios.
        #[arg(long, value_delimiter = ',', default_value = "ferrite")]
        firmware: Vec<String>,
        #[arg(long, default_value = "q35")]
        machine: Machine,
        #[arg(long, default_value_t = 512)]
        memory: u64,
        #[arg(long, default_value_t = 1)]
        cpus: u32,
        /// Boot without initcall_debug.
        #[arg(long)]
        no_initcall_debug: bool,
        /// A regular expression: serial lines it matches are events, and the
        /// time to the first one an activity.
        #[arg(long)]
        pattern: Option<String>,
        /// Skip the twin runs with `quiet` that measure the logging's own cost.
        #[arg(long)]
        no_quiet_check: bool,
        /// How many of the longest activities to list.
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// Write every run's events and activities here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// The timeline chart [default: target/analyze.svg].
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// ferrite's tFW, guest instructions and port exits at each commit of a git
    /// range (built in worktrees under target/bench-range/), in interleaved
    /// rounds; flags each change beyond the noise.
    BenchRange {
        /// A..B: A is the baseline, then each commit after it up to B.
        range: String,
        /// Measured runs per commit and marker (after one warm-up).
        #[arg(long, default_value_t = 10)]
        runs: usize,
        #[arg(long, default_value = "q35")]
        machine: Machine,
        #[arg(long, default_value_t = 512)]
        memory: u64,
        /// Skip the guest-instruction counts under KVM.
        #[arg(long)]
        no_counts: bool,
        /// Write every sample and test here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Which guest functions the boot's instructions go to (TCG,
    /// -d in_asm,exec,nochain), up to the first 0xf6 marker (the small kernel's
    /// kernel_init).
    Profile {
        /// Kernel to boot: "small" (with its vmlinux's symbols), "stock" or a path.
        #[arg(long, default_value = "small")]
        kernel: String,
        /// The kernel's symbols (vmlinux or System.map) for a kernel given by path.
        #[arg(long)]
        kernel_symbols: Option<PathBuf>,
        /// ferrite, qboot or seabios.
        #[arg(long, default_value = "ferrite")]
        firmware: String,
        /// The firmware's ELF (qboot, SeaBIOS); ferrite's own is used by default.
        #[arg(long)]
        firmware_symbols: Option<PathBuf>,
        #[arg(long, default_value = "q35")]
        machine: Machine,
        /// List functions at or above this share, in per cent.
        #[arg(long, default_value_t = 0.2)]
        min_share: f64,
        /// Write every function's counts here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn firmware_named(name: &str) -> Result<Firmware> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "ferrite" => Firmware::Ferrite,
        "qboot" => Firmware::Qboot,
        "seabios" => Firmware::Seabios,
        _ => bail!("unknown firmware {name} (ferrite, qboot, seabios)"),
    })
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Build { debug } => {
            let rom = rom::build_firmware(!debug)?;
            println!(
                "{}: used {} of {} bytes ({:.0}%)",
                rom.path.display(),
                rom.used,
                rom.size,
                rom.used as f64 * 100.0 / rom.size as f64
            );
        }
        Task::Run {
            machine,
            kernel,
            initrd,
            append,
            memory,
            cpus,
            kvm,
            log_level,
        } => {
            let rom = rom::build_firmware(true)?;
            let mut q = Qemu::new(machine, rom.path);
            q.memory_mib = memory;
            q.cpus = cpus;
            q.accel = if kvm { Accel::Kvm } else { Accel::Tcg };
            q.timeout = Duration::from_secs(600);
            let default_kernel = kernel.is_none();
            q.kernel = Some(match kernel {
                Some(k) => k,
                None => linux_assets::stock_kernel()?,
            });
            let token = "ferrite.run=1";
            q.initrd = match (initrd, default_kernel) {
                (Some(i), _) => Some(i),
                (None, true) => {
                    let spec = linux_assets::InitramfsSpec {
                        expect_cpus: cpus,
                        expect_mem_mib: memory,
                        cmdline_token: token.into(),
                        payload_len: 1 << 20,
                        poweroff: true,
                    };
                    std::fs::create_dir_all(linux_assets::cache_dir())?;
                    Some(
                        linux_assets::build_initramfs(
                            &spec,
                            &linux_assets::cache_dir().join("run-initramfs.cpio"),
                        )?
                        .path,
                    )
                }
                (None, false) => None,
            };
            let mut cmdline = append.unwrap_or_else(|| format!("console=ttyS0 panic=-1 {token}"));
            if let (Machine::Microvm, false, Some(khz)) = (machine, kvm, bench::tsc_khz())
                && !cmdline.contains("tsc_early_khz")
            {
                cmdline += &format!(" tsc_early_khz={khz}");
            }
            q.append = Some(cmdline);
            if let Some(level) = log_level {
                q.extra.extend([
                    "-fw_cfg".into(),
                    format!("name=opt/ferrite/log-level,string={level}"),
                ]);
            }
            if default_kernel {
                // /init writes 2 to 0xf6 once its checks pass: QEMU then exits with 5.
                q.exit_ports = vec![0xF6];
            }
            println!("{}", q.command_line());
            let started = std::time::Instant::now();
            let status = std::process::Command::new("qemu-system-x86_64")
                .args(q.args())
                .status()?;
            match (default_kernel, status.code()) {
                (true, Some(5)) => println!(
                    "ferrite booted Linux to a passing /init in {:.2} s (TCG)",
                    started.elapsed().as_secs_f64()
                ),
                (true, code) => {
                    bail!("the boot did not reach a passing /init (QEMU exit {code:?})")
                }
                (false, code) => std::process::exit(code.unwrap_or(1)),
            }
        }
        Task::Fuzz {
            cases,
            parser,
            seed,
            no_save,
        } => {
            xtask::fuzz::run(&xtask::fuzz::Options {
                cases,
                parser,
                seed,
                save: !no_save,
            })?;
        }
        Task::Testkernel => {
            let path = xtask::root().join("target/testkernel.bzImage");
            testkernel::build(&testkernel::BzImageSpec::default(), &path)?;
            println!("{}", path.display());
        }
        Task::Kernel => println!("{}", small_kernel::build()?.display()),
        Task::Soak {
            matrix,
            boots,
            seed,
            reboots,
        } => {
            let rom = rom::build_firmware(true)?;
            let mut assets =
                soak::Assets::new(&rom.path, &xtask::root().join("target/ferrite-soak"))?;
            let mut failed = 0;
            if let Some(n) = reboots {
                for machine in [Machine::Pc, Machine::Q35] {
                    let v = soak::reboots(machine, n, &assets)?;
                    match &v.failure {
                        None => println!(
                            "{}: {n} reboots in a row, each back through ferrite ({:.1} s)",
                            machine.name(),
                            v.wall.as_secs_f64()
                        ),
                        Some((why, cmd, serial)) => {
                            failed += 1;
                            println!("{}: reboots FAILED: {why}\n{cmd}\n{serial}", machine.name());
                        }
                    }
                }
            }
            if let Some(n) = boots {
                failed += soak::run_all(&soak::mixed(n, seed), &mut assets)?;
            }
            if matrix || (boots.is_none() && reboots.is_none()) {
                failed += soak::run_all(&soak::matrix(), &mut assets)?;
            }
            if failed > 0 {
                bail!("{failed} failure(s)");
            }
        }
        Task::Compare {
            machines,
            memory,
            cpus,
            acpi,
            json,
        } => {
            let rom = rom::build_firmware(true)?.path;
            let work = xtask::root().join("target/ferrite-compare");
            let mut configs = Vec::new();
            for &machine in &machines {
                for &memory_mib in &memory {
                    for &cpus in &cpus {
                        for &acpi in &acpi {
                            configs.push(parity::Config {
                                machine,
                                memory_mib,
                                cpus,
                                acpi: acpi == OnOff::On,
                            });
                        }
                    }
                }
            }
            let unexplained = parity::run_all(&rom, &configs, &work, json.as_deref())?;
            if unexplained > 0 {
                bail!("{unexplained} difference(s) from SeaBIOS not known to be harmless");
            }
            println!(
                "no differences from SeaBIOS beyond the harmless ones listed in xtask/src/parity.rs"
            );
        }
        Task::Bench {
            runs,
            quick,
            machines,
            ovmf,
            kernel,
            memory,
            cpus,
            json,
            markdown,
            no_counts,
            sweep,
            end_to_end,
            density,
            summary,
        } => {
            if density.contains(&0) {
                bail!("--density takes positive numbers of VMs");
            }
            let rom = rom::build_firmware(true)?;
            let kernel = match kernel.as_str() {
                "stock" => None,
                "small" => Some(small_kernel::build()?),
                "small-vmlinux" => {
                    small_kernel::build()?;
                    Some(small_kernel::vmlinux_path())
                }
                path => {
                    let p = PathBuf::from(path);
                    if !p.exists() {
                        bail!("no kernel at {path}");
                    }
                    Some(p)
                }
            };
            let mut firmwares = vec![
                Firmware::Ferrite,
                Firmware::Qboot,
                Firmware::Seabios,
                Firmware::Floor,
            ];
            if ovmf {
                firmwares.push(Firmware::Ovmf);
            }
            let opts = bench::Options {
                runs: if quick { 3 } else { runs },
                machines: machines.unwrap_or_else(|| match quick {
                    true => vec![Machine::Q35],
                    false => vec![Machine::Pc, Machine::Q35, Machine::Microvm],
                }),
                firmwares,
                memory_mib: memory,
                cpus,
                kernel,
                json,
                markdown,
                count_instructions: !no_counts,
                sweep,
                tkernel_ferrite_only: quick,
                small_kernel: (end_to_end || !density.is_empty())
                    .then(small_kernel::build)
                    .transpose()?,
                density,
                summary,
            };
            bench::run(&opts, &rom)?;
        }
        Task::Analyze {
            runs,
            kernel,
            kernel_symbols,
            firmware,
            machine,
            memory,
            cpus,
            no_initcall_debug,
            pattern,
            no_quiet_check,
            top,
            json,
            svg,
        } => {
            let rom = rom::build_firmware(true)?;
            let kernel = match kernel.as_str() {
                "small" => analyze::Kernel {
                    name: "small".into(),
                    path: small_kernel::build()?,
                    symbols: Some(kernel_symbols.unwrap_or_else(small_kernel::vmlinux_path)),
                },
                "stock" => analyze::Kernel {
                    name: "stock".into(),
                    path: linux_assets::stock_kernel()?,
                    symbols: kernel_symbols,
                },
                path => analyze::Kernel {
                    name: path.into(),
                    path: PathBuf::from(path),
                    symbols: kernel_symbols,
                },
            };
            if !kernel.path.exists() {
                bail!("no kernel at {}", kernel.path.display());
            }
            let opts = analyze::Options {
                runs,
                firmwares: firmware
                    .iter()
                    .map(|f| firmware_named(f))
                    .collect::<Result<_>>()?,
                machine,
                kernel,
                memory_mib: memory,
                cpus,
                initcall_debug: !no_initcall_debug,
                pattern: pattern.map(|p| regex::Regex::new(&p)).transpose()?,
                quiet_check: !no_quiet_check,
                top,
                json,
                svg: svg.unwrap_or_else(|| xtask::root().join("target/analyze.svg")),
            };
            analyze::run(&opts, &rom.path)?;
        }
        Task::Profile {
            kernel,
            kernel_symbols,
            firmware,
            firmware_symbols,
            machine,
            min_share,
            json,
        } => {
            let rom = rom::build_firmware(true)?;
            let (kernel_path, kernel_symbols) = match kernel.as_str() {
                "small" => (
                    small_kernel::build()?,
                    Some(kernel_symbols.unwrap_or_else(small_kernel::vmlinux_path)),
                ),
                "stock" => (linux_assets::stock_kernel()?, kernel_symbols),
                path => (PathBuf::from(path), kernel_symbols),
            };
            if !kernel_path.exists() {
                bail!("no kernel at {}", kernel_path.display());
            }
            profile::run(
                &profile::Options {
                    firmware: firmware_named(&firmware)?,
                    firmware_symbols,
                    machine,
                    kernel_name: kernel,
                    kernel: kernel_path,
                    kernel_symbols,
                    min_share: min_share / 100.0,
                    json,
                },
                &rom,
            )?;
        }
        Task::BenchRange {
            range,
            runs,
            machine,
            memory,
            no_counts,
            json,
        } => range::run(&range::Options {
            range,
            runs,
            machine,
            memory_mib: memory,
            count_instructions: !no_counts,
            json,
        })?,
    }
    Ok(())
}
