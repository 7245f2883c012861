//! Where a service account's client secret comes from: a file (re-read on every fetch, so a
//! rotated secret is picked up) or an environment variable. The value is never logged.

use std::path::PathBuf;

/// A client secret's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretSource {
    /// A file; surrounding whitespace (a trailing newline) is ignored.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

impl SecretSource {
    /// Reads the secret; the error names the source, never the value.
    pub(crate) fn read(&self) -> Result<String, String> {
        let value = match self {
            SecretSource::File(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read the client secret file {}: {e}", p.display()))?,
            SecretSource::Env(name) => std::env::var(name)
                .map_err(|_| format!("the environment variable {name} holding the client secret is not set"))?,
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(format!("{} is empty", self.describe()));
        }
        Ok(value)
    }

    /// `file /path` or `environment variable NAME`.
    pub(crate) fn describe(&self) -> String {
        match self {
            SecretSource::File(p) => format!("the client secret file {}", p.display()),
            SecretSource::Env(n) => format!("the environment variable {n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_is_trimmed_and_errors_name_the_source_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "s3cr3t\n").unwrap();
        assert_eq!(SecretSource::File(p.clone()).read().unwrap(), "s3cr3t");
        std::fs::write(&p, " \n").unwrap();
        let e = SecretSource::File(p.clone()).read().unwrap_err();
        assert!(e.contains("is empty"), "{e}");
        let e = SecretSource::File(dir.path().join("missing")).read().unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
        let e = SecretSource::Env("DCR_GATEWAY_TEST_UNSET_SECRET_VAR".into())
            .read()
            .unwrap_err();
        assert!(e.contains("DCR_GATEWAY_TEST_UNSET_SECRET_VAR"), "{e}");
    }
}
