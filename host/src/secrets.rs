//! An array's secrets (passwords, tokens): where the configuration says
//! they come from, how they are read, and how their text is kept out of
//! everything the host writes or answers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Longest secret accepted, in bytes.
const MAX_SECRET_BYTES: usize = 64 << 10;
/// Shortest secret accepted: shorter text cannot be scrubbed from messages
/// without mangling them.
pub const MIN_SECRET_BYTES: usize = 6;
/// What replaces a secret's text.
pub const REDACTED: &str = "[redacted]";

/// Where a secret comes from. A file or an environment variable keeps it
/// out of the configuration file itself.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretSource {
    /// The file's content, without its trailing newline.
    File(PathBuf),
    /// The environment variable's value.
    Env(String),
    /// The text itself, written in the configuration.
    Value(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Env(v) => f.debug_tuple("Env").field(v).finish(),
            Self::Value(_) => f.debug_tuple("Value").field(&REDACTED).finish(),
        }
    }
}

impl SecretSource {
    /// Reads the secret; the error names the source, never the text.
    pub fn read(&self) -> Result<String, String> {
        let text = match self {
            Self::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read file {}: {e}", path.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
            Self::Env(var) => {
                std::env::var(var).map_err(|e| format!("environment variable {var}: {e}"))?
            }
            Self::Value(v) => v.clone(),
        };
        if text.len() < MIN_SECRET_BYTES || text.len() > MAX_SECRET_BYTES {
            return Err(format!(
                "a secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes long, this one \
                 has {}",
                text.len()
            ));
        }
        Ok(text)
    }
}

/// An array's secrets, read. Its `Debug` shows names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    by_name: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_name.keys()).finish()
    }
}

impl Secrets {
    /// Reads every source; the error names the secret that failed.
    pub fn read(sources: &BTreeMap<String, SecretSource>) -> Result<Self, String> {
        let mut by_name = BTreeMap::new();
        for (name, source) in sources {
            let text = source.read().map_err(|e| format!("secret {name}: {e}"))?;
            by_name.insert(name.clone(), text);
        }
        Ok(Self { by_name })
    }

    /// The secrets' names, never their text.
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// The secret `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(String::as_str)
    }

    /// Whether `text` holds any secret's text.
    pub fn found_in(&self, text: &str) -> bool {
        self.by_name.values().any(|s| text.contains(s.as_str()))
    }

    /// `text` with every secret's text replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        if self.by_name.is_empty() {
            return out;
        }
        // Longest first, so a secret that contains another goes whole.
        let mut secrets: Vec<&String> = self.by_name.values().collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for s in secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(pairs: &[(&str, &str)]) -> Secrets {
        let sources = pairs
            .iter()
            .map(|(n, v)| (n.to_string(), SecretSource::Value(v.to_string())))
            .collect();
        Secrets::read(&sources).unwrap()
    }

    #[test]
    fn redaction_replaces_every_secret_and_the_longest_first() {
        let s = secrets(&[("short", "hunter22"), ("long", "hunter22-and-more")]);
        assert_eq!(
            s.redact("a hunter22-and-more b hunter22 c"),
            "a [redacted] b [redacted] c"
        );
        assert!(s.found_in("xx hunter22"));
        assert!(!s.found_in("hunter2"));
        assert_eq!(format!("{s:?}"), r#"{"long", "short"}"#);
    }

    #[test]
    fn sources_read_files_and_environment_and_refuse_what_is_too_short() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cr3t-token\n").unwrap();
        assert_eq!(SecretSource::File(path).read().unwrap(), "s3cr3t-token");
        let missing = SecretSource::File(dir.path().join("none"))
            .read()
            .unwrap_err();
        assert!(missing.contains("cannot read file"), "{missing}");
        let unset = SecretSource::Env("FERRY_TEST_SURELY_UNSET_VARIABLE".into())
            .read()
            .unwrap_err();
        assert!(
            unset.contains("FERRY_TEST_SURELY_UNSET_VARIABLE"),
            "{unset}"
        );
        let short = SecretSource::Value("abc".into()).read().unwrap_err();
        assert!(short.contains("6 to"), "{short}");
        assert_eq!(
            format!("{:?}", SecretSource::Value("hunter22".into())),
            r#"Value("[redacted]")"#
        );
    }
}
