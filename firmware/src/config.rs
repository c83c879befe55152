//! Values of ferrite's own `-fw_cfg name=opt/ferrite/...` options.

/// An on/off option: on for "1", "on", "true", off for "0", "off", "false"
/// (any case; QEMU's `string=` may end in a NUL, a file in a newline). None for
/// anything else, which the caller reports.
pub fn parse_switch(value: &[u8]) -> Option<bool> {
    let end = value
        .iter()
        .rposition(|b| !matches!(b, 0 | b'\n' | b'\r' | b' ' | b'\t'))
        .map_or(0, |i| i + 1);
    let start = value[..end]
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(end);
    let word = &value[start..end];
    const ON: [&[u8]; 3] = [b"1", b"on", b"true"];
    const OFF: [&[u8]; 3] = [b"0", b"off", b"false"];
    if ON.iter().any(|w| word.eq_ignore_ascii_case(w)) {
        Some(true)
    } else if OFF.iter().any(|w| word.eq_ignore_ascii_case(w)) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timeline used to turn on when its file merely existed: `string=0`
    /// switched it on.
    #[test]
    fn switches_are_parsed_not_just_present() {
        for on in [&b"1"[..], b"on", b"true", b"TRUE", b"1\n", b"on\0", b" on "] {
            assert_eq!(parse_switch(on), Some(true), "{on:?}");
        }
        for off in [&b"0"[..], b"off", b"false", b"Off\n", b"0\0"] {
            assert_eq!(parse_switch(off), Some(false), "{off:?}");
        }
        for bad in [&b""[..], b"2", b"yes", b"onn", b"o n", b"\0\0", b"\xff"] {
            assert_eq!(parse_switch(bad), None, "{bad:?}");
        }
    }
}
