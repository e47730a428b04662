//! The trust boundary: every call passes here before a service sees it.
//!
//! In order: admit the call's message to be received, within its
//! address's share ([`RECEIVING_CALLS_PER_ADDRESS_MAX`]) and its deadline
//! (shorter for calls that carry no key); bound the request message by its
//! method's limit (RESOURCE_EXHAUSTED, naming it); check the read signature
//! (docs/read-signature.md) against the keys registered at the head, the
//! skew window and the nonces already seen, charging a failure to the
//! address; charge the key's read allowance; take one of the
//! [`IN_FLIGHT_CALLS_MAX`] answering slots (calls without a key at most
//! [`UNKEYED_CALLS_MAX`] of them; health checks need none); and hand the
//! service the [`Caller`]. A call holds no answering slot while its message
//! is still arriving, so clients that send headers and never a body hold
//! only their own address's share. On the way out, a request that did not
//! decode is answered INVALID_ARGUMENT rather than tonic's INTERNAL.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use fundtrail_core::access::Reader;
use fundtrail_core::limits::{
    ANSWERING_CALLS_PER_ADDRESS_MAX, BUFFERED_REQUEST_BYTES_MAX,
    BUFFERED_REQUEST_BYTES_PER_ADDRESS_MAX, GRPC_MESSAGE_BYTES_MAX, IN_FLIGHT_CALLS_MAX,
    MIN_SEQ_WAIT_MS, POST_STREAM_MESSAGE_BYTES_MAX, QUERY_REQUEST_BYTES_MAX, READ_COST_MAX,
    READ_NONCES_PER_KEY_MAX, READ_NONCES_PER_ORG_MAX, READ_NONCES_REMEMBERED_MAX,
    RECEIVING_CALLS_PER_ADDRESS_MAX, RECONCILE_REQUEST_BYTES_MAX, REQUEST_BODY_TIMEOUT_MS,
    UNKEYED_BODY_TIMEOUT_MS, UNKEYED_CALLS_MAX,
};
use fundtrail_core::signing::{sha256, ReadClaim};
use fundtrail_core::state::StateRead;
use fundtrail_core::{Error, Fault, Rejection};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::Status;

use crate::engine::Engine;
use crate::metrics::CallTimer;
use crate::status::status;

use fundtrail_core::signing::{MIN_SEQ_HEADER, RECORD_COUNT_HEADER};
use fundtrail_core::signing::{
    READ_KEY_ID_HEADER as KEY_ID_HEADER, READ_NONCE_HEADER as NONCE_HEADER,
    READ_SIGNATURE_HEADER as SIGNATURE_HEADER, READ_SIGNED_AT_HEADER as SIGNED_AT_HEADER,
};

/// The streaming write: its body is not buffered, but each of its messages
/// is held to [`POST_STREAM_MESSAGE_BYTES_MAX`].
const POST_STREAM_PATH: &str = "/fundtrail.v1.Ledger/PostStream";

/// Paths of the write service, whose answers say the durable record count.
const LEDGER_PATH_PREFIX: &str = "/fundtrail.v1.Ledger/";

/// Health checks: answered without an answering slot, so a full server
/// still says whether it is alive.
const HEALTH_PATH_PREFIX: &str = "/grpc.health.v1.Health/";

/// The authenticated caller of a signed call, in the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    pub reader: Reader,
    /// The method called, as the boundary's table names it: what the
    /// access log records.
    pub method: &'static str,
}

/// How a method is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Open to anyone; a signed read is still checked and its caller known.
    Public,
    /// Needs a read signature.
    Signed,
    /// The message carries its own signature (a signed request, a
    /// witness's cosignature), checked by the service.
    SelfSigned,
}

/// What the boundary knows of one method.
#[derive(Debug, Clone, Copy)]
struct Method {
    path: &'static str,
    access: Access,
    /// Units of the caller's read allowance one call uses.
    cost: u32,
    request_bytes_max: usize,
}

const fn method(path: &'static str, access: Access, cost: u32, request_bytes_max: usize) -> Method {
    Method {
        path,
        access,
        cost,
        request_bytes_max,
    }
}

const Q: usize = QUERY_REQUEST_BYTES_MAX;

/// A health check's request: a service name.
const HEALTH_REQUEST_BYTES_MAX: usize = 1024;

/// Every unary-request method served. Streaming-request methods (server
/// reflection) pass unbuffered; unknown paths go on to UNIMPLEMENTED.
const METHODS: &[Method] = &[
    method(
        "/fundtrail.v1.Ledger/Post",
        Access::SelfSigned,
        1,
        GRPC_MESSAGE_BYTES_MAX,
    ),
    method(
        "/fundtrail.v1.Ledger/PostBatch",
        Access::SelfSigned,
        1,
        GRPC_MESSAGE_BYTES_MAX,
    ),
    method("/fundtrail.v1.Query/GetLedger", Access::Public, 1, Q),
    method("/fundtrail.v1.Query/GetEntry", Access::Signed, 1, Q),
    method("/fundtrail.v1.Query/ListEntries", Access::Signed, 10, Q),
    method("/fundtrail.v1.Query/GetAccount", Access::Signed, 2, Q),
    method("/fundtrail.v1.Query/ListAccounts", Access::Signed, 10, Q),
    method("/fundtrail.v1.Query/GetOrg", Access::Signed, 1, Q),
    method("/fundtrail.v1.Query/TraceForward", Access::Signed, 50, Q),
    method("/fundtrail.v1.Query/TraceBackward", Access::Signed, 50, Q),
    method(
        "/fundtrail.v1.Query/HouseholdStatement",
        Access::Signed,
        5,
        Q,
    ),
    method("/fundtrail.v1.Query/IdleFunds", Access::Signed, 50, Q),
    method(
        "/fundtrail.v1.Query/Anomalies",
        Access::Signed,
        READ_COST_MAX,
        Q,
    ),
    method(
        "/fundtrail.v1.Query/Compliance",
        Access::Signed,
        READ_COST_MAX,
        Q,
    ),
    method("/fundtrail.v1.Query/Watch", Access::Signed, 10, Q),
    method("/fundtrail.v1.Query/GetQuota", Access::Signed, 1, Q),
    method("/fundtrail.v1.Query/ListQuotas", Access::Signed, 10, Q),
    method(
        "/fundtrail.v1.Query/SpendingProgress",
        Access::Signed,
        50,
        Q,
    ),
    method(
        "/fundtrail.v1.Query/Reconcile",
        Access::Signed,
        READ_COST_MAX,
        RECONCILE_REQUEST_BYTES_MAX,
    ),
    method("/fundtrail.v1.Audit/GetLogKey", Access::Public, 1, Q),
    method("/fundtrail.v1.Audit/GetCheckpoint", Access::Public, 1, Q),
    method(
        "/fundtrail.v1.Audit/GetInclusionProof",
        Access::Public,
        1,
        Q,
    ),
    method(
        "/fundtrail.v1.Audit/GetInclusionProofs",
        Access::Public,
        50,
        Q,
    ),
    method(
        "/fundtrail.v1.Audit/GetConsistencyProof",
        Access::Public,
        1,
        Q,
    ),
    method(
        "/fundtrail.v1.Audit/ExportLog",
        Access::Signed,
        READ_COST_MAX,
        Q,
    ),
    method(
        "/fundtrail.v1.Audit/AddCosignature",
        Access::SelfSigned,
        1,
        Q,
    ),
    method(
        "/fundtrail.v1.Audit/Scrub",
        Access::Signed,
        READ_COST_MAX,
        Q,
    ),
    method("/fundtrail.v1.Audit/GetAccessLog", Access::Signed, 10, Q),
    method(
        "/fundtrail.v1.Audit/GetAccessConsistencyProof",
        Access::Public,
        1,
        Q,
    ),
    // A health request names at most a service: it needs no more, and
    // buffers nothing worth holding while it arrives.
    method(
        "/grpc.health.v1.Health/Check",
        Access::Public,
        1,
        HEALTH_REQUEST_BYTES_MAX,
    ),
    method(
        "/grpc.health.v1.Health/Watch",
        Access::Public,
        1,
        HEALTH_REQUEST_BYTES_MAX,
    ),
];

const _: () = {
    let mut i = 0;
    while i < METHODS.len() {
        assert!(METHODS[i].cost >= 1 && METHODS[i].cost <= READ_COST_MAX);
        i += 1;
    }
};

fn method_of(path: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.path == path)
}

/// The boundary's settings.
#[derive(Debug, Clone, Copy)]
pub struct BoundaryConfig {
    pub in_flight_calls_max: usize,
    /// Read allowance per key (and per address for unsigned public calls).
    pub read_cost_per_second: NonZeroU32,
    pub read_cost_burst: NonZeroU32,
    /// Read signatures remembered inside the skew window: in all, and of
    /// one org (all its keys together).
    pub read_nonces_max: usize,
    pub read_nonces_per_org_max: usize,
}

impl Default for BoundaryConfig {
    fn default() -> Self {
        use fundtrail_core::limits::{READ_COST_BURST_DEFAULT, READ_COST_PER_SECOND_DEFAULT};
        BoundaryConfig {
            in_flight_calls_max: IN_FLIGHT_CALLS_MAX,
            read_cost_per_second: NonZeroU32::new(READ_COST_PER_SECOND_DEFAULT).expect("nonzero"),
            read_cost_burst: NonZeroU32::new(READ_COST_BURST_DEFAULT).expect("nonzero"),
            read_nonces_max: READ_NONCES_REMEMBERED_MAX,
            read_nonces_per_org_max: READ_NONCES_PER_ORG_MAX,
        }
    }
}

/// State shared by every connection's copy of the boundary.
struct Shared {
    engine: Arc<Engine>,
    in_flight: Arc<Semaphore>,
    in_flight_max: usize,
    /// The answering slots calls without a key may hold, inside `in_flight`.
    unkeyed: Arc<Semaphore>,
    unkeyed_max: usize,
    /// Each client address's shares.
    addresses: Arc<Mutex<AddressShares>>,
    limiter: DefaultKeyedRateLimiter<String>,
    cost_per_second: u32,
    nonces: Mutex<Nonces>,
    /// Bytes of request bodies being received, server-wide.
    buffered: Arc<Semaphore>,
    charges: AtomicU64,
}

/// Charges between sweeps of the limiter's idle keys.
const LIMITER_SWEEP_EVERY: u64 = 1 << 16;

/// The layer that puts the boundary in front of every service. One per
/// server: the gRPC port and the HTTP port's gRPC-web share it, so a key's
/// nonces and read allowance are the same whichever port it calls.
#[derive(Clone)]
pub struct BoundaryLayer {
    shared: Arc<Shared>,
}

impl BoundaryLayer {
    pub fn new(engine: Arc<Engine>, config: BoundaryConfig) -> BoundaryLayer {
        let quota =
            Quota::per_second(config.read_cost_per_second).allow_burst(config.read_cost_burst);
        BoundaryLayer {
            shared: Arc::new(Shared {
                engine,
                in_flight: Arc::new(Semaphore::new(config.in_flight_calls_max)),
                in_flight_max: config.in_flight_calls_max,
                unkeyed: Arc::new(Semaphore::new(unkeyed_max(config.in_flight_calls_max))),
                unkeyed_max: unkeyed_max(config.in_flight_calls_max),
                addresses: Arc::new(Mutex::new(HashMap::new())),
                limiter: RateLimiter::keyed(quota),
                cost_per_second: config.read_cost_per_second.get(),
                nonces: Mutex::new(Nonces {
                    max: config.read_nonces_max,
                    per_org_max: config.read_nonces_per_org_max,
                    ..Nonces::default()
                }),
                buffered: Arc::new(Semaphore::new(BUFFERED_REQUEST_BYTES_MAX)),
                charges: AtomicU64::new(0),
            }),
        }
    }
}

impl<S> tower::Layer<S> for BoundaryLayer {
    type Service = Boundary<S>;
    fn layer(&self, inner: S) -> Boundary<S> {
        Boundary {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Boundary<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<Body>> for Boundary<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The clone that was made ready serves this call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let timer = CallTimer::start(
            shared.engine.metrics().clone(),
            metric_label(request.uri().path()),
        );
        Box::pin(async move {
            let response = answer(shared, inner, request).await?;
            Ok(timer.finish(response).map(Body::new))
        })
    }
}

/// The method label of a call's path for the metrics: the path of a method
/// served, else `other`.
fn metric_label(path: &str) -> &'static str {
    method_of(path)
        .map(|method| method.path)
        .or_else(|| STREAMING_PATHS.iter().copied().find(|&p| p == path))
        .unwrap_or("other")
}

/// Methods whose requests stream: not in [`METHODS`], served all the same.
const STREAMING_PATHS: &[&str] = &[
    POST_STREAM_PATH,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The share of answering slots for calls without a key: a quarter.
fn unkeyed_max(in_flight_max: usize) -> usize {
    (in_flight_max * UNKEYED_CALLS_MAX / IN_FLIGHT_CALLS_MAX).max(1)
}

/// The address a call came from: the TCP peer (through TLS too), or for
/// the HTTP port, whose peers are local (a TLS proxy in front), the last
/// address the proxy added to `x-forwarded-for`. `None` when unknown.
fn client_address(parts: &http::request::Parts) -> Option<IpAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let extensions = &parts.extensions;
    if let Some(info) = extensions.get::<TcpConnectInfo>() {
        return info.remote_addr().map(|a| a.ip());
    }
    if let Some(info) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
        return info.get_ref().remote_addr().map(|a| a.ip());
    }
    let peer = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()?
        .0
        .ip();
    let forwarded = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse::<IpAddr>().ok());
    Some(forwarded.unwrap_or(peer))
}

/// How an address is named in refusals.
fn address_name(address: Option<IpAddr>) -> String {
    match address {
        Some(ip) => format!("address {ip}"),
        None => "an unknown address".to_string(),
    }
}

/// One client address's shares: of calls whose message is arriving, of
/// request bytes being received, and of calls being answered; and how many
/// calls hold or wait for a place (the entry goes when none does).
struct AddressShare {
    receiving: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    answering: Arc<Semaphore>,
    users: usize,
}

type AddressShares = HashMap<Option<IpAddr>, AddressShare>;

/// A call's hold on its address's shares, from its headers until its answer
/// is done: first one of the [`RECEIVING_CALLS_PER_ADDRESS_MAX`] places for
/// a message still arriving (calls past them wait their turn within their
/// own deadline, holding nothing shared), then the bytes it buffered and a
/// place among the address's calls being answered.
struct AddressHold {
    receiving: Option<OwnedSemaphorePermit>,
    bytes: Arc<Semaphore>,
    answering: Arc<Semaphore>,
    shares: Arc<Mutex<AddressShares>>,
    address: Option<IpAddr>,
}

impl AddressHold {
    async fn take(shared: &Shared, address: Option<IpAddr>) -> AddressHold {
        let (receiving, bytes, answering) = {
            let mut shares = shared.addresses.lock().expect("address shares poisoned");
            let share = shares.entry(address).or_insert_with(|| AddressShare {
                receiving: Arc::new(Semaphore::new(RECEIVING_CALLS_PER_ADDRESS_MAX)),
                bytes: Arc::new(Semaphore::new(BUFFERED_REQUEST_BYTES_PER_ADDRESS_MAX)),
                answering: Arc::new(Semaphore::new(ANSWERING_CALLS_PER_ADDRESS_MAX)),
                users: 0,
            });
            share.users += 1;
            (
                share.receiving.clone(),
                share.bytes.clone(),
                share.answering.clone(),
            )
        };
        // Counted before the wait: a call dropped while waiting is counted
        // out again by the hold's drop.
        let mut hold = AddressHold {
            receiving: None,
            bytes,
            answering,
            shares: shared.addresses.clone(),
            address,
        };
        hold.receiving = Some(
            receiving
                .acquire_owned()
                .await
                .expect("address shares are never closed"),
        );
        hold
    }

    /// The message has arrived: its place among those arriving is free.
    fn received(&mut self) {
        drop(self.receiving.take());
    }
}

impl Drop for AddressHold {
    fn drop(&mut self) {
        drop(self.receiving.take());
        let mut shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(share) = shares.get_mut(&self.address) {
            share.users -= 1;
            if share.users == 0 {
                shares.remove(&self.address);
            }
        }
    }
}

/// The answering slots a call holds while its service answers it, and its
/// hold on its address's shares.
struct Slots {
    _in_flight: Option<OwnedSemaphorePermit>,
    _unkeyed: Option<OwnedSemaphorePermit>,
    _answering: Option<OwnedSemaphorePermit>,
    _address: Option<AddressHold>,
}

/// Takes the answering slots for a call: none for a health check; one of
/// the server's for a call with a key (a signed read, or a write, which
/// carries its signature in its message); for a call without, one of the
/// unkeyed share as well, so they can never take every slot; and one of
/// its address's share, so no one address can either.
fn take_slots(
    shared: &Shared,
    path: &str,
    keyed: bool,
    address: Option<AddressHold>,
) -> Result<Slots, Status> {
    if path.starts_with(HEALTH_PATH_PREFIX) {
        return Ok(Slots {
            _in_flight: None,
            _unkeyed: None,
            _answering: None,
            _address: address,
        });
    }
    let answering = match &address {
        Some(hold) => Some(hold.answering.clone().try_acquire_owned().map_err(|_| {
            Status::unavailable(format!(
                "{} has {ANSWERING_CALLS_PER_ADDRESS_MAX} calls being answered, its share; retry with backoff",
                address_name(hold.address)
            ))
        })?),
        None => None,
    };
    let unkeyed = if keyed {
        None
    } else {
        Some(shared.unkeyed.clone().try_acquire_owned().map_err(|_| {
            Status::unavailable(format!(
                "the server is answering its limit of {} calls without a key at once; retry with backoff, or sign the call",
                shared.unkeyed_max
            ))
        })?)
    };
    let in_flight = shared.in_flight.clone().try_acquire_owned().map_err(|_| {
        Status::unavailable(format!(
            "the server is answering its limit of {} calls at once; retry with backoff",
            shared.in_flight_max
        ))
    })?;
    Ok(Slots {
        _in_flight: Some(in_flight),
        _unkeyed: unkeyed,
        _answering: answering,
        _address: address,
    })
}

/// Admits one call and has `inner` answer it.
async fn answer<S>(
    shared: Arc<Shared>,
    mut inner: S,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, S::Error>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    let writes = request.uri().path().starts_with(LEDGER_PATH_PREFIX);
    let request = if request.uri().path() == POST_STREAM_PATH {
        request.map(|body| Body::new(FrameLimited::new(body, POST_STREAM_MESSAGE_BYTES_MAX)))
    } else {
        request
    };
    match admit(&shared, request).await {
        Ok((request, _buffered, _slots)) => {
            let mut response = inner.call(request).await.map(decode_errors_are_invalid)?;
            if writes {
                // Read after the answer was made: covers every seq in it.
                let count = shared.engine.record_count();
                response
                    .headers_mut()
                    .insert(RECORD_COUNT_HEADER, http::HeaderValue::from(count));
            }
            Ok(response)
        }
        Err(status) => Ok(status.into_http()),
    }
}

/// Checks one call at the boundary and returns it ready for its service,
/// with what it holds while it is answered.
async fn admit(
    shared: &Arc<Shared>,
    request: http::Request<Body>,
) -> Result<(http::Request<Body>, Option<Buffered>, Slots), Status> {
    let Some(method) = method_of(request.uri().path()) else {
        // Streaming requests (PostStream, reflection) and unknown paths.
        let slots = take_slots(shared, request.uri().path(), true, None)?;
        return Ok((request, None, slots));
    };
    let (mut parts, body) = request.into_parts();
    let address = client_address(&parts);
    let signed = parts.headers.contains_key(KEY_ID_HEADER);
    let keyed = signed || method.access == Access::SelfSigned;
    // A health check holds nothing shared while it arrives: it waits for
    // no share, so a full address or server still answers whether it lives;
    // its message is small and has the short deadline, key or no key.
    let health = method.path.starts_with(HEALTH_PATH_PREFIX);
    let deadline_ms = if keyed && !health {
        REQUEST_BODY_TIMEOUT_MS
    } else {
        UNKEYED_BODY_TIMEOUT_MS
    };
    let receive = async {
        let mut hold = match health {
            true => None,
            false => Some(AddressHold::take(shared, address).await),
        };
        let read = read_message(shared, body, method, hold.as_ref().map(|h| &h.bytes)).await;
        if let Some(hold) = &mut hold {
            hold.received();
        }
        read.map(|(message, buffered)| (message, buffered, hold))
    };
    let (message, buffered, hold) =
        tokio::time::timeout(Duration::from_millis(deadline_ms), receive)
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "the request message did not arrive within {deadline_ms} ms ({} may send at most {RECEIVING_CALLS_PER_ADDRESS_MAX} at once)",
                address_name(address)
            ))
        })??;
    let caller = match (method.access, signed) {
        (Access::SelfSigned, _) => None,
        (Access::Public, false) => {
            charge(shared, &parts, None, method)?;
            None
        }
        (Access::Signed, false) => {
            return Err(Status::unauthenticated(format!(
                "{} needs a signed read: send the metadata {KEY_ID_HEADER}, {SIGNED_AT_HEADER}, {NONCE_HEADER} and {SIGNATURE_HEADER} as docs/read-signature.md says (the CLI signs with --key)",
                method.path
            )))
        }
        (Access::Signed | Access::Public, true) => {
            let (caller, signature) =
                match authenticate(shared, &parts.headers, method.path, &message).await {
                    Ok(found) => found,
                    Err(refused) => {
                        // A failed check costs the address what the call
                        // would have cost the key: guessing is not free.
                        charge(shared, &parts, None, method)?;
                        return Err(refused);
                    }
                };
            // Charged before its nonce is kept: a key's allowance bounds
            // the nonces it can make the server remember.
            charge(shared, &parts, Some(&caller), method)?;
            let now_ms = shared.engine.clock().now_ms();
            let skew_ms = shared.engine.skew_ms_max() as i64;
            shared
                .nonces
                .lock()
                .expect("nonce set poisoned")
                .insert(&signature, &caller.reader.org_id, now_ms, skew_ms)
                .map_err(status)?;
            Some(caller)
        }
    };
    let slots = take_slots(
        shared,
        method.path,
        caller.is_some() || keyed && !signed,
        hold,
    )?;
    if let Some(caller) = caller {
        parts.extensions.insert(caller);
    }
    if method.access != Access::SelfSigned {
        reach_min_seq(shared, &parts.headers).await?;
    }
    let request = http::Request::from_parts(parts, Body::new(Full::new(message.frame)));
    Ok((request, Some(buffered), slots))
}

/// A number written in ASCII decimal digits only (no sign, no spaces), as
/// metadata values carry them.
fn decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Waits until derived state holds the record the caller named in
/// `fundtrail-min-seq`, if it named one: how a reader sees its own writes
/// although queries read state the indexer writes behind the journal.
async fn reach_min_seq(shared: &Shared, headers: &http::HeaderMap) -> Result<(), Status> {
    let Some(value) = headers.get(MIN_SEQ_HEADER) else {
        return Ok(());
    };
    let min_seq = value
        .to_str()
        .ok()
        .and_then(decimal::<u64>)
        .ok_or_else(|| {
            Status::invalid_argument(format!("{MIN_SEQ_HEADER} must be a record seq in decimal"))
        })?;
    let count = shared.engine.record_count();
    if min_seq >= count {
        return Err(Status::out_of_range(format!(
            "{MIN_SEQ_HEADER} names record {min_seq}, but the ledger holds {count} records"
        )));
    }
    let wait = Duration::from_millis(MIN_SEQ_WAIT_MS);
    if shared.engine.indexed().wait(min_seq + 1, wait).await {
        return Ok(());
    }
    Err(Status::unavailable(format!(
        "derived state did not reach record {min_seq} within {MIN_SEQ_WAIT_MS} ms (it holds {} records); retry later",
        shared.engine.indexed().get()
    )))
}

/// The request bytes a call holds, server-wide and of its address.
type Buffered = (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>);

/// A unary request's one gRPC frame, and the message inside it.
struct Message {
    frame: Bytes,
}

impl Message {
    fn bytes(&self) -> &[u8] {
        &self.frame[5..]
    }
}

/// Reads the request body, refusing it as soon as it passes the method's
/// limit (the caller bounds the time), holding its bytes against the
/// server-wide [`BUFFERED_REQUEST_BYTES_MAX`]; checks it is one uncompressed
/// gRPC frame.
async fn read_message(
    shared: &Shared,
    body: Body,
    method: &Method,
    address_bytes: Option<&Arc<Semaphore>>,
) -> Result<(Message, Buffered), Status> {
    let too_large = |bytes: String| {
        Status::resource_exhausted(format!(
            "the request message is {bytes} bytes; {} accepts at most {} bytes",
            method.path, method.request_bytes_max
        ))
    };
    let read = async {
        let mut body = Limited::new(body, method.request_bytes_max + 5);
        let none = |semaphore: &Arc<Semaphore>| {
            semaphore
                .clone()
                .try_acquire_many_owned(0)
                .expect("zero permits are always there")
        };
        let mut buffered = none(&shared.buffered);
        let mut of_address = address_bytes.map(none);
        let mut frame = BytesMut::new();
        while let Some(part) = body.frame().await {
            let part = part.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    too_large("more than that".into())
                } else {
                    Status::cancelled(format!("the request body did not arrive whole: {e}"))
                }
            })?;
            let Ok(data) = part.into_data() else { continue };
            let more = shared
                .buffered
                .clone()
                .try_acquire_many_owned(data.len() as u32)
                .map_err(|_| {
                    Status::unavailable(format!(
                        "the server holds its limit of {BUFFERED_REQUEST_BYTES_MAX} bytes of requests being received; retry with backoff"
                    ))
                })?;
            buffered.merge(more);
            if let (Some(held), Some(bytes)) = (&mut of_address, address_bytes) {
                let more = bytes
                    .clone()
                    .try_acquire_many_owned(data.len() as u32)
                    .map_err(|_| {
                        Status::unavailable(format!(
                            "this address holds its share of {BUFFERED_REQUEST_BYTES_PER_ADDRESS_MAX} bytes of requests being received; retry with backoff"
                        ))
                    })?;
                held.merge(more);
            }
            frame.extend_from_slice(&data);
        }
        Ok::<_, Status>((frame.freeze(), (buffered, of_address)))
    };
    let (frame, buffered) = read.await?;
    let mut header = &frame[..frame.len().min(5)];
    if header.len() < 5 {
        return Err(Status::invalid_argument(
            "the request holds no complete gRPC message frame",
        ));
    }
    let compressed = header.get_u8();
    let length = header.get_u32() as usize;
    if compressed != 0 {
        return Err(Status::unimplemented(
            "compressed request messages are not accepted; send them uncompressed",
        ));
    }
    if length > method.request_bytes_max {
        return Err(too_large(length.to_string()));
    }
    if frame.len() != 5 + length {
        return Err(Status::invalid_argument(format!(
            "the request must be exactly one gRPC message frame of {length} bytes; {} bytes arrived",
            frame.len()
        )));
    }
    Ok((Message { frame }, buffered))
}

/// The read signature's metadata, parsed.
struct Signature {
    key_id: String,
    signed_at_ms: i64,
    nonce: String,
    signature: Vec<u8>,
}

fn signature_of(headers: &http::HeaderMap) -> Result<Signature, Rejection> {
    let text = |name: &str| -> Result<String, Rejection> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                Rejection::unauthenticated(name, format!("the signed read lacks {name}"))
            })
    };
    let key_id = text(KEY_ID_HEADER)?;
    if !fundtrail_core::signing::is_key_id(&key_id) {
        return Err(Rejection::unauthenticated(
            KEY_ID_HEADER,
            "must be a key id: 16 lowercase hex digits",
        ));
    }
    let signed_at = text(SIGNED_AT_HEADER)?;
    let canonical = signed_at.len() <= 19 && (signed_at == "0" || !signed_at.starts_with('0'));
    let signed_at_ms = Some(signed_at)
        .filter(|_| canonical)
        .and_then(|t| decimal(&t))
        .ok_or(())
        .map_err(|_| {
            Rejection::unauthenticated(
                SIGNED_AT_HEADER,
                "must be milliseconds since 1970 in decimal",
            )
        })?;
    let nonce = text(NONCE_HEADER)?;
    if nonce.len() != 32
        || !nonce
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(Rejection::unauthenticated(
            NONCE_HEADER,
            "must be 32 lowercase hex digits (16 random bytes)",
        ));
    }
    let signature = metadata_base64(&text(SIGNATURE_HEADER)?).ok_or_else(|| {
        Rejection::unauthenticated(SIGNATURE_HEADER, "must be base64 (binary gRPC metadata)")
    })?;
    Ok(Signature {
        key_id,
        signed_at_ms,
        nonce,
        signature,
    })
}

/// Binary gRPC metadata is base64, padded or not.
fn metadata_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

/// Checks the read signature of a call and names its caller.
async fn authenticate(
    shared: &Arc<Shared>,
    headers: &http::HeaderMap,
    path: &'static str,
    message: &Message,
) -> Result<(Caller, Signature), Status> {
    let signature = signature_of(headers).map_err(status)?;
    let engine = &shared.engine;
    let now_ms = engine.clock().now_ms();
    let skew_ms = engine.skew_ms_max() as i64;
    if now_ms.abs_diff(signature.signed_at_ms) > skew_ms as u64 {
        return Err(status(Rejection::unauthenticated(
            SIGNED_AT_HEADER,
            format!(
                "the read was signed at {} ms, {} ms from the server's clock ({now_ms} ms); at most {skew_ms} ms are allowed. Check the clock and sign again",
                signature.signed_at_ms,
                now_ms.abs_diff(signature.signed_at_ms)
            ),
        )));
    }
    let request_sha256 = sha256(message.bytes());
    let engine = engine.clone();
    // Key lookups read the derived store and Ed25519 costs ~50 µs: not on the
    // async workers.
    let (signature, reader) = tokio::task::spawn_blocking(move || {
        let reader = verify(&engine, path, request_sha256, &signature);
        (signature, reader)
    })
    .await
    .map_err(|e| Status::unavailable(format!("the signature check did not finish: {e}")))?;
    let reader = reader.map_err(status)?;
    let caller = Caller {
        key_id: signature.key_id.clone(),
        reader,
        method: path,
    };
    Ok((caller, signature))
}

fn verify(
    engine: &Engine,
    method: &str,
    request_sha256: [u8; 32],
    signature: &Signature,
) -> Result<Reader, Error> {
    let state = engine.state();
    let key = state.key(&signature.key_id)?.ok_or_else(|| {
        Rejection::unauthenticated(
            KEY_ID_HEADER,
            format!(
                "key {:?} is not registered in this ledger",
                signature.key_id
            ),
        )
    })?;
    if let Some(seq) = key.revoked_seq {
        return Err(Rejection::unauthenticated(
            KEY_ID_HEADER,
            format!("key {} was revoked by record {seq}", key.key_id),
        )
        .into());
    }
    let claim = ReadClaim {
        ledger_id: &engine.meta().ledger_id,
        method,
        request_sha256,
        signed_at_ms: signature.signed_at_ms,
        nonce: &signature.nonce,
    };
    claim.verify(&key.public_key, &signature.signature)?;
    let chain = state.org_chain(&key.org_id)?;
    if chain.is_empty() {
        return Err(Fault::corrupt(format!("derived state lacks org {}", key.org_id)).into());
    }
    Ok(Reader::of_chain(&chain))
}

/// Charges a call to its caller's allowance: a key for signed calls, the
/// peer address for unsigned public ones.
fn charge(
    shared: &Shared,
    parts: &http::request::Parts,
    caller: Option<&Caller>,
    method: &Method,
) -> Result<(), Status> {
    let who = match caller {
        Some(caller) => format!("key {}", caller.key_id),
        None => address_name(client_address(parts)),
    };
    // Keys idle long enough to be full again are forgotten now and then, so
    // the limiter's memory follows the active callers.
    if shared
        .charges
        .fetch_add(1, Ordering::Relaxed)
        .is_multiple_of(LIMITER_SWEEP_EVERY)
    {
        shared.limiter.retain_recent();
    }
    let cost = NonZeroU32::new(method.cost).expect("costs are at least 1");
    match shared.limiter.check_key_n(&who, cost) {
        Ok(Ok(())) => Ok(()),
        _ => Err(Status::resource_exhausted(format!(
            "{who} has used its read allowance of {} units per second ({} costs {}); retry later",
            shared.cost_per_second, method.path, method.cost
        ))),
    }
}

/// The (key, nonce) pairs of read signatures still inside the skew window.
/// Each org holds at most its share, so one org filling the store (with
/// many keys, say) is refused alone.
#[derive(Default)]
struct Nonces {
    seen: HashSet<[u8; 16]>,
    /// Entries by expiry, soonest first.
    expiry: BinaryHeap<Reverse<Kept>>,
    per_key: HashMap<String, usize>,
    per_org: HashMap<String, usize>,
    max: usize,
    per_org_max: usize,
    /// The latest clock reading seen: time here never goes back.
    now_ms: i64,
}

/// One remembered entry: (expiry ms, entry, key id, org id).
type Kept = (i64, [u8; 16], String, String);

/// Takes one from `counts[name]`, forgetting a name that reaches zero.
fn count_down(counts: &mut HashMap<String, usize>, name: &str) {
    if let Some(count) = counts.get_mut(name) {
        *count -= 1;
        if *count == 0 {
            counts.remove(name);
        }
    }
}

impl Nonces {
    /// Remembers a signature's nonce for `org_id`; refuses one already
    /// used, and checks the skew again against the clock read under the
    /// lock, so an entry that left (its signature too old by now) cannot be
    /// replayed. An entry is kept until its signing time plus the skew: it
    /// must stay while the signature could still pass the skew check, and a
    /// signature dated ahead costs its org's share that much longer.
    fn insert(
        &mut self,
        signature: &Signature,
        org_id: &str,
        now_ms: i64,
        skew_ms: i64,
    ) -> Result<(), Rejection> {
        self.now_ms = self.now_ms.max(now_ms);
        let now_ms = self.now_ms;
        while let Some(Reverse((expires_ms, _, _, _))) = self.expiry.peek() {
            if *expires_ms >= now_ms {
                break;
            }
            let Some(Reverse((_, entry, key_id, org))) = self.expiry.pop() else {
                break;
            };
            self.seen.remove(&entry);
            count_down(&mut self.per_key, &key_id);
            count_down(&mut self.per_org, &org);
        }
        if now_ms.abs_diff(signature.signed_at_ms) > skew_ms as u64 {
            return Err(Rejection::unauthenticated(
                SIGNED_AT_HEADER,
                format!(
                    "the read was signed at {} ms, more than {skew_ms} ms from the server's clock ({now_ms} ms); check the clock and sign again",
                    signature.signed_at_ms
                ),
            ));
        }
        let mut entry = [0u8; 16];
        let digest = sha256(format!("{}\n{}", signature.key_id, signature.nonce).as_bytes());
        entry.copy_from_slice(&digest[..16]);
        if self.seen.contains(&entry) {
            return Err(Rejection::unauthenticated(
                NONCE_HEADER,
                "this read signature was already used; sign every call afresh with a new nonce",
            ));
        }
        let of_key = self.per_key.get(&signature.key_id).copied().unwrap_or(0);
        if of_key >= READ_NONCES_PER_KEY_MAX {
            return Err(Rejection::new(
                fundtrail_core::Code::ResourceExhausted,
                KEY_ID_HEADER,
                format!(
                    "key {} has {READ_NONCES_PER_KEY_MAX} read signatures inside the skew window, its limit; retry shortly",
                    signature.key_id
                ),
            ));
        }
        let of_org = self.per_org.get(org_id).copied().unwrap_or(0);
        if of_org >= self.per_org_max {
            return Err(Rejection::new(
                fundtrail_core::Code::ResourceExhausted,
                KEY_ID_HEADER,
                format!(
                    "org {org_id} has {} read signatures inside the skew window, its share; retry shortly",
                    self.per_org_max
                ),
            ));
        }
        if self.seen.len() >= self.max {
            return Err(Rejection::new(
                fundtrail_core::Code::Unavailable,
                NONCE_HEADER,
                format!(
                    "the server remembers {} recent read signatures, its limit; retry shortly",
                    self.max
                ),
            ));
        }
        self.seen.insert(entry);
        *self.per_key.entry(signature.key_id.clone()).or_default() += 1;
        *self.per_org.entry(org_id.to_string()).or_default() += 1;
        self.expiry.push(Reverse((
            signature.signed_at_ms.saturating_add(skew_ms),
            entry,
            signature.key_id.clone(),
            org_id.to_string(),
        )));
        Ok(())
    }
}

/// tonic answers a request message that does not decode with INTERNAL and
/// prost's "failed to decode Protobuf message" text; that is the caller's
/// fault, so it becomes INVALID_ARGUMENT.
fn decode_errors_are_invalid(mut response: http::Response<Body>) -> http::Response<Body> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    if status.code() != tonic::Code::Internal
        || !status
            .message()
            .starts_with("failed to decode Protobuf message")
    {
        return response;
    }
    let invalid = Status::invalid_argument(format!(
        "the request message does not decode as its protobuf type: {}",
        status.message()
    ));
    let headers = response.headers_mut();
    headers.remove("grpc-message");
    headers.remove("grpc-status");
    if invalid.add_header(headers).is_err() {
        return Status::invalid_argument("the request message does not decode").into_http();
    }
    response
}

/// A streamed request body whose gRPC messages may each hold at most
/// `max_bytes`: a message that declares more ends the body with
/// RESOURCE_EXHAUSTED before its bytes are buffered by the decoder.
struct FrameLimited {
    inner: Body,
    max_bytes: usize,
    /// Bytes of the current message header (flag and length) seen so far.
    header: [u8; 5],
    header_len: usize,
    /// Bytes of the current message still to come.
    message_left: usize,
}

impl FrameLimited {
    fn new(inner: Body, max_bytes: usize) -> FrameLimited {
        FrameLimited {
            inner,
            max_bytes,
            header: [0; 5],
            header_len: 0,
            message_left: 0,
        }
    }

    /// Follows the message framing through `data`; refuses a message
    /// declared larger than the limit.
    fn check(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.message_left > 0 {
                let take = self.message_left.min(data.len());
                self.message_left -= take;
                data = &data[take..];
                continue;
            }
            let take = (5 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
            self.header_len += take;
            data = &data[take..];
            if self.header_len == 5 {
                self.header_len = 0;
                let declared = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]) as usize;
                if declared > self.max_bytes {
                    return Err(Status::resource_exhausted(format!(
                        "a stream message of {declared} bytes; each may hold at most {} bytes (one signed request)",
                        self.max_bytes
                    )));
                }
                self.message_left = declared;
            }
        }
        Ok(())
    }
}

impl http_body::Body for FrameLimited {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let data = data.clone();
                    if let Err(status) = self.check(&data) {
                        return Poll::Ready(Some(Err(status)));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Status::from_error(e.into())))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}
