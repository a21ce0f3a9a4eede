//! A merge's check of its keys: a row whose key column is null matches no table row (`=` is
//! never true for null), so it would be inserted again by every run. The check is a scalar
//! function over the streaming input that passes the column through and fails the run at the
//! first null, naming the column.

use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::error::{DataFusionError, Result as DfResult};
use deltalake::datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Key column `key` (the expression reading it), failing on a null.
pub fn checked(expr: Expr, key: &str) -> Expr {
    ScalarUDF::new_from_impl(CheckKey {
        key: key.to_string(),
        signature: Signature::any(1, Volatility::Immutable),
    })
    .call(vec![expr])
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CheckKey {
    key: String,
    signature: Signature,
}

impl ScalarUDFImpl for CheckKey {
    fn name(&self) -> &str {
        "bridge_check_merge_key"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let value = args.args[0].clone();
        let nulls = match &value {
            ColumnarValue::Array(array) => array.null_count(),
            ColumnarValue::Scalar(scalar) => usize::from(scalar.is_null()),
        };
        if nulls > 0 {
            return Err(DataFusionError::Execution(format!(
                "key column `{}` is null in a row: a merge matches rows by key, and a null key \
                 matches nothing, so the row would be inserted again on every run (nothing was \
                 written); filter such rows out or give them a key in a transform",
                self.key
            )));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{Field, Schema};
    use deltalake::datafusion::prelude::{SessionContext, col};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_null_key_fails_naming_the_column() {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let batch = |values: Vec<Option<i64>>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap()
        };
        let run = |values| {
            let df = ctx
                .read_batch(batch(values))
                .unwrap()
                .select(vec![checked(col("id"), "id")])
                .unwrap();
            async move {
                df.collect()
                    .await
                    .map(|b| b.iter().map(RecordBatch::num_rows).sum::<usize>())
            }
        };
        assert_eq!(run(vec![Some(1), Some(2)]).await.unwrap(), 2);
        let e = run(vec![Some(1), None]).await.unwrap_err().to_string();
        assert!(e.contains("key column `id` is null"), "{e}");
    }
}
