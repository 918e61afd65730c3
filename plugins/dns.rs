//! `check dns` (being written).
use super::{CheckState, PluginError, Step};

/// Options of the `dns` plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dns {
    query: Vec<u8>,
}

impl Dns {
    /// Parses the options.
    pub fn parse(_args: &[&[u8]]) -> Result<Dns, PluginError> {
        Err(PluginError {
            word: None,
            message: "dns: not yet".into(),
        })
    }
    /// Largest reply.
    pub fn max_response(&self) -> usize {
        512
    }
    /// The query.
    pub fn datagram(&self, _st: &CheckState, _out: &mut [u8]) -> usize {
        0
    }
    /// A reply.
    pub fn on_datagram(&self, _st: &mut CheckState, _rx: &[u8]) -> Step {
        Step::Recv
    }
}
