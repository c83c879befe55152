//! `cargo xtask`: build the ROM, boot a kernel with it, build the test kernel, the
//! small bench kernel, and run the benchmark.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use xtask::bench::{self, Firmware};
use xtask::qemu::{Accel, Machine, Qemu};
use xtask::{linux_assets, parity, rom, small_kernel, testkernel};

#[derive(Parser)]
#[command(about = "ferrite's build, run and benchmark tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
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
        /// Write every section and difference here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Fuzz every parser of what QEMU or the kernel hands over (firmware/src/fuzz.rs)
    /// in an optimised build with overflow checks; reports the cases per parser.
    Fuzz {
        /// Generated cases per parser (the corpus is replayed on top).
        #[arg(long, default_value_t = 1_000_000)]
        cases: u64,
        /// Only this parser (e820, kernel, fwcfg_dir, fwcfg_read, table_loader,
        /// setup_data, smbios, pci, mptable).
        #[arg(long)]
        parser: Option<String>,
        /// Random seed (default: from the clock; printed, to repeat a run).
        #[arg(long)]
        seed: Option<u64>,
        /// Do not add inputs with new outcomes to firmware/fuzz-corpus/.
        #[arg(long)]
        no_save: bool,
    },
    /// Measure tQEMU, tFW and tKernel for ferrite, qboot, SeaBIOS (and OVMF).
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
        /// Kernel to boot: a path, "stock" (Debian's) or "small" (cargo xtask kernel).
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
        /// Skip the guest-instruction counts under KVM.
        #[arg(long)]
        no_counts: bool,
        /// Vary one parameter: memory=128,512,2048 | cpus=1,2,4 | kernel-size=2,8,32 (MiB).
        #[arg(long)]
        sweep: Option<bench::Sweep>,
    },
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
        Task::Compare {
            machines,
            memory,
            cpus,
            json,
        } => {
            let rom = rom::build_firmware(true)?.path;
            let work = xtask::root().join("target/ferrite-compare");
            let mut configs = Vec::new();
            for &machine in &machines {
                for &memory_mib in &memory {
                    for &cpus in &cpus {
                        configs.push(parity::Config {
                            machine,
                            memory_mib,
                            cpus,
                        });
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
        } => {
            let rom = rom::build_firmware(true)?;
            let kernel = match kernel.as_str() {
                "stock" => None,
                "small" => Some(small_kernel::build()?),
                path => {
                    let p = PathBuf::from(path);
                    if !p.exists() {
                        bail!("no kernel at {path}");
                    }
                    Some(p)
                }
            };
            let mut firmwares = vec![Firmware::Ferrite, Firmware::Qboot, Firmware::Seabios];
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
            };
            bench::run(&opts, &rom)?;
        }
    }
    Ok(())
}
