//! Every log line the test process writes, captured at trace level so a test
//! can search what the plugin logged (one global subscriber per test binary).

use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Installs the process's subscriber, writing every event (trace level
    /// and up, no colours) here.
    pub fn install() -> Captured {
        let captured = Captured::default();
        tracing_subscriber::fmt()
            .with_env_filter("trace")
            .with_writer(captured.clone())
            .with_ansi(false)
            .init();
        captured
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
