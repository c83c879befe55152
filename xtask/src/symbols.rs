//! Function symbols of a guest image (ferrite's ELF, a kernel's vmlinux, a
//! System.map, a peer firmware's ELF), for naming addresses.

use std::path::Path;

use anyhow::{Context, Result};

/// Functions sorted by address; each covers up to the next one's start (or its
/// own size when the symbol table gives one).
#[derive(Clone, Debug, Default)]
pub struct Symbols {
    /// (start, end, name)
    ranges: Vec<(u64, u64, String)>,
}

/// A symbol without a size is taken to end at the next one, at most this far.
const MAX_UNSIZED: u64 = 64 * 1024;

impl Symbols {
    /// From (address, size, name) triples; size 0 means unknown.
    pub fn new(mut syms: Vec<(u64, u64, String)>) -> Symbols {
        syms.retain(|s| s.0 != 0 && !s.2.is_empty());
        syms.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        syms.dedup_by_key(|s| s.0);
        let mut ranges = Vec::with_capacity(syms.len());
        for i in 0..syms.len() {
            let (start, size, ref name) = syms[i];
            let next = syms.get(i + 1).map_or(u64::MAX, |s| s.0);
            let end = if size > 0 {
                start.saturating_add(size).min(next)
            } else {
                next.min(start.saturating_add(MAX_UNSIZED))
            };
            ranges.push((start, end, name.clone()));
        }
        Symbols { ranges }
    }

    /// The code symbols of an ELF file, 32 or 64-bit: functions, and the
    /// untyped labels of assembly in executable sections. Rust names are
    /// demangled.
    pub fn from_elf(data: &[u8]) -> Result<Symbols> {
        use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};
        let file = object::File::parse(data).context("not an ELF file")?;
        let syms = file
            .symbols()
            .filter(|s| {
                let in_code = s
                    .section_index()
                    .and_then(|i| file.section_by_index(i).ok())
                    .is_some_and(|sec| sec.kind() == SectionKind::Text);
                s.kind() == SymbolKind::Text
                    || (in_code && matches!(s.kind(), SymbolKind::Unknown | SymbolKind::Label))
            })
            .filter_map(|s| Some((s.address(), s.size(), demangle(s.name().ok()?))))
            .collect();
        Ok(Symbols::new(syms))
    }

    /// A `System.map` (`address type name` per line; text symbols only).
    pub fn from_system_map(text: &str) -> Symbols {
        let syms = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let addr = u64::from_str_radix(f.next()?, 16).ok()?;
                let kind = f.next()?;
                let name = f.next()?;
                matches!(kind, "t" | "T" | "w" | "W").then(|| (addr, 0, name.to_string()))
            })
            .collect();
        Symbols::new(syms)
    }

    /// An ELF file or a System.map, whichever `path` holds.
    pub fn load(path: &Path) -> Result<Symbols> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if data.starts_with(b"\x7fELF") {
            Symbols::from_elf(&data).with_context(|| path.display().to_string())
        } else {
            Ok(Symbols::from_system_map(&String::from_utf8_lossy(&data)))
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The function holding `addr`, if any.
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        let i = self.ranges.partition_point(|r| r.0 <= addr);
        let (start, end, name) = self.ranges.get(i.checked_sub(1)?)?;
        (addr >= *start && addr < *end).then_some(name.as_str())
    }

    /// The lowest and highest address covered.
    pub fn span(&self) -> Option<(u64, u64)> {
        Some((self.ranges.first()?.0, self.ranges.last()?.1))
    }
}

/// A Rust legacy-mangled name (`_ZN7ferrite4acpi8byte_sum17h0123456789abcdefE`)
/// as a path (`ferrite::acpi::byte_sum`); any other name unchanged.
pub fn demangle(name: &str) -> String {
    let Some(mut rest) = name.strip_prefix("_ZN") else {
        return name.to_string();
    };
    let mut parts = Vec::new();
    while !rest.starts_with('E') {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(len) = rest[..digits].parse::<usize>() else {
            return name.to_string();
        };
        let Some(part) = rest.get(digits..digits + len) else {
            return name.to_string();
        };
        parts.push(part);
        rest = &rest[digits + len..];
    }
    if parts.last().is_some_and(|p| {
        p.len() == 17 && p.starts_with('h') && p[1..].bytes().all(|b| b.is_ascii_hexdigit())
    }) {
        parts.pop();
    }
    const ESCAPES: [(&str, &str); 14] = [
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$RF$", "&"),
        ("$BP$", "*"),
        ("$C$", ","),
        ("$SP$", "@"),
        ("$LP$", "("),
        ("$RP$", ")"),
        ("$u20$", " "),
        ("$u27$", "'"),
        ("$u5b$", "["),
        ("$u5d$", "]"),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
    ];
    parts
        .iter()
        .map(|p| {
            let mut p = p
                .strip_prefix("_$")
                .map_or(p.to_string(), |r| format!("${r}"));
            for (from, to) in ESCAPES {
                p = p.replace(from, to);
            }
            p.replace("..", "::")
        })
        .collect::<Vec<_>>()
        .join("::")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_sized_and_unsized_symbols() {
        let s = Symbols::new(vec![
            (0x1000, 0x10, "a".into()),
            (0x1100, 0, "b".into()),
            (0x1200, 0x100, "c".into()),
            (0, 0, "null".into()),
        ]);
        assert_eq!(s.lookup(0x1000), Some("a"));
        assert_eq!(s.lookup(0x100F), Some("a"));
        assert_eq!(s.lookup(0x1010), None); // a's size ends it
        assert_eq!(s.lookup(0x11FF), Some("b")); // b runs to c
        assert_eq!(s.lookup(0x12FF), Some("c"));
        assert_eq!(s.lookup(0x1300), None);
        assert_eq!(s.lookup(0xFFF), None);
        assert_eq!(s.span(), Some((0x1000, 0x1300)));
    }

    #[test]
    fn demangles_rust_names() {
        assert_eq!(
            demangle("_ZN7ferrite4acpi8byte_sum17h8e0f534d69e8749dE"),
            "ferrite::acpi::byte_sum"
        );
        assert_eq!(
            demangle("_ZN7ferrite5fwcfg15FwCfg$LT$IO$GT$4find17h7046ddc30d02feebE"),
            "ferrite::fwcfg::FwCfg<IO>::find"
        );
        assert_eq!(
            demangle(
                "_ZN4core3ptr56drop_in_place$LT$std..rt..lang_start$LT$$LP$$RP$$GT$$GT$17h0123456789abcdefE"
            ),
            "core::ptr::drop_in_place<std::rt::lang_start<()>>"
        );
        for plain in ["memcpy", "_ZN", "_ZN99toolong", "_ZN3abE"] {
            assert_eq!(demangle(plain), plain);
        }
        assert_eq!(demangle("_ZN3abcE"), "abc");
    }

    #[test]
    fn reads_an_elf_file_and_demangles_it() {
        // this test binary: an ELF with Rust symbols
        let s = Symbols::load(&std::env::current_exe().unwrap()).unwrap();
        assert!(
            s.ranges
                .iter()
                .any(|r| r.2.starts_with("xtask::symbols::demangle")),
            "no demangled xtask::symbols::demangle among {} symbols",
            s.ranges.len()
        );
        assert!(s.ranges.iter().all(|r| r.0 < r.1));
    }

    #[test]
    fn reads_a_system_map() {
        let s = Symbols::from_system_map(
            "ffffffff81000000 T _stext\nffffffff81000100 t helper\nffffffff82000000 D data\ngarbage\n",
        );
        assert_eq!(s.lookup(0xffffffff81000050), Some("_stext"));
        assert_eq!(s.lookup(0xffffffff81000150), Some("helper"));
        assert!(Symbols::from_system_map("").is_empty());
        assert!(Symbols::from_elf(b"not an elf").is_err());
    }
}
