//! One way to start QEMU, shared by the tests and the bench: fixed arguments,
//! the serial port captured to a file, the whole process timed by blocking in
//! wait4() (which also yields peak RSS) and killed by a watchdog thread on timeout.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

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
    fn arg(self) -> &'static str {
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
}

#[derive(Clone, Debug)]
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
        }
    }

    /// Arguments after the program name; the serial port goes to `serial`.
    fn args_with_serial(&self, serial: &str) -> Vec<String> {
        let mut a: Vec<String> = [
            "-M",
            self.machine.arg(),
            "-accel",
            match self.accel {
                Accel::Tcg => "tcg",
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
        std::iter::once("qemu-system-x86_64".to_string())
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
        let dir = std::env::temp_dir().join(format!("ferrite-qemu-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
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
        let child = Command::new("qemu-system-x86_64")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path)?)
            .spawn()
            .context("starting qemu-system-x86_64 (apt-get install qemu-system-x86)")?;
        let pid = child.id() as libc::pid_t;
        let done = Arc::new(AtomicBool::new(false));
        let timed_out = Arc::new(AtomicBool::new(false));
        let watchdog = {
            let (done, timed_out, timeout) = (done.clone(), timed_out.clone(), self.timeout);
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
        // QEMU waits for the QMP client before it runs anything; the
        // connection stays open until QEMU exits.
        let qmp = paused.then(|| {
            crate::qmp::Qmp::connect(&qmp_path, self.timeout.min(Duration::from_secs(10)))
        });
        let cont = match qmp {
            Some(Ok(mut q)) => match q.cont() {
                Ok(t) => Some((q, t)),
                Err(_) => {
                    // SAFETY: kill(2) on our own child, not yet reaped.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    None
                }
            },
            Some(Err(_)) => {
                // SAFETY: kill(2) on our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                None
            }
            None => None,
        };
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
        let serial =
            String::from_utf8_lossy(&std::fs::read(&serial_path).unwrap_or_default()).into_owned();
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let _ = std::fs::remove_file(&serial_path);
        let _ = std::fs::remove_file(&stderr_path);
        let _ = std::fs::remove_file(&qmp_path);
        Ok(Outcome {
            exit_code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
            signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
            timed_out: timed_out.load(Ordering::Acquire),
            wall,
            max_rss_kib: usage.ru_maxrss as u64,
            serial,
            stderr,
            from_cont,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(code: Option<i32>) -> Outcome {
        Outcome {
            exit_code: code,
            signal: None,
            timed_out: false,
            wall: Duration::ZERO,
            max_rss_kib: 0,
            serial: String::new(),
            stderr: String::new(),
            from_cont: None,
        }
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
        q.exit_ports = vec![0xF4];
        let c = q.command_line();
        assert!(c.contains("-M microvm,pit=on"));
        assert!(c.contains("-nodefaults -no-reboot"));
        assert!(c.contains("isa-debug-exit,iobase=0xf4,iosize=1"));
        assert!(c.contains("'console=ttyS0 quiet'"));
    }
}
