//! Timer wheel (stub).
