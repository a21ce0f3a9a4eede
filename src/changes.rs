//! Change rows: what an incremental source that sees deletes (SQL Server Change Tracking) emits
//! and what the `delta` sink's `merge` and the `volume` sink's change sets carry. A change row is
//! the table's columns plus [`OP_COLUMN`] (`insert`, `update` or `delete`) and
//! [`VERSION_COLUMN`] (the source's change version, ordering changes of one key); a deleted
//! key's row carries its key columns, the other columns null.

use std::collections::BTreeMap;
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

/// The change sources of a run (change-tracking reads) and the sinks they feed: which read a
/// whole table (a snapshot: the first run, or a full refresh) and by which keys their rows are
/// unique. A merge fed by a snapshot also removes the target's keys the input lacks, so the
/// target equals the table even when deletes were missed (cleaned up before they were read); a
/// merge reading a change source directly by its keys skips resolving several changes of a key.
#[derive(Debug, Default)]
pub struct ChangeFeeds {
    sources: Mutex<BTreeMap<String, Feed>>,
    /// The sources each sink reads, through any transforms.
    upstream: BTreeMap<String, Vec<String>>,
}

/// What a change source reads this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// The columns each row's key is made of: one row per key.
    pub keys: Vec<String>,
    /// A whole table (else the changes since a version).
    pub snapshot: bool,
}

impl ChangeFeeds {
    /// A registry for a run whose sinks read these sources.
    pub fn new(upstream: BTreeMap<String, Vec<String>>) -> Self {
        ChangeFeeds {
            sources: Mutex::default(),
            upstream,
        }
    }

    /// Records what source `step` reads this run.
    pub fn record(&self, step: &str, feed: Feed) {
        self.sources
            .lock()
            .expect("feeds lock")
            .insert(step.to_string(), feed);
    }

    /// Whether sink `sink` reads a source that reads a whole table this run.
    pub fn snapshot_reaches(&self, sink: &str) -> bool {
        let sources = self.sources.lock().expect("feeds lock");
        self.upstream.get(sink).is_some_and(|up| {
            up.iter()
                .any(|s| sources.get(s).is_some_and(|feed| feed.snapshot))
        })
    }

    /// The feed of step `step` when it is a change source itself.
    pub fn of(&self, step: &str) -> Option<Feed> {
        self.sources.lock().expect("feeds lock").get(step).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_is_fed_a_snapshot_only_through_its_own_sources() {
        let feeds = ChangeFeeds::new(BTreeMap::from([
            ("merge".to_string(), vec!["items".to_string()]),
            ("other".to_string(), vec!["orders".to_string()]),
        ]));
        let feed = |snapshot| Feed {
            keys: vec!["id".into()],
            snapshot,
        };
        assert!(!feeds.snapshot_reaches("merge"));
        feeds.record("orders", feed(false));
        assert!(!feeds.snapshot_reaches("other"), "changes are no snapshot");
        feeds.record("items", feed(true));
        assert!(feeds.snapshot_reaches("merge"));
        assert!(!feeds.snapshot_reaches("other"));
        assert!(!feeds.snapshot_reaches("unknown"));
        assert_eq!(feeds.of("items"), Some(feed(true)));
        assert_eq!(feeds.of("merge"), None);
    }
}
