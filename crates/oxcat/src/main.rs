//! oxcat: a drop-in replacement for Nmap's ncat.
//!
//! This file is argument plumbing: parse ncat's flags, pick the mode, print
//! the one line a failure deserves, and exit with ncat's code.

mod addrset;
mod broker;
mod capture;
mod cli;
mod connect;
mod demo;
mod docs;
mod error;
mod exec;
mod figures;
mod hexdump;
mod http_proxy;
mod kernel_demo;
mod listen;
mod lua;
mod msg;
mod proxy;
mod relay;
mod resolve;
mod session_log;
mod sim_demo;
mod sys;
mod timespec;
mod tls;
mod user_stack;

use clap::Parser;
use oxcat_trace::Sink;

use crate::cli::{Args, Config};
use crate::error::Failure;

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let argv0 = argv.first().and_then(|a| a.to_str()).unwrap_or("oxcat");
    msg::set_program_name(argv0);

    let code = if argv.get(1).is_some_and(|a| a == lua::RUN_FLAG) {
        lua::run(argv.get(2).map(std::path::Path::new))
    } else if argv.get(1).is_some_and(|a| a == "demo") && demo::is_demo_invocation(&argv[1..]) {
        demo::main(&argv[2..])
    } else {
        run(&argv)
    };
    std::process::exit(code);
}

fn run(argv: &[std::ffi::OsString]) -> i32 {
    let args = match Args::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => return clap_failure(e),
    };
    if args.man_page || args.completions.is_some() {
        return docs::print(args.man_page, args.completions);
    }
    if args.version {
        msg::stderr_line(format_args!(
            "{}: Version {} ( oxcat, compatible with https://nmap.org/ncat )",
            msg::prefix(),
            env!("CARGO_PKG_VERSION")
        ));
        return 0;
    }
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(f) => return fail(&f),
    };
    msg::set_verbosity(config.verbose);
    if msg::verbosity() >= 1 {
        msg::say_raw(&format!(
            "Version {} ( oxcat, compatible with https://nmap.org/ncat )",
            env!("CARGO_PKG_VERSION")
        ));
    }
    if let Some(path) = &config.trace {
        let sink: Box<dyn std::io::Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stderr())
        } else {
            match std::fs::File::create(path) {
                Ok(f) => Box::new(std::io::LineWriter::new(f)),
                Err(e) => {
                    return fail(&Failure::io(
                        format!("Unable to open trace file \"{}\"", path.display()),
                        &e,
                    ))
                }
            }
        };
        let format = if config.trace_json {
            oxcat_trace::Format::Json
        } else {
            oxcat_trace::Format::Text
        };
        sys::start_trace(Sink::writer(format, sink));
    }
    let mut log = match session_log::SessionLog::open(&config.logs) {
        Ok(l) => l,
        Err(f) => return fail(&f),
    };
    if let Some(us) = &config.user_stack {
        if let Err(f) = user_stack::start(us, config.trace.is_some()) {
            sys::end_reorder_trace();
            return fail(&f);
        }
    }
    if let Some(c) = &config.capture {
        if let Err(f) = capture::start(c) {
            return fail(&f);
        }
    }
    let result = if config.listen {
        listen::run(&config, &mut log)
    } else {
        connect::run(&config, &mut log)
    };
    // TLS connections send what the CLI gave them (close_notify, FIN) first.
    tls::finish();
    // Our stack delivers what the CLI handed it before the process goes.
    user_stack::finish();
    // The capture takes the last packets (FIN, ACK) before the files are closed.
    capture::finish();
    // A trace holding events back to order them writes them now.
    sys::end_reorder_trace();
    if user_stack::device_gone() {
        // Said in one line when it happened; whatever the relay made of it.
        return 1;
    }
    match result {
        Ok(code) => code,
        Err(f) => fail(&f),
    }
}

fn fail(f: &Failure) -> i32 {
    msg::say(&f.to_string());
    f.exit_code()
}

/// clap's errors become one line, with ncat's exit code 2; help and version exit 0.
fn clap_failure(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            0
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let first = first.trim_start_matches("error: ").trim_end_matches('.');
            msg::stderr_line(format_args!("{}: {first}. Try --help.", msg::prefix()));
            2
        }
    }
}
