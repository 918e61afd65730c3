//! Shared helpers for lvsmon's integration test binaries.
//!
//! Each binary includes this module with `mod common;` and uses only part of it, so dead code
//! is allowed here rather than in every binary.

#![allow(dead_code)]

pub mod backend;
pub mod farm;
pub mod lvsmon;
pub mod observe;
pub mod servers;
pub mod udp;

// Re-exported for `common::Backend`; a binary that uses only some of these would otherwise
// warn about the rest.
#[allow(unused_imports)]
pub use backend::{
    http_response, refused_addr, refused_addr_on, Action, Backend, FullQueue, Guard, Netns, Script,
};
