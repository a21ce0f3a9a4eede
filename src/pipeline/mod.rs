//! Pipelines: the file format, parameters and rendering, planning into a DAG, and running it.
//! `spec` parses, `render` fills templates, `plan` orders steps, `run` executes them on DataFusion.

pub mod extract;
pub mod metrics;
pub mod plan;
pub mod project;
pub mod render;
pub mod resources;
pub mod run;
pub mod schedule;
pub mod spec;
pub mod state;
pub mod validate;

pub use plan::{Plan, PlanOptions};
pub use project::Project;
pub use run::{RunOptions, RunSummary, run};
