//! lvsmon: a health-check daemon for Linux Virtual Server directors.
//!
//! One thread, one `mio` event loop, one preallocated state machine per distinct check, and no
//! heap allocation once the loop runs. The modules follow the path of a check result:
//! [`config`] turns text into a plan, [`event_loop`] drives the [`monitor`]s, whose
//! [`plugins`] judge the bytes; results become transitions that reach the [`ipvs`] table and
//! the operators (log lines and [`notify`] commands).
#![deny(missing_docs)]

pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod control;
pub mod convert;
pub mod event_loop;
pub mod fdbudget;
pub mod history;
pub mod ids;
pub mod ipvs;
pub mod log;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod output;
pub mod page;
pub mod persist;
pub mod pool;
pub mod privdrop;
pub mod report;
pub mod sd_notify;
pub mod sinks;
pub mod startup;
pub mod state;
pub mod stats;
pub mod table;
pub mod timer;
pub mod tls;
pub mod track;

#[path = "../plugins/mod.rs"]
pub mod plugins;
