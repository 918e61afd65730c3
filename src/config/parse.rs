//! Text to sections of located words (stub, being written).
use super::{ConfigError, Loc};
use std::path::Path;

/// A parsed document.
#[derive(Debug, Clone, Default)]
pub struct Document;

/// Parses a file.
pub fn parse_file(path: &Path) -> Result<Document, ConfigError> {
    Err(ConfigError::at(&Loc { file: path.into(), line: 1, col: 1 }, "not yet"))
}
