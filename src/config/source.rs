//! Where configuration values come from: the process environment in
//! production, a map in tests (tests never change the process environment).

use std::collections::HashMap;

use super::vars::{ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_INTROSPECTION_URL};
use super::{Config, ConfigError};

/// A source of variables, and of the files some of them name.
pub trait Source {
    /// The raw value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
    /// The contents of a file named by a variable (used for `CLIENT_SECRET_FILE`).
    fn read_file(&self, path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// The process environment.
pub struct Environment;

impl Source for Environment {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// An in-memory source for tests: variables from a map, and files (for
/// `CLIENT_SECRET_FILE`) from another, so neither the process environment
/// nor the real file system is read. Built by value (`with`, `without`,
/// `with_file`) or changed in place (`set`).
#[derive(Clone, Default)]
pub struct MapSource {
    vars: HashMap<String, String>,
    files: HashMap<String, String>,
}

impl MapSource {
    /// Exactly these variables, and no files.
    pub fn new(pairs: &[(&str, &str)]) -> Self {
        let mut source = MapSource::default();
        for (name, value) in pairs {
            source.set(name, value);
        }
        source
    }

    /// The three required variables: an `https://` introspection URL, the
    /// client ID `introspection-client`, and `client_secret`.
    pub fn minimal(client_secret: &str) -> Self {
        MapSource::new(&[
            (
                ENV_INTROSPECTION_URL,
                "https://idsvr.example.com/oauth/v2/oauth-introspect",
            ),
            (ENV_CLIENT_ID, "introspection-client"),
            (ENV_CLIENT_SECRET, client_secret),
        ])
    }

    /// Sets `name` to `value`.
    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    /// This source with `name` set to `value`.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.set(name, value);
        self
    }

    /// This source with `name` unset.
    pub fn without(mut self, name: &str) -> Self {
        self.vars.remove(name);
        self
    }

    /// This source with a file at `path` holding `contents`.
    pub fn with_file(mut self, path: &str, contents: &str) -> Self {
        self.files.insert(path.to_owned(), contents.to_owned());
        self
    }

    /// The configuration these variables make, or every problem with them.
    ///
    /// # Errors
    ///
    /// As [`Config::from_source`].
    pub fn parse(&self) -> Result<Config, ConfigError> {
        Config::from_source(self)
    }
}

impl Source for MapSource {
    fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn read_file(&self, path: &str) -> std::io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    }
}
