//! Audit lines of refused authentication (no or unknown token), bounded: such a request costs
//! the sender nothing, so its line must not cost the server an unbounded fsync and log growth.
//! A token bucket lets [`REFUSED_AUTH_BURST`] lines through at once and
//! [`REFUSED_AUTH_PER_SECOND`] a second after that; refusals beyond it are counted, not written,
//! and one summary line "N more refused requests suppressed" records them before the next line
//! that is written, or within a second ([`RefusedAuthLog::flush`]). Each line's request text
//! (method and path) is cut to [`MAX_REQUEST_TEXT`] bytes. The 401 answer is the same either way.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::error::Result;
use crate::server::audit::{AuditEntry, AuditLog, AuditResult};

/// Refused-auth lines written a second, sustained.
pub const REFUSED_AUTH_PER_SECOND: f64 = 10.0;
/// Refused-auth lines written at once after a quiet spell.
pub const REFUSED_AUTH_BURST: f64 = 10.0;
/// The longest request text (method and path) kept in a line, in bytes.
pub const MAX_REQUEST_TEXT: usize = 200;

/// The `request_id` of summary lines.
pub const SUMMARY_REQUEST_ID: &str = "suppressed";

struct Bucket {
    tokens: f64,
    refilled: Instant,
    suppressed: u64,
}

/// Writes refused-auth audit lines within the rate (see the module docs).
pub struct RefusedAuthLog {
    audit: Arc<AuditLog>,
    bucket: Mutex<Bucket>,
    per_second: f64,
    burst: f64,
}

/// What [`RefusedAuthLog::take`] decided for one refusal.
enum Decision {
    /// Write the line, after a summary of this many suppressed ones (when not 0).
    Write { suppressed_before: u64 },
    /// Counted only.
    Suppress,
}

impl RefusedAuthLog {
    pub fn new(audit: Arc<AuditLog>) -> RefusedAuthLog {
        RefusedAuthLog::with_rate(audit, REFUSED_AUTH_PER_SECOND, REFUSED_AUTH_BURST)
    }

    /// A log letting `burst` lines through at once and `per_second` after that.
    pub fn with_rate(audit: Arc<AuditLog>, per_second: f64, burst: f64) -> RefusedAuthLog {
        RefusedAuthLog {
            audit,
            bucket: Mutex::new(Bucket {
                tokens: burst,
                refilled: Instant::now(),
                suppressed: 0,
            }),
            per_second,
            burst,
        }
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take(&self) -> Decision {
        let mut bucket = self.bucket();
        let now = Instant::now();
        let earned = now.duration_since(bucket.refilled).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + earned).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Decision::Write {
                suppressed_before: std::mem::take(&mut bucket.suppressed),
            }
        } else {
            bucket.suppressed += 1;
            Decision::Suppress
        }
    }

    /// Records one refused request whose request text is `request` (e.g. `GET /jobs`), when
    /// the rate allows; blocking (it may sync the audit log): call it in `spawn_blocking`.
    pub fn record(&self, request_id: String, refusal: &str, request: &str) -> Result<()> {
        let Decision::Write { suppressed_before } = self.take() else {
            return Ok(());
        };
        if suppressed_before > 0 {
            self.write_summary(suppressed_before)?;
        }
        self.audit.append(&AuditEntry {
            request_id,
            action: "auth".into(),
            result: AuditResult::Refused,
            error: Some(format!(
                "{refusal} for {}",
                truncate(request, MAX_REQUEST_TEXT)
            )),
            ..AuditEntry::default()
        })
    }

    /// Writes the summary of refusals suppressed since the last line, if any; blocking. The
    /// server calls it every second.
    pub fn flush(&self) -> Result<()> {
        let suppressed = std::mem::take(&mut self.bucket().suppressed);
        if suppressed == 0 {
            return Ok(());
        }
        self.write_summary(suppressed).inspect_err(|_| {
            // Not recorded: count them again for the next attempt.
            self.bucket().suppressed += suppressed;
        })
    }

    fn write_summary(&self, suppressed: u64) -> Result<()> {
        self.audit.append(&AuditEntry {
            request_id: SUMMARY_REQUEST_ID.into(),
            action: "auth".into(),
            result: AuditResult::Refused,
            error: Some(format!(
                "{suppressed} more refused requests suppressed (no or unknown token; at most {REFUSED_AUTH_PER_SECOND} such lines are written a second)"
            )),
            ..AuditEntry::default()
        })
    }
}

/// `text` cut to at most `max` bytes on a character boundary, saying how much was cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_burst_writes_the_bucket_then_one_summary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = Arc::new(AuditLog::open(&path).unwrap());
        // A rate too slow to refill during the test.
        let log = RefusedAuthLog::with_rate(Arc::clone(&audit), 0.001, 3.0);
        for i in 0..10 {
            log.record(format!("r{i}"), "unknown token", "GET /jobs")
                .unwrap();
        }
        assert_eq!(lines(&path).len(), 3);
        log.flush().unwrap();
        log.flush().unwrap();
        let all = lines(&path);
        assert_eq!(all.len(), 4, "{all:?}");
        assert_eq!(all[3]["request_id"], SUMMARY_REQUEST_ID);
        assert!(
            all[3]["error"]
                .as_str()
                .unwrap()
                .starts_with("7 more refused requests suppressed"),
            "{all:?}"
        );
        assert!(
            all.iter()
                .all(|l| l["action"] == "auth" && l["result"] == "refused")
        );
    }

    #[test]
    fn the_summary_comes_before_the_next_written_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = Arc::new(AuditLog::open(&path).unwrap());
        let log = RefusedAuthLog::with_rate(audit, 20.0, 1.0);
        log.record("a".into(), "no bearer token", "GET /a").unwrap();
        log.record("b".into(), "no bearer token", "GET /b").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        log.record("c".into(), "no bearer token", "GET /c").unwrap();
        let ids: Vec<String> = lines(&path)
            .iter()
            .map(|l| l["request_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, ["a", SUMMARY_REQUEST_ID, "c"]);
    }

    #[test]
    fn long_request_text_is_cut_on_a_character_boundary() {
        assert_eq!(truncate("GET /jobs", 200), "GET /jobs");
        let long = format!("GET /{}", "é".repeat(300));
        let cut = truncate(&long, 200);
        assert!(cut.len() < 240, "{}", cut.len());
        assert!(cut.ends_with("more bytes)"), "{cut}");
        assert!(cut.starts_with("GET /é"));
    }
}
