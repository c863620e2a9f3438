//! W3C trace context (`traceparent`, `tracestate`): continued from the gRPC call
//! Tyk makes (its OpenTelemetry integration puts it in the call's metadata)
//! into our log lines and onto the introspection request.

use std::fmt;

/// A trace to continue.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex characters, not all zero.
    trace_id: String,
    flags: u8,
    tracestate: Option<String>,
}

/// Longest `tracestate` passed on (the W3C limit is 32 members of 256 bytes;
/// real values are far shorter).
const MAX_TRACESTATE: usize = 512;

impl TraceContext {
    /// Parses a `traceparent` header (and optional `tracestate`). Anything
    /// malformed gives `None`: the request goes on without a trace.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let lower_hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !lower_hex(version, 2)
            || version == "ff"
            || !lower_hex(trace_id, 32)
            || !lower_hex(parent_id, 16)
            || !lower_hex(flags, 2)
        {
            return None;
        }
        // Version 00 has exactly four fields; later versions may append more.
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if trace_id.bytes().all(|b| b == b'0') || parent_id.bytes().all(|b| b == b'0') {
            return None;
        }
        let tracestate = tracestate
            .map(str::trim)
            .filter(|s| {
                !s.is_empty()
                    && s.len() <= MAX_TRACESTATE
                    && s.bytes().all(|b| (0x20..0x7f).contains(&b))
            })
            .map(str::to_owned);
        Some(TraceContext {
            trace_id: trace_id.to_owned(),
            flags: u8::from_str_radix(flags, 16).ok()?,
            tracestate,
        })
    }

    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// A `traceparent` for an outgoing request: same trace and flags, a new
    /// span id of ours.
    pub fn child_traceparent(&self) -> String {
        let span = fastrand::u64(1..);
        format!("00-{}-{span:016x}-{:02x}", self.trace_id, self.flags)
    }

    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceContext({})", self.trace_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_the_w3c_example() {
        let trace = TraceContext::parse(VALID, Some("rojo=00f067aa0ba902b7")).unwrap();
        assert_eq!(trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.tracestate(), Some("rojo=00f067aa0ba902b7"));
    }

    #[test]
    fn child_keeps_the_trace_and_flags_with_a_new_span() {
        let trace = TraceContext::parse(VALID, None).unwrap();
        let child = trace.child_traceparent();
        let parts: Vec<&str> = child.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parts[2].len(), 16);
        assert_ne!(parts[2], "00f067aa0ba902b7");
        assert_ne!(parts[2], "0000000000000000");
        assert_eq!(parts[3], "01");
        assert!(TraceContext::parse(&child, None).is_some());
    }

    #[test]
    fn malformed_headers_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "xx-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(
                TraceContext::parse(bad, None).is_none(),
                "{bad:?} was accepted"
            );
        }
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert!(
            TraceContext::parse(future, None).is_some(),
            "later versions may add fields"
        );
    }

    #[test]
    fn odd_tracestate_is_dropped_not_forwarded() {
        let long = "a=".to_owned() + &"b".repeat(600);
        for bad in ["", "a=b\r\nInjected: x", long.as_str(), "caf\u{e9}=1"] {
            let trace = TraceContext::parse(VALID, Some(bad)).unwrap();
            assert_eq!(trace.tracestate(), None, "{bad:?}");
        }
    }
}
