//! Notify commands (stub, being written).
