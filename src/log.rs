//! Log output (stub).
