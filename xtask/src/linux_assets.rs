//! The real-world kernel and the initramfs the tests and the bench boot: Debian's
//! stock kernel (fetched with `apt-get download`, cached) and a busybox initramfs
//! whose /init checks what the firmware passed on.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};

/// `$FERRITE_CACHE`, else `target/ferrite-cache`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("FERRITE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::root().join("target/ferrite-cache"))
}

/// Runs `cmd` and returns its standard output; an error with its standard
/// error when it fails.
pub(crate) fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Debian's stock kernel (`linux-image-amd64`), or `$FERRITE_KERNEL`.
pub fn stock_kernel() -> Result<PathBuf> {
    if let Some(k) = std::env::var_os("FERRITE_KERNEL") {
        let k = PathBuf::from(k);
        ensure!(k.exists(), "FERRITE_KERNEL={} does not exist", k.display());
        return Ok(k);
    }
    let cache = cache_dir();
    if let Some(k) = cached_kernel(&cache) {
        return Ok(k);
    }
    // One download per process: tests that run side by side (the two parity
    // comparisons) would otherwise share the work directory below. Another
    // process's copy lands whole (renamed into place).
    static DOWNLOAD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = DOWNLOAD.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = cached_kernel(&cache) {
        return Ok(k);
    }
    std::fs::create_dir_all(&cache)?;
    let deps = output(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))
        .context("resolving linux-image-amd64 (run apt-get update)")?;
    let package = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .context("linux-image-amd64 depends on no linux-image-*-amd64 package")?
        .to_string();
    let work = cache.join(format!("download-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    output(
        Command::new("apt-get")
            .args(["download", &package])
            .current_dir(&work),
    )
    .with_context(|| format!("apt-get download {package} (run apt-get update)"))?;
    let deb = std::fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download produced no .deb")?;
    let tree = work.join("tree");
    output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
    let vmlinuz = std::fs::read_dir(tree.join("boot"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .with_context(|| format!("{package} holds no /boot/vmlinuz-*"))?;
    let dest = cache.join(vmlinuz.file_name().unwrap());
    let partial = work.join("vmlinuz.partial");
    std::fs::copy(&vmlinuz, &partial)?;
    std::fs::rename(&partial, &dest)?;
    std::fs::remove_dir_all(&work)?;
    Ok(dest)
}

fn cached_kernel(cache: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .collect();
    found.sort();
    found.pop()
}

/// busybox from `busybox-static`.
pub fn busybox() -> Result<PathBuf> {
    let p = PathBuf::from("/bin/busybox");
    let data = std::fs::read(&p).context("no /bin/busybox: apt-get install busybox-static")?;
    let file = object::read::elf::ElfFile64::<object::Endianness>::parse(&*data)
        .context("/bin/busybox is not a 64-bit ELF")?;
    use object::read::elf::ProgramHeader;
    let dynamic = file
        .elf_program_headers()
        .iter()
        .any(|ph| ph.p_type(file.endian()) == object::elf::PT_INTERP);
    if dynamic {
        bail!("/bin/busybox is dynamically linked: apt-get install busybox-static");
    }
    Ok(p)
}

#[derive(Clone, Debug)]
pub struct InitramfsSpec {
    pub expect_cpus: u32,
    pub expect_mem_mib: u64,
    /// A word /init must find on the kernel command line.
    pub cmdline_token: String,
    pub payload_len: usize,
    /// Kept for callers; /init always powers off after reporting.
    pub poweroff: bool,
    /// MiB the kernel itself takes out of MemTotal beyond its usual share:
    /// 64 for the swiotlb bounce buffers it sets up when memory may reach
    /// above 4 GiB (`maxmem=64G`), however little RAM is plugged in.
    pub kernel_reserves_mib: u64,
}

#[derive(Clone, Debug)]
pub struct InitramfsInfo {
    pub path: PathBuf,
    pub payload_sha256: String,
}

const INIT: &str = include_str!("../assets/init.sh");

/// Deterministic pseudo-random payload bytes.
fn payload(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes a newc cpio archive for `spec` to `out`.
pub fn build_initramfs(spec: &InitramfsSpec, out: &Path) -> Result<InitramfsInfo> {
    let busybox = std::fs::read(busybox()?)?;
    let payload = payload(spec.payload_len);
    let sha = format!("{:x}", Sha256::digest(&payload));
    // MemTotal is RAM minus the kernel's own image and reservations: between 80 %
    // and 100 % of -m for the sizes used here.
    let mem_kb = spec.expect_mem_mib * 1024;
    let expect = format!(
        "EXPECT_TOKEN='{}'\nEXPECT_SHA256={sha}\nEXPECT_CPUS={}\nEXPECT_MEM_MIN_KB={}\nEXPECT_MEM_MAX_KB={}\n",
        spec.cmdline_token,
        spec.expect_cpus,
        (mem_kb * 8 / 10).saturating_sub(spec.kernel_reserves_mib * 1024),
        mem_kb
    );
    write_archive(
        busybox,
        INIT,
        vec![
            file("expect", 0o644, expect.into_bytes()),
            file("payload.bin", 0o644, payload),
        ],
        out,
    )?;
    Ok(InitramfsInfo {
        path: out.to_path_buf(),
        payload_sha256: sha,
    })
}

/// An initramfs whose /init prints what the guest sees of its firmware's
/// set-up (assets/collect.sh), for the SeaBIOS comparison (parity.rs).
pub fn build_collect_initramfs(out: &Path) -> Result<PathBuf> {
    write_archive(std::fs::read(busybox()?)?, COLLECT, Vec::new(), out)?;
    Ok(out.to_path_buf())
}

const COLLECT: &str = include_str!("../assets/collect.sh");

type CpioEntry = (cpio::NewcBuilder, Vec<u8>);

fn file(name: &str, mode: u32, data: Vec<u8>) -> CpioEntry {
    (
        cpio::NewcBuilder::new(name).mode(0o100000 | mode).nlink(1),
        data,
    )
}

/// busybox, /init and `files`, with the directories and /dev/console they need.
fn write_archive(busybox: Vec<u8>, init: &str, files: Vec<CpioEntry>, out: &Path) -> Result<()> {
    let dir = |name: &str| {
        (
            cpio::NewcBuilder::new(name).mode(0o040755).nlink(2),
            Vec::new(),
        )
    };
    let mut entries = vec![
        dir("bin"),
        dir("dev"),
        dir("proc"),
        dir("sys"),
        (
            cpio::NewcBuilder::new("dev/console")
                .mode(0o020600)
                .nlink(1)
                .rdev_major(5)
                .rdev_minor(1),
            Vec::new(),
        ),
        file("bin/busybox", 0o755, busybox),
        file("init", 0o755, init.as_bytes().to_vec()),
    ];
    entries.extend(files);
    let inputs = entries
        .into_iter()
        .enumerate()
        .map(|(i, (b, data))| (b.ino(i as u32 + 1), Cursor::new(data)));
    let archive = cpio::write_cpio(inputs, Vec::new())?;
    std::fs::write(out, archive).with_context(|| format!("writing {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initramfs_round_trips() {
        if busybox().is_err() {
            panic!("busybox-static is not installed (bash .ci/setup installs it)");
        }
        let dir = std::env::temp_dir().join(format!("ferrite-initramfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = InitramfsSpec {
            expect_cpus: 4,
            expect_mem_mib: 512,
            cmdline_token: "ferrite.test=7".into(),
            payload_len: 1000,
            poweroff: true,
            kernel_reserves_mib: 0,
        };
        let info = build_initramfs(&spec, &dir.join("i.cpio")).unwrap();
        let mut data = Cursor::new(std::fs::read(&info.path).unwrap());
        let mut names = Vec::new();
        loop {
            let r = cpio::NewcReader::new(data).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            let (name, mode, size) = (
                r.entry().name().to_string(),
                r.entry().mode(),
                r.entry().file_size(),
            );
            if name == "init" {
                assert_eq!(mode, 0o100755);
            }
            if name == "payload.bin" {
                assert_eq!(size, 1000);
            }
            if name == "dev/console" {
                assert_eq!((r.entry().rdev_major(), r.entry().rdev_minor()), (5, 1));
            }
            names.push(name);
            data = r.skip().unwrap();
        }
        for n in [
            "init",
            "expect",
            "bin/busybox",
            "payload.bin",
            "dev/console",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        }
        assert_eq!(info.payload_sha256.len(), 64);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kernel_override_and_cache() {
        let dir = std::env::temp_dir().join(format!("ferrite-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("vmlinuz-1"), b"x").unwrap();
        std::fs::write(dir.join("vmlinuz-2"), b"x").unwrap();
        assert_eq!(cached_kernel(&dir), Some(dir.join("vmlinuz-2")));
        assert_eq!(cached_kernel(&dir.join("nope")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
