//! `log` output on COM1. Silent by default: only errors are printed, and the
//! serial port is not touched until something is. The level is raised at run time
//! with `-fw_cfg name=opt/ferrite/log-level,string=debug`.

use core::fmt::{self, Write};

use log::{Level, LevelFilter, Log, Metadata, Record};
use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550};

const COM1: u16 = 0x3F8;

struct SerialLogger {
    port: spin::Mutex<Option<Uart16550<PioBackend>>>,
}

static LOGGER: SerialLogger = SerialLogger {
    port: spin::Mutex::new(None),
};

/// The fw_cfg file that sets the level.
pub const LEVEL_FILE: &[u8] = LEVEL_NAME.as_bytes();
pub const LEVEL_NAME: &str = ferrite_contract::fw_cfg::LOG_LEVEL;

/// Installs the logger, at `Error` at least (errors always reach the
/// console; a higher level already set stays). Called where logging is first
/// needed, an error to print or the fw_cfg files that configure it, not at
/// the start of every boot: until then the `log` crate's default (no logger,
/// level `Off`) prints nothing, as `Error` printed nothing while nothing
/// failed. Calling it again is harmless.
pub fn init() {
    // Fails only if the logger is already set: then it stays.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::max_level().max(LevelFilter::Error));
}

/// Sets the level from the contents of [`LEVEL_FILE`]. Errors stay visible at
/// any level.
pub fn set_level(text: &[u8]) {
    let word = text
        .split(|b| b.is_ascii_whitespace() || *b == 0)
        .find(|w| !w.is_empty())
        .unwrap_or(b"");
    let level = core::str::from_utf8(word)
        .ok()
        .and_then(|w| w.parse::<LevelFilter>().ok());
    match level {
        Some(l) => log::set_max_level(l.max(LevelFilter::Error)),
        None => {
            log::set_max_level(LevelFilter::Warn);
            log::warn!(
                "unknown log level in {}; using warn",
                core::str::from_utf8(LEVEL_FILE).unwrap_or("")
            );
        }
    }
}

struct Writer<'a>(&'a mut Uart16550<PioBackend>);

impl Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.as_bytes().split_inclusive(|&b| b == b'\n') {
            self.0.send_bytes_exact(chunk);
            if chunk.ends_with(b"\n") {
                self.0.send_bytes_exact(b"\r");
            }
        }
        Ok(())
    }
}

impl Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // A panic while the port is held must not deadlock: give up instead.
        let Some(mut guard) = self.port.try_lock() else {
            return;
        };
        if guard.is_none() {
            // SAFETY: COM1 is the standard PC serial port; nothing else drives it.
            let Ok(mut uart) = (unsafe { Uart16550::new_port(COM1) }) else {
                return;
            };
            if uart.init(Config::default()).is_err() {
                return; // no UART: stay silent
            }
            *guard = Some(uart);
        }
        if let Some(uart) = guard.as_mut() {
            let level = match record.level() {
                Level::Error => "error",
                Level::Warn => "warn",
                Level::Info => "info",
                Level::Debug => "debug",
                Level::Trace => "trace",
            };
            let _ = writeln!(Writer(uart), "ferrite: {level}: {}", record.args());
        }
    }

    fn flush(&self) {}
}
