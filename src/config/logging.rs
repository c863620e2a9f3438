//! The logging section: the format and filter of the service's logs.

use super::reader::Reader;
use super::vars::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The format (`text` by default) and the filter (`info` by default).
pub(super) fn read(r: &mut Reader<'_>) -> (LogFormat, String) {
    let format = r.or(
        ENV_LOG_FORMAT,
        |v| match v.to_ascii_lowercase().as_str() {
            "text" | "plain" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".to_owned()),
        },
        LogFormat::Text,
    );
    let level = r.or(
        ENV_LOG_LEVEL,
        |v| {
            tracing_subscriber::EnvFilter::try_new(v)
                .map(|_| v.to_owned())
                .map_err(|_| {
                    "expected a level (error, warn, info, debug, trace) or filter directives"
                        .to_owned()
                })
        },
        "info".to_owned(),
    );
    (format, level)
}
