//! The audit log: a record of every management action and refusal, bounded under a flood.
//!
//! It once stored a row per refused request with the whole path: 2,000 unauthenticated
//! requests with ~64 KB paths grew `rota.db` by 125 MB in 3 s, and a full disk stops every
//! write (issue 12). Four bounds hold now:
//!
//! - **Size.** Stored texts are cut to [`MAX_SUBJECT`] and [`MAX_DETAIL`] bytes.
//! - **Rate.** Refusals of one token, or of requests with no valid token from one source
//!   (an IPv4 address, an IPv6 /64), are recorded one by one up to `refusal-burst` at
//!   once and `refusals-per-minute` after that (a governor keyed limiter). Beyond it a
//!   request the middleware would refuse is answered 429 with `Retry-After` instead, and
//!   a handler's refusal keeps its answer but is not stored. Keying a token holder by
//!   token, not address, keeps a flood from their network from locking them out.
//! - **Aggregation.** Those refusals are counted in memory and the background pass writes
//!   them as one record per refused party and reason per [`AGGREGATE_WINDOW_MS`], whose
//!   `occurrences` is the count; at most [`MAX_AGGREGATES`] are counted at once.
//! - **Retention.** The background pass deletes records older than
//!   `audit-retention-days`, then the oldest beyond `audit-max-rows`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Duration;

use axum::http::Method;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, RateLimiter};

use super::Caller;
use crate::config::Limits;
use crate::db::{Db, new_id, now_ms};

/// The longest request path stored; a longer one is cut and its length noted.
pub const MAX_SUBJECT: usize = 256;
/// The longest detail stored.
pub const MAX_DETAIL: usize = 512;
/// The longest method stored (methods are tokens of any length).
const MAX_ACTION: usize = 16;
/// Refusals over the rate of one party and for one reason share a record this long.
pub const AGGREGATE_WINDOW_MS: i64 = 60_000;
/// Parties and reasons counted at once; beyond this, refusals are counted as from no
/// party in particular, so memory stays bounded when many addresses take part.
pub const MAX_AGGREGATES: usize = 1024;

/// One audit record as the middleware describes it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The peer's address; `None` when the server was not given it.
    pub source: Option<IpAddr>,
    pub caller: Option<&'a Caller>,
    pub method: &'a Method,
    pub subject: &'a str,
    pub status: u16,
    pub detail: &'a str,
}

impl<'a> Record<'a> {
    /// What a device did or was refused through the device API (a key rotation, an
    /// order carried out, evidence refused): no token, no source.
    pub fn by_device(subject: &'a str, status: u16, detail: &'a str) -> Self {
        Record {
            source: None,
            caller: None,
            method: &Method::POST,
            subject,
            status,
            detail,
        }
    }
}

/// The audit log's limits and the refusals it is counting.
pub struct AuditLog {
    refusals: DefaultKeyedRateLimiter<Party>,
    counting: Mutex<HashMap<AggregateKey, Aggregate>>,
    retention_days: u32,
    max_rows: u64,
}

/// Whom a refusal is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Party {
    /// A valid token, refused what its role may not do.
    Token { id: String, role: String },
    /// No valid token: the source network ([`source_of`]); `None` when unknown.
    Source(Option<IpAddr>),
}

impl Party {
    fn of(record: &Record<'_>) -> Party {
        match record.caller {
            Some(caller) => Party::Token {
                id: caller.token_id.clone(),
                role: caller.role.as_str().to_string(),
            },
            None => Party::Source(record.source.map(source_of)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AggregateKey {
    party: Party,
    status: u16,
    reason: String,
}

#[derive(Debug, Clone)]
struct Aggregate {
    /// Its record, once written.
    row: Option<String>,
    opened_ms: i64,
    action: String,
    subject: String,
    count: u64,
    written: u64,
}

impl AuditLog {
    pub fn new(limits: &Limits) -> AuditLog {
        AuditLog {
            refusals: RateLimiter::keyed(limits.refusal_quota()),
            counting: Mutex::new(HashMap::new()),
            retention_days: limits.audit_retention_days,
            max_rows: limits.audit_max_rows,
        }
    }

    /// Records an action, or a refusal within its source's rate. An audit write that
    /// fails is logged loudly; the action has already happened by then, so failing the
    /// response would only hide it from the caller.
    pub async fn record(&self, db: &Db, record: &Record<'_>) {
        let outcome = if record.status < 400 {
            "ok".to_string()
        } else {
            format!("refused {}", record.status)
        };
        let result = sqlx::query(
            "INSERT INTO audit_log \
             (id, at, token_id, role, action, subject, outcome, detail, source, occurrences) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1)",
        )
        .bind(new_id())
        .bind(now_ms())
        .bind(record.caller.map(|c| c.token_id.clone()))
        .bind(record.caller.map(|c| c.role.as_str().to_string()))
        .bind(cut(record.method.as_str(), MAX_ACTION))
        .bind(cut(record.subject, MAX_SUBJECT))
        .bind(outcome)
        .bind(cut(record.detail, MAX_DETAIL))
        .bind(record.source.map(|s| s.to_string()))
        .execute(&db.write)
        .await;
        if let Err(err) = result {
            tracing::error!(error = %err, method = %record.method, "cannot write the audit log");
        }
    }

    /// Records a refusal if its party is within the refusal rate; otherwise counts it
    /// toward the party's aggregate record and returns how long until the party may be
    /// refused on the record again (the `Retry-After` of a 429).
    pub async fn refusal(&self, db: &Db, record: &Record<'_>) -> Result<(), Duration> {
        let party = Party::of(record);
        match self.refusals.check_key(&party) {
            Ok(()) => {
                self.record(db, record).await;
                Ok(())
            }
            Err(not_until) => {
                self.count(party, record, now_ms());
                metrics::counter!("rota_audit_refusals_counted_total").increment(1);
                Err(not_until.wait_time_from(self.refusals.clock().now()))
            }
        }
    }

    fn count(&self, party: Party, record: &Record<'_>, now_ms: i64) {
        let mut counting = self.counting.lock().unwrap();
        let mut key = AggregateKey {
            party,
            status: record.status,
            reason: cut(record.detail, MAX_DETAIL / 2),
        };
        if !counting.contains_key(&key) && counting.len() >= MAX_AGGREGATES {
            key.party = Party::Source(None);
            key.reason = "(many sources and reasons at once)".to_string();
        }
        let fresh = || Aggregate {
            row: None,
            opened_ms: now_ms,
            action: cut(record.method.as_str(), MAX_ACTION),
            subject: cut(record.subject, MAX_SUBJECT),
            count: 0,
            written: 0,
        };
        let aggregate = counting.entry(key).or_insert_with(fresh);
        // A window that is over and fully written starts a new record.
        if now_ms - aggregate.opened_ms >= AGGREGATE_WINDOW_MS
            && aggregate.written == aggregate.count
        {
            *aggregate = fresh();
        }
        aggregate.count += 1;
    }

    /// Writes the counts gathered since the last pass, and forgets windows that are over.
    /// Run by one task only (the background pass).
    pub async fn flush(&self, db: &Db, now_ms: i64) -> Result<(), sqlx::Error> {
        let pending: Vec<(AggregateKey, Aggregate)> = {
            let counting = self.counting.lock().unwrap();
            counting
                .iter()
                .filter(|(_, a)| a.count > a.written)
                .map(|(k, a)| (k.clone(), a.clone()))
                .collect()
        };
        for (key, aggregate) in pending {
            let detail = format!(
                "{} refused requests over the refusal rate, answered 429 or not stored one \
                 by one; the first was refused {}: {}",
                aggregate.count, key.status, key.reason
            );
            let row = match &aggregate.row {
                Some(row) => {
                    sqlx::query("UPDATE audit_log SET occurrences = $1, detail = $2 WHERE id = $3")
                        .bind(aggregate.count as i64)
                        .bind(&detail)
                        .bind(row)
                        .execute(&db.write)
                        .await?;
                    row.clone()
                }
                None => {
                    let row = new_id();
                    let (token_id, role, source) = match &key.party {
                        Party::Token { id, role } => (Some(id.clone()), Some(role.clone()), None),
                        Party::Source(source) => (None, None, source.map(source_text)),
                    };
                    sqlx::query(
                        "INSERT INTO audit_log (id, at, token_id, role, action, subject, \
                         outcome, detail, source, occurrences) \
                         VALUES ($1, $2, $3, $4, $5, $6, 'refused 429', $7, $8, $9)",
                    )
                    .bind(&row)
                    .bind(aggregate.opened_ms)
                    .bind(token_id)
                    .bind(role)
                    .bind(&aggregate.action)
                    .bind(&aggregate.subject)
                    .bind(&detail)
                    .bind(source)
                    .bind(aggregate.count as i64)
                    .execute(&db.write)
                    .await?;
                    row
                }
            };
            if let Some(current) = self.counting.lock().unwrap().get_mut(&key) {
                if current.opened_ms == aggregate.opened_ms {
                    current.row = Some(row);
                    current.written = aggregate.count;
                }
            }
        }
        self.counting
            .lock()
            .unwrap()
            .retain(|_, a| a.count > a.written || now_ms - a.opened_ms < AGGREGATE_WINDOW_MS);
        Ok(())
    }

    /// Deletes records past the retention settings and forgets sources that have been
    /// quiet long enough to be back at their full burst. Returns the records deleted.
    pub async fn sweep(&self, db: &Db, now_ms: i64) -> Result<u64, sqlx::Error> {
        self.refusals.retain_recent();
        self.refusals.shrink_to_fit();
        let oldest_kept = now_ms - i64::from(self.retention_days) * 86_400_000;
        let mut deleted = sqlx::query("DELETE FROM audit_log WHERE at < $1")
            .bind(oldest_kept)
            .execute(&db.write)
            .await?
            .rows_affected();
        let first_over: Option<(i64,)> =
            sqlx::query_as("SELECT at FROM audit_log ORDER BY at DESC LIMIT 1 OFFSET $1")
                .bind(i64::try_from(self.max_rows).unwrap_or(i64::MAX))
                .fetch_optional(&db.read)
                .await?;
        if let Some((at,)) = first_over {
            deleted += sqlx::query("DELETE FROM audit_log WHERE at <= $1")
                .bind(at)
                .execute(&db.write)
                .await?
                .rows_affected();
        }
        Ok(deleted)
    }
}

/// The source a refusal is counted against: an IPv4 address (also when it arrives
/// IPv4-mapped), or an IPv6 /64, the smallest network a single host is usually given.
fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
        },
    }
}

fn source_text(source: IpAddr) -> String {
    match source {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}

/// `text`, cut at a character boundary to at most `max` bytes plus a note of its length.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_at_a_character_boundary_with_their_length() {
        assert_eq!(cut("short", 10), "short");
        let long = "é".repeat(100);
        let stored = cut(&long, 11);
        assert_eq!(stored, format!("{}… (200 bytes)", "é".repeat(5)));
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64_and_a_mapped_ipv4_as_itself() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(source_of(a), source_of(b));
        assert_eq!(source_text(source_of(a)), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(source_of(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
