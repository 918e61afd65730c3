//! Monitors: one preallocated state machine per distinct check, and the health decisions of
//! the reals it serves.
pub mod event;
