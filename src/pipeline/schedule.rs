//! Cron schedules of pipelines (`schedule:`), run by `bridge serve`.
//! Five fields (minute to weekday) or six (with seconds first), evaluated in UTC.

use chrono::{DateTime, Utc};

/// A parsed `schedule:` expression.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: croner::Cron,
}

impl Schedule {
    /// Parses a cron expression; the error says what is wrong with it.
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let fields = expr.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "`{expr}` is not a cron expression: expected 5 fields (minute hour day month weekday) or 6 (seconds first), found {fields}"
            ));
        }
        let cron = expr
            .parse::<croner::Cron>()
            .map_err(|e| format!("`{expr}` is not a cron expression: {e}"))?;
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
        assert!(
            Schedule::parse("every day")
                .unwrap_err()
                .contains("5 fields")
        );
        assert!(
            Schedule::parse("61 * * * *")
                .unwrap_err()
                .contains("not a cron")
        );
    }
}
