//! API tokens and per-table permissions from `config/permissions.yaml`.
//! Tokens are matched in constant time; a file may hold SHA-256 hashes instead of plain tokens.
//!
//! The file format:
//!
//! ```yaml
//! users:
//!   - name: "calibration-team"
//!     token: "plain-token"            # either the token ...
//!     # token_sha256: "<64 hex>"      # ... or its SHA-256 (`bridge` hashes with [`hash_token`])
//!     permissions:
//!       - table: "dbo.CalibrationResults"
//!         access: read_write          # read | write | read_write
//!         max_delete_rows: 10000      # optional; absent = no limit, 0 = no deletes
//!       - table: "staging.*"          # every table of the schema `staging`
//!         access: read
//!       - table: "*"                  # every SQL Server table
//!         access: read
//!       - lakehouse_table: "main.sales.*"   # lakehouse (Unity Catalog) tables a sync or a
//!         access: read                      # pipeline reads or writes
//! ```
//!
//! Table names are canonicalised by [`names`] (brackets and quotes removed, case folded, a
//! three-part name only in the configured database, edge spaces and look-alikes refused), so
//! `Sales`, `dbo.Sales` and `[dbo].[Sales]` are the same table. When several grants of a user
//! match a table, the most specific one alone decides (exact table over a prefix over `*`), both
//! for the access and for `max_delete_rows`: `*: read_write` with `dbo.Audit: read` leaves
//! `dbo.Audit` read-only. SQL Server grants never cover lakehouse tables, nor the reverse.
//!
//! [`Permissions`] is one loaded file; [`PermissionsStore`] holds the current one and reloads it,
//! keeping the last good set when the file becomes invalid.

mod grants;
pub mod names;
mod outline;
mod permissions;
pub mod policy;
mod store;

pub use grants::{Access, Caller, Denied, Grant, Scope, TableRef};
pub use names::{LakehouseTable, NameError, SqlTable};
pub use permissions::{Permissions, hash_token};
pub use policy::{AccessPolicy, Authorized, Refusal, authorize};
pub use store::PermissionsStore;
