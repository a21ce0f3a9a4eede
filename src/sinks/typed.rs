//! A step's table as Databricks will read it: every scan converts its batches through the
//! output type policy ([`OutputSchema`]), in one stream (so a refused value's row number is its
//! position in the step's output). Sinks that hand DataFusion a plan (Delta) read through it;
//! sinks that write batches themselves (volume) call [`OutputSchema::convert`] directly.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::common::tree_node::TreeNodeRecursion;
use deltalake::datafusion::datasource::TableType;
use deltalake::datafusion::error::{DataFusionError, Result as DfResult};
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::logical_expr::Expr;
use deltalake::datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use deltalake::datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use deltalake::datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::StreamExt;

use crate::output_types::{OutputSchema, SubMicrosecond, Target, Truncations};

/// A table whose scans yield the policy's file types.
#[derive(Debug)]
pub struct TypedTable {
    inner: Arc<dyn TableProvider>,
    step: String,
    target: Target,
    sub_microsecond: SubMicrosecond,
    schema: SchemaRef,
    truncations: Arc<Truncations>,
}

impl TypedTable {
    /// Wraps `inner` (a sink's input); refuses at once a column Databricks could not read.
    pub fn new(
        inner: Arc<dyn TableProvider>,
        step: &str,
        target: Target,
        sub_microsecond: SubMicrosecond,
        truncations: Arc<Truncations>,
    ) -> crate::Result<Self> {
        let schema = OutputSchema::plan(step, &inner.schema(), target, sub_microsecond)?.schema();
        Ok(TypedTable {
            inner,
            step: step.to_string(),
            target,
            sub_microsecond,
            schema,
            truncations,
        })
    }
}

#[async_trait]
impl TableProvider for TypedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = self.inner.scan(state, projection, &[], limit).await?;
        let input: Arc<dyn ExecutionPlan> =
            if input.properties().output_partitioning().partition_count() > 1 {
                Arc::new(CoalescePartitionsExec::new(input))
            } else {
                input
            };
        let types = OutputSchema::plan(
            &self.step,
            &input.schema(),
            self.target,
            self.sub_microsecond,
        )
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(types.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(TypedExec {
            input,
            types,
            properties,
            step: self.step.clone(),
            truncations: Arc::clone(&self.truncations),
        }))
    }
}

/// Converts the batches of its (single-partition) input.
struct TypedExec {
    input: Arc<dyn ExecutionPlan>,
    /// The conversion; each execution starts its own counts from it.
    types: OutputSchema,
    properties: Arc<PlanProperties>,
    step: String,
    truncations: Arc<Truncations>,
}

impl fmt::Debug for TypedExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedExec")
            .field("step", &self.step)
            .finish()
    }
}

impl DisplayAs for TypedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TypedExec")
    }
}

impl ExecutionPlan for TypedExec {
    fn name(&self) -> &str {
        "TypedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let mut types = self.types.fresh();
        let schema = types.schema();
        let stream = self.input.execute(partition, context)?;
        let (step, truncations) = (self.step.clone(), Arc::clone(&self.truncations));
        let converted = stream.map(move |batch| {
            let out = types
                .convert(&batch?)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            truncations.set(&step, 0, types.truncated());
            Ok(out)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, converted)))
    }
}
