//! Presets: `check smtp`, `check redis`, `check pgsql`... name a fixed `script` (or `banner`)
//! check for a common protocol, so that nobody has to work out the right dialogue again.
//!
//! A preset is nothing but a word list: `check smtp` builds exactly the check that the line
//! below it builds, and compares equal to it (so reals checked either way are merged). Each
//! line can be copied into `lvsmon.conf` and changed there, which is the way to change a
//! preset: a preset takes no options but `--max-response BYTES` (passed on to the plugin) and
//! the `--port N` / `--address A` that every check takes.
//!
//! - `check smtp` = `check script --expect 220 --send "QUIT\r\n" --expect 221`.
//!   The greeting, then a polite `QUIT` (RFC 5321 §4.1.1.10) so the server logs an orderly
//!   goodbye, and its `221`. A multi-line `220-` greeting (Exim's banner, Postfix `postscreen`'s
//!   teaser) is judged on its last line: `script` skips continuation lines, so we never speak
//!   before the greeting is over (`postscreen` would take that for a spammer's `PREGREET`). A
//!   refusal (`554`, `421`) fails with `expect-mismatch` at once. No `EHLO`: it proves little
//!   more and fills the mail log.
//! - `check pop3` = `check script --expect +OK --send "QUIT\r\n" --expect +OK`.
//!   The greeting, `QUIT`, and its `+OK` (RFC 1939 §4). A `-ERR` greeting fails at once.
//! - `check imap` =
//!   `check script --expect "* OK" --send "a1 LOGOUT\r\n" --expect "* BYE" --expect "a1 OK"`.
//!   The greeting, `LOGOUT`, the untagged `* BYE` the server must send first, and the tagged
//!   `a1 OK` that completes the command (RFC 9051 §6.1.3). We wait for `a1 OK` too: a `* BYE`
//!   alone is also what a server says when it throws a client out, only the tagged `OK` shows
//!   the command went through, and the server then has written its last reply before we close,
//!   so it logs a clean logout rather than a reset. A `* PREAUTH` or `* BYE` greeting fails.
//! - `check ftp` = `check script --expect 220 --send "QUIT\r\n" --expect 221`.
//!   As SMTP: the greeting (multi-line `220-` welcome messages included, as long as every line
//!   but the last starts with `220-`), `QUIT` and its `221` (RFC 959 §4.1.1, §5.4). vsftpd's
//!   `421 There are too many connected users` fails at once.
//! - `check ssh` = `check banner --expect SSH-2.0-`.
//!   The identification string (RFC 4253 §4.2). Nothing is sent: the server waits for ours,
//!   and we close after its banner, as port scanners do (sshd logs the dropped connection).
//!   `SSH-1.99-` (SSH 1 and 2) fails: no current server sends it.
//! - `check redis` = `check script --send "PING\r\n" --expect +PONG`.
//!   An inline command; Redis answers `+PONG` (RESP simple string). A server that requires
//!   `AUTH` answers `-NOAUTH Authentication required.`, which fails with `expect-mismatch` (as
//!   do `-LOADING` while it reads its dataset and `-DENIED` in protected mode): a server that
//!   needs a password needs a script of its own, `--send "AUTH ...\r\n" --expect +OK` first.
//! - `check mysql` = `check script --skip 3 --expect-hex "00 0a"`.
//!   The server speaks first with its initial handshake packet: a 3-byte little-endian payload
//!   length (skipped), sequence id 0, then protocol version 10 (MySQL client/server protocol,
//!   "Protocol::HandshakeV10"; MariaDB sends the same). A server that refuses the client sends
//!   an ERR packet instead, whose payload starts with `0xff` and the error code (1130 host not
//!   allowed, 1129 host blocked, 1040 too many connections): that fails with
//!   `expect-mismatch`, detail `step 2: 00 ff 6a 04 ...` (the code little-endian: 0x046a =
//!   1130). **Caveat**: we close without logging in, which the server counts as an aborted
//!   connection from the director's address; after `max_connect_errors` (100 by default) such
//!   checks without a successful login in between, it blocks the address (error 1129), and
//!   every real fails. Raise `max_connect_errors` or set `host_cache_size = 0` on the servers.
//! - `check pgsql` = `check script --send-hex "0000 0008 04d2 162f" --expect-hex "53|4e"`.
//!   An `SSLRequest` (length 8, code 80877103) and the one-byte answer, `S` (will do TLS) or
//!   `N` (won't) (PostgreSQL, "Frontend/Backend Protocol", "SSL Session Encryption"). It proves
//!   that the server accepts connections, not that a database accepts logins ("too many
//!   clients" and "starting up" are told only after the startup packet). PostgreSQL logs
//!   nothing for a client that leaves with a FIN after the answer, but checks close with a
//!   reset, so each check logs one line: `could not receive data from client: Connection reset
//!   by peer` after `N`, `could not accept SSL connection: ...` after `S`.
//!
//! Presets are expanded once, at startup, by [`parse`]; nothing of them remains at run time.

use super::common::{OptionDef, Options, MAX_MAX_RESPONSE, MIN_MAX_RESPONSE};
use super::{CheckSpec, PluginError, Target};

/// One preset: a name and the check it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The name written after `check`.
    pub name: &'static str,
    /// The plugin the preset uses.
    pub plugin: &'static str,
    /// The option words handed to the plugin, with the escapes of quoted strings decoded.
    pub words: &'static [&'static [u8]],
    /// The same check as the rest of a `check` line in `lvsmon.conf`, quoted as a user writes
    /// it; it parses into `plugin` and `words` (a test makes sure).
    pub line: &'static str,
}

/// Every preset, in the order of [`super::PLUGIN_NAMES`].
#[rustfmt::skip]
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "smtp",
        plugin: "script",
        words: &[b"--expect", b"220", b"--send", b"QUIT\r\n", b"--expect", b"221"],
        line: r#"script --expect 220 --send "QUIT\r\n" --expect 221"#,
    },
    Preset {
        name: "pop3",
        plugin: "script",
        words: &[b"--expect", b"+OK", b"--send", b"QUIT\r\n", b"--expect", b"+OK"],
        line: r#"script --expect +OK --send "QUIT\r\n" --expect +OK"#,
    },
    Preset {
        name: "imap",
        plugin: "script",
        words: &[
            b"--expect", b"* OK", b"--send", b"a1 LOGOUT\r\n", b"--expect", b"* BYE",
            b"--expect", b"a1 OK",
        ],
        line: r#"script --expect "* OK" --send "a1 LOGOUT\r\n" --expect "* BYE" --expect "a1 OK""#,
    },
    Preset {
        name: "ftp",
        plugin: "script",
        words: &[b"--expect", b"220", b"--send", b"QUIT\r\n", b"--expect", b"221"],
        line: r#"script --expect 220 --send "QUIT\r\n" --expect 221"#,
    },
    Preset {
        name: "ssh",
        plugin: "banner",
        words: &[b"--expect", b"SSH-2.0-"],
        line: "banner --expect SSH-2.0-",
    },
    Preset {
        name: "redis",
        plugin: "script",
        words: &[b"--send", b"PING\r\n", b"--expect", b"+PONG"],
        line: r#"script --send "PING\r\n" --expect +PONG"#,
    },
    Preset {
        name: "mysql",
        plugin: "script",
        words: &[b"--skip", b"3", b"--expect-hex", b"00 0a"],
        line: r#"script --skip 3 --expect-hex "00 0a""#,
    },
    Preset {
        name: "pgsql",
        plugin: "script",
        words: &[b"--send-hex", b"0000 0008 04d2 162f", b"--expect-hex", b"53|4e"],
        line: r#"script --send-hex "0000 0008 04d2 162f" --expect-hex "53|4e""#,
    },
    Preset {
        name: "imaps",
        plugin: "tls",
        words: &[b"--expect", b"* OK"],
        line: r#"tls --expect "* OK""#,
    },
    Preset {
        name: "pop3s",
        plugin: "tls",
        words: &[b"--expect", b"+OK"],
        line: "tls --expect +OK",
    },
    Preset {
        name: "smtps",
        plugin: "tls",
        words: &[b"--expect", b"220"],
        line: "tls --expect 220",
    },
    Preset {
        name: "ldaps",
        plugin: "tls",
        words: &[],
        line: "tls",
    },
];

/// The options a preset accepts.
const OPTIONS: &[OptionDef] = &[OptionDef::once("--max-response", "a number of bytes")];

/// The preset called `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// Builds the check preset `name` stands for, with the user's `--max-response` if given.
///
/// # Errors
/// Any option but `--max-response` (the message names the preset and the check line it stands
/// for), a missing or bad size, or `--max-response` twice. `name` not being a preset is an
/// error about the name.
pub fn parse(name: &str, args: &[&[u8]], target: Target) -> Result<CheckSpec, PluginError> {
    let Some(preset) = find(name) else {
        return Err(PluginError {
            word: None,
            message: format!("{name:?} is not a preset"),
        });
    };
    let mut words: Vec<&[u8]> = preset.words.to_vec();
    if preset.plugin == "tls" {
        // A TLS preset takes every TLS option (--verify, --sni, --min-days...): the user's
        // words follow the preset's, and an error points at the user's word.
        let skip = words.len();
        words.extend_from_slice(args);
        return CheckSpec::parse(preset.plugin, &words, target).map_err(|e| match e.word {
            Some(w) if w >= skip => PluginError {
                word: Some(w - skip),
                message: format!("preset {}: {}", preset.name, e.message),
            },
            _ => PluginError {
                word: None,
                message: format!("preset {}: {}", preset.name, e.message),
            },
        });
    }
    let mut opts = Options::new(args, OPTIONS, preset.name);
    while let Some(opt) = opts.next().map_err(|e| preset.explain(e, args))? {
        // Checked here so that an error points at the user's word, not at the expansion.
        opt.size(MIN_MAX_RESPONSE, MAX_MAX_RESPONSE)?;
        words.extend([&b"--max-response"[..], opt.value]);
    }
    CheckSpec::parse(preset.plugin, &words, target).map_err(|e| PluginError {
        word: None,
        message: format!("preset {}: {}", preset.name, e.message),
    })
}

impl Preset {
    /// Turns an "unknown option" error from [`Options`] into one that says what the preset is
    /// and how to change it; other errors (about `--max-response`) pass unchanged.
    fn explain(&self, e: PluginError, args: &[&[u8]]) -> PluginError {
        let Some(word) = e.word.and_then(|i| args.get(i)) else {
            return e;
        };
        if *word == b"--max-response" || word.starts_with(b"--max-response=") {
            return e;
        }
        PluginError {
            word: e.word,
            message: format!(
                "unknown option {:?} for preset {name} (it takes only --max-response); {name} \
                 stands for `check {line}`: write that line instead to change the check",
                String::from_utf8_lossy(word),
                name = self.name,
                line = self.line,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CheckState, Detail, Reason, Step, Verdict, PLUGIN_NAMES};
    use super::*;
    use crate::config::parse::parse_bytes;
    use std::path::Path;

    /// Any target: no preset looks at it.
    fn target() -> Target {
        Target {
            addr: "192.0.2.1:25".parse().unwrap(),
        }
    }

    /// Parses `check NAME ARGS`, panicking with the error.
    #[track_caller]
    fn spec(name: &str, args: &[&[u8]]) -> CheckSpec {
        CheckSpec::parse(name, args, target()).unwrap_or_else(|e| panic!("{name}: {e:?}"))
    }

    // Tests for the expansion.

    #[test]
    fn every_preset_is_its_documented_line() {
        for p in PRESETS {
            // The line, read the way lvsmon.conf is read, gives the plugin and the words.
            let text = format!("check {}\n", p.line);
            let doc = parse_bytes(Path::new("presets.conf"), text.as_bytes())
                .unwrap_or_else(|e| panic!("{}: {e}", p.name));
            let words: Vec<&[u8]> = doc.statements[0].words[2..]
                .iter()
                .map(|w| &w.text[..])
                .collect();
            assert!(doc.statements[0].words[1].is(p.plugin), "{}", p.name);
            assert_eq!(words, p.words, "{}", p.name);
            // And the preset is that check.
            assert_eq!(spec(p.name, &[]), spec(p.plugin, p.words), "{}", p.name);
            assert_eq!(spec(p.name, &[]).name(), p.plugin);
        }
    }

    #[test]
    fn max_response_is_passed_on() {
        for p in PRESETS {
            let mut words = p.words.to_vec();
            words.extend([&b"--max-response"[..], b"8192"]);
            let want = spec(p.plugin, &words);
            assert_eq!(spec(p.name, &[b"--max-response", b"8192"]), want);
            assert_eq!(spec(p.name, &[b"--max-response=8192"]), want);
            if p.plugin != "tls" {
                // The loop reads nothing of a TLS check (the helper does).
                assert_eq!(want.max_response(), 8192);
            }
        }
    }

    #[test]
    fn plugin_names_end_with_the_presets() {
        let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        assert!(PLUGIN_NAMES.ends_with(&names), "{PLUGIN_NAMES:?}");
        for p in PRESETS {
            assert_eq!(find(p.name), Some(p));
        }
        assert_eq!(find("script"), None);
    }

    #[track_caller]
    fn parse_err(name: &str, args: &[&[u8]], word: Option<usize>, text: &str) {
        let e = CheckSpec::parse(name, args, target()).unwrap_err();
        assert_eq!(e.word, word, "{e:?}");
        assert!(e.message.contains(text), "{:?} lacks {text:?}", e.message);
    }

    #[test]
    fn option_errors() {
        parse_err(
            "smtp",
            &[b"--send", b"EHLO x\r\n"],
            Some(0),
            "unknown option \"--send\" for preset smtp (it takes only --max-response); smtp \
             stands for `check script --expect 220 --send \"QUIT\\r\\n\" --expect 221`: write \
             that line instead",
        );
        parse_err(
            "ssh",
            &[b"--max-response", b"512", b"--expect", b"SSH-2.0-OpenSSH"],
            Some(2),
            "stands for `check banner --expect SSH-2.0-`",
        );
        parse_err("redis", &[b"PING"], Some(0), "unknown option \"PING\"");
        parse_err(
            "mysql",
            &[b"--max-responsex=4"],
            Some(0),
            "unknown option \"--max-responsex=4\" for preset mysql",
        );
        parse_err(
            "pgsql",
            &[b"--max-response", b"100"],
            Some(1),
            "256 to 1048576",
        );
        parse_err(
            "imap",
            &[b"--max-response"],
            Some(0),
            "--max-response needs a value",
        );
        parse_err(
            "pop3",
            &[b"--max-response", b"512", b"--max-response=600"],
            Some(2),
            "--max-response given twice",
        );
        assert!(parse("tcp", &[], target()).is_err());
    }

    #[test]
    fn unknown_plugin_lists_the_presets() {
        parse_err(
            "postgres",
            &[],
            None,
            "smtp, pop3, imap, ftp, ssh, redis, mysql, pgsql, imaps, pop3s, smtps, ldaps)",
        );
    }

    // A whole check against a server, for any plugin.

    /// How the server's replies are cut into `on_data` calls.
    #[derive(Debug, Clone, Copy)]
    enum Feed {
        /// Each reply in one piece.
        Whole,
        /// Each reply's first `n` bytes, then the rest.
        Cut(usize),
        /// One byte per call.
        Bytewise,
    }

    /// Plays one check: `server` holds the server's replies, in order. A reply is delivered
    /// (cut per `feed`) whenever the check waits for bytes; once all are delivered, the server
    /// closes. Returns the bytes the check sent and the verdict.
    fn play(c: &CheckSpec, server: &[&[u8]], feed: Feed) -> (Vec<u8>, Verdict) {
        let mut st = CheckState::default();
        let mut sent = Vec::new();
        let mut rx = Vec::new();
        let mut replies = server.iter();
        let mut pending: &[u8] = &[];
        let mut fresh = false;
        let mut step = c.begin(&mut st);
        loop {
            match step {
                Step::Done(v) => return (sent, v),
                Step::Send => {
                    let bytes = c.send_bytes(&st);
                    assert!(!bytes.is_empty(), "Send with nothing to send");
                    sent.extend_from_slice(bytes);
                    step = c.sent(&mut st);
                }
                Step::Recv => {
                    assert!(rx.len() < c.max_response(), "response-too-large");
                    if pending.is_empty() {
                        let Some(reply) = replies.next() else {
                            return (sent, c.on_eof(&mut st, &rx));
                        };
                        (pending, fresh) = (reply, true);
                    }
                    let take = match feed {
                        Feed::Whole => pending.len(),
                        Feed::Cut(n) if fresh => n.min(pending.len()),
                        Feed::Cut(_) => pending.len(),
                        Feed::Bytewise => 1,
                    };
                    fresh = false;
                    rx.extend_from_slice(&pending[..take]);
                    pending = &pending[take..];
                    step = c.on_data(&mut st, &rx);
                    assert!(st.mark as usize <= rx.len(), "mark past the bytes");
                }
            }
        }
    }

    /// Plays preset `name` against `server` whole, with every reply split at every byte, and
    /// byte by byte: it must send `sends` and reach `want` every way, except that a mismatch
    /// decided before a reply was complete shows only the part that had arrived.
    #[track_caller]
    fn check(name: &str, server: &[&[u8]], sends: &[u8], want: Verdict) {
        let c = spec(name, &[]);
        let longest = server.iter().map(|r| r.len()).max().unwrap_or(0);
        let feeds = [Feed::Whole, Feed::Bytewise]
            .into_iter()
            .chain((1..longest).map(Feed::Cut));
        for feed in feeds {
            let (sent, got) = play(&c, server, feed);
            assert_eq!(sent, sends, "{name}, {feed:?}: bytes sent");
            if got == want || matches!(feed, Feed::Whole) {
                assert_eq!(got, want, "{name}, {feed:?}");
                continue;
            }
            match (got, want) {
                (Verdict::Fail(r, d), Verdict::Fail(wr, wd))
                    if r == wr
                        && matches!(r, Reason::ExpectMismatch | Reason::BannerMismatch)
                        && wd.as_str().starts_with(d.as_str()) => {}
                _ => assert_eq!(got, want, "{name}, {feed:?}"),
            }
        }
    }

    macro_rules! server {
        ($test:ident, $name:literal, [$($reply:expr),* $(,)?], sends $sends:expr, $want:expr) => {
            #[test]
            fn $test() {
                check($name, &[$(&$reply[..]),*], $sends, $want);
            }
        };
    }

    const PASS: Verdict = Verdict::Pass;

    fn fail(reason: Reason, detail: &[u8]) -> Verdict {
        Verdict::Fail(reason, Detail::text(detail))
    }

    fn mismatch(detail: &[u8]) -> Verdict {
        fail(Reason::ExpectMismatch, detail)
    }

    fn closed(detail: &[u8]) -> Verdict {
        fail(Reason::Closed, detail)
    }

    // Tests for smtp.

    server!(smtp_postfix, "smtp",
        [b"220 mail.example.com ESMTP Postfix (Debian/GNU)\r\n", b"221 2.0.0 Bye\r\n"],
        sends b"QUIT\r\n", PASS);

    server!(smtp_postscreen_teaser, "smtp",
        [b"220-mail.example.com ESMTP Postfix (Debian/GNU)\r\n",
         b"220 mail.example.com ESMTP Postfix (Debian/GNU)\r\n", b"221 2.0.0 Bye\r\n"],
        sends b"QUIT\r\n", PASS);

    server!(smtp_exim, "smtp",
        [b"220 mx.example.org ESMTP Exim 4.96 Mon, 01 Jan 2024 12:00:00 +0000\r\n",
         b"221 mx.example.org closing connection\r\n"],
        sends b"QUIT\r\n", PASS);

    server!(smtp_exim_multiline_banner, "smtp",
        [b"220-mx.example.org ESMTP Exim 4.96 Mon, 01 Jan 2024 12:00:00 +0000\r\n\
           220-We do not authorize the use of this system to transport unsolicited,\r\n\
           220 and/or bulk e-mail.\r\n",
         b"221 mx.example.org closing connection\r\n"],
        sends b"QUIT\r\n", PASS);

    server!(smtp_postscreen_busy, "smtp",
        [b"421 4.3.2 All server ports are busy\r\n"],
        sends b"", mismatch(b"step 1: 421 4.3.2 All server ports are busy"));

    server!(smtp_refused_after_teaser, "smtp",
        [b"220-mail.example.com ESMTP Postfix\r\n", b"554 5.7.1 Service unavailable\r\n"],
        sends b"", mismatch(b"step 1: 554 5.7.1 Service unavailable"));

    server!(smtp_closed_before_221, "smtp", [b"220 mail.example.com ESMTP\r\n"],
        sends b"QUIT\r\n", closed(b"step 3"));

    // Tests for pop3.

    server!(pop3_dovecot, "pop3", [b"+OK Dovecot ready.\r\n", b"+OK Logging out.\r\n"],
        sends b"QUIT\r\n", PASS);

    server!(pop3_dovecot_ubuntu, "pop3",
        [b"+OK Dovecot (Ubuntu) ready.\r\n", b"+OK Logging out.\r\n"],
        sends b"QUIT\r\n", PASS);

    server!(pop3_refused, "pop3", [b"-ERR [SYS/TEMP] Server is shutting down.\r\n"],
        sends b"", mismatch(b"step 1: -ERR [SYS/TEMP] Server is shutting down."));

    server!(pop3_against_imap, "pop3",
        [b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS \
           AUTH=PLAIN] Dovecot ready.\r\n"],
        sends b"", mismatch(b"step 1: * OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REF"));

    // Tests for imap.

    server!(imap_dovecot, "imap",
        [b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS \
           AUTH=PLAIN] Dovecot ready.\r\n",
         b"* BYE Logging out\r\na1 OK Logout completed (0.001 + 0.000 + 0.001 secs).\r\n"],
        sends b"a1 LOGOUT\r\n", PASS);

    server!(imap_bye_and_ok_apart, "imap",
        [b"* OK Dovecot ready.\r\n", b"* BYE Logging out\r\n", b"a1 OK Logout completed.\r\n"],
        sends b"a1 LOGOUT\r\n", PASS);

    server!(imap_closed_after_bye, "imap", [b"* OK Dovecot ready.\r\n", b"* BYE Logging out\r\n"],
        sends b"a1 LOGOUT\r\n", closed(b"step 4"));

    server!(imap_preauth, "imap", [b"* PREAUTH [CAPABILITY IMAP4rev1] Logged in as dovecot\r\n"],
        sends b"", mismatch(b"step 1: * PREAUTH [CAPABILITY IMAP4rev1] Logg"));

    server!(imap_bye_greeting, "imap", [b"* BYE Too many connections\r\n"],
        sends b"", mismatch(b"step 1: * BYE Too many connections"));

    // Tests for ftp.

    server!(ftp_vsftpd, "ftp", [b"220 (vsFTPd 3.0.5)\r\n", b"221 Goodbye.\r\n"],
        sends b"QUIT\r\n", PASS);

    server!(ftp_proftpd, "ftp",
        [b"220 ProFTPD Server (Debian) [::ffff:198.51.100.21]\r\n", b"221 Goodbye.\r\n"],
        sends b"QUIT\r\n", PASS);

    server!(ftp_pure_ftpd_multiline, "ftp",
        [b"220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------\r\n\
           220-You are user number 1 of 50 allowed.\r\n\
           220-Local time is now 12:00. Server port: 21.\r\n\
           220 You will be disconnected after 15 minutes of inactivity.\r\n",
         b"221-Goodbye. You uploaded 0 and downloaded 0 kbytes.\r\n221 Logout.\r\n"],
        sends b"QUIT\r\n", PASS);

    server!(ftp_vsftpd_full, "ftp",
        [b"421 There are too many connected users, please try later.\r\n"],
        sends b"", mismatch(b"step 1: 421 There are too many connected users, please try later."));

    // Tests for ssh.

    server!(ssh_openssh, "ssh", [b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5\r\n"],
        sends b"", PASS);

    server!(ssh_dropbear, "ssh", [b"SSH-2.0-dropbear_2022.83\r\n"], sends b"", PASS);

    server!(ssh_protocol_1_99, "ssh", [b"SSH-1.99-OpenSSH_3.9p1\r\n"],
        sends b"", fail(Reason::BannerMismatch, b"SSH-1.99-OpenSSH_3.9p1"));

    // sshd over MaxStartups closes without a word.
    server!(ssh_max_startups, "ssh", [], sends b"", Verdict::fail(Reason::Closed));

    // Tests for redis.

    server!(redis_pong, "redis", [b"+PONG\r\n"], sends b"PING\r\n", PASS);

    server!(redis_noauth, "redis", [b"-NOAUTH Authentication required.\r\n"],
        sends b"PING\r\n", mismatch(b"step 2: -NOAUTH Authentication required."));

    server!(redis_loading, "redis", [b"-LOADING Redis is loading the dataset in memory\r\n"],
        sends b"PING\r\n", mismatch(b"step 2: -LOADING Redis is loading the dataset in memory"));

    // Tests for mysql.

    /// The initial handshake packet of MySQL 8.0.36: Protocol::HandshakeV10.
    const MYSQL_8: &[u8] = b"\
        \x4a\x00\x00\
        \x00\
        \x0a\
        8.0.36\x00\
        \x0d\x00\x00\x00\
        \x1e\x34\x5a\x0b\x4c\x66\x2d\x6e\
        \x00\
        \xff\xff\
        \xff\
        \x02\x00\
        \xff\xdf\
        \x15\
        \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
        \x41\x12\x5e\x6f\x3c\x19\x70\x5d\x33\x29\x0f\x7a\x00\
        caching_sha2_password\x00";
    // The layout, field by field: payload length 74 (3 bytes, little-endian); sequence id 0;
    // protocol version 10; server version, NUL-terminated; connection id 13 (4 bytes);
    // auth-plugin-data part 1 (8 bytes); filler 0; capability flags, lower 2 bytes; character
    // set 255 (utf8mb4_0900_ai_ci); status flags (SERVER_STATUS_AUTOCOMMIT); capability flags,
    // upper 2 bytes; length of the auth-plugin-data, 21; 10 reserved zero bytes; auth-plugin-
    // data part 2 (12 bytes and a NUL); the auth plugin's name, NUL-terminated.

    /// The initial handshake packet of MariaDB 10.11.6 (Debian 12).
    const MARIADB_10: &[u8] = b"\
        \x63\x00\x00\
        \x00\
        \x0a\
        5.5.5-10.11.6-MariaDB-0+deb12u1\x00\
        \x1f\x00\x00\x00\
        \x57\x6c\x27\x3e\x4b\x5c\x6d\x2a\
        \x00\
        \xfe\xf7\
        \x2d\
        \x02\x00\
        \xff\x81\
        \x15\
        \x00\x00\x00\x00\x00\x00\
        \x1d\x00\x00\x00\
        \x46\x31\x3a\x7c\x52\x42\x2b\x45\x78\x51\x53\x47\x00\
        mysql_native_password\x00";
    // As MySQL's, with MariaDB's differences: the version carries the "5.5.5-" prefix that
    // old clients need; capability bit 0 (CLIENT_MYSQL) is clear; character set 45
    // (utf8mb4_general_ci); the 10 reserved bytes are 6 zero bytes and 4 bytes of MariaDB's
    // extended capabilities; the plugin is mysql_native_password. Payload length 99.

    /// An ERR packet sent instead of the handshake: 1130, host not allowed. Before the
    /// handshake the client's capabilities are unknown, so there is no `#` SQL state.
    const MYSQL_HOST_NOT_ALLOWED: &[u8] = b"\
        \x44\x00\x00\
        \x00\
        \xff\
        \x6a\x04\
        Host '203.0.113.7' is not allowed to connect to this MySQL server";

    /// The ERR packet of a server that has blocked the director: 1129.
    const MYSQL_HOST_BLOCKED: &[u8] = b"\
        \x69\x00\x00\
        \x00\
        \xff\
        \x69\x04\
        Host '203.0.113.7' is blocked because of many connection errors; \
        unblock with 'mysqladmin flush-hosts'";

    #[test]
    fn mysql_fixture_lengths() {
        for packet in [
            MYSQL_8,
            MARIADB_10,
            MYSQL_HOST_NOT_ALLOWED,
            MYSQL_HOST_BLOCKED,
        ] {
            let len = usize::from(packet[0]) | usize::from(packet[1]) << 8;
            assert_eq!(
                len + 4,
                packet.len(),
                "{:?}",
                String::from_utf8_lossy(packet)
            );
        }
    }

    server!(mysql_8, "mysql", [MYSQL_8], sends b"", PASS);

    server!(mariadb_10, "mysql", [MARIADB_10], sends b"", PASS);

    server!(mysql_host_not_allowed, "mysql", [MYSQL_HOST_NOT_ALLOWED], sends b"",
        mismatch(b"step 2: 00 ff 6a 04 48 6f 73 74 20 27 32"));

    server!(mysql_host_blocked, "mysql", [MYSQL_HOST_BLOCKED], sends b"",
        mismatch(b"step 2: 00 ff 69 04 48 6f 73 74 20 27 32"));

    server!(mysql_port_speaks_ssh, "mysql", [b"SSH-2.0-OpenSSH_9.6\r\n"], sends b"",
        mismatch(b"step 2: 2d 32 2e 30 2d 4f 70 65 6e 53 53"));

    server!(mysql_closed_in_header, "mysql", [b"\x4a\x00"], sends b"", closed(b"step 1"));

    // Tests for pgsql.

    /// The `SSLRequest` the preset sends: Int32 length 8, Int32 code 80877103.
    const SSL_REQUEST: &[u8] = b"\x00\x00\x00\x08\x04\xd2\x16\x2f";

    server!(pgsql_no_ssl, "pgsql", [b"N"], sends SSL_REQUEST, PASS);

    server!(pgsql_ssl, "pgsql", [b"S"], sends SSL_REQUEST, PASS);

    /// An ErrorResponse ('E', Int32 length counting itself, fields, a final NUL), which is
    /// what anything answers that does not take an SSLRequest.
    const PG_ERROR: &[u8] = b"E\x00\x00\x00\x6c\
        SFATAL\x00\
        C0A000\x00\
        Munsupported frontend protocol 1234.5679: server supports 1.0 to 2.0\x00\
        Fpostmaster.c\x00\
        L1290\x00\
        \x00";

    #[test]
    fn pgsql_fixture_length() {
        let len = u32::from_be_bytes(PG_ERROR[1..5].try_into().unwrap());
        assert_eq!(len as usize + 1, PG_ERROR.len());
    }

    server!(pgsql_error_response, "pgsql", [PG_ERROR], sends SSL_REQUEST,
        mismatch(b"step 2: 45 00 00 00 6c 53 46 41 54 41 4c"));

    server!(pgsql_port_speaks_http, "pgsql",
        [b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"],
        sends SSL_REQUEST, mismatch(b"step 2: 48 54 54 50 2f 31 2e 31 20 34 30"));

    server!(pgsql_closed, "pgsql", [], sends SSL_REQUEST, closed(b"step 2"));
}
