//! The server's metrics, in the Prometheus text format on the HTTP port's
//! `/metrics` (docs/operations.md says what each one means when it alarms).
//!
//! Counters and histograms are updated where things happen (the journal
//! writer, the boundary, the scrub); gauges that restate the engine's state
//! are read from it when the metrics are scraped, so they cannot drift.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::gate::Stop;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    /// The gRPC method's path, or `other` for a path the server does not
    /// serve (so no caller can grow the label set).
    method: &'static str,
    /// The gRPC status code's name.
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StopLabels {
    /// `Stop::name`: what stopped writes.
    reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    records: Gauge,
    commit_batches: Counter,
    commit_batch_records: Histogram,
    commit_seconds: Histogram,
    commit_failures: Counter,
    queue_depth: Gauge,
    read_only: Gauge,
    writes_stopped: Family<StopLabels, Gauge>,
    checkpoint_size: Gauge,
    checkpoint_signed_at_seconds: Gauge,
    scrubs: Family<ResultLabels, Counter>,
    calls: Family<CallLabels, Counter>,
    call_seconds: HistogramFamily<MethodLabels>,
    replica_upstream_checkpoint_size: Gauge,
    replica_lag_records: Gauge,
    replica_stopped: Gauge,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 105 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 21))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("fundtrail"),
            records: Gauge::default(),
            commit_batches: Counter::default(),
            // 1 to 2,048 records (COMMIT_BATCH_RECORDS_MAX).
            commit_batch_records: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            commit_seconds: latency_histogram(),
            commit_failures: Counter::default(),
            queue_depth: Gauge::default(),
            read_only: Gauge::default(),
            writes_stopped: Family::default(),
            checkpoint_size: Gauge::default(),
            checkpoint_signed_at_seconds: Gauge::default(),
            scrubs: Family::default(),
            calls: Family::default(),
            call_seconds: Family::new_with_constructor(latency_histogram),
            replica_upstream_checkpoint_size: Gauge::default(),
            replica_lag_records: Gauge::default(),
            replica_stopped: Gauge::default(),
        };
        metrics.register();
        metrics
    }

    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "ledger_records",
            "Records in the ledger (on a replica: records verified)",
            self.records.clone(),
        );
        r.register(
            "commit_batches",
            "Batches this process committed to the journal",
            self.commit_batches.clone(),
        );
        r.register(
            "commit_batch_records",
            "Records per committed batch",
            self.commit_batch_records.clone(),
        );
        r.register(
            "commit_seconds",
            "Time to append a batch durably (write and fdatasync, or the database commit)",
            self.commit_seconds.clone(),
        );
        r.register(
            "commit_failures",
            "Batches the journal failed to commit (each stops writes)",
            self.commit_failures.clone(),
        );
        r.register(
            "sequencer_queue_depth",
            "Requests waiting for the sequencer",
            self.queue_depth.clone(),
        );
        r.register(
            "read_only",
            "1 while the ledger refuses writes (see GetLedger's read_only_reason)",
            self.read_only.clone(),
        );
        r.register(
            "writes_stopped",
            "1 for what stopped writes (store_io: mend the disk or database; store_corrupt: rebuild or restore; replica: by design), 0 for the rest",
            self.writes_stopped.clone(),
        );
        r.register(
            "checkpoint_tree_size",
            "Tree size of the newest checkpoint this node signed or adopted",
            self.checkpoint_size.clone(),
        );
        r.register(
            "checkpoint_signed_at_seconds",
            "When this process signed or adopted its newest checkpoint (Unix time; 0 before the first)",
            self.checkpoint_signed_at_seconds.clone(),
        );
        r.register(
            "scrubs",
            "Scrubs of the whole log, by result",
            self.scrubs.clone(),
        );
        r.register(
            "grpc_requests",
            "gRPC calls answered, by method and status code",
            self.calls.clone(),
        );
        r.register(
            "grpc_request_seconds",
            "Time from a call's arrival to the end of its answer, by method",
            self.call_seconds.clone(),
        );
        r.register(
            "replica_upstream_checkpoint_size",
            "On a replica: tree size of the upstream's newest checkpoint",
            self.replica_upstream_checkpoint_size.clone(),
        );
        r.register(
            "replica_lag_records",
            "On a replica: records the upstream signed that it has not verified yet",
            self.replica_lag_records.clone(),
        );
        r.register(
            "replica_stopped",
            "On a replica: 1 once the upstream failed a check and it stopped following",
            self.replica_stopped.clone(),
        );
    }

    /// A batch of `records` committed in `elapsed`.
    pub(crate) fn committed(&self, records: usize, elapsed: Duration) {
        self.commit_batches.inc();
        self.commit_batch_records.observe(records as f64);
        self.commit_seconds.observe(elapsed.as_secs_f64());
    }

    pub(crate) fn commit_failed(&self) {
        self.commit_failures.inc();
    }

    /// A new checkpoint was signed or adopted at `now_ms`.
    pub(crate) fn checkpointed(&self, now_ms: i64) {
        self.checkpoint_signed_at_seconds.set(now_ms / 1_000);
    }

    /// A scrub ended: `intact`, `problem`, `inconclusive` or `stopped`.
    pub(crate) fn scrubbed(&self, result: &'static str) {
        self.scrubs.get_or_create(&ResultLabels { result }).inc();
    }

    fn called(&self, method: &'static str, code: tonic::Code, elapsed: Duration) {
        let code = code_name(code);
        self.calls.get_or_create(&CallLabels { method, code }).inc();
        self.call_seconds
            .get_or_create(&MethodLabels { method })
            .observe(elapsed.as_secs_f64());
    }

    /// The metrics in the Prometheus text format, with the gauges as
    /// `now` shows them.
    pub fn render(&self, now: &Gauges) -> String {
        self.records.set(gauge_value(now.records));
        self.queue_depth.set(gauge_value(now.queue_depth as u64));
        self.read_only.set(i64::from(now.read_only));
        for reason in Stop::NAMES {
            let stopped = now.writes_stopped == Some(reason);
            self.writes_stopped
                .get_or_create(&StopLabels { reason })
                .set(i64::from(stopped));
        }
        self.checkpoint_size.set(gauge_value(now.checkpoint_size));
        if let Some(replica) = &now.replica {
            self.replica_upstream_checkpoint_size
                .set(gauge_value(replica.upstream_checkpoint_size));
            self.replica_lag_records.set(gauge_value(
                replica.upstream_checkpoint_size.saturating_sub(now.records),
            ));
            self.replica_stopped.set(i64::from(replica.stopped));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// What the gauges show, read from the engine when metrics are scraped.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Durable records.
    pub records: u64,
    /// Requests waiting for the sequencer.
    pub queue_depth: usize,
    pub read_only: bool,
    /// What stopped writes ([`Stop::name`]), if they are stopped.
    pub writes_stopped: Option<&'static str>,
    /// The tree size of the newest signed checkpoint.
    pub checkpoint_size: u64,
    /// On a replica: what it knows of its upstream.
    pub replica: Option<ReplicaGauges>,
}

#[derive(Debug, Clone, Default)]
pub struct ReplicaGauges {
    pub upstream_checkpoint_size: u64,
    pub stopped: bool,
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The status code a gRPC header or trailer map carries, if any.
fn status_in(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<i32>().ok())
        .map(tonic::Code::from)
}

/// One call being answered: counted once, with its status code and time,
/// as soon as the code is known (before the client can see it), or as
/// CANCELLED if its answer is dropped first.
pub(crate) struct CallTimer {
    metrics: Arc<Metrics>,
    method: &'static str,
    started: Instant,
    counted: bool,
}

impl CallTimer {
    pub(crate) fn start(metrics: Arc<Metrics>, method: &'static str) -> CallTimer {
        CallTimer {
            metrics,
            method,
            started: Instant::now(),
            counted: false,
        }
    }

    fn count(&mut self, code: tonic::Code) {
        if !self.counted {
            self.counted = true;
            self.metrics
                .called(self.method, code, self.started.elapsed());
        }
    }

    /// Wraps `response` so the call is counted when its status is known:
    /// now for a trailers-only answer (an error), else at its trailers.
    pub(crate) fn finish<B>(mut self, response: http::Response<B>) -> http::Response<Timed<B>> {
        if let Some(code) = status_in(response.headers()) {
            self.count(code);
        }
        response.map(|body| Timed { body, timer: self })
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        self.count(tonic::Code::Cancelled);
    }
}

/// A response body that reports its call's status code when it ends.
pub(crate) struct Timed<B> {
    body: B,
    timer: CallTimer,
}

impl<B: HttpBody + Unpin> HttpBody for Timed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(code) = frame.trailers_ref().and_then(status_in) {
                self.timer.count(code);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
