//! The least of QMP, QEMU's JSON control protocol, that timing needs: read the
//! greeting, leave negotiation mode with `qmp_capabilities`, and send `cont`
//! to a QEMU started with `-S`. Messages are one JSON object a line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

/// What one line from QEMU says.
#[derive(Debug, PartialEq)]
pub enum Message {
    Greeting,
    /// A command's success.
    Return,
    /// A command's failure, with QEMU's description.
    Error(String),
    /// An asynchronous event (e.g. RESUME), which may come at any time.
    Event(String),
}

/// Parses one line of QMP.
pub fn parse(line: &str) -> Result<Message> {
    let v: Value = serde_json::from_str(line).with_context(|| format!("QMP said {line:?}"))?;
    Ok(if v.get("QMP").is_some() {
        Message::Greeting
    } else if v.get("return").is_some() {
        Message::Return
    } else if let Some(e) = v.get("error") {
        Message::Error(e["desc"].as_str().unwrap_or("no description").to_string())
    } else if let Some(e) = v.get("event").and_then(Value::as_str) {
        Message::Event(e.to_string())
    } else {
        bail!("not a QMP message: {line:?}")
    })
}

impl Qmp {
    /// Connects to QEMU's QMP socket (waiting until QEMU has made it, up to
    /// `timeout`), reads the greeting and negotiates capabilities.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(e).with_context(|| format!("connecting to {}", path.display()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        };
        stream.set_read_timeout(Some(timeout))?;
        let mut q = Qmp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        match q.next()? {
            Message::Greeting => {}
            other => bail!("expected QMP's greeting, got {other:?}"),
        }
        q.execute("qmp_capabilities")?;
        Ok(q)
    }

    fn next(&mut self) -> Result<Message> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("QEMU closed the QMP connection");
        }
        parse(line.trim())
    }

    /// Sends a command without arguments and waits for its answer.
    fn execute(&mut self, command: &str) -> Result<()> {
        writeln!(self.writer, "{}", serde_json::json!({ "execute": command }))?;
        loop {
            match self.next()? {
                Message::Return => return Ok(()),
                Message::Error(e) => bail!("{command}: {e}"),
                Message::Event(_) => continue,
                Message::Greeting => bail!("{command}: a second greeting"),
            }
        }
    }

    /// Sends `cont` and returns the instant just before it was sent; does not
    /// wait for the answer, which races with the guest's own exit.
    pub fn cont(&mut self) -> Result<Instant> {
        let line = format!("{}\n", serde_json::json!({ "execute": "cont" }));
        let t = Instant::now();
        self.writer.write_all(line.as_bytes())?;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qmp_messages() {
        let greeting = r#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian"}, "capabilities": ["oob"]}}"#;
        assert_eq!(parse(greeting).unwrap(), Message::Greeting);
        assert_eq!(parse(r#"{"return": {}}"#).unwrap(), Message::Return);
        assert_eq!(
            parse(r#"{"error": {"class": "CommandNotFound", "desc": "The command x has not been found"}}"#)
                .unwrap(),
            Message::Error("The command x has not been found".into())
        );
        assert_eq!(
            parse(r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}"#)
                .unwrap(),
            Message::Event("RESUME".into())
        );
        assert!(parse("{}").is_err());
        assert!(parse("not json").is_err());
        assert!(parse("").is_err());
    }
}
