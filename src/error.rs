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

/// Any error kept as a cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A cause known only by its message (there is no error value to keep).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Message(pub String);

/// A write the bridge refused because it is over a limit the caller set; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A delete would remove more rows than `max_delete_rows` allows (counted inside the open
    /// transaction, which is then rolled back).
    #[error(
        "would delete {deleted} rows from {table}, over max_delete_rows {limit}; nothing was \
         changed"
    )]
    DeleteCap {
        /// The table, as the pipeline names it.
        table: String,
        /// Rows the DELETE removed before it was rolled back.
        deleted: u64,
        /// The caller's `max_delete_rows`.
        limit: u64,
    },
}

/// A step's SQL that does not plan ([`Error::StepSql`]).
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct StepSqlError {
    pub location: Location,
    pub step: String,
    /// The whole message: the step, what failed (and the query file) and `detail`.
    pub message: String,
    /// What the SQL planner said, its first line.
    pub detail: String,
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

    /// A step failed while planning or running on DataFusion. The cause is kept: whether
    /// retrying may help is found by walking it ([`Error::is_transient`]).
    #[error("{}step `{step}` failed: {source}", at_prefix(.location.as_ref()))]
    Step {
        step: String,
        /// Where the step is declared (`file:line`), filled in by the run that planned it.
        location: Option<Location>,
        #[source]
        source: BoxError,
    },

    /// A step's SQL (a transform's query or its parameters) does not plan: a syntax error, an
    /// unknown table, column or function.
    #[error(transparent)]
    StepSql(Box<StepSqlError>),

    /// A step was refused: what it would do is over a limit the caller set (nothing was
    /// changed). Audited as `refused`, not `failed`.
    #[error("step `{step}` failed: {refusal}")]
    Refused {
        step: String,
        #[source]
        refusal: Refusal,
    },

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

    /// An argument or a setting is wrong (a flag's value, an environment variable, a setting
    /// that is missing or malformed): the message names it and what it should be. The CLI exits
    /// 2, the API answers 422.
    #[error("{0}")]
    Invalid(String),

    /// The bridge's own environment failed, not its input: a socket, the HTTP server, the state
    /// or job database, a background task. The CLI exits 1, the API answers 500.
    #[error("{what}: {source}")]
    Internal {
        /// What could not be done (`cannot listen on 127.0.0.1:8000`).
        what: String,
        #[source]
        source: BoxError,
    },

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

    /// Whether the input (a pipeline, config, query, setting or argument) is wrong, rather than
    /// the run failing on data or I/O: the CLI exits 2 for these, 1 for the rest, and the API
    /// answers 422 rather than 500.
    pub fn is_invalid_input(&self) -> bool {
        use crate::output_types::OutputTypeError as T;
        matches!(
            self,
            Error::Spec { .. }
                | Error::Render { .. }
                | Error::Plan { .. }
                | Error::StepSql(_)
                | Error::Invalid(_)
                | Error::OutputType(T::Unsupported { .. } | T::NanosecondsInDelta { .. })
        ) || matches!(self, Error::Step { source, .. } if find_in_chain::<crate::databricks::probe::OpenError>(source.as_ref())
            .is_some_and(|e| matches!(e, crate::databricks::probe::OpenError::Config(_))))
    }

    /// Whether retrying the step may succeed: a step failure whose cause chain holds a
    /// [`MssqlError`] marked transient (connection reset, deadlock, throttling), also through
    /// DataFusion's `External`, `Shared` and `Context` wrappers. The first SQL Server error
    /// found decides. A failed commit is never transient (whether it applied is unknown).
    ///
    /// [`MssqlError`]: crate::mssql::MssqlError
    pub fn is_transient(&self) -> bool {
        let Error::Step { source, .. } = self else {
            return false;
        };
        find_in_chain::<crate::mssql::MssqlError>(source.as_ref()).is_some_and(|m| m.transient)
    }

    /// The refusal this error is, also when it is the cause of a failed commit.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Error::Refused { refusal, .. } => Some(refusal),
            Error::CommitFailed { cause, .. } | Error::AfterCommit { cause, .. } => cause.refusal(),
            _ => None,
        }
    }

    /// Whether a step failed because DataFusion's memory pool ran out (a run with a memory
    /// limit whose operators needed more).
    pub fn is_resources_exhausted(&self) -> bool {
        matches!(self, Error::Step { source, .. } if is_resources_exhausted(source.as_ref()))
    }

    /// The error with its step's place: a step failure not yet placed gets the `file:line`
    /// `locate` gives for its step (the run's plan knows where each step is declared).
    pub fn placed<'a>(self, locate: impl FnOnce(&str) -> Option<&'a Location>) -> Self {
        match self {
            Error::Step {
                step,
                location: None,
                source,
            } => {
                let location = locate(&step).cloned();
                Error::Step {
                    step,
                    location,
                    source,
                }
            }
            other => other,
        }
    }

    /// A step failure that keeps `source` as its cause (so [`Error::is_transient`] can find a
    /// transient SQL Server error in it).
    pub fn step_from(step: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Step {
            step: step.into(),
            location: None,
            source: source.into(),
        }
    }

    /// A step failure known only by its message (never transient).
    pub fn step(step: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::Step {
            step: step.into(),
            location: None,
            source: Box::new(Message(message.to_string())),
        }
    }

    /// An invalid argument or setting (exit 2, HTTP 422).
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    /// A failure of the bridge's environment (exit 1, HTTP 500): `what` could not be done
    /// because of `source`.
    pub fn internal(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Internal {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// The errors of a cause chain, from `e` down to its root: each error's `source()`, and inside
/// DataFusion's `External`, `Shared` and `Context` wrappers (like DataFusion's `find_root`).
pub fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    use deltalake::datafusion::error::DataFusionError as D;
    type Dyn = dyn std::error::Error + 'static;
    std::iter::successors(Some(e), |&err| -> Option<&'a Dyn> {
        match err.downcast_ref::<D>() {
            Some(D::External(inner)) => Some(inner.as_ref() as &Dyn),
            Some(D::Shared(inner)) => Some(inner.as_ref() as &Dyn),
            Some(D::Context(_, inner)) => Some(inner.as_ref() as &Dyn),
            _ => err.source(),
        }
    })
}

/// Whether DataFusion's memory pool ran out somewhere in `e`'s cause chain.
pub fn is_resources_exhausted(e: &(dyn std::error::Error + 'static)) -> bool {
    use deltalake::datafusion::error::DataFusionError as D;
    chain(e).any(|e| matches!(e.downcast_ref::<D>(), Some(D::ResourcesExhausted(_))))
}

/// The first error of type `T` in `e`'s cause chain ([`chain`]).
pub fn find_in_chain<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    chain(e).find_map(|err| err.downcast_ref::<T>())
}

/// `"file:line: "` before a placed step's message, nothing before one not placed.
fn at_prefix(location: Option<&Location>) -> String {
    location.map(|l| format!("{l}: ")).unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::datafusion::error::DataFusionError;

    use super::*;
    use crate::mssql::{MssqlError, Phase};

    fn mssql(transient: bool) -> MssqlError {
        MssqlError {
            phase: Phase::Query,
            target: "127.0.0.1:1433/db".into(),
            message: "Transaction (Process ID 51) was deadlocked".into(),
            code: Some(1205),
            transient,
        }
    }

    #[test]
    fn a_transient_sql_server_error_is_found_through_datafusion_wrappers() {
        let external = DataFusionError::External(Box::new(mssql(true)));
        let e = Error::step_from("write", external);
        assert!(e.is_transient());
        assert!(e.to_string().starts_with("step `write` failed: "), "{e}");
        assert!(e.to_string().contains("deadlocked"), "{e}");
        // The cause is kept, not copied into a string.
        let source = std::error::Error::source(&e).expect("a step keeps its cause");
        assert!(find_in_chain::<MssqlError>(source).is_some());

        let shared = DataFusionError::Context(
            "reading the input".into(),
            Box::new(DataFusionError::Shared(Arc::new(
                DataFusionError::External(Box::new(mssql(true))),
            ))),
        );
        assert!(Error::step_from("write", shared).is_transient());
    }

    #[test]
    fn other_step_failures_are_not_transient() {
        let external = DataFusionError::External(Box::new(mssql(false)));
        assert!(!Error::step_from("write", external).is_transient());
        assert!(!Error::step_from("write", DataFusionError::Execution("x".into())).is_transient());
        // A message keeps no cause to find a SQL Server error in.
        assert!(!Error::step("write", mssql(true)).is_transient());
        // A failed commit is never retried, whatever its cause says.
        let commit = Error::CommitFailed {
            step: "write".into(),
            failed: "SQL Server table dbo.T".into(),
            cause: Box::new(Error::step_from("write", mssql(true))),
            committed: Vec::new(),
            not_committed: vec!["SQL Server table dbo.T".into()],
            outcome_unknown: true,
        };
        assert!(!commit.is_transient());
    }

    #[test]
    fn a_delete_cap_is_a_refusal_by_type_also_under_a_failed_commit() {
        let refusal = Refusal::DeleteCap {
            table: "dbo.Target".into(),
            deleted: 3,
            limit: 2,
        };
        let e = Error::Refused {
            step: "write".into(),
            refusal: refusal.clone(),
        };
        assert_eq!(e.refusal(), Some(&refusal));
        assert_eq!(
            e.to_string(),
            "step `write` failed: would delete 3 rows from dbo.Target, over max_delete_rows 2; \
             nothing was changed"
        );
        assert!(!e.is_transient() && !e.is_invalid_input());
        let wrapped = Error::CommitFailed {
            step: "write".into(),
            failed: "SQL Server table dbo.Target".into(),
            cause: Box::new(e),
            committed: vec!["a".into()],
            not_committed: Vec::new(),
            outcome_unknown: false,
        };
        assert_eq!(wrapped.refusal(), Some(&refusal));
        // A failure whose text reads like a refusal is not one.
        let lookalike = Error::step(
            "write",
            "would delete 3 rows from dbo.Target, over max_delete_rows 2; nothing was changed",
        );
        assert_eq!(lookalike.refusal(), None);
    }

    #[test]
    fn running_out_of_memory_is_found_in_the_cause() {
        let oom = DataFusionError::External(Box::new(DataFusionError::ResourcesExhausted(
            "Failed to allocate additional 1024 bytes".into(),
        )));
        assert!(Error::step_from("write", oom).is_resources_exhausted());
        assert!(!Error::step("write", "Resources exhausted").is_resources_exhausted());
    }

    #[test]
    fn usage_errors_are_invalid_input_and_environment_failures_are_not() {
        assert!(Error::invalid("--poll-interval: must be more than 0 seconds").is_invalid_input());
        let internal = Error::internal(
            "cannot listen on 127.0.0.1:8000",
            std::io::Error::from(std::io::ErrorKind::AddrInUse),
        );
        assert!(!internal.is_invalid_input());
        assert!(
            internal
                .to_string()
                .starts_with("cannot listen on 127.0.0.1:8000: "),
            "{internal}"
        );
    }
}
