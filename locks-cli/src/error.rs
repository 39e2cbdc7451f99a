//! What can go wrong, and the exit code of each.

use std::process::ExitCode;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The URL (or another argument) is wrong: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The store cannot be reached or refused the connection: exit code 3.
    #[error("{0}")]
    Unreachable(String),
    /// A release was refused (no `--force`, or not confirmed): exit code 4.
    #[error("{0}")]
    Refused(String),
    /// The store answered with an error: exit code 1.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// The process exit code (documented in `locks --help`).
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }

    /// The exit code as a number (also in the `--json` error document).
    pub fn code(&self) -> u8 {
        match self {
            CliError::Failed(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Unreachable(_) => 3,
            CliError::Refused(_) => 4,
        }
    }

    /// A store error during a command.
    pub fn store(what: &str, e: impl std::fmt::Display) -> Self {
        CliError::Failed(format!("{what}: {e}"))
    }
}
