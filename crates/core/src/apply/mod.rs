//! The rules: whether a signed request may become record `seq`, and what it
//! changes. Run by the single sequencer in log order, and again by replay.
//!
//! [`apply`] authenticates, checks idempotency under the ledger's rules
//! version, and hands the body to one function per record kind:
//! [`registry`] for orgs, keys, accounts, projects and households,
//! [`movement`] for everything that moves money, [`quota`] for budget
//! quota.

mod movement;
mod quota;
mod registry;

use crate::dates::Day;
use crate::model::*;
use crate::rules::Rules;
use crate::state::{key, Kv, StateRead, Txn, Writes};
use crate::{signing, validate, Error, Fault, Rejection};

/// Everything about a request besides its decoded body.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The seq the record will get if accepted.
    pub seq: u64,
    pub commit_time_ms: i64,
    pub key_id: &'a str,
    /// The exact signed payload bytes.
    pub payload: &'a [u8],
    pub signature: &'a [u8],
    /// The public key the caller already checked `signature` against, if it
    /// did (in parallel, before the sequencer); otherwise it is checked here.
    pub verified_public_key: Option<[u8; 32]>,
    /// Largest allowed |commit time − signing time|. `None` on replay: the
    /// window is an admission rule, checked once when the record was accepted.
    pub skew_ms_max: Option<u64>,
}

/// The result of a request that passed authentication.
#[derive(Debug)]
pub enum Outcome {
    /// A new record: its effects and the state writes to commit with it.
    Accepted { effects: Effects, writes: Writes },
    /// A retry of the request already recorded as this seq.
    Duplicate { seq: u64 },
}

/// What a record-kind function works with: the staged state, the record's
/// position and date, the signing org, and the effects so far.
pub(crate) struct Act<'t, 'a, K: Kv + ?Sized> {
    pub txn: &'t mut Txn<'a, K>,
    /// The rules in force for this record.
    pub rules: Rules,
    pub seq: u64,
    /// The record's business date (its value date).
    pub day: Day,
    /// The day it is committed: from rules 6 a record must pass the rules
    /// of this day as well as those of its value date.
    pub commit_day: Day,
    /// The ledger's root org, as `apply` read it from the ledger identity.
    pub root_org_id: &'t str,
    pub org: Org,
    pub effects: Effects,
    /// The request was carried over from an earlier system.
    pub imported: bool,
}

impl<K: Kv + ?Sized> Act<'_, '_, K> {
    /// The signer as a reader: what it may read, reads decide
    /// ([`crate::access`]), and so what its refusals may reveal.
    pub(crate) fn reader(&self) -> Result<crate::access::Reader, Fault> {
        let chain = self.txn.org_chain(&self.org.org_id)?;
        Ok(crate::access::Reader::of_chain(&chain))
    }

    /// Whether the signer may read data owned by `owner_org_id`.
    pub(crate) fn reads(&self, owner_org_id: &str) -> Result<bool, Fault> {
        let owner = crate::access::Owner::of_chain(&self.txn.org_chain(owner_org_id)?);
        Ok(crate::access::sees(&self.reader()?, &owner))
    }

    /// The refusal of a write whose `field` names something absent: NOT_FOUND
    /// (`why`) only to a signer that sees every org's data; to any other,
    /// the answer [`unreadable`] gives for what exists but is not its, so
    /// guesses of ids cannot be tested by writing.
    pub(crate) fn absent(&self, field: &str, why: String) -> Result<Rejection, Fault> {
        if self.reader()?.sees_everything() {
            return Ok(Rejection::not_found(field, why));
        }
        Ok(unreadable(field))
    }

    /// `refusal` if the signer may read what `owner_org_id` owns; otherwise
    /// the one answer for what it may not read ([`unreadable`]).
    pub(crate) fn refuse_as_reader(
        &self,
        field: &str,
        owner_org_id: &str,
        refusal: impl FnOnce() -> Rejection,
    ) -> Result<Rejection, Fault> {
        if self.reads(owner_org_id)? {
            return Ok(refusal());
        }
        Ok(unreadable(field))
    }
}

/// The one answer to a write that names, in `field`, something the signer
/// may not read, and equally to one that names nothing: the same code and
/// words either way, so a write reveals no more than a read.
pub(crate) fn unreadable(field: &str) -> Rejection {
    Rejection::denied(
        field,
        format!("{field} names nothing this org may act on; it may name only what it may read"),
    )
}

/// Decides request `request` signed as in `ctx` against `state`, under the
/// rules version the ledger runs at that position. A refusal is
/// [`Error::Refused`]; a state read that fails is [`Error::Fault`].
pub fn apply<K: Kv + ?Sized>(
    state: &K,
    ctx: &Context,
    request: &Request,
) -> Result<Outcome, Error> {
    let payload_sha256 = signing::sha256(ctx.payload);
    if let Body::Genesis(genesis) = &request.body {
        let rules = Rules::of_version(genesis.rules_version).ok_or_else(|| {
            Rejection::invalid(
                "genesis.rules_version",
                format!(
                    "rules version {} is not known to this server",
                    genesis.rules_version
                ),
            )
        })?;
        validate::request(request, rules)?;
        let mut txn = Txn::new(state);
        let effects = registry::genesis(&mut txn, ctx, request, genesis)?;
        let entry = IdempotencyEntry {
            seq: ctx.seq,
            payload_sha256,
        };
        remember(
            &mut txn,
            rules,
            ctx.key_id,
            &effects.signer_org_id,
            request,
            &entry,
        )?;
        index_record(&mut txn, ctx.seq, &effects.signer_org_id, &request.body);
        return Ok(Outcome::Accepted {
            effects,
            writes: txn.into_writes(),
        });
    }

    let ledger = state
        .ledger()?
        .ok_or_else(|| Fault::corrupt("this ledger has no genesis record yet"))?;
    let rules = Rules::of_ledger(&ledger)?;
    validate::request(request, rules)?;
    if request.ledger_id != ledger.ledger_id {
        return Err(Rejection::invalid(
            "ledger_id",
            format!(
                "the request was signed for ledger {:?}, but this is ledger {:?}",
                request.ledger_id, ledger.ledger_id
            ),
        )
        .into());
    }
    let signer = authenticate(state, ctx)?;
    if let Some(first) = idempotency_entry(state, rules, &signer, request)? {
        if first.payload_sha256 == payload_sha256 {
            return Ok(Outcome::Duplicate { seq: first.seq });
        }
        return Err(Rejection::exists(
            "idempotency_key",
            format!(
                "idempotency key {:?} was already used by {} for a different request (record {}); use a new key for a new request",
                request.idempotency_key,
                rules.idempotency_scope_name(),
                first.seq
            ),
        )
        .into());
    }
    if let Some(revoked_seq) = signer.revoked_seq {
        return Err(Rejection::unauthenticated(
            "key_id",
            format!(
                "key {} was revoked by record {revoked_seq} and may no longer sign",
                signer.key_id
            ),
        )
        .into());
    }
    if signer.read_only {
        return Err(Rejection::denied(
            "key_id",
            format!(
                "key {} is a read key: it signs reads, never records; sign with a write key of {}",
                signer.key_id, signer.org_id
            ),
        )
        .into());
    }
    check_skew(ctx, request)?;
    let org = state.org(&signer.org_id)?.ok_or_else(|| {
        Fault::corrupt(format!(
            "derived state lacks org {} of key {}",
            signer.org_id, signer.key_id
        ))
    })?;
    let day = value_day(ctx, request)?;
    let commit_day = crate::dates::day_of_ms(ctx.commit_time_ms);
    if rules >= Rules::V6 && request.imported {
        check_import_window(state, &org, commit_day)?;
    }
    let mut txn = Txn::new(state);
    let mut act = Act {
        txn: &mut txn,
        rules,
        seq: ctx.seq,
        day,
        commit_day,
        root_org_id: &ledger.root_org_id,
        effects: Effects {
            signer_org_id: org.org_id.clone(),
            value_day: day,
            ..Effects::default()
        },
        org,
        imported: request.imported,
    };
    dispatch(&mut act, &request.body)?;
    let Act { org, effects, .. } = act;
    let entry = IdempotencyEntry {
        seq: ctx.seq,
        payload_sha256,
    };
    remember(&mut txn, rules, ctx.key_id, &org.org_id, request, &entry)?;
    index_record(&mut txn, ctx.seq, &org.org_id, &request.body);
    if !effects.legs.is_empty() {
        movement::index_movement(&mut txn, ctx.seq, &request.body, &effects);
    }
    Ok(Outcome::Accepted {
        effects,
        writes: txn.into_writes(),
    })
}

/// One function per record kind.
fn dispatch<K: Kv + ?Sized>(act: &mut Act<K>, body: &Body) -> Result<(), Error> {
    match body {
        Body::Genesis(_) => Err(Rejection::precondition(
            "genesis",
            "this ledger already has its genesis record",
        )
        .into()),
        Body::RegisterOrg(r) => registry::register_org(act, r),
        Body::AddKey(a) => registry::add_key(act, a),
        Body::RevokeKey(r) => registry::revoke_key(act, r),
        Body::OpenAccount(o) => registry::open_account(act, o),
        Body::RegisterProject(r) => registry::register_project(act, r),
        Body::AnnounceProject(a) => registry::announce_project(act, a),
        Body::RegisterHousehold(r) => registry::register_household(act, r),
        Body::SetHouseholdStatus(s) => registry::set_household_status(act, s),
        Body::SetMonitoring(m) => registry::set_monitoring(act, m),
        Body::UpgradeRules(u) => registry::upgrade_rules(act, u),
        Body::Appropriation(a) => movement::appropriation(act, a),
        Body::Transfer(t) => movement::transfer(act, t),
        Body::Consolidation(c) => movement::consolidation(act, c),
        Body::Allocation(a) => movement::allocation(act, a),
        Body::Disbursement(d) => movement::disbursement(act, d),
        Body::Return(r) => movement::return_money(act, r),
        Body::Reversal(r) => movement::reversal(act, r),
        Body::ConfirmCredit(c) => movement::confirm_credit(act, c),
        Body::SetProgrammeRules(r) => registry::set_programme_rules(act, r),
        Body::EvaluateProject(e) => registry::evaluate_project(act, e),
        Body::DeclareImportWindow(w) => registry::declare_import_window(act, w),
        Body::DeclarePairing(p) => registry::declare_pairing(act, p),
        Body::IssueQuota(q) => quota::issue_quota(act, q),
    }
}

/// The earlier record that used this request's idempotency key in the
/// signer's scope under `rules`: the key's own (rules 1) or its org's (2).
fn idempotency_entry<K: Kv + ?Sized>(
    state: &K,
    rules: Rules,
    signer: &Key,
    request: &Request,
) -> Result<Option<IdempotencyEntry>, Fault> {
    match rules {
        Rules::V1 => state.idempotency(&signer.key_id, &request.idempotency_key),
        _ => state.org_idempotency(&signer.org_id, &request.idempotency_key),
    }
}

/// Remembers the request's idempotency key. The org-scoped entry is written
/// under every rules version (the first record wins), so a ledger upgraded to
/// rules 2 still answers retries of requests accepted under rules 1; the
/// key-scoped entry only under rules 1, which reads it.
fn remember<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    rules: Rules,
    key_id: &str,
    org_id: &str,
    request: &Request,
    entry: &IdempotencyEntry,
) -> Result<(), Fault> {
    let org_key = key::org_idempotency(org_id, &request.idempotency_key);
    if rules == Rules::V1 {
        txn.put(key::idempotency(key_id, &request.idempotency_key), entry);
        // Under rules 1 another key of the org may have taken the org entry.
        if txn.get(&org_key)?.is_some() {
            return Ok(());
        }
    }
    // From rules 2 on, `idempotency_entry` found the org entry free already
    // (and genesis starts from an empty state): no second read.
    txn.put(org_key, entry);
    Ok(())
}

/// The signing window: an admission rule, so only when `ctx` asks for it.
fn check_skew(ctx: &Context, request: &Request) -> Result<(), Rejection> {
    let Some(skew_ms_max) = ctx.skew_ms_max else {
        return Ok(());
    };
    let skew_ms = ctx.commit_time_ms.abs_diff(request.signed_at_ms);
    if skew_ms > skew_ms_max {
        return Err(Rejection::invalid(
            "signed_at_ms",
            format!(
                "the request was signed {} seconds away from the server's clock (at most {} allowed); check the signing computer's clock and sign again",
                skew_ms / 1000,
                skew_ms_max / 1000
            ),
        ));
    }
    Ok(())
}

/// Indexes every record by signer org, kind and document number.
fn index_record<K: Kv + ?Sized>(txn: &mut Txn<K>, seq: u64, org_id: &str, body: &Body) {
    txn.put_raw(key::org_entry(org_id, seq), Vec::new());
    txn.put_raw(key::kind_entry(body.kind().name(), seq), Vec::new());
    if let Some(document_no) = document_no(body) {
        txn.put_raw(key::document_entry(document_no, seq), Vec::new());
    }
}

/// The authorising document a record cites, if it cites one.
pub fn document_no(body: &Body) -> Option<&str> {
    match body {
        Body::Appropriation(a) => Some(&a.document_no),
        Body::Transfer(t) => Some(&t.document_no),
        Body::Disbursement(d) => Some(&d.document_no),
        Body::Reversal(r) => Some(&r.document_no),
        Body::Consolidation(c) => Some(&c.plan_document_no),
        Body::AnnounceProject(a) => Some(&a.document_no),
        Body::Allocation(a) => Some(&a.document_no),
        Body::SetHouseholdStatus(s) => Some(&s.document_no),
        Body::SetMonitoring(m) => Some(&m.document_no),
        Body::Return(r) => Some(&r.document_no),
        Body::UpgradeRules(u) => Some(&u.document_no),
        Body::ConfirmCredit(c) => Some(&c.document_no),
        Body::SetProgrammeRules(r) => Some(&r.document_no),
        Body::EvaluateProject(e) => Some(&e.document_no),
        Body::DeclareImportWindow(w) => Some(&w.document_no),
        Body::DeclarePairing(p) => Some(&p.document_no),
        Body::IssueQuota(q) => Some(&q.document_no),
        _ => None,
    }
}

/// The record's business date: the commit day unless the request names one.
/// Never after the commit day; before it only for imported records, for
/// household status changes (a finding about the past, made today), for
/// bank credit confirmations and for programme rules adopted from a date.
fn value_day(ctx: &Context, request: &Request) -> Result<Day, Rejection> {
    let commit_day = crate::dates::day_of_ms(ctx.commit_time_ms);
    let Some(day) = request.value_date else {
        return Ok(commit_day);
    };
    if day > commit_day {
        return Err(Rejection::invalid(
            "value_date",
            format!(
                "the value date {} is after today ({}); a record cannot be dated in the future",
                crate::dates::format_date(day),
                crate::dates::format_date(commit_day)
            ),
        ));
    }
    // A bank's credit is confirmed from its result file, days later.
    let backdating_allowed = request.imported
        || matches!(
            request.body,
            Body::SetHouseholdStatus(_)
                | Body::SetMonitoring(_)
                | Body::ConfirmCredit(_)
                | Body::SetProgrammeRules(_)
        );
    if day < commit_day && !backdating_allowed {
        return Err(Rejection::invalid(
            "value_date",
            format!(
                "the value date {} is before today ({}); only records imported from an earlier system may carry past dates",
                crate::dates::format_date(day),
                crate::dates::format_date(commit_day)
            ),
        ));
    }
    Ok(day)
}

/// Rules 6: a record marked imported needs an import window declared for
/// its signer's org that is open on the commit day.
fn check_import_window<K: Kv + ?Sized>(state: &K, org: &Org, commit_day: Day) -> Result<(), Error> {
    match state.import_window(&org.org_id)? {
        Some(window) if window.until_day >= commit_day => Ok(()),
        Some(window) => Err(Rejection::precondition(
            "imported",
            format!(
                "the import window of {} closed on {} (record {}); records imported from an earlier system need an open window, declared by the root org or {}'s parent",
                org.org_id,
                crate::dates::format_date(window.until_day),
                window.seq,
                org.org_id
            ),
        )
        .into()),
        None => Err(Rejection::precondition(
            "imported",
            format!(
                "{} has no import window; records imported from an earlier system need one, declared by the root org or {}'s parent (DeclareImportWindow)",
                org.org_id, org.org_id
            ),
        )
        .into()),
    }
}

/// The signing key, if it is registered and the signature is its.
fn authenticate<K: Kv + ?Sized>(state: &K, ctx: &Context) -> Result<Key, Error> {
    let key = state.key(ctx.key_id)?.ok_or_else(|| {
        Rejection::unauthenticated(
            "key_id",
            format!("key {:?} is not registered in this ledger", ctx.key_id),
        )
    })?;
    if ctx.verified_public_key != Some(key.public_key) {
        signing::verify(&key.public_key, ctx.payload, ctx.signature)?;
    }
    Ok(key)
}
