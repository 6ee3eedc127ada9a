//! `--ssl`: TLS on any connected stream socket, with rustls (no OpenSSL).
//!
//! After the handshake a connection is a [`Session`]: the socket and the
//! rustls state on it, plaintext in and out. Connect mode and a one-client
//! listener moving stdin and stdout run it inside the relay's own loop
//! (`relay::relay_stream`): ciphertext is read from the socket into rustls
//! and the plaintext written straight to stdout; what stdin gives is
//! encrypted and written straight to the socket. The modes written against
//! a file descriptor (`-e`/`-c`, `-k`, `--broker`, `-z`) get one end of a
//! Unix stream socketpair (the bridge) and a thread runs the session
//! between the other end and the socket. EOF crosses as the CLI expects:
//! stdin's EOF (or the CLI's `shutdown(SHUT_WR)` on the bridge) becomes a
//! close_notify alert and then a FIN (RFC 8446 §6.1: close_notify closes
//! one direction only, so receiving goes on); the peer's close_notify, or
//! its FIN without one (as ncat sends), is EOF.
//!
//! What ncat prints is kept: the temporary certificate's SHA-1
//! fingerprint, the subject, issuer and fingerprint of a certificate that
//! fails verification, `SSL connection to ...` in place of `Connected to`.
//! The temporary certificate is ECDSA P-256 where ncat's is RSA-2048: it
//! is made in microseconds and signs handshakes many times faster, and
//! every TLS 1.2/1.3 client accepts it.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, CipherSuite, ClientConfig, Connection, DigitallySignedStruct, RootCertStore,
    ServerConfig, SignatureScheme, SupportedCipherSuite, SupportedProtocolVersion,
};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::cli::{Args, Config};
use crate::error::{describe, Failure};
use crate::sys;

/// What the `--ssl*` flags asked for, checked.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub verify: bool,
    pub trustfile: Option<PathBuf>,
    /// `--ssl-ciphers`, mapped to the suites rustls has (None: its defaults).
    pub suites: Option<Vec<SupportedCipherSuite>>,
    pub servername: Option<String>,
    pub alpn: Vec<Vec<u8>>,
}

/// The `--ssl*` flags as ncat takes them: any of them turns TLS on, and a
/// trust file turns verification on.
pub fn from_args(args: &Args) -> Result<Option<TlsOptions>, Failure> {
    let any = args.ssl
        || args.ssl_cert.is_some()
        || args.ssl_key.is_some()
        || args.ssl_verify
        || args.ssl_trustfile.is_some()
        || args.ssl_ciphers.is_some()
        || args.ssl_servername.is_some()
        || args.ssl_alpn.is_some();
    if !any {
        return Ok(None);
    }
    if args.unixsock {
        return Err(Failure::usage(
            "SSL option not supported when using Unix domain sockets",
        ));
    }
    if args.udp {
        // ncat's --ssl -u is DTLS (connect mode only); rustls has no DTLS.
        return Err(Failure::usage(if args.listen {
            "DTLS is not supported in listen mode"
        } else {
            "--ssl with -u asks for DTLS, which oxcat does not support (TLS runs over TCP only)"
        }));
    }
    if args.listen && args.ssl_alpn.is_some() {
        return Err(Failure::usage("ALPN is not supported in listen mode"));
    }
    if args.ssl_cert.is_some() != args.ssl_key.is_some() {
        return Err(Failure::usage(
            "The --ssl-key and --ssl-cert options must be used together",
        ));
    }
    let suites = args.ssl_ciphers.as_deref().map(parse_ciphers).transpose()?;
    let alpn = match args.ssl_alpn.as_deref() {
        None => Vec::new(),
        Some(list) => parse_alpn(list)
            .ok_or_else(|| Failure::usage(format!("Could not parse ALPN string \"{list}\"")))?,
    };
    Ok(Some(TlsOptions {
        cert: args.ssl_cert.as_ref().map(PathBuf::from),
        key: args.ssl_key.as_ref().map(PathBuf::from),
        verify: args.ssl_verify || args.ssl_trustfile.is_some(),
        trustfile: args.ssl_trustfile.as_ref().map(PathBuf::from),
        suites,
        servername: args.ssl_servername.clone(),
        alpn,
    }))
}

/// `h2,http/1.1` as ALPN protocol names: 1 to 255 bytes each.
fn parse_alpn(list: &str) -> Option<Vec<Vec<u8>>> {
    list.split(',')
        .map(|p| (!p.is_empty() && p.len() <= 255).then(|| p.as_bytes().to_vec()))
        .collect()
}

// ---------------------------------------------------------------- ciphers

/// A TLS 1.2 suite rustls has, under its OpenSSL name, with the
/// attributes OpenSSL's cipher-list keywords select by.
struct Tls12Suite {
    openssl: &'static str,
    suite: CipherSuite,
    auth: &'static str,
    enc: &'static str,
    hash: &'static str,
}

const TLS12_SUITES: &[Tls12Suite] = &[
    Tls12Suite {
        openssl: "ECDHE-ECDSA-AES256-GCM-SHA384",
        suite: CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        auth: "ECDSA",
        enc: "AES256GCM",
        hash: "SHA384",
    },
    Tls12Suite {
        openssl: "ECDHE-RSA-AES256-GCM-SHA384",
        suite: CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        auth: "RSA",
        enc: "AES256GCM",
        hash: "SHA384",
    },
    Tls12Suite {
        openssl: "ECDHE-ECDSA-CHACHA20-POLY1305",
        suite: CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        auth: "ECDSA",
        enc: "CHACHA20",
        hash: "SHA256",
    },
    Tls12Suite {
        openssl: "ECDHE-RSA-CHACHA20-POLY1305",
        suite: CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        auth: "RSA",
        enc: "CHACHA20",
        hash: "SHA256",
    },
    Tls12Suite {
        openssl: "ECDHE-ECDSA-AES128-GCM-SHA256",
        suite: CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        auth: "ECDSA",
        enc: "AES128GCM",
        hash: "SHA256",
    },
    Tls12Suite {
        openssl: "ECDHE-RSA-AES128-GCM-SHA256",
        suite: CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        auth: "RSA",
        enc: "AES128GCM",
        hash: "SHA256",
    },
];

/// TLS 1.3 suites by their RFC 8446 names (OpenSSL's `-ciphersuites` names).
const TLS13_SUITES: &[(&str, CipherSuite)] = &[
    (
        "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
];

/// OpenSSL cipher-list keywords that select nothing rustls has (no static
/// RSA or DH key exchange, no CBC, no legacy ciphers): fine to exclude,
/// and selecting only these matches no cipher, as in OpenSSL.
const EMPTY_KEYWORDS: &[&str] = &[
    "aNULL",
    "eNULL",
    "NULL",
    "EXP",
    "EXPORT",
    "LOW",
    "MEDIUM",
    "RC4",
    "MD5",
    "SHA1",
    "SHA",
    "DES",
    "3DES",
    "IDEA",
    "SEED",
    "RC2",
    "CAMELLIA",
    "CAMELLIA128",
    "CAMELLIA256",
    "ARIA",
    "ARIA128",
    "ARIA256",
    "ARIAGCM",
    "PSK",
    "kPSK",
    "aPSK",
    "ECDHEPSK",
    "DHEPSK",
    "RSAPSK",
    "kECDHEPSK",
    "kDHEPSK",
    "kRSAPSK",
    "SRP",
    "kSRP",
    "aSRP",
    "DSS",
    "aDSS",
    "aDH",
    "kDH",
    "kDHr",
    "kDHd",
    "kEDH",
    "kDHE",
    "EDH",
    "DHE",
    "DH",
    "ADH",
    "AECDH",
    "kRSA",
    "RSA",
    "AESCCM",
    "AESCCM8",
    "CBC",
    "GOST",
    "kGOST",
    "aGOST",
    "aGOST01",
    "GOST89MAC",
    "GOST94",
    "COMPLEMENTOFDEFAULT",
    "COMPLEMENTOFALL",
    "SSLv3",
    "TLSv1",
    "TLSv1.0",
    "SUITEB128",
    "SUITEB128ONLY",
    "SUITEB128C2",
    "SUITEB192",
    "aECDH",
    "kECDH",
    "ECDH-RSA",
    "ECDH-ECDSA",
];

/// The TLS 1.2 suites (indexes into TLS12_SUITES) a cipher-list word selects.
fn keyword(word: &str) -> Option<Vec<usize>> {
    let all = 0..TLS12_SUITES.len();
    let by = |f: &dyn Fn(&Tls12Suite) -> bool| -> Vec<usize> {
        all.clone().filter(|&i| f(&TLS12_SUITES[i])).collect()
    };
    if let Some(i) = TLS12_SUITES.iter().position(|s| s.openssl == word) {
        return Some(vec![i]);
    }
    Some(match word {
        "ALL" | "DEFAULT" | "HIGH" | "TLSv1.2" | "ECDHE" | "EECDH" | "kECDHE" | "kEECDH"
        | "ECDH" | "AEAD" => all.collect(),
        "aECDSA" | "ECDSA" => by(&|s| s.auth == "ECDSA"),
        "aRSA" => by(&|s| s.auth == "RSA"),
        "AESGCM" | "AES" => by(&|s| s.enc.starts_with("AES")),
        "AES128" => by(&|s| s.enc == "AES128GCM"),
        "AES256" => by(&|s| s.enc == "AES256GCM"),
        "CHACHA20" => by(&|s| s.enc == "CHACHA20"),
        "SHA256" => by(&|s| s.hash == "SHA256"),
        "SHA384" => by(&|s| s.hash == "SHA384"),
        w if EMPTY_KEYWORDS.contains(&w) => Vec::new(),
        _ => return None,
    })
}

fn supported_names() -> String {
    TLS12_SUITES
        .iter()
        .map(|s| s.openssl)
        .chain(TLS13_SUITES.iter().map(|(n, _)| *n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An OpenSSL cipher list (`ECDHE+AESGCM:!aNULL:@STRENGTH`) as rustls
/// suites. As with OpenSSL 3, the list governs TLS 1.2 and TLS 1.3 keeps
/// its suites, unless the list names TLS 1.3 suites too (which ncat
/// refuses): then those are the TLS 1.3 suites. A name oxcat cannot honour
/// (a cipher rustls lacks, or no cipher at all) is an error, not ignored.
fn parse_ciphers(list: &str) -> Result<Vec<SupportedCipherSuite>, Failure> {
    let mut chosen: Vec<usize> = Vec::new();
    let mut banned: Vec<usize> = Vec::new();
    let mut tls13: Vec<CipherSuite> = Vec::new();
    for element in list.split([':', ',', ' ', ';']).filter(|e| !e.is_empty()) {
        if element.starts_with('@') {
            continue; // @STRENGTH, @SECLEVEL=n: ordering and policy, nothing to select
        }
        let (op, body) = match element.as_bytes()[0] {
            b'!' | b'-' | b'+' => (element.as_bytes()[0], &element[1..]),
            _ => (b' ', element),
        };
        if let Some((_, s)) = TLS13_SUITES.iter().find(|(n, _)| *n == body) {
            if op == b' ' && !tls13.contains(s) {
                tls13.push(*s);
            }
            continue;
        }
        // A '+' inside a word ANDs keywords: ECDHE+AESGCM.
        let mut selected: Option<Vec<usize>> = None;
        for word in body.split('+') {
            let Some(set) = keyword(word) else {
                return Err(Failure::usage(format!(
                    "Unsupported cipher \"{word}\" in --ssl-ciphers (oxcat's TLS supports {})",
                    supported_names()
                )));
            };
            selected = Some(match selected {
                None => set,
                Some(prev) => prev.into_iter().filter(|i| set.contains(i)).collect(),
            });
        }
        let selected = selected.unwrap_or_default();
        match op {
            b'!' => {
                chosen.retain(|i| !selected.contains(i));
                banned.extend(selected);
            }
            b'-' => chosen.retain(|i| !selected.contains(i)),
            b'+' => {
                // Move to the end, keeping their order.
                let moved: Vec<usize> = chosen
                    .iter()
                    .copied()
                    .filter(|i| selected.contains(i))
                    .collect();
                chosen.retain(|i| !selected.contains(i));
                chosen.extend(moved);
            }
            _ => {
                for i in selected {
                    if !chosen.contains(&i) && !banned.contains(&i) {
                        chosen.push(i);
                    }
                }
            }
        }
    }
    if chosen.is_empty() && tls13.is_empty() {
        return Err(Failure::usage(format!(
            "Unable to set cipher list \"{list}\": no cipher match (oxcat's TLS supports {})",
            supported_names()
        )));
    }
    let provider = rustls::crypto::ring::default_provider();
    let find = |cs: CipherSuite| {
        provider
            .cipher_suites
            .iter()
            .find(|s| s.suite() == cs)
            .copied()
    };
    let mut out: Vec<SupportedCipherSuite> = Vec::new();
    if tls13.is_empty() {
        out.extend(
            provider
                .cipher_suites
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS13)
                .copied(),
        );
    } else {
        out.extend(tls13.into_iter().filter_map(find));
    }
    out.extend(
        chosen
            .into_iter()
            .filter_map(|i| find(TLS12_SUITES[i].suite)),
    );
    Ok(out)
}

/// The crypto provider (ring) with the suites `--ssl-ciphers` chose, and
/// the protocol versions those suites allow.
fn provider(opts: &TlsOptions) -> (Arc<CryptoProvider>, Vec<&'static SupportedProtocolVersion>) {
    let mut p = rustls::crypto::ring::default_provider();
    if let Some(s) = &opts.suites {
        p.cipher_suites = s.clone();
    }
    let mut versions = Vec::new();
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        if p.cipher_suites.iter().any(|s| s.version() == v) {
            versions.push(v);
        }
    }
    (Arc::new(p), versions)
}

// ---------------------------------------------------------------- files

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&e))?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

fn load_certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, Failure> {
    read_certs(path).map_err(|why| {
        Failure::usage(format!(
            "Unable to load {flag} \"{}\": {why}",
            path.display()
        ))
    })
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Failure> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        Failure::usage(format!(
            "Unable to load --ssl-key \"{}\": {}",
            path.display(),
            pem_error(&e)
        ))
    })
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => describe(io),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of the right kind in it".into(),
        other => format!("not valid PEM ({other:?})"),
    }
}

/// `--ssl-cert` and `--ssl-key` as a certified key, checked to match.
fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<rustls::sign::CertifiedKey>, Failure> {
    let chain = load_certs(cert, "--ssl-cert")?;
    let der = load_key(key)?;
    let signer = provider.key_provider.load_private_key(der).map_err(|e| {
        Failure::usage(format!(
            "Unable to use --ssl-key \"{}\": {e}",
            key.display()
        ))
    })?;
    let ck = rustls::sign::CertifiedKey::new(chain, signer);
    match ck.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(Failure::usage(format!(
                "--ssl-key \"{}\" does not match --ssl-cert \"{}\" (key values mismatch)",
                key.display(),
                cert.display()
            )))
        }
    }
    Ok(Arc::new(ck))
}

// ---------------------------------------------------------------- certificates, as ncat shows them

/// SHA-1 of a certificate's DER, as ncat prints it: `40CD F060 A90E ...`.
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    d.as_ref()
        .chunks(2)
        .map(|pair| pair.iter().map(|b| format!("{b:02X}")).collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

struct CertText {
    subject: String,
    issuer: String,
    organization: Option<String>,
    common_names: Vec<String>,
    dns_names: Vec<String>,
    self_issued: bool,
}

fn cert_text(der: &[u8]) -> Option<CertText> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let organization = cert
        .subject()
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .last();
    let common_names = cert
        .subject()
        .iter_common_name()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                dns_names.push(d.to_string());
            }
        }
    }
    Some(CertText {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        organization,
        common_names,
        dns_names,
        self_issued: cert.subject().as_raw() == cert.issuer().as_raw(),
    })
}

/// ncat's three lines for a certificate (its verify callback).
fn show_cert(der: &[u8]) {
    if let Some(t) = cert_text(der) {
        crate::msg::say_raw(&format!("Subject: {}", t.subject));
        crate::msg::say_raw(&format!("Issuer: {}", t.issuer));
    }
    crate::msg::say_raw(&format!("SHA-1 fingerprint: {}", fingerprint(der)));
}

/// ncat's wildcard rule: `*.` as the whole leftmost label, at least two
/// labels after it, matching exactly one label of the host.
fn wildcard_match(pattern: &str, host: &str) -> bool {
    if let Some(rest) = pattern.strip_prefix("*.") {
        if rest.contains('*') || !rest.trim_end_matches('.').contains('.') {
            return false;
        }
        match host.split_once('.') {
            Some((_, tail)) => tail.eq_ignore_ascii_case(rest),
            None => false,
        }
    } else {
        pattern.eq_ignore_ascii_case(host)
    }
}

/// The name check ncat does after the handshake (RFC 2818 §3.1): the
/// subjectAltName DNS names if there are any, else the most specific
/// common name. Returns the common name that failed, for ncat's message.
fn ncat_name_check(t: &CertText, host: &str) -> Result<(), Option<String>> {
    if !t.dns_names.is_empty() {
        return match t.dns_names.iter().any(|d| wildcard_match(d, host)) {
            true => Ok(()),
            false => Err(None),
        };
    }
    // ncat: a wildcard is less specific than a plain name; more labels is more
    // specific; of equals, the later one wins.
    let specificity = |cn: &String| {
        (
            !cn.contains('*'),
            cn.split('.').filter(|l| !l.is_empty()).count(),
        )
    };
    let mut best: Option<&String> = None;
    for cn in &t.common_names {
        match best {
            Some(b) if specificity(cn) < specificity(b) => {}
            _ => best = Some(cn),
        }
    }
    match best {
        Some(cn) if wildcard_match(cn, host) => Ok(()),
        Some(cn) => Err(Some(cn.clone())),
        None => Err(None),
    }
}

/// OpenSSL's words for why a chain failed (X509_verify_cert_error_string),
/// so `-v` reads as ncat's does.
fn openssl_reason(e: &rustls::Error, chain: &[&[u8]]) -> String {
    let top_self_issued = chain
        .last()
        .and_then(|c| cert_text(c))
        .is_some_and(|t| t.self_issued);
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer if top_self_issued && chain.len() == 1 => {
                "self-signed certificate".into()
            }
            CertificateError::UnknownIssuer if top_self_issued => {
                "self-signed certificate in certificate chain".into()
            }
            CertificateError::UnknownIssuer => "unable to get local issuer certificate".into(),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate is not yet valid".into()
            }
            CertificateError::Revoked => "certificate revoked".into(),
            CertificateError::BadSignature => "certificate signature failure".into(),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "unsupported certificate purpose".into()
            }
            other => format!("{other:?}"),
        },
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------- client

/// Why a client's verifier refused the server, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The chain: ncat fails the handshake ("Input/output error", exit 1).
    Chain,
    /// The name: ncat's "Certificate verification error" (exit 2).
    Name,
}

/// ncat's verification: always look at the chain (to report a failure under
/// `-v`), refuse only with `--ssl-verify`; then check the name as ncat does.
#[derive(Debug)]
struct NcatVerifier {
    /// Roots: the trust file, or the system's store. None when nothing
    /// would use them (no `--ssl-verify`, no `-v`).
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// Whether to look at the chain at all; with no roots, nothing is trusted.
    check_chain: bool,
    /// Trust-file certificates, trusted as they are (OpenSSL trusts a
    /// self-signed server certificate listed there even if it says CA).
    pinned: Vec<CertificateDer<'static>>,
    verify: bool,
    /// The name the certificate must carry: `--ssl-servername`, else the host.
    check_name: String,
    provider: Arc<CryptoProvider>,
    refusal: Mutex<Option<Refusal>>,
}

impl NcatVerifier {
    fn chain_result(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> (Result<(), rustls::Error>, bool) {
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return (pinned_validity(end_entity, now), false);
        }
        let Some(v) = &self.webpki else {
            return match self.check_chain {
                true => (
                    Err(rustls::Error::InvalidCertificate(
                        CertificateError::UnknownIssuer,
                    )),
                    false,
                ),
                false => (Ok(()), false),
            };
        };
        match v.verify_server_cert(end_entity, intermediates, server_name, &[], now) {
            Ok(_) => (Ok(()), true),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => (Ok(()), false),
            Err(e) => (Err(e), false),
        }
    }
}

/// A pinned certificate still has to be within its dates.
fn pinned_validity(der: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    use x509_parser::prelude::*;
    let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ));
    };
    let now = now.as_secs() as i64;
    if now < cert.validity().not_before.timestamp() {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet,
        ));
    }
    if now > cert.validity().not_after.timestamp() {
        return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
    }
    Ok(())
}

impl ServerCertVerifier for NcatVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verbosity = crate::msg::verbosity();
        let chain: Vec<&[u8]> = std::iter::once(end_entity.as_ref())
            .chain(intermediates.iter().map(|c| c.as_ref()))
            .collect();
        if verbosity >= 3 {
            // ncat's -vvv: every certificate, the issuers first.
            for c in chain.iter().rev() {
                show_cert(c);
            }
        }
        let (result, name_ok) = self.chain_result(end_entity, intermediates, server_name, now);
        if let Err(e) = result {
            if verbosity >= 1 {
                if verbosity < 3 {
                    let shown = match e {
                        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                            chain.last().copied().unwrap_or(end_entity.as_ref())
                        }
                        _ => end_entity.as_ref(),
                    };
                    show_cert(shown);
                }
                crate::msg::say(&format!(
                    "Certificate verification failed ({})",
                    openssl_reason(&e, &chain)
                ));
            }
            if self.verify {
                *lock(&self.refusal) = Some(Refusal::Chain);
                return Err(e);
            }
        }
        if self.verify && !name_ok {
            let checked = cert_text(end_entity.as_ref())
                .map(|t| ncat_name_check(&t, &self.check_name))
                .unwrap_or(Err(None));
            if let Err(cn) = checked {
                if let (Some(cn), true) = (cn, verbosity >= 1) {
                    crate::msg::say_raw(&format!(
                        "Certificate verification error: Connected to \"{}\", but certificate is for \"{cn}\".",
                        self.check_name
                    ));
                }
                *lock(&self.refusal) = Some(Refusal::Name);
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName,
                ));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Connect mode's TLS, set up before connecting (as ncat sets up its
/// context first, so a bad trust file fails before any packet is sent).
pub struct Client {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    verifier: Arc<NcatVerifier>,
}

/// Records carry at most 8 KiB of plaintext (plus the 5-byte header), as
/// ncat's own do: ncat 7.93 reads a record in 8 KiB pieces and only looks
/// again when the socket is readable, so the rest of a 16 KiB record would
/// wait in OpenSSL until more bytes arrive (the end of a transfer, never).
const MAX_RECORD: usize = 8192 + 5;

/// ncat gives up on a handshake after the connect timeout, 10 s unless `-w`.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    pub fn new(cfg: &Config) -> Result<Option<Client>, Failure> {
        let Some(opts) = &cfg.tls else {
            return Ok(None);
        };
        let host = cfg.host.clone().unwrap_or_else(|| "localhost".into());
        let check_name = opts.servername.clone().unwrap_or(host);
        let (provider, versions) = provider(opts);
        let verbosity = crate::msg::verbosity();

        let mut pinned = Vec::new();
        let roots = if let Some(path) = &opts.trustfile {
            crate::verbose!(
                2,
                "DEBUG: Using trusted CA certificates from {}",
                path.display()
            );
            let certs = read_certs(path).map_err(|why| {
                Failure::usage(format!(
                    "Could not load trusted certificates from {}: {why}",
                    path.display()
                ))
            })?;
            let mut store = RootCertStore::empty();
            let (added, _) = store.add_parsable_certificates(certs.iter().cloned());
            pinned = certs;
            (added > 0).then_some(store)
        } else if opts.verify || verbosity >= 1 {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            store.add_parsable_certificates(found.certs);
            Some(store)
        } else {
            None
        };
        if !opts.verify {
            crate::verbose!(2, "DEBUG: Not doing certificate verification");
        }
        let check_chain = opts.verify || verbosity >= 1;
        let webpki = match roots {
            Some(store) if check_chain && !store.is_empty() => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                    .build()
                    .map_err(|e| Failure::usage(format!("TLS verifier: {e}")))?,
            ),
            _ => None,
        };
        let verifier = Arc::new(NcatVerifier {
            webpki,
            check_chain,
            pinned,
            verify: opts.verify,
            check_name: check_name.clone(),
            provider: provider.clone(),
            refusal: Mutex::new(None),
        });
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| Failure::usage(format!("--ssl-ciphers: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone());
        let mut config = match (&opts.cert, &opts.key) {
            (Some(c), Some(k)) => {
                let ck = certified_key(c, k, &provider)?;
                builder
                    .with_client_auth_cert(ck.cert.clone(), load_key(k)?)
                    .map_err(|e| Failure::usage(format!("--ssl-cert: {e}")))?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = opts.alpn.clone();
        config.max_fragment_size = Some(MAX_RECORD);
        // SNI carries the name; an IP address, or a name that is not a DNS
        // name, sends none (RFC 6066 §3), and the verifier checks the name.
        let server_name = ServerName::try_from(check_name).unwrap_or(ServerName::IpAddress(
            std::net::Ipv4Addr::UNSPECIFIED.into(),
        ));
        Ok(Some(Client {
            config: Arc::new(config),
            server_name,
            verifier,
        }))
    }

    /// Runs the handshake on a connected socket (bounded by `-w`, else
    /// 10 s) and reports it as ncat does, naming the server `target`.
    pub fn handshake(
        &self,
        sock: Socket,
        target: &str,
        wait: Option<Duration>,
    ) -> Result<Stream, Failure> {
        let client = rustls::ClientConnection::new(self.config.clone(), self.server_name.clone())
            .map_err(|e| Failure::network(format!("TLS: {e}")))?;
        let mut tls = Connection::from(client);
        sock.set_nonblocking(true)
            .map_err(|e| Failure::io("fcntl", &e))?;
        let deadline = Instant::now() + wait.unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT);
        if let Err(e) = handshake(&mut tls, sock.as_fd(), Some(deadline)) {
            return Err(match (*lock(&self.verifier.refusal), e) {
                (Some(Refusal::Name), _) => Failure::usage("Certificate verification error"),
                (Some(Refusal::Chain), _) => Failure::network("Input/output error"),
                (None, HandshakeError::Timeout) => Failure::network("Connection timed out"),
                (None, e) => {
                    crate::verbose!(1, "Failed SSL connection to {target}: {e}");
                    Failure::network("Input/output error")
                }
            });
        }
        if crate::msg::verbosity() >= 1 {
            let peer = tls
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec());
            let org = peer
                .as_deref()
                .and_then(cert_text)
                .and_then(|t| t.organization)
                .map(|o| format!(" {o}"))
                .unwrap_or_default();
            crate::msg::say_raw(&format!("SSL connection to {target}.{org}"));
            if let Some(der) = peer {
                crate::msg::say_raw(&format!("SHA-1 fingerprint: {}", fingerprint(&der)));
            }
            if let Some(p) = tls.alpn_protocol() {
                crate::verbose!(2, "DEBUG: ALPN protocol: {}", String::from_utf8_lossy(p));
            }
        }
        Ok(Stream::Tls(sock, Box::new(Session::new(tls))))
    }
}

// ---------------------------------------------------------------- server

static SERVER: OnceLock<Arc<ServerConfig>> = OnceLock::new();

/// Makes a self-signed certificate (ECDSA P-256, valid for a year) for
/// `name`, as a DNS name and, when it is one, an IP address too (ncat's
/// client compares DNS names only; rustls checks IP addresses as IPs).
fn self_signed(
    name: &str,
    ip: Option<std::net::IpAddr>,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), rcgen::Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.subject_alt_names = vec![rcgen::SanType::DnsName(name.try_into()?)];
    if let Some(ip) = ip {
        params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
    }
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(365);
    let mut serial = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial);
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let cert = params.self_signed(&key)?;
    let key = PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|_| rcgen::Error::CouldNotParseKeyPair)?;
    Ok((cert.der().clone(), key))
}

/// Listen mode's TLS: the certificate (`--ssl-cert`/`--ssl-key`, or a
/// temporary one announced as ncat does), set up before listening.
pub fn start_server(cfg: &Config) -> Result<(), Failure> {
    let Some(opts) = &cfg.tls else {
        return Ok(());
    };
    let (provider, versions) = provider(opts);
    let key = match (&opts.cert, &opts.key) {
        (Some(c), Some(k)) => certified_key(c, k, &provider)?,
        _ => {
            if crate::msg::verbosity() >= 1 {
                crate::msg::say_raw(
                    "Generating a temporary 256-bit ECDSA key. Use --ssl-key and --ssl-cert to use a permanent one.",
                );
            }
            let name = cfg.host.clone().unwrap_or_else(|| "localhost".into());
            let ip = name.parse().ok();
            let (cert, key) = self_signed(&name, ip)
                .map_err(|e| Failure::network(format!("Unable to make a certificate: {e}")))?;
            if crate::msg::verbosity() >= 1 {
                crate::msg::say_raw(&format!("SHA-1 fingerprint: {}", fingerprint(&cert)));
            }
            let signer = provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| Failure::network(format!("Unable to use the temporary key: {e}")))?;
            Arc::new(rustls::sign::CertifiedKey::new(vec![cert], signer))
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| Failure::usage(format!("--ssl-ciphers: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(OneCertificate(key)));
    config.max_fragment_size = Some(MAX_RECORD);
    let _ = SERVER.set(Arc::new(config));
    Ok(())
}

/// The server's one certificate, whatever name the client asks for.
#[derive(Debug)]
struct OneCertificate(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for OneCertificate {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

pub fn accept(conn: Socket, peer: &SockAddr) -> io::Result<Socket> {
    let Some((mut tls, who)) = server_connection(&conn, peer)? else {
        return Ok(conn);
    };
    let (app, end) = bridge_pair()?;
    std::thread::Builder::new()
        .name("oxcat-tls".into())
        .spawn(move || {
            if let Err(e) = handshake(&mut tls, conn.as_fd(), None) {
                crate::verbose!(1, "Failed SSL connection from {who}: {e}");
                return; // dropping both ends: the CLI's end sees EOF
            }
            // Only now does exit have to wait for it (a client that never
            // finishes its handshake must not hold the process).
            let flushed = Flushed::register();
            let _done = flushed.guard();
            Pump::new(conn, Box::new(Session::new(tls)), end).run(&flushed);
        })?;
    Ok(app)
}

/// An accepted connection, its handshake done when `--ssl` is on (a
/// failure is reported under `-v`, as ncat does, and gives an error), as
/// the relay takes it.
pub fn accept_stream(conn: Socket, peer: &SockAddr) -> io::Result<Stream> {
    let Some((mut tls, who)) = server_connection(&conn, peer)? else {
        return Ok(Stream::Plain(conn));
    };
    if let Err(e) = handshake(&mut tls, conn.as_fd(), None) {
        crate::verbose!(1, "Failed SSL connection from {who}: {e}");
        return Err(io::Error::other(e.to_string()));
    }
    Ok(Stream::Tls(conn, Box::new(Session::new(tls))))
}

/// The server side of a new connection (None without `--ssl`), and who
/// the client is, for messages.
fn server_connection(conn: &Socket, peer: &SockAddr) -> io::Result<Option<(Connection, String)>> {
    let Some(config) = SERVER.get() else {
        return Ok(None);
    };
    let who = crate::user_stack::real_addr(peer)
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "a Unix socket client".into());
    let server = rustls::ServerConnection::new(config.clone()).map_err(io::Error::other)?;
    conn.set_nonblocking(true)?;
    Ok(Some((Connection::from(server), who)))
}

// ---------------------------------------------------------------- handshake

#[derive(Debug)]
enum HandshakeError {
    Timeout,
    /// The peer closed before the handshake ended.
    Eof,
    Io(io::Error),
    Tls(rustls::Error),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Timeout => f.write_str("handshake timed out"),
            HandshakeError::Eof => f.write_str("connection closed during the handshake"),
            HandshakeError::Io(e) => f.write_str(&describe(e)),
            HandshakeError::Tls(e) => write!(f, "{e}"),
        }
    }
}

/// A non-blocking descriptor as `Read`/`Write` for rustls (vectored
/// writes, so one system call carries many records).
struct Fd<'a>(BorrowedFd<'a>);

impl Read for Fd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        rustix::io::read(self.0, buf).map_err(io::Error::from)
    }
}

impl Write for Fd<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = rustix::io::write(self.0, buf).map_err(io::Error::from);
        sys::sock_write(self.0.as_raw_fd(), &r, buf.len());
        r
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let r = rustix::io::writev(self.0, bufs).map_err(io::Error::from);
        sys::sock_write(self.0.as_raw_fd(), &r, bufs.iter().map(|b| b.len()).sum());
        r
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn wait_fd(
    fd: BorrowedFd<'_>,
    flags: PollFlags,
    deadline: Option<Instant>,
) -> Result<(), HandshakeError> {
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            return Err(HandshakeError::Timeout);
        }
        let mut fds = [rustix::event::PollFd::new(&fd, flags)];
        match sys::poll(&mut fds, left) {
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HandshakeError::Io(e)),
        }
    }
}

/// Drives the handshake on a non-blocking socket until it is done.
fn handshake(
    tls: &mut Connection,
    fd: BorrowedFd<'_>,
    deadline: Option<Instant>,
) -> Result<(), HandshakeError> {
    loop {
        while tls.wants_write() {
            match tls.write_tls(&mut Fd(fd)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_fd(fd, PollFlags::OUT, deadline)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(HandshakeError::Io(e)),
            }
        }
        if !tls.is_handshaking() {
            return Ok(());
        }
        match tls.read_tls(&mut Fd(fd)) {
            Ok(0) => return Err(HandshakeError::Eof),
            Ok(_) => {
                if let Err(e) = tls.process_new_packets() {
                    // Tell the peer why (the alert rustls queued), as far as it listens.
                    let _ = tls.write_tls(&mut Fd(fd));
                    return Err(HandshakeError::Tls(e));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_fd(fd, PollFlags::IN, deadline)?
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HandshakeError::Io(e)),
        }
    }
}

// ---------------------------------------------------------------- a session

/// Bytes read from a socket (or the bridge) in one system call, at most.
const CHUNK: usize = 256 * 1024;
/// What a connection's buffers start with.
const FIRST_CHUNK: usize = 16 * 1024;

/// Plaintext encrypted at a time. rustls makes each record a buffer of its
/// own: a batch of this size keeps them below glibc's trim threshold (128
/// KiB), so that freeing them does not hand the heap's top back to the
/// kernel only to fault it in again for the next batch (with 256 KiB at a
/// time that cost a sender reading a file a third of its CPU).
const ENCRYPT_BATCH: usize = 64 * 1024;

/// A buffer a read just filled grows, up to CHUNK.
fn grow_if_full(buf: &mut Vec<u8>, filled: usize) {
    if filled == buf.len() && buf.len() < CHUNK {
        buf.resize(CHUNK, 0);
    }
}

/// A connection whose handshake is done: the rustls state on its socket,
/// with plaintext in and out (the socket is passed to each call). The relay moves a session's bytes in
/// its own loop (no thread, and no second trip through the kernel); the
/// bridge's thread runs one for the modes that need a descriptor (`-e`,
/// `-k`, `--broker`).
///
/// The socket is non-blocking: each call does what it can and gives
/// `WouldBlock` for the rest. EOF crosses as the CLI expects: `close_write`
/// queues close_notify and, once all before it is sent, shuts the socket's
/// write side (RFC 8446 §6.1: close_notify closes one direction only, so
/// receiving goes on); the peer's close_notify, or its FIN without one (as
/// ncat sends), reads as EOF.
pub struct Session {
    tls: Connection,
    /// Ciphertext read from the socket, not yet handed to rustls.
    raw: Vec<u8>,
    raw_start: usize,
    raw_end: usize,
    /// The socket gave EOF (or was reset): no more TLS input.
    sock_eof: bool,
    /// rustls was told about that EOF.
    eof_fed: bool,
    /// The peer's stream is over (close_notify, EOF, or a TLS error).
    inbound_over: bool,
    /// The last read left input to deliver (decrypted bytes, ciphertext or
    /// the EOF): the next one need not wait for the socket.
    input_pending: bool,
    /// close_notify is queued: nothing more may be written.
    close_queued: bool,
    /// The socket's write side is to be shut down once all is sent.
    shutdown_pending: bool,
    /// A TLS error, or the socket refused a write: nothing more is sent.
    broken: bool,
}

impl Session {
    fn new(mut tls: Connection) -> Session {
        // The callers' flow control bounds what rustls holds: one chunk at a time.
        tls.set_buffer_limit(None);
        Session {
            tls,
            // Small at first (most connections are short); a read that fills
            // it grows it to CHUNK.
            raw: vec![0u8; FIRST_CHUNK],
            raw_start: 0,
            raw_end: 0,
            sock_eof: false,
            eof_fed: false,
            inbound_over: false,
            input_pending: false,
            close_queued: false,
            shutdown_pending: false,
            broken: false,
        }
    }

    /// Whether a read may give something without the socket being readable.
    pub fn input_pending(&self) -> bool {
        self.input_pending
    }

    /// Whether bytes (or the FIN) wait for room on the socket.
    pub fn wants_write(&self) -> bool {
        !self.broken && (self.tls.wants_write() || self.shutdown_pending)
    }

    /// Decrypted bytes into `buf`: what has arrived, with at most one
    /// socket read once something is decrypted. Ok(0) is the peer's EOF:
    /// close_notify, a FIN without it, a reset, or a TLS error (reported
    /// under -v; the alert is sent). `WouldBlock` when nothing is there.
    pub fn read_plain(&mut self, sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while !self.inbound_over && filled < buf.len() {
            match self.tls.reader().read(&mut buf[filled..]) {
                // close_notify: a clean EOF, after the bytes before it.
                Ok(0) => self.inbound_over = true,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match self.decrypt_more(sock, filled) {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            self.input_pending = false;
                            return Err(e);
                        }
                    }
                }
                // The socket's EOF without close_notify (ncat sends none
                // before its shutdown): EOF all the same.
                Err(_) => self.inbound_over = true,
            }
        }
        if filled > 0 {
            self.input_pending = self.inbound_over
                || self.sock_eof
                || self.raw_start < self.raw_end
                || filled == buf.len();
            return Ok(filled);
        }
        self.input_pending = false;
        if self.inbound_over || buf.is_empty() {
            return Ok(0);
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Hands rustls more ciphertext: what the last socket read left, the
    /// socket's EOF, or (when nothing is decrypted yet) a new socket read.
    /// Ok(false): nothing more now.
    fn decrypt_more(&mut self, sock: BorrowedFd<'_>, filled: usize) -> io::Result<bool> {
        if self.raw_start < self.raw_end {
            let mut rest = &self.raw[self.raw_start..self.raw_end];
            match self.tls.read_tls(&mut rest) {
                Ok(n) => self.raw_start += n,
                // Its plaintext buffer is full: deliver first.
                Err(_) => return Ok(false),
            }
            self.process(sock);
            return Ok(true);
        }
        if self.sock_eof {
            if self.eof_fed {
                self.inbound_over = true; // rustls had nothing more to say
                return Ok(false);
            }
            self.eof_fed = true;
            let _ = self.tls.read_tls(&mut io::empty());
            self.process(sock);
            return Ok(true);
        }
        if filled > 0 {
            return Ok(false); // deliver before reading again
        }
        let r = rustix::io::read(sock, &mut self.raw).map_err(io::Error::from);
        sys::sock_read(sock.as_raw_fd(), &r, self.raw.len());
        match r {
            Ok(0) => self.sock_eof = true,
            Ok(n) => {
                self.raw_start = 0;
                self.raw_end = n;
                grow_if_full(&mut self.raw, n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A reset ends the stream as an EOF does (as the plain relay treats it).
            Err(_) => self.sock_eof = true,
        }
        Ok(true)
    }

    fn process(&mut self, sock: BorrowedFd<'_>) {
        if let Err(e) = self.tls.process_new_packets() {
            crate::verbose!(1, "TLS error: {e}");
            // Tell the peer why (the alert rustls queued), as far as it listens.
            let _ = self.tls.write_tls(&mut Fd(sock));
            self.broken = true;
            self.inbound_over = true;
        }
    }

    /// Reads and decrypts what has arrived, dropping the plaintext (for
    /// `--send-only`). False once the peer's stream is over.
    pub fn drop_input(&mut self, sock: BorrowedFd<'_>) -> bool {
        let mut sink = [0u8; 16 * 1024];
        loop {
            match self.read_plain(sock, &mut sink) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(_) => return true,
            }
        }
    }

    /// Encrypts `data` for the peer, a batch at a time while the socket
    /// takes what was encrypted before, and sends it: how much was taken,
    /// or `WouldBlock` (nothing taken: wait until the socket is writable).
    pub fn write_plain(&mut self, sock: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
        if self.broken || self.close_queued {
            return Err(io::Error::from_raw_os_error(libc::EPIPE));
        }
        self.flush(sock)?;
        let mut taken = 0;
        while taken < data.len() && !self.tls.wants_write() {
            let batch = &data[taken..data.len().min(taken + ENCRYPT_BATCH)];
            // Never short: the buffer limit is off.
            taken += self.tls.writer().write(batch)?;
            self.flush(sock)?;
        }
        match taken {
            0 if !data.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    /// A few bytes sent whatever is queued (`-t`'s answers).
    pub fn send_now(&mut self, sock: BorrowedFd<'_>, data: &[u8]) {
        if !self.broken && !self.close_queued {
            let _ = self.tls.writer().write_all(data);
            let _ = self.flush(sock);
        }
    }

    /// Sends what is queued, as far as the socket takes it; then, after
    /// close_notify, the FIN.
    pub fn flush(&mut self, sock: BorrowedFd<'_>) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::from_raw_os_error(libc::EPIPE));
        }
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut Fd(sock)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
        }
        if self.shutdown_pending {
            self.shutdown_pending = false;
            // A peer that already left makes shutdown fail; nothing is lost then.
            let _ = sys::shutdown_write(sock);
        }
        Ok(())
    }

    /// Our side is done: close_notify, then (once all is sent) the FIN.
    pub fn close_write(&mut self, sock: BorrowedFd<'_>) {
        if !self.close_queued {
            self.close_queued = true;
            if !self.broken {
                self.tls.send_close_notify();
                self.shutdown_pending = true;
            }
        }
        let _ = self.flush(sock);
    }

    /// Ends the session as closing the bridge's descriptor does: close_notify
    /// unless sent, and all that is queued sent (waiting at most LINGER for
    /// room), then the FIN.
    pub fn finish(&mut self, sock: BorrowedFd<'_>) {
        self.close_write(sock);
        let deadline = Instant::now() + LINGER;
        while self.wants_write() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let mut fds = [rustix::event::PollFd::new(&sock, PollFlags::OUT)];
            if sys::poll(&mut fds, Some(left)).is_err() || self.flush(sock).is_err() {
                return;
            }
        }
    }
}

/// A connection as the relay takes it: the socket itself, or the socket
/// and a TLS session on it.
pub enum Stream {
    Plain(Socket),
    Tls(Socket, Box<Session>),
}

impl Stream {
    /// A descriptor for what needs one (`-e`, `-z`): a TLS session goes
    /// through the bridge.
    pub fn into_socket(self) -> io::Result<Socket> {
        let (sock, session) = match self {
            Stream::Plain(s) => return Ok(s),
            Stream::Tls(sock, session) => (sock, session),
        };
        let (app, end) = bridge_pair()?;
        let flushed = Flushed::register();
        std::thread::Builder::new()
            .name("oxcat-tls".into())
            .spawn(move || {
                let _done = flushed.guard();
                Pump::new(sock, session, end).run(&flushed);
            })?;
        Ok(app)
    }

    /// Closes the connection (a TLS session has been ended by then:
    /// `Session::finish`).
    pub fn close(self) {
        match self {
            Stream::Plain(sock) | Stream::Tls(sock, _) => sys::close(sock),
        }
    }
}

// ---------------------------------------------------------------- the bridge

/// The CLI's end and ours, non-blocking, with room for a few batches each
/// way so that neither thread wakes the other for every piece.
fn bridge_pair() -> io::Result<(Socket, Socket)> {
    let (app, end) = Socket::pair(Domain::UNIX, Type::STREAM, None)?;
    for s in [&app, &end] {
        s.set_nonblocking(true)?;
        let _ = s.set_send_buffer_size(BRIDGE_BUFFER);
        let _ = s.set_recv_buffer_size(BRIDGE_BUFFER);
    }
    Ok((app, end))
}

/// Socket buffer asked for each end of the bridge (the kernel caps it at
/// net.core.wmem_max/rmem_max).
const BRIDGE_BUFFER: usize = 4 << 20;

/// Whether a connection has sent all the CLI gave it (close_notify and FIN
/// included), so that the process does not exit with bytes still unsent.
struct Flushed {
    done: Mutex<bool>,
    cv: Condvar,
}

static FLUSHES: Mutex<Vec<Arc<Flushed>>> = Mutex::new(Vec::new());

/// Marks a connection flushed when its thread ends, however it ends.
struct FlushGuard(Arc<Flushed>);

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.0.set();
    }
}

impl Flushed {
    fn register() -> Arc<Flushed> {
        let f = Arc::new(Flushed {
            done: Mutex::new(false),
            cv: Condvar::new(),
        });
        let mut all = lock(&FLUSHES);
        all.retain(|f| !*lock(&f.done));
        all.push(f.clone());
        f
    }
    fn guard(self: &Arc<Self>) -> FlushGuard {
        FlushGuard(self.clone())
    }
    fn set(&self) {
        *lock(&self.done) = true;
        self.cv.notify_all();
    }
}

/// How long exit waits for connections to send what the CLI gave them.
const LINGER: Duration = Duration::from_secs(30);

/// Before the process exits: wait (bounded) until every bridged TLS
/// connection has sent what the CLI wrote to it. The CLI has closed its
/// ends by then, so each pump sees EOF, sends close_notify and a FIN.
pub fn finish() {
    let all = std::mem::take(&mut *lock(&FLUSHES));
    let deadline = Instant::now() + LINGER;
    for f in all {
        let mut done = lock(&f.done);
        while !*done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            done = match f.cv.wait_timeout(done, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// One TLS session between the real socket and the CLI's bridge end.
struct Pump {
    sock: Socket,
    session: Box<Session>,
    end: Socket,
    /// Plaintext read from the CLI, before the session encrypts it.
    plain: Vec<u8>,
    plain_start: usize,
    plain_end: usize,
    /// Plaintext the session decrypted, for the CLI.
    out: Vec<u8>,
    out_start: usize,
    out_end: usize,
    /// Inbound is over: EOF passed to the CLI (or the CLI stopped reading).
    inbound_done: bool,
    /// Outbound is over: all sent and the socket's write side shut down.
    outbound_done: bool,
}

enum Step {
    Progress,
    Blocked,
}

impl Pump {
    fn new(sock: Socket, session: Box<Session>, end: Socket) -> Pump {
        Pump {
            sock,
            session,
            end,
            plain: vec![0u8; FIRST_CHUNK],
            plain_start: 0,
            plain_end: 0,
            out: vec![0u8; FIRST_CHUNK],
            out_start: 0,
            out_end: 0,
            inbound_done: false,
            outbound_done: false,
        }
    }

    /// Moves bytes both ways until both directions are over.
    fn run(mut self, flushed: &Flushed) {
        loop {
            let mut progress = true;
            while progress {
                progress = false;
                if !self.inbound_done {
                    match self.inbound() {
                        Step::Progress => progress = true,
                        Step::Blocked => {}
                    }
                }
                if !self.outbound_done {
                    match self.outbound() {
                        Ok(Step::Progress) => progress = true,
                        Ok(Step::Blocked) => {}
                        Err(()) => return self.abort(),
                    }
                    if self.outbound_done {
                        flushed.set();
                    }
                }
            }
            if self.inbound_done && self.outbound_done {
                return;
            }
            // Wait for whatever the blocked steps need.
            let mut sock_flags = PollFlags::empty();
            let mut end_flags = PollFlags::empty();
            if !self.inbound_done {
                if self.out_start < self.out_end {
                    end_flags |= PollFlags::OUT;
                } else if !self.session.input_pending() {
                    sock_flags |= PollFlags::IN;
                }
            }
            if !self.outbound_done {
                if self.session.wants_write() || self.plain_start < self.plain_end {
                    sock_flags |= PollFlags::OUT;
                } else if !self.session.close_queued {
                    end_flags |= PollFlags::IN;
                }
            }
            let mut fds = Vec::with_capacity(2);
            if !sock_flags.is_empty() {
                fds.push(rustix::event::PollFd::new(&self.sock, sock_flags));
            }
            if !end_flags.is_empty() {
                fds.push(rustix::event::PollFd::new(&self.end, end_flags));
            }
            if fds.is_empty() {
                return;
            }
            if let Err(e) = sys::poll(&mut fds, None) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return self.abort();
                }
            }
        }
    }

    /// Socket -> session -> the CLI's end: everything one socket read
    /// brought, decrypted, in one write (a wake-up of the CLI's thread per
    /// batch, not per record).
    fn inbound(&mut self) -> Step {
        if self.out_start < self.out_end {
            return match rustix::io::write(&self.end, &self.out[self.out_start..self.out_end]) {
                Ok(n) => {
                    self.out_start += n;
                    Step::Progress
                }
                Err(rustix::io::Errno::AGAIN) => Step::Blocked,
                Err(rustix::io::Errno::INTR) => Step::Progress,
                Err(_) => {
                    // The CLI stopped reading: nothing more can be delivered.
                    self.inbound_done = true;
                    Step::Progress
                }
            };
        }
        match self.session.read_plain(self.sock.as_fd(), &mut self.out) {
            Ok(0) => {
                let _ = self.end.shutdown(std::net::Shutdown::Write);
                self.inbound_done = true;
                Step::Progress
            }
            Ok(n) => {
                self.out_start = 0;
                self.out_end = n;
                grow_if_full(&mut self.out, n);
                Step::Progress
            }
            Err(_) => Step::Blocked,
        }
    }

    /// The CLI's end -> session -> socket. Err: the connection is broken.
    fn outbound(&mut self) -> Result<Step, ()> {
        if self.session.wants_write() {
            self.session.flush(self.sock.as_fd()).map_err(|_| ())?;
            return Ok(match self.session.wants_write() {
                true => Step::Blocked,
                false => Step::Progress,
            });
        }
        if self.session.close_queued {
            // All sent, close_notify and the FIN included.
            self.outbound_done = true;
            return Ok(Step::Progress);
        }
        if self.plain_start < self.plain_end {
            let rest = &self.plain[self.plain_start..self.plain_end];
            return match self.session.write_plain(self.sock.as_fd(), rest) {
                Ok(n) => {
                    self.plain_start += n;
                    Ok(Step::Progress)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Step::Blocked),
                Err(_) => Err(()),
            };
        }
        match rustix::io::read(&self.end, &mut self.plain) {
            Ok(0) | Err(rustix::io::Errno::CONNRESET) => {
                self.session.close_write(self.sock.as_fd());
                Ok(Step::Progress)
            }
            Ok(n) => {
                self.plain_start = 0;
                self.plain_end = n;
                grow_if_full(&mut self.plain, n);
                Ok(Step::Progress)
            }
            Err(rustix::io::Errno::AGAIN) => Ok(Step::Blocked),
            Err(rustix::io::Errno::INTR) => Ok(Step::Progress),
            Err(_) => Err(()),
        }
    }

    /// A broken connection: the CLI's end sees it close both ways.
    fn abort(self) {
        let _ = self.end.shutdown(std::net::Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn opts(argv: &[&str]) -> Result<Option<TlsOptions>, Failure> {
        from_args(
            &Args::try_parse_from(std::iter::once("oxcat").chain(argv.iter().copied())).unwrap(),
        )
    }

    fn names(suites: &[SupportedCipherSuite]) -> Vec<String> {
        suites.iter().map(|s| format!("{:?}", s.suite())).collect()
    }

    #[test]
    fn any_ssl_flag_turns_tls_on_and_a_trust_file_verification() {
        assert!(opts(&["h", "1"]).unwrap().is_none());
        assert!(opts(&["--ssl-servername", "x", "h", "1"])
            .unwrap()
            .is_some());
        let o = opts(&["--ssl-trustfile", "ca.pem", "h", "1"])
            .unwrap()
            .unwrap();
        assert!(o.verify);
        let o = opts(&["--ssl-alpn", "h2,http/1.1", "h", "1"])
            .unwrap()
            .unwrap();
        assert_eq!(o.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn refusals_are_usage_errors() {
        for (argv, msg) in [
            (
                &["--ssl", "-u", "-l", "1"][..],
                "DTLS is not supported in listen mode",
            ),
            (&["--ssl", "-u", "h", "1"], "DTLS"),
            (&["--ssl", "-U", "/tmp/s"], "Unix domain sockets"),
            (
                &["--ssl-alpn", "h2", "-l", "1"],
                "ALPN is not supported in listen mode",
            ),
            (&["--ssl-cert", "c.pem", "-l", "1"], "must be used together"),
            (
                &["--ssl-alpn", "h2,,x", "h", "1"],
                "Could not parse ALPN string",
            ),
            (
                &["--ssl-ciphers", "AES256-SHA", "h", "1"],
                "Unsupported cipher \"AES256-SHA\"",
            ),
            (
                &["--ssl-ciphers", "RC4:!aNULL", "h", "1"],
                "no cipher match",
            ),
        ] {
            let e = opts(argv).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{argv:?}");
            assert!(e.to_string().contains(msg), "{argv:?}: {e}");
        }
    }

    #[test]
    fn cipher_lists_as_openssl_reads_them() {
        // TLS 1.3 suites stay; the list picks the TLS 1.2 ones, in its order.
        let s = parse_ciphers("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305").unwrap();
        let n = names(&s);
        assert_eq!(n.len(), 5, "{n:?}");
        assert!(n[..3].iter().all(|x| x.starts_with("TLS13_")), "{n:?}");
        assert_eq!(
            &n[3..],
            [
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
            ]
        );
        // ncat's default list selects every TLS 1.2 suite rustls has.
        let s = parse_ciphers("ALL:!aNULL:!eNULL:!LOW:!EXP:!RC4:!MD5:@STRENGTH").unwrap();
        assert_eq!(s.len(), 9);
        // AND with '+', removal with '!', and a ban that outlives a later add.
        let n = names(&parse_ciphers("ECDHE+AESGCM:!aRSA:ECDHE-RSA-AES128-GCM-SHA256").unwrap());
        assert_eq!(
            &n[3..],
            [
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
            ]
        );
        // TLS 1.3 names (an oxcat extension) restrict TLS 1.3.
        let n = names(&parse_ciphers("TLS_AES_128_GCM_SHA256").unwrap());
        assert_eq!(n, ["TLS13_AES_128_GCM_SHA256"]);
    }

    #[test]
    fn names_are_checked_as_ncat_checks_them() {
        assert!(wildcard_match("*.example.com", "www.example.com"));
        assert!(!wildcard_match("*.example.com", "a.b.example.com"));
        assert!(
            !wildcard_match("*.com", "example.com"),
            "two labels after the wildcard"
        );
        assert!(wildcard_match("LocalHost", "localhost"));
        let t = |dns: &[&str], cn: &[&str]| CertText {
            subject: String::new(),
            issuer: String::new(),
            organization: None,
            common_names: cn.iter().map(|s| s.to_string()).collect(),
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            self_issued: false,
        };
        assert_eq!(
            ncat_name_check(&t(&["a.example"], &["b.example"]), "b.example"),
            Err(None),
            "DNS names, when present, decide"
        );
        assert_eq!(
            ncat_name_check(
                &t(&[], &["*.example.org", "www.example.org"]),
                "www.example.org"
            ),
            Ok(())
        );
        assert_eq!(
            ncat_name_check(&t(&[], &["localhost"]), "foo.example"),
            Err(Some("localhost".into()))
        );
    }

    #[test]
    fn temporary_certificate_and_fingerprint() {
        let (cert, _) = self_signed("127.0.0.1", Some("127.0.0.1".parse().unwrap())).unwrap();
        let t = cert_text(&cert).unwrap();
        assert_eq!(t.subject, "CN=127.0.0.1");
        assert_eq!(t.dns_names, ["127.0.0.1"]);
        assert!(t.self_issued);
        let fp = fingerprint(&cert);
        assert_eq!(fp.len(), 49);
        assert_eq!(
            fingerprint(b"abc"),
            "A999 3E36 4706 816A BA3E 2571 7850 C26C 9CD0 D89D"
        );
    }
}
