//! Checks of a merge's input as it streams: scalar functions that pass a column through and
//! fail the run at the first bad value, before anything is written.
//! - `_change_op` must be `insert`, `update` or `delete` (null is an upsert, like a row without
//!   the column), so a misspelt operation is never applied as an upsert;
//! - a key column must not be null: a merge matches rows by key, a null key matches nothing, so
//!   the row would be inserted again by every run.

use deltalake::arrow::array::AsArray;
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::error::{DataFusionError, Result as DfResult};
use deltalake::datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::changes::{DELETE, INSERT, OP_COLUMN, UPDATE};

/// `op`, failing on a value other than `insert`, `update`, `delete` or null.
pub fn change_op(op: Expr) -> Expr {
    checked(
        op,
        Check::ChangeOp,
        Signature::string(1, Volatility::Immutable),
    )
}

/// Key column `key` (the expression reading it), failing on a null.
pub fn key(expr: Expr, key: &str) -> Expr {
    checked(
        expr,
        Check::Key(key.to_string()),
        Signature::any(1, Volatility::Immutable),
    )
}

fn checked(expr: Expr, check: Check, signature: Signature) -> Expr {
    ScalarUDF::new_from_impl(Checked { check, signature }).call(vec![expr])
}

/// What a [`Checked`] column must hold.
#[derive(Debug, PartialEq, Eq, Hash)]
enum Check {
    /// One of the three operations, or null.
    ChangeOp,
    /// No null in this key column.
    Key(String),
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Checked {
    check: Check,
    signature: Signature,
}

impl Checked {
    /// Why `array` fails the check, if it does.
    fn problem(&self, array: &deltalake::arrow::array::ArrayRef) -> DfResult<Option<String>> {
        Ok(match &self.check {
            Check::ChangeOp => {
                let text = cast(array, &DataType::Utf8)?;
                text.as_string::<i32>()
                    .iter()
                    .flatten()
                    .find(|v| ![INSERT, UPDATE, DELETE].contains(v))
                    .map(|bad| {
                        format!(
                            "column `{OP_COLUMN}` has the value `{bad}`, but a change row's operation is \
                             `{INSERT}`, `{UPDATE}` or `{DELETE}` (nothing was written); map it to one of \
                             these in a transform"
                        )
                    })
            }
            Check::Key(key) => (array.null_count() > 0).then(|| {
                format!(
                    "key column `{key}` is null in a row: a merge matches rows by key, and a null \
                     key matches nothing, so the row would be inserted again on every run (nothing \
                     was written); filter such rows out or give them a key in a transform"
                )
            }),
        })
    }
}

impl ScalarUDFImpl for Checked {
    fn name(&self) -> &str {
        match self.check {
            Check::ChangeOp => "bridge_check_change_op",
            Check::Key(_) => "bridge_check_merge_key",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let value = args.args[0].clone();
        let array = value.to_array(args.number_rows)?;
        match self.problem(&array)? {
            Some(problem) => Err(DataFusionError::Execution(problem)),
            None => Ok(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{Field, Schema};
    use deltalake::datafusion::prelude::{SessionContext, col};
    use std::sync::Arc;

    /// Rows that pass `check` over a one-column batch named `name`.
    async fn run(name: &str, values: ArrayRef, check: fn(Expr) -> Expr) -> Result<usize, String> {
        let schema = Arc::new(Schema::new(vec![Field::new(
            name,
            values.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema, vec![values]).unwrap();
        let df = SessionContext::new().read_batch(batch).unwrap();
        let df = df.select(vec![check(col(name))]).unwrap();
        match df.collect().await {
            Ok(b) => Ok(b.iter().map(RecordBatch::num_rows).sum()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn ops(values: Vec<Option<&str>>) -> Result<usize, String> {
        run(OP_COLUMN, Arc::new(StringArray::from(values)), change_op).await
    }

    #[tokio::test]
    async fn only_the_three_operations_and_null_pass() {
        assert_eq!(
            ops(vec![Some("insert"), None, Some("update"), Some("delete")]).await,
            Ok(4)
        );
        let e = ops(vec![Some("insert"), Some("upsert")]).await.unwrap_err();
        assert!(
            e.contains("column `_change_op` has the value `upsert`"),
            "{e}"
        );
        let e = ops(vec![Some("DELETE")]).await.unwrap_err();
        assert!(e.contains("the value `DELETE`"), "{e}");
    }

    #[tokio::test]
    async fn a_null_key_fails_naming_the_column() {
        let ids = |values: Vec<Option<i64>>| Arc::new(Int64Array::from(values)) as ArrayRef;
        let check = |e: Expr| key(e, "id");
        assert_eq!(run("id", ids(vec![Some(1), Some(2)]), check).await, Ok(2));
        let e = run("id", ids(vec![Some(1), None]), check)
            .await
            .unwrap_err();
        assert!(e.contains("key column `id` is null"), "{e}");
    }
}
