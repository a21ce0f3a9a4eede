//! Change rows: what an incremental source that sees deletes (SQL Server Change Tracking) emits
//! and what the `delta` sink's `merge` and the `volume` sink's change sets carry. A change row is
//! the table's columns plus [`OP_COLUMN`] (`insert`, `update` or `delete`) and
//! [`VERSION_COLUMN`] (the source's change version, ordering changes of one key); a deleted
//! key's row carries its key columns, the other columns null.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// The operation of a change row: `insert`, `update` or `delete` (Utf8).
pub const OP_COLUMN: &str = "_change_op";

/// The change version of a change row (Int64): a later change of a key has a higher version.
pub const VERSION_COLUMN: &str = "_change_version";

/// The column a soft-deleting merge sets (timestamp, UTC) on rows whose key was deleted.
pub const DELETED_AT_COLUMN: &str = "_deleted_at";

/// [`OP_COLUMN`]'s values.
pub const INSERT: &str = "insert";
/// An update of an existing key.
pub const UPDATE: &str = "update";
/// A deleted key.
pub const DELETE: &str = "delete";

/// The sources of a run that read a whole table as change rows (a change-tracking snapshot:
/// the first run, or a full refresh), and the sinks they feed. A merge fed by such a source
/// also removes the target's keys the input lacks, so the target equals the table even when
/// deletes were missed (cleaned up before they were read).
#[derive(Debug, Default)]
pub struct Snapshots {
    sources: Mutex<BTreeSet<String>>,
    /// The sources each sink reads, through any transforms.
    upstream: BTreeMap<String, Vec<String>>,
}

impl Snapshots {
    /// A registry for a run whose sinks read these sources.
    pub fn new(upstream: BTreeMap<String, Vec<String>>) -> Self {
        Snapshots {
            sources: Mutex::default(),
            upstream,
        }
    }

    /// Records that source `step` reads a whole table this run.
    pub fn mark(&self, step: &str) {
        self.sources
            .lock()
            .expect("snapshots lock")
            .insert(step.to_string());
    }

    /// Whether sink `step` reads a source that reads a whole table this run.
    pub fn feeds(&self, sink: &str) -> bool {
        let sources = self.sources.lock().expect("snapshots lock");
        self.upstream
            .get(sink)
            .is_some_and(|up| up.iter().any(|s| sources.contains(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_is_fed_a_snapshot_only_through_its_own_sources() {
        let snapshots = Snapshots::new(BTreeMap::from([
            ("merge".to_string(), vec!["items".to_string()]),
            ("other".to_string(), vec!["orders".to_string()]),
        ]));
        assert!(!snapshots.feeds("merge"));
        snapshots.mark("items");
        assert!(snapshots.feeds("merge"));
        assert!(!snapshots.feeds("other"));
        assert!(!snapshots.feeds("unknown"));
    }
}
