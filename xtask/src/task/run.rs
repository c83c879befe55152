//! `cargo xtask run`: boots a kernel under QEMU with ferrite, serial on the
//! terminal. Without `--kernel`, Debian's stock kernel with a checking
//! initramfs whose /init writes the userspace marker once its checks pass.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ferrite_contract::{fw_cfg, marker, qemu_exit};

use crate::linux_assets::{self, InitramfsSpec};
use crate::qemu::{Accel, Machine, Qemu};
use crate::{bench, rom};

/// The command-line word the default /init checks.
const TOKEN: &str = "ferrite.run=1";

#[derive(clap::Args)]
pub struct Args {
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
}

pub fn run(args: Args) -> Result<()> {
    let rom = rom::build_firmware(true)?;
    let default_kernel = args.kernel.is_none();
    let q = qemu(args, rom.path)?;
    println!("{}", q.command_line());
    let started = Instant::now();
    let status = std::process::Command::new(crate::qemu::binary())
        .args(q.args())
        .status()?;
    match (default_kernel, status.code()) {
        (true, Some(code)) if code == qemu_exit(marker::USER) => println!(
            "ferrite booted Linux to a passing /init in {:.2} s (TCG)",
            started.elapsed().as_secs_f64()
        ),
        (true, code) => bail!("the boot did not reach a passing /init (QEMU exit {code:?})"),
        (false, code) => std::process::exit(code.unwrap_or(1)),
    }
    Ok(())
}

/// The QEMU run `args` ask for.
fn qemu(args: Args, rom: PathBuf) -> Result<Qemu> {
    let mut q = Qemu::new(args.machine, rom);
    q.memory_mib = args.memory;
    q.cpus = args.cpus;
    q.accel = if args.kvm { Accel::Kvm } else { Accel::Tcg };
    q.timeout = Duration::from_secs(600);
    let default_kernel = args.kernel.is_none();
    q.kernel = Some(match args.kernel {
        Some(k) => k,
        None => linux_assets::stock_kernel()?,
    });
    q.initrd = match (args.initrd, default_kernel) {
        (Some(i), _) => Some(i),
        (None, true) => Some(checking_initramfs(args.cpus, args.memory)?),
        (None, false) => None,
    };
    let mut cmdline = args
        .append
        .unwrap_or_else(|| format!("console=ttyS0 panic=-1 {TOKEN}"));
    if let (Machine::Microvm, false, Some(khz)) = (args.machine, args.kvm, bench::tsc_khz())
        && !cmdline.contains("tsc_early_khz")
    {
        cmdline += &format!(" tsc_early_khz={khz}");
    }
    q.append = Some(cmdline);
    if let Some(level) = args.log_level {
        q.fw_cfg_string(fw_cfg::LOG_LEVEL, &level);
    }
    if default_kernel {
        // /init writes the userspace marker once its checks pass.
        q.exit_ports = vec![marker::USER_PORT];
    }
    Ok(q)
}

/// The initramfs whose /init checks the CPUs, memory and command line.
fn checking_initramfs(cpus: u32, memory_mib: u64) -> Result<PathBuf> {
    let spec = InitramfsSpec {
        expect_cpus: cpus,
        expect_mem_mib: memory_mib,
        cmdline_token: TOKEN.into(),
        payload_len: 1 << 20,
        poweroff: true,
        kernel_reserves_mib: 0,
    };
    std::fs::create_dir_all(linux_assets::cache_dir())?;
    let path = linux_assets::cache_dir().join("run-initramfs.cpio");
    Ok(linux_assets::build_initramfs(&spec, &path)?.path)
}
