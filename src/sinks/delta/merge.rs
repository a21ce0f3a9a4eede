//! `mode: merge`: the input's rows applied to a Delta table by key in one delta-rs merge.
//!
//! Several rows of one key resolve to the last one first ([`last_changes`]): the highest
//! `_change_version` when the input has it, else (and between equal versions) the last in input
//! order, numbered while the input streams (`ROW_NUMBER() OVER ()` over the typed input, which is
//! one stream), then one `ROW_NUMBER` per key, which DataFusion sorts with spilling. The last
//! change of a key is then applied ([`merge`]): a `delete` (`_change_op`) deletes the row (hard)
//! or sets its `_deleted_at` (soft, once: a row deleted before keeps its time); anything else
//! updates the row or inserts it, clearing `_deleted_at`. The change columns are not written.
//! A source that read a whole table this run ([`crate::changes::ChangeFeeds`]: a change-tracking
//! snapshot) also deletes (or soft-deletes) the table's keys it lacks, so a full refresh after
//! lost deletes leaves the table equal to the source.

use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::datatypes::DataType as ArrowType;
use deltalake::datafusion::common::{Column, ScalarValue};
use deltalake::datafusion::error::Result as DfResult;
use deltalake::datafusion::functions_window::expr_fn::row_number;
use deltalake::datafusion::logical_expr::{
    Expr, ExprFunctionExt, Operator, binary_expr, cast, col, ident, lit, when,
};
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use deltalake::errors::DeltaResult;
use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
use deltalake::operations::merge::MergeMetrics;

use super::config::DeltaDeletes;
use super::drift::DriftColumn;
use crate::changes::{DELETE, DELETED_AT_COLUMN, OP_COLUMN, VERSION_COLUMN};

/// The input's position, numbered as it streams (dropped before writing).
const ORDINAL: &str = "__bridge_ordinal";
/// 1 on the last change of each key (dropped before writing).
const LAST: &str = "__bridge_last";
/// The merge's alias of the input.
const SOURCE: &str = "source";
/// The merge's alias of the table.
const TARGET: &str = "target";

/// The last row of each key of `input`: by `_change_version` (highest) when the input has it,
/// then by input order. Keeps `_change_op` (the merge reads it), drops `_change_version`.
/// `unique`: the input has one row per key already (a change source read directly by its
/// keys), so only the checks apply.
pub fn last_changes(input: DataFrame, keys: &[String], unique: bool) -> DfResult<DataFrame> {
    let columns: Vec<String> = input
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let has_version = columns.iter().any(|c| c == VERSION_COLUMN);
    // Every operation is checked as the input streams, before last-wins keeps some of them.
    let input = input.select(
        columns
            .iter()
            .map(|c| match c.as_str() {
                OP_COLUMN => super::checks::change_op(ident(c)).alias(c),
                _ if keys.contains(c) => super::checks::key(ident(c), c).alias(c),
                _ => ident(c),
            })
            .collect::<Vec<_>>(),
    )?;
    let written: Vec<Expr> = columns
        .iter()
        .filter(|c| *c != VERSION_COLUMN)
        .map(ident)
        .collect();
    if unique {
        return input.select(written);
    }
    let numbered = input.window(vec![row_number().alias(ORDINAL)])?;
    let mut order = Vec::new();
    if has_version {
        order.push(ident(VERSION_COLUMN).sort(false, false));
    }
    order.push(ident(ORDINAL).sort(false, false));
    let last = row_number()
        .partition_by(keys.iter().map(ident).collect())
        .order_by(order)
        .build()?
        .alias(LAST);
    numbered
        .window(vec![last])?
        .filter(ident(LAST).eq(lit(1u64)))?
        .select(written)
}

/// Drops the rows whose last change is a delete (a new table has nothing to delete).
pub fn without_deletes(input: DataFrame) -> DfResult<DataFrame> {
    if input.schema().has_column_with_unqualified_name(OP_COLUMN) {
        input.filter(not_delete(ident(OP_COLUMN)))
    } else {
        Ok(input)
    }
}

/// The rows as the table takes them: `_change_op` kept only when `keep_op` (the merge reads it),
/// for soft deletes `_deleted_at` (`now` on delete rows, else null), and a null of the table's type for each column the table
/// has and the input lacks (`missing`).
pub fn table_rows(
    input: DataFrame,
    deletes: DeltaDeletes,
    missing: &[DriftColumn],
    keep_op: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> DeltaResult<DataFrame> {
    let mut columns: Vec<Expr> = input
        .schema()
        .fields()
        .iter()
        .filter(|f| keep_op || f.name() != OP_COLUMN)
        .map(|f| ident(f.name()))
        .collect();
    if deletes == DeltaDeletes::Soft && !missing.iter().any(|c| c.name == DELETED_AT_COLUMN) {
        // The merge copies it: delta-rs fills a column the merge adds from the source's column
        // of that name whatever the clause sets, so the value is decided here.
        let deleted_at = if input.schema().has_column_with_unqualified_name(OP_COLUMN) {
            when(ident(OP_COLUMN).eq(lit(DELETE)), timestamp(now))
                .otherwise(typed_null(deleted_at_type()))?
        } else {
            typed_null(deleted_at_type())
        };
        columns.push(deleted_at.alias(DELETED_AT_COLUMN));
    }
    for column in missing {
        let arrow: ArrowType = (&column.data_type).try_into_arrow()?;
        columns.push(typed_null(arrow).alias(&column.name));
    }
    Ok(input.select(columns)?)
}

/// `_deleted_at`'s type: an instant in microseconds (Delta `timestamp`).
pub fn deleted_at_type() -> ArrowType {
    ArrowType::Timestamp(
        deltalake::arrow::datatypes::TimeUnit::Microsecond,
        Some(crate::output_types::UTC.into()),
    )
}

/// An instant (`_deleted_at`'s type) as a literal.
fn timestamp(at: chrono::DateTime<chrono::Utc>) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(at.timestamp_micros()),
        Some(crate::output_types::UTC.into()),
    ))
}

fn typed_null(data_type: ArrowType) -> Expr {
    cast(lit(ScalarValue::Null), data_type)
}

/// `op IS DISTINCT FROM 'delete'`: an upsert (a null operation too).
fn not_delete(op: Expr) -> Expr {
    binary_expr(op, Operator::IsDistinctFrom, lit(DELETE))
}

/// How a merge applies the last changes.
pub struct MergePlan<'a> {
    /// The columns that identify a row.
    pub keys: &'a [String],
    /// Hard or soft deletes.
    pub deletes: DeltaDeletes,
    /// Whether the table gets new columns (delta-rs schema evolution).
    pub add_columns: bool,
    /// Whether the table has `_deleted_at` already (a soft delete of a row deleted before keeps
    /// its time); false when this merge adds it.
    pub has_deleted_at: bool,
    /// The source is a whole table's snapshot (read at this time): keys of the table it lacks
    /// were deleted (the deletes themselves may be lost, cleaned up before they were read), so
    /// they are deleted too, or soft-deleted.
    pub snapshot: Option<chrono::DateTime<chrono::Utc>>,
}

/// Applies `source` (from [`table_rows`], with `_change_op` when the input has it) to `table` in
/// one commit, streaming the source.
pub async fn merge(
    table: DeltaTable,
    ctx: &SessionContext,
    source: DataFrame,
    plan: &MergePlan<'_>,
) -> DeltaResult<(DeltaTable, MergeMetrics)> {
    let s = |c: &str| col(Column::new(Some(SOURCE), c));
    let t = |c: &str| col(Column::new(Some(TARGET), c));
    let names: Vec<String> = source
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let has_op = names.iter().any(|c| c == OP_COLUMN);
    let written: Vec<&String> = names.iter().filter(|c| *c != OP_COLUMN).collect();
    let on = plan
        .keys
        .iter()
        .map(|k| t(k).eq(s(k)))
        .reduce(Expr::and)
        .expect("a merge has keys");
    let mut builder = table
        .merge(source, on)
        .with_source_alias(SOURCE)
        .with_target_alias(TARGET)
        .with_merge_schema(plan.add_columns)
        .with_streaming(true)
        .with_session_state(Arc::new(ctx.state()));
    if has_op {
        let is_delete = s(OP_COLUMN).eq(lit(DELETE));
        builder = match plan.deletes {
            DeltaDeletes::Hard => builder.when_matched_delete(|d| d.predicate(is_delete))?,
            DeltaDeletes::Soft => {
                let first = if plan.has_deleted_at {
                    is_delete.and(t(DELETED_AT_COLUMN).is_null())
                } else {
                    is_delete
                };
                builder.when_matched_update(|u| {
                    u.predicate(first)
                        .update(Column::from_name(DELETED_AT_COLUMN), s(DELETED_AT_COLUMN))
                })?
            }
        };
    }
    let upsert = has_op.then(|| not_delete(s(OP_COLUMN)));
    builder = builder.when_matched_update(|mut u| {
        if let Some(p) = &upsert {
            u = u.predicate(p.clone());
        }
        for c in written.iter().filter(|c| !plan.keys.contains(c)) {
            u = u.update(Column::from_name(c.as_str()), s(c));
        }
        u
    })?;
    builder = builder.when_not_matched_insert(|mut i| {
        if let Some(p) = &upsert {
            i = i.predicate(p.clone());
        }
        for c in &written {
            i = i.set(Column::from_name(c.as_str()), s(c));
        }
        i
    })?;
    if let Some(now) = plan.snapshot {
        builder = match plan.deletes {
            DeltaDeletes::Hard => builder.when_not_matched_by_source_delete(|d| d)?,
            // (A column this merge adds is null on rows the source lacks.)
            DeltaDeletes::Soft if plan.has_deleted_at => builder
                .when_not_matched_by_source_update(|u| {
                    u.predicate(t(DELETED_AT_COLUMN).is_null())
                        .update(Column::from_name(DELETED_AT_COLUMN), timestamp(now))
                })?,
            DeltaDeletes::Soft => builder,
        };
    }
    builder.await
}
