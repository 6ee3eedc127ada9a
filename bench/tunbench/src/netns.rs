//! Network namespaces: a fresh private one holding the TUN device (made by
//! `unshare` on a thread, gone when that thread and its children end), and
//! the veth script's namespaces, entered with `setns` by one thread each.
//!
//! Safety of the network: everything configured here lives inside a
//! namespace this process (or bench/tun) created, and only 198.18.0.0/15 is
//! used. Before any `ip` command or sysctl write, the thread checks that it
//! really is in a namespace other than the one it started in, so a failed
//! `unshare`/`setns` can never touch the root namespace.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use oxcat_stack::Tun;

pub const TUN_NAME: &str = "oxt0";
/// The kernel's end of the TUN (the interface address).
pub const KERNEL_TUN: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The userspace stack's address behind the TUN.
pub const STACK_TUN: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// veth: the server's namespace (bench/tun assigns it; the client's
/// namespace has 198.18.1.1).
pub const VETH_B: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);

/// The inode of this thread's network namespace.
fn current_netns() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}

fn sh(args: &[&str]) -> io::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Sysctls of the current (private) namespace that let a kernel client open
/// connections at a high rate: TIME-WAIT reuse for outgoing connections
/// (RFC 7323 timestamps make it safe; both stacks send them), so the
/// ephemeral ports do not run out during the connection-rate runs.
fn tune_private_sysctls() -> io::Result<()> {
    std::fs::write("/proc/sys/net/ipv4/tcp_tw_reuse", "1")
}

/// Runs `f` on a new thread in a fresh private network namespace holding a
/// TUN device `oxt0` (kernel 198.18.0.1/24, up) and a loopback that is up;
/// `f` gets the open TUN for the userspace stack (198.18.0.2). Threads `f`
/// spawns are in the same namespace. Everything disappears when `f` returns.
///
/// `advmss`: the MSS the kernel announces on the TUN route (see
/// `UserStack::kernel_advmss`).
/// `offloads`: open it with `Tun::open_offloaded` (IFF_VNET_HDR, TSO,
/// checksum offload) instead of `Tun::open`.
pub fn with_tun<T: Send>(
    advmss: Option<u16>,
    offloads: bool,
    f: impl FnOnce(Tun) -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let before = current_netns()?;
                // SAFETY: unshare(CLONE_NEWNET) changes only this thread's
                // network namespace; it takes no pointers.
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::other(format!(
                        "unshare(CLONE_NEWNET): {}",
                        io::Error::last_os_error()
                    )));
                }
                if current_netns()? == before {
                    return Err(io::Error::other("still in the original network namespace"));
                }
                sh(&["ip", "link", "set", "lo", "up"])?;
                let tun = if offloads {
                    Tun::open_offloaded(TUN_NAME)?
                } else {
                    Tun::open(TUN_NAME)?
                };
                let cidr = format!("{KERNEL_TUN}/24");
                sh(&["ip", "addr", "add", &cidr, "dev", TUN_NAME])?;
                sh(&["ip", "link", "set", TUN_NAME, "up"])?;
                if let Some(mss) = advmss {
                    let net = format!("{}/24", Ipv4Addr::from(u32::from(KERNEL_TUN) & !0xff));
                    let src = KERNEL_TUN.to_string();
                    let mss = mss.to_string();
                    sh(&[
                        "ip", "route", "replace", &net, "dev", TUN_NAME, "proto", "kernel",
                        "scope", "link", "src", &src, "advmss", &mss,
                    ])?;
                }
                tune_private_sysctls()?;
                f(tun)
            })
            .join()
            .unwrap_or_else(|_| Err(crate::crash::error()))
    })
}

/// Moves the calling thread into the named namespace (`ip netns add NAME`).
/// Only names bench/tun makes are accepted. Already there: nothing to do.
pub fn enter(name: &str) -> io::Result<()> {
    if !name.starts_with("oxbench-") || name.contains('/') {
        return Err(io::Error::other(format!(
            "refusing namespace {name:?}: not one of bench/tun's (oxbench-*)"
        )));
    }
    let before = current_netns()?;
    let ns = File::open(format!("/run/netns/{name}"))?;
    let target = ns.metadata()?.ino();
    if before == target {
        return Ok(());
    }
    // SAFETY: setns on an open namespace descriptor changes only this
    // thread's network namespace; the descriptor stays open for the call.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::other(format!(
            "setns({name}): {}",
            io::Error::last_os_error()
        )));
    }
    let now = current_netns()?;
    if now != target || now == before {
        return Err(io::Error::other(format!(
            "setns({name}) did not take effect"
        )));
    }
    Ok(())
}
