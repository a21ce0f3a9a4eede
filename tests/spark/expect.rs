//! What a reader saw against what the type policy says it must see: tables as the Spark worker
//! encodes them (see `worker.py`), expected columns, and a strict comparison that lists every
//! difference (column names and order, each column's type, row count, every value) instead of
//! stopping at the first.

use serde_json::Value;

/// A table as the worker answers it: columns, then rows in column order.
#[derive(Debug)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

/// A column of a [`Table`]: the reader's type name and the Arrow type the values came from.
#[derive(Debug)]
pub struct Column {
    pub name: String,
    pub ty: String,
    pub arrow: String,
}

impl Table {
    /// The table of a `read_*` answer.
    pub fn from_answer(answer: &Value) -> Result<Table, String> {
        let columns = answer["columns"]
            .as_array()
            .ok_or_else(|| format!("no columns in {answer}"))?
            .iter()
            .map(|c| Column {
                name: c["name"].as_str().unwrap_or_default().to_string(),
                ty: c["type"].as_str().unwrap_or_default().to_string(),
                arrow: c["arrow"].as_str().unwrap_or_default().to_string(),
            })
            .collect();
        let rows = answer["rows"]
            .as_array()
            .ok_or_else(|| format!("no rows in {answer}"))?
            .iter()
            .map(|r| r.as_array().cloned().unwrap_or_default())
            .collect();
        Ok(Table { columns, rows })
    }
}

/// One expected column: its name, the Spark type (`simpleString`) the policy gives it, and its
/// values for the rows in key order (`None` = NULL). Values are in the worker's encoding.
#[derive(Debug, Clone)]
pub struct Expected {
    pub name: String,
    pub ty: String,
    pub values: Vec<Option<String>>,
}

/// Every difference between `got` and `expected`, each a line naming the reader, the column
/// and the row key. The first column is the key: `got`'s rows are sorted by it (as an integer)
/// and `expected` lists rows in that order. `type_name` turns an expected Spark type into the
/// name this reader reports (the identity for Spark, Delta's names for the `deltalake` package).
pub fn differences(
    reader: &str,
    got: &Table,
    expected: &[Expected],
    type_name: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut out = Vec::new();
    let got_names: Vec<&str> = got.columns.iter().map(|c| c.name.as_str()).collect();
    let want_names: Vec<&str> = expected.iter().map(|c| c.name.as_str()).collect();
    if got_names != want_names {
        out.push(format!(
            "{reader}: columns are {got_names:?}, expected {want_names:?}"
        ));
    }
    for want in expected {
        match got.columns.iter().find(|c| c.name == want.name) {
            Some(c) if c.ty != type_name(&want.ty) => out.push(format!(
                "{reader}: column {} has type {} (Arrow {}), expected {}",
                c.name,
                c.ty,
                c.arrow,
                type_name(&want.ty)
            )),
            Some(_) => {}
            None => out.push(format!("{reader}: column {} is missing", want.name)),
        }
    }
    let rows = expected.first().map_or(0, |c| c.values.len());
    if got.rows.len() != rows {
        out.push(format!(
            "{reader}: {} rows, expected {rows}",
            got.rows.len()
        ));
        return out;
    }
    let mut sorted: Vec<&Vec<Value>> = got.rows.iter().collect();
    sorted.sort_by_key(|r| {
        r.first()
            .and_then(Value::as_str)
            .and_then(|k| k.parse::<i64>().ok())
    });
    for (i, row) in sorted.iter().enumerate() {
        let key = expected[0].values[i].as_deref().unwrap_or("NULL");
        for want in expected {
            let Some(at) = got_names.iter().position(|n| *n == want.name) else {
                continue;
            };
            let value = row.get(at).unwrap_or(&Value::Null);
            if !same(&want.ty, value, &want.values[i]) {
                out.push(format!(
                    "{reader}: row {key}, column {}: got {}, expected {}",
                    want.name,
                    show_json(value),
                    want.values[i].as_deref().map_or("NULL".into(), show)
                ));
            }
        }
    }
    out
}

/// Whether an encoded value is the expected one. Floats compare as numbers (the worker sends
/// Python's `repr` of the double; `float` columns expect an `f32` literal, widened exactly).
fn same(spark_type: &str, got: &Value, want: &Option<String>) -> bool {
    match (got, want) {
        (Value::Null, None) => true,
        (Value::Bool(b), Some(w)) => b.to_string() == *w,
        (Value::String(s), Some(w)) if spark_type == "float" => {
            matches!((s.parse::<f64>(), w.parse::<f32>()), (Ok(g), Ok(w)) if g == f64::from(w))
        }
        (Value::String(s), Some(w)) if spark_type == "double" => {
            matches!((s.parse::<f64>(), w.parse::<f64>()), (Ok(g), Ok(w)) if g == w)
        }
        (Value::String(s), Some(w)) => s == w,
        _ => false,
    }
}

/// A value for a message: quoted, long ones cut with their length.
pub fn show(text: &str) -> String {
    let chars = text.chars().count();
    if chars <= 80 {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(40).collect();
        format!("{head:?}… ({chars} characters)")
    }
}

fn show_json(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::String(s) => show(s),
        other => other.to_string(),
    }
}

/// Delta's name of a Spark type (`smallint` is `short`, `int` `integer`, …).
pub fn delta_type(spark_type: &str) -> String {
    match spark_type {
        "tinyint" => "byte",
        "smallint" => "short",
        "int" => "integer",
        "bigint" => "long",
        other => other,
    }
    .to_string()
}
