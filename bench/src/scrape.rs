//! Reading a plugin's Prometheus metrics from its admin endpoint, to check
//! what a phase did inside the plugin (shared-cache hits, breaker state).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// `GET /metrics` on `admin`: the exposition text.
pub async fn metrics(admin: SocketAddr) -> Result<String, String> {
    let work = async {
        let stream = tokio::net::TcpStream::connect(admin)
            .await
            .map_err(|e| format!("{admin}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let request = Request::get("/metrics")
            .header(hyper::header::HOST, admin.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("/metrics answered {}", response.status()));
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .map_err(|_| format!("{admin}: no /metrics within 5 s"))?
}

/// The value of `name` whose labels include `label` (`result="hit"`), or
/// of the sample without labels when `label` is empty; 0 when absent.
pub fn value(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, number) = match rest.strip_prefix('{') {
                Some(inner) => {
                    let (labels, after) = inner.split_once('}')?;
                    (labels, after)
                }
                None if rest.starts_with(' ') => ("", rest),
                None => return None,
            };
            let matches = if label.is_empty() {
                labels.is_empty()
            } else {
                labels.split(',').any(|l| l == label)
            };
            if !matches {
                return None;
            }
            number.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::value;

    const TEXT: &str = "# HELP x\n\
        phantom_shared_cache_lookups_total{result=\"hit\"} 12\n\
        phantom_shared_cache_lookups_total{result=\"miss\"} 3\n\
        phantom_shared_cache_breaker_state 1\n\
        phantom_shared_cache_breaker_state_other 9\n";

    #[test]
    fn reads_a_labelled_sample_and_an_unlabelled_one() {
        assert_eq!(
            value(TEXT, "phantom_shared_cache_lookups_total", "result=\"hit\""),
            12.0
        );
        assert_eq!(
            value(
                TEXT,
                "phantom_shared_cache_lookups_total",
                "result=\"miss\""
            ),
            3.0
        );
        assert_eq!(value(TEXT, "phantom_shared_cache_breaker_state", ""), 1.0);
        assert_eq!(value(TEXT, "phantom_absent", ""), 0.0);
    }
}
