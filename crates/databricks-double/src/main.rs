//! `databricks-double` binary: runs the Databricks REST double in the foreground, for tests in
//! other languages (the Python operator's). Prints one line, `databricks-double listening on
//! <base url> token <token> warehouse <id>`, then serves until it is killed.

use databricks_double::{DatabricksDouble, DoubleConfig};

#[tokio::main]
async fn main() {
    if std::env::args().len() > 1 {
        eprintln!("usage: databricks-double (no arguments)");
        std::process::exit(2);
    }
    let config = DoubleConfig::default();
    let (token, warehouse) = (config.token.clone(), config.warehouse_id.clone());
    let double = match DatabricksDouble::start(config).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("databricks-double: cannot start: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "databricks-double listening on {} token {token} warehouse {warehouse}",
        double.base_url()
    );
    std::future::pending::<()>().await;
}
