//! `-o/--output` and `-x/--hex-dump`: a record of the session's bytes, in
//! both directions, in the order they passed, as ncat writes it.

use std::fs::{File, OpenOptions};
use std::io::Write;

use crate::cli::LogFiles;
use crate::error::Failure;
use crate::hexdump;

/// Which way a chunk of bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Sent,
    Received,
}

pub struct SessionLog {
    output: Option<File>,
    hex: Option<File>,
}

fn open(path: &std::path::Path, append: bool) -> Result<File, Failure> {
    let mut o = OpenOptions::new();
    o.create(true);
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(true);
    }
    o.open(path).map_err(|e| {
        Failure::usage(format!(
            "Unable to open output file \"{}\": {}",
            path.display(),
            crate::error::describe(&e)
        ))
    })
}

impl SessionLog {
    /// Opens the files named by `-o`/`-x`; `None` when neither was given.
    pub fn open(files: &LogFiles) -> Result<Option<SessionLog>, Failure> {
        if files.output.is_none() && files.hex_dump.is_none() {
            return Ok(None);
        }
        let output = files
            .output
            .as_deref()
            .map(|p| open(p, files.append))
            .transpose()?;
        let hex = files
            .hex_dump
            .as_deref()
            .map(|p| open(p, files.append))
            .transpose()?;
        Ok(Some(SessionLog { output, hex }))
    }

    /// Records a chunk; a log that cannot be written must not end the session.
    pub fn record(&mut self, _dir: Direction, data: &[u8]) {
        // ncat's logs do not mark the direction; it is kept for callers' clarity.
        if data.is_empty() {
            return;
        }
        if let Some(f) = self.output.as_mut() {
            let _ = f.write_all(data);
        }
        if let Some(f) = self.hex.as_mut() {
            let _ = f.write_all(hexdump::render(data).as_bytes());
        }
    }
}
