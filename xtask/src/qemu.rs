//! One way to start QEMU, shared by the tests and the bench: fixed arguments,
//! the serial port captured to a file, the whole process timed by blocking in
//! wait4() (which also yields peak RSS) and killed by a watchdog thread on timeout.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// The environment variable that names another QEMU to run instead of
/// `qemu-system-x86_64` from `PATH`: the path of its `qemu-system-x86_64`
/// (for instance one that `cargo xtask fetch-qemu` unpacked).
pub const QEMU_ENV: &str = "FERRITE_QEMU";

/// The QEMU every boot runs: `$FERRITE_QEMU` when set (a relative path is
/// taken from the workspace's root, as the tests run in their own
/// directory), else `qemu-system-x86_64` from `PATH`.
pub fn binary() -> PathBuf {
    match std::env::var_os(QEMU_ENV) {
        Some(path) if !path.is_empty() => crate::root().join(path),
        _ => PathBuf::from("qemu-system-x86_64"),
    }
}

/// [`binary`] as a file, with its links resolved: what `perf probe` and
/// `valgrind` need, and where the ROMs that come with it are found.
pub fn resolved_binary() -> Result<PathBuf> {
    let bin = binary();
    let found = if bin.components().count() > 1 {
        Some(bin.clone())
    } else {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(&bin))
            .find(|p| p.is_file())
    };
    let found = found.with_context(|| {
        format!(
            "{} not found (apt-get install qemu-system-x86, or set {QEMU_ENV})",
            bin.display()
        )
    })?;
    std::fs::canonicalize(&found).with_context(|| format!("resolving {}", found.display()))
}

/// A firmware image that comes with the QEMU in use (`name` in the data
/// directory beside its binary, `../share/qemu`), else the system's
/// (`/usr/share/qemu`): so that a QEMU of another version is compared with
/// the qboot it ships.
pub fn shipped_rom(name: &str) -> PathBuf {
    shipped_rom_beside(resolved_binary().ok().as_deref(), name)
}

fn shipped_rom_beside(binary: Option<&std::path::Path>, name: &str) -> PathBuf {
    binary
        .and_then(|b| b.parent()?.parent())
        .map(|prefix| prefix.join("share/qemu").join(name))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/share/qemu").join(name))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Machine {
    Pc,
    Q35,
    Microvm,
}

impl Machine {
    pub const ALL: [Machine; 3] = [Machine::Pc, Machine::Q35, Machine::Microvm];

    pub fn name(self) -> &'static str {
        match self {
            Machine::Pc => "pc",
            Machine::Q35 => "q35",
            Machine::Microvm => "microvm",
        }
    }

    /// The `-M` value: microvm needs its PIT for the kernel to calibrate under TCG.
    pub fn arg(self) -> &'static str {
        match self {
            Machine::Pc => "pc",
            Machine::Q35 => "q35",
            Machine::Microvm => "microvm,pit=on",
        }
    }
}

impl std::str::FromStr for Machine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Machine::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown machine {s} (pc, q35, microvm)"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    /// TCG with every vCPU in one host thread, taking turns (`thread=single`).
    /// For a guest with more vCPUs than the host has cores: one thread per
    /// vCPU then starves some of them while tests run side by side, and the
    /// guest kernel's soft-lockup watchdog and its waits for other CPUs can
    /// stall a boot for minutes.
    TcgOneThread,
    Kvm,
}

#[derive(Clone, Debug)]
pub struct Qemu {
    pub machine: Machine,
    pub accel: Accel,
    pub memory_mib: u64,
    pub cpus: u32,
    pub bios: PathBuf,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: Option<String>,
    /// Each gets `-device isa-debug-exit,iobase=P,iosize=1`.
    pub exit_ports: Vec<u16>,
    pub extra: Vec<String>,
    pub timeout: Duration,
    /// Let a guest reset restart the machine (default: QEMU exits, -no-reboot).
    pub allow_reboot: bool,
    /// The machine's ACPI (default on); off gives `-M <machine>,acpi=off`.
    pub acpi: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub wall: Duration,
    pub max_rss_kib: u64,
    pub serial: String,
    pub stderr: String,
    /// With [`Qemu::run_from_cont`]: from QMP's `cont` to the exit; None if
    /// QMP failed (QEMU was then killed).
    pub from_cont: Option<Duration>,
}

impl Outcome {
    /// The value the guest wrote to isa-debug-exit, if that is why QEMU exited.
    pub fn debug_exit_value(&self) -> Option<u8> {
        match self.exit_code {
            Some(c) if c > 1 && c % 2 == 1 && c <= 511 => Some(((c - 1) / 2) as u8),
            _ => None,
        }
    }
}

impl Qemu {
    pub fn new(machine: Machine, bios: PathBuf) -> Qemu {
        Qemu {
            machine,
            accel: Accel::Tcg,
            memory_mib: 128,
            cpus: 1,
            bios,
            kernel: None,
            initrd: None,
            append: None,
            exit_ports: Vec::new(),
            extra: Vec::new(),
            timeout: Duration::from_secs(60),
            allow_reboot: false,
            acpi: true,
        }
    }

    /// One of ferrite's own options (`ferrite_contract::fw_cfg`):
    /// `-fw_cfg name=<name>,string=<value>`.
    pub fn fw_cfg_string(&mut self, name: &str, value: &str) {
        self.extra
            .extend(["-fw_cfg".into(), format!("name={name},string={value}")]);
    }

    /// The `-M` argument, with `acpi=off` when asked.
    fn machine_arg(&self) -> String {
        if self.acpi {
            self.machine.arg().to_string()
        } else {
            format!("{},acpi=off", self.machine.arg())
        }
    }

    /// Arguments after the program name; the serial port goes to `serial`.
    fn args_with_serial(&self, serial: &str) -> Vec<String> {
        let machine = self.machine_arg();
        let mut a: Vec<String> = [
            "-M",
            &machine,
            "-accel",
            match self.accel {
                Accel::Tcg => "tcg",
                Accel::TcgOneThread => "tcg,thread=single",
                Accel::Kvm => "kvm",
            },
            "-nodefaults",
            "-no-reboot",
            "-display",
            "none",
        ]
        .iter()
        .filter(|s| !(self.allow_reboot && **s == "-no-reboot"))
        .map(|s| s.to_string())
        .collect();
        a.extend([
            "-m".into(),
            format!("{}M", self.memory_mib),
            "-smp".into(),
            self.cpus.to_string(),
        ]);
        a.extend([
            "-bios".into(),
            self.bios.display().to_string(),
            "-serial".into(),
            serial.into(),
        ]);
        if let Some(k) = &self.kernel {
            a.extend(["-kernel".into(), k.display().to_string()]);
        }
        if let Some(i) = &self.initrd {
            a.extend(["-initrd".into(), i.display().to_string()]);
        }
        if let Some(c) = &self.append {
            a.extend(["-append".into(), c.clone()]);
        }
        for p in &self.exit_ports {
            a.extend([
                "-device".into(),
                format!("isa-debug-exit,iobase={p:#x},iosize=1"),
            ]);
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Arguments with the serial port on stdio (for running by hand or under perf).
    pub fn args(&self) -> Vec<String> {
        self.args_with_serial("stdio")
    }

    /// The command line, shell-quoted enough to paste.
    pub fn command_line(&self) -> String {
        std::iter::once(binary().display().to_string())
            .chain(self.args().into_iter().map(|a| {
                if a.contains(' ') || a.is_empty() {
                    format!("'{a}'")
                } else {
                    a
                }
            }))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs QEMU to completion (or the timeout).
    pub fn run(&self) -> Result<Outcome> {
        self.run_inner(false)
    }

    /// Starts QEMU paused (`-S`, QMP on a Unix socket that QEMU waits on),
    /// negotiates QMP and times from `cont` to the process's exit
    /// ([`Outcome::from_cont`]): the guest's time without QEMU's start-up.
    pub fn run_from_cont(&self) -> Result<Outcome> {
        self.run_inner(true)
    }

    fn run_inner(&self, paused: bool) -> Result<Outcome> {
        let dir = scratch_dir()?;
        let n = next_id();
        let serial_path = dir.join(format!("serial-{n}.txt"));
        let stderr_path = dir.join(format!("stderr-{n}.txt"));
        let qmp_path = dir.join(format!("qmp-{n}.sock"));
        let mut args = self.args_with_serial(&format!("file:{}", serial_path.display()));
        if paused {
            let _ = std::fs::remove_file(&qmp_path);
            args.extend([
                "-S".into(),
                "-qmp".into(),
                format!("unix:{},server=on,wait=on", qmp_path.display()),
            ]);
        }
        let start = Instant::now();
        let child = Command::new(binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path)?)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (apt-get install qemu-system-x86)",
                    binary().display()
                )
            })?;
        let timeout = self.timeout;
        let waited = wait_timed_with(child, start, timeout, |pid| {
            if !paused {
                return None;
            }
            // QEMU waits for the QMP client before it runs anything; the
            // connection stays open until QEMU exits.
            let cont = crate::qmp::Qmp::connect(&qmp_path, timeout.min(Duration::from_secs(10)))
                .and_then(|mut q| q.cont().map(|t| (q, t)));
            if cont.is_err() {
                // SAFETY: kill(2) on our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            cont.ok()
        })?;
        let serial =
            String::from_utf8_lossy(&std::fs::read(&serial_path).unwrap_or_default()).into_owned();
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let _ = std::fs::remove_file(&serial_path);
        let _ = std::fs::remove_file(&stderr_path);
        let _ = std::fs::remove_file(&qmp_path);
        Ok(waited.outcome(serial, stderr))
    }

    /// Runs QEMU like [`Qemu::run`], with the serial port and an
    /// `isa-debugcon` on each of `debugcon_ports` read through FIFOs while the
    /// run is timed: every serial line and every debug-console line (port 0xE9)
    /// or byte (any other port: the boot markers) comes back with the host time
    /// of its arrival since QEMU was started.
    pub fn run_with_arrivals(&self, debugcon_ports: &[u16]) -> Result<(Outcome, Vec<Arrival>)> {
        let dir = scratch_dir()?;
        let n = next_id();
        let mut fifos = vec![(Channel::Serial, dir.join(format!("serial-{n}")))];
        for &port in debugcon_ports {
            fifos.push((
                Channel::Debugcon(port),
                dir.join(format!("debugcon-{n}-{port:x}")),
            ));
        }
        // QEMU's pipe chardev reads `P.in` and writes `P.out`. With one FIFO
        // for both it would read back (and feed the guest) what it wrote.
        let mut readers = Vec::new();
        for (channel, path) in &fifos {
            for end in ["in", "out"] {
                let fifo = path.with_extension(end);
                make_fifo(&fifo)?;
            }
            // Opened read-write so that neither side blocks in open(2); the
            // reader stops when QEMU has been reaped, not at EOF.
            let out = path.with_extension("out");
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&out)
                .with_context(|| format!("opening {}", out.display()))?;
            readers.push((*channel, file));
        }
        let mut args = self.args_with_serial(&format!("pipe:{}", fifos[0].1.display()));
        for (i, (channel, path)) in fifos.iter().enumerate().skip(1) {
            let Channel::Debugcon(port) = channel else {
                continue;
            };
            args.extend([
                "-chardev".into(),
                format!("pipe,id=ferrite-dc{i},path={}", path.display()),
                "-device".into(),
                format!("isa-debugcon,iobase={port:#x},chardev=ferrite-dc{i}"),
            ]);
        }
        let stderr_path = dir.join(format!("stderr-{n}.txt"));
        let done = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let reader = {
            let done = done.clone();
            std::thread::spawn(move || read_arrivals(readers, start, &done))
        };
        let child = Command::new(binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path)?)
            .spawn();
        let waited = child
            .with_context(|| {
                format!(
                    "starting {} (apt-get install qemu-system-x86)",
                    binary().display()
                )
            })
            .and_then(|child| wait_timed(child, start, self.timeout));
        done.store(true, Ordering::Release);
        let arrivals = reader
            .join()
            .map_err(|_| anyhow::anyhow!("the serial reader panicked"))?;
        for (_, path) in &fifos {
            let _ = std::fs::remove_file(path.with_extension("in"));
            let _ = std::fs::remove_file(path.with_extension("out"));
        }
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let _ = std::fs::remove_file(&stderr_path);
        let waited = waited?;
        let serial = arrivals
            .iter()
            .filter(|a| a.channel == Channel::Serial)
            .map(|a| format!("{}\n", a.text))
            .collect();
        Ok((waited.outcome(serial, stderr), arrivals))
    }
}

/// Where an [`Arrival`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Channel {
    /// COM1: one arrival per line.
    Serial,
    /// An isa-debugcon: one per line on 0xE9 (ferrite's timeline report), one
    /// per byte elsewhere (the markers).
    Debugcon(u16),
}

/// Something the guest wrote, with when the host got it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Arrival {
    /// Host time of the first byte's arrival, ms since QEMU was started.
    pub host_ms: f64,
    pub channel: Channel,
    /// The line without its end (`\r\n`), or the marker byte's value in decimal.
    pub text: String,
}

/// The port of QEMU's default debug console, whose output is text.
const DEBUGCON_TEXT_PORT: u16 = 0xE9;

/// Splits what arrives on the FIFOs into stamped lines or bytes, until `done`
/// is set and nothing more is waiting.
fn read_arrivals(
    readers: Vec<(Channel, std::fs::File)>,
    start: Instant,
    done: &AtomicBool,
) -> Vec<Arrival> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut out = Vec::new();
    // Per channel: the partial line and when its first byte came.
    let mut partial: Vec<(Vec<u8>, f64)> = vec![(Vec::new(), 0.0); readers.len()];
    let mut fds: Vec<libc::pollfd> = readers
        .iter()
        .map(|(_, f)| libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut buf = [0u8; 65536];
    loop {
        let finished = done.load(Ordering::Acquire);
        // SAFETY: `fds` is a valid array of pollfd for the files in `readers`,
        // which outlive this call.
        let ready = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                if finished { 0 } else { 20 },
            )
        };
        if ready <= 0 {
            if finished {
                break;
            }
            continue;
        }
        let now = start.elapsed().as_secs_f64() * 1000.0;
        for (i, fd) in fds.iter_mut().enumerate() {
            if fd.revents & libc::POLLIN == 0 {
                continue;
            }
            fd.revents = 0;
            let (channel, mut file) = (readers[i].0, &readers[i].1);
            let Ok(len) = file.read(&mut buf) else {
                continue;
            };
            for &b in &buf[..len] {
                let line =
                    channel == Channel::Serial || channel == Channel::Debugcon(DEBUGCON_TEXT_PORT);
                if !line {
                    out.push(Arrival {
                        host_ms: now,
                        channel,
                        text: b.to_string(),
                    });
                    continue;
                }
                let (text, first) = &mut partial[i];
                if text.is_empty() {
                    *first = now;
                }
                if b == b'\n' {
                    out.push(Arrival {
                        host_ms: *first,
                        channel,
                        text: String::from_utf8_lossy(text).trim_end_matches('\r').into(),
                    });
                    text.clear();
                } else {
                    text.push(b);
                }
            }
        }
    }
    for (i, (text, first)) in partial.into_iter().enumerate() {
        if !text.is_empty() {
            out.push(Arrival {
                host_ms: first,
                channel: readers[i].0,
                text: String::from_utf8_lossy(&text).trim_end_matches('\r').into(),
            });
        }
    }
    out.sort_by(|a, b| a.host_ms.total_cmp(&b.host_ms));
    out
}

/// A new FIFO at `path` (replacing whatever is there).
pub fn make_fifo(path: &std::path::Path) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: mkfifo(3) with a NUL-terminated path we own.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        anyhow::bail!(
            "mkfifo {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn scratch_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ferrite-qemu-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn next_id() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// What wait4() said about a finished QEMU.
struct Waited {
    status: libc::c_int,
    wall: Duration,
    from_cont: Option<Duration>,
    max_rss_kib: u64,
    timed_out: bool,
}

impl Waited {
    fn outcome(self, serial: String, stderr: String) -> Outcome {
        Outcome {
            exit_code: libc::WIFEXITED(self.status).then(|| libc::WEXITSTATUS(self.status)),
            signal: libc::WIFSIGNALED(self.status).then(|| libc::WTERMSIG(self.status)),
            timed_out: self.timed_out,
            wall: self.wall,
            max_rss_kib: self.max_rss_kib,
            serial,
            stderr,
            from_cont: self.from_cont,
        }
    }
}

/// Blocks in wait4() for `child` (started at `start`), killing it after `timeout`.
fn wait_timed(child: std::process::Child, start: Instant, timeout: Duration) -> Result<Waited> {
    wait_timed_with(child, start, timeout, |_| None)
}

/// As [`wait_timed`], running `during` (with the child's pid) once the
/// watchdog runs; the time it returns starts [`Waited::from_cont`].
fn wait_timed_with(
    child: std::process::Child,
    start: Instant,
    timeout: Duration,
    during: impl FnOnce(libc::pid_t) -> Option<(crate::qmp::Qmp, Instant)>,
) -> Result<Waited> {
    let pid = child.id() as libc::pid_t;
    let done = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (done, timed_out) = (done.clone(), timed_out.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + timeout;
            while !done.load(Ordering::Acquire) {
                let now = Instant::now();
                if now >= deadline {
                    timed_out.store(true, Ordering::Release);
                    // SAFETY: kill(2) on our own child, not yet reaped.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return;
                }
                std::thread::park_timeout(deadline - now);
            }
        })
    };
    let cont = during(pid);
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child; blocks until it exits.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    let from_cont = cont.map(|(_, t)| t.elapsed());
    done.store(true, Ordering::Release);
    watchdog.thread().unpark();
    let _ = watchdog.join();
    std::mem::forget(child); // reaped by wait4 above
    anyhow::ensure!(
        r == pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    Ok(Waited {
        status,
        wall,
        from_cont,
        max_rss_kib: usage.ru_maxrss as u64,
        timed_out: timed_out.load(Ordering::Acquire),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(code: Option<i32>) -> Outcome {
        Outcome {
            exit_code: code,
            ..Outcome::default()
        }
    }

    #[test]
    fn a_qemu_is_compared_with_the_roms_it_ships() {
        let dir = std::env::temp_dir().join(format!("ferrite-shipped-{}", std::process::id()));
        let bin = dir.join("usr/bin/qemu-system-x86_64");
        std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
        std::fs::create_dir_all(dir.join("usr/share/qemu")).unwrap();
        std::fs::write(dir.join("usr/share/qemu/qboot.rom"), b"x").unwrap();
        assert_eq!(
            shipped_rom_beside(Some(&bin), "qboot.rom"),
            dir.join("usr/share/qemu/qboot.rom")
        );
        // Not shipped beside it, or no QEMU found: the system's.
        assert_eq!(
            shipped_rom_beside(Some(&bin), "bios-256k.bin"),
            PathBuf::from("/usr/share/qemu/bios-256k.bin")
        );
        assert_eq!(
            shipped_rom_beside(None, "qboot.rom"),
            PathBuf::from("/usr/share/qemu/qboot.rom")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn debug_exit_values() {
        assert_eq!(outcome(Some(33)).debug_exit_value(), Some(0x10));
        assert_eq!(outcome(Some(7)).debug_exit_value(), Some(3));
        // 0 (a triple fault under -no-reboot), 1 (QEMU error) and signals are not
        assert_eq!(outcome(Some(0)).debug_exit_value(), None);
        assert_eq!(outcome(Some(1)).debug_exit_value(), None);
        assert_eq!(outcome(Some(2)).debug_exit_value(), None);
        assert_eq!(outcome(None).debug_exit_value(), None);
    }

    #[test]
    fn command_line_has_the_fixed_arguments() {
        let mut q = Qemu::new(Machine::Microvm, "/x/ferrite.rom".into());
        q.append = Some("console=ttyS0 quiet".into());
        q.exit_ports = vec![ferrite_contract::marker::KERNEL_PORT];
        q.fw_cfg_string(ferrite_contract::fw_cfg::LOG_LEVEL, "debug");
        let c = q.command_line();
        assert!(c.contains("-M microvm,pit=on"));
        assert!(c.contains("-nodefaults -no-reboot"));
        assert!(c.contains("isa-debug-exit,iobase=0xf4,iosize=1"));
        assert!(c.contains("-fw_cfg name=opt/ferrite/log-level,string=debug"));
        assert!(c.contains("'console=ttyS0 quiet'"));
        q.acpi = false;
        assert!(q.command_line().contains("-M microvm,pit=on,acpi=off "));
    }
}
