//! `agent PORT [--interval D] [--send TEXT]`: the probe side of the agent-check protocol.
//!
//! lvsmon connects to the real server's agent, sends TEXT if given, and reads one line (at
//! most [`AGENT_LINE_MAX`] bytes; a longer one is taken as it is cut). The line itself is
//! judged by [`super::agent::parse`] and goes to the weight chain, never to the real's
//! checks: this plugin only says when the line is complete. An agent that closes without a
//! byte fails (`closed`), as one that cannot be reached: both change nothing.

use super::{CheckState, PluginError, Reason, Step, Verdict};

/// The longest agent line read.
pub const AGENT_LINE_MAX: usize = 256;

/// The agent probe: what it sends first (maybe nothing).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AgentCheck {
    send: Vec<u8>,
}

impl AgentCheck {
    /// `[--send TEXT]` (the config layer has checked the `agent` line; this is its rest).
    ///
    /// # Errors
    /// Any other word, or `--send` without its text.
    pub fn parse(args: &[&[u8]]) -> Result<AgentCheck, PluginError> {
        match args {
            [] => Ok(AgentCheck::default()),
            [o, text] if *o == b"--send" => Ok(AgentCheck {
                send: text.to_vec(),
            }),
            _ => Err(PluginError::at(
                0,
                "expected agent PORT [--interval D] [--send TEXT]",
            )),
        }
    }

    /// The most bytes read.
    pub fn max_response(&self) -> usize {
        AGENT_LINE_MAX
    }

    /// Send the text first, if any, else read.
    pub fn begin(&self, _st: &mut CheckState) -> Step {
        if self.send.is_empty() {
            Step::Recv
        } else {
            Step::Send
        }
    }

    /// The text to send.
    pub fn send_bytes(&self) -> &[u8] {
        &self.send
    }

    /// Done when a line has ended, or the buffer is full (the line is taken as cut).
    pub fn on_data(&self, rx: &[u8]) -> Step {
        if rx.contains(&b'\n') || rx.len() >= AGENT_LINE_MAX {
            Step::Done(Verdict::Pass)
        } else {
            Step::Recv
        }
    }

    /// The agent closed: its line is what came, if anything did.
    pub fn on_eof(&self, rx: &[u8]) -> Verdict {
        if rx.is_empty() {
            Verdict::fail(Reason::Closed)
        } else {
            Verdict::Pass
        }
    }
}

/// The line in `rx`: up to its first `\n`, without a `\r` before it.
pub fn line(rx: &[u8]) -> &[u8] {
    let end = rx.iter().position(|&b| b == b'\n').unwrap_or(rx.len());
    let l = &rx[..end];
    l.strip_suffix(b"\r").unwrap_or(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_is_read() {
        let a = AgentCheck::parse(&[b"--send", b"status\n"]).unwrap();
        assert_eq!(a.begin(&mut CheckState::default()), Step::Send);
        assert_eq!(a.send_bytes(), b"status\n");
        assert_eq!(a.on_data(b"50%"), Step::Recv);
        assert_eq!(a.on_data(b"50% drain\r\n"), Step::Done(Verdict::Pass));
        assert_eq!(line(b"50% drain\r\nmore"), b"50% drain");
        assert_eq!(line(b"up"), b"up");
        assert_eq!(a.on_eof(b""), Verdict::fail(Reason::Closed));
        assert_eq!(a.on_eof(b"up"), Verdict::Pass);
        let plain = AgentCheck::parse(&[]).unwrap();
        assert_eq!(plain.begin(&mut CheckState::default()), Step::Recv);
        assert!(AgentCheck::parse(&[b"--bogus"]).is_err());
    }
}
