//! Read side: correlation lookup and search over a [`tantivy::IndexReader`].
//!
//! [`QueryEngine`] is synchronous (tantivy is); the HTTP layer calls it on
//! `tokio::task::spawn_blocking`. Every input problem is a [`QueryError`] with a reason
//! fit for a client, never a panic.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};
use sightline_model::Level;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Term, Value};
use tantivy::tokenizer::TokenizerManager;
use tantivy::{DocAddress, Index, IndexReader, Order, Searcher, TantivyDocument};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::schema::{field, IndexSchema};

/// Default number of events a correlation lookup returns.
pub const DEFAULT_CORRELATION_LIMIT: usize = 10_000;
/// Default number of hits a search returns.
pub const DEFAULT_SEARCH_LIMIT: usize = 100;
/// Largest `limit` a search accepts.
pub const MAX_SEARCH_LIMIT: usize = 10_000;

/// Why a query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query string does not parse; the reason is tantivy's parser message.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// A parameter is out of range or malformed.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// Parameter name as the API spells it (`from`, `limit`, …).
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The index could not be read (server-side fault).
    #[error("index error: {0}")]
    Index(#[from] tantivy::TantivyError),
}

/// Limits a [`QueryEngine`] enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryLimits {
    /// Largest number of events one correlation lookup may return (default 10 000).
    /// The default lookup limit is `min(DEFAULT_CORRELATION_LIMIT, this)`.
    pub max_correlation_events: usize,
    /// Largest search `limit` (default [`MAX_SEARCH_LIMIT`]).
    pub max_search_hits: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_correlation_events: DEFAULT_CORRELATION_LIMIT,
            max_search_hits: MAX_SEARCH_LIMIT,
        }
    }
}

/// JSON shape of one event in API responses. Absent optionals are omitted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    /// 32 hex digits.
    pub event_id: String,
    /// RFC 3339 UTC with 9 fractional digits, e.g. `2026-11-21T05:00:00.123456789Z`.
    pub timestamp: String,
    /// Same instant, ns since the Unix epoch.
    pub timestamp_ns: i64,
    /// Service name (empty when unknown).
    pub service: String,
    /// Host name (empty when unknown).
    pub host: String,
    /// Full container ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Container name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// Container image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `stdout` / `stderr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Lowercase level name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// The log line.
    pub message: String,
    /// All correlation IDs, primary first (possibly empty).
    pub correlation_ids: Vec<String>,
    /// W3C trace ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// W3C span ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// Hop count along the request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hop: Option<u64>,
    /// Why the line could not be parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
    /// Input kind (`docker_json_file`, `other`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_kind: Option<String>,
    /// Free string attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// Result of [`QueryEngine::correlation`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorrelationResult {
    /// The ID looked up.
    pub correlation_id: String,
    /// Number of events in the index carrying the ID (may exceed `events.len()`).
    pub total: usize,
    /// Events ordered by timestamp, then hop (events without hop last), then event ID.
    pub events: Vec<EventView>,
    /// Distinct non-empty services in order of first appearance in `events`.
    pub services: Vec<String>,
    /// True when `total > events.len()` (the earliest `limit` events were returned).
    pub truncated: bool,
}

/// A search, already validated. See [`SearchRequest::from_params`] for the string form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchRequest {
    /// tantivy query syntax; default field `message`, terms joined by AND.
    pub q: Option<String>,
    /// Exact service names (any of).
    pub services: Vec<String>,
    /// Levels (any of).
    pub levels: Vec<Level>,
    /// Inclusive lower bound, ns since the epoch.
    pub from_ns: Option<i64>,
    /// Inclusive upper bound, ns since the epoch.
    pub to_ns: Option<i64>,
    /// Maximum hits; `None` means [`DEFAULT_SEARCH_LIMIT`].
    pub limit: Option<usize>,
}

/// Result of [`QueryEngine::search`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResult {
    /// Number of matching events in the index.
    pub total: usize,
    /// `hits.len()`.
    pub count: usize,
    /// Newest first (timestamp descending).
    pub hits: Vec<EventView>,
}

impl SearchRequest {
    /// Builds a request from the API's string parameters.
    ///
    /// - `q`: empty or absent means "everything".
    /// - `service`, `level`: comma-separated lists; levels accept the usual spellings
    ///   (`WARNING`, `err`, …).
    /// - `from`, `to`: RFC 3339 (`2026-11-21T05:00:00Z`) or integer ns since the epoch.
    /// - `limit`: 1 ..= `max_limit`.
    ///
    /// Errors: [`QueryError::InvalidParameter`] naming the parameter.
    pub fn from_params(
        q: Option<&str>,
        service: Option<&str>,
        level: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        limit: Option<&str>,
        max_limit: usize,
    ) -> Result<Self, QueryError> {
        let list = |s: Option<&str>| -> Vec<String> {
            s.map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
        };
        let levels = list(level)
            .iter()
            .map(|l| parse_level(l))
            .collect::<Result<Vec<_>, _>>()?;
        let from_ns = from.map(|s| parse_time("from", s)).transpose()?;
        let to_ns = to.map(|s| parse_time("to", s)).transpose()?;
        if let (Some(f), Some(t)) = (from_ns, to_ns) {
            if f > t {
                return Err(QueryError::InvalidParameter {
                    name: "from",
                    reason: format!("`from` ({f} ns) is after `to` ({t} ns)"),
                });
            }
        }
        Ok(SearchRequest {
            q: q.map(str::trim)
                .filter(|q| !q.is_empty())
                .map(str::to_string),
            services: list(service),
            levels,
            from_ns,
            to_ns,
            limit: limit.map(|l| parse_limit(l, max_limit)).transpose()?,
        })
    }
}

/// Longest accepted `q`, bytes.
pub const MAX_QUERY_BYTES: usize = 2048;
/// Deepest accepted nesting of parentheses in `q`.
pub const MAX_QUERY_NESTING: usize = 8;

/// Rejects queries that would make the parser work too hard: tantivy 0.25's query grammar
/// parses each level of parentheses twice (time doubles per level, tantivy issue #2498) and
/// recurses once per `NOT`, so length and nesting are capped.
fn check_query_shape(q: &str) -> Result<(), QueryError> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(QueryError::InvalidQuery(format!(
            "query is longer than {MAX_QUERY_BYTES} bytes"
        )));
    }
    let (mut depth, mut max, mut quoted) = (0usize, 0usize, false);
    for c in q.chars() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => {
                depth += 1;
                max = max.max(depth);
            }
            ')' if !quoted => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if max > MAX_QUERY_NESTING {
        return Err(QueryError::InvalidQuery(format!(
            "parentheses nested deeper than {MAX_QUERY_NESTING}"
        )));
    }
    Ok(())
}

/// Parses a level name (case-insensitive, usual spellings). Error names parameter `level`.
pub fn parse_level(s: &str) -> Result<Level, QueryError> {
    Level::parse(s).ok_or_else(|| QueryError::InvalidParameter {
        name: "level",
        reason: format!(
            "unknown level {s:?}; expected one of trace, debug, info, warn, error, fatal"
        ),
    })
}

/// Parses a `limit` parameter: a decimal integer in `1..=max`.
pub fn parse_limit(s: &str, max: usize) -> Result<usize, QueryError> {
    let bad = |reason: String| QueryError::InvalidParameter {
        name: "limit",
        reason,
    };
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| bad(format!("{s:?} is not a positive integer")))?;
    if n == 0 || n > max {
        return Err(bad(format!("must be between 1 and {max}, got {n}")));
    }
    Ok(n)
}

/// Parses a time bound: RFC 3339 (any offset) or a (possibly negative) integer of ns since
/// the Unix epoch. Returns ns since the epoch; errors name parameter `name`.
pub fn parse_time(name: &'static str, s: &str) -> Result<i64, QueryError> {
    let s = s.trim();
    if let Ok(ns) = s.parse::<i64>() {
        return Ok(ns);
    }
    let bad = |reason: String| QueryError::InvalidParameter { name, reason };
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
        bad(format!(
            "{s:?} is neither RFC 3339 (e.g. 2026-11-21T05:00:00Z) nor integer ns: {e}"
        ))
    })?;
    i64::try_from(t.unix_timestamp_nanos())
        .map_err(|_| bad(format!("{s:?} is outside the representable range")))
}

/// Formats ns since the epoch as RFC 3339 UTC with 9 fractional digits
/// (empty string when out of range, which an i64 of ns never is).
pub fn format_timestamp(ns: i64) -> String {
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_default()
}

/// Answers correlation lookups and searches. Cheap to share behind an `Arc`.
pub struct QueryEngine {
    reader: IndexReader,
    fields: IndexSchema,
    tokenizers: TokenizerManager,
    limits: QueryLimits,
}

impl QueryEngine {
    /// Wraps a reader of `index`, which must have the [`IndexSchema`] layout (checked:
    /// [`QueryError::Index`] with a schema error otherwise).
    pub fn new(
        index: &Index,
        reader: IndexReader,
        limits: QueryLimits,
    ) -> Result<Self, QueryError> {
        let fields = IndexSchema::new();
        if index.schema() != fields.schema {
            return Err(QueryError::Index(tantivy::TantivyError::SchemaError(
                "index schema differs from Sightline's".into(),
            )));
        }
        Ok(QueryEngine {
            reader,
            fields,
            tokenizers: index.tokenizers().clone(),
            limits,
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> QueryLimits {
        self.limits
    }

    /// Number of documents visible to the current searcher.
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Every event carrying correlation ID `id` (exact match), earliest first: ordered by
    /// timestamp, then hop (events without hop after those with), then event ID.
    /// `limit` defaults to `min(DEFAULT_CORRELATION_LIMIT, max_correlation_events)`;
    /// past it the earliest `limit` events are returned with `truncated = true`.
    ///
    /// Errors: `InvalidParameter` for `limit` outside `1..=max_correlation_events`,
    /// `Index` for read failures.
    pub fn correlation(
        &self,
        id: &str,
        limit: Option<usize>,
    ) -> Result<CorrelationResult, QueryError> {
        let max = self.limits.max_correlation_events;
        let limit = match limit {
            None => DEFAULT_CORRELATION_LIMIT.min(max),
            Some(n) if n == 0 || n > max => {
                return Err(QueryError::InvalidParameter {
                    name: "limit",
                    reason: format!("must be between 1 and {max}, got {n}"),
                })
            }
            Some(n) => n,
        };
        let searcher = self.reader.searcher();
        let query = TermQuery::new(
            Term::from_field_text(self.fields.correlation_id, id),
            IndexRecordOption::Basic,
        );
        let top =
            TopDocs::with_limit(limit + 1).order_by_fast_field::<i64>(field::TIMESTAMP, Order::Asc);
        let (docs, total) = searcher.search(&query, &(top, Count))?;
        let mut addrs: Vec<DocAddress> = docs.iter().map(|(_, a)| *a).collect();
        if docs.len() > limit {
            // Truncated: events tied on the last kept timestamp may be beyond the fetched
            // ones; fetch them all so the cut follows timestamp *then hop*.
            let boundary = docs[limit - 1].0;
            let at = Term::from_field_i64(self.fields.timestamp, boundary);
            let tied = BooleanQuery::new(vec![
                (Occur::Must, Box::new(query.clone()) as Box<dyn Query>),
                (
                    Occur::Must,
                    Box::new(RangeQuery::new(
                        Bound::Included(at.clone()),
                        Bound::Included(at),
                    )),
                ),
            ]);
            let extra = searcher.search(&tied, &tantivy::collector::DocSetCollector)?;
            let have: std::collections::HashSet<DocAddress> = addrs.iter().copied().collect();
            addrs.extend(extra.into_iter().filter(|a| !have.contains(a)));
        }
        let mut events = self.load(&searcher, addrs.into_iter())?;
        events.sort_by(path_order);
        events.truncate(limit);
        let mut services: Vec<String> = Vec::new();
        for e in &events {
            if !e.service.is_empty() && !services.contains(&e.service) {
                services.push(e.service.clone());
            }
        }
        Ok(CorrelationResult {
            correlation_id: id.to_string(),
            total,
            truncated: total > events.len(),
            events,
            services,
        })
    }

    /// Runs a search: `q` (tantivy query syntax over `message` by default, any field by
    /// name, e.g. `service:checkout AND "payment declined"`; bare terms are ANDed) combined
    /// with the service/level filters and the inclusive time range. Newest first.
    ///
    /// Errors: `InvalidQuery` with the parser's reason, `InvalidParameter` for a limit
    /// above the maximum, `Index` for read failures.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResult, QueryError> {
        let limit = req.limit.unwrap_or(DEFAULT_SEARCH_LIMIT);
        if limit == 0 || limit > self.limits.max_search_hits {
            return Err(QueryError::InvalidParameter {
                name: "limit",
                reason: format!(
                    "must be between 1 and {}, got {limit}",
                    self.limits.max_search_hits
                ),
            });
        }
        let query = self.build_query(req)?;
        let searcher = self.reader.searcher();
        let top =
            TopDocs::with_limit(limit).order_by_fast_field::<i64>(field::TIMESTAMP, Order::Desc);
        let (docs, total) = searcher.search(&query, &(top, Count))?;
        let hits = self.load(&searcher, docs.into_iter().map(|(_, a)| a))?;
        Ok(SearchResult {
            total,
            count: hits.len(),
            hits,
        })
    }

    fn build_query(&self, req: &SearchRequest) -> Result<Box<dyn Query>, QueryError> {
        let query = self.build_query_unchecked(req)?;
        // Some queries parse but cannot run on this schema (a set query on a fast-only
        // field, a range on a non-fast JSON field): the client's mistake, so a 400.
        query
            .weight(tantivy::query::EnableScoring::disabled_from_schema(
                &self.fields.schema,
            ))
            .map_err(|e| QueryError::InvalidQuery(e.to_string()))?;
        Ok(query)
    }

    fn build_query_unchecked(&self, req: &SearchRequest) -> Result<Box<dyn Query>, QueryError> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if let Some(q) = &req.q {
            check_query_shape(q)?;
            let mut parser = QueryParser::new(
                self.fields.schema.clone(),
                vec![self.fields.message],
                self.tokenizers.clone(),
            );
            parser.set_conjunction_by_default();
            let parsed = parser
                .parse_query(q)
                .map_err(|e| QueryError::InvalidQuery(e.to_string()))?;
            clauses.push((Occur::Must, parsed));
        }
        let any_of = |f: Field, values: &mut dyn Iterator<Item = &str>| -> Box<dyn Query> {
            let terms: Vec<(Occur, Box<dyn Query>)> = values
                .map(|v| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(
                        Term::from_field_text(f, v),
                        IndexRecordOption::Basic,
                    ));
                    (Occur::Should, q)
                })
                .collect();
            Box::new(BooleanQuery::new(terms))
        };
        if !req.services.is_empty() {
            let mut it = req.services.iter().map(String::as_str);
            clauses.push((Occur::Must, any_of(self.fields.service, &mut it)));
        }
        if !req.levels.is_empty() {
            let mut it = req.levels.iter().map(|l| l.as_str());
            clauses.push((Occur::Must, any_of(self.fields.level, &mut it)));
        }
        if req.from_ns.is_some() || req.to_ns.is_some() {
            let bound = |v: Option<i64>| match v {
                Some(ns) => Bound::Included(Term::from_field_i64(self.fields.timestamp, ns)),
                None => Bound::Unbounded,
            };
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(bound(req.from_ns), bound(req.to_ns))),
            ));
        }
        Ok(match clauses.len() {
            0 => Box::new(AllQuery),
            1 => clauses
                .pop()
                .map(|(_, q)| q)
                .unwrap_or_else(|| Box::new(AllQuery)),
            _ => Box::new(BooleanQuery::new(clauses)),
        })
    }

    fn load(
        &self,
        searcher: &Searcher,
        addrs: impl Iterator<Item = DocAddress>,
    ) -> Result<Vec<EventView>, QueryError> {
        addrs
            .map(|a| {
                let doc: TantivyDocument = searcher.doc(a)?;
                Ok(self.view(&doc))
            })
            .collect()
    }

    fn view(&self, doc: &TantivyDocument) -> EventView {
        let f = &self.fields;
        let text = |field: Field| -> Option<String> {
            doc.get_first(field)
                .and_then(|v| v.as_str().map(str::to_string))
        };
        let timestamp_ns = doc
            .get_first(f.timestamp)
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        let mut attributes = BTreeMap::new();
        if let Some(obj) = doc.get_first(f.attributes).and_then(|v| v.as_object()) {
            for (k, v) in obj {
                if let Some(s) = v.as_str() {
                    attributes.insert(k.to_string(), s.to_string());
                }
            }
        }
        EventView {
            event_id: text(f.event_id).unwrap_or_default(),
            timestamp: format_timestamp(timestamp_ns),
            timestamp_ns,
            service: text(f.service).unwrap_or_default(),
            host: text(f.host).unwrap_or_default(),
            container_id: text(f.container_id),
            container_name: text(f.container_name),
            image: text(f.image),
            stream: text(f.stream),
            level: text(f.level),
            message: text(f.message).unwrap_or_default(),
            correlation_ids: doc
                .get_all(f.correlation_id)
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            trace_id: text(f.trace_id),
            span_id: text(f.span_id),
            hop: doc.get_first(f.hop).and_then(|v| v.as_u64()),
            parse_error: text(f.parse_error),
            source_kind: text(f.source_kind),
            attributes,
        }
    }
}

/// Request-path order: timestamp, then hop (present before absent), then event ID.
fn path_order(a: &EventView, b: &EventView) -> Ordering {
    a.timestamp_ns
        .cmp(&b.timestamp_ns)
        .then_with(|| match (a.hop, b.hop) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| a.event_id.cmp(&b.event_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_parsing() {
        assert_eq!(
            parse_time("from", "2026-11-21T05:00:00Z").unwrap(),
            1_795_237_200_000_000_000
        );
        assert_eq!(
            parse_time("from", "2026-11-21T06:00:00.5+01:00").unwrap(),
            1_795_237_200_500_000_000
        );
        assert_eq!(parse_time("to", "12345").unwrap(), 12345);
        let err = parse_time("to", "yesterday").unwrap_err().to_string();
        assert!(
            err.starts_with("invalid parameter `to`: \"yesterday\" is neither"),
            "{err}"
        );
        assert_eq!(
            format_timestamp(1_795_237_200_000_000_007),
            "2026-11-21T05:00:00.000000007Z"
        );
    }

    #[test]
    fn params_validation() {
        let ok = SearchRequest::from_params(
            Some("  "),
            Some("a, b"),
            Some("WARNING,err"),
            Some("1"),
            Some("2"),
            Some("5"),
            10,
        )
        .unwrap();
        assert_eq!(ok.q, None);
        assert_eq!(ok.services, vec!["a", "b"]);
        assert_eq!(ok.levels, vec![Level::Warn, Level::Error]);
        assert_eq!(
            (ok.from_ns, ok.to_ns, ok.limit),
            (Some(1), Some(2), Some(5))
        );
        let err = |r: Result<SearchRequest, QueryError>| match r {
            Err(QueryError::InvalidParameter { name, .. }) => name,
            other => panic!("expected InvalidParameter, got {other:?}"),
        };
        let p = |level, from, to, limit| {
            SearchRequest::from_params(None, None, level, from, to, limit, 10)
        };
        assert_eq!(err(p(Some("loud"), None, None, None)), "level");
        assert_eq!(err(p(None, Some("2"), Some("1"), None)), "from");
        assert_eq!(err(p(None, Some("x"), None, None)), "from");
        assert_eq!(err(p(None, None, None, Some("0"))), "limit");
        assert_eq!(err(p(None, None, None, Some("11"))), "limit");
        assert_eq!(err(p(None, None, None, Some("-1"))), "limit");
    }
}
