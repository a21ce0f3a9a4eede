//! Reading a query's rows into Arrow builders with Microsoft's `mssql-tds` crate, whose decoder
//! hands every value to a [`RowWriter`] as it comes off the wire: no row object, no owned
//! `String` per value. `benches/driver-probe` measured it at about a third of tiberius' client
//! CPU per row. The `sqlserver` source reads with it by default (`read_driver: mssql_tds`);
//! tiberius keeps describing queries, change tracking's snapshot reads and every write.

use std::borrow::Cow;

use mssql_tds::connection::tds_client::{StatementResult, TdsClient};
use mssql_tds::connection_provider::tds_connection_provider::TdsConnectionProvider;
use mssql_tds::datatypes::column_values::{
    SqlDate, SqlDateTime, SqlDateTime2, SqlDateTimeOffset, SqlMoney, SqlSmallDateTime,
    SqlSmallMoney, SqlTime, SqlXml,
};
use mssql_tds::datatypes::decoder::DecimalParts;
use mssql_tds::datatypes::row_writer::RowWriter;
use mssql_tds::datatypes::sql_json::SqlJson;
use mssql_tds::datatypes::sql_string::{EncodingType, SqlString};
use mssql_tds::datatypes::sql_vector::SqlVector;
use mssql_tds::datatypes::sqltypes::SqlType;
use mssql_tds::message::parameters::rpc_parameters::{RpcParameter, StatusFlags};

use super::connect::{MssqlError, Phase};
use super::ranges::DAYS_0001_TO_1970;
use super::settings::SqlServerSettings;
use super::types::{
    AppendError, ColumnBuilder, Value, date_time_nanos, datetime_nanos, smalldatetime_nanos,
};
use crate::sql::SqlValue;

/// One `mssql-tds` connection, for one query.
pub struct ArrowReader {
    client: TdsClient,
    target: String,
}

impl ArrowReader {
    /// Logs in, naming the phase that failed.
    pub async fn connect(settings: &SqlServerSettings) -> Result<Self, MssqlError> {
        let target = settings.describe();
        let (ctx, datasource) = settings
            .to_mssql_tds()
            .map_err(|e| MssqlError::new(Phase::Config, &target, e.to_string(), false))?;
        let client = TdsConnectionProvider {}
            .create_client(ctx, &datasource, None)
            .await
            .map_err(|e| MssqlError::from_mssql_tds(Phase::Login, &target, &e))?;
        Ok(ArrowReader { client, target })
    }

    fn fail(&self, e: &mssql_tds::error::Error) -> MssqlError {
        MssqlError::from_mssql_tds(Phase::Query, &self.target, e)
    }

    /// Sends the query (through `sp_executesql` with its values bound as `@P1..@Pn`, as
    /// tiberius does) and positions on its first result set.
    pub async fn query(&mut self, text: &str, params: &[SqlValue]) -> Result<(), MssqlError> {
        let first = if params.is_empty() {
            self.client.execute(text.to_string(), ()).await
        } else {
            let params = params
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    RpcParameter::new(Some(format!("@P{}", i + 1)), StatusFlags::NONE, sql_type(v))
                })
                .collect();
            self.client
                .execute_sp_executesql(text.to_string(), params, ())
                .await
        }
        .map_err(|e| self.fail(&e))?;
        let on_rows = match first {
            StatementResult::Rows => true,
            StatementResult::NoRows { .. } => self
                .client
                .advance_to_rows()
                .await
                .map_err(|e| self.fail(&e))?,
            StatementResult::End => false,
        };
        if !on_rows {
            return Err(MssqlError::new(
                Phase::Query,
                &self.target,
                "the query returned no result set",
                false,
            ));
        }
        Ok(())
    }

    /// Decodes the next row into `columns`; `Ok(false)` once the result set is read.
    pub async fn next_row(&mut self, row: &mut RowInto<'_>) -> Result<bool, ReadError> {
        let more = self
            .client
            .next_row_into(row)
            .await
            .map_err(|e| ReadError::Server(self.fail(&e)))?;
        match row.error.take() {
            Some((column, error)) => Err(ReadError::Value { column, error }),
            None => Ok(more),
        }
    }

    /// Reads what is left of the batch, so the server sees the query end cleanly.
    pub async fn finish(mut self) -> Result<(), MssqlError> {
        self.client.close_query().await.map_err(|e| self.fail(&e))
    }
}

/// Why a row could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Server(MssqlError),
    /// A value its column refused (index into the builders).
    #[error("column {column}: {error}")]
    Value { column: usize, error: AppendError },
}

/// The value of a bound parameter, typed as `param_declarations` declares it.
fn sql_type(value: &SqlValue) -> SqlType {
    match value {
        SqlValue::Null => SqlType::NVarchar(None, 4000),
        SqlValue::Bool(b) => SqlType::Bit(Some(*b)),
        SqlValue::Int(i) => SqlType::BigInt(Some(*i)),
        SqlValue::Float(f) => SqlType::Float(Some(*f)),
        SqlValue::Text(s) if s.encode_utf16().count() <= 4000 => {
            SqlType::NVarchar(Some(SqlString::from_utf8_string(s.clone())), 4000)
        }
        SqlValue::Text(s) => SqlType::NVarcharMax(Some(SqlString::from_utf8_string(s.clone()))),
    }
}

/// The [`RowWriter`] of one partition: every value goes straight to its column's builder. The
/// first value a column refuses is kept and reported after the row.
pub struct RowInto<'a> {
    columns: &'a mut [ColumnBuilder],
    error: Option<(usize, AppendError)>,
    /// Text transcoded from UTF-16 or a code page, reused for every value.
    text: &'a mut String,
}

impl<'a> RowInto<'a> {
    /// A writer of one row into `columns`; `text` is scratch space kept between rows.
    pub fn new(columns: &'a mut [ColumnBuilder], text: &'a mut String) -> Self {
        RowInto {
            columns,
            error: None,
            text,
        }
    }

    fn put(&mut self, col: usize, value: Value<'_>) {
        if self.error.is_some() {
            return;
        }
        let result = match self.columns.get_mut(col) {
            Some(builder) => builder.push(value),
            None => Err(AppendError::Mismatch {
                value: format!("{value:?}"),
                column: "(a column the query did not describe)",
            }),
        };
        if let Err(e) = result {
            self.error = Some((col, e));
        }
    }

    fn put_text(&mut self, col: usize, text: String) {
        self.put(col, Value::Str(&text));
    }
}

/// `bytes` of `encoding` as UTF-8 into `out` (malformed sequences become U+FFFD, whichever
/// packet boundary the value fell on).
fn transcode(bytes: &[u8], encoding: &EncodingType, out: &mut String) {
    out.clear();
    match encoding {
        EncodingType::Utf16 => {
            let units = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]));
            if bytes.chunks_exact(2).all(|c| c[1] == 0 && c[0] < 0x80) {
                // ASCII: one byte per code unit.
                out.extend(bytes.chunks_exact(2).map(|c| c[0] as char));
            } else {
                out.extend(
                    char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)),
                );
            }
        }
        EncodingType::Utf8 => out.push_str(&String::from_utf8_lossy(bytes)),
        other => {
            let encoding = other
                .encoding()
                .unwrap_or(mssql_tds::encoding_rs::WINDOWS_1252);
            out.push_str(&encoding.decode_without_bom_handling(bytes).0);
        }
    }
}

fn decimal(d: &DecimalParts) -> Value<'static> {
    let magnitude = d.magnitude() as i128;
    Value::Decimal(if d.is_positive { magnitude } else { -magnitude }, d.scale)
}

/// `mssql-tds` keeps a time's fraction in 100 ns units, whatever its scale.
fn time_nanos(t: &SqlTime) -> u64 {
    t.time_nanoseconds * 100
}

impl RowWriter for RowInto<'_> {
    fn write_null(&mut self, col: usize) {
        if self.error.is_none()
            && let Some(builder) = self.columns.get_mut(col)
        {
            builder.push_null();
        }
    }
    fn write_bool(&mut self, col: usize, val: bool) {
        self.put(col, Value::Bool(val));
    }
    fn write_u8(&mut self, col: usize, val: u8) {
        self.put(col, Value::U8(val));
    }
    fn write_i16(&mut self, col: usize, val: i16) {
        self.put(col, Value::I16(val));
    }
    fn write_i32(&mut self, col: usize, val: i32) {
        self.put(col, Value::I32(val));
    }
    fn write_i64(&mut self, col: usize, val: i64) {
        self.put(col, Value::I64(val));
    }
    fn write_f32(&mut self, col: usize, val: f32) {
        self.put(col, Value::F32(val));
    }
    fn write_f64(&mut self, col: usize, val: f64) {
        self.put(col, Value::F64(val));
    }
    fn write_string(&mut self, col: usize, bytes: Cow<'_, [u8]>, encoding: EncodingType) {
        let mut text = std::mem::take(self.text);
        transcode(&bytes, &encoding, &mut text);
        self.put(col, Value::Str(&text));
        *self.text = text;
    }
    fn write_bytes(&mut self, col: usize, bytes: Cow<'_, [u8]>) {
        self.put(col, Value::Bytes(&bytes));
    }
    fn write_decimal(&mut self, col: usize, val: DecimalParts) {
        self.put(col, decimal(&val));
    }
    fn write_numeric(&mut self, col: usize, val: DecimalParts) {
        self.put(col, decimal(&val));
    }
    fn write_date(&mut self, col: usize, val: SqlDate) {
        self.put(
            col,
            Value::Date(i64::from(val.get_days()) - DAYS_0001_TO_1970),
        );
    }
    fn write_time(&mut self, col: usize, val: SqlTime) {
        self.put(col, Value::Time(time_nanos(&val)));
    }
    fn write_datetime(&mut self, col: usize, val: SqlDateTime) {
        self.put(
            col,
            Value::Timestamp(datetime_nanos(val.days, val.time), None),
        );
    }
    fn write_smalldatetime(&mut self, col: usize, val: SqlSmallDateTime) {
        self.put(
            col,
            Value::Timestamp(smalldatetime_nanos(val.days, val.time), None),
        );
    }
    fn write_datetime2(&mut self, col: usize, val: SqlDateTime2) {
        self.put(
            col,
            Value::Timestamp(date_time_nanos(val.days, time_nanos(&val.time)), None),
        );
    }
    fn write_datetimeoffset(&mut self, col: usize, val: SqlDateTimeOffset) {
        let dt = &val.datetime2;
        self.put(
            col,
            Value::Timestamp(
                date_time_nanos(dt.days, time_nanos(&dt.time)),
                Some(val.offset),
            ),
        );
    }
    fn write_money(&mut self, col: usize, val: SqlMoney) {
        let cents = (i64::from(val.msb_part) << 32) | i64::from(val.lsb_part as u32);
        self.put(col, Value::Decimal(i128::from(cents), 4));
    }
    fn write_smallmoney(&mut self, col: usize, val: SqlSmallMoney) {
        self.put(col, Value::Decimal(i128::from(val.int_val), 4));
    }
    fn write_uuid(&mut self, col: usize, val: uuid::Uuid) {
        self.put(col, Value::Guid(val));
    }
    fn write_xml(&mut self, col: usize, val: SqlXml) {
        self.put_text(col, val.as_string());
    }
    fn write_json(&mut self, col: usize, val: SqlJson) {
        self.put_text(col, String::from_utf8_lossy(&val.bytes).into_owned());
    }
    fn write_vector(&mut self, col: usize, val: SqlVector) {
        self.put_text(col, format!("{val:?}"));
    }
    fn end_row(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcodes_utf16_ascii_and_not_and_code_pages() {
        let mut out = String::new();
        let utf16 = |s: &str| {
            s.encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<u8>>()
        };
        transcode(&utf16("plain"), &EncodingType::Utf16, &mut out);
        assert_eq!(out, "plain");
        transcode(&utf16("Bogotá ☕ 𝄞"), &EncodingType::Utf16, &mut out);
        assert_eq!(out, "Bogotá ☕ 𝄞");
        transcode(&[0x3D, 0xD8], &EncodingType::Utf16, &mut out);
        assert_eq!(out, "\u{FFFD}", "a lone surrogate");
        transcode("café".as_bytes(), &EncodingType::Utf8, &mut out);
        assert_eq!(out, "café");
    }

    #[test]
    fn money_keeps_every_digit_and_its_sign() {
        let mut columns = vec![ColumnBuilder::new(
            &deltalake::arrow::datatypes::DataType::Decimal128(19, 4),
            2,
            crate::output_types::SubMicrosecond::Truncate,
            false,
        )];
        let mut text = String::new();
        let mut row = RowInto::new(&mut columns, &mut text);
        // -922,337,203,685,477.5808: the smallest money
        row.write_money(
            0,
            SqlMoney {
                lsb_part: 0,
                msb_part: i32::MIN,
            },
        );
        row.write_smallmoney(0, SqlSmallMoney { int_val: -12_345 });
        assert!(row.error.is_none());
        let mut out = Vec::new();
        columns[0].finish_into(&mut out);
        let a = out[0]
            .as_any()
            .downcast_ref::<deltalake::arrow::array::Decimal128Array>()
            .unwrap();
        assert_eq!(a.value(0), i128::from(i64::MIN));
        assert_eq!(a.value(1), -12_345);
    }

    #[test]
    fn a_refused_value_is_kept_with_its_column() {
        let mut columns = vec![ColumnBuilder::new(
            &deltalake::arrow::datatypes::DataType::Int32,
            1,
            crate::output_types::SubMicrosecond::Truncate,
            false,
        )];
        let mut text = String::new();
        let mut row = RowInto::new(&mut columns, &mut text);
        row.write_string(0, Cow::Borrowed(b"x"), EncodingType::Utf8);
        row.write_i32(0, 1);
        let (column, error) = row.error.take().unwrap();
        assert_eq!(column, 0);
        assert!(error.to_string().contains("does not match"), "{error}");
    }
}
