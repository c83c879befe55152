//! `cargo xtask kernel`: a small, instrumented Linux for the bench, built from
//! Debian's `linux-source-6.1`. A tinyconfig plus what a QEMU guest needs (serial
//! console, initramfs, ACPI, PCI, SMP, PVH entry, /dev/port), LZ4-compressed, and
//! NEMU's marker: `outb(2, 0xf6)` in `kernel_init()` right after
//! `rcu_end_inkernel_boot()`, so tKernel ends at the kernel's hand-over to
//! userspace without depending on the initramfs. Cached after the first build
//! (4–5 minutes on 2 cores). The build also keeps the uncompressed `vmlinux`,
//! which boots through its PVH entry.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::linux_assets::cache_dir;

const SOURCE_PACKAGE: &str = "linux-source-6.1";
const BUILD_PACKAGES: &[&str] = &[
    "linux-source-6.1",
    "build-essential",
    "flex",
    "bison",
    "bc",
    "libelf-dev",
    "libssl-dev",
    "cpio",
    "xz-utils",
];

/// Options switched on over tinyconfig (checked after olddefconfig).
const OPTIONS: &[&str] = &[
    "64BIT",
    "PRINTK",
    "TTY",
    "SERIAL_8250",
    "SERIAL_8250_CONSOLE",
    "BLK_DEV_INITRD",
    "BINFMT_ELF",
    "BINFMT_SCRIPT",
    "DEVTMPFS",
    "PROC_FS",
    "SYSFS",
    "ACPI",
    "PCI",
    "SMP",
    "HYPERVISOR_GUEST",
    "PVH",
    "DEVPORT",
    "KERNEL_LZ4",
];

/// The marker patch: after this line of init/main.c...
const ANCHOR: &str = "\trcu_end_inkernel_boot();\n";
/// ...this one goes in: the contract's userspace marker.
fn marker() -> String {
    format!(
        "\toutb({}, {:#x}); /* ferrite bench: first userspace instruction is next */\n",
        ferrite_contract::marker::USER,
        ferrite_contract::marker::USER_PORT
    )
}

pub fn path() -> PathBuf {
    cache_dir().join("bzImage-small")
}

/// The same kernel's uncompressed ELF image, with its PVH entry note.
pub fn vmlinux_path() -> PathBuf {
    cache_dir().join("vmlinux-small")
}

/// Builds (or returns the cached) small kernel, as a bzImage.
pub fn build() -> Result<PathBuf> {
    let out = path();
    if out.exists() && vmlinux_path().exists() {
        return Ok(out);
    }
    install_build_dependencies()?;
    let tarball = std::fs::read_dir("/usr/src")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.to_string_lossy().contains("linux-source-6.1")
                && p.to_string_lossy().ends_with(".tar.xz")
        })
        .context("no /usr/src/linux-source-6.1*.tar.xz (apt-get install linux-source-6.1)")?;
    let work = cache_dir().join("small-kernel");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    run(Command::new("tar")
        .arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(&work)
        .arg("--use-compress-program=xz -T0"))?;
    let src = std::fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_dir())
        .context("the tarball held no directory")?;
    patch_marker(&src.join("init/main.c"))?;
    make(&src, &["tinyconfig"])?;
    let mut config = Command::new(src.join("scripts/config"));
    config.current_dir(&src);
    for o in OPTIONS {
        config.args(["--enable", o]);
    }
    config.args([
        "--disable",
        "KERNEL_GZIP",
        "--disable",
        "KERNEL_XZ",
        "--disable",
        "KERNEL_BZIP2",
    ]);
    run(&mut config)?;
    make(&src, &["olddefconfig"])?;
    let cfg = std::fs::read_to_string(src.join(".config"))?;
    let missing: Vec<_> = OPTIONS
        .iter()
        .filter(|o| !cfg.contains(&format!("CONFIG_{o}=y\n")))
        .collect();
    if !missing.is_empty() {
        bail!(
            "olddefconfig dropped {missing:?}; see {}",
            src.join(".config").display()
        );
    }
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    make(&src, &[&format!("-j{jobs}"), "bzImage"])?;
    std::fs::copy(src.join("arch/x86/boot/bzImage"), &out)?;
    std::fs::copy(src.join("vmlinux"), vmlinux_path())?;
    std::fs::remove_dir_all(&work)?;
    Ok(out)
}

fn install_build_dependencies() -> Result<()> {
    let missing: Vec<&str> = BUILD_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing {}", missing.join(" "));
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .with_context(|| format!("installing {SOURCE_PACKAGE} and the build tools (needs root)"))
}

/// Inserts the marker after `rcu_end_inkernel_boot();` (once).
pub fn patch_source(source: &str) -> Result<String> {
    let marker = marker();
    if source.contains(&marker) {
        return Ok(source.to_string());
    }
    let at = source
        .find(ANCHOR)
        .context("init/main.c has no rcu_end_inkernel_boot() call to put the marker after")?
        + ANCHOR.len();
    let mut out = String::with_capacity(source.len() + marker.len() + 32);
    out.push_str("#include <asm/io.h>\n");
    out.push_str(&source[..at]);
    out.push_str(&marker);
    out.push_str(&source[at..]);
    Ok(out)
}

fn patch_marker(main_c: &Path) -> Result<()> {
    let src = std::fs::read_to_string(main_c)?;
    std::fs::write(main_c, patch_source(&src)?)?;
    Ok(())
}

fn make(src: &Path, args: &[&str]) -> Result<()> {
    run(Command::new("make")
        .current_dir(src)
        .arg("ARCH=x86_64")
        .args(args))
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_goes_right_after_rcu_end_inkernel_boot_once() {
        let src = "static int kernel_init(void *unused)\n{\n\trcu_end_inkernel_boot();\n\tdo_sysctl_args();\n";
        let patched = patch_source(src).unwrap();
        assert!(patched.starts_with("#include <asm/io.h>\n"));
        assert!(patched.contains("\trcu_end_inkernel_boot();\n\toutb(2, 0xf6);"));
        assert_eq!(patch_source(&patched).unwrap(), patched);
        assert!(patch_source("int main(void) {}").is_err());
    }
}
