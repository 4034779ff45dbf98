//! Queries over the audit store: time range, service, actor, action; newest first.
//!
//! Reads the committed bytes of each segment (append-only, so no lock is held while
//! reading), skipping segments whose event-time range cannot match. Queries do not verify
//! the chain (that is [`super::verify()`]'s job); unreadable lines are skipped.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::fs;

use serde::{Deserialize, Serialize};
use sightline_model::audit::{Actor, AuditEvent};
use sightline_query::reader::{format_timestamp, parse_limit, parse_time};
use sightline_query::QueryError;

use super::record::{parse_payload, split_line};
use super::{io_err, AuditError, AuditStore};

/// Events returned when no `limit` is given.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest accepted `limit`.
pub const MAX_LIMIT: usize = 1000;

/// A query over the audit trail. All given criteria must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditQuery {
    /// Inclusive lower bound on `event.time_ns`, ns since the epoch.
    pub from_ns: Option<i64>,
    /// Inclusive upper bound on `event.time_ns`, ns since the epoch.
    pub to_ns: Option<i64>,
    /// Exact `event.resource.service`.
    pub service: Option<String>,
    /// Exact `event.actor.id` or `event.actor.name`.
    pub actor: Option<String>,
    /// Exact `event.actor.kind` (`container`, `image`, `task`, `sightline`, …).
    pub actor_kind: Option<String>,
    /// Exact `event.action`, or a prefix when it ends in `*` (`container.*`).
    pub action: Option<String>,
    /// Maximum events returned (1..=[`MAX_LIMIT`]).
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        AuditQuery {
            from_ns: None,
            to_ns: None,
            service: None,
            actor: None,
            actor_kind: None,
            action: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// The API's string parameters of an audit query (all optional; unknown ones are
/// rejected so a misspelt filter does not silently match everything).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// RFC 3339 or integer ns.
    pub from: Option<String>,
    /// RFC 3339 or integer ns.
    pub to: Option<String>,
    /// Service name.
    pub service: Option<String>,
    /// Actor ID or name.
    pub actor: Option<String>,
    /// Actor kind.
    pub actor_kind: Option<String>,
    /// Action, `*` suffix for a prefix.
    pub action: Option<String>,
    /// 1..=1000, default 100.
    pub limit: Option<String>,
}

impl AuditQuery {
    /// Builds a query from the API's parameters: `from`/`to` as RFC 3339 or integer ns
    /// (as the search API), `limit` in 1..=[`MAX_LIMIT`]; empty strings are errors.
    ///
    /// Errors: [`QueryError::InvalidParameter`] naming the parameter.
    pub fn from_params(p: &AuditParams) -> Result<Self, QueryError> {
        let from_ns = p
            .from
            .as_deref()
            .map(|s| parse_time("from", s))
            .transpose()?;
        let to_ns = p.to.as_deref().map(|s| parse_time("to", s)).transpose()?;
        if let (Some(f), Some(t)) = (from_ns, to_ns) {
            if f > t {
                return Err(QueryError::InvalidParameter {
                    name: "from",
                    reason: format!("`from` ({f} ns) is after `to` ({t} ns)"),
                });
            }
        }
        let text = |name: &'static str, v: &Option<String>| -> Result<_, QueryError> {
            match v {
                Some(s) if s.trim().is_empty() => Err(QueryError::InvalidParameter {
                    name,
                    reason: "is empty".into(),
                }),
                Some(s) if s.len() > 1024 => Err(QueryError::InvalidParameter {
                    name,
                    reason: format!("is {} bytes long; at most 1024 allowed", s.len()),
                }),
                other => Ok(other.clone()),
            }
        };
        let action = text("action", &p.action)?;
        if action.as_deref() == Some("*") {
            return Err(QueryError::InvalidParameter {
                name: "action",
                reason: "`*` alone matches everything; omit the parameter instead".into(),
            });
        }
        Ok(AuditQuery {
            from_ns,
            to_ns,
            service: text("service", &p.service)?,
            actor: text("actor", &p.actor)?,
            actor_kind: text("actor_kind", &p.actor_kind)?,
            action,
            limit: p
                .limit
                .as_deref()
                .map(|l| parse_limit(l, MAX_LIMIT))
                .transpose()?
                .unwrap_or(DEFAULT_LIMIT),
        })
    }

    fn time_overlaps(&self, min_ns: u64, max_ns: u64) -> bool {
        let (lo, hi) = (i128::from(min_ns), i128::from(max_ns));
        self.from_ns.is_none_or(|f| hi >= i128::from(f))
            && self.to_ns.is_none_or(|t| lo <= i128::from(t))
    }

    /// Whether `ev` matches every criterion.
    pub fn matches(&self, ev: &AuditEvent) -> bool {
        self.time_overlaps(ev.time_ns, ev.time_ns)
            && self
                .service
                .as_ref()
                .is_none_or(|s| ev.resource.service == *s)
            && self
                .actor
                .as_ref()
                .is_none_or(|a| ev.actor.id == *a || ev.actor.name == *a)
            && self.actor_kind.as_ref().is_none_or(|k| ev.actor.kind == *k)
            && self
                .action
                .as_ref()
                .is_none_or(|a| match a.strip_suffix('*') {
                    Some(prefix) => ev.action.starts_with(prefix),
                    None => ev.action == *a,
                })
    }
}

/// One event as the API returns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEventView {
    /// Sequence number in the store.
    pub seq: u64,
    /// The record's chain hash (64 hex).
    pub hash: String,
    /// Event ID, 32 hex digits.
    pub event_id: String,
    /// Event time, RFC 3339 UTC with ns.
    pub time: String,
    /// Event time, ns since the epoch.
    pub time_ns: u64,
    /// When the collector read it, ns since the epoch.
    pub observed_ns: u64,
    /// Host (`host.name`).
    pub host: String,
    /// Service (`service.name`).
    pub service: String,
    /// Container ID, when the event concerns one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Container name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// Dotted action (`container.die`, `ecs.GetCredentials`, `alert.notify`).
    pub action: String,
    /// Who acted / what was acted on.
    pub actor: Actor,
    /// Result, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// One-line summary.
    pub message: String,
    /// Action-specific details.
    pub attributes: BTreeMap<String, String>,
}

impl AuditEventView {
    fn new(seq: u64, hash: String, ev: AuditEvent) -> Self {
        let container = ev.resource.container.as_deref();
        AuditEventView {
            seq,
            hash,
            event_id: ev.event_id.to_string(),
            time: format_timestamp(i64::try_from(ev.time_ns).unwrap_or(i64::MAX)),
            time_ns: ev.time_ns,
            observed_ns: ev.observed_ns,
            host: ev.resource.host.clone(),
            service: ev.resource.service.clone(),
            container_id: container.map(|c| c.id.clone()),
            container_name: container.map(|c| c.name.clone()),
            action: ev.action,
            actor: ev.actor,
            outcome: ev.outcome,
            message: ev.message,
            attributes: ev.attributes,
        }
    }
}

/// Result of [`AuditStore::query`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    /// Matching events in the store.
    pub total: usize,
    /// `events.len()`.
    pub count: usize,
    /// Newest first (event time descending, then sequence number descending).
    pub events: Vec<AuditEventView>,
}

struct Hit(u64, u64, AuditEventView);

impl PartialEq for Hit {
    fn eq(&self, o: &Self) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}
impl Eq for Hit {}
impl PartialOrd for Hit {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Hit {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.0, self.1).cmp(&(o.0, o.1))
    }
}

impl AuditStore {
    /// Runs `q` over the committed records. Blocking file I/O (use `spawn_blocking` from
    /// async code).
    ///
    /// Errors: [`AuditError::Io`] when a segment cannot be read.
    pub fn query(&self, q: &AuditQuery) -> Result<AuditPage, AuditError> {
        let limit = q.limit.max(1);
        let mut heap: BinaryHeap<Reverse<Hit>> = BinaryHeap::new();
        let mut total = 0usize;
        for seg in self.snapshot().iter().rev() {
            if seg.records == 0 || !q.time_overlaps(seg.min_time_ns, seg.max_time_ns) {
                continue;
            }
            let path = &seg.file.path;
            let bytes = fs::read(path).map_err(|e| io_err(path, e))?;
            let committed = &bytes[..bytes.len().min(seg.bytes as usize)];
            for line in committed.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                let Some((raw, payload)) = split_line(line)
                    .ok()
                    .and_then(|r| parse_payload(r.payload).ok().map(|p| (r, p)))
                else {
                    tracing::debug!(file = %seg.file.name, "audit query: skipping an unreadable line");
                    continue;
                };
                if !q.matches(&payload.event) {
                    continue;
                }
                total += 1;
                let key = (payload.event.time_ns, payload.seq);
                if heap.len() == limit {
                    match heap.peek() {
                        Some(Reverse(min)) if (min.0, min.1) < key => {
                            heap.pop();
                        }
                        _ => continue,
                    }
                }
                let view =
                    AuditEventView::new(payload.seq, raw.stored_hash.to_hex(), payload.event);
                heap.push(Reverse(Hit(key.0, key.1, view)));
            }
        }
        // Ascending in Reverse<Hit> is descending in (time, seq): newest first.
        let events: Vec<AuditEventView> = heap
            .into_sorted_vec()
            .into_iter()
            .map(|Reverse(h)| h.2)
            .collect();
        Ok(AuditPage {
            total,
            count: events.len(),
            events,
        })
    }
}
