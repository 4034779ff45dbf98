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
//!
//! **Zero-copy produce** ([`ProducerHandle::send`]): librdkafka's usual path
//! (`RD_KAFKA_MSG_F_COPY`, what `rdkafka`'s `FutureProducer` does) copies every payload,
//! so each in-flight batch was held twice: our copy (kept to re-send or spool it) and
//! librdkafka's. Here the payload is a shared [`Payload`] handed to librdkafka by pointer
//! (`rd_kafka_produceva` without the copy flag); the delivery opaque holds a reference to
//! it, so the bytes cannot be freed before librdkafka's delivery report for the message
//! has been handled.

use std::ffi::{c_void, CString};
use std::sync::{Arc, RwLock};

use rdkafka::bindings as rdsys;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::util::IntoOpaque;

pub use super::buffers::Payload;

/// The producer type: librdkafka's handle plus the thread serving its delivery reports.
pub type KafkaProducer = ThreadedProducer<DeliveryContext>;

/// Resolves when Kafka acknowledged (`Ok(Ok(()))`) or finally failed (`Ok(Err(_))`) one
/// message; `Err(_)` when the report was lost (the producer was destroyed first).
pub type Delivery = tokio::sync::oneshot::Receiver<Result<(), KafkaError>>;

/// What the delivery opaque carries: where to report, and the payload librdkafka points
/// into (kept alive until the report).
pub struct InFlight {
    report: tokio::sync::oneshot::Sender<Result<(), KafkaError>>,
    _payload: Payload,
}

/// The producer's context: forwards each delivery report to the message's [`Delivery`].
#[derive(Clone, Copy, Debug, Default)]
pub struct DeliveryContext;

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<InFlight>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.clone()),
        };
        let InFlight { report, _payload } = *opaque;
        let _ = report.send(outcome);
        // `_payload` is released here, after librdkafka is done with the message.
    }
}

/// One message to produce.
pub struct OutRecord<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Partition; `None` lets librdkafka's partitioner choose from the key.
    pub partition: Option<i32>,
    /// Key bytes.
    pub key: Option<&'a [u8]>,
    /// Headers: names (see `sightline_model::kafka`) and values.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The payload, shared rather than copied.
    pub payload: Payload,
}

/// A producer and its generation (incremented at each replacement).
pub struct ProducerHandle {
    config: ClientConfig,
    current: RwLock<(u64, KafkaProducer)>,
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
        let producer: KafkaProducer = config.create_with_context(DeliveryContext)?;
        Ok(Arc::new(ProducerHandle {
            config,
            current: RwLock::new((0, producer)),
        }))
    }

    /// The current producer and its generation.
    pub fn get(&self) -> (u64, KafkaProducer) {
        let g = self.current.read().unwrap_or_else(|p| p.into_inner());
        (g.0, g.1.clone())
    }

    /// The current producer.
    pub fn producer(&self) -> KafkaProducer {
        self.get().1
    }

    /// Enqueues `record` on the current producer without copying its payload. Returns the
    /// producer's generation (for [`Self::recover`]) and the message's [`Delivery`].
    ///
    /// Errors: librdkafka refused to enqueue (`QueueFull` when `queue.buffering.max.*` is
    /// reached: wait and retry; an unknown topic or partition; a fatal producer).
    pub fn send(&self, record: &OutRecord<'_>) -> Result<(u64, Delivery), KafkaError> {
        let (generation, producer) = self.get();
        produce(&producer, record).map(|d| (generation, d))
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
        match self
            .config
            .create_with_context::<_, KafkaProducer>(DeliveryContext)
        {
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
fn fatal(p: &KafkaProducer) -> Option<(RDKafkaErrorCode, String)> {
    p.client().fatal_error()
}

/// `rd_kafka_produceva` without `RD_KAFKA_MSG_F_COPY`: librdkafka keeps a pointer to the
/// payload until the message's delivery report, and the opaque owns a reference to it
/// until then.
///
/// Errors: as [`ProducerHandle::send`].
pub fn produce(producer: &KafkaProducer, r: &OutRecord<'_>) -> Result<Delivery, KafkaError> {
    use rdsys::rd_kafka_vtype_t as T;
    let topic = CString::new(r.topic)
        .map_err(|_| KafkaError::MessageProduction(RDKafkaErrorCode::InvalidTopic))?;
    let bad = |_| KafkaError::MessageProduction(RDKafkaErrorCode::InvalidArgument);
    let names = r
        .headers
        .iter()
        .map(|(n, _)| CString::new(*n).map_err(bad))
        .collect::<Result<Vec<_>, _>>()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let opaque = Box::new(InFlight {
        report: tx,
        _payload: r.payload.clone(),
    })
    .into_ptr();
    // SAFETY: the union field written matches each `vtype`, as librdkafka's
    // `rd_kafka_produceva` reads them; every pointer outlives the call (librdkafka copies
    // topic, key and headers), and the payload, which it does not copy, is kept alive by
    // the opaque until the delivery report is handled (`DeliveryContext::delivery`).
    let mut vus: Vec<rdsys::rd_kafka_vu_t> = Vec::with_capacity(6 + r.headers.len());
    let vu = |vtype: T, u: rdsys::rd_kafka_vu_s__bindgen_ty_1| rdsys::rd_kafka_vu_t { vtype, u };
    vus.push(vu(
        T::RD_KAFKA_VTYPE_TOPIC,
        rdsys::rd_kafka_vu_s__bindgen_ty_1 {
            cstr: topic.as_ptr(),
        },
    ));
    vus.push(vu(
        T::RD_KAFKA_VTYPE_PARTITION,
        rdsys::rd_kafka_vu_s__bindgen_ty_1 {
            i32_: r.partition.unwrap_or(-1),
        },
    ));
    vus.push(vu(
        T::RD_KAFKA_VTYPE_MSGFLAGS,
        rdsys::rd_kafka_vu_s__bindgen_ty_1 { i: 0 },
    ));
    vus.push(vu(
        T::RD_KAFKA_VTYPE_VALUE,
        rdsys::rd_kafka_vu_s__bindgen_ty_1 {
            mem: rdsys::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                ptr: r.payload.as_ptr() as *mut c_void,
                size: r.payload.len(),
            },
        },
    ));
    if let Some(key) = r.key {
        vus.push(vu(
            T::RD_KAFKA_VTYPE_KEY,
            rdsys::rd_kafka_vu_s__bindgen_ty_1 {
                mem: rdsys::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                    ptr: key.as_ptr() as *mut c_void,
                    size: key.len(),
                },
            },
        ));
    }
    for (name, (_, value)) in names.iter().zip(r.headers) {
        vus.push(vu(
            T::RD_KAFKA_VTYPE_HEADER,
            rdsys::rd_kafka_vu_s__bindgen_ty_1 {
                header: rdsys::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                    name: name.as_ptr(),
                    val: value.as_ptr() as *const c_void,
                    size: value.len() as isize,
                },
            },
        ));
    }
    vus.push(vu(
        T::RD_KAFKA_VTYPE_OPAQUE,
        rdsys::rd_kafka_vu_s__bindgen_ty_1 { ptr: opaque },
    ));
    let error = unsafe {
        rdsys::rd_kafka_produceva(producer.client().native_ptr(), vus.as_ptr(), vus.len())
    };
    if error.is_null() {
        return Ok(rx);
    }
    // Not enqueued: take the opaque back (releasing the payload reference) and report.
    let code = unsafe {
        let code = rdsys::rd_kafka_error_code(error);
        rdsys::rd_kafka_error_destroy(error);
        drop(Box::<InFlight>::from_ptr(opaque));
        code
    };
    Err(KafkaError::MessageProduction(code.into()))
}
