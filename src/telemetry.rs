//! Log output: human-readable text or one JSON object per line, on stderr.

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Installs the global subscriber writing to standard error.
///
/// # Errors
///
/// When the filter is invalid or a subscriber is already installed.
pub fn init(format: LogFormat, level: &str) -> Result<(), BoxError> {
    tracing::subscriber::set_global_default(subscriber(format, level, std::io::stderr)?)?;
    Ok(())
}

/// The subscriber [`init`] installs, writing to `writer`.
///
/// # Errors
///
/// When `level` is not a valid filter.
pub fn subscriber<W>(
    format: LogFormat,
    level: &str,
    writer: W,
) -> Result<Box<dyn Subscriber + Send + Sync>, BoxError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(level)?)
        .with_writer(writer)
        .with_target(false);
    Ok(match format {
        LogFormat::Text => Box::new(builder.with_ansi(false).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(format: LogFormat, level: &str) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = subscriber(format, level, move || writer.clone()).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("dispatch", hook.name = "PhantomAuthCheck");
            let _entered = span.enter();
            tracing::info!(status = 401, token.id = "0123456789ab", "Request denied");
            tracing::debug!("Hidden at info");
        });
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_format_writes_one_object_per_line_with_fields_and_span() {
        let out = capture(LogFormat::Json, "info");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "Request denied");
        assert_eq!(line["status"], 401);
        assert_eq!(line["token.id"], "0123456789ab");
        assert_eq!(line["span"]["hook.name"], "PhantomAuthCheck");
    }

    #[test]
    fn text_format_is_plain_and_filtered_by_level() {
        let out = capture(LogFormat::Text, "info");
        assert!(out.contains("Request denied"), "{out}");
        assert!(out.contains("token.id=\"0123456789ab\""), "{out}");
        assert!(!out.contains("Hidden at info"));
        assert!(!out.contains('\u{1b}'), "no colour codes in logs");
        assert!(capture(LogFormat::Text, "debug").contains("Hidden at info"));
    }
}
