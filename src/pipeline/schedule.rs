//! Cron schedules of pipelines (`schedule:`), run by `bridge serve`.
//! Five fields (minute to weekday) or six (with seconds first), evaluated in UTC.

use chrono::{DateTime, Utc};

/// Why a `schedule:` expression is not a cron expression.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// Not 5 or 6 fields.
    #[error(
        "`{expr}` is not a cron expression: expected 5 fields (minute hour day month weekday) or \
         6 (seconds first), found {fields}"
    )]
    FieldCount { expr: String, fields: usize },
    /// A field croner refuses.
    #[error("`{expr}` is not a cron expression: {source}")]
    Cron {
        expr: String,
        #[source]
        source: croner::errors::CronError,
    },
}

/// A parsed `schedule:` expression.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: croner::Cron,
}

impl Schedule {
    /// Parses a cron expression; the error says what is wrong with it.
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let fields = expr.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(ScheduleError::FieldCount {
                expr: expr.to_string(),
                fields,
            });
        }
        let cron = expr
            .parse::<croner::Cron>()
            .map_err(|source| ScheduleError::Cron {
                expr: expr.to_string(),
                source,
            })?;
        Ok(Schedule {
            expr: expr.to_string(),
            cron,
        })
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The first time strictly after `after` that the schedule fires.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn five_and_six_fields() {
        let daily = Schedule::parse("30 2 * * *").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 3, 0, 0).unwrap();
        assert_eq!(
            daily.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 1, 2, 2, 30, 0).unwrap())
        );
        let every_2s = Schedule::parse("*/2 * * * * *").unwrap();
        assert_eq!(
            every_2s.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 3, 0, 2).unwrap())
        );
    }

    #[test]
    fn bad_expressions_say_why() {
        let e = Schedule::parse("every day").unwrap_err();
        assert!(
            matches!(e, ScheduleError::FieldCount { fields: 2, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("5 fields"), "{e}");
        let e = Schedule::parse("61 * * * *").unwrap_err();
        assert!(matches!(e, ScheduleError::Cron { .. }), "{e}");
        assert!(e.to_string().contains("not a cron"), "{e}");
    }
}
