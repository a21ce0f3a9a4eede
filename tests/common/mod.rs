//! Helpers for the integration tests: a scratch copy of the project, the real `bridge` binary,
//! and readers for the Parquet and Delta output it writes.

#![allow(dead_code)]

pub mod store_contract;
pub mod tds;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// A temporary copy of the repository's `config/`, `queries/` and `pipelines/`.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for folder in ["config", "queries", "pipelines"] {
            copy_dir(&repo.join(folder), &dir.path().join(folder));
        }
        Scratch { dir }
    }

    /// An empty project folder.
    pub fn empty() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Runs `bridge --root <scratch> args...`.
    pub fn bridge(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_bridge"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .expect("bridge runs")
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "bridge failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every file under a folder, relative, sorted.
pub fn list_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// All batches of a Parquet file.
pub fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// Rows of a query over registered tables, rendered as text lines (for exact comparisons).
pub async fn query_lines(ctx: &SessionContext, sql: &str) -> Vec<String> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    batch_lines(&batches)
}

/// Rows of batches as `a|b|c` lines.
pub fn batch_lines(batches: &[RecordBatch]) -> Vec<String> {
    use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default().with_null("NULL");
    let mut lines = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            lines.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    lines
}

/// Rows of a SQLite query as `a|b|c` lines (the independent oracle).
pub fn sqlite_lines(db: &Path, sql: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |row| {
        Ok((0..n)
            .map(|i| match row.get_ref(i).unwrap() {
                rusqlite::types::ValueRef::Null => "NULL".to_string(),
                rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                rusqlite::types::ValueRef::Real(v) => v.to_string(),
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                rusqlite::types::ValueRef::Blob(_) => "<blob>".to_string(),
            })
            .collect::<Vec<_>>()
            .join("|"))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

impl Scratch {
    /// Runs `bridge --root <scratch> args...` with extra environment variables.
    pub fn bridge_env(&self, args: &[&str], env: &[(&str, String)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_bridge"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("RUST_LOG")
            .output()
            .expect("bridge runs")
    }
}

/// Connection settings for the TDS test server on `port` (plaintext; it ignores the password).
pub fn tds_settings(port: u16) -> bridge::mssql::SqlServerSettings {
    bridge::mssql::SqlServerSettings {
        host: Some("127.0.0.1".into()),
        port: Some(port),
        username: Some("sa".into()),
        password_env: Some("PATH".into()), // any set variable: the test server ignores it
        encrypt: Some(bridge::mssql::settings::Encrypt::DangerPlaintext),
        ..Default::default()
    }
}

/// A volume sink's file name without its run tag: `sales-1a2b3c4d-00000.parquet` gives
/// `sales-00000.parquet` (other names are returned as they are).
pub fn untagged(name: &str) -> String {
    let Some(stem) = name.strip_suffix(".parquet") else {
        return name.to_string();
    };
    let parts: Vec<&str> = stem.rsplitn(3, '-').collect();
    match parts.as_slice() {
        [n, tag, base]
            if n.len() == 5
                && n.bytes().all(|b| b.is_ascii_digit())
                && tag.len() == 8
                && tag.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            format!("{base}-{n}.parquet")
        }
        _ => name.to_string(),
    }
}

/// Every file under a folder, relative, sorted, run tags removed ([`untagged`]).
pub fn list_untagged(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = list_files(dir).iter().map(|f| untagged(f)).collect();
    files.sort();
    files
}

/// The file of a volume folder whose name without run tag is `relative` (e.g.
/// `category=A/out-00000.parquet`); panics unless exactly one matches.
pub fn part(dir: &Path, relative: &str) -> PathBuf {
    let found: Vec<String> = list_files(dir)
        .into_iter()
        .filter(|f| untagged(f) == relative)
        .collect();
    assert_eq!(found.len(), 1, "{relative} in {}: {found:?}", dir.display());
    dir.join(&found[0])
}
