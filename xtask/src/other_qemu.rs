//! Another QEMU beside the system's, for running the tests and the bench on
//! it: its packages fetched from another suite of the system's Debian archive
//! (by default the backports of the release, which carry current QEMU) and
//! unpacked under `target/qemu/`, without installing anything. apt works on a
//! private copy of its configuration there, so the system's sources, lists and
//! packages stay as they were. The archive's address is the system's own:
//! taken from its deb822 sources, never written here.
//!
//! The unpacked QEMU runs with the system's libraries (a backport is built
//! for them) and finds its own option ROMs and qboot beside its binary;
//! SeaBIOS and OVMF come from the system's packages, as they do for an
//! installed one. `FERRITE_QEMU` (see [`crate::qemu::QEMU_ENV`]) points the
//! tests and the bench at it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::linux_assets::output;

/// The packages that make a runnable `qemu-system-x86_64` with its ROMs.
pub const PACKAGES: [&str; 3] = ["qemu-system-x86", "qemu-system-common", "qemu-system-data"];

/// One stanza of a deb822 `.sources` file: the fields this needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stanza {
    pub types: Vec<String>,
    pub uris: Vec<String>,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub signed_by: Option<String>,
}

/// The stanzas of a deb822 sources file (blank lines separate stanzas;
/// comments and fields this does not need are skipped; a stanza with
/// `Enabled: no` is left out).
pub fn parse_sources(text: &str) -> Vec<Stanza> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut s = Stanza::default();
        let mut enabled = true;
        for line in block.lines() {
            let line = line.trim_end();
            if line.starts_with('#') || line.starts_with(' ') || line.is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let words = || value.split_whitespace().map(str::to_string).collect();
            match key.trim().to_ascii_lowercase().as_str() {
                "types" => s.types = words(),
                "uris" => s.uris = words(),
                "suites" => s.suites = words(),
                "components" => s.components = words(),
                "signed-by" => s.signed_by = Some(value.trim().to_string()),
                "enabled" => enabled = !value.trim().eq_ignore_ascii_case("no"),
                _ => {}
            }
        }
        if enabled && !s.uris.is_empty() && !s.suites.is_empty() {
            out.push(s);
        }
    }
    out
}

/// The suite asked for, as a sources stanza: the system's stanza of binary
/// packages whose suites name `release` (`bookworm`, for
/// `bookworm-backports`) with the suite replaced, keeping its archive and
/// key. None when the system has no such stanza.
pub fn stanza_for_suite(system: &[Stanza], suite: &str) -> Option<Stanza> {
    let release = suite.split('-').next().unwrap_or(suite);
    system
        .iter()
        .find(|s| s.types.iter().any(|t| t == "deb") && s.suites.iter().any(|x| x == release))
        .map(|s| Stanza {
            types: vec!["deb".into()],
            suites: vec![suite.to_string()],
            components: if s.components.is_empty() {
                vec!["main".into()]
            } else {
                s.components.clone()
            },
            ..s.clone()
        })
}

/// The stanza as deb822 text.
pub fn render(s: &Stanza) -> String {
    let mut out = format!(
        "Types: {}\nURIs: {}\nSuites: {}\nComponents: {}\n",
        s.types.join(" "),
        s.uris.join(" "),
        s.suites.join(" "),
        s.components.join(" ")
    );
    if let Some(key) = &s.signed_by {
        out.push_str(&format!("Signed-By: {key}\n"));
    }
    out
}

/// The version in a `.deb`'s file name (`qemu-system-x86_1%3a10.0.2+ds-2_amd64.deb`
/// gives `10.0.2+ds-2`): the epoch, URL-encoded by apt, dropped.
pub fn deb_version(file_name: &str) -> Option<String> {
    let stem = file_name.strip_suffix(".deb")?;
    let mut parts = stem.split('_');
    let (_, version) = (parts.next()?, parts.next()?);
    let version = version.replace("%3a", ":");
    let version = version.rsplit(':').next()?.to_string();
    (!version.is_empty()).then_some(version)
}

/// Fetches and unpacks the QEMU of `suite` under `dest`, returning the path
/// of its `qemu-system-x86_64`.
pub fn fetch(suite: &str, dest: &Path) -> Result<PathBuf> {
    let system = system_sources()?;
    let stanza = stanza_for_suite(&system, suite).with_context(|| {
        format!(
            "no deb822 source of the system names {} (its /etc/apt/sources.list.d/*.sources)",
            suite.split('-').next().unwrap_or(suite)
        )
    })?;
    let apt = dest.join("apt");
    for d in ["sources", "lists/partial", "cache/archives/partial", "debs"] {
        std::fs::create_dir_all(apt.join(d))?;
    }
    std::fs::write(apt.join("sources/other.sources"), render(&stanza))?;
    let options = |cmd: &mut Command| {
        for (key, value) in [
            ("Dir::Etc::SourceList", "/dev/null".into()),
            ("Dir::Etc::SourceParts", apt.join("sources")),
            ("Dir::State::Lists", apt.join("lists")),
            ("Dir::Cache", apt.join("cache")),
            ("Debug::NoLocking", "1".into()),
        ] {
            cmd.arg("-o").arg(format!("{key}={}", value.display()));
        }
    };
    let mut update = Command::new("apt-get");
    update.arg("-qq");
    options(&mut update);
    output(update.arg("update")).context("apt-get update (of the private lists)")?;

    let debs = apt.join("debs");
    for old in std::fs::read_dir(&debs)? {
        std::fs::remove_file(old?.path())?;
    }
    let mut download = Command::new("apt-get");
    download.arg("-qq").current_dir(&debs);
    options(&mut download);
    download.arg("download");
    for p in PACKAGES {
        download.arg(format!("{p}/{suite}"));
    }
    output(&mut download).context("apt-get download")?;

    let files: Vec<PathBuf> = std::fs::read_dir(&debs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    let x86 = files
        .iter()
        .find(|p| file_name(p).starts_with("qemu-system-x86_"))
        .context("apt-get download gave no qemu-system-x86 package")?;
    let version = deb_version(&file_name(x86)).context("the package's version")?;
    let root = dest.join(&version);
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::create_dir_all(&root)?;
    for deb in &files {
        output(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root))?;
    }
    let binary = root.join("usr/bin/qemu-system-x86_64");
    if !binary.is_file() {
        bail!("{} has no usr/bin/qemu-system-x86_64", root.display());
    }
    output(Command::new(&binary).arg("--version"))
        .context("the unpacked QEMU does not run with this system's libraries")?;
    Ok(binary)
}

fn system_sources() -> Result<Vec<Stanza>> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/etc/apt/sources.list.d")? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "sources") {
            all.extend(parse_sources(&std::fs::read_to_string(&path)?));
        }
    }
    Ok(all)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSTEM: &str = "\
Types: deb
# a comment
URIs: http://archive.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://archive.example/debian
Suites: bookworm

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://off.example/
Suites: bookworm
Enabled: no
";

    #[test]
    fn the_suite_takes_the_systems_archive_and_key() {
        let system = parse_sources(SYSTEM);
        assert_eq!(system.len(), 3, "{system:?}");
        let s = stanza_for_suite(&system, "bookworm-backports").unwrap();
        assert_eq!(s.uris, ["http://archive.example/debian"]);
        assert_eq!(s.suites, ["bookworm-backports"]);
        assert_eq!(s.types, ["deb"]);
        assert_eq!(
            render(&s),
            "Types: deb\nURIs: http://archive.example/debian\nSuites: bookworm-backports\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
        // Another release than the system's has no archive here.
        assert_eq!(stanza_for_suite(&system, "trixie-backports"), None);
        // Sources without any binary stanza for it, or malformed ones.
        assert_eq!(
            stanza_for_suite(
                &parse_sources("Types: deb-src\nURIs: x\nSuites: bookworm\n"),
                "bookworm-backports"
            ),
            None
        );
        assert!(parse_sources("garbage\n\nURIs:\nSuites:\n").is_empty());
    }

    #[test]
    fn versions_from_package_file_names() {
        assert_eq!(
            deb_version("qemu-system-x86_1%3a10.0.2+ds-2+deb13u1~bpo12+1_amd64.deb").as_deref(),
            Some("10.0.2+ds-2+deb13u1~bpo12+1")
        );
        assert_eq!(
            deb_version("qemu-system-x86_7.2+dfsg-7_amd64.deb").as_deref(),
            Some("7.2+dfsg-7")
        );
        assert_eq!(deb_version("qemu.deb"), None);
        assert_eq!(deb_version("qemu_1%3a_amd64.deb"), None);
        assert_eq!(deb_version("not-a-deb"), None);
    }
}
