//! The log's records a page at a time, found by the most selective index a
//! request names, and the bank's lines matched against a county's payments
//! (which reads its records that way).

use std::borrow::Borrow;
use std::collections::HashMap;

use fundtrail_core::access::Answer;
use fundtrail_core::apply::document_no;
use fundtrail_core::limits::{ENTRIES_PAGE_BYTES_MAX, LIST_SCAN_ROWS_MAX, PAGE_SIZE_MAX};
use fundtrail_core::model::{Body, Effects, RecordKind, Request};
use fundtrail_core::money::Fen;
use fundtrail_core::reconcile::{BankLine, Finding, Payment};
use fundtrail_core::state::{key, StateRead};
use fundtrail_core::{validate, Error, Fault};

use crate::{Audience, LedgerView, ROWS_PER_WANTED_CHECK};

/// One durable record as a read sees it: its request and effects decoded
/// once, when the record was read.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub commit_time_ms: i64,
    /// The key that signed the request.
    pub key_id: String,
    pub request: Request,
    pub effects: Effects,
    /// Set when a later Reversal compensated this record.
    pub reversed_by_seq: Option<u64>,
    /// How many bytes the record is.
    pub record_len: usize,
}

impl Entry {
    /// Whether one of the record's legs moved money into or out of
    /// `account_id`.
    pub fn touches(&self, account_id: &str) -> bool {
        let is = |side: &Option<String>| side.as_deref() == Some(account_id);
        self.effects
            .legs
            .iter()
            .any(|leg| is(&leg.from_account_id) || is(&leg.to_account_id))
    }

    /// The money the record moved, over all its legs.
    pub fn amount(&self) -> Result<Fen, Fault> {
        self.effects
            .legs
            .iter()
            .try_fold(0u64, |sum, leg| sum.checked_add(leg.amount.0))
            .map(Fen)
            .ok_or_else(|| Fault::corrupt(format!("record {}'s legs overflow u64", self.seq)))
    }
}

/// A view whose records can be read whole. `Read` is the view's own form of
/// a record (the server keeps the bytes and wire form beside the decoded
/// entry), so what a page returns is what was read, never read again.
pub trait Records: LedgerView {
    type Read: Borrow<Entry>;

    /// Record `seq`, decoded once. NOT_FOUND past the end of the log.
    fn read(&self, seq: u64) -> Result<Self::Read, Error>;

    /// When record `seq` was committed.
    fn commit_time_ms(&self, seq: u64) -> Result<i64, Error>;
}

/// Which records a page holds: those passing every filter given (empty
/// strings and `None` filter nothing).
#[derive(Debug, Clone, Default)]
pub struct EntriesRequest {
    /// Records moving money into or out of this account.
    pub account_id: String,
    /// Records signed by this org.
    pub org_id: String,
    /// Records of this kind, as the API names it (`Disbursement`).
    pub kind: String,
    /// Records with a leg of this source's money.
    pub source_seq: Option<u64>,
    /// Records citing this 文号.
    pub document_no: String,
    /// Records committed at or after this time (0: from the start).
    pub from_time_ms: i64,
    /// Records committed before this time (0: to the end).
    pub to_time_ms: i64,
    /// The first seq to examine.
    pub start_seq: u64,
    /// At most this many records, 1 to [`PAGE_SIZE_MAX`].
    pub page_size: usize,
}

/// A page of records with what the reader gets of each (whole or
/// pseudonymised; records the reader may not see are left out), and the
/// seq the next page starts from.
pub struct EntriesPage<R> {
    pub entries: Vec<(R, Answer)>,
    pub next_seq: Option<u64>,
}

/// The records `request` asks for that `audience` may see, in seq order. A
/// page examines at most [`LIST_SCAN_ROWS_MAX`] records and ends early
/// rather than pass [`ENTRIES_PAGE_BYTES_MAX`] bytes.
pub fn list_entries<V: Records + ?Sized>(
    view: &V,
    audience: &mut dyn Audience,
    request: &EntriesRequest,
) -> Result<EntriesPage<V::Read>, Error> {
    assert!((1..=PAGE_SIZE_MAX as usize).contains(&request.page_size));
    let count = view.record_count();
    let mut start = request.start_seq;
    if request.from_time_ms > 0 {
        start = start.max(first_seq_at(view, request.from_time_ms, count)?);
    }
    let end = match request.to_time_ms {
        0 => count,
        to_time_ms => first_seq_at(view, to_time_ms, count)?,
    };
    if !request.account_id.is_empty() {
        validate::id("account_id", &request.account_id)?;
        // Filtering by an account names it: the reader must see it whole.
        audience.named(&request.account_id)?;
    }
    let candidates = candidates(view, request, start, end)?;
    let mut entries = Vec::new();
    let mut page_bytes: usize = 0;
    let mut next_seq = None;
    for (examined, &seq) in candidates.iter().enumerate() {
        if entries.len() == request.page_size {
            next_seq = Some(seq);
            break;
        }
        if examined.is_multiple_of(ROWS_PER_WANTED_CHECK) {
            audience.still_wanted()?;
        }
        let read = view.read(seq)?;
        let entry: &Entry = read.borrow();
        let answer = match matches(entry, request) {
            true => audience.record(entry)?,
            false => Answer::Omitted,
        };
        if answer == Answer::Full || answer == Answer::Pseudonymised {
            page_bytes += entry.record_len;
            entries.push((read, answer));
            // A page of large records ends early rather than pass the
            // message limit; the next picks up after the last one.
            if page_bytes > ENTRIES_PAGE_BYTES_MAX && seq + 1 < end {
                next_seq = Some(seq + 1);
                break;
            }
        }
        if examined + 1 == LIST_SCAN_ROWS_MAX && seq + 1 < end {
            next_seq = Some(seq + 1);
        }
    }
    Ok(EntriesPage { entries, next_seq })
}

/// The seqs in `start..end` a page examines, from the most selective index
/// the request names, else the log itself.
fn candidates<V: Records + ?Sized>(
    view: &V,
    request: &EntriesRequest,
    start: u64,
    end: u64,
) -> Result<Vec<u64>, Error> {
    let index = if !request.account_id.is_empty() {
        Some((
            key::account_entries(&request.account_id),
            key::account_entry(&request.account_id, start),
        ))
    } else if !request.document_no.is_empty() {
        Some((
            key::named_prefix(key::DOCUMENT_ENTRY, &request.document_no),
            key::document_entry(&request.document_no, start),
        ))
    } else if let Some(source) = request.source_seq {
        Some((
            key::seq(key::SOURCE_ENTRY, source),
            key::source_entry(source, start),
        ))
    } else if !request.org_id.is_empty() {
        validate::id("org_id", &request.org_id)?;
        Some((
            key::named_prefix(key::ORG_ENTRY, &request.org_id),
            key::org_entry(&request.org_id, start),
        ))
    } else if !request.kind.is_empty() {
        validate::id("kind", &request.kind)?;
        Some((
            key::named_prefix(key::KIND_ENTRY, &request.kind),
            key::kind_entry(&request.kind, start),
        ))
    } else {
        None
    };
    let Some((prefix, from)) = index else {
        return Ok((start..end).take(LIST_SCAN_ROWS_MAX).collect());
    };
    let mut seqs = Vec::new();
    for (row_key, _) in view.state().scan(&prefix, &from, LIST_SCAN_ROWS_MAX)? {
        let seq = key::seq_suffix(&row_key).ok_or_else(|| {
            Fault::corrupt("an entry index key of derived state does not end with a seq")
        })?;
        if seq < end {
            seqs.push(seq);
        }
    }
    Ok(seqs)
}

/// Whether `entry` passes every filter of `request`.
fn matches(entry: &Entry, request: &EntriesRequest) -> bool {
    (request.account_id.is_empty() || entry.touches(&request.account_id))
        && (request.org_id.is_empty() || entry.effects.signer_org_id == request.org_id)
        && (request.kind.is_empty() || entry.request.body.kind().name() == request.kind)
        && request
            .source_seq
            .is_none_or(|s| entry.effects.legs.iter().any(|l| l.source_seq == s))
        && (request.document_no.is_empty()
            || document_no(&entry.request.body) == Some(request.document_no.as_str()))
}

/// The first seq whose commit time is at least `time_ms`: commit times never
/// go backwards, so a binary search over O(log n) records finds it.
fn first_seq_at<V: Records + ?Sized>(view: &V, time_ms: i64, count: u64) -> Result<u64, Error> {
    let (mut low, mut high) = (0u64, count);
    while low < high {
        let mid = low + (high - low) / 2;
        if view.commit_time_ms(mid)? < time_ms {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    Ok(low)
}

/// Calls `each` on every record of `kind` that `org_id` signed, as pages of
/// [`list_entries`] show them to `audience`.
fn each_entry_of<V: Records + ?Sized>(
    view: &V,
    audience: &mut dyn Audience,
    org_id: &str,
    kind: RecordKind,
    mut each: impl FnMut(&Entry) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut request = EntriesRequest {
        org_id: org_id.into(),
        kind: kind.name().into(),
        page_size: PAGE_SIZE_MAX as usize,
        ..Default::default()
    };
    loop {
        let page = list_entries(view, audience, &request)?;
        for (read, _) in &page.entries {
            each(read.borrow())?;
        }
        match page.next_seq {
            Some(next_seq) => request.start_seq = next_seq,
            None => return Ok(()),
        }
    }
}

/// What matching a bank's lines found, and how many payments were matched
/// against.
pub struct Reconciled {
    pub findings: Vec<Finding>,
    pub payments: usize,
}

/// The bank's `lines` against the payments county `county_org_id` signed
/// and `audience` may see, by the one matcher
/// (`fundtrail_core::reconcile`) the CLI uses too. Payments are read a page
/// at a time and only what matching needs is kept.
pub fn reconcile<V: Records + ?Sized>(
    view: &V,
    audience: &mut dyn Audience,
    county_org_id: &str,
    lines: &[BankLine],
) -> Result<Reconciled, Error> {
    validate::id("county_org_id", county_org_id)?;
    let mut refs = HashMap::new();
    each_entry_of(
        view,
        audience,
        county_org_id,
        RecordKind::RegisterHousehold,
        |entry| {
            if let Body::RegisterHousehold(h) = &entry.request.body {
                refs.insert(h.account_id.clone(), h.household_ref.clone());
            }
            Ok(())
        },
    )?;
    let mut payments = Vec::new();
    each_entry_of(
        view,
        audience,
        county_org_id,
        RecordKind::Disbursement,
        |entry| {
            let Body::Disbursement(d) = &entry.request.body else {
                return Ok(());
            };
            let (Some(household_ref), None) =
                (refs.get(&d.household_account_id), entry.reversed_by_seq)
            else {
                return Ok(());
            };
            payments.push(Payment {
                seq: entry.seq,
                household_ref: household_ref.clone(),
                amount: entry.amount()?,
                value_day: entry.effects.value_day,
                returned_by_bank: false,
            });
            Ok(())
        },
    )?;
    for payment in &mut payments {
        payment.returned_by_bank = view.state().returned_by_bank(payment.seq)?;
    }
    Ok(Reconciled {
        findings: fundtrail_core::reconcile::reconcile(lines, &payments),
        payments: payments.len(),
    })
}
