//! `Query.Watch`: the change feed. A stream sends the committed entries
//! from `from_seq` in order, then new ones as they are indexed, and each
//! newer signed checkpoint.
//!
//! Entries are read from the ledger a page at a time, never buffered for a
//! consumer: writers never wait for one. A consumer that stops reading
//! while the ledger moves on by more than [`WATCH_LAG_RECORDS_MAX`] records
//! is ended with RESOURCE_EXHAUSTED naming the seq to resume from; the
//! status goes in a channel slot held back for it from the start, so it
//! arrives after the events already queued. Each page passes the
//! jurisdiction rules and the access log as a ListEntries page does.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use fundtrail_api::pb;
use fundtrail_core::access::{Answer, Call, Reader};
use fundtrail_core::limits::{
    ENTRIES_PAGE_BYTES_MAX, WATCH_ACCOUNTS_MAX, WATCH_BUFFER_EVENTS, WATCH_IDLE_MS,
    WATCH_KINDS_MAX, WATCH_LAG_RECORDS_MAX, WATCH_PAGE_RECORDS,
};
use fundtrail_core::{validate, Error, Rejection};
use tokio::sync::mpsc::{OwnedPermit, Sender};
use tokio::sync::OwnedSemaphorePermit;
use tonic::Status;

use crate::boundary::Caller;
use crate::engine::Engine;
use crate::jurisdiction::{self, Facts};
use fundtrail_query::{Entry, Records};

type Event = Result<pb::WatchEvent, Status>;

/// Which entries a stream sends.
#[derive(Debug, Clone)]
pub struct Filter {
    accounts: BTreeSet<String>,
    org_id: String,
    kinds: BTreeSet<String>,
}

impl Filter {
    /// Checks the request's filters: counts, then each id.
    pub fn new(request: &pb::WatchRequest) -> Result<Filter, Rejection> {
        if request.account_ids.len() > WATCH_ACCOUNTS_MAX {
            return Err(Rejection::invalid(
                "account_ids",
                format!("at most {WATCH_ACCOUNTS_MAX} accounts may be watched on one stream"),
            ));
        }
        if request.kinds.len() > WATCH_KINDS_MAX {
            return Err(Rejection::invalid(
                "kinds",
                format!("at most {WATCH_KINDS_MAX} kinds may be named"),
            ));
        }
        for account in &request.account_ids {
            validate::id("account_ids", account)?;
        }
        if !request.org_id.is_empty() {
            validate::id("org_id", &request.org_id)?;
        }
        for kind in &request.kinds {
            validate::id("kinds", kind)?;
        }
        Ok(Filter {
            accounts: request.account_ids.iter().cloned().collect(),
            org_id: request.org_id.clone(),
            kinds: request.kinds.iter().cloned().collect(),
        })
    }

    fn matches(&self, entry: &Entry) -> bool {
        (self.accounts.is_empty() || self.accounts.iter().any(|a| entry.touches(a)))
            && (self.org_id.is_empty() || entry.effects.signer_org_id == self.org_id)
            && (self.kinds.is_empty() || self.kinds.contains(entry.request.body.kind().name()))
    }
}

/// Refuses a stream naming an account the reader may not read whole.
pub fn check_accounts(
    reader: &Reader,
    facts: &mut Facts<'_>,
    filter: &Filter,
) -> Result<(), Error> {
    for account in &filter.accounts {
        if facts.account_answer(reader, Call::GetAccount, account)? != Answer::Full {
            return Err(jurisdiction::denied(
                format_args!("account {account}"),
                reader,
            ));
        }
    }
    facts.rows(0);
    Ok(())
}

/// The entries of records `start..end` (at most [`WATCH_PAGE_RECORDS`] of
/// them) that match `filter`, as the reader may see them, and the seq after
/// the last record looked at.
fn page(
    engine: &Engine,
    reader: &Reader,
    facts: &mut Facts<'_>,
    filter: &Filter,
    start: u64,
    end: u64,
) -> Result<(Vec<pb::Entry>, u64), Error> {
    let end = end.min(start.saturating_add(WATCH_PAGE_RECORDS));
    let mut entries = Vec::new();
    let mut page_bytes = 0;
    for seq in start..end {
        // A page of large records ends early, as a ListEntries page does.
        if page_bytes > ENTRIES_PAGE_BYTES_MAX {
            facts.rows(entries.len());
            return Ok((entries, seq));
        }
        let read = engine.read(seq)?;
        if !filter.matches(&read.entry) {
            continue;
        }
        let mut entry = read.wire;
        match facts.entry_answer(reader, Call::ListEntries, &read.entry)? {
            Answer::Omitted | Answer::Denied => continue,
            Answer::Pseudonymised => facts.pseudonymise_entry(reader, &mut entry)?,
            Answer::Full => {}
        }
        page_bytes += entry.record.len();
        entries.push(entry);
    }
    facts.rows(entries.len());
    Ok((entries, end))
}

/// One stream's sending end.
pub struct Stream {
    pub engine: Arc<Engine>,
    pub caller: Caller,
    pub filter: Filter,
    pub tx: Sender<Event>,
    /// The slot the stream's final status goes in.
    pub last: OwnedPermit<Event>,
    /// The stream's place among [`fundtrail_core::limits::WATCH_STREAMS_MAX`],
    /// and in its org's share of them.
    pub _stream: (OwnedSemaphorePermit, crate::shares::Share<String>),
}

impl Stream {
    /// Sends from `from_seq` until the consumer goes or falls behind.
    pub async fn run(self, from_seq: u64) {
        let Stream {
            engine,
            caller,
            filter,
            tx,
            last,
            _stream,
        } = self;
        let ended = send_from(&engine, &caller, &filter, &tx, from_seq).await;
        if let Err(status) = ended {
            last.send(Err(status));
        }
    }
}

async fn send_from(
    engine: &Arc<Engine>,
    caller: &Caller,
    filter: &Filter,
    tx: &Sender<Event>,
    from_seq: u64,
) -> Result<(), Status> {
    let idle = Duration::from_millis(WATCH_IDLE_MS);
    let mut next = from_seq;
    let mut checkpoint_sent = 0;
    loop {
        // A consumer that went away while its filter matched nothing is
        // noticed here, not after the whole ledger was scanned for it.
        if tx.is_closed() {
            return Ok(());
        }
        if let Some(signed) = engine.checkpoints().latest() {
            let tree_size = signed.checkpoint.tree_size;
            if tree_size > checkpoint_sent {
                checkpoint_sent = tree_size;
                let event = pb::watch_event::Event::Checkpoint(pb::WatchCheckpoint {
                    tree_size,
                    note: signed.note_with_cosignatures(),
                });
                send(engine, tx, event, next).await?;
            }
        }
        let head = engine.indexed().get();
        if next >= head {
            tokio::select! {
                _ = engine.indexed().wait(next + 1, idle) => continue,
                _ = tx.closed() => return Ok(()),
            }
        }
        let (engine_, caller_, filter_) = (engine.clone(), caller.clone(), filter.clone());
        let (entries, scanned) =
            jurisdiction::answer(engine_, caller_, move |engine, reader, facts| {
                page(engine, reader, facts, &filter_, next, head)
            })
            .await?
            .into_inner();
        for entry in entries {
            let seq = entry.seq;
            send(engine, tx, pb::watch_event::Event::Entry(entry), seq).await?;
        }
        next = scanned;
    }
}

/// Sends one event, unless the ledger moves on by more than
/// [`WATCH_LAG_RECORDS_MAX`] records while the consumer takes none: a
/// consumer catching up from far behind is never ended, only one that
/// stopped reading.
async fn send(
    engine: &Engine,
    tx: &Sender<Event>,
    event: pb::watch_event::Event,
    resume_seq: u64,
) -> Result<(), Status> {
    let event = pb::WatchEvent { event: Some(event) };
    let behind = engine
        .indexed()
        .get()
        .saturating_add(WATCH_LAG_RECORDS_MAX + 1);
    let idle = Duration::from_millis(WATCH_IDLE_MS);
    tokio::select! {
        sent = tx.send(Ok(event)) => sent.map_err(|_| Status::cancelled("the consumer went away")),
        _ = async { while !engine.indexed().wait(behind, idle).await {} } => {
            Err(Status::resource_exhausted(format!(
                "the consumer stopped reading while the ledger moved on by more than {WATCH_LAG_RECORDS_MAX} records; resume with from_seq {resume_seq}"
            )))
        }
    }
}

/// Checks the request and starts its stream; the receiving end is the
/// response.
pub async fn start(
    engine: Arc<Engine>,
    caller: Caller,
    request: pb::WatchRequest,
    streams: Arc<tokio::sync::Semaphore>,
    of_org: &crate::shares::Shares<String>,
) -> Result<tokio::sync::mpsc::Receiver<Event>, Status> {
    let filter = Filter::new(&request).map_err(crate::status::status)?;
    let count = engine.indexed().get();
    if request.from_seq > count {
        return Err(Status::out_of_range(format!(
            "from_seq {} is past the ledger's {count} records",
            request.from_seq
        )));
    }
    let Some(org_share) = of_org.try_take(&caller.reader.org_id) else {
        return Err(Status::resource_exhausted(format!(
            "org {} has {} watch streams open, its share; close one first",
            caller.reader.org_id,
            of_org.max()
        )));
    };
    let Ok(stream) = streams.try_acquire_owned() else {
        return Err(Status::resource_exhausted(format!(
            "the server serves its limit of {} watch streams; retry later",
            fundtrail_core::limits::WATCH_STREAMS_MAX
        )));
    };
    let checked = filter.clone();
    jurisdiction::answer(engine.clone(), caller.clone(), move |_, reader, facts| {
        check_accounts(reader, facts, &checked)
    })
    .await?;
    let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BUFFER_EVENTS);
    let last = tx
        .clone()
        .reserve_owned()
        .await
        .map_err(|_| Status::unavailable("the stream closed before it started"))?;
    let stream = Stream {
        engine,
        caller,
        filter,
        tx,
        last,
        _stream: (stream, org_share),
    };
    tokio::spawn(stream.run(request.from_seq));
    Ok(rx)
}
