//! Authorising a job from its plan's declared resources alone ([`authorize`]): the same check
//! for `/runs`, `/extract`, `/sync`, events rows and schedules.
//!
//! - Tables (SQL Server and lakehouse) need the caller's grant for the access the step needs;
//!   SQL Server tables must be in the configured database. Scheduled runs have no caller: their
//!   tables are the operator's choice, only their locations are checked.
//! - Locations a job writes (volume folders, Delta paths, files a source creates) must be inside
//!   one of the server's output roots ([`AccessPolicy::output_roots`]).
//! - Local files a job reads must be inside the project root or an output root, and not hidden
//!   (no path component starting with `.`, so `.env` and `.bridge/` are never read) nor the
//!   permissions file.
//! - A source or sink that declares nothing, or whose reads cannot be determined (a query that
//!   does not parse), is refused.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::auth::{Access, Caller, Denied};
use crate::pipeline::Plan;
use crate::pipeline::resources::{Place, Resource};
use crate::pipeline::spec::StepKind;

/// What the server allows besides callers' grants.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    /// The project root (local reads may come from under it).
    pub project_root: PathBuf,
    /// Where jobs may write: `output_roots:` of `config/defaults.yaml`, or by default the
    /// project's `output/` folder and its `volume_root` and `lakehouse_root` parameters.
    pub output_roots: Vec<Place>,
    /// Files no job may read (the permissions file).
    pub protected: Vec<PathBuf>,
    /// The configured SQL Server database.
    pub database: Option<String>,
}

/// Why a job may not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A table grant is missing or too narrow.
    #[error(transparent)]
    Table(#[from] Denied),
    /// A location outside what the server allows.
    #[error(
        "step `{step}` would {} {place}, which is outside {allowed}; ask the operator to add its root to `output_roots:` in config/defaults.yaml",
        if *.need == Access::Read { "read" } else { "write" }
    )]
    Location {
        step: String,
        place: String,
        need: Access,
        allowed: String,
    },
    /// A location no job may read.
    #[error("step `{step}` would read {place}, which jobs may never read ({why})")]
    Protected {
        step: String,
        place: String,
        why: &'static str,
    },
    /// A SQL Server table of another database.
    #[error(
        "step `{step}` connects to database `{database}`; grants cover only the configured database{}",
        configured.as_deref().map(|c| format!(" `{c}`")).unwrap_or_default()
    )]
    OtherDatabase {
        step: String,
        database: String,
        configured: Option<String>,
    },
    /// A source or sink whose resources are unknown.
    #[error("step `{step}` cannot be authorised: {why}")]
    Undeclared { step: String, why: String },
}

/// What an authorised job may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorized {
    /// The tables the job touches, each once, for the audit log and job listings.
    pub tables: Vec<String>,
    /// Per sink step, the caller's `max_delete_rows` for the table it deletes from.
    pub delete_caps: BTreeMap<String, u64>,
}

impl AccessPolicy {
    fn allowed(&self, need: Access) -> String {
        let roots: Vec<String> = self
            .output_roots
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        let roots = if roots.is_empty() {
            "none".to_string()
        } else {
            roots.join(", ")
        };
        match need {
            Access::Read => format!(
                "the project root {} and the output roots ({roots})",
                self.project_root.display()
            ),
            _ => format!("the output roots ({roots})"),
        }
    }

    fn check_place(&self, step: &str, place: &Place, need: Access) -> Result<(), Refusal> {
        let in_output = self.output_roots.iter().any(|r| place.is_within(r));
        let outside = || Refusal::Location {
            step: step.to_string(),
            place: place.to_string(),
            need,
            allowed: self.allowed(need),
        };
        if need != Access::Read {
            return if in_output { Ok(()) } else { Err(outside()) };
        }
        if let Place::Local(path) = place {
            if self
                .protected
                .iter()
                .any(|p| Place::Local(path.clone()).is_within(&Place::Local(p.clone())))
            {
                return Err(Refusal::Protected {
                    step: step.to_string(),
                    place: place.to_string(),
                    why: "the permissions file",
                });
            }
            let root = Place::Local(self.project_root.clone());
            if place.is_within(&root) {
                let hidden = place
                    .relative_to(&root)
                    .unwrap_or_default()
                    .iter()
                    .any(|part| part.starts_with('.'));
                if hidden && !in_output {
                    return Err(Refusal::Protected {
                        step: step.to_string(),
                        place: place.to_string(),
                        why: "hidden files such as `.env` and `.bridge/` hold secrets and state",
                    });
                }
                return Ok(());
            }
        }
        if in_output { Ok(()) } else { Err(outside()) }
    }
}

/// Authorises a plan for `caller` (`None`: the scheduler, whose tables are the operator's).
pub fn authorize(
    caller: Option<&Caller>,
    plan: &Plan,
    policy: &AccessPolicy,
) -> Result<Authorized, Refusal> {
    let declared = &plan.resources;
    if let Some((step, why)) = declared.unknown.first() {
        return Err(Refusal::Undeclared {
            step: step.clone(),
            why: why.clone(),
        });
    }
    for step in &plan.steps {
        let external = matches!(step.kind, StepKind::Source | StepKind::Sink);
        if external && !declared.uses.iter().any(|u| u.step == step.id) {
            return Err(Refusal::Undeclared {
                step: step.id.clone(),
                why: "its kind declares no table or location it uses".into(),
            });
        }
    }
    let mut authorized = Authorized {
        tables: declared.table_names(),
        ..Authorized::default()
    };
    for u in &declared.uses {
        match &u.resource {
            Resource::Location(place) => policy.check_place(&u.step, place, u.access)?,
            Resource::SqlTable {
                database: Some(database),
                ..
            } if caller.is_some() => {
                return Err(Refusal::OtherDatabase {
                    step: u.step.clone(),
                    database: database.clone(),
                    configured: policy.database.clone(),
                });
            }
            resource => {
                let (Some(caller), Some(table)) = (caller, resource.table()) else {
                    continue;
                };
                caller.check_table(&table, u.access)?;
                if u.deletes
                    && matches!(resource, Resource::SqlTable { .. })
                    && let Some(limit) = caller.max_delete_rows_of(&table)
                {
                    let cap = authorized
                        .delete_caps
                        .entry(u.step.clone())
                        .or_insert(limit);
                    *cap = (*cap).min(limit);
                }
            }
        }
    }
    Ok(authorized)
}
