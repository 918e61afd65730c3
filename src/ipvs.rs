//! IPVS (stub).
