//! Sections to a validated plan (stub, being written).
use super::{parse::Document, ConfigError, Plan};
use std::time::Duration;

/// Builds the plan.
pub fn plan(_doc: &Document, _interval: Option<Duration>) -> Result<Plan, ConfigError> {
    unimplemented!()
}
