//! Command line (stub).
