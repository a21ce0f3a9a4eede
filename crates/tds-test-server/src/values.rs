//! Exact decimal, date/time and GUID helpers shared by the encoders and decoders.
//! All text formats here are the SQLite storage formats documented in the crate root.

/// 100-nanosecond ticks in one day.
pub(crate) const TICKS_PER_DAY: u64 = 864_000_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of `days_from_civil`.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days from 0001-01-01 to 1970-01-01.
pub(crate) const EPOCH_0001: i64 = 719_162;
/// Days from 1900-01-01 to 1970-01-01.
pub(crate) const EPOCH_1900: i64 = 25_567;

/// A parsed date/time: days since 0001-01-01, ticks (100 ns) since midnight, optional offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Temporal {
    pub days: i64,
    pub ticks: u64,
    pub offset_min: Option<i16>,
}

fn digits(s: &[u8], n: usize) -> Option<u32> {
    if s.len() < n || !s[..n].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s[..n].iter().fold(0u32, |a, b| a * 10 + (b - b'0') as u32))
}

/// Parse `HH:MM[:SS[.fffffff]]`; returns ticks and the number of bytes consumed.
fn parse_time_part(s: &[u8]) -> Option<(u64, usize)> {
    let h = digits(s, 2)?;
    if s.get(2) != Some(&b':') {
        return None;
    }
    let mi = digits(&s[3..], 2)?;
    let mut pos = 5;
    let mut sec = 0;
    let mut frac: u64 = 0;
    if s.get(pos) == Some(&b':') {
        sec = digits(&s[pos + 1..], 2)?;
        pos += 3;
        if s.get(pos) == Some(&b'.') {
            pos += 1;
            let mut nd = 0;
            while pos < s.len() && s[pos].is_ascii_digit() {
                if nd < 7 {
                    frac = frac * 10 + (s[pos] - b'0') as u64;
                    nd += 1;
                }
                pos += 1;
            }
            while nd < 7 {
                frac *= 10;
                nd += 1;
            }
        }
    }
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let ticks = ((h as u64 * 60 + mi as u64) * 60 + sec as u64) * 10_000_000 + frac;
    Some((ticks, pos))
}

/// Parse the date/time text formats accepted as storage: `YYYY-MM-DD`, `YYYYMMDD`,
/// optional `[ T]HH:MM[:SS[.f…]]`, optional ` +HH:MM`/`Z`; or a bare time `HH:MM[:SS[.f…]]`.
pub(crate) fn parse_temporal(text: &str) -> Option<Temporal> {
    let s = text.trim().as_bytes();
    if s.len() >= 5 && s[2] == b':' {
        let (ticks, used) = parse_time_part(s)?;
        if used != s.len() {
            return None;
        }
        return Some(Temporal {
            days: 0,
            ticks,
            offset_min: None,
        });
    }
    let (y, m, d, mut pos) = if s.len() >= 10 && s[4] == b'-' && s[7] == b'-' {
        (digits(s, 4)?, digits(&s[5..], 2)?, digits(&s[8..], 2)?, 10)
    } else {
        (digits(s, 4)?, digits(&s[4..], 2)?, digits(&s[6..], 2)?, 8)
    };
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y as i64, m) || y == 0 {
        return None;
    }
    let days = days_from_civil(y as i64, m, d) + EPOCH_0001;
    let mut ticks = 0;
    if pos < s.len() && (s[pos] == b' ' || s[pos] == b'T') {
        let rest = &s[pos + 1..];
        if rest.len() >= 5 && rest[2] == b':' {
            let (t, used) = parse_time_part(rest)?;
            ticks = t;
            pos += 1 + used;
        }
    }
    while pos < s.len() && s[pos] == b' ' {
        pos += 1;
    }
    let mut offset_min = None;
    if pos < s.len() {
        match s[pos] {
            b'Z' | b'z' if pos + 1 == s.len() => offset_min = Some(0),
            b'+' | b'-' => {
                let sign: i16 = if s[pos] == b'-' { -1 } else { 1 };
                let r = &s[pos + 1..];
                let oh = digits(r, 2)?;
                let om = if r.get(2) == Some(&b':') {
                    digits(&r[3..], 2)?
                } else {
                    digits(&r[2..], 2)?
                };
                let used = if r.get(2) == Some(&b':') { 5 } else { 4 };
                if used != r.len() || oh > 14 || om > 59 {
                    return None;
                }
                offset_min = Some(sign * (oh as i16 * 60 + om as i16));
            }
            _ => return None,
        }
    }
    Some(Temporal {
        days,
        ticks,
        offset_min,
    })
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// `YYYY-MM-DD` of days since 0001-01-01.
pub(crate) fn fmt_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days - EPOCH_0001);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `HH:MM:SS.fffffff` of ticks since midnight.
pub(crate) fn fmt_time(ticks: u64) -> String {
    let secs = ticks / 10_000_000;
    let frac = ticks % 10_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:07}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        frac
    )
}

/// `YYYY-MM-DD HH:MM:SS.fffffff`.
pub(crate) fn fmt_datetime(days: i64, ticks: u64) -> String {
    use std::fmt::Write;
    let (y, m, d) = civil_from_days(days - EPOCH_0001);
    let secs = ticks / 10_000_000;
    let mut s = String::with_capacity(27);
    let _ = write!(
        s,
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:07}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        ticks % 10_000_000
    );
    s
}

/// `+HH:MM` / `-HH:MM`.
pub(crate) fn fmt_offset(min: i16) -> String {
    let sign = if min < 0 { '-' } else { '+' };
    let a = min.unsigned_abs();
    format!("{sign}{:02}:{:02}", a / 60, a % 60)
}

/// Round ticks to `scale` fractional digits; returns (days carry, rounded ticks in 100 ns units).
pub(crate) fn round_ticks(ticks: u64, scale: u8) -> (i64, u64) {
    let unit = 10u64.pow(7 - scale.min(7) as u32);
    let r = (ticks + unit / 2) / unit * unit;
    if r >= TICKS_PER_DAY {
        (1, r - TICKS_PER_DAY)
    } else {
        (0, r)
    }
}

/// Parse a decimal literal (`-12.5`, `1e3`, ` 7 `) into (mantissa, scale).
pub(crate) fn parse_decimal(text: &str) -> Option<(i128, u32)> {
    let s = text.trim();
    let (neg, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (num, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
        None => (s, 0),
    };
    let (int_part, frac_part) = match num.find('.') {
        Some(i) => (&num[..i], &num[i + 1..]),
        None => (num, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let mut m: i128 = 0;
    for c in int_part.bytes().chain(frac_part.bytes()) {
        if !c.is_ascii_digit() {
            return None;
        }
        m = m.checked_mul(10)?.checked_add((c - b'0') as i128)?;
    }
    let mut scale = frac_part.len() as i32 - exp;
    while scale < 0 {
        m = m.checked_mul(10)?;
        scale += 1;
    }
    Some((if neg { -m } else { m }, scale as u32))
}

/// Change the scale of a decimal mantissa, rounding half away from zero.
pub(crate) fn rescale(m: i128, from: u32, to: u32) -> Option<i128> {
    if to >= from {
        m.checked_mul(10i128.checked_pow(to - from)?)
    } else {
        let div = 10i128.checked_pow(from - to)?;
        let q = m / div;
        let r = (m % div).abs();
        Some(if r * 2 >= div { q + m.signum() } else { q })
    }
}

/// Number of decimal digits of |m| (at least 1).
pub(crate) fn digit_count(m: i128) -> u32 {
    let mut n = m.unsigned_abs();
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Render a decimal mantissa with `scale` fractional digits.
pub(crate) fn fmt_decimal(m: i128, scale: u32) -> String {
    let digits = m.unsigned_abs().to_string();
    let sign = if m < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let scale = scale as usize;
    let padded = if digits.len() <= scale {
        format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits)
    } else {
        digits
    };
    let (i, f) = padded.split_at(padded.len() - scale);
    format!("{sign}{i}.{f}")
}

/// Parse a GUID in canonical text form (braces optional) into its 16 big-endian bytes.
pub(crate) fn parse_guid(text: &str) -> Option<[u8; 16]> {
    let s = text.trim().trim_start_matches('{').trim_end_matches('}');
    let hex: Vec<u8> = s.bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 || s.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let txt = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(txt, 16).ok()?;
    }
    Some(out)
}

/// Uppercase canonical text of 16 big-endian GUID bytes.
pub(crate) fn fmt_guid(b: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEX[(x >> 4) as usize] as char);
        s.push(HEX[(x & 15) as usize] as char);
    }
    s
}

/// Swap between big-endian GUID bytes and the mixed-endian wire order (self-inverse).
pub(crate) fn guid_swap(mut b: [u8; 16]) -> [u8; 16] {
    b.swap(0, 3);
    b.swap(1, 2);
    b.swap(4, 5);
    b.swap(6, 7);
    b
}

const CP1252_HIGH: [u16; 32] = [
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
    0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
];

/// Encode text as Windows-1252 (the code page of the varchar collation); unmappable chars become `?`.
pub(crate) fn to_cp1252(s: &str, out: &mut Vec<u8>) {
    for c in s.chars() {
        let u = c as u32;
        let b = if u < 0x80 || (0xA0..=0xFF).contains(&u) {
            u as u8
        } else {
            CP1252_HIGH
                .iter()
                .position(|x| *x as u32 == u)
                .map(|i| 0x80 + i as u8)
                .unwrap_or(b'?')
        };
        out.push(b);
    }
}

/// Decode Windows-1252 bytes.
pub(crate) fn from_cp1252(b: &[u8]) -> String {
    b.iter()
        .map(|&x| {
            if (0x80..0xA0).contains(&x) {
                char::from_u32(CP1252_HIGH[(x - 0x80) as usize] as u32).unwrap_or('?')
            } else {
                x as char
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for d in [-800_000i64, -1, 0, 1, 19_000, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(days_from_civil(1, 1, 1), -EPOCH_0001);
        assert_eq!(days_from_civil(1900, 1, 1), -EPOCH_1900);
    }

    #[test]
    fn temporal_parse() {
        let t = parse_temporal("2024-02-29 13:14:15.1234567 +05:30").unwrap();
        assert_eq!(fmt_datetime(t.days, t.ticks), "2024-02-29 13:14:15.1234567");
        assert_eq!(t.offset_min, Some(330));
        assert_eq!(
            parse_temporal("20240102").unwrap().days,
            parse_temporal("2024-01-02").unwrap().days
        );
        assert_eq!(parse_temporal("01:02:03.5").unwrap().ticks, 37_235_000_000);
        assert!(parse_temporal("2023-02-29").is_none());
        assert!(parse_temporal("hello").is_none());
    }

    #[test]
    fn datetime_text_is_date_space_time() {
        for (days, ticks) in [
            (0, 0),
            (EPOCH_1900, 1),
            (738_944, TICKS_PER_DAY - 1),
            (3_652_058, 5),
        ] {
            assert_eq!(
                fmt_datetime(days, ticks),
                format!("{} {}", fmt_date(days), fmt_time(ticks))
            );
        }
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal("-12.50"), Some((-1250, 2)));
        assert_eq!(parse_decimal("1e3"), Some((1000, 0)));
        assert_eq!(rescale(-1255, 2, 1), Some(-126));
        assert_eq!(fmt_decimal(-5, 3), "-0.005");
        assert_eq!(fmt_decimal(123_450, 2), "1234.50");
        assert_eq!(digit_count(-999), 3);
    }

    #[test]
    fn guid_and_cp1252() {
        let g = parse_guid("{0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0}").unwrap();
        assert_eq!(fmt_guid(&g), "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0");
        let mut out = Vec::new();
        to_cp1252("a€é日", &mut out);
        assert_eq!(out, vec![b'a', 0x80, 0xE9, b'?']);
        assert_eq!(from_cp1252(&out), "a€é?");
    }
}
