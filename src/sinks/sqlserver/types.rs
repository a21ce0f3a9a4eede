//! SQL Server column types as the sink reads them from INFORMATION_SCHEMA: which Arrow input
//! each accepts, how its values travel, and how it is staged.

use deltalake::arrow::datatypes::DataType;

use crate::mssql::encode::Wire;

/// Character column flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CharKind {
    Char,
    VarChar,
    NChar,
    NVarChar,
}

/// A SQL Server column type as INFORMATION_SCHEMA describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SqlType {
    Bit,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Real,
    Float,
    Decimal {
        numeric: bool,
        precision: u8,
        scale: u8,
    },
    Money,
    SmallMoney,
    Date,
    Time(u8),
    DateTime,
    SmallDateTime,
    DateTime2(u8),
    DateTimeOffset(u8),
    /// `len` in characters; `None` is `max`.
    Chars {
        kind: CharKind,
        len: Option<u32>,
    },
    Text,
    NText,
    Xml,
    /// `len` in bytes; `None` is `max`.
    Bytes {
        fixed: bool,
        len: Option<u32>,
    },
    Image,
    UniqueIdentifier,
    RowVersion,
    Other(String),
}

impl std::fmt::Display for SqlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = |l: &Option<u32>| l.map_or_else(|| "max".to_string(), |n| n.to_string());
        match self {
            SqlType::Bit => f.write_str("bit"),
            SqlType::TinyInt => f.write_str("tinyint"),
            SqlType::SmallInt => f.write_str("smallint"),
            SqlType::Int => f.write_str("int"),
            SqlType::BigInt => f.write_str("bigint"),
            SqlType::Real => f.write_str("real"),
            SqlType::Float => f.write_str("float"),
            SqlType::Decimal {
                numeric,
                precision,
                scale,
            } => write!(
                f,
                "{}({precision},{scale})",
                if *numeric { "numeric" } else { "decimal" }
            ),
            SqlType::Money => f.write_str("money"),
            SqlType::SmallMoney => f.write_str("smallmoney"),
            SqlType::Date => f.write_str("date"),
            SqlType::Time(n) => write!(f, "time({n})"),
            SqlType::DateTime => f.write_str("datetime"),
            SqlType::SmallDateTime => f.write_str("smalldatetime"),
            SqlType::DateTime2(n) => write!(f, "datetime2({n})"),
            SqlType::DateTimeOffset(n) => write!(f, "datetimeoffset({n})"),
            SqlType::Chars { kind, len: l } => {
                let name = match kind {
                    CharKind::Char => "char",
                    CharKind::VarChar => "varchar",
                    CharKind::NChar => "nchar",
                    CharKind::NVarChar => "nvarchar",
                };
                write!(f, "{name}({})", len(l))
            }
            SqlType::Text => f.write_str("text"),
            SqlType::NText => f.write_str("ntext"),
            SqlType::Xml => f.write_str("xml"),
            SqlType::Bytes { fixed, len: l } => {
                write!(
                    f,
                    "{}({})",
                    if *fixed { "binary" } else { "varbinary" },
                    len(l)
                )
            }
            SqlType::Image => f.write_str("image"),
            SqlType::UniqueIdentifier => f.write_str("uniqueidentifier"),
            SqlType::RowVersion => f.write_str("rowversion"),
            SqlType::Other(name) => f.write_str(name),
        }
    }
}

impl SqlType {
    /// The type of an INFORMATION_SCHEMA.COLUMNS row (`DATA_TYPE` in lower case).
    pub(super) fn from_information_schema(
        data_type: &str,
        char_len: Option<i64>,
        precision: Option<i64>,
        scale: Option<i64>,
        dt_precision: Option<i64>,
    ) -> SqlType {
        let small =
            |v: Option<i64>, default: u8| v.and_then(|v| u8::try_from(v).ok()).unwrap_or(default);
        let len = char_len.and_then(|l| u32::try_from(l).ok());
        let fraction = small(dt_precision, 7).min(7);
        match data_type {
            "bit" => SqlType::Bit,
            "tinyint" => SqlType::TinyInt,
            "smallint" => SqlType::SmallInt,
            "int" => SqlType::Int,
            "bigint" => SqlType::BigInt,
            "real" => SqlType::Real,
            "float" if precision.is_some_and(|p| p <= 24) => SqlType::Real,
            "float" => SqlType::Float,
            "decimal" | "numeric" => SqlType::Decimal {
                numeric: data_type == "numeric",
                precision: small(precision, 18),
                scale: small(scale, 0),
            },
            "money" => SqlType::Money,
            "smallmoney" => SqlType::SmallMoney,
            "date" => SqlType::Date,
            "time" => SqlType::Time(fraction),
            "datetime" => SqlType::DateTime,
            "smalldatetime" => SqlType::SmallDateTime,
            "datetime2" => SqlType::DateTime2(fraction),
            "datetimeoffset" => SqlType::DateTimeOffset(fraction),
            "char" | "varchar" | "nchar" | "nvarchar" | "sysname" => SqlType::Chars {
                kind: match data_type {
                    "char" => CharKind::Char,
                    "varchar" => CharKind::VarChar,
                    "nchar" => CharKind::NChar,
                    _ => CharKind::NVarChar,
                },
                len: if data_type == "sysname" {
                    Some(128)
                } else {
                    len
                },
            },
            "text" => SqlType::Text,
            "ntext" => SqlType::NText,
            "xml" => SqlType::Xml,
            "binary" | "varbinary" => SqlType::Bytes {
                fixed: data_type == "binary",
                len,
            },
            "image" => SqlType::Image,
            "uniqueidentifier" => SqlType::UniqueIdentifier,
            "timestamp" | "rowversion" => SqlType::RowVersion,
            other => SqlType::Other(other.to_string()),
        }
    }

    /// How values are sent in a bulk load; `None` if the sink cannot write this type.
    pub(super) fn wire(&self) -> Option<Wire> {
        Some(match self {
            SqlType::Bit => Wire::Bit,
            SqlType::TinyInt => Wire::U8,
            SqlType::SmallInt => Wire::I16,
            SqlType::Int => Wire::I32,
            SqlType::BigInt => Wire::I64,
            SqlType::Real => Wire::F32,
            SqlType::Float => Wire::F64,
            // tiberius' Numeric cannot carry 38 decimals.
            SqlType::Decimal {
                precision, scale, ..
            } if *scale < 38 && *precision <= 38 => Wire::Numeric {
                precision: *precision,
                scale: *scale,
            },
            SqlType::Decimal { .. } => return None,
            SqlType::Money => Wire::Numeric {
                precision: 19,
                scale: 4,
            },
            SqlType::SmallMoney => Wire::Numeric {
                precision: 10,
                scale: 4,
            },
            SqlType::Date => Wire::Date,
            SqlType::Time(n) => Wire::Time(*n),
            SqlType::DateTime => Wire::DateTime,
            SqlType::SmallDateTime => Wire::SmallDateTime,
            SqlType::DateTime2(n) => Wire::DateTime2(*n),
            SqlType::DateTimeOffset(n) => Wire::DateTimeOffset(*n),
            SqlType::Chars { kind, len } => Wire::Str {
                max_chars: *len,
                unicode: matches!(kind, CharKind::NChar | CharKind::NVarChar),
                code_page: None,
            },
            SqlType::Text => Wire::Str {
                max_chars: None,
                unicode: false,
                code_page: None,
            },
            SqlType::NText | SqlType::Xml => Wire::Str {
                max_chars: None,
                unicode: true,
                code_page: None,
            },
            SqlType::Bytes { len, .. } => Wire::Bytes { max: *len },
            SqlType::Image => Wire::Bytes { max: None },
            SqlType::UniqueIdentifier => Wire::Guid,
            SqlType::RowVersion | SqlType::Other(_) => return None,
        })
    }

    /// Whether input of this Arrow type may be written to a column of this type.
    pub(super) fn accepts(&self, input: &DataType) -> bool {
        use DataType as A;
        let integer = matches!(
            input,
            A::Int8 | A::Int16 | A::Int32 | A::Int64 | A::UInt8 | A::UInt16 | A::UInt32 | A::UInt64
        );
        let numeric_target = matches!(
            self,
            SqlType::Decimal { .. } | SqlType::Money | SqlType::SmallMoney
        );
        match input {
            A::Null => self.wire().is_some(),
            A::Boolean => *self == SqlType::Bit,
            _ if integer => {
                numeric_target
                    || matches!(
                        self,
                        SqlType::TinyInt
                            | SqlType::SmallInt
                            | SqlType::Int
                            | SqlType::BigInt
                            | SqlType::Real
                            | SqlType::Float
                    )
            }
            A::Float32 | A::Float64 => {
                numeric_target || matches!(self, SqlType::Real | SqlType::Float)
            }
            A::Decimal128(..) => numeric_target,
            A::Utf8 | A::LargeUtf8 | A::Utf8View => matches!(
                self,
                SqlType::Chars { .. }
                    | SqlType::Text
                    | SqlType::NText
                    | SqlType::Xml
                    | SqlType::UniqueIdentifier
            ),
            A::Binary | A::LargeBinary | A::BinaryView | A::FixedSizeBinary(_) => {
                matches!(self, SqlType::Bytes { .. } | SqlType::Image)
            }
            A::Date32 | A::Date64 => matches!(
                self,
                SqlType::Date | SqlType::DateTime | SqlType::DateTime2(_) | SqlType::SmallDateTime
            ),
            A::Timestamp(..) => matches!(
                self,
                SqlType::DateTime
                    | SqlType::DateTime2(_)
                    | SqlType::DateTimeOffset(_)
                    | SqlType::SmallDateTime
            ),
            A::Time32(_) | A::Time64(_) => matches!(self, SqlType::Time(_)),
            _ => false,
        }
    }

    /// The column type of the staging table: the target's, or one tiberius can bulk-load that
    /// converts to it exactly.
    pub(super) fn stage_type(&self) -> String {
        match self {
            SqlType::Money => "decimal(19,4)".to_string(),
            SqlType::SmallMoney => "decimal(10,4)".to_string(),
            SqlType::Text => "varchar(max)".to_string(),
            SqlType::NText | SqlType::Xml => "nvarchar(max)".to_string(),
            SqlType::Image => "varbinary(max)".to_string(),
            other => other.to_string(),
        }
    }

    /// Whether tiberius bulk-loads this column type correctly straight into the table (its
    /// `INSERT BULK` text omits the scale of time/datetimeoffset, doubles n(var)char lengths and
    /// cannot encode money, text, ntext, xml or image).
    pub(super) fn direct_bulk_ok(&self) -> bool {
        match self {
            SqlType::Money
            | SqlType::SmallMoney
            | SqlType::Text
            | SqlType::NText
            | SqlType::Xml
            | SqlType::Image
            | SqlType::RowVersion
            | SqlType::Other(_) => false,
            SqlType::Time(n) | SqlType::DateTimeOffset(n) => *n == 7,
            SqlType::Chars {
                kind: CharKind::NChar | CharKind::NVarChar,
                len: Some(n),
            } => *n <= 2000,
            _ => self.wire().is_some(),
        }
    }
}
