//! The shared Kafka producer, replaced after a fatal error.
//!
//! With `enable.idempotence=true`, librdkafka raises a *fatal* error when it cannot keep its
//! sequence guarantees — e.g. after messages timed out during a broker outage and the broker
//! then fences the producer (`ProducerFenced`, `OutOfOrderSequenceNumber`). A fatal producer
//! fails every later send, so whoever sees a failed delivery calls
//! [`ProducerHandle::recover`]: when the producer it used reports a fatal error, a new one is
//! created from the same settings (once per fatal error, however many callers ask). Messages
//! the old producer had not delivered fail, and their senders send them again (or spool
//! them): nothing is lost, and duplicates keep their event IDs.

use std::sync::{Arc, RwLock};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;

/// A producer and its generation (incremented at each replacement).
pub struct ProducerHandle {
    config: ClientConfig,
    current: RwLock<(u64, FutureProducer)>,
}

impl std::fmt::Debug for ProducerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerHandle")
            .field("generation", &self.get().0)
            .finish_non_exhaustive()
    }
}

impl ProducerHandle {
    /// Creates the first producer. Errors: invalid settings.
    pub fn new(config: ClientConfig) -> Result<Arc<Self>, KafkaError> {
        let producer: FutureProducer = config.create()?;
        Ok(Arc::new(ProducerHandle {
            config,
            current: RwLock::new((0, producer)),
        }))
    }

    /// The current producer and its generation.
    pub fn get(&self) -> (u64, FutureProducer) {
        let g = self.current.read().unwrap_or_else(|p| p.into_inner());
        (g.0, g.1.clone())
    }

    /// The current producer.
    pub fn producer(&self) -> FutureProducer {
        self.get().1
    }

    /// Called after a failed delivery (`error`, when known) on the producer of generation
    /// `generation`: when that producer is still current and either in a fatal state or
    /// fenced by the broker (`ProducerFenced`, `InvalidProducerEpoch`, `UnknownProducerId`,
    /// `OutOfOrderSequenceNumber`: the idempotent producer's identity is no longer valid, and
    /// librdkafka does not always flag these fatal), replaces it. Returns whether a new
    /// producer is in place (now or by an earlier call).
    pub fn recover(&self, generation: u64, error: Option<&KafkaError>) -> bool {
        let mut g = self.current.write().unwrap_or_else(|p| p.into_inner());
        if g.0 != generation {
            return true;
        }
        let fenced = error.and_then(KafkaError::rdkafka_error_code).filter(|c| {
            matches!(
                c,
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
            )
        });
        let Some((code, reason)) = fatal(&g.1).or(fenced.map(|c| (c, c.to_string()))) else {
            return false;
        };
        match self.config.create::<FutureProducer>() {
            Ok(p) => {
                tracing::warn!(?code, %reason, "Kafka producer hit a fatal error; replaced it");
                *g = (generation + 1, p);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot replace the failed Kafka producer");
                false
            }
        }
    }
}

/// The fatal error of a producer, if any.
fn fatal(p: &FutureProducer) -> Option<(RDKafkaErrorCode, String)> {
    use rdkafka::producer::Producer;
    p.client().fatal_error()
}
