//! End-to-end tests of the Databricks double with a real HTTP client (reqwest).
//! Each test starts its own double; together they run in a few seconds.

use std::io::Cursor;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Decimal128Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use arrow::ipc::reader::StreamReader;
use databricks_double::{DatabricksDouble, DoubleConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOKEN: &str = "dapi-test-token";

struct T {
    dbx: DatabricksDouble,
    http: reqwest::Client,
}

impl T {
    async fn start(config: DoubleConfig) -> T {
        let dbx = DatabricksDouble::start(config).await.unwrap();
        T {
            dbx,
            http: reqwest::Client::new(),
        }
    }
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.dbx.base_url(), path)
    }
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(TOKEN)
    }
    async fn sql(&self, body: Value) -> Value {
        let r = self
            .http
            .post(self.url("/api/2.0/sql/statements"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }
    async fn run(&self, statement: &str) -> Value {
        let v = self
            .sql(json!({"statement": statement, "warehouse_id": "wh-test"}))
            .await;
        assert_eq!(v["status"]["state"], "SUCCEEDED", "{statement}: {v}");
        v
    }
}

fn s(v: &str) -> Value {
    json!(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_pat_and_oauth_m2m() {
    let t = T::start(DoubleConfig {
        oauth_client: Some(("client-1".into(), "secret-1".into())),
        ..DoubleConfig::default()
    })
    .await;
    let me = "/api/2.0/preview/scim/v2/Me";
    let r = t.http.get(t.url(me)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error_code"],
        "UNAUTHENTICATED"
    );
    let r = t
        .http
        .get(t.url(me))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r: Value = t.get(me).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["userName"], "bridge@example.com");

    // OAuth: wrong secret, wrong grant, then a token that is accepted as bearer.
    let token_url = t.url("/oidc/v1/token");
    let form = [("grant_type", "client_credentials"), ("scope", "all-apis")];
    let r = t
        .http
        .post(&token_url)
        .basic_auth("client-1", Some("nope"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let r = t
        .http
        .post(&token_url)
        .basic_auth("client-1", Some("secret-1"))
        .form(&[("scope", "all-apis")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = t
        .http
        .post(&token_url)
        .basic_auth("client-1", Some("secret-1"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let tok: Value = r.json().await.unwrap();
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["expires_in"], 3600);
    let access = tok["access_token"].as_str().unwrap().to_string();
    let r = t
        .http
        .get(t.url("/api/2.0/sql/warehouses/wh-test"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "RUNNING");
    let r = t.get("/api/2.0/sql/warehouses/nope").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error_code"],
        "RESOURCE_DOES_NOT_EXIST"
    );

    // Routing errors.
    let r = t.get("/api/2.0/clusters/list").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error_code"],
        "ENDPOINT_NOT_FOUND"
    );
    let r = t
        .http
        .delete(t.url(me))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);

    let reqs = t.dbx.requests();
    assert_eq!(reqs[0].authorization, None);
    assert_eq!(reqs[0].status, 401);
    assert_eq!(reqs[1].authorization.as_deref(), Some("Bearer wrong"));
    assert_eq!(
        reqs[2].authorization.as_deref(),
        Some("Bearer dapi-test-token")
    );
    let w = reqs
        .iter()
        .find(|r| r.path == "/api/2.0/sql/warehouses/wh-test")
        .unwrap();
    assert_eq!(w.authorization, Some(format!("Bearer {access}")));
    t.dbx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_round_trip_conflict_range_delete() {
    let t = T::start(DoubleConfig::default()).await;
    t.dbx.add_volume("main", "raw", "landing");
    let path = "/Volumes/main/raw/landing/in/2024 01/a.parquet";
    let url = t.url(&format!("/api/2.0/fs/files{}", path.replace(' ', "%20")));

    // 20 MB streamed upload, byte-identical download.
    let data: Vec<u8> = (0..20 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(1 << 20).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let r = t
        .http
        .put(format!("{url}?overwrite=false"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(t.dbx.requests().last().unwrap().body_len, data.len());
    let got = t.http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(
        got.headers()["content-length"],
        data.len().to_string().as_str()
    );
    assert!(got.headers().contains_key("last-modified"));
    assert!(got.bytes().await.unwrap() == data);
    assert!(t.dbx.file(path).unwrap() == data);
    assert_eq!(
        t.dbx.list_files("/Volumes/main/raw"),
        vec![path.to_string()]
    );

    // overwrite=false on an existing file conflicts; overwrite=true replaces.
    let put = |q: &'static str, bytes: &'static [u8]| {
        t.http
            .put(format!("{url}{q}"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
    };
    let r = put("?overwrite=false", b"x").await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error_code"],
        "ALREADY_EXISTS"
    );
    assert_eq!(
        put("?overwrite=true", b"0123456789")
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );

    // Range and HEAD.
    let r = t
        .http
        .get(&url)
        .bearer_auth(TOKEN)
        .header("range", "bytes=2-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 2-5/10");
    assert_eq!(&r.bytes().await.unwrap()[..], b"2345");
    let r = t
        .http
        .get(&url)
        .bearer_auth(TOKEN)
        .header("range", "bytes=-3")
        .send()
        .await
        .unwrap();
    assert_eq!(&r.bytes().await.unwrap()[..], b"789");
    let r = t.http.head(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "10");

    // Validation: content type, bad paths, missing volume.
    let r = t
        .http
        .put(&url)
        .bearer_auth(TOKEN)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    for bad in [
        "/Volumes/main/raw/landing/../x",
        "/Volumes/main/raw//landing/x",
        "/tmp/x",
    ] {
        let r = t
            .get(&format!("/api/2.0/fs/files{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error_code"],
            "INVALID_PARAMETER_VALUE"
        );
    }
    let r = t
        .get("/api/2.0/fs/files/Volumes/main/raw/other/x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Delete, then 404 everywhere.
    let r = t.http.delete(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = t.http.delete(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["error_code"], "NOT_FOUND");
    let r = t.http.head(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    t.dbx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_create_list_paginate_delete() {
    let t = T::start(DoubleConfig::default()).await;
    t.dbx.add_volume("main", "raw", "landing");
    let dir = "/api/2.0/fs/directories/Volumes/main/raw/landing/batch";
    let r = t
        .http
        .put(t.url(&format!("{dir}/sub/deeper")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        t.http
            .head(t.url(&format!("{dir}/sub")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        t.http
            .head(t.url(&format!("{dir}/nope")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    for name in ["e.csv", "a.csv", "c.csv", "b.csv"] {
        t.dbx.put_file(
            &format!("/Volumes/main/raw/landing/batch/{name}"),
            name.as_bytes(),
        );
    }
    // 5 entries (4 files + sub/), pages of 2.
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut req = t.get(dir).query(&[("page_size", "2")]);
        if let Some(tok) = &token {
            req = req.query(&[("page_token", tok)]);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        pages += 1;
        for e in v["contents"].as_array().unwrap() {
            names.push(e["name"].as_str().unwrap().to_string());
            if e["is_directory"] == true {
                assert!(e.get("file_size").is_none());
            } else {
                assert_eq!(e["file_size"], 5);
                assert!(e["last_modified"].as_i64().unwrap() > 1_600_000_000_000);
                assert_eq!(
                    e["path"],
                    format!(
                        "/Volumes/main/raw/landing/batch/{}",
                        e["name"].as_str().unwrap()
                    )
                );
            }
        }
        match v.get("next_page_token") {
            Some(Value::String(tk)) => token = Some(tk.clone()),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["a.csv", "b.csv", "c.csv", "e.csv", "sub"]);
    let r = t.get(&format!("{dir}?pageSize=2")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = t
        .get("/api/2.0/fs/directories/Volumes/main/raw/landing/missing")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Non-empty delete refused; empty delete works.
    let r = t
        .http
        .delete(t.url(&format!("{dir}/sub")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error_code"],
        "DIRECTORY_NOT_EMPTY"
    );
    let r = t
        .http
        .delete(t.url(&format!("{dir}/sub/deeper")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = t
        .http
        .delete(t.url(&format!("{dir}/sub")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    t.dbx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_json_array_over_several_chunks() {
    let t = T::start(DoubleConfig {
        chunk_rows: 3,
        ..DoubleConfig::default()
    })
    .await;
    t.dbx
        .execute_sql("CREATE TABLE main.sales.orders (id BIGINT, name STRING, amount DECIMAL(18,4), ts TIMESTAMP) USING DELTA")
        .unwrap();
    for i in 1..=10 {
        t.dbx
            .execute_sql(&format!("INSERT INTO main.sales.orders VALUES ({i}, 'n{i}', '{i}.5', '2024-01-02T03:04:05.123Z')"))
            .unwrap();
    }
    t.dbx
        .execute_sql("INSERT INTO main.sales.orders VALUES (11, NULL, NULL, NULL)")
        .unwrap();
    let v = t
        .run("SELECT id, name, amount, ts FROM `main`.`sales`.`orders` ORDER BY id")
        .await;
    let m = &v["manifest"];
    assert_eq!(m["format"], "JSON_ARRAY");
    assert_eq!(m["total_chunk_count"], 4);
    assert_eq!(m["total_row_count"], 11);
    let cols = m["schema"]["columns"].as_array().unwrap();
    assert_eq!(cols[0]["type_name"], "LONG");
    assert_eq!(cols[1]["type_text"], "STRING");
    assert_eq!(cols[2]["type_name"], "DECIMAL");
    assert_eq!(cols[2]["type_precision"], 18);
    assert_eq!(cols[2]["type_scale"], 4);
    assert_eq!(cols[3]["type_name"], "TIMESTAMP");
    let mut rows: Vec<Value> = Vec::new();
    let mut result = v["result"].clone();
    loop {
        rows.extend(result["data_array"].as_array().unwrap().iter().cloned());
        let Some(link) = result["next_chunk_internal_link"].as_str() else {
            break;
        };
        result = t.get(link).send().await.unwrap().json().await.unwrap();
        assert_eq!(result["row_offset"], rows.len());
    }
    assert_eq!(rows.len(), 11);
    assert_eq!(
        rows[0],
        json!(["1", "n1", "1.5000", "2024-01-02T03:04:05.123Z"])
    );
    assert_eq!(rows[10], json!(["11", null, null, null]));

    // EXTERNAL_LINKS + JSON_ARRAY: the link serves the chunk's rows as a JSON array of arrays.
    let v = t
        .sql(json!({
            "statement": "SELECT id, name FROM main.sales.orders WHERE id <= 2 ORDER BY id",
            "warehouse_id": "wh-test", "disposition": "EXTERNAL_LINKS"
        }))
        .await;
    let link = v["result"]["external_links"][0]["external_link"]
        .as_str()
        .unwrap();
    let rows: Value = t.http.get(link).send().await.unwrap().json().await.unwrap();
    assert_eq!(rows, json!([["1", "n1"], ["2", "n2"]]));
    assert!(
        v["result"]["external_links"][0]
            .get("next_chunk_index")
            .is_none()
    );

    // DDL result is empty; SQL errors are FAILED with HTTP 200.
    let v = t.run("CREATE TABLE IF NOT EXISTS main.sales.x (a INT) USING DELTA TBLPROPERTIES ('delta.appendOnly' = 'true')").await;
    assert_eq!(v["manifest"]["schema"]["column_count"], 0);
    assert_eq!(v["manifest"]["total_row_count"], 0);
    let v = t
        .sql(json!({"statement": "SELECT nope FROM main.sales.orders", "warehouse_id": "wh-test"}))
        .await;
    assert_eq!(v["status"]["state"], "FAILED");
    assert_eq!(v["status"]["error"]["error_code"], "BAD_REQUEST");
    assert!(
        v["status"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    assert!(v.get("manifest").is_none());
    t.dbx.shutdown().await;
}

/// ARRAY columns are reported as Databricks reports them (`type_name` ARRAY), rendered as compact
/// JSON in JSON_ARRAY, as Arrow lists in ARROW_STREAM; `to_json(col)` is a STRING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn array_columns_are_reported_as_array() {
    let t = T::start(DoubleConfig::default()).await;
    t.run("CREATE TABLE main.s.ev (id BIGINT, keys ARRAY<STRING>, nums ARRAY<BIGINT>)")
        .await;
    t.run("INSERT INTO main.s.ev VALUES (1, from_json('[\"id\", \"period\"]', 'array<string>'), array(1, 2)), (2, NULL, NULL)")
        .await;
    let v = t
        .run("SELECT id, keys, nums, to_json(keys) AS keys_json FROM main.s.ev ORDER BY id")
        .await;
    let cols = v["manifest"]["schema"]["columns"].as_array().unwrap();
    assert_eq!(cols[1]["type_name"], "ARRAY", "{v}");
    assert_eq!(cols[1]["type_text"], "ARRAY<STRING>");
    assert_eq!(cols[2]["type_name"], "ARRAY");
    assert_eq!(cols[2]["type_text"], "ARRAY<BIGINT>");
    assert_eq!(cols[3]["type_name"], "STRING");
    assert_eq!(
        v["result"]["data_array"],
        json!([
            ["1", r#"["id","period"]"#, "[1,2]", r#"["id","period"]"#],
            ["2", null, null, null]
        ])
    );

    let v = t
        .sql(json!({
            "statement": "SELECT keys FROM main.s.ev ORDER BY id",
            "warehouse_id": "wh-test", "disposition": "EXTERNAL_LINKS", "format": "ARROW_STREAM"
        }))
        .await;
    let url = v["result"]["external_links"][0]["external_link"]
        .as_str()
        .unwrap();
    let bytes = t.http.get(url).send().await.unwrap().bytes().await.unwrap();
    let batch = StreamReader::try_new(Cursor::new(bytes.to_vec()), None)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let keys = batch.column(0).as_list::<i32>();
    assert_eq!(keys.len(), 2);
    assert!(keys.is_null(1));
    let first = keys.value(0);
    let first = first.as_string::<i32>();
    assert_eq!((first.value(0), first.value(1)), ("id", "period"));

    // Nested or decimal elements are refused at CREATE, not silently stored as text.
    let v = t
        .sql(json!({"statement": "CREATE TABLE main.s.bad (a ARRAY<ARRAY<STRING>>)", "warehouse_id": "wh-test"}))
        .await;
    assert_eq!(v["status"]["state"], "FAILED", "{v}");
    t.dbx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_links_arrow_stream() {
    let t = T::start(DoubleConfig {
        chunk_rows: 4,
        ..DoubleConfig::default()
    })
    .await;
    t.dbx
        .execute_sql(
            "CREATE TABLE main.s.t (id BIGINT, v INT, amount DECIMAL(18,4), name STRING, d DATE, ts TIMESTAMP, ok BOOLEAN, f DOUBLE)",
        )
        .unwrap();
    for i in 0..10 {
        t.dbx
            .execute_sql(&format!(
                "INSERT INTO main.s.t VALUES ({i}, {i}, '{i}.0125', 'name {i}', '2024-03-0{}', '2024-03-01 00:00:0{i}', {}, {i}.25)",
                i % 9 + 1,
                i % 2
            ))
            .unwrap();
    }
    let v = t
        .sql(json!({
            "statement": "SELECT id, v, amount, name, d, ts, ok, f, id * 2 AS twice FROM main.s.t ORDER BY id",
            "warehouse_id": "wh-test", "disposition": "EXTERNAL_LINKS", "format": "ARROW_STREAM", "wait_timeout": "30s"
        }))
        .await;
    assert_eq!(v["status"]["state"], "SUCCEEDED", "{v}");
    assert_eq!(v["manifest"]["format"], "ARROW_STREAM");
    assert_eq!(v["manifest"]["total_chunk_count"], 3);
    let mut link = v["result"]["external_links"][0].clone();
    let mut ids = Vec::new();
    let mut n = 0;
    loop {
        assert_eq!(link["chunk_index"], n);
        assert!(link["expiration"].as_str().unwrap().ends_with('Z'));
        let url = link["external_link"].as_str().unwrap();
        // Presigned URL: no Authorization header allowed.
        let r = t.http.get(url).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let bytes = t.http.get(url).send().await.unwrap().bytes().await.unwrap();
        let reader = StreamReader::try_new(Cursor::new(bytes.to_vec()), None).unwrap();
        let schema = reader.schema();
        let types: Vec<DataType> = schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types,
            vec![
                DataType::Int64,
                DataType::Int32,
                DataType::Decimal128(18, 4),
                DataType::Utf8,
                DataType::Date32,
                DataType::Timestamp(TimeUnit::Microsecond, Some("Etc/UTC".into())),
                DataType::Boolean,
                DataType::Float64,
                DataType::Int64,
            ]
        );
        for batch in reader {
            let batch = batch.unwrap();
            let id = batch.column(0).as_primitive::<Int64Type>();
            ids.extend(id.values().iter().copied());
            let dec = batch.column(2).as_primitive::<Decimal128Type>();
            assert_eq!(dec.value(0), id.value(0) as i128 * 10000 + 125);
            let ts = batch.column(5).as_primitive::<TimestampMicrosecondType>();
            assert_eq!(ts.value(0), 1_709_251_200_000_000 + id.value(0) * 1_000_000);
            assert_eq!(
                batch.column(3).as_string::<i32>().value(0),
                format!("name {}", id.value(0))
            );
            assert_eq!(batch.column(8).null_count(), 0);
        }
        let Some(next) = link["next_chunk_internal_link"].as_str() else {
            break;
        };
        let chunk: Value = t.get(next).send().await.unwrap().json().await.unwrap();
        link = chunk["external_links"][0].clone();
        n += 1;
    }
    assert_eq!(ids, (0..10).collect::<Vec<i64>>());
    let external = t
        .dbx
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/__external/"))
        .collect::<Vec<_>>();
    assert_eq!(external.len(), 6);
    assert!(
        external
            .iter()
            .filter(|r| r.status == 400)
            .all(|r| r.authorization.is_some())
    );
    let bad_sig = v["result"]["external_links"][0]["external_link"]
        .as_str()
        .unwrap()
        .replace("sig=", "sig=x");
    assert_eq!(
        t.http.get(bad_sig).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    t.dbx.shutdown().await;
}

/// Every type, as the real API sends it: the manifest's `type_name` / `type_text` (upper case,
/// `VOID` for NULL, `type_interval_type` for intervals), the Arrow types of ARROW_STREAM chunks
/// (TIMESTAMP labelled with the session zone `Etc/UTC`, TIMESTAMP_NTZ without zone, DECIMAL as
/// Decimal128, VARIANT as JSON text, intervals as Interval(YearMonth) / Duration(µs)), the
/// JSON_ARRAY text of the same rows, and range limits kept exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_as_the_api_sends_it() {
    use arrow::array::{
        BinaryArray, BooleanArray, Date32Array, DurationMicrosecondArray, Float32Array, Int8Array,
        IntervalYearMonthArray,
    };
    use arrow::datatypes::IntervalUnit;
    let t = T::start(DoubleConfig::default()).await;
    t.run(
        "CREATE TABLE main.s.all_types (b BOOLEAN, t TINYINT, sm SMALLINT, i INT, l BIGINT, f FLOAT, d DOUBLE, \
         dec DECIMAL(38,18), s STRING, bin BINARY, dt DATE, ts TIMESTAMP, ntz TIMESTAMP_NTZ, v VARIANT, \
         ym INTERVAL YEAR TO MONTH, dts INTERVAL DAY TO SECOND, arr ARRAY<INT>)",
    )
    .await;
    t.run(
        "INSERT INTO main.s.all_types VALUES \
         (true, -128, -32768, -2147483648, -9223372036854775808, 0.5, -1.25, \
          '-99999999999999999999.999999999999999999', 'Grüße, 東京', X'00FF', '0001-01-01', \
          '0001-01-01T00:00:00Z', '0001-01-01T00:00:00', parse_json('{\"a\": [1, 2]}'), 14, 273600000001, array(1, 2)), \
         (false, 127, 32767, 2147483647, 9223372036854775807, 3.5, 1e300, \
          '99999999999999999999.999999999999999999', '', X'', '9999-12-31', \
          '9999-12-31T23:59:59.999999Z', '9999-12-31T23:59:59.999999', parse_json('\"x\"'), -1, -1, array()), \
         (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    .await;
    let select = "SELECT *, NULL AS no_value FROM main.s.all_types";
    let v = t
        .sql(json!({
            "statement": select, "warehouse_id": "wh-test",
            "disposition": "EXTERNAL_LINKS", "format": "ARROW_STREAM"
        }))
        .await;
    assert_eq!(v["status"]["state"], "SUCCEEDED", "{v}");
    let cols = v["manifest"]["schema"]["columns"].as_array().unwrap();
    let described: Vec<(String, String)> = cols
        .iter()
        .map(|c| {
            (
                c["type_name"].as_str().unwrap().to_string(),
                c["type_text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("BOOLEAN", "BOOLEAN"),
        ("BYTE", "TINYINT"),
        ("SHORT", "SMALLINT"),
        ("INT", "INT"),
        ("LONG", "BIGINT"),
        ("FLOAT", "FLOAT"),
        ("DOUBLE", "DOUBLE"),
        ("DECIMAL", "DECIMAL(38,18)"),
        ("STRING", "STRING"),
        ("BINARY", "BINARY"),
        ("DATE", "DATE"),
        ("TIMESTAMP", "TIMESTAMP"),
        ("TIMESTAMP_NTZ", "TIMESTAMP_NTZ"),
        ("VARIANT", "VARIANT"),
        ("INTERVAL", "INTERVAL YEAR TO MONTH"),
        ("INTERVAL", "INTERVAL DAY TO SECOND"),
        ("ARRAY", "ARRAY<INT>"),
        ("NULL", "VOID"),
    ];
    assert_eq!(
        described,
        expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    );
    for (i, c) in cols.iter().enumerate() {
        assert_eq!(c["position"], i);
    }
    assert_eq!(cols[7]["type_precision"], 38);
    assert_eq!(cols[7]["type_scale"], 18);
    assert_eq!(cols[14]["type_interval_type"], "YEAR TO MONTH");
    assert_eq!(cols[15]["type_interval_type"], "DAY TO SECOND");
    assert!(cols[0].get("type_interval_type").is_none());

    let url = v["result"]["external_links"][0]["external_link"]
        .as_str()
        .unwrap();
    let bytes = t.http.get(url).send().await.unwrap().bytes().await.unwrap();
    let reader = StreamReader::try_new(Cursor::new(bytes.to_vec()), None).unwrap();
    let types: Vec<DataType> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    let element = arrow::datatypes::Field::new("element", DataType::Int32, true);
    assert_eq!(
        types,
        vec![
            DataType::Boolean,
            DataType::Int8,
            DataType::Int16,
            DataType::Int32,
            DataType::Int64,
            DataType::Float32,
            DataType::Float64,
            DataType::Decimal128(38, 18),
            DataType::Utf8,
            DataType::Binary,
            DataType::Date32,
            DataType::Timestamp(TimeUnit::Microsecond, Some("Etc/UTC".into())),
            DataType::Timestamp(TimeUnit::Microsecond, None),
            DataType::Utf8,
            DataType::Interval(IntervalUnit::YearMonth),
            DataType::Duration(TimeUnit::Microsecond),
            DataType::List(std::sync::Arc::new(element)),
            DataType::Null,
        ]
    );
    let batch = reader.into_iter().next().unwrap().unwrap();
    assert_eq!(batch.num_rows(), 3);
    let col = |i: usize| batch.column(i).clone();
    assert!(
        col(0)
            .as_any()
            .downcast_ref::<BooleanArray>()
            .unwrap()
            .value(0)
    );
    let tiny = col(1);
    let tiny = tiny.as_any().downcast_ref::<Int8Array>().unwrap();
    assert_eq!(
        (tiny.value(0), tiny.value(1), tiny.is_null(2)),
        (-128, 127, true)
    );
    assert_eq!(col(4).as_primitive::<Int64Type>().value(0), i64::MIN);
    let f = col(5);
    assert_eq!(
        f.as_any().downcast_ref::<Float32Array>().unwrap().value(1),
        3.5
    );
    let dec = col(7);
    let dec = dec.as_primitive::<Decimal128Type>();
    let max = 10i128.pow(38) - 1;
    assert_eq!((dec.value(0), dec.value(1)), (-max, max));
    assert_eq!(col(8).as_string::<i32>().value(0), "Grüße, 東京");
    let bin = col(9);
    let bin = bin.as_any().downcast_ref::<BinaryArray>().unwrap();
    assert_eq!((bin.value(0), bin.value(1)), (&[0u8, 255][..], &[][..]));
    let dt = col(10);
    let dt = dt.as_any().downcast_ref::<Date32Array>().unwrap();
    assert_eq!((dt.value(0), dt.value(1)), (-719_162, 2_932_896));
    let ts = col(11);
    let ts = ts.as_primitive::<TimestampMicrosecondType>();
    assert_eq!(
        (ts.value(0), ts.value(1)),
        (-62_135_596_800_000_000, 253_402_300_799_999_999)
    );
    let ntz = col(12);
    let ntz = ntz.as_primitive::<TimestampMicrosecondType>();
    assert_eq!((ntz.value(0), ntz.value(1)), (ts.value(0), ts.value(1)));
    assert_eq!(col(13).as_string::<i32>().value(0), r#"{"a":[1,2]}"#);
    let ym = col(14);
    let ym = ym
        .as_any()
        .downcast_ref::<IntervalYearMonthArray>()
        .unwrap();
    assert_eq!((ym.value(0), ym.value(1)), (14, -1));
    let dts = col(15);
    let dts = dts
        .as_any()
        .downcast_ref::<DurationMicrosecondArray>()
        .unwrap();
    assert_eq!(dts.value(0), 273_600_000_001);
    for i in 0..batch.num_columns() - 1 {
        assert!(batch.column(i).is_null(2), "column {i} row 3 is NULL");
    }
    assert_eq!(batch.column(17).len(), 3);

    // The same rows as JSON_ARRAY text.
    let v = t.run(select).await;
    let rows = v["result"]["data_array"].as_array().unwrap();
    assert_eq!(
        rows[0],
        json!([
            "true",
            "-128",
            "-32768",
            "-2147483648",
            "-9223372036854775808",
            "0.5",
            "-1.25",
            "-99999999999999999999.999999999999999999",
            "Grüße, 東京",
            "AP8=",
            "0001-01-01",
            "0001-01-01T00:00:00.000Z",
            "0001-01-01T00:00:00.000",
            r#"{"a":[1,2]}"#,
            "1-2",
            "3 04:00:00.000001000",
            "[1,2]",
            null
        ])
    );
    assert_eq!(rows[1][11], "9999-12-31T23:59:59.999999Z");
    assert_eq!(rows[1][12], "9999-12-31T23:59:59.999999");
    assert_eq!(rows[1][14], "-0-1");
    assert_eq!(rows[2], json!(vec![Value::Null; 18]));

    // Values a type cannot hold fail the statement that reads them, naming the type.
    for (n, (decl, value)) in [
        ("TINYINT", "128"),
        ("DECIMAL(38,18)", "'100000000000000000000'"),
        ("VARIANT", "'{not json'"),
        ("INTERVAL YEAR TO MONTH", "4294967296"),
    ]
    .into_iter()
    .enumerate()
    {
        t.run(&format!("CREATE TABLE main.s.bad{n} (x {decl})"))
            .await;
        t.run(&format!("INSERT INTO main.s.bad{n} VALUES ({value})"))
            .await;
        let v = t
            .sql(json!({"statement": format!("SELECT x FROM main.s.bad{n}"), "warehouse_id": "wh-test"}))
            .await;
        assert_eq!(v["status"]["state"], "FAILED", "{decl}: {v}");
        let message = v["status"]["error"]["message"].as_str().unwrap();
        assert!(message.contains(decl), "{decl}: {message}");
    }
    t.dbx.shutdown().await;
}

/// External links expire (`link_ttl`) with 403, as presigned URLs do; the chunk endpoint gives a
/// fresh link to the same chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_links_expire_and_chunks_give_fresh_ones() {
    let t = T::start(DoubleConfig {
        chunk_rows: 2,
        link_ttl: std::time::Duration::from_millis(300),
        ..DoubleConfig::default()
    })
    .await;
    t.run("CREATE TABLE main.s.t (id BIGINT)").await;
    t.run("INSERT INTO main.s.t VALUES (1), (2), (3)").await;
    let v = t
        .sql(json!({
            "statement": "SELECT id FROM main.s.t ORDER BY id",
            "warehouse_id": "wh-test", "disposition": "EXTERNAL_LINKS", "format": "ARROW_STREAM"
        }))
        .await;
    let id = v["statement_id"].as_str().unwrap().to_string();
    let link = v["result"]["external_links"][0]["external_link"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        t.http.get(&link).send().await.unwrap().status(),
        StatusCode::OK
    );
    // A later expiry in the URL is not accepted: the signature covers it.
    let exp: i64 = link
        .split("exp=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let stretched = link.replace(&format!("exp={exp}"), &format!("exp={}", exp + 3_600_000));
    assert_eq!(
        t.http.get(&stretched).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let r = t.http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("expired"));
    let chunk: Value = t
        .get(&format!("/api/2.0/sql/statements/{id}/result/chunks/0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(chunk["external_links"][0]["chunk_index"], 0);
    let fresh = chunk["external_links"][0]["external_link"]
        .as_str()
        .unwrap();
    assert_ne!(fresh, link);
    let r = t.http.get(fresh).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let batch = StreamReader::try_new(Cursor::new(r.bytes().await.unwrap().to_vec()), None)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(batch.num_rows(), 2);
    t.dbx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_polls_and_cancel() {
    let t = T::start(DoubleConfig {
        pending_polls: 2,
        ..DoubleConfig::default()
    })
    .await;
    t.dbx
        .execute_sql("CREATE TABLE main.s.t (id BIGINT)")
        .unwrap();
    let v = t.sql(json!({"statement": "INSERT INTO main.s.t VALUES (1), (2)", "warehouse_id": "wh-test", "wait_timeout": "0s"})).await;
    assert_eq!(v["status"]["state"], "PENDING");
    assert!(v.get("manifest").is_none());
    let id = v["statement_id"].as_str().unwrap().to_string();
    let path = format!("/api/2.0/sql/statements/{id}");
    for _ in 0..2 {
        let v: Value = t.get(&path).send().await.unwrap().json().await.unwrap();
        assert_eq!(v["status"]["state"], "RUNNING");
        assert!(v.get("result").is_none());
    }
    assert_eq!(
        t.dbx.query_sql("SELECT count(*) FROM main.s.t").unwrap(),
        vec![vec![Some("0".to_string())]]
    );
    let v: Value = t.get(&path).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["status"]["state"], "SUCCEEDED");
    assert_eq!(
        v["manifest"]["schema"]["columns"][0]["name"],
        "num_affected_rows"
    );
    assert_eq!(v["result"]["data_array"], json!([["2", "2"]]));

    // Cancel before completion: CANCELED, and the statement never ran.
    let v = t.sql(json!({"statement": "DELETE FROM main.s.t", "warehouse_id": "wh-test", "wait_timeout": "0s"})).await;
    let id = v["statement_id"].as_str().unwrap().to_string();
    let r = t
        .http
        .post(t.url(&format!("/api/2.0/sql/statements/{id}/cancel")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = t
        .get(&format!("/api/2.0/sql/statements/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"]["state"], "CANCELED");
    assert_eq!(
        t.dbx.query_sql("SELECT count(*) FROM main.s.t").unwrap(),
        vec![vec![Some("2".to_string())]]
    );
    let r = t
        .get(&format!("/api/2.0/sql/statements/{id}/result/chunks/0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    t.dbx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_and_request_validation() {
    let t = T::start(DoubleConfig::default()).await;
    t.run("CREATE TABLE main.ops.jobs (id BIGINT, status STRING, amount DECIMAL(10,2), day DATE, ok BOOLEAN, code STRING)").await;
    let v = t
        .sql(json!({
            "statement": "INSERT INTO main.ops.jobs VALUES (:id, :status, :amount, :day, :ok, :code)",
            "warehouse_id": "wh-test",
            "parameters": [
                {"name": "id", "value": "42", "type": "BIGINT"},
                {"name": "status", "value": "pending"},
                {"name": "amount", "value": "12.30", "type": "DECIMAL(10,2)"},
                {"name": "day", "value": "2024-02-29", "type": "DATE"},
                {"name": "ok", "value": "true", "type": "BOOLEAN"},
                {"name": "code", "value": null, "type": "STRING"}
            ]
        }))
        .await;
    assert_eq!(v["status"]["state"], "SUCCEEDED", "{v}");
    assert_eq!(v["result"]["data_array"], json!([["1", "1"]]));
    assert_eq!(
        v["manifest"]["schema"]["columns"][1]["name"],
        "num_inserted_rows"
    );
    let v = t
        .sql(json!({
            "statement": "SELECT id, status, amount, day, ok, code FROM jobs WHERE id = :id",
            "warehouse_id": "wh-test", "catalog": "main", "schema": "ops",
            "parameters": [{"name": "id", "value": "42", "type": "INT"}]
        }))
        .await;
    assert_eq!(
        v["result"]["data_array"],
        json!([["42", "pending", "12.30", "2024-02-29", "true", null]]),
        "{v}"
    );

    let bad = |body: Value, needle: &'static str| {
        let t = &t;
        async move {
            let r = t
                .http
                .post(t.url("/api/2.0/sql/statements"))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
            let e: Value = r.json().await.unwrap();
            assert_eq!(e["error_code"], "INVALID_PARAMETER_VALUE", "{e}");
            assert!(e["message"].as_str().unwrap().contains(needle), "{e}");
        }
    };
    bad(
        json!({"statement": "SELECT 1", "warehouse_id": "wh-test", "waitTimeout": "5s"}),
        "waitTimeout",
    )
    .await;
    bad(
        json!({"statement": "SELECT :a", "warehouse_id": "wh-test"}),
        "a",
    )
    .await;
    bad(json!({"statement": "SELECT 1", "warehouse_id": "wh-test", "parameters": [{"name": "x", "value": "1"}]}), "x").await;
    bad(
        json!({"statement": "SELECT 1", "warehouse_id": "wh-test", "format": "ARROW_STREAM"}),
        "INLINE",
    )
    .await;
    bad(
        json!({"statement": "SELECT 1", "warehouse_id": "wh-test", "wait_timeout": "3s"}),
        "wait_timeout",
    )
    .await;
    bad(
        json!({"statement": "SELECT 1", "warehouse_id": "wh-test", "disposition": "LINKS"}),
        "disposition",
    )
    .await;
    bad(
        json!({"statement": "SELECT :a", "warehouse_id": "wh-test", "parameters": [{"name": "a", "value": "x", "type": "BIGINT"}]}),
        "BIGINT",
    )
    .await;
    bad(json!({"warehouse_id": "wh-test"}), "statement").await;
    let r = t
        .http
        .post(t.url("/api/2.0/sql/statements"))
        .bearer_auth(TOKEN)
        .json(&json!({"statement": "SELECT 1", "warehouse_id": "other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let rec = t.dbx.requests();
    assert_eq!(
        rec.last().unwrap().json.as_ref().unwrap()["warehouse_id"],
        s("other")
    );
    t.dbx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_conditional_update_and_merge() {
    let t = T::start(DoubleConfig::default()).await;
    t.dbx
        .execute_sql("CREATE TABLE main.ops.jobs (id BIGINT, status STRING)")
        .unwrap();
    t.dbx
        .execute_sql("INSERT INTO main.ops.jobs VALUES (7, 'pending')")
        .unwrap();
    let claim = || {
        t.sql(json!({
            "statement": "UPDATE main.ops.jobs SET status = 'running' WHERE id = :id AND status = 'pending'",
            "warehouse_id": "wh-test",
            "parameters": [{"name": "id", "value": "7", "type": "BIGINT"}]
        }))
    };
    let (a, b) = tokio::join!(claim(), claim());
    let mut counts = [&a, &b].map(|v| {
        v["result"]["data_array"][0][0]
            .as_str()
            .unwrap()
            .to_string()
    });
    counts.sort();
    assert_eq!(counts, ["0", "1"]);

    t.dbx
        .execute_sql("CREATE TABLE main.ops.staging (id BIGINT, status STRING)")
        .unwrap();
    t.dbx
        .execute_sql("INSERT INTO main.ops.staging VALUES (7, 'done'), (8, 'pending')")
        .unwrap();
    let v = t
        .run(
            "MERGE INTO main.ops.jobs AS t USING main.ops.staging AS s ON t.id = s.id \
             WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *",
        )
        .await;
    let cols: Vec<&str> = v["manifest"]["schema"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        cols,
        [
            "num_affected_rows",
            "num_updated_rows",
            "num_deleted_rows",
            "num_inserted_rows"
        ]
    );
    assert_eq!(v["result"]["data_array"], json!([["2", "1", "0", "1"]]));
    assert_eq!(
        t.dbx
            .query_sql("SELECT id, status FROM main.ops.jobs ORDER BY id")
            .unwrap(),
        vec![
            vec![Some("7".into()), Some("done".into())],
            vec![Some("8".into()), Some("pending".into())]
        ]
    );
    t.dbx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_failures_with_retry_after() {
    let t = T::start(DoubleConfig::default()).await;
    t.dbx.fail_next("/api/2.0/sql/statements", 429, Some(2), 2);
    let body = json!({"statement": "SELECT 1 AS one", "warehouse_id": "wh-test"});
    for _ in 0..2 {
        let r = t
            .http
            .post(t.url("/api/2.0/sql/statements"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error_code"],
            "TOO_MANY_REQUESTS"
        );
    }
    let v = t.sql(body.clone()).await;
    assert_eq!(v["result"]["data_array"], json!([["1"]]));
    t.dbx.fail_next("/api/2.0/fs/", 503, None, 1);
    let r = t
        .get("/api/2.0/fs/directories/Volumes/a/b/c")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!r.headers().contains_key("retry-after"));
    let rec = t.dbx.requests();
    assert_eq!(rec.len(), 4);
    assert_eq!(rec[0].status, 429);
    assert_eq!(
        rec[0].json.as_ref().unwrap()["statement"],
        "SELECT 1 AS one"
    );
    t.dbx.shutdown().await;
}

/// 120 MB upload and download, streamed on both sides (run with `--ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "large transfer; run explicitly"]
async fn large_upload_streams() {
    use futures::StreamExt;
    let t = T::start(DoubleConfig::default()).await;
    t.dbx.add_volume("main", "raw", "landing");
    let url = t.url("/api/2.0/fs/files/Volumes/main/raw/landing/big.bin");
    const MB: usize = 1 << 20;
    let chunk = |i: usize| -> Vec<u8> { (0..MB).map(|j| ((i * 31 + j * 7) % 251) as u8).collect() };
    let body = futures::stream::iter((0..120).map(move |i| Ok::<_, std::io::Error>(chunk(i))));
    let r = t
        .http
        .put(&url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = t.http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    let mut stream = r.bytes_stream();
    let mut pos = 0usize;
    while let Some(b) = stream.next().await {
        for &x in b.unwrap().iter() {
            assert_eq!(x, (((pos / MB) * 31 + (pos % MB) * 7) % 251) as u8);
            pos += 1;
        }
    }
    assert_eq!(pos, 120 * MB);
    t.dbx.shutdown().await;
}
