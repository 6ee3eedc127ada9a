//! ncat's command line: the flags as clap sees them, then the checks and
//! defaults that turn them into a [`Config`] the modes run from.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::addrset::AddrSet;
use crate::error::Failure;
use crate::timespec;

/// The port ncat uses when none is given.
pub const DEFAULT_PORT: u16 = 31337;

#[derive(Parser, Debug, Default)]
#[command(
    name = "oxcat",
    about = "Concatenate and redirect sockets: a drop-in replacement for Nmap's ncat",
    override_usage = "oxcat [options] [hostname] [port]\n       oxcat demo [--help]",
    version,
    disable_version_flag = true,
    max_term_width = 100
)]
pub struct Args {
    /// Use IPv4 only
    #[arg(short = '4', overrides_with = "ipv6")]
    pub ipv4: bool,
    /// Use IPv6 only
    #[arg(short = '6', overrides_with = "ipv4")]
    pub ipv6: bool,
    /// Use Unix domain sockets only
    #[arg(short = 'U', long = "unixsock")]
    pub unixsock: bool,
    /// Use CRLF for EOL sequence
    #[arg(short = 'C', long)]
    pub crlf: bool,
    /// Executes the given command via /bin/sh
    #[arg(short = 'c', long = "sh-exec", value_name = "command")]
    pub sh_exec: Option<String>,
    /// Executes the given command
    #[arg(short = 'e', long = "exec", value_name = "command")]
    pub exec: Option<String>,
    /// Maximum <n> simultaneous connections
    #[arg(short = 'm', long = "max-conns", value_name = "n")]
    pub max_conns: Option<String>,
    /// Wait between read/writes
    #[arg(
        short = 'd',
        long = "delay",
        value_name = "time",
        allow_hyphen_values = true
    )]
    pub delay: Option<String>,
    /// Dump session data to a file
    #[arg(short = 'o', long = "output", value_name = "filename")]
    pub output: Option<PathBuf>,
    /// Dump session data as hex to a file
    #[arg(short = 'x', long = "hex-dump", value_name = "filename")]
    pub hex_dump: Option<PathBuf>,
    /// Idle read/write timeout
    #[arg(
        short = 'i',
        long = "idle-timeout",
        value_name = "time",
        allow_hyphen_values = true
    )]
    pub idle_timeout: Option<String>,
    /// Specify source port to use (the port to listen on with -l)
    #[arg(short = 'p', long = "source-port", value_name = "port")]
    pub port: Option<String>,
    /// Specify source address to use (doesn't affect -l)
    #[arg(short = 's', long = "source", value_name = "addr")]
    pub source: Option<String>,
    /// Bind and listen for incoming connections
    #[arg(short = 'l', long = "listen")]
    pub listen: bool,
    /// Accept multiple connections in listen mode
    #[arg(short = 'k', long = "keep-open")]
    pub keep_open: bool,
    /// Do not resolve hostnames via DNS
    #[arg(short = 'n', long = "nodns")]
    pub nodns: bool,
    /// Use UDP instead of default TCP
    #[arg(short = 'u', long = "udp")]
    pub udp: bool,
    /// Set verbosity level (can be used several times)
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,
    /// Connect timeout
    #[arg(
        short = 'w',
        long = "wait",
        value_name = "time",
        allow_hyphen_values = true
    )]
    pub wait: Option<String>,
    /// Zero-I/O mode, report connection status only
    #[arg(short = 'z')]
    pub zero_io: bool,
    /// Append rather than clobber specified output files
    #[arg(long = "append-output")]
    pub append_output: bool,
    /// Only send data, ignoring received; quit on EOF
    #[arg(long = "send-only")]
    pub send_only: bool,
    /// Only receive data, never send anything
    #[arg(long = "recv-only")]
    pub recv_only: bool,
    /// Continue half-duplex when receiving EOF on stdin
    #[arg(long = "no-shutdown")]
    pub no_shutdown: bool,
    /// Allow only given hosts to connect
    #[arg(long = "allow", value_name = "hosts")]
    pub allow: Vec<String>,
    /// A file of hosts allowed to connect
    #[arg(long = "allowfile", value_name = "file")]
    pub allowfile: Vec<PathBuf>,
    /// Deny given hosts from connecting
    #[arg(long = "deny", value_name = "hosts")]
    pub deny: Vec<String>,
    /// A file of hosts denied from connecting
    #[arg(long = "denyfile", value_name = "file")]
    pub denyfile: Vec<PathBuf>,
    /// Print each socket call with a microsecond timestamp (to stderr, or to FILE)
    #[arg(long = "trace", value_name = "FILE", num_args = 0..=1, require_equals = true, default_missing_value = "-")]
    pub trace: Option<PathBuf>,
    /// Trace format: text (a timeline) or json (one JSON object per line)
    #[arg(long = "trace-format", value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub trace_format: String,
    /// Which TCP/IP stack carries the connection: the kernel's, or oxcat's own over a TUN device
    #[arg(long = "stack", value_name = "kernel|user", default_value = "kernel", value_parser = ["kernel", "user"])]
    pub stack: String,
    /// With --stack user: the TUN interface (default oxcat0; created, configured and removed on exit unless it exists)
    #[arg(long = "tun", value_name = "NAME")]
    pub tun: Option<String>,
    /// With --stack user: our stack's address, IPv4 and/or IPv6 (default 198.18.0.2 and fd00::2)
    #[arg(long = "stack-addr", value_name = "IP")]
    pub stack_addr: Vec<String>,
    /// With --stack user: the kernel's address on a TUN oxcat creates (default 198.18.0.1/24 and fd00::1/64)
    #[arg(long = "tun-addr", value_name = "IP/PREFIX")]
    pub tun_addr: Vec<String>,
    /// Write the run's packets to FILE (pcap): with --stack user every packet our stack sends and receives, on the kernel's stack the connections' packets captured from the interface (needs CAP_NET_RAW)
    #[arg(long = "pcap", value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Write a Mermaid sequence diagram of the first TCP connection to FILE (on the kernel's stack drawn from captured packets: needs CAP_NET_RAW)
    #[arg(long = "mermaid", value_name = "FILE")]
    pub mermaid: Option<PathBuf>,
    /// Print the man page (roff) to stdout and exit: `oxcat --man-page > oxcat.1`
    #[arg(long = "man-page", hide = true)]
    pub man_page: bool,
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout and exit
    #[arg(long = "completions", value_name = "SHELL", hide = true)]
    pub completions: Option<clap_complete::Shell>,
    /// Print "NCAT TEST: LISTEN" to stderr once listening (ncat's test hook)
    #[arg(long = "test", hide = true)]
    pub test: bool,
    /// Display version information and exit
    #[arg(long = "version")]
    pub version: bool,

    // ncat flags whose features arrive in later releases: recognised here
    // so that a script using them fails loudly instead of running without them.
    /// Answer Telnet negotiations
    #[arg(short = 't', long = "telnet")]
    pub telnet: bool,
    /// Use SCTP instead of default TCP (not in this build)
    #[arg(long = "sctp")]
    pub sctp: bool,
    /// Use vsock sockets only
    #[arg(long = "vsock")]
    pub vsock: bool,
    /// Executes the given Lua script
    #[arg(long = "lua-exec", value_name = "filename")]
    pub lua_exec: Option<String>,
    /// Loose source routing hop points (not in this build)
    #[arg(short = 'g', value_name = "hop1[,hop2,...]")]
    pub source_route: Option<String>,
    /// Loose source routing hop pointer (not in this build)
    #[arg(short = 'G', value_name = "n")]
    pub source_route_pointer: Option<String>,
    /// Enable connection brokering mode
    #[arg(long = "broker")]
    pub broker: bool,
    /// Start a simple Ncat chat server
    #[arg(long = "chat", alias = "talk")]
    pub chat: bool,
    /// Specify address of host to proxy through
    #[arg(long = "proxy", value_name = "addr[:port]")]
    pub proxy: Option<String>,
    /// Specify proxy type ("http", "socks4", "socks5"); with -l, be an HTTP proxy
    #[arg(long = "proxy-type", value_name = "type")]
    pub proxy_type: Option<String>,
    /// Authenticate with HTTP or SOCKS proxy server (or NCAT_PROXY_AUTH)
    #[arg(long = "proxy-auth", value_name = "auth")]
    pub proxy_auth: Option<String>,
    /// Specify where to resolve proxy destination (local, remote, both, none)
    #[arg(long = "proxy-dns", value_name = "type", overrides_with = "proxy_dns")]
    pub proxy_dns: Option<String>,
    /// Connect or listen with SSL
    #[arg(long = "ssl")]
    pub ssl: bool,
    /// Specify SSL certificate file (PEM) for listening
    #[arg(long = "ssl-cert", value_name = "file")]
    pub ssl_cert: Option<String>,
    /// Specify SSL private key (PEM) for listening
    #[arg(long = "ssl-key", value_name = "file")]
    pub ssl_key: Option<String>,
    /// Verify trust and domain name of certificates
    #[arg(long = "ssl-verify")]
    pub ssl_verify: bool,
    /// PEM file containing trusted SSL certificates
    #[arg(long = "ssl-trustfile", value_name = "file")]
    pub ssl_trustfile: Option<String>,
    /// Cipherlist containing SSL ciphers to use
    #[arg(long = "ssl-ciphers", value_name = "ciphers")]
    pub ssl_ciphers: Option<String>,
    /// Request distinct server name (SNI)
    #[arg(long = "ssl-servername", value_name = "name")]
    pub ssl_servername: Option<String>,
    /// ALPN protocol list to use
    #[arg(long = "ssl-alpn", value_name = "list")]
    pub ssl_alpn: Option<String>,

    /// [hostname] [port]
    #[arg(value_name = "ARGS", allow_hyphen_values = false)]
    pub positional: Vec<String>,
}

/// Address family restriction from -4 / -6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Any,
    V4,
    V6,
}

impl Family {
    pub fn admits(self, ip: &IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
        }
    }
}

/// What to run in place of stdin/stdout for each connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecCommand {
    /// `-e`: the command line split on whitespace, run directly.
    Direct(String),
    /// `-c`: run by `/bin/sh -c`.
    Shell(String),
    /// `--lua-exec`: a Lua script, run by oxcat's own interpreter.
    Lua(PathBuf),
}

/// Where the output logs (`-o`, `-x`) go.
#[derive(Debug, Clone)]
pub struct LogFiles {
    pub output: Option<PathBuf>,
    pub hex_dump: Option<PathBuf>,
    pub append: bool,
}

/// Everything a mode needs, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: bool,
    pub keep_open: bool,
    pub udp: bool,
    pub unix: bool,
    pub family: Family,
    pub nodns: bool,
    /// Connect mode: the host to reach; listen mode: the address to bind, if given.
    pub host: Option<String>,
    /// Connect mode: the remote port; listen mode: the local port.
    pub port: u16,
    /// Connect mode: `-s`.
    pub source_addr: Option<String>,
    /// Connect mode: `-p`.
    pub source_port: Option<u16>,
    pub verbose: u8,
    pub wait: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub delay: Option<Duration>,
    pub zero_io: bool,
    pub send_only: bool,
    pub recv_only: bool,
    pub no_shutdown: bool,
    pub crlf: bool,
    pub exec: Option<ExecCommand>,
    pub max_conns: usize,
    /// -m was given (ncat warns when it has no effect).
    pub max_conns_given: bool,
    pub allow: Option<AddrSet>,
    pub deny: Option<AddrSet>,
    pub logs: LogFiles,
    pub trace: Option<PathBuf>,
    pub trace_json: bool,
    /// `--broker`: every client's bytes go to all the others (and stdin to all).
    pub broker: bool,
    /// `--chat`: brokering with `<userN>` names and join/leave announcements.
    pub chat: bool,
    /// `-t`: answer Telnet negotiations.
    pub telnet: bool,
    /// `--vsock`: the host is a context id (CID), the port a vsock port.
    pub vsock: bool,
    /// `--ssl` and its options: TLS on every TCP connection.
    pub tls: Option<crate::tls::TlsOptions>,
    /// `--proxy`: connect mode reaches the target through this proxy.
    pub proxy: Option<crate::proxy::ProxyClient>,
    /// `-l --proxy-type http`: listen mode is an HTTP proxy.
    pub http_proxy: Option<crate::proxy::ProxyServer>,
    /// `--stack user`: oxcat's own stack over TUN; None: the kernel's sockets.
    pub user_stack: Option<UserStackConfig>,
    /// `--pcap`/`--mermaid` on the kernel's sockets: the packets captured from the interface.
    pub capture: Option<crate::capture::CaptureConfig>,
    pub test: bool,
}

/// `--stack user` and its TUN device.
#[derive(Debug, Clone)]
pub struct UserStackConfig {
    pub tun: String,
    /// Our stack's addresses.
    pub ipv4: Option<std::net::Ipv4Addr>,
    pub ipv6: Option<std::net::Ipv6Addr>,
    /// The kernel side's addresses with prefix lengths, for a TUN oxcat creates.
    pub kernel_addrs: Vec<(std::net::IpAddr, u8)>,
    pub pcap: Option<PathBuf>,
    pub mermaid: Option<PathBuf>,
}

fn user_stack_config(args: &Args) -> Result<Option<UserStackConfig>, Failure> {
    if args.stack != "user" {
        for (given, flag) in [
            (args.tun.is_some(), "--tun"),
            (!args.stack_addr.is_empty(), "--stack-addr"),
            (!args.tun_addr.is_empty(), "--tun-addr"),
        ] {
            if given {
                return Err(Failure::usage(format!("{flag} needs --stack user")));
            }
        }
        return Ok(None);
    }
    if args.unixsock {
        return Err(Failure::usage(
            "-U (Unix sockets) and --stack user do not mix: Unix sockets are the kernel's",
        ));
    }
    let mut ipv4 = None;
    let mut ipv6 = None;
    let given: Vec<&str> = if args.stack_addr.is_empty() {
        vec!["198.18.0.2", "fd00::2"]
    } else {
        args.stack_addr.iter().map(String::as_str).collect()
    };
    for a in given {
        let ip = a.parse::<std::net::IpAddr>().map_err(|_| {
            Failure::usage(format!(
                "Invalid --stack-addr \"{a}\" (an IPv4 or IPv6 address)"
            ))
        })?;
        // One host's own unicast address: anything else can never be
        // reached (every connect would just time out).
        let unusable = ip.is_unspecified()
            || ip.is_multicast()
            || ip.is_loopback()
            || matches!(ip, std::net::IpAddr::V4(v) if v.is_broadcast());
        if unusable {
            return Err(Failure::usage(format!(
                "Invalid --stack-addr \"{a}\": our stack needs a unicast address of its own \
                 (not unspecified, multicast, broadcast or loopback)"
            )));
        }
        match ip {
            std::net::IpAddr::V4(v) => ipv4 = Some(v),
            std::net::IpAddr::V6(v) => ipv6 = Some(v),
        }
    }
    let given: Vec<&str> = if args.tun_addr.is_empty() {
        vec!["198.18.0.1/24", "fd00::1/64"]
    } else {
        args.tun_addr.iter().map(String::as_str).collect()
    };
    let mut kernel_addrs = Vec::new();
    for a in given {
        let bad = || {
            Failure::usage(format!(
                "Invalid --tun-addr \"{a}\" (IP/PREFIX, e.g. 198.18.0.1/24)"
            ))
        };
        let (ip, len) = a.split_once('/').ok_or_else(bad)?;
        let ip: std::net::IpAddr = ip.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        if len > if ip.is_ipv4() { 32 } else { 128 } {
            return Err(bad());
        }
        kernel_addrs.push((ip, len));
    }
    for (ip, _) in &kernel_addrs {
        if Some(*ip) == ipv4.map(std::net::IpAddr::V4)
            || Some(*ip) == ipv6.map(std::net::IpAddr::V6)
        {
            return Err(Failure::usage(format!(
                "--stack-addr {ip} is the kernel side's address (--tun-addr): our stack needs one of its own"
            )));
        }
    }
    let tun = args.tun.clone().unwrap_or_else(|| "oxcat0".to_string());
    if tun.is_empty() || tun.len() > 15 || tun.contains('/') || tun.contains(char::is_whitespace) {
        return Err(Failure::usage(format!(
            "Invalid --tun name \"{tun}\" (1 to 15 characters, no '/' or spaces)"
        )));
    }
    Ok(Some(UserStackConfig {
        tun,
        ipv4,
        ipv6,
        kernel_addrs,
        pcap: args.pcap.clone(),
        mermaid: args.mermaid.clone(),
    }))
}

/// `--pcap`/`--mermaid` on the kernel's stack: captured from the interface,
/// so only where there are IP packets.
fn capture_config(args: &Args) -> Result<Option<crate::capture::CaptureConfig>, Failure> {
    if args.stack == "user" || (args.pcap.is_none() && args.mermaid.is_none()) {
        return Ok(None);
    }
    let flag = if args.pcap.is_some() {
        "--pcap"
    } else {
        "--mermaid"
    };
    for (given, sockets) in [(args.unixsock, "Unix"), (args.vsock, "vsock")] {
        if given {
            return Err(Failure::usage(format!(
                "{flag}: {sockets} sockets carry no IP packets to capture"
            )));
        }
    }
    Ok(Some(crate::capture::CaptureConfig {
        pcap: args.pcap.clone(),
        mermaid: args.mermaid.clone(),
    }))
}

/// ncat's default for -m: 100 connections (60 on Windows).
const DEFAULT_MAX_CONNS: usize = 100;

fn reject_unbuilt(args: &Args) -> Result<(), Failure> {
    let unbuilt: &[(bool, &str, &str)] = &[
        (args.source_route.is_some(), "-g", "loose source routing"),
        (
            args.source_route_pointer.is_some(),
            "-G",
            "loose source routing",
        ),
        (args.sctp, "--sctp", "SCTP"),
    ];
    for (given, flag, feature) in unbuilt {
        if *given {
            return Err(Failure::usage(format!(
                "{flag}: {feature} is not available in this oxcat build"
            )));
        }
    }
    Ok(())
}

/// Parses a port as ncat does: a decimal number from 0 to 65535.
pub fn parse_port(text: &str) -> Result<u16, Failure> {
    let bad = || Failure::usage(format!("Invalid port number \"{text}\""));
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    text.parse::<u16>().map_err(|_| bad())
}

fn parse_time(flag: &str, what: &str, text: &str) -> Result<Duration, Failure> {
    match timespec::parse(text) {
        // ncat's guard from when the unit changed to seconds: a bare number of 100 or more
        // was probably meant as milliseconds.
        Some(d) if timespec::is_unitless(text) && d.as_secs_f64() >= 100.0 => Err(Failure::usage(format!(
            "Since April 2010, the default unit for {flag} {what} is seconds, so your time of \"{text}\" is {:.1} minutes. Use \"{text}ms\" for {text} milliseconds",
            d.as_secs_f64() / 60.0
        ))),
        Some(d) if !d.is_zero() && d.as_secs() < 2_147_483 => Ok(d),
        _ => Err(Failure::usage(format!(
            "Invalid {flag} {what} \"{text}\" (must be greater than 0 and less than 2147483s)"
        ))),
    }
}

fn is_port_like(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

impl Config {
    pub fn from_args(mut args: Args) -> Result<Config, Failure> {
        reject_unbuilt(&args)?;
        if args.broker || args.chat {
            // Brokering is a listening mode: a lone port means "listen there".
            let flag = if args.chat { "--chat" } else { "--broker" };
            if !args.listen && args.positional.len() > 1 {
                return Err(Failure::usage(format!(
                    "Invalid option combination: `{flag}' with connect"
                )));
            }
            if args.udp {
                return Err(Failure::usage(
                    "UDP mode does not support connection brokering",
                ));
            }
            if args.exec.is_some() || args.sh_exec.is_some() || args.lua_exec.is_some() {
                return Err(Failure::usage(
                    "Invalid option combination: --broker and -e",
                ));
            }
            args.listen = true;
            args.keep_open = true;
        }
        let user_stack = user_stack_config(&args)?;
        let capture = capture_config(&args)?;
        let tls = crate::tls::from_args(&args)?;
        let (proxy, http_proxy) = crate::proxy::from_args(&args, args.listen)?;

        let family = match (args.ipv4, args.ipv6) {
            (true, _) => Family::V4,
            (_, true) => Family::V6,
            _ => Family::Any,
        };
        if args.vsock && (args.unixsock || args.ipv4 || args.ipv6) {
            return Err(Failure::usage(
                "--vsock and -U/-4/-6 are mutually exclusive",
            ));
        }
        if args.unixsock && (args.ipv4 || args.ipv6) {
            return Err(Failure::usage("-U and -4/-6 are mutually exclusive"));
        }
        let programs = [
            args.exec.is_some(),
            args.sh_exec.is_some(),
            args.lua_exec.is_some(),
        ];
        if programs.iter().filter(|&&p| p).count() > 1 {
            return Err(Failure::usage(
                "Only one of --exec, --sh-exec, and --lua-exec is allowed",
            ));
        }
        if programs.iter().any(|&p| p) && args.zero_io {
            return Err(Failure::usage(
                "Command execution can't be done along with option -z",
            ));
        }
        if args.listen && args.source.is_some() {
            return Err(Failure::usage(
                "-l and -s are incompatible.  Specify the address and port to bind to like you would a host to connect to",
            ));
        }
        if !args.listen
            && (!args.allow.is_empty()
                || !args.allowfile.is_empty()
                || !args.deny.is_empty()
                || !args.denyfile.is_empty())
        {
            return Err(Failure::usage(
                "Invalid option combination: allow/deny with connect",
            ));
        }
        if !args.listen && args.max_conns.is_some() {
            return Err(Failure::usage(
                "Invalid option combination: `--max-conns' with connect",
            ));
        }
        if args.listen
            && args.udp
            && args.keep_open
            && args.exec.is_none()
            && args.sh_exec.is_none()
        {
            return Err(Failure::usage(
                "UDP mode does not support the -k or --keep-open options, except with --exec or --sh-exec",
            ));
        }
        if args.listen && args.zero_io {
            return Err(Failure::usage(
                "Services designed for LISTENING can't be used with -z",
            ));
        }
        if args.keep_open && args.zero_io {
            return Err(Failure::usage(
                "Services designed for LISTENING can't be used with -z",
            ));
        }

        let wait = args
            .wait
            .as_deref()
            .map(|t| parse_time("-w", "timeout", t))
            .transpose()?;
        let idle_timeout = args
            .idle_timeout
            .as_deref()
            .map(|t| parse_time("-i", "timeout", t))
            .transpose()?;
        let delay = args
            .delay
            .as_deref()
            .map(|t| parse_time("-d", "delay", t))
            .transpose()?;
        let max_conns_flag = args.max_conns.is_some();
        let max_conns = match args.max_conns.as_deref() {
            None => DEFAULT_MAX_CONNS,
            Some(t) => match t.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(Failure::usage(format!(
                        "Invalid -m value \"{t}\" (must be a positive number)"
                    )))
                }
            },
        };

        let exec = match (args.exec, args.sh_exec, args.lua_exec) {
            (Some(e), None, None) => Some(ExecCommand::Direct(e)),
            (None, Some(c), None) => Some(ExecCommand::Shell(c)),
            (None, None, Some(script)) => {
                // ncat loads the script before anything else: a missing or
                // broken one stops the run at once.
                crate::lua::check(std::path::Path::new(&script))?;
                Some(ExecCommand::Lua(PathBuf::from(script)))
            }
            _ => None,
        };

        let p_flag = args.port.as_deref().map(parse_port).transpose()?;

        let mut positional = args.positional;
        if positional.len() > 2 {
            return Err(Failure::usage(format!(
                "Got more than two arguments: \"{}\"",
                positional[2]
            )));
        }
        let (host, port, source_port) = if args.unixsock {
            // -U takes one argument, the socket path.
            match positional.len() {
                1 => (Some(positional.remove(0)), 0, None),
                0 => {
                    return Err(Failure::usage(
                        "You must specify a path to a socket to connect to or listen on",
                    ))
                }
                _ => return Err(Failure::usage("Only one path may be given with -U")),
            }
        } else if args.listen {
            // ncat: "-l [host] [port]"; one argument is a port when it looks like one.
            let (host, pos_port) = match positional.len() {
                0 => (None, None),
                1 if is_port_like(&positional[0]) => (None, Some(parse_port(&positional[0])?)),
                1 => (Some(positional.remove(0)), None),
                _ => {
                    let port = parse_port(&positional[1])?;
                    (Some(positional.remove(0)), Some(port))
                }
            };
            if pos_port.is_some() && p_flag.is_some() && pos_port != p_flag {
                return Err(Failure::usage(
                    "Got two different ports to listen on (-p and an argument)",
                ));
            }
            // An HTTP proxy listens on ncat's proxy port by default.
            let default = match &http_proxy {
                Some(_) => crate::proxy::DEFAULT_HTTP_PORT,
                None => DEFAULT_PORT,
            };
            (host, pos_port.or(p_flag).unwrap_or(default), None)
        } else {
            match positional.len() {
                0 => return Err(Failure::usage("You must specify a host to connect to")),
                1 => (Some(positional.remove(0)), DEFAULT_PORT, p_flag),
                _ => {
                    let port = parse_port(&positional[1])?;
                    (Some(positional.remove(0)), port, p_flag)
                }
            }
        };

        let allow = AddrSet::from_specs(&args.allow, &args.allowfile, args.nodns)?;
        let deny = AddrSet::from_specs(&args.deny, &args.denyfile, args.nodns)?;

        Ok(Config {
            listen: args.listen,
            keep_open: args.keep_open,
            udp: args.udp,
            unix: args.unixsock,
            family,
            nodns: args.nodns,
            host,
            port,
            source_addr: args.source,
            source_port,
            verbose: args.verbose,
            wait,
            idle_timeout,
            delay,
            zero_io: args.zero_io,
            send_only: args.send_only,
            recv_only: args.recv_only,
            no_shutdown: args.no_shutdown,
            crlf: args.crlf,
            exec,
            max_conns,
            max_conns_given: max_conns_flag,
            allow,
            deny,
            logs: LogFiles {
                output: args.output,
                hex_dump: args.hex_dump,
                append: args.append_output,
            },
            trace: args.trace,
            trace_json: args.trace_format == "json",
            broker: args.broker || args.chat,
            chat: args.chat,
            telnet: args.telnet,
            vsock: args.vsock,
            tls,
            proxy,
            http_proxy,
            user_stack,
            capture,
            test: args.test,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(argv: &[&str]) -> Result<Config, Failure> {
        let args = Args::try_parse_from(std::iter::once("oxcat").chain(argv.iter().copied()))
            .expect("clap parse");
        Config::from_args(args)
    }

    #[test]
    fn port_may_come_before_the_flags() {
        let c = config(&["40000", "-l"]).unwrap();
        assert!(c.listen);
        assert_eq!(c.port, 40000);
        assert_eq!(c.host, None);
    }

    #[test]
    fn listen_defaults_to_31337() {
        let c = config(&["-l"]).unwrap();
        assert_eq!(c.port, DEFAULT_PORT);
        let c = config(&["-lk", "-p", "4000"]).unwrap();
        assert_eq!(c.port, 4000);
        assert!(c.keep_open);
    }

    #[test]
    fn listen_host_and_port() {
        let c = config(&["-l", "::1", "8080"]).unwrap();
        assert_eq!(c.host.as_deref(), Some("::1"));
        assert_eq!(c.port, 8080);
    }

    #[test]
    fn connect_needs_a_host() {
        assert_eq!(config(&[]).unwrap_err().exit_code(), 2);
        let c = config(&["localhost"]).unwrap();
        assert_eq!(c.port, DEFAULT_PORT);
    }

    #[test]
    fn bad_ports_are_usage_errors() {
        for p in ["99999", "abc", "65536", ""] {
            let e = config(&["127.0.0.1", p]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "port {p:?}");
        }
    }

    #[test]
    fn broker_and_chat_listen_and_refuse_what_ncat_refuses() {
        let c = config(&["--broker", "21006"]).unwrap();
        assert!(c.listen && c.keep_open && c.broker && !c.chat);
        assert_eq!(c.port, 21006);
        let c = config(&["-l", "--chat", "21006"]).unwrap();
        assert!(c.broker && c.chat);
        for (argv, msg) in [
            (&["--chat", "h", "1"][..], "`--chat' with connect"),
            (
                &["-l", "--broker", "-u", "1"],
                "UDP mode does not support connection brokering",
            ),
            (
                &["-l", "--broker", "-e", "/bin/cat", "1"],
                "--broker and -e",
            ),
        ] {
            let e = config(argv).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains(msg), "{argv:?}: {e}");
        }
    }

    #[test]
    fn unbuilt_features_are_rejected() {
        for argv in [&["--sctp", "h", "1"][..], &["-g", "h2", "h", "1"]] {
            let e = config(argv).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains("not available"), "{e}");
        }
    }

    #[test]
    fn proxy_flags() {
        use crate::proxy::ProxyKind;
        let c = config(&["--proxy", "h:1", "h", "1"]).unwrap();
        let p = c.proxy.unwrap();
        assert_eq!((p.kind, p.host.as_str(), p.port), (ProxyKind::Http, "h", 1));
        let c = config(&["--proxy", "h", "--proxy-type", "socks5", "t", "2"]).unwrap();
        assert_eq!(c.proxy.unwrap().port, 1080);
        let c = config(&["--proxy", "h", "t"]).unwrap();
        assert_eq!(c.proxy.unwrap().port, 3128);
        let c = config(&["-l", "--proxy-type", "http"]).unwrap();
        assert!(c.http_proxy.is_some() && c.proxy.is_none());
        assert_eq!(c.port, 3128, "ncat's HTTP proxy port");
        let c = config(&["-l", "--proxy-type", "http", "8080"]).unwrap();
        assert_eq!(c.port, 8080);
        for (argv, msg) in [
            (
                &["--proxy", "h", "--proxy-type", "ftp", "t", "1"][..],
                "Invalid proxy type \"ftp\"",
            ),
            (
                &["--proxy-type", "socks4", "t", "1"],
                "without proxy address",
            ),
            (
                &["--proxy", "h", "--proxy-dns", "x", "t", "1"],
                "Invalid proxy DNS type",
            ),
            (&["-l", "--proxy", "h:1", "1"], "--proxy and -l"),
            (
                &["-l", "--proxy-type", "socks4", "1"],
                "only supports \"http\"",
            ),
            (&["-U", "--proxy", "h", "/tmp/s"], "Unix domain sockets"),
            (
                &["--proxy", "h:99999", "t", "1"],
                "Invalid proxy port number",
            ),
        ] {
            let e = config(argv).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{argv:?}");
            assert!(e.to_string().contains(msg), "{argv:?}: {e}");
        }
    }

    #[test]
    fn pcap_and_mermaid_on_either_stack() {
        let c = config(&["--pcap", "f.pcap", "-l", "1"]).unwrap();
        assert!(c.capture.is_some() && c.user_stack.is_none());
        let c = config(&["--stack", "user", "--mermaid", "f.mmd", "-l", "1"]).unwrap();
        assert!(c.capture.is_none());
        assert!(c.user_stack.unwrap().mermaid.is_some());
        assert!(config(&["-l", "1"]).unwrap().capture.is_none());
        for argv in [
            &["--pcap", "f", "-U", "/tmp/x"][..],
            &["--mermaid", "m", "--vsock", "3", "1"],
        ] {
            let e = config(argv).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains("carry no IP packets"), "{e}");
        }
    }

    #[test]
    fn time_flags() {
        let c = config(&["-w", "500ms", "-i", "2", "-d", "1.5s", "h", "1"]).unwrap();
        assert_eq!(c.wait, Some(Duration::from_millis(500)));
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(2)));
        assert_eq!(c.delay, Some(Duration::from_millis(1500)));
        assert_eq!(config(&["-w", "0", "h", "1"]).unwrap_err().exit_code(), 2);
        assert_eq!(config(&["-w", "x", "h", "1"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn conflicting_flags() {
        assert_eq!(
            config(&["-4", "-6", "h", "1"]).unwrap().family,
            Family::V6,
            "the last of -4/-6 wins, as in ncat"
        );
        assert_eq!(
            config(&["--allow", "127.0.0.1", "h", "1"])
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(config(&["-m", "2", "h", "1"]).unwrap_err().exit_code(), 2);
        assert_eq!(
            config(&["-l", "-s", "127.0.0.1", "1"])
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(config(&["-l", "-u", "-k", "1"]).unwrap_err().exit_code(), 2);
        assert_eq!(config(&["-w", "100", "h", "1"]).unwrap_err().exit_code(), 2);
        assert!(config(&["-w", "100ms", "h", "1"]).is_ok());
        assert_eq!(config(&["-l", "-z", "1"]).unwrap_err().exit_code(), 2);
        assert_eq!(config(&["h", "1", "2"]).unwrap_err().exit_code(), 2);
    }
}
