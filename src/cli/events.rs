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
        let all: Vec<String> = Vec::new();
        if let Some(upgrade) = bridge::sync::DatabricksEvents::upgrade_sql(&table, &all)
            .map_err(|e| Error::Invalid(format!("--table: {e}")))?
        {
            println!(
                "-- A table made by a bridge without RUN events lacks their columns; --apply adds them:\n-- {upgrade};"
            );
        }
        return Ok(Outcome::Success);
    }
    let client = cx.project.databricks_client().await?;
    let warehouse = client.warehouse_id().map(str::to_string).ok_or_else(|| {
        Error::Invalid(
            "--apply needs a SQL warehouse: set `databricks.warehouse_id` in config/defaults.yaml, the profile's `warehouse_id`, or DATABRICKS_WAREHOUSE_ID".into(),
        )
    })?;
    let run = |statement: String| {
        let (client, warehouse) = (&client, &warehouse);
        async move {
            client
                .execute_statement(
                    warehouse,
                    &statement,
                    &[],
                    bridge::databricks::Disposition::Inline,
                )
                .await
        }
    };
    for statement in statements {
        run(statement).await?;
    }
    // A table made by an older bridge gains the RUN columns in place; its rows keep theirs.
    let quoted = bridge::sql::quote_ident(&table, bridge::sql::Dialect::Databricks)
        .map_err(|e| Error::Invalid(format!("--table: {e}")))?;
    let existing: Vec<String> = run(format!("SELECT * FROM {quoted} LIMIT 0"))
        .await?
        .columns
        .into_iter()
        .map(|c| c.name)
        .collect();
    if let Some(upgrade) = bridge::sync::DatabricksEvents::upgrade_sql(&table, &existing)
        .map_err(|e| Error::Invalid(format!("--table: {e}")))?
    {
        run(upgrade).await?;
        println!("events table {table}: added the RUN columns (pipeline, country, params, job_id)");
    }
    // Clustered on status (a table made by an older bridge was not): polls and claims skip the
    // files of finished events. Setting it again is a no-op.
    run(format!("ALTER TABLE {quoted} CLUSTER BY (status)")).await?;
    println!("events table {table} is ready (warehouse {warehouse})");
    Ok(Outcome::Success)
}
