//! `bridge_operator._native`: the bridge's engine as a Python extension module (PyO3, abi3).
//! The Python package `bridge_operator` wraps it in `BridgeOperator`; this module holds what
//! runs in Rust: a SQL Server [`connection::Connection`] with its extraction (an Arrow C stream
//! out), its write-back (an Arrow C stream in), [`pipeline::run_pipeline`], and the exception
//! classes of [`errors`]. Every blocking call releases the GIL.

mod connection;
mod errors;
mod extract;
mod pipeline;
mod runtime;
mod sync;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<connection::Connection>()?;
    m.add_function(wrap_pyfunction!(pipeline::run_pipeline, m)?)?;
    errors::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
