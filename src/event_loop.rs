//! The event loop (stub).
