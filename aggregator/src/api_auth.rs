//! API tokens: when `[api]` lists tokens, every HTTP request but `GET /healthz` needs
//! `Authorization: Bearer <token>`; each authenticated request is recorded in the audit
//! trail (action `api.request`, actor kind `api_token` named after the token), as
//! CloudTrail records API calls with the calling identity. Without tokens the API is open
//! (bind it to a private address).
//!
//! ```toml
//! [api]
//! tokens = [
//!   { name = "grafana", token = "…at least 16 characters…" },   # printed as **REDACTED**
//!   { name = "oncall-bot", token = "…" },
//! ]
//! ```
//!
//! Tokens are compared as SHA-256 digests, so the comparison's time does not depend on how
//! many leading characters of a guess are right.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sightline_model::audit::{Actor, AuditEvent};
use sightline_model::event::{LogEvent, SourceKind};
use sightline_query::ApiError;

use crate::alert::ActionLog;
use crate::notify::Secret;

/// Shortest accepted token, characters.
pub const MIN_TOKEN_CHARS: usize = 16;

/// The `[api]` table.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// Bearer tokens; empty (default): no authentication.
    pub tokens: Vec<ApiToken>,
    /// Serve `POST /-/reload` (re-read the rule files), as Prometheus'
    /// `--web.enable-lifecycle`. Default false: reload with SIGHUP.
    pub enable_lifecycle: bool,
}

/// One API token.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Who holds it: the actor name in the audit trail (unique).
    pub name: String,
    /// The token (at least [`MIN_TOKEN_CHARS`] characters; printed as `**REDACTED**`).
    pub token: Secret,
}

impl ApiSettings {
    /// Pure checks: non-empty unique names, tokens of at least [`MIN_TOKEN_CHARS`]
    /// characters, no token given twice.
    ///
    /// Errors: a message naming the entry (`api.tokens[1]`), never the token.
    pub fn validate(&self) -> Result<(), String> {
        for (i, t) in self.tokens.iter().enumerate() {
            if t.name.trim().is_empty() {
                return Err(format!("api.tokens[{i}].name is empty"));
            }
            if t.token.expose().chars().count() < MIN_TOKEN_CHARS {
                return Err(format!(
                    "api.tokens[{i}].token ({}) is shorter than {MIN_TOKEN_CHARS} characters",
                    t.name
                ));
            }
            if let Some(j) = self.tokens[..i].iter().position(|o| o.name == t.name) {
                return Err(format!(
                    "api.tokens[{i}].name {:?} is also api.tokens[{j}].name",
                    t.name
                ));
            }
            if let Some(j) = self.tokens[..i]
                .iter()
                .position(|o| o.token.expose() == t.token.expose())
            {
                return Err(format!(
                    "api.tokens[{i}].token ({}) is the same as api.tokens[{j}]'s",
                    t.name
                ));
            }
        }
        Ok(())
    }
}

/// The checker the middleware holds.
pub struct ApiAuth {
    tokens: Vec<(String, [u8; 32])>,
    log: Arc<dyn ActionLog>,
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

impl ApiAuth {
    /// A checker for `settings` (`None` when no token is configured: the API is open),
    /// recording authenticated requests in `log`.
    pub fn new(settings: &ApiSettings, log: Arc<dyn ActionLog>) -> Option<Arc<Self>> {
        if settings.tokens.is_empty() {
            return None;
        }
        let tokens = settings
            .tokens
            .iter()
            .map(|t| (t.name.clone(), digest(t.token.expose().trim().as_bytes())))
            .collect();
        Some(Arc::new(ApiAuth { tokens, log }))
    }

    /// The name of the token in an `Authorization` header value, if it is valid.
    pub fn holder(&self, authorization: &[u8]) -> Option<&str> {
        // The scheme is case-insensitive (RFC 7235 §2.1).
        let (scheme, token) = authorization.split_at_checked(7)?;
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return None;
        }
        let d = digest(token.trim_ascii());
        // Every entry is compared, so the time does not tell which one matched.
        let mut found = None;
        for (name, t) in &self.tokens {
            if *t == d {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// The middleware: `/healthz` passes; any other request needs a valid token (else 401) and
/// is recorded once answered, with its method, path and status. When the audit log has no
/// room for its record ([`ActionLog::admit`]) it is refused with 503 and `Retry-After: 1`.
pub async fn require_token(State(auth): State<Arc<ApiAuth>>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let holder = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| auth.holder(v.as_bytes()))
        .map(str::to_string);
    let Some(holder) = holder else {
        return ApiError::Unauthorized.into_response();
    };
    // Every answered request is audited: its record's room is reserved first, from the half
    // of the audit queue not kept for notifications and scaling actions.
    let Some(admission) = Admission::new(&auth.log) else {
        return ApiError::Busy("the audit trail is behind").into_response();
    };
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let resp = next.run(req).await;
    admission.record(request_event(
        &holder,
        &method,
        &path,
        query.as_deref(),
        resp.status().as_u16(),
    ));
    resp
}

/// Room for one request record ([`ActionLog::admit`]); given back when dropped unused (a
/// client that went away before the answer).
struct Admission<'a> {
    log: &'a Arc<dyn ActionLog>,
    used: bool,
}

impl<'a> Admission<'a> {
    fn new(log: &'a Arc<dyn ActionLog>) -> Option<Self> {
        log.admit().then_some(Admission { log, used: false })
    }

    fn record(mut self, event: AuditEvent) {
        self.used = true;
        self.log.record_admitted(event);
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.log.cancel_admission();
        }
    }
}

/// The audit record of one authenticated request.
pub fn request_event(
    holder: &str,
    method: &str,
    path: &str,
    query: Option<&str>,
    status: u16,
) -> AuditEvent {
    let time_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let mut attributes = std::collections::BTreeMap::new();
    attributes.insert("http.request.method".to_string(), method.to_string());
    attributes.insert("url.path".to_string(), path.to_string());
    if let Some(q) = query {
        attributes.insert("url.query".to_string(), q.to_string());
    }
    attributes.insert("http.response.status_code".to_string(), status.to_string());
    AuditEvent {
        event_id: AuditEvent::content_id(&[
            "api.request",
            holder,
            method,
            path,
            query.unwrap_or(""),
            &time_ns.to_string(),
        ]),
        time_ns,
        observed_ns: time_ns,
        resource: LogEvent {
            source_kind: SourceKind::Sightline,
            ..Default::default()
        },
        action: "api.request".into(),
        actor: Actor {
            kind: "api_token".into(),
            id: holder.to_string(),
            name: holder.to_string(),
        },
        outcome: Some(status.to_string()),
        message: format!("{method} {path} by token {holder}: {status}"),
        attributes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::MemoryActionLog;
    use axum::body::Body;
    use axum::http::{Request as HttpRequest, StatusCode};
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    fn settings() -> ApiSettings {
        ApiSettings {
            enable_lifecycle: false,
            tokens: vec![
                ApiToken {
                    name: "grafana".into(),
                    token: Secret::new("0123456789abcdef-grafana"),
                },
                ApiToken {
                    name: "bot".into(),
                    token: Secret::new("0123456789abcdef-bot"),
                },
            ],
        }
    }

    fn app(log: Arc<MemoryActionLog>) -> Router {
        let auth = ApiAuth::new(&settings(), log).unwrap();
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/api/v1/search", get(|| async { "hits" }))
            .layer(axum::middleware::from_fn_with_state(auth, require_token))
    }

    async fn call(app: Router, path: &str, auth: Option<&str>) -> StatusCode {
        let mut req = HttpRequest::get(path);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        app.oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn tokens_are_required_checked_and_audited() {
        let log = Arc::new(MemoryActionLog::default());
        let a = || app(log.clone());
        assert_eq!(call(a(), "/healthz", None).await, StatusCode::OK);
        assert_eq!(
            call(a(), "/api/v1/search", None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(a(), "/api/v1/search", Some("Bearer 0123456789abcdef-wrong")).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(a(), "/api/v1/search", Some("Basic 0123456789abcdef-bot")).await,
            StatusCode::UNAUTHORIZED
        );
        assert!(
            log.0.lock().unwrap().is_empty(),
            "refused requests are not token uses"
        );
        assert_eq!(
            call(
                a(),
                "/api/v1/search?q=x",
                Some("Bearer 0123456789abcdef-bot")
            )
            .await,
            StatusCode::OK
        );
        let events = log.0.lock().unwrap().clone();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.action, "api.request");
        assert_eq!(
            (e.actor.kind.as_str(), e.actor.name.as_str()),
            ("api_token", "bot")
        );
        assert_eq!(e.attributes["url.path"], "/api/v1/search");
        assert_eq!(e.attributes["url.query"], "q=x");
        assert_eq!(e.outcome.as_deref(), Some("200"));
        assert!(
            !e.message.contains("0123456789abcdef"),
            "the token never reaches the trail"
        );
    }

    /// An action log whose queue is past half full.
    #[derive(Default)]
    struct Saturated(MemoryActionLog);

    impl ActionLog for Saturated {
        fn record(&self, event: sightline_model::AuditEvent) {
            self.0.record(event);
        }
        fn admit(&self) -> bool {
            false
        }
    }

    #[tokio::test]
    async fn a_saturated_audit_log_turns_requests_away_unrecorded() {
        let log = Arc::new(Saturated::default());
        let auth = ApiAuth::new(&settings(), log.clone()).unwrap();
        let app = Router::new()
            .route("/api/v1/search", get(|| async { "hits" }))
            .layer(axum::middleware::from_fn_with_state(auth, require_token));
        let resp = app
            .oneshot(
                HttpRequest::get("/api/v1/search")
                    .header("authorization", "Bearer 0123456789abcdef-bot")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()["retry-after"], "1");
        assert!(log.0 .0.lock().unwrap().is_empty());
    }

    #[test]
    fn validation_names_the_entry_never_the_token() {
        settings().validate().unwrap();
        let mut s = settings();
        s.tokens[1].token = Secret::new("tiny-tok");
        let e = s.validate().unwrap_err();
        assert!(
            e.contains("api.tokens[1].token (bot)") && !e.contains("tiny-tok"),
            "{e}"
        );
        let mut s = settings();
        s.tokens[1].name = "grafana".into();
        assert!(s.validate().unwrap_err().contains("api.tokens[1].name"));
        let mut s = settings();
        s.tokens[1].token = s.tokens[0].token.clone();
        assert!(s.validate().unwrap_err().contains("same as api.tokens[0]"));
        let printed = format!("{:?}", settings());
        assert!(!printed.contains("0123456789abcdef"), "{printed}");
    }
}
