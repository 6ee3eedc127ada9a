//! Host names to addresses, as ncat takes them: IPv4 and IPv6 literals
//! (bracketed or not), names through the system resolver unless `-n`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::cli::Family;
use crate::error::Failure;

/// Every address of `host` admitted by `family`, in the resolver's order.
pub fn resolve(
    host: &str,
    port: u16,
    family: Family,
    nodns: bool,
) -> Result<Vec<SocketAddr>, Failure> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let candidates: Vec<SocketAddr> = if let Ok(ip) = bare.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, port)]
    } else if nodns {
        return Err(Failure::usage(format!(
            "Could not resolve hostname \"{host}\": Name or service not known (-n forbids DNS)"
        )));
    } else {
        match (bare, port).to_socket_addrs() {
            Ok(it) => it.collect(),
            Err(e) => {
                let text = crate::error::describe(&e);
                let reason = text.rsplit(": ").next().unwrap_or(&text).to_string();
                return Err(Failure::usage(format!(
                    "Could not resolve hostname \"{host}\": {reason}"
                )));
            }
        }
    };
    let admitted: Vec<SocketAddr> = candidates
        .into_iter()
        .filter(|a| family.admits(&a.ip()))
        .collect();
    if admitted.is_empty() {
        return Err(Failure::usage(format!(
            "Could not resolve hostname \"{host}\": Address family for hostname not supported"
        )));
    }
    Ok(admitted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(
            resolve("::1", 80, Family::Any, true).unwrap(),
            vec!["[::1]:80".parse().unwrap()]
        );
        assert_eq!(
            resolve("[::1]", 80, Family::V6, true).unwrap(),
            vec!["[::1]:80".parse().unwrap()]
        );
        assert_eq!(
            resolve("127.0.0.1", 9, Family::V4, true).unwrap(),
            vec!["127.0.0.1:9".parse().unwrap()]
        );
    }

    #[test]
    fn family_mismatch_and_nodns_are_usage_errors() {
        assert_eq!(
            resolve("::1", 80, Family::V4, true)
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(
            resolve("localhost", 80, Family::Any, true)
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn unresolvable_names() {
        let e = resolve("no-such-host.invalid", 80, Family::Any, false).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("Could not resolve hostname"), "{e}");
    }
}
