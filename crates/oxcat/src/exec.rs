//! `-e` and `-c`: a program in place of stdin/stdout, with the connection
//! as its standard input and output and ncat's `NCAT_*` variables set.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};

use crate::cli::ExecCommand;
use crate::error::Failure;

/// The two ends of a connection, as the child sees them in its environment.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    pub proto: &'static str,
}

fn command(exec: &ExecCommand) -> Result<Command, Failure> {
    match exec {
        ExecCommand::Shell(line) => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(line);
            Ok(c)
        }
        ExecCommand::Lua(script) => {
            // A process of its own, as ncat forks one: this binary, running the script.
            let me = std::env::current_exe().map_err(|e| Failure::io("current_exe", &e))?;
            let mut c = Command::new(me);
            c.arg(crate::lua::RUN_FLAG).arg(script);
            Ok(c)
        }
        ExecCommand::Direct(line) => {
            let mut words = line.split_whitespace();
            let program = words
                .next()
                .ok_or_else(|| Failure::usage("Empty command given to --exec"))?;
            let mut c = Command::new(program);
            c.args(words);
            Ok(c)
        }
    }
}

/// Starts the program with `conn` as its stdin and stdout.
pub fn spawn(exec: &ExecCommand, conn: OwnedFd, ends: Endpoints) -> Result<Child, Failure> {
    let mut cmd = command(exec)?;
    let out = conn.try_clone().map_err(|e| Failure::io("dup", &e))?;
    // Programs expect blocking descriptors.
    let _ = rustix::io::ioctl_fionbio(&conn, false);
    cmd.stdin(Stdio::from(conn)).stdout(Stdio::from(out));
    if let Some(r) = ends.remote {
        cmd.env("NCAT_REMOTE_ADDR", r.ip().to_string())
            .env("NCAT_REMOTE_PORT", r.port().to_string());
    }
    if let Some(l) = ends.local {
        cmd.env("NCAT_LOCAL_ADDR", l.ip().to_string())
            .env("NCAT_LOCAL_PORT", l.port().to_string());
    }
    cmd.env("NCAT_PROTO", ends.proto);
    let name = match exec {
        ExecCommand::Shell(l) | ExecCommand::Direct(l) => l.clone(),
        ExecCommand::Lua(p) => p.display().to_string(),
    };
    cmd.spawn().map_err(|e| {
        Failure::network(format!(
            "Unable to execute \"{name}\": {}",
            crate::error::describe(&e)
        ))
    })
}

/// Runs the program for one connection and waits for it; its exit status
/// becomes ours, as when ncat execs in place.
///
/// A program that cannot be started is reported in one line, and the run
/// still ends with 0, as ncat's does (its forked child fails, not ncat).
pub fn run(exec: &ExecCommand, conn: OwnedFd, ends: Endpoints) -> Result<i32, Failure> {
    let mut child = match spawn(exec, conn, ends) {
        Ok(c) => c,
        Err(f) => {
            crate::msg::say(&f.to_string());
            return Ok(0);
        }
    };
    let status = child.wait().map_err(|e| Failure::io("wait", &e))?;
    Ok(status.code().unwrap_or(1))
}
