//! The transport section: where the plugin and its admin endpoint listen,
//! how large a message or token may be, and how long a shutdown may drain.

use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::parse;
use super::reader::{Reader, in_range};
use super::vars::*;

/// Curity's plugin listens on this port; Tyk's examples dial it.
pub const DEFAULT_PORT: u16 = 50051;
/// Opaque tokens are tens of bytes; 4 KiB leaves room for any real one.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 4096;
/// A 16 MiB body crosses the reply twice (`body` and `raw_body`) plus headers.
pub const DEFAULT_GRPC_MAX_MESSAGE_BYTES: u64 = 64 << 20;
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 10;

/// Where the plugin listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    /// A Unix socket path (Tyk: `coprocess_grpc_server: unix:///path`).
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// Reads a listen address as `LISTEN_ADDR` does (`host:port` or
/// `unix:///path`).
///
/// # Errors
///
/// What is wrong with it.
pub fn parse_listen_addr(raw: &str) -> Result<ListenAddr, String> {
    parse::listen_addr(raw.trim())
}

/// The section's values, spread over [`super::Config`]'s top level.
pub(super) struct Transport {
    pub listen: ListenAddr,
    pub admin: Option<SocketAddr>,
    pub max_token_bytes: usize,
    pub grpc_max_message_bytes: usize,
    pub shutdown_grace: Duration,
}

/// The section, or `None` when the listen address is bad (the problem is
/// in `r`).
pub(super) fn read(r: &mut Reader<'_>) -> Option<Transport> {
    let listen = listen(r);
    let admin = r.optional(ENV_ADMIN_ADDR, |v| {
        v.parse::<SocketAddr>()
            .map_err(|_| "expected an address such as 127.0.0.1:9090".to_owned())
    });
    let max_token_bytes = r.or(
        ENV_MAX_TOKEN_BYTES,
        |v| parse::integer::<usize>(v, 1, 1 << 20),
        DEFAULT_MAX_TOKEN_BYTES,
    );
    let grpc_max_message_bytes = r.or(
        ENV_GRPC_MAX_MESSAGE_BYTES,
        |v| parse::byte_size(v).and_then(|n| in_range(n, 4 << 20, 2047 << 20)),
        DEFAULT_GRPC_MAX_MESSAGE_BYTES,
    ) as usize;
    let shutdown_grace = r.or(
        ENV_SHUTDOWN_GRACE_SECONDS,
        |v| parse::seconds(v).and_then(|n| in_range(n, 0, 600)),
        DEFAULT_SHUTDOWN_GRACE_SECONDS,
    );
    Some(Transport {
        listen: listen?,
        admin,
        max_token_bytes,
        grpc_max_message_bytes,
        shutdown_grace: Duration::from_secs(shutdown_grace),
    })
}

/// `LISTEN_ADDR`, or all interfaces on `PORT` (Curity's variable).
fn listen(r: &mut Reader<'_>) -> Option<ListenAddr> {
    let port = r.optional(ENV_PORT, parse::port);
    let addr = r.optional(ENV_LISTEN_ADDR, parse::listen_addr);
    match (r.raw(ENV_PORT).is_some(), r.raw(ENV_LISTEN_ADDR).is_some()) {
        (true, true) => {
            r.problem(format!(
                "{ENV_PORT} and {ENV_LISTEN_ADDR} are both set; set only one"
            ));
            None
        }
        (false, true) => addr,
        (true, false) => port.map(all_interfaces).map(ListenAddr::Tcp),
        (false, false) => Some(ListenAddr::Tcp(all_interfaces(DEFAULT_PORT))),
    }
}

/// All interfaces, IPv6 and IPv4 alike where the host allows (see `server::bind`).
fn all_interfaces(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))
}
