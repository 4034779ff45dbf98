//! Docker events → audit events.
//!
//! Follows `GET /events` (moby `api/types/events`: `{Type, Action, Actor{ID, Attributes},
//! scope, time, timeNano}`). Every event wakes container discovery when it concerns a
//! container's life (`create`, `start`, `die`, `destroy`), so tailing starts the moment a
//! container starts. Events not excluded by `exclude_actions` become
//! [`AuditEvent`]s:
//! - `action` = `<Type>.<verb>`, where `verb` is the Action before any `: ` suffix
//!   (`exec_start: /bin/sh -c 'id'` → `container.exec_start`, with `exec.command` =
//!   `/bin/sh -c 'id'`);
//! - `die` carries `exit_code` (also the outcome); `kill` carries `signal`; exec events
//!   carry `exec.id`; `oom` is shipped as is;
//! - container events carry the container (ID, name, image, labels — the engine puts every
//!   label in the attributes, so the ECS and compose labels ride along) as the resource, and
//!   the service name derived from them as for logs.
//!
//! The stream is resumed after an engine restart or a collector restart with
//! `since` = the time of the last event Kafka acknowledged (the engine keeps its last events
//! in memory, so a short outage loses nothing; the aggregator drops the re-sent ones by
//! event ID).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::EventsOptions;
use futures::StreamExt;
use sightline_model::{Actor, AuditEvent, Container, LogEvent, SourceKind};
use tokio::sync::{mpsc, watch, Notify};

use super::{client, Backoff, EngineContext};
use crate::parse::timestamp::now_ns;
use crate::sinks::records::{AuditItem, AuditPosition};
use crate::sources::docker_json::container::service_name;

/// Attributes of a container event that are not labels.
const NON_LABEL_ATTRIBUTES: [&str; 5] = ["image", "name", "exitCode", "signal", "execID"];

fn type_name(t: Option<&EventMessageTypeEnum>) -> String {
    match t {
        Some(t) if *t != EventMessageTypeEnum::EMPTY => t.to_string(),
        _ => "unknown".into(),
    }
}

/// Whether an event changes which containers exist or run (discovery should look now).
pub fn wakes_discovery(msg: &EventMessage) -> bool {
    msg.typ == Some(EventMessageTypeEnum::CONTAINER)
        && matches!(
            msg.action.as_deref(),
            Some("create" | "start" | "die" | "destroy" | "rename")
        )
}

/// The audit event of a Docker event, or `None` when its action is excluded. `host` is
/// stamped on it; `service_label` picks the service as for logs.
pub fn to_audit(
    msg: &EventMessage,
    host: &str,
    service_label: Option<&str>,
    exclude: &[String],
    observed_ns: u64,
) -> Option<AuditEvent> {
    let raw_action = msg.action.clone().unwrap_or_default();
    let (verb, suffix) = match raw_action.split_once(':') {
        Some((v, rest)) => (v.trim().to_string(), Some(rest.trim().to_string())),
        None => (raw_action.trim().to_string(), None),
    };
    if exclude.contains(&verb) {
        return None;
    }
    let typ = type_name(msg.typ.as_ref());
    let actor = msg.actor.clone().unwrap_or_default();
    let actor_id = actor.id.unwrap_or_default();
    let attrs: HashMap<String, String> = actor.attributes.unwrap_or_default();
    let time_ns = msg
        .time_nano
        .filter(|t| *t > 0)
        .map(|t| t as u64)
        .or_else(|| {
            msg.time
                .filter(|t| *t > 0)
                .map(|t| t as u64 * 1_000_000_000)
        })
        .unwrap_or(observed_ns);
    let mut attributes = BTreeMap::new();
    let mut outcome = None;
    if let Some(s) = &suffix {
        match verb.as_str() {
            v if v.starts_with("exec_") => {
                attributes.insert("exec.command".to_string(), s.clone());
            }
            "health_status" => {
                attributes.insert("health.status".to_string(), s.clone());
            }
            _ => {
                attributes.insert("action.detail".to_string(), s.clone());
            }
        }
    }
    if let Some(code) = attrs.get("exitCode") {
        attributes.insert("exit_code".to_string(), code.clone());
        outcome = Some(code.clone());
    }
    if let Some(sig) = attrs.get("signal") {
        attributes.insert("signal".to_string(), sig.clone());
    }
    if let Some(exec) = attrs.get("execID") {
        attributes.insert("exec.id".to_string(), exec.clone());
    }
    if let Some(scope) = &msg.scope {
        attributes.insert("docker.scope".to_string(), scope.to_string());
    }
    let name = attrs.get("name").cloned().unwrap_or_default();
    let image = attrs.get("image").cloned().unwrap_or_default();
    let mut resource = LogEvent {
        host: host.to_string(),
        source_kind: SourceKind::DockerEvents,
        ..Default::default()
    };
    let is_container = msg.typ == Some(EventMessageTypeEnum::CONTAINER);
    if is_container {
        let labels = attrs
            .iter()
            .filter(|(k, _)| !NON_LABEL_ATTRIBUTES.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let c = Container {
            id: actor_id.clone(),
            name: name.clone(),
            image: image.clone(),
            labels,
        };
        resource.service = service_name(&c, service_label);
        resource.container = Some(Arc::new(c));
    } else {
        // Other types: every attribute is about the action (network, driver, container, …).
        for (k, v) in &attrs {
            attributes
                .entry(format!("docker.{k}"))
                .or_insert_with(|| v.clone());
        }
    }
    let actor_name = if is_container {
        name
    } else {
        attrs.get("name").cloned().unwrap_or_default()
    };
    let shown = if actor_name.is_empty() {
        actor_id.chars().take(12).collect::<String>()
    } else {
        actor_name.clone()
    };
    let message = match verb.as_str() {
        "die" => format!(
            "{typ} {shown} died (exit code {})",
            attributes
                .get("exit_code")
                .map_or("unknown", String::as_str)
        ),
        "kill" => format!(
            "{typ} {shown} killed with signal {}",
            attributes.get("signal").map_or("unknown", String::as_str)
        ),
        "oom" => format!("{typ} {shown} ran out of memory"),
        v if v.starts_with("exec_") => format!(
            "{typ} {shown}: {v} {}",
            attributes.get("exec.command").map_or("", String::as_str)
        )
        .trim_end()
        .to_string(),
        v => match &suffix {
            Some(s) => format!("{typ} {shown}: {v} {s}"),
            None => format!("{typ} {shown}: {v}"),
        },
    };
    let event_id =
        AuditEvent::content_id(&[host, &time_ns.to_string(), &typ, &raw_action, &actor_id]);
    Some(AuditEvent {
        event_id,
        time_ns,
        observed_ns,
        resource,
        action: format!("{typ}.{verb}"),
        actor: Actor {
            kind: typ,
            id: actor_id,
            name: actor_name,
        },
        outcome,
        message,
        attributes,
    })
}

/// `since` for the events API: Unix seconds with nanoseconds, as the engine parses it.
pub fn since_param(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

/// Follows the event stream until `shutdown`: wakes `discovery` on container lifecycle
/// events and sends audit events to `tx`. Resumes from `since_ns` (the last acknowledged
/// event's time) when given, else from now. Engine errors and restarts are retried with
/// [`Backoff`]; after a reconnect the stream resumes from the last event seen, so nothing
/// is lost while the engine was down.
pub async fn run(
    ctx: EngineContext,
    since_ns: Option<u64>,
    tx: mpsc::Sender<AuditItem>,
    discovery: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let EngineContext {
        cfg,
        socket,
        host,
        service_label,
    } = ctx;
    // Without a stored cursor, events count from start-up, not from the first connection:
    // an engine that comes up after the collector loses none of its first events.
    let mut last = Some(since_ns.unwrap_or_else(now_ns));
    let mut backoff = Backoff::new(Duration::from_millis(cfg.max_backoff_ms));
    loop {
        if *shutdown.borrow() {
            return;
        }
        let docker = match client(&socket, cfg.request_timeout_secs) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(socket = %socket.display(), error = %e, "cannot reach the Docker engine");
                if wait(&mut shutdown, backoff.next_delay()).await {
                    return;
                }
                continue;
            }
        };
        let opts = EventsOptions {
            since: Some(since_param(last.unwrap_or_else(now_ns))),
            ..Default::default()
        };
        let mut stream = docker.events(Some(opts));
        let mut connected = false;
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                _ = shutdown.changed() => return,
            };
            let msg = match item {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "Docker event stream failed; reconnecting");
                    break;
                }
                None => {
                    tracing::warn!("Docker event stream ended (engine restart?); reconnecting");
                    break;
                }
            };
            if !connected {
                connected = true;
                backoff.reset();
                tracing::info!(socket = %socket.display(), "receiving Docker events");
            }
            if wakes_discovery(&msg) {
                discovery.notify_one();
            }
            let observed = now_ns();
            let Some(ev) = to_audit(
                &msg,
                &host,
                service_label.as_deref(),
                &cfg.events.exclude_actions,
                observed,
            ) else {
                continue;
            };
            let cursor_ns = ev.time_ns;
            last = Some(cursor_ns);
            if !cfg.events.enabled {
                continue;
            }
            let item = AuditItem {
                event: ev,
                position: AuditPosition::DockerEvents(cursor_ns),
            };
            if tx.send(item).await.is_err() {
                return;
            }
        }
        if wait(&mut shutdown, backoff.next_delay()).await {
            return;
        }
    }
}

/// Sleeps `d`; true when shutdown came first.
pub(crate) async fn wait(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::EventActor;

    use super::*;

    fn msg(typ: EventMessageTypeEnum, action: &str, attrs: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            typ: Some(typ),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("4f1c0ffee".into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            scope: None,
            time: Some(1_700_000_000),
            time_nano: Some(1_700_000_000_123_456_789),
        }
    }

    fn audit(m: &EventMessage) -> AuditEvent {
        to_audit(
            m,
            "host-1",
            None,
            &EventsConfig::default().exclude_actions,
            5,
        )
        .unwrap()
    }

    use super::super::EventsConfig;

    #[test]
    fn exec_start_keeps_the_command() {
        let m = msg(
            EventMessageTypeEnum::CONTAINER,
            "exec_start: /bin/sh -c 'cat /etc/passwd'",
            &[
                ("name", "web-1"),
                ("image", "busybox"),
                ("execID", "e1"),
                ("com.docker.compose.service", "web"),
            ],
        );
        let a = audit(&m);
        assert_eq!(a.action, "container.exec_start");
        assert_eq!(a.attributes["exec.command"], "/bin/sh -c 'cat /etc/passwd'");
        assert_eq!(a.attributes["exec.id"], "e1");
        assert_eq!(a.actor.id, "4f1c0ffee");
        assert_eq!(a.actor.name, "web-1");
        assert_eq!(a.resource.service, "web");
        let c = a.resource.container.as_ref().unwrap();
        assert_eq!(c.image, "busybox");
        assert_eq!(
            c.labels.len(),
            1,
            "only labels become labels: {:?}",
            c.labels
        );
        assert_eq!(a.time_ns, 1_700_000_000_123_456_789);
        assert_eq!(
            a.message,
            "container web-1: exec_start /bin/sh -c 'cat /etc/passwd'"
        );
    }

    #[test]
    fn die_and_kill_carry_exit_code_and_signal() {
        let die = audit(&msg(
            EventMessageTypeEnum::CONTAINER,
            "die",
            &[("name", "w"), ("exitCode", "137")],
        ));
        assert_eq!(die.action, "container.die");
        assert_eq!(die.outcome.as_deref(), Some("137"));
        assert_eq!(die.attributes["exit_code"], "137");
        let kill = audit(&msg(
            EventMessageTypeEnum::CONTAINER,
            "kill",
            &[("name", "w"), ("signal", "9")],
        ));
        assert_eq!(kill.attributes["signal"], "9");
        assert_eq!(kill.message, "container w killed with signal 9");
        assert_ne!(die.event_id, kill.event_id);
    }

    #[test]
    fn ecs_labels_make_the_service() {
        let a = audit(&msg(
            EventMessageTypeEnum::CONTAINER,
            "start",
            &[
                ("name", "ecs-web-3-web-8e9c"),
                ("com.amazonaws.ecs.task-definition-family", "web"),
                ("com.amazonaws.ecs.cluster", "prod"),
            ],
        ));
        assert_eq!(a.resource.service, "web");
        assert!(wakes_discovery(&msg(
            EventMessageTypeEnum::CONTAINER,
            "start",
            &[]
        )));
    }

    #[test]
    fn image_pull_and_exclusions() {
        let a = audit(&msg(
            EventMessageTypeEnum::IMAGE,
            "pull",
            &[("name", "nginx:1.27")],
        ));
        assert_eq!(a.action, "image.pull");
        assert!(a.resource.container.is_none());
        assert_eq!(a.actor.name, "nginx:1.27");
        assert_eq!(a.attributes["docker.name"], "nginx:1.27");
        let top = msg(EventMessageTypeEnum::CONTAINER, "top", &[]);
        assert!(to_audit(&top, "h", None, &EventsConfig::default().exclude_actions, 0).is_none());
    }

    #[test]
    fn same_event_same_id() {
        let m = msg(EventMessageTypeEnum::CONTAINER, "oom", &[]);
        assert_eq!(audit(&m).event_id, audit(&m).event_id);
    }

    #[test]
    fn since_has_nanoseconds() {
        assert_eq!(
            since_param(1_700_000_000_000_000_042),
            "1700000000.000000042"
        );
    }
}
