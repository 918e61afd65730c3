//! Monitors: one preallocated state machine per distinct check ([`phase`]), and the health
//! decision of every real server it serves ([`health`]). The event loop owns them; the
//! transitions they produce are [`event`]s.
pub mod event;
pub(crate) mod exec;
pub mod health;
pub mod phase;
pub mod probes;
pub(crate) mod rounds;
