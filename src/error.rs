//! Typed errors of the bridge library.
//! Every error that comes from user input carries a [`Location`] (file, line, field) so the CLI can print it for people.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in the user's files an error was found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// The file, relative to the project root when possible.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
}

impl Location {
    /// A location that names only a file.
    pub fn file(file: impl Into<PathBuf>) -> Self {
        Location {
            file: file.into(),
            line: None,
            column: None,
        }
    }

    /// A location at a line of a file.
    pub fn at(file: impl Into<PathBuf>, line: Option<usize>) -> Self {
        Location {
            file: file.into(),
            line,
            column: None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        Ok(())
    }
}

/// Errors of the bridge library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A pipeline or config file is malformed (YAML syntax, unknown field, wrong type).
    #[error("{location}: {message}")]
    Spec { location: Location, message: String },

    /// A template (pipeline YAML or SQL file) failed to render.
    #[error("{location}: {message}")]
    Render { location: Location, message: String },

    /// The pipeline's steps do not form a valid DAG (unknown reference, cycle, duplicate id).
    #[error("{location}: {message}")]
    Plan { location: Location, message: String },

    /// A step failed while planning or running on DataFusion.
    #[error("step `{step}` failed: {message}")]
    Step { step: String, message: String },

    /// A step failed in a way that retrying may fix (connection reset, deadlock, throttling).
    #[error("step `{step}` failed: {message}")]
    Transient { step: String, message: String },

    /// The run was cancelled before it finished; nothing was committed.
    #[error("run cancelled; nothing was committed")]
    Cancelled,

    /// An output's lock could not be taken (another run holds it); nothing was written.
    #[error(transparent)]
    OutputLock(#[from] crate::sinks::lock::LockError),

    /// An output cannot be written for Databricks (a type it cannot read, a refused value).
    #[error(transparent)]
    OutputType(#[from] crate::output_types::OutputTypeError),

    /// An existing Delta table cannot take a step's output as it is (a column of another type,
    /// a missing table feature); nothing was written.
    #[error(transparent)]
    ExistingTable(#[from] Box<crate::sinks::delta::ExistingTableError>),

    /// A run failed while committing: some outputs were committed, the others were not.
    #[error(
        "step `{step}` failed while committing {failed}: {cause}. Committed by this run before \
         the failure: {}. Not committed, left as they were: {}.{}",
        list_or_nothing(committed),
        list_or_nothing(not_committed),
        if *outcome_unknown {
            " Whether the failed commit was applied is unknown (a SQL Server COMMIT or a \
             manifest write whose answer was lost); check that output before running again."
        } else {
            ""
        }
    )]
    CommitFailed {
        step: String,
        /// What the failed commit would have changed.
        failed: String,
        #[source]
        cause: Box<Error>,
        /// Outputs committed before the failure, in commit order.
        committed: Vec<String>,
        /// Outputs left unchanged (the failed one included, unless `outcome_unknown`).
        not_committed: Vec<String>,
        /// Whether the failed commit may have been applied anyway (a lost SQL Server COMMIT).
        outcome_unknown: bool,
    },

    /// A commit failed in a way that may have applied it anyway (its answer was lost and what it
    /// wrote could not be read back).
    #[error("step `{step}` commit: {message}")]
    CommitUnknown { step: String, message: String },

    /// Every output was committed, then a source's bookkeeping (its incremental watermark) could
    /// not be saved: the next run reads again from the previous watermark.
    #[error(
        "every output was committed ({}), but then {cause}; the next run starts from the \
         previous watermark, so an `insert` sink gets those rows again (`upsert` or `replace` \
         do not)",
        list_or_nothing(committed)
    )]
    AfterCommit {
        /// Outputs the run committed.
        committed: Vec<String>,
        #[source]
        cause: Box<Error>,
    },

    /// A feature the user asked for is not available in this build.
    #[error("{0}")]
    Unsupported(String),

    /// A Databricks API call failed.
    #[error(transparent)]
    Databricks(#[from] crate::databricks::DatabricksError),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// Whether the input (a pipeline, config, query or argument) is wrong, rather than the run
    /// failing on data or I/O: the CLI exits 2 for these, 1 for the rest.
    pub fn is_invalid_input(&self) -> bool {
        use crate::output_types::OutputTypeError as T;
        matches!(
            self,
            Error::Spec { .. }
                | Error::Render { .. }
                | Error::Plan { .. }
                | Error::OutputType(T::Unsupported { .. } | T::NanosecondsInDelta { .. })
        )
    }

    /// Whether retrying the step may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient { .. })
    }

    /// A step failure from an error chain: transient if a [`MssqlError`] in it says so.
    ///
    /// [`MssqlError`]: crate::mssql::MssqlError
    pub fn from_chain(step: impl Into<String>, e: &(dyn std::error::Error + 'static)) -> Self {
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut transient = false;
        while let Some(err) = current {
            if let Some(m) = err.downcast_ref::<crate::mssql::MssqlError>() {
                transient = m.transient;
                break;
            }
            current = match err.downcast_ref::<deltalake::datafusion::error::DataFusionError>() {
                Some(deltalake::datafusion::error::DataFusionError::External(inner)) => {
                    Some(inner.as_ref())
                }
                Some(deltalake::datafusion::error::DataFusionError::Shared(inner)) => {
                    Some(inner.as_ref())
                }
                _ => err.source(),
            };
        }
        let (step, message) = (step.into(), e.to_string());
        if transient {
            Error::Transient { step, message }
        } else {
            Error::Step { step, message }
        }
    }

    /// A step failure from any displayable cause.
    pub fn step(step: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::Step {
            step: step.into(),
            message: message.to_string(),
        }
    }
}

fn list_or_nothing(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".to_string()
    } else {
        items.join(", ")
    }
}

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
