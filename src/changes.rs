//! Change rows: what an incremental source that sees deletes (SQL Server Change Tracking) emits
//! and what the `delta` sink's `merge` and the `volume` sink's change sets carry. A change row is
//! the table's columns plus [`OP_COLUMN`] (`insert`, `update` or `delete`) and
//! [`VERSION_COLUMN`] (the source's change version, ordering changes of one key); a deleted
//! key's row carries its key columns, the other columns null.

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
