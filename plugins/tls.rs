//! `check https` and `check tls`: checks over TLS. Their options are parsed here, in the
//! daemon, at startup; the checks themselves run in the TLS helper process
//! (`crate::tls`), never in the loop: the loop hands the helper a fixed-size request and takes
//! back a fixed-size verdict.
//!
//! - `https`: every `http` option (`--url https://...`), plus the TLS options; after the
//!   handshake the request is sent and the answer judged by the `http` plugin's own code.
//! - `tls`: the TLS options, plus `--starttls smtp|imap|pop3|ftp` (a plain dialogue first,
//!   then the upgrade) and `--expect PREFIX` (the first line the server sends after the
//!   handshake must start with PREFIX: the greeting of `imaps`, `pop3s`, `smtps`).
//!
//! TLS options: `--sni NAME` (default: the host of an `https://` URL when it is a name, else
//! none), `--verify` (the chain against `--ca FILE` or the system roots, and the name: the SNI
//! name, else the address), `--ca FILE`, `--alpn LIST` (comma-separated protocols offered),
//! `--min-days N` (fail with `tls-expiry` when the certificate expires within N days),
//! `--no-resume` (a full handshake every time: TLS sessions are otherwise resumed per target).
//!
//! A [`Tls`] keeps its plugin name and option words as written: the helper builds its own copy
//! of the check from them (see `crate::tls`), so nothing but words crosses to it at startup.

use super::common::{OptionDef, Options, MAX_MAX_RESPONSE, MIN_MAX_RESPONSE};
use super::{banner, http, PluginError, Target};

/// Longest `--sni` name (RFC 1035: 253 characters).
const MAX_SNI: usize = 253;
/// Largest `--min-days`.
const MAX_MIN_DAYS: u32 = 3650;

/// The plain dialogue before a STARTTLS upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartTls {
    /// SMTP: greeting 220, `EHLO`, 250, `STARTTLS`, 220 (RFC 3207).
    Smtp,
    /// IMAP: `* OK`, `a1 STARTTLS`, `a1 OK` (RFC 9051 §6.2.1).
    Imap,
    /// POP3: `+OK`, `STLS`, `+OK` (RFC 2595 §4).
    Pop3,
    /// FTP: 220, `AUTH TLS`, 234 (RFC 4217 §4).
    Ftp,
}

/// The TLS options of a check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TlsOpts {
    /// Server name sent (SNI) and, with `verify`, checked; `None`: no SNI, the address is
    /// checked.
    pub sni: Option<String>,
    /// Check the chain and the name.
    pub verify: bool,
    /// Roots to verify against: a PEM file; `None`: the system's.
    pub ca: Option<String>,
    /// Protocols offered by ALPN, in order.
    pub alpn: Vec<Vec<u8>>,
    /// Fail when the certificate expires within this many days.
    pub min_days: Option<u32>,
    /// No session resumption.
    pub no_resume: bool,
    /// A plain dialogue first.
    pub starttls: Option<StartTls>,
}

/// A `check https` or `check tls` line, ready for the helper.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tls {
    /// `https` or `tls`.
    pub plugin: &'static str,
    /// The option words as given (the helper parses them again).
    pub words: Box<[Box<[u8]>]>,
    /// The TLS options.
    pub opts: TlsOpts,
    /// `https`: the request and how to judge the answer.
    pub http: Option<http::Http>,
    /// `tls --expect PREFIX`: the greeting after the handshake.
    pub greeting: Option<banner::Banner>,
}

const TLS_OPTIONS: &[OptionDef] = &[
    OptionDef::once("--sni", "a server name"),
    OptionDef::once("--ca", "a PEM file of root certificates"),
    OptionDef::once("--alpn", "protocols like h2,http/1.1"),
    OptionDef::once("--min-days", "a number of days"),
    OptionDef::once("--starttls", "smtp, imap, pop3 or ftp"),
    OptionDef::once("--expect", "the start of the server's first line"),
    OptionDef::once("--max-response", "a number of bytes"),
];

/// Words that are flags (no value).
const FLAGS: &[&str] = &["--verify", "--no-resume"];

impl Tls {
    /// Parses `check https` (`https` true) or `check tls` options.
    ///
    /// # Errors
    /// An unknown option, a bad value, `--starttls` or `--expect` with `https`, an `--alpn`
    /// for `https` that offers anything but HTTP/1.x.
    pub fn parse(https: bool, args: &[&[u8]], target: Target) -> Result<Tls, PluginError> {
        let plugin = if https { "https" } else { "tls" };
        let mut opts = TlsOpts::default();
        // Split the words: TLS options here, the rest (https) to the http plugin.
        let mut rest: Vec<&[u8]> = Vec::new();
        let mut rest_at: Vec<usize> = Vec::new();
        let mut tls_words: Vec<&[u8]> = Vec::new();
        let mut tls_at: Vec<usize> = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let w = args[i];
            let name = w.split(|&b| b == b'=').next().unwrap_or(w);
            if let Some(f) = FLAGS.iter().find(|f| f.as_bytes() == w) {
                match *f {
                    "--verify" if opts.verify => {
                        return Err(PluginError::at(i, "--verify given twice"))
                    }
                    "--verify" => opts.verify = true,
                    _ if opts.no_resume => {
                        return Err(PluginError::at(i, "--no-resume given twice"))
                    }
                    _ => opts.no_resume = true,
                }
                i += 1;
                continue;
            }
            let ours = TLS_OPTIONS.iter().any(|d| d.name.as_bytes() == name)
                && !(https
                    && (name == b"--expect" || name == b"--starttls" || name == b"--max-response"));
            let (into, at) = if ours {
                (&mut tls_words, &mut tls_at)
            } else {
                (&mut rest, &mut rest_at)
            };
            into.push(w);
            at.push(i);
            // A value follows unless written inline.
            if !w.contains(&b'=') && i + 1 < args.len() && w.starts_with(b"--") {
                into.push(args[i + 1]);
                at.push(i + 1);
                i += 1;
            }
            i += 1;
        }
        let mut expect: Option<(usize, &[u8])> = None;
        let mut max_response: Option<&[u8]> = None;
        let mut o = Options::new(&tls_words, TLS_OPTIONS, plugin);
        let remap = |e: PluginError| PluginError {
            word: e.word.map(|w| tls_at[w]),
            message: e.message,
        };
        while let Some(opt) = o.next().map_err(remap)? {
            let word = tls_at[opt.word];
            let at = |m: String| PluginError::at(word, m);
            let shown = String::from_utf8_lossy(opt.value).into_owned();
            match opt.name {
                "--sni" => {
                    let ok = !opt.value.is_empty()
                        && opt.value.len() <= MAX_SNI
                        && opt.value.iter().all(|b| {
                            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*')
                        });
                    if !ok {
                        return Err(at(format!("bad --sni {shown:?} (expected a DNS name)")));
                    }
                    opts.sni = Some(shown.to_ascii_lowercase());
                }
                "--ca" if opt.value.is_empty() => {
                    return Err(at("--ca needs a file name".to_string()))
                }
                "--ca" => {
                    check_ca(&shown).map_err(at)?;
                    opts.ca = Some(shown);
                }
                "--alpn" => {
                    for p in opt.value.split(|&b| b == b',') {
                        if p.is_empty() || p.len() > 255 {
                            return Err(at(format!(
                                "bad --alpn {shown:?} (expected protocols like h2,http/1.1)"
                            )));
                        }
                        if https && p != b"http/1.1" && p != b"http/1.0" {
                            return Err(at(format!(
                                "--alpn {shown:?}: https speaks HTTP/1.x only (offer http/1.1)"
                            )));
                        }
                        opts.alpn.push(p.to_vec());
                    }
                }
                "--min-days" => {
                    let n = std::str::from_utf8(opt.value)
                        .ok()
                        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|s| s.parse::<u32>().ok())
                        .filter(|&n| n <= MAX_MIN_DAYS);
                    match n {
                        Some(n) => opts.min_days = Some(n),
                        None => {
                            return Err(at(format!(
                                "bad --min-days {shown:?} (expected days from 0 to {MAX_MIN_DAYS})"
                            )))
                        }
                    }
                }
                "--starttls" => {
                    opts.starttls = Some(match opt.value {
                        b"smtp" => StartTls::Smtp,
                        b"imap" => StartTls::Imap,
                        b"pop3" => StartTls::Pop3,
                        b"ftp" => StartTls::Ftp,
                        _ => {
                            return Err(at(format!(
                                "bad --starttls {shown:?} (expected smtp, imap, pop3 or ftp)"
                            )))
                        }
                    })
                }
                "--max-response" => {
                    opt.size(MIN_MAX_RESPONSE, MAX_MAX_RESPONSE)
                        .map_err(|e| PluginError::at(word, e.message))?;
                    max_response = Some(opt.value);
                }
                _ => expect = Some((word, opt.value)),
            }
        }
        let http = if https {
            let h = http::Http::parse_tls(&rest, target).map_err(|e| PluginError {
                word: e.word.map(|w| rest_at[w]),
                message: e.message,
            })?;
            if opts.sni.is_none() {
                opts.sni = url_name(&rest);
            }
            Some(h)
        } else {
            if let Some(&w) = rest_at.first() {
                let expected: Vec<&str> = TLS_OPTIONS
                    .iter()
                    .map(|d| d.name)
                    .chain(FLAGS.iter().copied())
                    .collect();
                return Err(PluginError::at(
                    w,
                    format!(
                        "unknown option {:?} for plugin tls (expected one of: {})",
                        String::from_utf8_lossy(args[w]),
                        expected.join(", ")
                    ),
                ));
            }
            None
        };
        let greeting = match expect {
            Some((w, text)) => Some(
                banner::Banner::parse(&match max_response {
                    Some(m) => vec![&b"--expect"[..], text, b"--max-response", m],
                    None => vec![&b"--expect"[..], text],
                })
                .map_err(|e| PluginError {
                    word: Some(w),
                    message: e.message,
                })?,
            ),
            None => None,
        };
        Ok(Tls {
            plugin,
            // `--name=VALUE` kept as two words: the same check however it was written.
            words: args
                .iter()
                .flat_map(|w| match w.iter().position(|&b| b == b'=') {
                    Some(eq) if w.starts_with(b"--") => vec![&w[..eq], &w[eq + 1..]],
                    _ => vec![*w],
                })
                .map(Box::from)
                .collect(),
            opts,
            http,
            greeting,
        })
    }

    /// Largest plaintext answer the helper keeps for this check.
    pub fn max_response(&self) -> usize {
        match (&self.http, &self.greeting) {
            (Some(h), _) => h.max_response(),
            (None, Some(b)) => b.max_response(),
            _ => 0,
        }
    }
}

/// `--ca` files found readable and holding certificates: a reload inside a `--chroot`, where
/// the path may lead nowhere, accepts them again (the TLS helper keeps what it read of them).
static CA_FILES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// A `--ca` file must be readable and hold at least one PEM certificate.
fn check_ca(path: &str) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    let mut known = CA_FILES.lock().unwrap_or_else(|e| e.into_inner());
    match std::fs::read(path) {
        Ok(pem) => {
            let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
                .filter(Result::is_ok)
                .count();
            if certs == 0 {
                return Err(format!("--ca {path:?} holds no PEM certificate"));
            }
            if !known.iter().any(|k| k == path) {
                known.push(path.to_string());
            }
            Ok(())
        }
        Err(_) if known.iter().any(|k| k == path) => Ok(()),
        Err(e) => Err(format!("cannot read --ca {path:?}: {e}")),
    }
}

/// The host of an `https://` `--url` among `words`, when it is a name (not an address).
fn url_name(words: &[&[u8]]) -> Option<String> {
    let mut url = None;
    for (k, w) in words.iter().enumerate() {
        if let Some(v) = w.strip_prefix(b"--url=") {
            url = Some(v);
        } else if *w == b"--url" {
            url = words.get(k + 1).copied();
        }
    }
    let rest = url?.get(b"https://".len()..)?;
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#' | b':'))
        .unwrap_or(rest.len());
    let host = std::str::from_utf8(&rest[..end]).ok()?;
    if host.is_empty() || host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            addr: "192.0.2.1:443".parse().unwrap(),
        }
    }

    #[test]
    fn https_takes_http_and_tls_options() {
        let t = Tls::parse(
            true,
            &[
                b"--url",
                b"https://www.example.com/health",
                b"--verify",
                b"--min-days",
                b"14",
                b"--expect",
                b"200",
            ],
            target(),
        )
        .unwrap();
        assert_eq!(t.opts.sni.as_deref(), Some("www.example.com"));
        assert!(t.opts.verify);
        assert_eq!(t.opts.min_days, Some(14));
        assert!(t.http.is_some());
        // An address in the URL is no SNI name.
        let t = Tls::parse(true, &[b"--url", b"https://10.0.0.1/"], target()).unwrap();
        assert_eq!(t.opts.sni, None);
    }

    #[test]
    fn tls_options_and_errors() {
        let t = Tls::parse(
            false,
            &[
                b"--sni=a.example",
                b"--alpn",
                b"h2,http/1.1",
                b"--no-resume",
            ],
            target(),
        )
        .unwrap();
        assert_eq!(t.opts.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(t.opts.no_resume);
        let e = Tls::parse(false, &[b"--verify", b"--url", b"x"], target()).unwrap_err();
        assert_eq!(e.word, Some(1));
        assert!(e.message.contains("unknown option"), "{}", e.message);
        let e = Tls::parse(false, &[b"--starttls", b"xmpp"], target()).unwrap_err();
        assert_eq!(e.word, Some(1));
        let e = Tls::parse(true, &[b"--alpn", b"h2"], target()).unwrap_err();
        assert!(e.message.contains("HTTP/1.x"), "{}", e.message);
        let e = Tls::parse(false, &[b"--min-days", b"x"], target()).unwrap_err();
        assert_eq!(e.word, Some(1));
        let e = Tls::parse(
            false,
            &[b"--verify", b"--ca", b"/nonexistent/ca.pem"],
            target(),
        )
        .unwrap_err();
        assert_eq!(e.word, Some(2));
        assert!(e.message.contains("cannot read --ca"), "{}", e.message);
        // A file without a certificate in it.
        let e = Tls::parse(false, &[b"--ca", b"/proc/self/stat"], target()).unwrap_err();
        assert!(e.message.contains("no PEM certificate"), "{}", e.message);
    }
}
