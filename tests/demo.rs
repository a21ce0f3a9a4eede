//! The demo pipeline end to end through the real binary: exact Parquet and Delta contents, checked
//! against the SQLite database itself, and the same output when run twice.

mod common;

use common::*;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::prelude::{ParquetReadOptions, SessionContext};

const RUN_DATE: &str = "2024-12-31";

fn run_demo(s: &Scratch, country: &str) -> String {
    ok(s.bridge(&[
        "run",
        "pipelines/demo.yaml",
        "--country",
        country,
        "--param",
        &format!("run_date={RUN_DATE}"),
    ]))
}

fn expected_sales(s: &Scratch, country: &str, since: &str) -> Vec<String> {
    sqlite_lines(
        &s.path("output/demo/sales.db"),
        &format!(
            "SELECT s.sale_id, s.sale_date, r.name, s.product_id, s.quantity, printf('%.2f', s.amount),
                    replace(s.created_at, ' ', 'T')
             FROM sales s JOIN regions r USING (region_id)
             WHERE r.country = '{country}' AND s.sale_date >= '{since}'
             ORDER BY s.sale_id"
        ),
    )
}

fn expected_summary(s: &Scratch, country: &str, since: &str) -> Vec<String> {
    sqlite_lines(
        &s.path("output/demo/sales.db"),
        &format!(
            "SELECT r.name, p.category, substr(s.sale_date, 1, 7) AS month, COUNT(*), SUM(s.quantity),
                    printf('%.2f', SUM(CAST(s.amount AS REAL)))
             FROM sales s JOIN regions r USING (region_id) JOIN products p USING (product_id)
             WHERE r.country = '{country}' AND s.sale_date >= '{since}'
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ),
    )
}

#[tokio::test]
async fn demo_writes_exact_parquet_and_delta_and_is_idempotent() {
    let s = Scratch::new();
    let out = run_demo(&s, "colombia");
    assert!(out.contains("sales_to_volume"), "{out}");

    // Colombia's config sets start_date 2024-03-01, overriding the pipeline's default.
    let sales_dir = s.path(&format!("output/volume/colombia/sales/{RUN_DATE}"));
    assert_eq!(
        list_untagged(&sales_dir),
        ["_SUCCESS", "sales_colombia-00000.parquet"]
    );
    let sales_file = part(&sales_dir, "sales_colombia-00000.parquet");
    let batches = read_parquet(&sales_file);
    let schema = batches[0].schema();
    assert_eq!(
        schema.field_with_name("amount").unwrap().data_type(),
        &DataType::Decimal128(14, 2)
    );
    assert_eq!(
        schema.field_with_name("sale_date").unwrap().data_type(),
        &DataType::Date32
    );
    let expected = expected_sales(&s, "colombia", "2024-03-01");
    assert!(
        expected.len() > 1000,
        "the sample has enough rows: {}",
        expected.len()
    );
    assert_eq!(batch_lines(&batches), expected);

    // The manifest lists the file and its rows.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sales_dir.join("_SUCCESS")).unwrap()).unwrap();
    assert_eq!(manifest["rows"], expected.len() as u64);
    assert_eq!(
        manifest["files"][0]["path"],
        sales_file.file_name().unwrap().to_str().unwrap()
    );
    assert_eq!(manifest["pipeline"], "demo");

    // The partitioned summary and the Delta table hold the same aggregate as SQLite computes.
    let summary = expected_summary(&s, "colombia", "2024-03-01");
    let ctx = SessionContext::new();
    let summary_dir = s.path("output/volume/colombia/sales_by_region");
    let categories: Vec<String> = list_untagged(&summary_dir)
        .into_iter()
        .filter(|f| f.ends_with(".parquet"))
        .collect();
    assert_eq!(
        categories,
        [
            "category=Bebidas/summary_to_volume-00000.parquet",
            "category=Despensa/summary_to_volume-00000.parquet",
            "category=Limpieza/summary_to_volume-00000.parquet",
            "category=Snacks/summary_to_volume-00000.parquet"
        ]
    );
    ctx.register_parquet(
        "summary",
        summary_dir.to_str().unwrap(),
        ParquetReadOptions::default()
            .table_partition_cols(vec![("category".to_string(), DataType::Utf8)]),
    )
    .await
    .unwrap();
    let got = query_lines(
        &ctx,
        "SELECT region, category, month, orders, units, revenue FROM summary ORDER BY 1, 2, 3",
    )
    .await;
    assert_eq!(got, summary);

    let delta_path = s.path("output/delta/colombia/sales_by_region");
    let delta_lines = read_delta(&delta_path).await;
    assert_eq!(delta_lines, summary);

    // A second run leaves exactly the same data: the same files under its own run's names (the
    // first run's are gone), no duplicated rows in Delta.
    let before = list_files(&s.path("output/volume"));
    run_demo(&s, "colombia");
    let after = list_files(&s.path("output/volume"));
    assert_eq!(
        after.iter().map(|f| untagged(f)).collect::<Vec<_>>(),
        before.iter().map(|f| untagged(f)).collect::<Vec<_>>()
    );
    assert!(
        before
            .iter()
            .filter(|f| f.ends_with(".parquet"))
            .all(|f| !after.contains(f)),
        "{before:?} {after:?}"
    );
    assert_eq!(
        batch_lines(&read_parquet(&part(
            &sales_dir,
            "sales_colombia-00000.parquet"
        ))),
        expected
    );
    assert_eq!(read_delta(&delta_path).await, summary);
    assert!(
        !s.path("output/volume/.bridge-staging").exists()
            || list_files(&s.path("output/volume/.bridge-staging")).is_empty()
    );
}

#[tokio::test]
async fn second_country_uses_its_own_queries_and_params() {
    let s = Scratch::new();
    run_demo(&s, "mexico");
    // Mexico keeps the pipeline's default start_date (2024-01-01).
    let dir = s.path(&format!("output/volume/mexico/sales/{RUN_DATE}"));
    let got = batch_lines(&read_parquet(&part(&dir, "sales_mexico-00000.parquet")));
    assert_eq!(got, expected_sales(&s, "mexico", "2024-01-01"));
    assert!(!s.path("output/volume/colombia").exists());
}

#[test]
fn json_summary_reports_rows_per_step() {
    let s = Scratch::new();
    let out = ok(s.bridge(&[
        "--output",
        "json",
        "run",
        "pipelines/demo.yaml",
        "--country",
        "colombia",
        "--param",
        "run_date=2024-12-31",
    ]));
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    let steps = summary["steps"].as_array().unwrap();
    let step = |id: &str| steps.iter().find(|s| s["id"] == id).unwrap().clone();
    let expected = expected_sales(&s, "colombia", "2024-03-01").len() as u64;
    assert_eq!(step("sales_to_volume")["rows"], expected);
    assert_eq!(step("sales_to_volume")["kind"], "sink");
    assert!(step("sales_to_volume")["bytes"].as_u64().unwrap() > 0);
    assert_eq!(
        step("summary_to_delta")["rows"],
        expected_summary(&s, "colombia", "2024-03-01").len() as u64
    );
    assert!(
        untagged(step("sales_to_volume")["outputs"][0].as_str().unwrap())
            .ends_with("colombia/sales/2024-12-31/sales_colombia-00000.parquet")
    );
}

#[test]
fn dry_run_and_plan_write_nothing() {
    let s = Scratch::new();
    let out = ok(s.bridge(&["plan", "pipelines/demo.yaml", "--country", "colombia"]));
    assert!(
        out.contains("[transform] sales_by_region <- products, sales"),
        "{out}"
    );
    assert!(out.contains("WHERE r.country = ?1"), "{out}");
    assert!(out.contains("param 1: 'colombia'"), "{out}");
    assert!(out.contains("param 2: '2024-03-01'"), "{out}");
    assert!(
        out.contains("writes: output/volume/colombia/sales_by_region (volume)"),
        "{out}"
    );
    assert!(!s.path("output").exists());

    let out = ok(s.bridge(&[
        "run",
        "pipelines/demo.yaml",
        "--country",
        "colombia",
        "--dry-run",
    ]));
    assert!(out.contains("dry run: nothing written"), "{out}");
    assert!(!s.path("output/volume").exists());
    assert!(!s.path("output/delta").exists());
}

async fn read_delta(path: &std::path::Path) -> Vec<String> {
    let url = deltalake::ensure_table_uri(path.to_str().unwrap()).unwrap();
    let table = deltalake::open_table(url).await.unwrap();
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("t", table.table_provider().await.unwrap())
        .unwrap();
    query_lines(
        &ctx,
        "SELECT region, category, month, orders, units, revenue FROM t ORDER BY 1, 2, 3",
    )
    .await
}
