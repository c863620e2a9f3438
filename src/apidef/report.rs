//! What a check found, and how it is printed: one line per finding for
//! people, one JSON document for pipelines.

use serde::Serialize;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Tokens leak, users are locked out, or the plugin is not called.
    Error,
    /// Works, but not as the operator probably expects.
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem, placed in the file, API and field it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The definition file (or bundle) the finding is about.
    pub file: String,
    /// The API's ID (or name); empty for a finding about no one API.
    pub api: String,
    /// The field at fault, as written in that file's schema.
    pub field: String,
    /// What is wrong and what it leads to.
    pub problem: String,
    /// What to change.
    pub fix: String,
}

/// One API definition that was checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checked {
    pub file: String,
    pub api: String,
    /// `classic` or `oas`.
    pub kind: &'static str,
}

/// A file that could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub file: String,
    pub problem: String,
}

/// Everything one run found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub apis: Vec<Checked>,
    pub findings: Vec<Finding>,
    pub unreadable: Vec<Unreadable>,
}

/// Exit status with errors in the definitions.
pub const EXIT_ERRORS: u8 = 1;
/// Exit status when an input could not be read.
pub const EXIT_UNREADABLE: u8 = 2;

impl Report {
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// 2 when an input was unreadable, else 1 when there are errors, else 0
    /// (warnings do not fail a run).
    pub fn exit_code(&self) -> u8 {
        if !self.unreadable.is_empty() {
            EXIT_UNREADABLE
        } else if self.errors() > 0 {
            EXIT_ERRORS
        } else {
            0
        }
    }

    /// The report for people: each API's findings (or `ok`), one per line,
    /// then a summary. Names taken from the files (keys, version names,
    /// paths) have their control characters escaped, so that a definition
    /// cannot write lines of its own into the report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let line = |f: &Finding| {
            let api = if f.api.is_empty() {
                String::new()
            } else {
                format!("API {:?}, ", f.api)
            };
            format!(
                "{}: {}: {api}{}: {}; fix: {}\n",
                printable(&f.file),
                f.severity.as_str(),
                printable(&f.field),
                printable(&f.problem),
                printable(&f.fix)
            )
        };
        for unreadable in &self.unreadable {
            out.push_str(&format!(
                "{}: unreadable: {}\n",
                printable(&unreadable.file),
                printable(&unreadable.problem)
            ));
        }
        for api in &self.apis {
            let mine: Vec<&Finding> = self
                .findings
                .iter()
                .filter(|f| f.file == api.file && f.api == api.api)
                .collect();
            if mine.is_empty() {
                out.push_str(&format!(
                    "{}: API {:?} ({}): ok\n",
                    printable(&api.file),
                    api.api,
                    api.kind
                ));
            }
            for finding in mine {
                out.push_str(&line(finding));
            }
        }
        for finding in self.findings.iter().filter(|f| f.api.is_empty()) {
            out.push_str(&line(finding));
        }
        out.push_str(&format!(
            "{} API definition(s) checked: {} error(s), {} warning(s)",
            self.apis.len(),
            self.errors(),
            self.warnings()
        ));
        if !self.unreadable.is_empty() {
            out.push_str(&format!("; {} file(s) unreadable", self.unreadable.len()));
        }
        out.push('\n');
        out
    }

    /// The report as one JSON document: `apis`, `findings`, `unreadable`,
    /// and the `errors` and `warnings` counts.
    pub fn json(&self) -> String {
        #[derive(Serialize)]
        struct Document<'a> {
            #[serde(flatten)]
            report: &'a Report,
            errors: usize,
            warnings: usize,
        }
        let document = Document {
            report: self,
            errors: self.errors(),
            warnings: self.warnings(),
        };
        serde_json::to_string_pretty(&document).unwrap_or_else(|e| {
            // Plain strings and numbers always serialise; kept total anyway.
            let message = serde_json::Value::String(format!("cannot write the report: {e}"));
            format!("{{\"error\": {message}}}")
        })
    }
}

/// `text` with control characters (line breaks, escapes) written as Rust
/// escapes, everything else as is.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
