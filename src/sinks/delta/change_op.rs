//! A merge's check of `_change_op`: every change row's operation must be `insert`, `update` or
//! `delete` (null is an upsert, like a row without the column). The check is a scalar function
//! over the streaming input that passes the column through and fails the run at the first other
//! value, so a misspelt operation is never applied as an upsert.

use deltalake::arrow::array::AsArray;
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::error::{DataFusionError, Result as DfResult};
use deltalake::datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::changes::{DELETE, INSERT, OP_COLUMN, UPDATE};

/// `op`, failing on a value other than `insert`, `update`, `delete` or null.
pub fn checked(op: Expr) -> Expr {
    ScalarUDF::new_from_impl(CheckChangeOp {
        signature: Signature::string(1, Volatility::Immutable),
    })
    .call(vec![op])
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CheckChangeOp {
    signature: Signature,
}

impl ScalarUDFImpl for CheckChangeOp {
    fn name(&self) -> &str {
        "bridge_check_change_op"
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
        let text = cast(&array, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        if let Some(bad) = text
            .iter()
            .flatten()
            .find(|v| ![INSERT, UPDATE, DELETE].contains(v))
        {
            return Err(DataFusionError::Execution(format!(
                "column `{OP_COLUMN}` has the value `{bad}`, but a change row's operation is \
                 `{INSERT}`, `{UPDATE}` or `{DELETE}` (nothing was written); map it to one of \
                 these in a transform"
            )));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{Field, Schema};
    use deltalake::datafusion::prelude::{SessionContext, col};
    use std::sync::Arc;

    async fn run(values: Vec<Option<&str>>) -> Result<usize, String> {
        let schema = Arc::new(Schema::new(vec![Field::new(
            OP_COLUMN,
            DataType::Utf8,
            true,
        )]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(values))]).unwrap();
        let ctx = SessionContext::new();
        let df = ctx.read_batch(batch).unwrap();
        let df = df.select(vec![checked(col(OP_COLUMN))]).unwrap();
        match df.collect().await {
            Ok(b) => Ok(b.iter().map(RecordBatch::num_rows).sum()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[tokio::test]
    async fn only_the_three_operations_and_null_pass() {
        assert_eq!(
            run(vec![Some("insert"), None, Some("update"), Some("delete")]).await,
            Ok(4)
        );
        let e = run(vec![Some("insert"), Some("upsert")]).await.unwrap_err();
        assert!(
            e.contains("column `_change_op` has the value `upsert`"),
            "{e}"
        );
        let e = run(vec![Some("DELETE")]).await.unwrap_err();
        assert!(e.contains("the value `DELETE`"), "{e}");
    }
}
