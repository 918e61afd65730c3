//! `check script` (stub, being written).
use super::{CheckState, PluginError, Step, Verdict};

/// Options of the `script` plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Script {
    request: Vec<u8>,
}

impl Script {
    /// Parses the options.
    #[allow(unused_variables)]
    pub fn parse(args: &[&[u8]]) -> Result<Script, PluginError> {
        Ok(Script { request: Vec::new() })
    }
    /// Largest answer.
    pub fn max_response(&self) -> usize { 16384 }
    /// Connection up.
    pub fn begin(&self, _st: &mut CheckState) -> Step { Step::Send }
    /// Bytes to send.
    pub fn send_bytes(&self, _st: &CheckState) -> &[u8] { &self.request }
    /// Sent.
    pub fn sent(&self, _st: &mut CheckState) -> Step { Step::Recv }
    /// Data.
    pub fn on_data(&self, _st: &mut CheckState, _rx: &[u8]) -> Step { Step::Done(Verdict::Pass) }
    /// EOF.
    pub fn on_eof(&self, _st: &mut CheckState, _rx: &[u8]) -> Verdict { Verdict::Pass }

}
