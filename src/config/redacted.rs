//! Values whose `Debug` and `Display` never show a secret: configuration is
//! printed at start-up and in error messages, which reach logs.

use std::fmt;

/// A secret string: its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is sent or hashed, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A proxy URL (`http://` or `https://`, host and port, perhaps
/// `user:password@`). `Debug` and `Display` mask the credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl(pub(super) reqwest::Url);

impl ProxyUrl {
    /// The URL, credentials included: for building the client only.
    pub fn url(&self) -> &reqwest::Url {
        &self.0
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&without_userinfo(self.0.as_str()))
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

/// A value as shown in an error message: a URL's `user:password@` is masked,
/// since messages reach logs.
pub fn without_userinfo(raw: &str) -> String {
    if let Some(scheme_end) = raw.find("://") {
        let rest = &raw[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{}://***@{}", &raw[..scheme_end], &rest[at + 1..]);
        }
    }
    raw.to_owned()
}
