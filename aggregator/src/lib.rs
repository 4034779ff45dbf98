//! Sightline aggregator: consumes log events from Kafka, indexes them into tantivy exactly
//! once, and serves the query API over the same index.
//!
//! Module map:
//! - [`config`]: [`AggregatorConfig`] (TOML, `deny_unknown_fields`) and its pure
//!   `validate()`.
//! - [`consumer`]: Kafka source stage ([`KafkaSource`], the blocking consume loop).
//! - [`indexer`]: index stage ([`Indexer`]): decoding, offset/replay de-duplication,
//!   commits with a checkpoint payload.
//! - [`clock`]: the injectable clock of rules, notifications and autoscaling.
//! - [`checkpoint`]: the versioned commit payload (Kafka offsets, source watermarks).
//! - [`metrics`]: [`IndexerMetrics`] counters.
//! - [`rules`]: alert rules: rule files, the PromQL subset, the alert state machine and the
//!   [`rules::RuleManager`] that evaluates them.
//! - [`rollup`]: per-service rollups (10 s / 1 min windows of container stats and log
//!   counts, persisted under `<data_dir>/rollups`), the [`series::SeriesSource`] rules read.
//! - [`series`]: the series model shared by rollups and alert rules ([`series::SeriesSource`]).
//! - [`audit`]: the tamper-evident audit trail (SHA-256 chained, append-only store under
//!   `<data_dir>/audit`; verify, query, HTTP routes, the store-backed [`alert::ActionLog`]).
//! - [`alert`]: [`alert::Alert`]s handed from rules to notifications and autoscaling, and
//!   the [`alert::ActionLog`] that records Sightline's own actions in the audit trail.
//! - [`autoscale`]: autoscaling ([`autoscale::Controller`]): target-tracking and step
//!   policies with cooldowns and stabilization, applied to ECS, a webhook or Docker.
//! - [`alerting`]: the above wired together while the aggregator runs: rules over the
//!   rollups, log samples from the index, fan-out to the notifier and the autoscaler, the
//!   `/api/v1/rules`, `/api/v1/alerts`, `/api/v1/scaling` and `/-/reload` routes.
//! - [`api_auth`]: API tokens (`[api]`): bearer-token checks, each use in the audit trail.
//! - [`notify`]: on-call notifications ([`notify::Notifier`]): Alertmanager-style routing,
//!   grouping and timers; webhook (payload v4), PagerDuty and Slack receivers.
//!
//! Embedding (what the `sightline-aggregator` binary does):
//!
//! ```no_run
//! # async fn demo(config: sightline_aggregator::AggregatorConfig) -> Result<(), Box<dyn std::error::Error>> {
//! use sightline_aggregator::Aggregator;
//! use tokio_util::sync::CancellationToken;
//!
//! let aggregator = Aggregator::open(config)?;              // opens/creates <data_dir>/index
//! let listener = tokio::net::TcpListener::bind(aggregator.config().listen.as_str()).await?;
//! let shutdown = CancellationToken::new();                 // cancel() to stop
//! aggregator.run_with_api(listener, shutdown).await?;      // final commit on the way out
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod alert;
pub mod alerting;
pub mod api_auth;
pub mod audit;
pub mod autoscale;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod indexer;
pub mod metrics;
pub mod notify;
pub mod rollup;
pub mod rules;
pub mod series;

use std::sync::Arc;
use std::time::Duration;

use sightline_query::{
    AppState, IndexOpenError, IndexSchema, QueryEngine, QueryError, QueryLimits,
};
use tantivy::{Index, IndexReader, ReloadPolicy};
use tokio_util::sync::CancellationToken;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use config::{AggregatorConfig, ConfigError, KafkaConfig};
pub use consumer::KafkaSource;
pub use indexer::{Indexer, IndexerError};
pub use metrics::{IndexerMetrics, MetricsSnapshot};

/// Everything that can stop the aggregator.
#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The index directory could not be opened or created.
    #[error(transparent)]
    IndexOpen(#[from] IndexOpenError),
    /// The rollup store could not be opened (corrupt or unreadable files).
    #[error(transparent)]
    Rollup(#[from] rollup::RollupError),
    /// The audit store could not be opened (locked, corrupt, unreadable).
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    /// Alert rules, notifications or autoscaling could not be set up.
    #[error(transparent)]
    Alerting(#[from] alerting::AlertingError),
    /// The index stage failed (tantivy or checkpoint).
    #[error(transparent)]
    Indexer(#[from] IndexerError),
    /// The consume loop stopped on an error (index failure or fatal Kafka error).
    #[error(transparent)]
    Consume(#[from] consumer::ConsumeError),
    /// The Kafka client could not be created.
    #[error("Kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The query engine could not be built.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// Serving the API failed.
    #[error("query API: {0}")]
    Serve(#[from] std::io::Error),
    /// The audit trail's writer of Sightline's own actions could not be started.
    #[error("audit action writer: {0}")]
    ActionLog(std::io::Error),
    /// A background task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}

/// An opened aggregator: index, writer, reader and Kafka consumer, ready to [`run`].
///
/// [`run`]: Aggregator::run
pub struct Aggregator {
    config: AggregatorConfig,
    index: Index,
    reader: IndexReader,
    engine: Arc<QueryEngine>,
    indexer: Indexer,
    source: KafkaSource,
    metrics: Arc<IndexerMetrics>,
    audit: Option<AuditPart>,
    rollups: Option<RollupPart>,
    alerting: Option<alerting::Alerting>,
    /// Where Sightline's own actions go: the audit trail's writer, or the log.
    actions: Arc<dyn alert::ActionLog>,
    /// The audit trail's writer of those actions (closed, so flushed, when `run` ends).
    action_store: Option<Arc<audit::StoreActionLog>>,
    api_auth: Option<Arc<api_auth::ApiAuth>>,
}

/// The rollup store and the consumers of the logs and metrics topics feeding it.
struct RollupPart {
    store: rollup::SharedRollups,
    stages: Vec<(KafkaSource, rollup::stage::RollupStage)>,
}

/// The audit trail's store and the consumer of the audit topic.
struct AuditPart {
    store: audit::AuditStore,
    source: KafkaSource,
    stage: audit::AuditStage,
}

impl Aggregator {
    /// Validates `config`, opens or creates `<data_dir>/index`, takes the index writer lock,
    /// loads the last commit's checkpoint and creates the (not yet connected) Kafka consumer.
    ///
    /// Errors: `Config`, `IndexOpen` (bad/incompatible index), `Indexer` (writer lock held by
    /// another process, unreadable checkpoint), `Kafka` (invalid client settings).
    pub fn open(config: AggregatorConfig) -> Result<Self, AggregatorError> {
        config.validate()?;
        let index = IndexSchema::new().open_or_create(&config.index_dir())?;
        let reader: IndexReader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(IndexerError::from)?;
        let metrics = Arc::new(IndexerMetrics::default());
        let indexer = Indexer::new(
            &index,
            reader.clone(),
            usize::try_from(config.writer_memory_bytes).unwrap_or(usize::MAX),
            Duration::from_millis(config.commit_interval_ms),
            metrics.clone(),
        )?;
        let limits = QueryLimits {
            max_correlation_events: config.max_correlation_events,
            ..QueryLimits::default()
        };
        let engine = Arc::new(QueryEngine::new(&index, reader.clone(), limits)?);
        let source = KafkaSource::new(&config.kafka, indexer.next_offsets())?;
        let audit = if config.audit.enabled {
            let store = audit::AuditStore::open(config.audit_dir(), config.audit.store())?;
            let kafka = KafkaConfig {
                topic: config.audit.topic.clone(),
                group_id: format!("{}.audit", config.kafka.group_id),
                ..config.kafka.clone()
            };
            let source = KafkaSource::new(&kafka, &store.positions())?;
            let stage = audit::AuditStage::new(
                store.clone(),
                Duration::from_millis(config.audit.commit_interval_ms),
            );
            Some(AuditPart {
                store,
                source,
                stage,
            })
        } else {
            None
        };
        let rollups = if config.rollups.enabled {
            let store = rollup::RollupStore::open(&config.rollups_dir(), config.rollups.clone())?;
            let shared = rollup::SharedRollups(Arc::new(std::sync::RwLock::new(store)));
            let flush = Duration::from_millis(config.rollups.flush_interval.max(1) as u64);
            let mut stages = Vec::new();
            let caught_up = rollup::stage::CaughtUp::default();
            for (topic, feed) in [
                (config.kafka.topic.clone(), rollup::stage::Feed::Logs),
                (
                    config.rollups.metrics_topic.clone(),
                    rollup::stage::Feed::Metrics,
                ),
            ] {
                let kafka = KafkaConfig {
                    topic: topic.clone(),
                    group_id: format!("{}.rollups", config.kafka.group_id),
                    ..config.kafka.clone()
                };
                let source =
                    KafkaSource::new(&kafka, &rollup::stage::positions_of(&shared, &topic))?;
                let stage = rollup::stage::RollupStage::new(
                    shared.clone(),
                    &caught_up,
                    feed,
                    &topic,
                    flush,
                );
                stages.push((source, stage));
            }
            Some(RollupPart {
                store: shared,
                stages,
            })
        } else {
            None
        };
        let action_store = audit
            .as_ref()
            .map(|a| audit::StoreActionLog::new(a.store.clone()).map(Arc::new))
            .transpose()
            .map_err(AggregatorError::ActionLog)?;
        let actions: Arc<dyn alert::ActionLog> = match &action_store {
            Some(s) => s.clone(),
            None => Arc::new(alert::TracingActionLog),
        };
        let alerting = alerting::Alerting::build(
            &config,
            rollups.as_ref().map(|r| &r.store),
            engine.clone(),
            actions.clone(),
        )?;
        let api_auth = api_auth::ApiAuth::new(&config.api, actions.clone());
        tracing::info!(
            index = %config.index_dir().display(),
            docs = reader.searcher().num_docs(),
            partitions_in_checkpoint = indexer.next_offsets().len(),
            "aggregator opened"
        );
        Ok(Aggregator {
            config,
            index,
            reader,
            engine,
            indexer,
            source,
            metrics,
            audit,
            rollups,
            alerting,
            actions,
            action_store,
            api_auth,
        })
    }

    /// The (validated) configuration.
    pub fn config(&self) -> &AggregatorConfig {
        &self.config
    }

    /// The tantivy index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// A reader of the index, reloaded by the indexer after each commit (so it sees new
    /// events at most `commit_interval_ms` plus commit time after they arrive).
    pub fn index_reader(&self) -> IndexReader {
        self.reader.clone()
    }

    /// The query engine over [`Self::index_reader`], with this config's limits.
    pub fn query_engine(&self) -> Arc<QueryEngine> {
        self.engine.clone()
    }

    /// The audit trail's store (`None` when `audit.enabled = false`).
    pub fn audit_store(&self) -> Option<audit::AuditStore> {
        self.audit.as_ref().map(|a| a.store.clone())
    }

    /// The rollups, readable as series (`None` when `rollups.enabled = false`).
    pub fn rollups(&self) -> Option<rollup::SharedRollups> {
        self.rollups.as_ref().map(|r| r.store.clone())
    }

    /// Where Sightline's own actions are recorded (the audit trail when it is on).
    pub fn action_log(&self) -> Arc<dyn alert::ActionLog> {
        self.actions.clone()
    }

    /// Rules status, scaling history and rule reloads (`None` without `[rules]` and
    /// `[autoscale]`).
    pub fn alerting(&self) -> Option<alerting::AlertingHandle> {
        self.alerting.as_ref().map(|a| a.handle())
    }

    /// The HTTP API: the query API plus the audit endpoints (`/api/v1/audit`,
    /// `/api/v1/audit/verify`) when the trail is on, `/api/v1/rollups` when rollups are,
    /// and the alerting routes (`/api/v1/rules`, `/api/v1/alerts`, `/api/v1/scaling`,
    /// `POST /-/reload`) when rules or autoscaling are configured.
    pub fn app(&self) -> axum::Router {
        let mut extra = axum::Router::new();
        if let Some(handle) = self.alerting() {
            extra = extra.merge(alerting::api::router(
                handle,
                self.config.api.enable_lifecycle,
            ));
        }
        if let Some(store) = self.audit_store() {
            extra = extra.merge(audit::api::router(store));
        }
        if let Some(store) = self.rollups() {
            extra = extra.merge(rollup::api::router(store));
        }
        let app = sightline_query::app_with(self.app_state(), extra);
        match &self.api_auth {
            // Outermost, so a refused request costs nothing else.
            Some(auth) => app.layer(axum::middleware::from_fn_with_state(
                auth.clone(),
                api_auth::require_token,
            )),
            None => app,
        }
    }

    /// State for [`sightline_query::app`] / [`sightline_query::serve`].
    pub fn app_state(&self) -> AppState {
        AppState::from_arc(self.engine.clone())
    }

    /// Live counters.
    pub fn metrics(&self) -> Arc<IndexerMetrics> {
        self.metrics.clone()
    }

    /// Consumes and indexes until `shutdown` is cancelled, then commits what was handled
    /// (the final commit) and leaves the consumer group. The Kafka loop runs on a blocking
    /// thread; shutdown is noticed within 100 ms.
    ///
    /// Errors: `Indexer` when tantivy fails (the index keeps its last commit), `Task` if the
    /// loop panicked.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AggregatorError> {
        let Aggregator {
            mut indexer,
            source,
            metrics,
            audit,
            rollups,
            alerting,
            action_store,
            ..
        } = self;
        // Any stage stopping — an error or a panic — stops the others (the drop guards
        // cancel `stop` however the closure ends).
        let stop = shutdown.child_token();
        // Alerting runs on the runtime (its work is timers and HTTP; rule evaluation goes
        // to a blocking thread) and stops with the stages.
        let alerting_task = alerting.map(|a| {
            let sighup = tokio::spawn(alerting::reload_on_sighup(a.handle(), stop.clone()));
            let run = tokio::spawn(a.run(stop.clone()));
            async move {
                let _ = sighup.await;
                run.await
            }
        });
        let audit_task = audit.map(|a| {
            let (stop, metrics) = (stop.clone(), metrics.clone());
            tokio::task::spawn_blocking(move || {
                let _stop_others = stop.clone().drop_guard();
                let AuditPart {
                    source, mut stage, ..
                } = a;
                let result = consumer::consume(&source, &mut stage, &stop, &metrics);
                drop(source);
                result
            })
        });
        let mut rollup_tasks = Vec::new();
        for (source, mut stage) in rollups.into_iter().flat_map(|r| r.stages) {
            let (stop, metrics) = (stop.clone(), metrics.clone());
            rollup_tasks.push(tokio::task::spawn_blocking(move || {
                let _stop_others = stop.clone().drop_guard();
                let result = consumer::consume(&source, &mut stage, &stop, &metrics);
                drop(source);
                result
            }));
        }
        let rollup_tasks = futures::future::join_all(rollup_tasks);
        let index_stop = stop.clone();
        let index_task = tokio::task::spawn_blocking(move || {
            let _stop_others = index_stop.clone().drop_guard();
            let result = consumer::consume(&source, &mut indexer, &index_stop, &metrics);
            drop(source); // leaves the group (polls until closed)
            drop(indexer); // releases the writer lock
            result
        });
        let audit_task = async move {
            match audit_task {
                Some(t) => t.await.map(|r| r.map_err(AggregatorError::from)),
                None => Ok(Ok(())),
            }
        };
        let alerting_task = async move {
            match alerting_task {
                Some(t) => t.await,
                None => Ok(()),
            }
        };
        let (indexed, audited, rolled, alerted) =
            tokio::join!(index_task, audit_task, rollup_tasks, alerting_task);
        let task = |e: tokio::task::JoinError| AggregatorError::Task(e.to_string());
        // The first failure wins; the index's is reported first.
        indexed.map_err(task)?.map_err(AggregatorError::from)?;
        audited.map_err(task)??;
        for r in rolled {
            r.map_err(task)?.map_err(AggregatorError::from)?;
        }
        // The action writer is flushed and stopped when its last holder lets go of it:
        // here, or after the API server has drained (its token middleware holds one).
        drop(action_store);
        alerted.map_err(task)?;
        Ok(())
    }

    /// [`Self::run`] plus the query API served on `listener`, both until `shutdown` is
    /// cancelled. If either fails, the other is stopped too and the first error returned.
    pub async fn run_with_api(
        self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), AggregatorError> {
        let stop = shutdown.child_token();
        let api_stop = stop.clone();
        let mut server = tokio::spawn(sightline_query::serve_app(
            listener,
            self.app(),
            async move { api_stop.cancelled().await },
        ));
        let mut indexer = tokio::spawn(self.run(stop.clone()));
        let task = |e: tokio::task::JoinError| AggregatorError::Task(e.to_string());
        // Whichever ends first (error or shutdown) stops the other.
        let (indexed, served) = tokio::select! {
            i = &mut indexer => {
                stop.cancel();
                (i.map_err(task)?, server.await.map_err(task)?)
            }
            s = &mut server => {
                stop.cancel();
                (indexer.await.map_err(task)?, s.map_err(task)?)
            }
        };
        indexed?;
        served?;
        Ok(())
    }
}
