//! One error type for the whole core. Every variant names the file (when there is one)
//! and what is wrong, so that the CLI and the Python exceptions can show it as is.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error while touching `path`.
    #[error("{path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file whose content is not what its format promises (truncated, foreign, inconsistent).
    #[error("{path}: bad {field}: {msg}", path = .path.display())]
    Format {
        path: PathBuf,
        field: String,
        msg: String,
    },
    /// Arguments or inputs that do not fit together (lengths, ranges, options).
    #[error("{0}")]
    Invalid(String),
    /// An output that already exists and was not allowed to be replaced.
    #[error("{path}: output exists (pass --overwrite / overwrite=True to replace it)", path = .0.display())]
    OutputExists(PathBuf),
    /// Another process holds the output's lock (it is writing that output now).
    #[error("{path}: output is being written by another process ({holder}); wait for it to finish or stop it", path = .path.display())]
    Locked { path: PathBuf, holder: String },
    /// The caller asked the job to stop (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
    /// A broken invariant of miniplm itself: never the user's input, always our bug.
    #[error("internal error: {0} (this is a bug in miniplm; please report it with the command and the message)")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn format(
        path: impl AsRef<Path>,
        field: impl Into<String>,
        msg: impl Into<String>,
    ) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            field: field.into(),
            msg: msg.into(),
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// A broken invariant of ours (a worker panicked, a cut not found): asks for a bug report.
    pub fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }
}

/// Attach a path to an `io::Result`.
pub trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn internal_asks_for_a_bug_report() {
        let msg = Error::internal("tie cut not found").to_string();
        assert!(
            msg.starts_with("internal error: tie cut not found"),
            "{msg}"
        );
        assert!(
            msg.contains("this is a bug in miniplm; please report it"),
            "{msg}"
        );
    }
}
