//! What every section reader shares: reading a variable through its parser,
//! and collecting every problem (and every variable that changes nothing)
//! so the assembler can report them all at once.

use super::ConfigError;
use super::redacted::without_userinfo;
use super::source::Source;

pub(super) struct Reader<'a> {
    source: &'a dyn Source,
    problems: Vec<String>,
    ignored: Vec<&'static str>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(source: &'a dyn Source) -> Self {
        Reader {
            source,
            problems: Vec::new(),
            ignored: Vec::new(),
        }
    }

    /// The value of `name`, with empty values read as unset (compose writes
    /// `NAME=` for variables left blank in `.env`).
    pub(super) fn raw(&self, name: &str) -> Option<String> {
        self.source.get(name).filter(|v| !v.trim().is_empty())
    }

    /// The source itself, for sections that read several variables at once.
    pub(super) fn source(&self) -> &'a dyn Source {
        self.source
    }

    /// The contents of the file at `path`, through the source.
    pub(super) fn read_file(&self, path: &str) -> std::io::Result<String> {
        self.source.read_file(path)
    }

    /// `name` read by `parse`, if set; a bad value is a problem that names
    /// the variable and the value (credentials in a URL masked).
    pub(super) fn optional<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let raw = self.raw(name)?;
        match parse(raw.trim()) {
            Ok(v) => Some(v),
            Err(why) => {
                self.problem(format!("{name}={:?}: {why}", without_userinfo(&raw)));
                None
            }
        }
    }

    /// As [`Reader::optional`], with `default` when unset or bad (a bad value
    /// is still reported, so the default never hides it).
    pub(super) fn or<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
        default: T,
    ) -> T {
        self.optional(name, parse).unwrap_or(default)
    }

    /// As [`Reader::optional`], and a problem when unset.
    pub(super) fn required<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        if self.raw(name).is_none() {
            self.problem(format!("{name} is required"));
            return None;
        }
        self.optional(name, parse)
    }

    pub(super) fn problem(&mut self, message: String) {
        self.problems.push(message);
    }

    /// How many problems were reported so far (a section compares before
    /// and after to know whether its own values were good).
    pub(super) fn problem_count(&self) -> usize {
        self.problems.len()
    }

    /// Notes that `name` is set but changes nothing.
    pub(super) fn ignore(&mut self, name: &'static str) {
        self.ignored.push(name);
    }

    /// The variables that changed nothing, or every problem found.
    pub(super) fn finish(self) -> Result<Vec<&'static str>, ConfigError> {
        if self.problems.is_empty() {
            Ok(self.ignored)
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
    }
}

/// `n` if within `min..=max`.
pub(super) fn in_range(n: u64, min: u64, max: u64) -> Result<u64, String> {
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(format!("expected a value from {min} to {max}"))
    }
}
