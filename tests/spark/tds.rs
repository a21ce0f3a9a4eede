//! SQL Server access for the Spark tests over the real TDS protocol: T-SQL batches, and rows
//! read back as exact text in SQL Server's own notation, from the typed values the client
//! decodes (not from the test server's storage), so a value is compared as a SQL Server client
//! sees it.
//!
//! | TDS value | text |
//! |---|---|
//! | tinyint … bigint, bit | digits, `true`/`false` |
//! | decimal/numeric | plain, with exactly the column's scale (`-1.50`) |
//! | date | `YYYY-MM-DD` |
//! | time(n), datetime2(n) | `HH:MM:SS[.n digits]`, `YYYY-MM-DD HH:MM:SS[.n digits]` |
//! | datetimeoffset(n) | the local time and its offset: `YYYY-MM-DD HH:MM:SS[.n digits] +HH:MM` |
//! | char types, xml, uniqueidentifier | the text (GUIDs upper case) |
//! | binary types | lowercase hex |

use tiberius::ColumnData;
use tiberius::time::{DateTime2, Time};

/// Connection settings for the TDS test server on `port`.
fn settings(port: u16) -> bridge::mssql::SqlServerSettings {
    bridge::mssql::SqlServerSettings {
        host: Some("127.0.0.1".into()),
        port: Some(port),
        username: Some("sa".into()),
        password_env: Some("PATH".into()), // any set variable: the test server ignores it
        encrypt: Some(bridge::mssql::settings::Encrypt::DangerPlaintext),
        ..Default::default()
    }
}

/// Runs a T-SQL batch; panics naming the batch on failure.
pub async fn execute(port: u16, sql: &str) {
    let mut client = bridge::mssql::connect(&settings(port)).await.unwrap();
    let fail = |e: tiberius::error::Error| -> ! {
        panic!("T-SQL failed: {e}\n{}", crate::expect::show(sql))
    };
    let results = client.simple_query(sql).await.unwrap_or_else(|e| fail(e));
    results.into_results().await.unwrap_or_else(|e| fail(e));
}

/// Rows of a query, each value as text (see the module table), `None` for NULL.
pub async fn rows(port: u16, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut client = bridge::mssql::connect(&settings(port)).await.unwrap();
    let rows = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_first_result()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter()
        .map(|row| row.into_iter().map(|v| text(&v)).collect())
        .collect()
}

fn text(value: &ColumnData<'_>) -> Option<String> {
    match value {
        ColumnData::U8(v) => v.map(|v| v.to_string()),
        ColumnData::I16(v) => v.map(|v| v.to_string()),
        ColumnData::I32(v) => v.map(|v| v.to_string()),
        ColumnData::I64(v) => v.map(|v| v.to_string()),
        ColumnData::F32(v) => v.map(|v| v.to_string()),
        ColumnData::F64(v) => v.map(|v| v.to_string()),
        ColumnData::Bit(v) => v.map(|v| v.to_string()),
        ColumnData::String(v) => v.as_ref().map(std::string::ToString::to_string),
        ColumnData::Guid(v) => v.map(|v| v.to_string().to_uppercase()),
        ColumnData::Binary(v) => v.as_ref().map(|v| hex::encode(v.as_ref())),
        ColumnData::Numeric(v) => v.map(|n| decimal(n.value(), n.scale())),
        ColumnData::Xml(v) => v.as_ref().map(std::string::ToString::to_string),
        ColumnData::Date(v) => v.map(|d| date(i64::from(d.days()))),
        ColumnData::Time(v) => v.map(time),
        ColumnData::DateTime2(v) => v.map(datetime2),
        ColumnData::DateTimeOffset(v) => v.map(|dto| {
            // The value is UTC on the wire; SQL Server shows the local time with its offset.
            let utc = dto.datetime2();
            let scale = u32::from(utc.time().scale());
            let per_minute = 60 * 10u64.pow(scale);
            let per_day = 1440 * per_minute;
            let offset = i64::from(dto.offset());
            let total = i128::from(utc.date().days()) * i128::from(per_day)
                + i128::from(utc.time().increments())
                + i128::from(offset) * i128::from(per_minute);
            let days = total.div_euclid(i128::from(per_day)) as i64;
            let increments = total.rem_euclid(i128::from(per_day)) as u64;
            let sign = if offset < 0 { '-' } else { '+' };
            format!(
                "{} {} {sign}{:02}:{:02}",
                date(days),
                time(Time::new(increments, scale as u8)),
                offset.abs() / 60,
                offset.abs() % 60
            )
        }),
        ColumnData::DateTime(_) | ColumnData::SmallDateTime(_) => {
            panic!("datetime/smalldatetime read-back is not needed by these tests: {value:?}")
        }
    }
}

fn decimal(value: i128, scale: u8) -> String {
    let digits = value.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = digits.split_at(digits.len() - scale);
    let sign = if value < 0 { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// `YYYY-MM-DD` of a day count since 0001-01-01 (proleptic Gregorian).
fn date(days_since_0001: i64) -> String {
    // Howard Hinnant's civil_from_days, on days since 1970-01-01.
    let z = days_since_0001 - 719_162 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn time(t: Time) -> String {
    let scale = u32::from(t.scale());
    let per_second = 10u64.pow(scale);
    let seconds = t.increments() / per_second;
    let frac = t.increments() % per_second;
    let hms = format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    if scale == 0 {
        hms
    } else {
        format!("{hms}.{frac:0width$}", width = scale as usize)
    }
}

fn datetime2(dt: DateTime2) -> String {
    format!("{} {}", date(i64::from(dt.date().days())), time(dt.time()))
}
