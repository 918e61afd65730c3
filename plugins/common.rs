//! Small helpers the plugins share: getopt-style option words ([`Options`]), the bounds of
//! `--max-response`, and reply lines (SMTP/FTP continuation lines included).
//!
//! Everything here that runs per check (`newline`, `first_line`, `continuation`) works on
//! borrowed bytes and never allocates; the option parser runs at startup only.

use super::PluginError;

/// Smallest `--max-response` any plugin accepts.
pub(super) const MIN_MAX_RESPONSE: usize = 256;
/// Largest `--max-response` any plugin accepts (1 MiB).
pub(super) const MAX_MAX_RESPONSE: usize = 1 << 20;

/// The length of `bytes` through its first `\n`, if one has arrived.
pub(super) fn newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n').map(|i| i + 1)
}

/// The first line of `bytes`, without its line ending, for a [`Detail`].
pub(super) fn first_line(bytes: &[u8]) -> &[u8] {
    let line = match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => &bytes[..i],
        None => bytes,
    };
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether the reply line starting at `line[0]` is a continuation line of a multi-line SMTP or
/// FTP reply (three digits then `-`). `None` while it cannot be told yet: fewer than four bytes,
/// all digits, and more may come (`complete` false).
pub(super) fn continuation(line: &[u8], complete: bool) -> Option<bool> {
    let digits = line
        .iter()
        .take(3)
        .take_while(|b| b.is_ascii_digit())
        .count();
    match line.get(3) {
        Some(&b) => Some(digits == 3 && b == b'-'),
        None if digits == line.len() && !complete => None,
        None => Some(false),
    }
}

/// One long option a plugin accepts.
#[derive(Debug, Clone, Copy)]
pub(super) struct OptionDef {
    /// The option as written, `--name`.
    pub(super) name: &'static str,
    /// What its value looks like, for error messages.
    pub(super) value: &'static str,
    /// Whether it may be given more than once.
    pub(super) repeat: bool,
}

impl OptionDef {
    /// An option that may appear once.
    pub(super) const fn once(name: &'static str, value: &'static str) -> OptionDef {
        OptionDef {
            name,
            value,
            repeat: false,
        }
    }

    /// An option that may appear any number of times.
    pub(super) const fn repeated(name: &'static str, value: &'static str) -> OptionDef {
        OptionDef {
            name,
            value,
            repeat: true,
        }
    }
}

/// One option found by [`Options::next`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Opt<'w> {
    /// The option's name, from the table.
    pub(super) name: &'static str,
    /// Its value (may be empty).
    pub(super) value: &'w [u8],
    /// Index of the word holding the value (the option's own word for `--name=VALUE`).
    pub(super) word: usize,
}

impl Opt<'_> {
    /// The value as a byte count in `min..=max`.
    ///
    /// # Errors
    /// Not a plain decimal number, or out of range.
    pub(super) fn size(&self, min: usize, max: usize) -> Result<usize, PluginError> {
        let n = std::str::from_utf8(self.value)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<usize>().ok());
        match n {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(PluginError::at(
                self.word,
                format!(
                    "bad {} {:?} (expected a number of bytes from {min} to {max})",
                    self.name,
                    String::from_utf8_lossy(self.value)
                ),
            )),
        }
    }
}

/// Walks option words getopt-style: `--name VALUE` or `--name=VALUE`, each name from a table.
#[derive(Debug)]
pub(super) struct Options<'a, 'w> {
    /// The words.
    args: &'a [&'w [u8]],
    /// The options the plugin accepts.
    defs: &'static [OptionDef],
    /// The plugin's name, for error messages.
    plugin: &'static str,
    /// Index of the next word to read.
    next: usize,
    /// Bit `k` set once `defs[k]` was seen (tables hold at most 64 options).
    seen: u64,
}

impl<'a, 'w> Options<'a, 'w> {
    /// Starts at the first word.
    pub(super) fn new(
        args: &'a [&'w [u8]],
        defs: &'static [OptionDef],
        plugin: &'static str,
    ) -> Self {
        debug_assert!(defs.len() <= 64);
        Options {
            args,
            defs,
            plugin,
            next: 0,
            seen: 0,
        }
    }

    /// The next option and its value, or `None` after the last word.
    ///
    /// # Errors
    /// An unknown option (the message lists the valid ones), a missing value, or a second
    /// occurrence of an option that may appear once.
    pub(super) fn next(&mut self) -> Result<Option<Opt<'w>>, PluginError> {
        let i = self.next;
        let Some(&word) = self.args.get(i) else {
            return Ok(None);
        };
        let (name, inline) = split_inline(word);
        let Some(k) = self.defs.iter().position(|d| d.name.as_bytes() == name) else {
            let expected: Vec<&str> = self.defs.iter().map(|d| d.name).collect();
            return Err(PluginError::at(
                i,
                format!(
                    "unknown option {:?} for plugin {} (expected one of: {})",
                    String::from_utf8_lossy(word),
                    self.plugin,
                    expected.join(", ")
                ),
            ));
        };
        let def = self.defs[k];
        if self.seen & (1 << k) != 0 && !def.repeat {
            return Err(PluginError::at(
                i,
                format!("{} given twice (it may appear once)", def.name),
            ));
        }
        self.seen |= 1 << k;
        let (value, word) = match inline {
            Some(value) => (value, i),
            None => match self.args.get(i + 1) {
                Some(&value) if !self.is_option(value) => (value, i + 1),
                _ => {
                    return Err(PluginError::at(
                        i,
                        format!("{} needs a value ({})", def.name, def.value),
                    ))
                }
            },
        };
        self.next = word + 1;
        Ok(Some(Opt {
            name: def.name,
            value,
            word,
        }))
    }

    /// True when `word` is one of the plugin's options, so it cannot be the value before it.
    fn is_option(&self, word: &[u8]) -> bool {
        let (name, _) = split_inline(word);
        self.defs.iter().any(|d| d.name.as_bytes() == name)
    }
}

/// Splits `--name=VALUE` into the name and the value; other words have no inline value.
fn split_inline(word: &[u8]) -> (&[u8], Option<&[u8]>) {
    match word.iter().position(|&b| b == b'=') {
        Some(eq) if word.starts_with(b"--") => (&word[..eq], Some(&word[eq + 1..])),
        _ => (word, None),
    }
}
