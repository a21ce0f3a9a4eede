//! Who may see which jobs and events. A caller sees its own jobs and events, the jobs whose every
//! SQL Server table it may read, and the events whose target table it may read; a caller with a
//! `*` read grant (and no narrower grant taking reading away) sees everything. A job touching no
//! SQL Server table (or one stored by an older server, whose tables are unknown) is seen by its
//! submitter and by such callers only. What a caller may not see answers 404, as if it did not
//! exist, so ids do not leak.

use crate::auth::{Access, Caller};
use crate::server::jobs::{Job, JobAccess};
use crate::sync::Event;

/// Whether the caller may read every table: a `*` grant that allows reading, and no more
/// specific grant that does not (the most specific grant decides, as in [`Caller::check`]).
pub fn sees_everything(caller: &Caller) -> bool {
    let reads = |access: Access| access.allows(Access::Read);
    caller
        .grants()
        .iter()
        .any(|g| g.table == "*" && reads(g.access))
        && caller.grants().iter().all(|g| reads(g.access))
}

/// Whether the caller may see a job submitted by `access.submitted_by` touching `access.tables`.
pub fn may_see_job(caller: &Caller, access: &JobAccess) -> bool {
    access.submitted_by.as_deref() == Some(caller.name.as_str())
        || sees_everything(caller)
        || (!access.tables.is_empty()
            && access
                .tables
                .iter()
                .all(|t| caller.check(t, Access::Read).is_ok()))
}

/// [`may_see_job`] for a stored job.
pub fn may_see(caller: &Caller, job: &Job) -> bool {
    may_see_job(
        caller,
        &JobAccess {
            submitted_by: job.submitted_by.clone(),
            tables: job.tables.clone(),
        },
    )
}

/// Whether the caller may see an event: it created it, or may read its target table.
pub fn may_see_event(caller: &Caller, event: &Event) -> bool {
    may_see_event_of(caller, event.created_by.as_deref(), &event.target_table)
}

fn may_see_event_of(caller: &Caller, created_by: Option<&str>, target_table: &str) -> bool {
    created_by == Some(caller.name.as_str()) || caller.check(target_table, Access::Read).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn callers() -> crate::auth::Permissions {
        crate::auth::Permissions::parse(
            Path::new("permissions.yaml"),
            r#"users:
  - name: alice
    token: alice-token
    permissions:
      - {table: dbo.Results, access: read}
  - name: bob
    token: bob-token
    permissions: []
  - name: ops
    token: ops-token
    permissions:
      - {table: "*", access: read}
  - name: narrowed
    token: narrowed-token
    permissions:
      - {table: "*", access: read_write}
      - {table: dbo.Audit, access: write}
  - name: writer
    token: writer-token
    permissions:
      - {table: dbo.Results, access: write}
"#,
        )
        .unwrap()
    }

    fn access(by: Option<&str>, tables: &[&str]) -> JobAccess {
        JobAccess {
            submitted_by: by.map(str::to_string),
            tables: tables
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
        }
    }

    #[test]
    fn who_sees_which_job() {
        let p = callers();
        let c = |t: &str| p.authenticate(t).unwrap();
        let (alice, bob, ops, narrowed, writer) = (
            c("alice-token"),
            c("bob-token"),
            c("ops-token"),
            c("narrowed-token"),
            c("writer-token"),
        );
        assert!(sees_everything(&ops));
        assert!(!sees_everything(&narrowed), "dbo.Audit is write-only");
        assert!(!sees_everything(&alice) && !sees_everything(&bob));

        let results = access(Some("carol"), &["dbo.Results"]);
        assert!(may_see_job(&alice, &results));
        assert!(may_see_job(&ops, &results));
        assert!(!may_see_job(&bob, &results));
        assert!(!may_see_job(&writer, &results), "write is not read");
        // Names are compared as tables, not as text.
        assert!(may_see_job(&alice, &access(None, &["[dbo].[results]"])));
        // Every table, not one of them.
        let both = access(Some("carol"), &["dbo.Results", "dbo.Sales"]);
        assert!(!may_see_job(&alice, &both));
        assert!(may_see_job(&ops, &both));
        assert!(may_see_job(&narrowed, &both));
        assert!(!may_see_job(&narrowed, &access(None, &["dbo.Audit"])));
        // No table: the submitter and `*` readers only.
        let none = access(Some("bob"), &[]);
        assert!(may_see_job(&bob, &none));
        assert!(may_see_job(&ops, &none));
        assert!(!may_see_job(&alice, &none));
        assert!(!may_see_job(&bob, &access(None, &[])), "a scheduled run");
    }

    #[test]
    fn who_sees_which_event() {
        let p = callers();
        let c = |t: &str| p.authenticate(t).unwrap();
        let sees =
            |token: &str, by: &str, target: &str| may_see_event_of(&c(token), Some(by), target);
        assert!(sees("writer-token", "writer", "dbo.Results"));
        assert!(sees("alice-token", "writer", "dbo.Results"));
        assert!(sees("ops-token", "writer", "dbo.Results"));
        assert!(!sees("bob-token", "writer", "dbo.Results"));
        assert!(!sees("alice-token", "writer", "dbo.Other"));
        assert!(!may_see_event_of(&c("bob-token"), None, "dbo.Results"));
    }
}
