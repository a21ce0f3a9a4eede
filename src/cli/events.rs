//! `bridge setup-events-table`: the DDL of the Databricks events table, printed or run on the
//! SQL warehouse.

use bridge::{Error, Result};

use super::{Context, Outcome};

#[derive(clap::Args)]
pub struct SetupEventsTableArgs {
    /// The table, `catalog.schema.table`.
    #[arg(long, default_value = bridge::sync::databricks::DEFAULT_EVENTS_TABLE)]
    table: String,
    /// Run the statements instead of printing them.
    #[arg(long)]
    apply: bool,
}

/// Prints the statements that create the events table or, with `--apply`, runs them.
pub async fn setup_events_table(cx: &Context, args: SetupEventsTableArgs) -> Result<Outcome> {
    let SetupEventsTableArgs { table, apply } = args;
    let statements = bridge::sync::DatabricksEvents::create_table_sql(&table)
        .map_err(|e| Error::Invalid(format!("--table: {e}")))?;
    if !apply {
        for statement in &statements {
            println!("{statement};\n");
        }
        return Ok(Outcome::Success);
    }
    let client = cx.project.databricks_client().await?;
    let warehouse = client.warehouse_id().map(str::to_string).ok_or_else(|| {
        Error::Invalid(
            "--apply needs a SQL warehouse: set `databricks.warehouse_id` in config/defaults.yaml, the profile's `warehouse_id`, or DATABRICKS_WAREHOUSE_ID".into(),
        )
    })?;
    for statement in &statements {
        client
            .execute_statement(
                &warehouse,
                statement,
                &[],
                bridge::databricks::Disposition::Inline,
            )
            .await?;
    }
    println!("events table {table} is ready (warehouse {warehouse})");
    Ok(Outcome::Success)
}
