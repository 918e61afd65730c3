//! `check tcp`: the real server passes when its TCP handshake completes.
//!
//! The cheapest check there is: no request, no reply. The monitor closes with a reset right
//! after the handshake, so neither side keeps a TIME_WAIT entry.

use super::{CheckState, PluginError, Step, Verdict};

/// The `tcp` plugin takes no options of its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Tcp;

impl Tcp {
    /// Accepts no options.
    ///
    /// # Errors
    /// Any word at all: the plugin has no options besides the common `--port`/`--address`.
    pub fn parse(args: &[&[u8]]) -> Result<Tcp, PluginError> {
        match args.first() {
            None => Ok(Tcp),
            Some(w) => Err(PluginError::at(
                0,
                format!(
                    "unknown option {:?} for plugin tcp (expected only --port or --address)",
                    String::from_utf8_lossy(w)
                ),
            )),
        }
    }

    /// Reads nothing.
    pub fn max_response(&self) -> usize {
        0
    }

    /// The handshake completed: that is the whole check.
    pub fn begin(&self, _st: &mut CheckState) -> Step {
        Step::Done(Verdict::Pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_on_connect() {
        let t = Tcp::parse(&[]).unwrap();
        assert_eq!(
            t.begin(&mut CheckState::default()),
            Step::Done(Verdict::Pass)
        );
    }

    #[test]
    fn rejects_options() {
        let e = Tcp::parse(&[b"--url"]).unwrap_err();
        assert_eq!(e.word, Some(0));
        assert!(e.message.contains("--url"));
    }
}
