//! Databricks -> SQL Server syncs requested as rows of the `bridge_events` table.
//! A store holds the events; the poller claims each one once and applies it to SQL Server.
