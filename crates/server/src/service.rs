//! The gRPC services `fundtrail.v1.Ledger` and `fundtrail.v1.Query`.

use std::sync::Arc;
use std::time::Duration;

use fundtrail_api::{account_to_pb, key_to_pb, org_to_pb, pb};
use fundtrail_core::limits::{
    CALL_TIMEOUT_MS, CHECK_CHUNK_REQUESTS, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX,
    POST_BATCH_REQUESTS_MAX, POST_STREAMS_MAX, POST_STREAM_IDLE_MS, POST_STREAM_IN_FLIGHT_MAX,
};
use fundtrail_core::model::Account;
use fundtrail_core::state::StateRead;
use fundtrail_core::{validate, Code, Error, Fault, Rejection};
use tonic::{Request, Response, Status};

use crate::engine::Engine;
use crate::jurisdiction::{self, Facts};
use crate::pipeline::Committed;
use crate::query;
use crate::status::status;
use fundtrail_core::access::{decide, Answer, Call, Data, Reader};
use fundtrail_query::Records;

/// The purposes page tokens are sealed for: a token opens only where it
/// was issued.
const LIST_ACCOUNTS: &str = "/fundtrail.v1.Query/ListAccounts";
const IDLE_FUNDS: &str = "/fundtrail.v1.Query/IdleFunds";
const ANOMALIES: &str = "/fundtrail.v1.Query/Anomalies";
const COMPLIANCE: &str = "/fundtrail.v1.Query/Compliance";

pub struct LedgerService {
    pub engine: Arc<Engine>,
    /// PostStreams running at once.
    pub streams: Arc<tokio::sync::Semaphore>,
    /// Of them, each client address's share.
    streams_of_address: crate::shares::Shares<Option<std::net::IpAddr>>,
    /// And each org's, counted from a stream's first new record.
    streams_of_org: Arc<crate::shares::Shares<String>>,
}

impl LedgerService {
    pub fn new(engine: Arc<Engine>) -> LedgerService {
        LedgerService {
            engine,
            streams: Arc::new(tokio::sync::Semaphore::new(POST_STREAMS_MAX)),
            streams_of_address: crate::shares::Shares::new(
                fundtrail_core::limits::POST_STREAMS_PER_ADDRESS_MAX,
            ),
            streams_of_org: Arc::new(crate::shares::Shares::new(
                fundtrail_core::limits::POST_STREAMS_PER_ORG_MAX,
            )),
        }
    }
}

pub struct QueryService {
    pub engine: Arc<Engine>,
    /// Places for Watch streams ([`fundtrail_core::limits::WATCH_STREAMS_MAX`]).
    watchers: Arc<tokio::sync::Semaphore>,
    /// Of them, each org's share.
    watchers_of_org: Arc<crate::shares::Shares<String>>,
}

impl QueryService {
    pub fn new(engine: Arc<Engine>) -> QueryService {
        QueryService {
            engine,
            watchers: Arc::new(tokio::sync::Semaphore::new(
                fundtrail_core::limits::WATCH_STREAMS_MAX,
            )),
            watchers_of_org: Arc::new(crate::shares::Shares::new(
                fundtrail_core::limits::WATCH_STREAMS_PER_ORG_MAX,
            )),
        }
    }
}

fn post_response(committed: Committed) -> pb::PostResponse {
    pb::PostResponse {
        seq: committed.seq,
        commit_time_ms: committed.commit_time_ms,
        duplicate: committed.duplicate,
        effects: Some(committed.effects),
    }
}

/// How long a write waits for its answer: nine tenths of the call's
/// deadline (`grpc-timeout`), and of the server's own call limit when the
/// client set none or a longer one, so that the client hears UNAVAILABLE
/// before its deadline passes rather than nothing.
fn answer_within(metadata: &tonic::metadata::MetadataMap) -> Duration {
    let limit = Duration::from_millis(CALL_TIMEOUT_MS);
    let asked = metadata
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(grpc_timeout);
    asked.map_or(limit, |asked| asked.min(limit)) * 9 / 10
}

/// A `grpc-timeout` header's value: at most 8 digits and a unit (gRPC over
/// HTTP/2). A malformed one is ignored, as if absent.
fn grpc_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3_600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// `answer`, unless it takes longer than `limit`: then UNAVAILABLE with an
/// unknown outcome. The journal may be waiting for its disk or, on
/// PostgreSQL, for a synchronous standby that is gone; what was handed to
/// it may still be recorded when it returns.
async fn within<T>(
    limit: Duration,
    answer: impl std::future::Future<Output = T>,
) -> Result<T, Rejection> {
    tokio::time::timeout(limit, answer).await.map_err(|_| {
        Rejection::unavailable(format!(
            "not confirmed durable within {} ms (nine tenths of the call's deadline): the journal is waiting for its disk or for a database standby. The outcome is unknown: retry with the same idempotency key, and you will get the first result if the request was recorded",
            limit.as_millis()
        ))
    })
}

#[tonic::async_trait]
impl pb::ledger_server::Ledger for LedgerService {
    async fn post(
        &self,
        request: Request<pb::SignedRequest>,
    ) -> Result<Response<pb::PostResponse>, Status> {
        let limit = answer_within(request.metadata());
        let committed = within(limit, self.engine.submit(request.into_inner()))
            .await
            .and_then(|answer| answer)
            .map_err(status)?;
        Ok(Response::new(post_response(committed)))
    }

    async fn post_batch(
        &self,
        request: Request<pb::PostBatchRequest>,
    ) -> Result<Response<pb::PostBatchResponse>, Status> {
        let limit = answer_within(request.metadata());
        let requests = request.into_inner().requests;
        if requests.is_empty() {
            return Err(status(Rejection::invalid(
                "requests",
                "the batch holds no requests",
            )));
        }
        if requests.len() > POST_BATCH_REQUESTS_MAX {
            return Err(status(Rejection::new(
                Code::ResourceExhausted,
                "requests",
                format!(
                    "the batch holds {} requests; at most {POST_BATCH_REQUESTS_MAX} are accepted",
                    requests.len()
                ),
            )));
        }
        let results = within(limit, self.engine.submit_all(requests))
            .await
            .map_err(status)?
            .into_iter()
            .map(post_result)
            .collect();
        Ok(Response::new(pb::PostBatchResponse { results }))
    }

    type PostStreamStream = PostStream;

    async fn post_stream(
        &self,
        request: Request<tonic::Streaming<pb::SignedRequest>>,
    ) -> Result<Response<PostStream>, Status> {
        let address = request.remote_addr().map(|a| a.ip());
        let Some(share) = self.streams_of_address.try_take(&address) else {
            return Err(Status::resource_exhausted(format!(
                "{} PostStreams are open from this address, its share; close one first",
                self.streams_of_address.max()
            )));
        };
        let Ok(permit) = self.streams.clone().try_acquire_owned() else {
            return Err(Status::unavailable(format!(
                "the server runs its limit of {POST_STREAMS_MAX} PostStreams at once; retry with backoff"
            )));
        };
        Ok(Response::new(post_stream(
            self.engine.clone(),
            request.into_inner(),
            (permit, share),
            self.streams_of_org.clone(),
        )))
    }
}

/// The answers of a PostStream, in the order of its requests.
pub type PostStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::PostResult, Status>> + Send + 'static>,
>;

/// What the reader of a PostStream hands on: checks in progress, in
/// order, or how the request stream ended.
enum Inbound {
    Check(crate::engine::Check),
    Broken(Status),
}

/// What the queuer hands the writer: answers to come, in order.
enum Outbound {
    Answer(crate::engine::Pending),
    Broken(Status),
}

/// Runs one PostStream as three tasks: one reads requests a chunk at a
/// time and starts their checks; one hands checked requests to the
/// sequencer in order; one sends the answers in order. The bounded
/// channels between them are the flow control: at most
/// [`POST_STREAM_IN_FLIGHT_MAX`] requests wait for answers before the
/// reader stops reading.
fn post_stream(
    engine: Arc<Engine>,
    mut inbound: tonic::Streaming<pb::SignedRequest>,
    permit: (
        tokio::sync::OwnedSemaphorePermit,
        crate::shares::Share<Option<std::net::IpAddr>>,
    ),
    streams_of_org: Arc<crate::shares::Shares<String>>,
) -> PostStream {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (checks_tx, mut checks_rx) = tokio::sync::mpsc::channel::<Inbound>(cores * 2);
    let (pending_tx, mut pending_rx) =
        tokio::sync::mpsc::channel::<Outbound>(POST_STREAM_IN_FLIGHT_MAX);
    let (out_tx, out_rx) = tokio::sync::mpsc::channel(CHECK_CHUNK_REQUESTS);
    let reader = engine.clone();
    tokio::spawn(async move {
        loop {
            let (chunk, end) = read_chunk(&mut inbound).await;
            if !chunk.is_empty() {
                let check = reader.spawn_check(chunk);
                if checks_tx.send(Inbound::Check(check)).await.is_err() {
                    return;
                }
            }
            match end {
                None => {}
                Some(Ok(())) => return,
                Some(Err(status)) => {
                    let _ = checks_tx.send(Inbound::Broken(status)).await;
                    return;
                }
            }
        }
    });
    let queuer = engine.clone();
    tokio::spawn(async move {
        while let Some(inbound) = checks_rx.recv().await {
            let outbound = match inbound {
                Inbound::Check(check) => queuer
                    .enqueue_checked(check)
                    .await
                    .into_iter()
                    .map(Outbound::Answer)
                    .collect(),
                Inbound::Broken(status) => vec![Outbound::Broken(status)],
            };
            for item in outbound {
                if pending_tx.send(item).await.is_err() {
                    return;
                }
            }
        }
    });
    tokio::spawn(async move {
        // A client that stops reading its answers gives its place back:
        // the idle timeout alone never fires once it has sent enough to
        // stop the reader.
        let send_timeout =
            std::time::Duration::from_millis(fundtrail_core::limits::STREAM_SEND_TIMEOUT_MS);
        let mut org_share = None;
        // How the stream ends: `None` when the client closed its side.
        let ended = loop {
            let Some(item) = pending_rx.recv().await else {
                break None;
            };
            let answer = match item {
                Outbound::Answer(pending) => engine.answer(pending).await,
                Outbound::Broken(status) => break Some(status),
            };
            // Only a new record binds a stream to an org: a retry of
            // someone's old request could be replayed by anyone.
            let over_share = match (&org_share, &answer) {
                (None, Ok(committed)) if !committed.duplicate => {
                    org_share = streams_of_org.try_take(&committed.effects.signer_org_id);
                    org_share
                        .is_none()
                        .then(|| committed.effects.signer_org_id.clone())
                }
                _ => None,
            };
            match tokio::time::timeout(send_timeout, out_tx.send(Ok(post_result(answer)))).await {
                Ok(Ok(())) => {}
                _ => return,
            }
            if let Some(org) = over_share {
                break Some(Status::resource_exhausted(format!(
                    "{org} already posts on {} PostStreams, its share, so this stream ends here: the record answered above is durable; requests sent after it may or may not be, so send them again, with their idempotency keys, on one of the org's other streams",
                    streams_of_org.max()
                )));
            }
        };
        // The places go back before the client sees the stream end, so a
        // client that saw it end may open another at once.
        drop((permit, org_share));
        if let Some(status) = ended {
            let _ = tokio::time::timeout(send_timeout, out_tx.send(Err(status))).await;
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(out_rx))
}

/// The next requests of a stream: the first one waited for, then those
/// already arrived, up to a chunk. With them, how the stream ended if it
/// did: `Ok` when the client closed it, the status when it broke.
async fn read_chunk(
    inbound: &mut tonic::Streaming<pb::SignedRequest>,
) -> (Vec<pb::SignedRequest>, Option<Result<(), Status>>) {
    let mut chunk = Vec::new();
    loop {
        let next = if chunk.is_empty() {
            // A stream on which nothing arrives gives its place back.
            let idle = std::time::Duration::from_millis(POST_STREAM_IDLE_MS);
            match tokio::time::timeout(idle, inbound.message()).await {
                Ok(next) => next,
                Err(_) => {
                    return (
                        chunk,
                        Some(Err(Status::deadline_exceeded(format!(
                            "no request arrived on this PostStream for {POST_STREAM_IDLE_MS} ms, so it was ended; open a new one to post more"
                        )))),
                    )
                }
            }
        } else {
            // Take only what is already here; waiting would hold back the
            // chunk read so far. (`message` keeps partial input on drop.)
            tokio::select! {
                biased;
                next = inbound.message() => next,
                () = std::future::ready(()) => return (chunk, None),
            }
        };
        match next {
            Ok(Some(request)) => {
                chunk.push(request);
                if chunk.len() == CHECK_CHUNK_REQUESTS {
                    return (chunk, None);
                }
            }
            Ok(None) => return (chunk, Some(Ok(()))),
            Err(status) => return (chunk, Some(Err(status))),
        }
    }
}

fn post_result(result: Result<Committed, Rejection>) -> pb::PostResult {
    pb::PostResult {
        result: Some(match result {
            Ok(committed) => pb::post_result::Result::Ok(post_response(committed)),
            Err(rejection) => pb::post_result::Result::Error(pb::PostError {
                code: crate::status::code(rejection.code) as i32,
                message: rejection.message,
                field: rejection.field,
            }),
        }),
    }
}

/// A page size within bounds: 0 means the default.
pub(crate) fn page_size(requested: u32) -> Result<usize, Error> {
    match requested {
        0 => Ok(PAGE_SIZE_DEFAULT as usize),
        n if n > PAGE_SIZE_MAX => Err(Rejection::new(
            Code::ResourceExhausted,
            "page_size",
            format!("page_size {n} is above the largest page of {PAGE_SIZE_MAX}"),
        )
        .into()),
        n => Ok(n as usize),
    }
}

fn list_entries(
    engine: &Engine,
    reader: &Reader,
    facts: &mut Facts<'_>,
    request: pb::ListEntriesRequest,
) -> Result<pb::ListEntriesResponse, Error> {
    let request = fundtrail_query::EntriesRequest {
        page_size: page_size(request.page_size)?,
        start_seq: seq_token(&request.page_token)?,
        account_id: request.account_id,
        org_id: request.org_id,
        kind: request.kind,
        source_seq: request.source_seq,
        document_no: request.document_no,
        from_time_ms: request.from_time_ms,
        to_time_ms: request.to_time_ms,
    };
    let page = fundtrail_query::list_entries(
        engine,
        &mut Audience::new(reader, facts, Call::ListEntries),
        &request,
    )?;
    let mut entries = Vec::with_capacity(page.entries.len());
    for (read, answer) in page.entries {
        let mut entry = read.wire;
        if answer == Answer::Pseudonymised {
            facts.pseudonymise_entry(reader, &mut entry)?;
        }
        entries.push(entry);
    }
    facts.rows(entries.len());
    Ok(pb::ListEntriesResponse {
        entries,
        next_page_token: page.next_seq.map(|s| s.to_string()).unwrap_or_default(),
    })
}

/// Query.Reconcile: the bank's lines, checked, against the county's
/// payments the reader may see (`fundtrail_query::reconcile`).
fn reconcile(
    engine: &Engine,
    reader: &Reader,
    facts: &mut Facts<'_>,
    request: pb::ReconcileRequest,
) -> Result<pb::ReconcileResponse, Error> {
    use fundtrail_core::limits::RECONCILE_LINES_MAX;
    use fundtrail_core::reconcile::{BankLine, BankStatus, Finding};
    validate::id("county_org_id", &request.county_org_id)?;
    if request.lines.len() > RECONCILE_LINES_MAX {
        return Err(Rejection::new(
            Code::ResourceExhausted,
            "lines",
            format!("at most {RECONCILE_LINES_MAX} bank lines per call"),
        )
        .into());
    }
    let mut lines = Vec::with_capacity(request.lines.len());
    for line in &request.lines {
        let status = match line.failed {
            true => BankStatus::Failed,
            false => BankStatus::Credited,
        };
        let checked = BankLine::check(
            line.line,
            &line.household_ref,
            fundtrail_core::money::Fen(line.amount_fen),
            &line.value_date,
            &line.bank_reference,
            status,
        )
        .map_err(|reason| Rejection::invalid("lines", format!("line {}: {reason}", line.line)))?;
        lines.push(checked);
    }
    let reconciled = fundtrail_query::reconcile(
        engine,
        &mut Audience::new(reader, facts, Call::ListEntries),
        &request.county_org_id,
        &lines,
    )?;
    facts.rows(reconciled.findings.len());
    let finding = |f: &Finding| {
        let mut out = pb::ReconcileFinding {
            kind: f.kind().to_string(),
            ..Default::default()
        };
        match *f {
            Finding::Credited { line_no, seq } | Finding::Failed { line_no, seq } => {
                (out.line, out.seq) = (line_no, Some(seq));
            }
            Finding::Mismatch {
                line_no,
                seq,
                amount_differs,
                date_differs,
            } => {
                (out.line, out.seq) = (line_no, Some(seq));
                (out.amount_differs, out.date_differs) = (amount_differs, date_differs);
            }
            Finding::NoPayment { line_no } => out.line = line_no,
            Finding::DuplicateReference {
                line_no,
                first_line_no,
            } => {
                (out.line, out.first_line) = (line_no, first_line_no);
            }
            Finding::NoBankLine { seq } => out.seq = Some(seq),
        }
        out
    };
    Ok(pb::ReconcileResponse {
        findings: reconciled.findings.iter().map(finding).collect(),
        payments: reconciled.payments as u64,
    })
}

/// The seq a page token names; empty means from the start.
pub(crate) fn seq_token(token: &str) -> Result<u64, Rejection> {
    if token.is_empty() {
        return Ok(0);
    }
    token.parse().map_err(|_| {
        Rejection::invalid("page_token", "the page token is not one this server issued")
    })
}

fn account_pb(engine: &Engine, account: &Account) -> Result<pb::Account, Error> {
    let state = engine.state();
    let mut sources = std::collections::BTreeMap::new();
    for &seq in account.balances.keys() {
        let source = state
            .source(seq)?
            .ok_or_else(|| Fault::corrupt(format!("derived state lacks source {seq}")))?;
        sources.insert(seq, source);
    }
    Ok(account_to_pb(account, |seq| sources.get(&seq).cloned())?)
}

fn get_entry(
    engine: &Engine,
    reader: &Reader,
    facts: &mut Facts<'_>,
    request: pb::GetEntryRequest,
) -> Result<pb::Entry, Error> {
    let seq = request.seq;
    let read = engine.read(seq)?;
    match facts.entry_answer(reader, Call::GetEntry, &read.entry)? {
        Answer::Full => Ok(read.wire),
        _ => Err(jurisdiction::denied(format_args!("record {seq}"), reader)),
    }
}

fn get_account(
    engine: &Engine,
    reader: &Reader,
    facts: &mut Facts<'_>,
    request: pb::GetAccountRequest,
) -> Result<pb::Account, Error> {
    validate::id("account_id", &request.account_id)?;
    if facts.account_answer(reader, Call::GetAccount, &request.account_id)? != Answer::Full {
        return Err(jurisdiction::denied(
            format_args!("account {}", request.account_id),
            reader,
        ));
    }
    let account = fundtrail_query::account(
        engine,
        &fundtrail_query::AccountRequest {
            account_id: request.account_id,
            as_of_seq: request.as_of_seq,
            as_of_date: request.as_of_date,
        },
    )?;
    account_pb(engine, &account)
}

fn list_accounts(
    engine: &Engine,
    reader: &Reader,
    facts: &mut Facts<'_>,
    request: pb::ListAccountsRequest,
) -> Result<pb::ListAccountsResponse, Error> {
    let limit = page_size(request.page_size)?;
    let after = engine.tokens().open(LIST_ACCOUNTS, &request.page_token)?;
    let page = fundtrail_query::accounts(
        engine,
        &mut Audience::new(reader, facts, Call::ListAccounts),
        &request.owner_org_id,
        &after,
        limit,
    )?;
    let mut accounts = Vec::with_capacity(page.accounts.len());
    for account in &page.accounts {
        // Noted as shown (the audience decided without noting).
        facts.account_answer(reader, Call::ListAccounts, &account.account_id)?;
        accounts.push(account_pb(engine, account)?);
    }
    facts.rows(accounts.len());
    Ok(pb::ListAccountsResponse {
        accounts,
        next_page_token: match page.next_page_token.as_str() {
            "" => String::new(),
            last => engine.tokens().seal(LIST_ACCOUNTS, last),
        },
    })
}

/// Budgets are public (预算公开): every registered reader may read every
/// quota and its lineage.
fn get_quota(
    engine: &Engine,
    _: &Reader,
    facts: &mut Facts<'_>,
    request: pb::GetQuotaRequest,
) -> Result<pb::QuotaLineage, Error> {
    let (quota, ancestors) = fundtrail_query::quota_lineage(engine, request.seq)?;
    facts.rows(1 + ancestors.len());
    Ok(pb::QuotaLineage {
        quota: Some(query::quota(&quota)),
        ancestors: ancestors.iter().map(query::quota).collect(),
    })
}

/// 支出进度 is published for every county: every registered reader may
/// read it, as quota. (The audience only tells the report when its client
/// has gone; it looks into no account.)
fn spending_progress(
    engine: &Engine,
    reader: &Reader,
    facts: &mut Facts<'_>,
    request: pb::SpendingProgressRequest,
) -> Result<pb::SpendingProgressResponse, Error> {
    let rows = fundtrail_query::spending_progress(
        engine,
        &mut Audience::new(reader, facts, Call::Anomalies),
        &fundtrail_query::ProgressRequest {
            org_id: request.org_id,
            programme_code: request.programme_code,
            fiscal_year: request.fiscal_year,
        },
    )?;
    facts.rows(rows.len());
    Ok(pb::SpendingProgressResponse {
        rows: rows.into_iter().map(query::progress_row).collect(),
    })
}

fn list_quotas(
    engine: &Engine,
    _: &Reader,
    facts: &mut Facts<'_>,
    request: pb::ListQuotasRequest,
) -> Result<pb::ListQuotasResponse, Error> {
    let page = fundtrail_query::quotas_held(
        engine,
        &request.org_id,
        seq_token(&request.page_token)?,
        page_size(request.page_size)?,
    )?;
    facts.rows(page.quotas.len());
    Ok(pb::ListQuotasResponse {
        quotas: page.quotas.iter().map(query::quota).collect(),
        next_page_token: page.next_seq.map(|s| s.to_string()).unwrap_or_default(),
    })
}

/// Orgs and keys are what signatures are checked against: every
/// registered reader may read them.
fn get_org(
    engine: &Engine,
    _: &Reader,
    _: &mut Facts<'_>,
    request: pb::GetOrgRequest,
) -> Result<pb::Org, Error> {
    let org_id = request.org_id;
    validate::id("org_id", &org_id)?;
    let state = engine.state();
    let org = state.org(&org_id)?.ok_or_else(|| {
        Rejection::not_found("org_id", format!("org {org_id:?} is not registered"))
    })?;
    let mut keys = Vec::with_capacity(org.key_ids.len());
    for key_id in &org.key_ids {
        let key = state.key(key_id)?.ok_or_else(|| {
            Fault::corrupt(format!("derived state lacks key {key_id} of org {org_id}"))
        })?;
        keys.push(key_to_pb(&key));
    }
    Ok(org_to_pb(&org, keys))
}

fn trace_forward(
    engine: &Engine,
    reader: &Reader,
    facts: &mut Facts<'_>,
    request: pb::TraceForwardRequest,
) -> Result<pb::FlowGraph, Error> {
    let origin = engine.read(request.seq)?.entry;
    if facts.entry_answer(reader, Call::TraceForward, &origin)? == Answer::Omitted {
        return Err(jurisdiction::denied(
            format_args!("record {}", request.seq),
            reader,
        ));
    }
    let graph = fundtrail_query::trace_forward(engine, &query::trace_forward_request(request))?;
    let mut graph = query::flow_graph(graph);
    facts.rows(graph.nodes.len());
    for node in &mut graph.nodes {
        if facts.mask(reader, &mut node.account_id)? {
            node.name = node.account_id.clone();
        }
    }
    for edge in &mut graph.edges {
        let from_masked = facts.mask(reader, &mut edge.from_account_id)?;
        let to_masked = facts.mask(reader, &mut edge.to_account_id)?;
        // Which records paid a household the reader may not see, and under
        // which documents, is the household's data too: only the amount
        // and the count of records stay, so totals are exact.
        if from_masked || to_masked {
            edge.first_seq = 0;
            edge.last_seq = 0;
            edge.document_nos.clear();
        }
    }
    Ok(graph)
}

fn trace_backward(
    engine: &Engine,
    reader: &Reader,
    facts: &mut Facts<'_>,
    request: pb::TraceBackwardRequest,
) -> Result<pb::TraceBackwardResponse, Error> {
    let allowed = match &request.target {
        Some(pb::trace_backward_request::Target::AccountId(account_id)) => {
            validate::id("account_id", account_id)?;
            facts.account_answer(reader, Call::TraceBackward, account_id)?
        }
        Some(pb::trace_backward_request::Target::Seq(seq)) => {
            facts.entry_answer(reader, Call::TraceBackward, &engine.read(*seq)?.entry)?
        }
        None => Answer::Full,
    };
    if allowed != Answer::Full {
        return Err(jurisdiction::denied("the traced account or record", reader));
    }
    let answer = fundtrail_query::trace_backward(engine, &query::trace_backward_request(request))?;
    let mut answer = query::trace_backward_response(answer);
    facts.rows(answer.lineages.len());
    for hop in answer.lineages.iter_mut().flat_map(|l| l.hops.iter_mut()) {
        let from_masked = facts.mask(reader, &mut hop.from_account_id)?;
        let to_masked = facts.mask(reader, &mut hop.to_account_id)?;
        // As on forward edges: the record that moved a hidden household's
        // money, its document and signer, are the household's data too.
        if from_masked || to_masked {
            hop.seq = 0;
            hop.document_no.clear();
            hop.signer_org_id.clear();
            hop.key_id.clear();
        }
    }
    Ok(answer)
}

fn household_statement(
    engine: &Engine,
    reader: &Reader,
    facts: &mut Facts<'_>,
    request: pb::HouseholdStatementRequest,
) -> Result<pb::HouseholdStatementResponse, Error> {
    let account_id = request.account_id;
    validate::id("account_id", &account_id)?;
    if facts.account_answer(reader, Call::HouseholdStatement, &account_id)? != Answer::Full {
        return Err(jurisdiction::denied(
            format_args!("household {account_id}"),
            reader,
        ));
    }
    let answer = fundtrail_query::household_statement(engine, &account_id)?;
    Ok(query::household_statement(answer))
}

fn idle_funds(
    engine: &Engine,
    reader: &Reader,
    facts: &mut Facts<'_>,
    request: pb::IdleFundsRequest,
) -> Result<pb::IdleFundsResponse, Error> {
    let limit = page_size(request.page_size)?;
    let mut request = query::idle_funds_request(request);
    request.page_token = engine.tokens().open(IDLE_FUNDS, &request.page_token)?;
    let answer = fundtrail_query::idle_funds(
        engine,
        &mut Audience::new(reader, facts, Call::IdleFunds),
        &request,
        limit,
    )?;
    let mut answer = query::idle_funds_response(answer);
    answer.next_page_token = engine.tokens().seal(IDLE_FUNDS, &answer.next_page_token);
    let mut rows = Vec::with_capacity(answer.rows.len());
    for row in answer.rows {
        if facts.account_answer(reader, Call::IdleFunds, &row.account_id)? == Answer::Full {
            rows.push(row);
        }
    }
    facts.rows(rows.len());
    answer.rows = rows;
    Ok(answer)
}

/// A report's reader, as [`fundtrail_query::Audience`] asks: what it may
/// read whole is decided as the answer will be, without noting anything
/// shown (the answer notes what it shows).
struct Audience<'r, 'f, 'e> {
    reader: &'r Reader,
    facts: &'f mut Facts<'e>,
    call: Call,
}

impl<'r, 'f, 'e> Audience<'r, 'f, 'e> {
    fn new(reader: &'r Reader, facts: &'f mut Facts<'e>, call: Call) -> Self {
        Audience {
            reader,
            facts,
            call,
        }
    }
}

impl fundtrail_query::Audience for Audience<'_, '_, '_> {
    fn may_read(&mut self, account_id: &str) -> Result<bool, Error> {
        Ok(match self.facts.party(account_id)? {
            Some(party) => decide(self.reader, self.call, Data::Account(&party)) == Answer::Full,
            None => false,
        })
    }

    fn record(&mut self, entry: &fundtrail_query::Entry) -> Result<Answer, Error> {
        Ok(self.facts.entry_answer(self.reader, self.call, entry)?)
    }

    fn named(&mut self, account_id: &str) -> Result<(), Error> {
        // Shown whole, as GetAccount would show it.
        match self
            .facts
            .account_answer(self.reader, Call::GetAccount, account_id)?
        {
            Answer::Full => Ok(()),
            _ => Err(jurisdiction::denied(
                format_args!("account {account_id}"),
                self.reader,
            )),
        }
    }

    fn still_wanted(&self) -> Result<(), Error> {
        Ok(self.facts.still_wanted()?)
    }
}

fn anomalies(
    engine: &Engine,
    reader: &Reader,
    facts: &mut Facts<'_>,
    request: pb::AnomaliesRequest,
) -> Result<pb::AnomaliesResponse, Error> {
    let limit = page_size(request.page_size)?;
    let mut request = query::anomalies_request(request);
    request.page_token = engine.tokens().open(ANOMALIES, &request.page_token)?;
    let answer = fundtrail_query::anomalies(
        engine,
        &mut Audience::new(reader, facts, Call::Anomalies),
        &request,
        limit,
    )?;
    let mut answer = query::anomalies_response(answer);
    answer.next_page_token = engine.tokens().seal(ANOMALIES, &answer.next_page_token);
    let mut findings = Vec::with_capacity(answer.findings.len());
    for finding in answer.findings {
        if facts.account_answer(reader, Call::Anomalies, &finding.account_id)? == Answer::Full {
            findings.push(finding);
        }
    }
    facts.rows(findings.len());
    answer.findings = findings;
    Ok(answer)
}

/// The compliance report, keeping the breaches the reader may read whole:
/// at an account of its jurisdiction, or, for a programme's share, at
/// every account its appropriations were made into.
fn compliance(
    engine: &Engine,
    reader: &Reader,
    facts: &mut Facts<'_>,
    request: pb::ComplianceRequest,
) -> Result<pb::ComplianceResponse, Error> {
    let limit = page_size(request.page_size)?;
    let mut request = fundtrail_query::ComplianceRequest {
        programme_code: request.programme_code,
        division_prefix: request.division_prefix,
        level: request.level,
        period: request.period,
        page_token: request.page_token,
    };
    fundtrail_query::compliance::check_request(&request)?;
    request.page_token = engine.tokens().open(COMPLIANCE, &request.page_token)?;
    let answer = fundtrail_query::compliance(
        engine,
        &mut Audience::new(reader, facts, Call::Anomalies),
        &request,
        limit,
    )?;
    let mut breaches = Vec::with_capacity(answer.breaches.len());
    for breach in answer.breaches {
        let mut full = true;
        for account in &breach.scope_accounts {
            full &= facts.account_answer(reader, Call::Anomalies, account)? == Answer::Full;
        }
        if full {
            breaches.push(query::breach(breach));
        }
    }
    facts.rows(breaches.len());
    Ok(pb::ComplianceResponse {
        breaches,
        next_page_token: engine.tokens().seal(COMPLIANCE, &answer.next_page_token),
        as_of_day: answer.as_of_day,
    })
}

#[tonic::async_trait]
impl pb::query_server::Query for QueryService {
    type WatchStream = tokio_stream::wrappers::ReceiverStream<Result<pb::WatchEvent, Status>>;

    async fn reconcile(
        &self,
        request: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::ReconcileResponse>, Status> {
        jurisdiction::signed(&self.engine, request, reconcile).await
    }

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let caller = jurisdiction::caller(&request)?;
        let rx = crate::watch::start(
            self.engine.clone(),
            caller,
            request.into_inner(),
            self.watchers.clone(),
            &self.watchers_of_org,
        )
        .await?;
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn get_ledger(
        &self,
        _: Request<pb::GetLedgerRequest>,
    ) -> Result<Response<pb::LedgerInfo>, Status> {
        jurisdiction::blocking(self.engine.clone(), |engine| {
            let meta = engine.meta();
            let reason = engine.read_only_reason();
            // The rules version moves with UpgradeRules records: read it now.
            let rules_version = engine
                .state()
                .ledger()?
                .ok_or_else(|| Fault::corrupt("derived state lacks the ledger identity"))?
                .rules_version;
            Ok(pb::LedgerInfo {
                ledger_id: meta.ledger_id.clone(),
                root_org_id: meta.root_org_id.clone(),
                record_count: engine.record_count(),
                writable: reason.is_none(),
                read_only_reason: reason.unwrap_or_default(),
                log_public_key: meta.log_public_key.to_vec(),
                rules_version,
                replica: engine.replica_status().map(|status| {
                    let report = status.get();
                    pb::ReplicaInfo {
                        upstream: report.upstream,
                        upstream_checkpoint_size: report.upstream_checkpoint_size,
                        stopped: report.stopped,
                    }
                }),
            })
        })
        .await
    }

    async fn get_entry(
        &self,
        request: Request<pb::GetEntryRequest>,
    ) -> Result<Response<pb::Entry>, Status> {
        jurisdiction::signed(&self.engine, request, get_entry).await
    }

    async fn list_entries(
        &self,
        request: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<pb::ListEntriesResponse>, Status> {
        jurisdiction::signed(&self.engine, request, list_entries).await
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        jurisdiction::signed(&self.engine, request, get_account).await
    }

    async fn trace_forward(
        &self,
        request: Request<pb::TraceForwardRequest>,
    ) -> Result<Response<pb::FlowGraph>, Status> {
        jurisdiction::signed(&self.engine, request, trace_forward).await
    }

    async fn trace_backward(
        &self,
        request: Request<pb::TraceBackwardRequest>,
    ) -> Result<Response<pb::TraceBackwardResponse>, Status> {
        jurisdiction::signed(&self.engine, request, trace_backward).await
    }

    async fn household_statement(
        &self,
        request: Request<pb::HouseholdStatementRequest>,
    ) -> Result<Response<pb::HouseholdStatementResponse>, Status> {
        jurisdiction::signed(&self.engine, request, household_statement).await
    }

    async fn idle_funds(
        &self,
        request: Request<pb::IdleFundsRequest>,
    ) -> Result<Response<pb::IdleFundsResponse>, Status> {
        jurisdiction::signed(&self.engine, request, idle_funds).await
    }

    async fn anomalies(
        &self,
        request: Request<pb::AnomaliesRequest>,
    ) -> Result<Response<pb::AnomaliesResponse>, Status> {
        jurisdiction::signed(&self.engine, request, anomalies).await
    }

    async fn compliance(
        &self,
        request: Request<pb::ComplianceRequest>,
    ) -> Result<Response<pb::ComplianceResponse>, Status> {
        jurisdiction::signed(&self.engine, request, compliance).await
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        jurisdiction::signed(&self.engine, request, list_accounts).await
    }

    async fn get_quota(
        &self,
        request: Request<pb::GetQuotaRequest>,
    ) -> Result<Response<pb::QuotaLineage>, Status> {
        jurisdiction::signed(&self.engine, request, get_quota).await
    }

    async fn spending_progress(
        &self,
        request: Request<pb::SpendingProgressRequest>,
    ) -> Result<Response<pb::SpendingProgressResponse>, Status> {
        jurisdiction::signed(&self.engine, request, spending_progress).await
    }

    async fn list_quotas(
        &self,
        request: Request<pb::ListQuotasRequest>,
    ) -> Result<Response<pb::ListQuotasResponse>, Status> {
        jurisdiction::signed(&self.engine, request, list_quotas).await
    }

    async fn get_org(
        &self,
        request: Request<pb::GetOrgRequest>,
    ) -> Result<Response<pb::Org>, Status> {
        jurisdiction::signed(&self.engine, request, get_org).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_protocol_writes_them() {
        assert_eq!(grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(grpc_timeout("1H"), Some(Duration::from_secs(3_600)));
        assert_eq!(
            grpc_timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "m", "123456789m", "12x", "-1S", "1.5S", "S1"] {
            assert_eq!(grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_write_answers_within_nine_tenths_of_the_shorter_deadline() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        let limit = Duration::from_millis(CALL_TIMEOUT_MS);
        assert_eq!(answer_within(&metadata), limit * 9 / 10);
        metadata.insert("grpc-timeout", "1000m".parse().unwrap());
        assert_eq!(answer_within(&metadata), Duration::from_millis(900));
        metadata.insert("grpc-timeout", "10H".parse().unwrap());
        assert_eq!(answer_within(&metadata), limit * 9 / 10);
    }
}
