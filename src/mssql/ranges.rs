//! SQL Server's value ranges for the types the `sqlserver` sink writes (integers, dates and
//! date-times, decimals, code pages of `char`/`varchar`), with the one set of date constants, and
//! the text that names an out-of-range value in an error (dates of any year, decimals).

use std::ops::RangeInclusive;

/// Days from 0001-01-01 to 1970-01-01.
pub const DAYS_0001_TO_1970: i64 = 719_162;
/// Days from 1900-01-01 to 1970-01-01.
pub const DAYS_1900_TO_1970: i64 = 25_567;
/// `date`, `datetime2` and `datetimeoffset` days: 0001-01-01 to 9999-12-31, counted from 0001-01-01.
pub const DATE_DAYS: RangeInclusive<i64> = 0..=3_652_058;
/// `datetime` days: 1753-01-01 to 9999-12-31, counted from 1900-01-01.
pub const DATETIME_DAYS: RangeInclusive<i64> = -53_690..=2_958_463;
/// `smalldatetime` days: 1900-01-01 to 2079-06-06, counted from 1900-01-01.
pub const SMALLDATETIME_DAYS: RangeInclusive<i64> = 0..=65_535;
/// Nanoseconds in a day.
pub const NANOS_PER_DAY: i128 = 86_400_000_000_000;

/// The range of `date`, as SQL Server documents it.
pub const DATE_RANGE: &str = "0001-01-01 to 9999-12-31";
/// The range of `datetime2` and `datetimeoffset` (as UTC).
pub const DATETIME2_RANGE: &str = "0001-01-01 00:00:00 to 9999-12-31 23:59:59.9999999";
/// The range of `datetime`.
pub const DATETIME_RANGE: &str = "1753-01-01 00:00:00 to 9999-12-31 23:59:59.997";
/// The range of `smalldatetime`.
pub const SMALLDATETIME_RANGE: &str = "1900-01-01 00:00 to 2079-06-06 23:59";

/// Most digits a `decimal`/`numeric` holds.
pub const MAX_DECIMAL_PRECISION: u8 = 38;

/// The range of an integer type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntRange {
    pub name: &'static str,
    pub min: i128,
    pub max: i128,
}

impl IntRange {
    /// `value` if the type holds it, else an error naming the value and the range.
    pub fn check(&self, value: i128) -> Result<i128, OutOfIntRange> {
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(OutOfIntRange {
                value,
                range: *self,
            })
        }
    }
}

/// An integer its SQL Server type cannot hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{value} is out of range for {} ({} to {})", range.name, range.min, range.max)]
pub struct OutOfIntRange {
    pub value: i128,
    pub range: IntRange,
}

pub const TINYINT: IntRange = IntRange {
    name: "tinyint",
    min: 0,
    max: 255,
};
pub const SMALLINT: IntRange = IntRange {
    name: "smallint",
    min: i16::MIN as i128,
    max: i16::MAX as i128,
};
pub const INT: IntRange = IntRange {
    name: "int",
    min: i32::MIN as i128,
    max: i32::MAX as i128,
};
pub const BIGINT: IntRange = IntRange {
    name: "bigint",
    min: i64::MIN as i128,
    max: i64::MAX as i128,
};

/// The encoding of a SQL Server code page (`COLLATIONPROPERTY(c, 'CodePage')`) for `char`,
/// `varchar` and `text`, or `None` for code pages this table does not know (the value is then
/// checked only by the driver when it encodes it).
pub fn code_page_encoding(code_page: u16) -> Option<&'static encoding_rs::Encoding> {
    use encoding_rs as e;
    Some(match code_page {
        874 => e::WINDOWS_874,
        932 => e::SHIFT_JIS,
        936 => e::GBK,
        949 => e::EUC_KR,
        950 => e::BIG5,
        1250 => e::WINDOWS_1250,
        1251 => e::WINDOWS_1251,
        1252 => e::WINDOWS_1252,
        1253 => e::WINDOWS_1253,
        1254 => e::WINDOWS_1254,
        1255 => e::WINDOWS_1255,
        1256 => e::WINDOWS_1256,
        1257 => e::WINDOWS_1257,
        1258 => e::WINDOWS_1258,
        65001 => e::UTF_8,
        _ => return None,
    })
}

/// The bytes `text` takes in `encoding`, or the first character it cannot represent.
pub fn encoded_len(text: &str, encoding: &'static encoding_rs::Encoding) -> Result<usize, char> {
    // Every code page SQL Server uses for char/varchar keeps ASCII as it is.
    if text.is_ascii() || encoding == encoding_rs::UTF_8 {
        return Ok(text.len());
    }
    let mut encoder = encoding.new_encoder();
    let mut out = Vec::with_capacity(
        encoder
            .max_buffer_length_from_utf8_without_replacement(text.len())
            .unwrap_or(text.len() * 4),
    );
    let (result, read) = encoder.encode_from_utf8_to_vec_without_replacement(text, &mut out, true);
    match result {
        encoding_rs::EncoderResult::InputEmpty => Ok(out.len()),
        encoding_rs::EncoderResult::Unmappable(c) => Err(c),
        // The buffer was sized for the worst case; report the next character if it were not.
        encoding_rs::EncoderResult::OutputFull => Err(text[read..].chars().next().unwrap_or('?')),
    }
}

/// Year, month and day of a day counted from 1970-01-01, for any year (proleptic Gregorian).
pub fn civil_date(days_since_1970: i64) -> (i64, u32, u32) {
    // Howard Hinnant's `civil_from_days`, in i128 so that no input overflows.
    let z = i128::from(days_since_1970) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i128::from(month <= 2);
    (year as i64, month, day)
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01; years outside 0..=9999 are written in full
/// (`-0001-12-31`, `10000-01-01`).
pub fn date_text(days_since_1970: i64) -> String {
    let (y, m, d) = civil_date(days_since_1970);
    if y < 0 {
        format!("-{:04}-{m:02}-{d:02}", -y)
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

/// `YYYY-MM-DD HH:MM:SS[.fffffffff]` of nanoseconds since 1970-01-01 (fraction digits only as
/// many as needed, at most 9).
pub fn timestamp_text(nanos_since_1970: i128) -> String {
    let days = nanos_since_1970.div_euclid(NANOS_PER_DAY);
    let of_day = nanos_since_1970.rem_euclid(NANOS_PER_DAY);
    let date = match i64::try_from(days) {
        Ok(d) => date_text(d),
        Err(_) => format!("{days} days from 1970-01-01"),
    };
    format!("{date} {}", time_text(of_day as i64))
}

/// `HH:MM:SS[.fffffffff]` of nanoseconds since midnight (fraction digits only as needed).
pub fn time_text(nanos_of_day: i64) -> String {
    let secs = nanos_of_day.div_euclid(1_000_000_000);
    let frac = nanos_of_day.rem_euclid(1_000_000_000);
    let mut text = format!("{:02}:{:02}:{:02}", secs / 3_600, secs / 60 % 60, secs % 60);
    if frac != 0 {
        let digits = format!("{frac:09}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    text
}

/// A decimal of `value` × 10^-`scale` (`-12.340`, `1200` for scale -2).
pub fn decimal_text(value: i128, scale: i8) -> String {
    if scale <= 0 {
        return format!("{value}{}", "0".repeat(scale.unsigned_abs() as usize));
    }
    let digits = format!(
        "{:0>width$}",
        value.unsigned_abs(),
        width = scale as usize + 1
    );
    let (int, frac) = digits.split_at(digits.len() - scale as usize);
    format!("{}{int}.{frac}", if value < 0 { "-" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_of_any_year() {
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(date_text(-DAYS_0001_TO_1970), "0001-01-01");
        assert_eq!(date_text(-DAYS_0001_TO_1970 - 1), "0000-12-31");
        assert_eq!(date_text(-DAYS_0001_TO_1970 - 367), "-0001-12-31");
        let last = *DATE_DAYS.end() - DAYS_0001_TO_1970;
        assert_eq!(date_text(last), "9999-12-31");
        assert_eq!(date_text(last + 1), "10000-01-01");
        assert_eq!(date_text(19_782), "2024-02-29");
        assert_eq!(
            date_text(*DATETIME_DAYS.start() - DAYS_1900_TO_1970),
            "1753-01-01"
        );
        assert_eq!(
            date_text(*SMALLDATETIME_DAYS.end() - DAYS_1900_TO_1970),
            "2079-06-06"
        );
        // Every day of four centuries round-trips through the month lengths.
        let mut expected = (1600i64, 1u32, 1u32);
        let start = -DAYS_0001_TO_1970 + 584_022; // 1600-01-01
        for d in start..start + 146_097 {
            assert_eq!(civil_date(d), expected, "day {d}");
            let (y, m, day) = expected;
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let len = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ][m as usize - 1];
            expected = if day < len {
                (y, m, day + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
        // No input overflows.
        assert!((1..=12).contains(&civil_date(i64::MIN).1));
        assert!((1..=12).contains(&civil_date(i64::MAX).1));
    }

    #[test]
    fn timestamps_and_decimals_as_text() {
        assert_eq!(
            timestamp_text(NANOS_PER_DAY + 1_500),
            "1970-01-02 00:00:00.0000015"
        );
        assert_eq!(timestamp_text(-1), "1969-12-31 23:59:59.999999999");
        assert_eq!(time_text(3_600_000_000_000), "01:00:00");
        assert_eq!(decimal_text(-5, 3), "-0.005");
        assert_eq!(decimal_text(12, -2), "1200");
        assert_eq!(decimal_text(123_456, 2), "1234.56");
    }

    #[test]
    fn integer_ranges_and_code_pages() {
        assert_eq!(TINYINT.check(255), Ok(255));
        assert_eq!(
            TINYINT.check(-1).unwrap_err().to_string(),
            "-1 is out of range for tinyint (0 to 255)"
        );
        assert!(SMALLINT.check(32_768).is_err());
        assert!(BIGINT.check(i128::from(u64::MAX)).is_err());
        let cp1252 = code_page_encoding(1252).unwrap();
        assert_eq!(encoded_len("São Paulo", cp1252), Ok(9));
        assert_eq!(encoded_len("Zürich €", cp1252), Ok(8));
        assert_eq!(encoded_len("東京", cp1252), Err('東'));
        assert_eq!(encoded_len("😀", cp1252), Err('😀'));
        assert_eq!(encoded_len("東京", code_page_encoding(932).unwrap()), Ok(4));
        assert_eq!(
            encoded_len("東京", code_page_encoding(65001).unwrap()),
            Ok(6)
        );
        assert!(code_page_encoding(437).is_none());
    }
}
