//! The rules: whether a signed request may become record `seq`, and what it
//! changes. Run by the single sequencer in log order, and again by replay.

use std::collections::BTreeMap;

use crate::dates::Day;
use crate::limits::ACCOUNT_SOURCES_MAX;
use crate::model::*;
use crate::money::Fen;
use crate::state::{key, Kv, StateRead, Txn};
use crate::{signing, validate, Code, Rejection};

/// Keys one org may have registered over its life.
pub const ORG_KEYS_MAX: usize = 64;

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
    Accepted {
        effects: Effects,
        writes: crate::state::Writes,
    },
    /// A retry of the request already recorded as this seq.
    Duplicate { seq: u64 },
}

/// Decides request `request` signed as in `ctx` against `state`.
pub fn apply<K: Kv + ?Sized>(
    state: &K,
    ctx: &Context,
    request: &Request,
) -> Result<Outcome, Rejection> {
    validate::request(request)?;
    let payload_sha256 = signing::sha256(ctx.payload);
    let mut txn = Txn::new(state);
    if let Body::Genesis(genesis) = &request.body {
        let effects = apply_genesis(&mut txn, ctx, request, genesis)?;
        txn.put(
            key::idempotency(ctx.key_id, &request.idempotency_key),
            &IdempotencyEntry {
                seq: ctx.seq,
                payload_sha256,
            },
        );
        index_record(&mut txn, ctx.seq, &effects.signer_org_id, &request.body);
        return Ok(Outcome::Accepted {
            effects,
            writes: txn.into_writes(),
        });
    }

    let ledger = state
        .ledger()?
        .ok_or_else(|| Rejection::unavailable("this ledger has no genesis record yet"))?;
    if request.ledger_id != ledger.ledger_id {
        return Err(Rejection::invalid(
            "ledger_id",
            format!(
                "the request was signed for ledger {:?}, but this is ledger {:?}",
                request.ledger_id, ledger.ledger_id
            ),
        ));
    }
    let signer = authenticate(state, ctx)?;

    if let Some(first) = state.idempotency(ctx.key_id, &request.idempotency_key)? {
        if first.payload_sha256 == payload_sha256 {
            return Ok(Outcome::Duplicate { seq: first.seq });
        }
        return Err(Rejection::exists(
            "idempotency_key",
            format!(
                "idempotency key {:?} was already used by this key for a different request (record {}); use a new key for a new request",
                request.idempotency_key, first.seq
            ),
        ));
    }
    if let Some(revoked_seq) = signer.revoked_seq {
        return Err(Rejection::unauthenticated(
            "key_id",
            format!(
                "key {} was revoked by record {revoked_seq} and may no longer sign",
                signer.key_id
            ),
        ));
    }
    if let Some(skew_ms_max) = ctx.skew_ms_max {
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
    }
    let org = state.org(&signer.org_id)?.ok_or_else(|| {
        Rejection::unavailable(format!(
            "derived state lacks org {} of key {}",
            signer.org_id, signer.key_id
        ))
    })?;
    let day = value_day(ctx, request)?;

    let mut effects = Effects {
        signer_org_id: org.org_id.clone(),
        value_day: day,
        ..Effects::default()
    };
    let mut m = Mover {
        txn: &mut txn,
        seq: ctx.seq,
        day,
        legs: Vec::new(),
    };
    match &request.body {
        Body::Genesis(_) => unreachable!("handled above"),
        Body::RegisterOrg(r) => register_org(m.txn, ctx, &org, r, &mut effects)?,
        Body::AddKey(a) => add_key(m.txn, ctx, &org, a, &mut effects)?,
        Body::RevokeKey(r) => revoke_key(m.txn, ctx, &org, r)?,
        Body::OpenAccount(o) => open_account(m.txn, ctx, &org, o)?,
        Body::RegisterProject(r) => register_project(m.txn, ctx, &org, r)?,
        Body::AnnounceProject(a) => announce_project(m.txn, ctx, &org, a)?,
        Body::RegisterHousehold(r) => register_household(m.txn, ctx, &org, r)?,
        Body::SetHouseholdStatus(s) => set_household_status(m.txn, ctx, &org, s, day)?,
        Body::Appropriation(a) => appropriation(&mut m, &org, a)?,
        Body::Transfer(t) => {
            let from = debit_account(m.txn, &org, "transfer.from_account_id", &t.from_account_id)?;
            let to = credit_account(m.txn, "transfer.to_account_id", &t.to_account_id)?;
            match to.kind {
                AccountKind::Household => {
                    return Err(Rejection::precondition(
                        "transfer.to_account_id",
                        format!("{} is a household account; pay households with a Disbursement", to.account_id),
                    ))
                }
                AccountKind::Project => {
                    return Err(Rejection::precondition(
                        "transfer.to_account_id",
                        format!("{} is a library project; fund projects with an Allocation from the county pool", to.account_id),
                    ))
                }
                _ => {}
            }
            m.move_money(from, to, t.amount, &t.sources, "transfer.sources")?;
        }
        Body::Consolidation(c) => {
            let from = debit_account(
                m.txn,
                &org,
                "consolidation.from_account_id",
                &c.from_account_id,
            )?;
            if from.kind != AccountKind::Programme {
                return Err(Rejection::precondition(
                    "consolidation.from_account_id",
                    format!(
                        "consolidation takes programme money; {} is a {:?} account",
                        from.account_id, from.kind
                    ),
                ));
            }
            let to = credit_account(m.txn, "consolidation.pool_account_id", &c.pool_account_id)?;
            if to.kind != AccountKind::Pool || to.owner_org_id != org.org_id {
                return Err(Rejection::precondition(
                    "consolidation.pool_account_id",
                    format!(
                        "{} is not a consolidated pool of {}",
                        to.account_id, org.org_id
                    ),
                ));
            }
            m.move_money(from, to, c.amount, &c.sources, "consolidation.sources")?;
        }
        Body::Allocation(a) => {
            let from = debit_account(
                m.txn,
                &org,
                "allocation.pool_account_id",
                &a.pool_account_id,
            )?;
            if from.kind != AccountKind::Pool {
                return Err(Rejection::precondition(
                    "allocation.pool_account_id",
                    format!("allocations come from the county's consolidated pool; {} is a {:?} account", from.account_id, from.kind),
                ));
            }
            let to = credit_account(
                m.txn,
                "allocation.project_account_id",
                &a.project_account_id,
            )?;
            let field = "allocation.project_account_id";
            let mut project = m.txn.project(&to.account_id)?.ok_or_else(|| {
                Rejection::precondition(
                    field,
                    format!("{} is not in a county project library", to.account_id),
                )
            })?;
            if project.owner_org_id != org.org_id {
                return Err(Rejection::precondition(
                    field,
                    format!(
                        "project {} is in the library of {}, not of {}",
                        project.account_id, project.owner_org_id, org.org_id
                    ),
                ));
            }
            if project.performance_targets.is_empty() {
                return Err(Rejection::precondition(
                    field,
                    format!(
                        "project {} has no performance target (绩效目标) and may not receive money",
                        project.account_id
                    ),
                ));
            }
            let allocated = project.allocated.checked_add(a.amount).filter(|total| *total <= project.budget).ok_or_else(|| {
                Rejection::precondition(
                    field,
                    format!(
                        "project {} has a budget of {} and has been allocated {}; {} more would exceed it",
                        project.account_id, project.budget, project.allocated, a.amount
                    ),
                )
            })?;
            project.allocated = allocated;
            m.txn
                .put(key::named(key::PROJECT, &project.account_id), &project);
            m.move_money(from, to, a.amount, &a.sources, "allocation.sources")?;
        }
        Body::Disbursement(d) => {
            let from = debit_account(
                m.txn,
                &org,
                "disbursement.from_account_id",
                &d.from_account_id,
            )?;
            let to = credit_account(
                m.txn,
                "disbursement.household_account_id",
                &d.household_account_id,
            )?;
            let field = "disbursement.household_account_id";
            let mut household = m.txn.household(&to.account_id)?.ok_or_else(|| {
                Rejection::precondition(
                    field,
                    format!("{} is not a registered household", to.account_id),
                )
            })?;
            if household.owner_org_id != org.org_id {
                return Err(Rejection::precondition(
                    field,
                    format!(
                        "household {} is registered with {}, not with {}; only the county that registered a household pays it",
                        to.account_id, household.owner_org_id, org.org_id
                    ),
                ));
            }
            if household.status_on(day) == HouseholdStatus::Ineligible {
                return Err(Rejection::precondition(
                    field,
                    format!(
                        "household {} is not eligible on {}",
                        to.account_id,
                        crate::dates::format_date(day)
                    ),
                ));
            }
            household.payments.push(HouseholdPayment {
                seq: ctx.seq,
                day,
                amount: d.amount,
                programme_code: d.programme_code.clone(),
                period: d.period.clone(),
                reversed: false,
            });
            m.txn.put(
                key::named(key::HOUSEHOLD, &household.account_id),
                &household,
            );
            m.move_money(from, to, d.amount, &d.sources, "disbursement.sources")?;
        }
        Body::Return(r) => {
            let from = return_account(m.txn, &org, "return.from_account_id", &r.from_account_id)?;
            let to = credit_account(m.txn, "return.to_account_id", &r.to_account_id)?;
            if matches!(to.kind, AccountKind::Household | AccountKind::Project) {
                return Err(Rejection::precondition(
                    "return.to_account_id",
                    format!("money is returned to a treasury, programme or pool account; {} is a {:?} account", to.account_id, to.kind),
                ));
            }
            m.move_money(from, to, r.amount, &r.sources, "return.sources")?;
        }
        Body::Reversal(r) => reversal(&mut m, &org, r)?,
    }
    effects.legs = std::mem::take(&mut m.legs);
    txn.put(
        key::idempotency(ctx.key_id, &request.idempotency_key),
        &IdempotencyEntry {
            seq: ctx.seq,
            payload_sha256,
        },
    );
    index_record(&mut txn, ctx.seq, &org.org_id, &request.body);
    if !effects.legs.is_empty() {
        let movement = Movement {
            seq: ctx.seq,
            kind: request.body.kind().to_string(),
            value_day: day,
            signer_org_id: org.org_id.clone(),
            legs: effects.legs.clone(),
            is_reversal: matches!(request.body, Body::Reversal(_)),
            reversed_by: None,
        };
        txn.put(key::seq(key::MOVEMENT, ctx.seq), &movement);
        for leg in &effects.legs {
            for account_id in [&leg.from_account_id, &leg.to_account_id]
                .into_iter()
                .flatten()
            {
                txn.put_raw(key::account_entry(account_id, ctx.seq), Vec::new());
            }
            txn.put_raw(key::source_entry(leg.source_seq, ctx.seq), Vec::new());
            if let (Some(from), Some(arrival)) = (&leg.from_account_id, leg.from_arrival_seq) {
                txn.put_raw(
                    key::lot_spend(from, leg.source_seq, arrival, ctx.seq),
                    Vec::new(),
                );
            }
        }
    }
    Ok(Outcome::Accepted {
        effects,
        writes: txn.into_writes(),
    })
}

/// Indexes every record by signer org, kind and document number.
fn index_record<K: Kv + ?Sized>(txn: &mut Txn<K>, seq: u64, org_id: &str, body: &Body) {
    txn.put_raw(key::org_entry(org_id, seq), Vec::new());
    txn.put_raw(key::kind_entry(body.kind(), seq), Vec::new());
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
        Body::Return(r) => Some(&r.document_no),
        _ => None,
    }
}

/// The record's business date: the commit day unless the request names one.
/// Never after the commit day; before it only for imported records and for
/// household status changes (a finding about the past, made today).
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
    let backdating_allowed =
        request.imported || matches!(request.body, Body::SetHouseholdStatus(_));
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

/// The signing key, if it is registered and the signature is its.
fn authenticate<K: Kv + ?Sized>(state: &K, ctx: &Context) -> Result<Key, Rejection> {
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

fn apply_genesis<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    ctx: &Context,
    request: &Request,
    genesis: &Genesis,
) -> Result<Effects, Rejection> {
    if ctx.seq != 0 || txn.ledger()?.is_some() {
        return Err(Rejection::precondition(
            "genesis",
            "this ledger already has its genesis record",
        ));
    }
    let root_key = signing::parse_public_key("genesis.root_public_key", &genesis.root_public_key)?;
    signing::parse_public_key("genesis.log_public_key", &genesis.log_public_key)?;
    let key_id = signing::key_id(&root_key);
    if ctx.key_id != key_id {
        return Err(Rejection::unauthenticated(
            "key_id",
            "genesis must be signed by the root org's key",
        ));
    }
    signing::verify(&root_key, ctx.payload, ctx.signature)?;
    txn.put(
        key::LEDGER.to_vec(),
        &LedgerMeta {
            ledger_id: request.ledger_id.clone(),
            root_org_id: genesis.root_org_id.clone(),
            log_public_key: genesis.log_public_key,
        },
    );
    txn.put(
        key::named(key::ORG, &genesis.root_org_id),
        &Org {
            org_id: genesis.root_org_id.clone(),
            name: genesis.root_org_name.clone(),
            role: Role::Administrator,
            division_code: genesis.division_code.clone(),
            parent_org_id: None,
            registered_seq: ctx.seq,
            key_ids: vec![key_id.clone()],
        },
    );
    txn.put(
        key::named(key::KEY, &key_id),
        &Key {
            key_id: key_id.clone(),
            org_id: genesis.root_org_id.clone(),
            public_key: root_key,
            added_seq: ctx.seq,
            revoked_seq: None,
        },
    );
    Ok(Effects {
        value_day: crate::dates::day_of_ms(ctx.commit_time_ms),
        signer_org_id: genesis.root_org_id.clone(),
        legs: Vec::new(),
        registered_key_id: Some(key_id),
    })
}

/// Registers `public_key` for `org`, refusing a key already in the ledger.
fn register_key<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    ctx: &Context,
    org: &mut Org,
    field: &str,
    public_key: &[u8; 32],
) -> Result<String, Rejection> {
    let public_key = signing::parse_public_key(field, public_key)?;
    let key_id = signing::key_id(&public_key);
    if txn.key(&key_id)?.is_some() {
        return Err(Rejection::exists(
            field,
            format!("this public key is already registered (key {key_id}); generate a new key"),
        ));
    }
    if org.key_ids.len() >= ORG_KEYS_MAX {
        return Err(Rejection::new(
            Code::ResourceExhausted,
            field,
            format!(
                "org {} already has {ORG_KEYS_MAX} keys, the most one org may register",
                org.org_id
            ),
        ));
    }
    org.key_ids.push(key_id.clone());
    txn.put(
        key::named(key::KEY, &key_id),
        &Key {
            key_id: key_id.clone(),
            org_id: org.org_id.clone(),
            public_key,
            added_seq: ctx.seq,
            revoked_seq: None,
        },
    );
    Ok(key_id)
}

fn register_org<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    ctx: &Context,
    signer_org: &Org,
    r: &RegisterOrg,
    effects: &mut Effects,
) -> Result<(), Rejection> {
    if !signer_org.role.handles_money() {
        return Err(Rejection::denied(
            "key_id",
            format!(
                "{} is an {:?} org and may not register orgs",
                signer_org.org_id, signer_org.role
            ),
        ));
    }
    if txn.org(&r.org_id)?.is_some() {
        return Err(Rejection::exists(
            "register_org.org_id",
            format!("org id {:?} is already registered", r.org_id),
        ));
    }
    let mut org = Org {
        org_id: r.org_id.clone(),
        name: r.name.clone(),
        role: r.role,
        division_code: r.division_code.clone(),
        parent_org_id: Some(signer_org.org_id.clone()),
        registered_seq: ctx.seq,
        key_ids: Vec::new(),
    };
    let key_id = register_key(txn, ctx, &mut org, "register_org.public_key", &r.public_key)?;
    txn.put(key::named(key::ORG, &org.org_id), &org);
    effects.registered_key_id = Some(key_id);
    Ok(())
}

/// Whether `signer_org` may manage the keys of `target`: its own, or a child's.
fn manages(signer_org: &Org, target: &Org) -> bool {
    signer_org.org_id == target.org_id
        || target.parent_org_id.as_deref() == Some(signer_org.org_id.as_str())
}

fn add_key<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    ctx: &Context,
    signer_org: &Org,
    a: &AddKey,
    effects: &mut Effects,
) -> Result<(), Rejection> {
    let mut target = txn.org(&a.org_id)?.ok_or_else(|| {
        Rejection::not_found(
            "add_key.org_id",
            format!("org {:?} is not registered", a.org_id),
        )
    })?;
    if !manages(signer_org, &target) {
        return Err(Rejection::denied(
            "add_key.org_id",
            format!(
                "{} may only add keys to itself or to orgs it registered, not to {}",
                signer_org.org_id, target.org_id
            ),
        ));
    }
    let key_id = register_key(txn, ctx, &mut target, "add_key.public_key", &a.public_key)?;
    txn.put(key::named(key::ORG, &target.org_id), &target);
    effects.registered_key_id = Some(key_id);
    Ok(())
}

fn revoke_key<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    ctx: &Context,
    signer_org: &Org,
    r: &RevokeKey,
) -> Result<(), Rejection> {
    let mut key = txn.key(&r.key_id)?.ok_or_else(|| {
        Rejection::not_found(
            "revoke_key.key_id",
            format!("key {:?} is not registered", r.key_id),
        )
    })?;
    let owner = txn
        .org(&key.org_id)?
        .ok_or_else(|| Rejection::unavailable(format!("derived state lacks org {}", key.org_id)))?;
    if !manages(signer_org, &owner) {
        return Err(Rejection::denied(
            "revoke_key.key_id",
            format!("{} may only revoke its own keys or those of orgs it registered; key {} belongs to {}", signer_org.org_id, key.key_id, owner.org_id),
        ));
    }
    if let Some(revoked_seq) = key.revoked_seq {
        return Err(Rejection::precondition(
            "revoke_key.key_id",
            format!(
                "key {} was already revoked by record {revoked_seq}",
                key.key_id
            ),
        ));
    }
    key.revoked_seq = Some(ctx.seq);
    txn.put(key::named(key::KEY, &key.key_id), &key);
    Ok(())
}

/// Checks that `org` may hold accounts and that `account_id` is free.
fn new_account<K: Kv + ?Sized>(
    txn: &Txn<K>,
    ctx: &Context,
    org: &Org,
    field: &str,
    account_id: &str,
    kind: AccountKind,
    name: &str,
) -> Result<Account, Rejection> {
    if !org.role.handles_money() {
        return Err(Rejection::denied(
            "key_id",
            format!(
                "{} is an {:?} org and may not hold accounts",
                org.org_id, org.role
            ),
        ));
    }
    if txn.account(account_id)?.is_some() {
        return Err(Rejection::exists(
            field,
            format!("account id {account_id:?} is already taken"),
        ));
    }
    Ok(Account {
        account_id: account_id.to_string(),
        owner_org_id: org.org_id.clone(),
        kind,
        name: name.to_string(),
        programme_code: String::new(),
        household_ref: String::new(),
        division_code: org.division_code.clone(),
        opened_seq: ctx.seq,
        balances: BTreeMap::new(),
    })
}

fn open_account<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    ctx: &Context,
    org: &Org,
    o: &OpenAccount,
) -> Result<(), Rejection> {
    let field = "open_account.kind";
    match o.kind {
        AccountKind::Project => {
            return Err(Rejection::invalid(
                field,
                "project accounts are opened by RegisterProject, with the project's library entry",
            ))
        }
        AccountKind::Household => {
            return Err(Rejection::invalid(
                field,
                "household accounts are opened by RegisterHousehold",
            ))
        }
        _ => {}
    }
    let mut account = new_account(
        txn,
        ctx,
        org,
        "open_account.account_id",
        &o.account_id,
        o.kind,
        &o.name,
    )?;
    account.programme_code = o.programme_code.clone();
    txn.put(key::named(key::ACCOUNT, &account.account_id), &account);
    Ok(())
}

fn register_project<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    ctx: &Context,
    org: &Org,
    r: &RegisterProject,
) -> Result<(), Rejection> {
    let account = new_account(
        txn,
        ctx,
        org,
        "register_project.account_id",
        &r.account_id,
        AccountKind::Project,
        &r.name,
    )?;
    let project = Project {
        account_id: r.account_id.clone(),
        owner_org_id: org.org_id.clone(),
        name: r.name.clone(),
        category: r.category.clone(),
        location_code: r.location_code.clone(),
        budget: r.budget,
        performance_targets: r.performance_targets.clone(),
        responsible_unit: r.responsible_unit.clone(),
        fiscal_year: r.fiscal_year,
        registered_seq: ctx.seq,
        allocated: Fen::ZERO,
        announced_seq: None,
        announcement_document_no: String::new(),
    };
    txn.put(key::named(key::ACCOUNT, &account.account_id), &account);
    txn.put(key::named(key::PROJECT, &project.account_id), &project);
    Ok(())
}

fn announce_project<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    ctx: &Context,
    org: &Org,
    a: &AnnounceProject,
) -> Result<(), Rejection> {
    let field = "announce_project.account_id";
    let mut project = txn.project(&a.account_id)?.ok_or_else(|| {
        Rejection::not_found(
            field,
            format!("project {:?} is not in any project library", a.account_id),
        )
    })?;
    if project.owner_org_id != org.org_id {
        return Err(Rejection::denied(
            field,
            format!(
                "project {} belongs to {}",
                project.account_id, project.owner_org_id
            ),
        ));
    }
    if let Some(seq) = project.announced_seq {
        return Err(Rejection::precondition(
            field,
            format!(
                "project {} was already announced by record {seq}",
                project.account_id
            ),
        ));
    }
    project.announced_seq = Some(ctx.seq);
    project.announcement_document_no = a.document_no.clone();
    txn.put(key::named(key::PROJECT, &project.account_id), &project);
    Ok(())
}

fn register_household<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    ctx: &Context,
    org: &Org,
    r: &RegisterHousehold,
) -> Result<(), Rejection> {
    let mut account = new_account(
        txn,
        ctx,
        org,
        "register_household.account_id",
        &r.account_id,
        AccountKind::Household,
        "建档立卡户",
    )?;
    account.household_ref = r.household_ref.clone();
    let household = Household {
        account_id: r.account_id.clone(),
        owner_org_id: org.org_id.clone(),
        household_ref: r.household_ref.clone(),
        village_code: r.village_code.clone(),
        basis: r.basis,
        members: r.members,
        registered_seq: ctx.seq,
        statuses: Vec::new(),
        payments: Vec::new(),
    };
    txn.put(key::named(key::ACCOUNT, &account.account_id), &account);
    txn.put(
        key::named(key::HOUSEHOLD, &household.account_id),
        &household,
    );
    Ok(())
}

fn set_household_status<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    ctx: &Context,
    org: &Org,
    s: &SetHouseholdStatus,
    day: Day,
) -> Result<(), Rejection> {
    let field = "set_household_status.account_id";
    let mut household = txn.household(&s.account_id)?.ok_or_else(|| {
        Rejection::not_found(
            field,
            format!("{:?} is not a registered household", s.account_id),
        )
    })?;
    if household.owner_org_id != org.org_id {
        return Err(Rejection::denied(
            field,
            format!(
                "household {} is registered with {}; only that county may change its status",
                household.account_id, household.owner_org_id
            ),
        ));
    }
    if household.statuses.len() >= HOUSEHOLD_STATUS_CHANGES_MAX {
        return Err(Rejection::new(
            Code::ResourceExhausted,
            field,
            format!(
                "household {} already has {HOUSEHOLD_STATUS_CHANGES_MAX} status changes",
                household.account_id
            ),
        ));
    }
    household.statuses.push((day, s.status, ctx.seq));
    txn.put(
        key::named(key::HOUSEHOLD, &household.account_id),
        &household,
    );
    Ok(())
}

/// Status changes one household may have.
pub const HOUSEHOLD_STATUS_CHANGES_MAX: usize = 64;

/// The account `org` wants to debit: it must exist, be `org`'s own, and not
/// be a household account (households are final recipients).
fn debit_account<K: Kv + ?Sized>(
    txn: &Txn<K>,
    org: &Org,
    field: &str,
    account_id: &str,
) -> Result<Account, Rejection> {
    let account = return_account(txn, org, field, account_id)?;
    if account.kind == AccountKind::Household {
        return Err(Rejection::precondition(
            field,
            format!("{account_id} is a household account; money paid to a household can only come back by a Return or by reversing the payment"),
        ));
    }
    Ok(account)
}

/// The account `org` sends money back from: its own, household ones included.
fn return_account<K: Kv + ?Sized>(
    txn: &Txn<K>,
    org: &Org,
    field: &str,
    account_id: &str,
) -> Result<Account, Rejection> {
    let account = txn.account(account_id)?.ok_or_else(|| {
        Rejection::not_found(field, format!("account {account_id:?} does not exist"))
    })?;
    if account.owner_org_id != org.org_id {
        return Err(Rejection::denied(
            field,
            format!(
                "account {account_id} belongs to {}; a key of {} may not pay out of it",
                account.owner_org_id, org.org_id
            ),
        ));
    }
    Ok(account)
}

fn credit_account<K: Kv + ?Sized>(
    txn: &Txn<K>,
    field: &str,
    account_id: &str,
) -> Result<Account, Rejection> {
    txn.account(account_id)?.ok_or_else(|| {
        Rejection::not_found(field, format!("account {account_id:?} does not exist"))
    })
}

/// Lots read per scan while picking.
const LOT_SCAN_CHUNK: usize = 256;

/// Which lots pay `amount` out of `account` on `day`: of the named sources
/// when earmarks are given, otherwise of any source; within that, oldest
/// first (earliest arrival date, then earliest arrival record), which is
/// deterministic and spends money in the order it arrived. Money that
/// arrived after `day` cannot pay on `day`. Returns (lot, its arrival day,
/// amount taken from it).
pub fn pick_lots<K: Kv + ?Sized>(
    txn: &Txn<K>,
    account: &Account,
    amount: Fen,
    earmarks: &[Earmark],
    day: Day,
    field: &str,
) -> Result<Vec<(LotKey, Day, Fen)>, Rejection> {
    let wants: Vec<(Option<u64>, Fen)> = if earmarks.is_empty() {
        vec![(None, amount)]
    } else {
        earmarks
            .iter()
            .map(|e| (Some(e.source_seq), e.amount))
            .collect()
    };
    let prefix = key::lots(&account.account_id);
    let mut picked = Vec::new();
    for (source, want) in wants {
        let mut left = want;
        let mut start = prefix.clone();
        'scan: loop {
            let rows = txn.scan(&prefix, &start, LOT_SCAN_CHUNK)?;
            for (row, value) in &rows {
                let (lot_day, arrival_seq, source_seq) = key::parse_lot(&account.account_id, row)
                    .ok_or_else(|| {
                    Rejection::unavailable(format!(
                        "a lot key of account {} is corrupt",
                        account.account_id
                    ))
                })?;
                if lot_day > day {
                    break 'scan;
                }
                if source.is_some_and(|s| s != source_seq) {
                    continue;
                }
                let held: Fen = crate::state::decode(value)?;
                let take = held.min(left);
                picked.push((
                    LotKey {
                        source_seq,
                        arrival_seq,
                    },
                    lot_day,
                    take,
                ));
                left = Fen(left.0 - take.0);
                if left == Fen::ZERO {
                    break 'scan;
                }
            }
            match rows.last() {
                Some((last, _)) if rows.len() == LOT_SCAN_CHUNK => {
                    start = last.clone();
                    start.push(0);
                }
                _ => break,
            }
        }
        if left != Fen::ZERO {
            let held = match source {
                Some(s) => account.balance_of(s),
                None => account.balance(),
            };
            let what = source
                .map(|s| format!(" of source {s}"))
                .unwrap_or_default();
            let later = if held >= u128::from(want.0) {
                format!(
                    "; part of it arrived after {}",
                    crate::dates::format_date(day)
                )
            } else {
                String::new()
            };
            return Err(Rejection::precondition(
                field,
                format!(
                    "insufficient funds: account {} holds {}{what}, the request needs {want}{later}",
                    account.account_id,
                    Fen(u64::try_from(held).unwrap_or(u64::MAX))
                ),
            ));
        }
    }
    Ok(picked)
}

/// Adds `amount` to a lot of `account` (creating it) and to its balances.
fn add_lot<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    account: &mut Account,
    lot: LotKey,
    amount: Fen,
    arrival_day: Day,
    field: &str,
) -> Result<(), Rejection> {
    let overflow = || {
        Rejection::invalid(
            field,
            format!(
                "the balance of account {} would overflow",
                account.account_id
            ),
        )
    };
    let lot_key = key::lot(
        &account.account_id,
        arrival_day,
        lot.arrival_seq,
        lot.source_seq,
    );
    let held: Fen = txn.read(&lot_key)?.unwrap_or(Fen::ZERO);
    let held = held.checked_add(amount).ok_or_else(overflow)?;
    txn.put(lot_key, &held);
    let balance = account.balances.entry(lot.source_seq).or_insert(Fen::ZERO);
    *balance = balance.checked_add(amount).ok_or_else(overflow)?;
    if account.balances.len() > ACCOUNT_SOURCES_MAX {
        return Err(Rejection::new(
            Code::ResourceExhausted,
            field,
            format!(
                "account {} would hold money of more than {ACCOUNT_SOURCES_MAX} sources",
                account.account_id
            ),
        ));
    }
    Ok(())
}

/// Takes `amount` out of a lot of `account` and out of its balances.
fn take_lot<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    account: &mut Account,
    lot: LotKey,
    arrival_day: Day,
    amount: Fen,
    field: &str,
) -> Result<(), Rejection> {
    let lot_key = key::lot(
        &account.account_id,
        arrival_day,
        lot.arrival_seq,
        lot.source_seq,
    );
    let held: Fen = txn.read(&lot_key)?.unwrap_or(Fen::ZERO);
    let left = held.checked_sub(amount).ok_or_else(|| {
        Rejection::precondition(
            field,
            format!(
                "account {} holds {held} of lot {}/{}, less than {amount}",
                account.account_id, lot.source_seq, lot.arrival_seq
            ),
        )
    })?;
    if left == Fen::ZERO {
        txn.delete(lot_key);
    } else {
        txn.put(lot_key, &left);
    }
    let balance = account
        .balances
        .get(&lot.source_seq)
        .copied()
        .unwrap_or(Fen::ZERO);
    let balance = balance
        .checked_sub(amount)
        .expect("an account's balance covers each of its lots");
    if balance == Fen::ZERO {
        account.balances.remove(&lot.source_seq);
    } else {
        account.balances.insert(lot.source_seq, balance);
    }
    Ok(())
}

/// Moves money for one record: picks lots, writes accounts, collects legs.
struct Mover<'t, 'a, K: Kv + ?Sized> {
    txn: &'t mut Txn<'a, K>,
    seq: u64,
    day: Day,
    legs: Vec<Leg>,
}

impl<K: Kv + ?Sized> Mover<'_, '_, K> {
    /// Moves `amount` from `from` to `to`; the money forms new lots at `to`
    /// named by this record, dated by its value date.
    fn move_money(
        &mut self,
        mut from: Account,
        mut to: Account,
        amount: Fen,
        earmarks: &[Earmark],
        field: &str,
    ) -> Result<(), Rejection> {
        let picked = pick_lots(self.txn, &from, amount, earmarks, self.day, field)?;
        let mut moved: u128 = 0;
        for (lot, lot_day, part) in picked {
            take_lot(self.txn, &mut from, lot, lot_day, part, field)?;
            add_lot(
                self.txn,
                &mut to,
                LotKey {
                    source_seq: lot.source_seq,
                    arrival_seq: self.seq,
                },
                part,
                self.day,
                field,
            )?;
            moved += u128::from(part.0);
            self.legs.push(Leg {
                from_account_id: Some(from.account_id.clone()),
                to_account_id: Some(to.account_id.clone()),
                source_seq: lot.source_seq,
                amount: part,
                from_arrival_seq: Some(lot.arrival_seq),
            });
        }
        assert_eq!(
            moved,
            u128::from(amount.0),
            "attribution must cover the amount exactly"
        );
        self.txn
            .put(key::named(key::ACCOUNT, &from.account_id), &from);
        self.txn.put(key::named(key::ACCOUNT, &to.account_id), &to);
        for account in [&from, &to] {
            if account.kind != AccountKind::Household {
                self.txn
                    .put_raw(key::named(key::HOLDER, &account.account_id), Vec::new());
            }
        }
        Ok(())
    }
}

fn appropriation<K: Kv + ?Sized>(
    m: &mut Mover<K>,
    org: &Org,
    a: &Appropriation,
) -> Result<(), Rejection> {
    if !org.role.handles_money() {
        return Err(Rejection::denied(
            "key_id",
            format!(
                "{} is an {:?} org and may not appropriate funds",
                org.org_id, org.role
            ),
        ));
    }
    let field = "appropriation.account_id";
    let mut account = m.txn.account(&a.account_id)?.ok_or_else(|| {
        Rejection::not_found(field, format!("account {:?} does not exist", a.account_id))
    })?;
    if account.owner_org_id != org.org_id {
        return Err(Rejection::denied(
            field,
            format!(
                "account {} belongs to {}; {} may only appropriate into its own accounts",
                account.account_id, account.owner_org_id, org.org_id
            ),
        ));
    }
    if !matches!(account.kind, AccountKind::Treasury | AccountKind::Programme) {
        return Err(Rejection::precondition(
            field,
            format!(
                "appropriations go into a treasury or programme account; {} is a {:?} account",
                account.account_id, account.kind
            ),
        ));
    }
    add_lot(
        m.txn,
        &mut account,
        LotKey {
            source_seq: m.seq,
            arrival_seq: m.seq,
        },
        a.amount,
        m.day,
        field,
    )?;
    m.txn
        .put(key::named(key::ACCOUNT, &account.account_id), &account);
    m.txn
        .put_raw(key::named(key::HOLDER, &account.account_id), Vec::new());
    m.txn.put(
        key::seq(key::SOURCE, m.seq),
        &Source {
            source_seq: m.seq,
            account_id: account.account_id.clone(),
            amount: a.amount,
            withdrawn: Fen::ZERO,
            appropriated_day: m.day,
            programme_code: a.programme_code.clone(),
            fiscal_year: a.fiscal_year,
            document_no: a.document_no.clone(),
        },
    );
    m.legs.push(Leg {
        from_account_id: None,
        to_account_id: Some(account.account_id),
        source_seq: m.seq,
        amount: a.amount,
        from_arrival_seq: None,
    });
    Ok(())
}

fn reversal<K: Kv + ?Sized>(m: &mut Mover<K>, org: &Org, r: &Reversal) -> Result<(), Rejection> {
    let field = "reversal.target_seq";
    if r.target_seq >= m.seq {
        return Err(Rejection::not_found(
            field,
            format!("record {} does not exist yet", r.target_seq),
        ));
    }
    let mut target = m.txn.movement(r.target_seq)?.ok_or_else(|| {
        Rejection::precondition(
            field,
            format!(
                "record {} did not move money, so there is nothing to reverse",
                r.target_seq
            ),
        )
    })?;
    if target.is_reversal {
        return Err(Rejection::precondition(
            field,
            format!(
                "record {} is itself a reversal; post the movement again instead",
                r.target_seq
            ),
        ));
    }
    if let Some(by) = target.reversed_by {
        return Err(Rejection::precondition(
            field,
            format!(
                "record {} was already reversed by record {by}",
                r.target_seq
            ),
        ));
    }
    if m.day < target.value_day {
        return Err(Rejection::precondition(
            "value_date",
            format!(
                "a reversal cannot be dated before the record it reverses ({})",
                crate::dates::format_date(target.value_day)
            ),
        ));
    }
    // Undo legs last-first: take each back out of the lot the original made
    // and return it to the lot it came from, with that lot's arrival date.
    let mut accounts: BTreeMap<String, Account> = BTreeMap::new();
    for leg in target.legs.iter().rev() {
        let Some(debited_id) = &leg.to_account_id else {
            return Err(Rejection::precondition(
                field,
                format!(
                    "record {} took money out of the ledger and cannot be reversed",
                    r.target_seq
                ),
            ));
        };
        if !accounts.contains_key(debited_id) {
            let account = credit_account(m.txn, field, debited_id)?;
            if account.owner_org_id != org.org_id {
                return Err(Rejection::denied(
                    field,
                    format!("reversing record {} takes money out of account {debited_id}, which belongs to {}; a key of {} may not sign it", r.target_seq, account.owner_org_id, org.org_id),
                ));
            }
            accounts.insert(debited_id.clone(), account);
        }
        let debited = accounts.get_mut(debited_id).expect("inserted above");
        take_lot(
            m.txn,
            debited,
            LotKey { source_seq: leg.source_seq, arrival_seq: r.target_seq },
            target.value_day,
            leg.amount,
            field,
        )
        .map_err(|_| {
            Rejection::precondition(
                field,
                format!("the money of record {} has moved on from account {debited_id}; reverse the later movements first", r.target_seq),
            )
        })?;
        match (&leg.from_account_id, leg.from_arrival_seq) {
            (Some(credited_id), Some(arrival_seq)) => {
                if !accounts.contains_key(credited_id) {
                    let account = credit_account(m.txn, field, credited_id)?;
                    accounts.insert(credited_id.clone(), account);
                }
                let arrival_day = m
                    .txn
                    .movement(arrival_seq)?
                    .map(|mv| mv.value_day)
                    .unwrap_or(m.day);
                let credited = accounts.get_mut(credited_id).expect("inserted above");
                add_lot(
                    m.txn,
                    credited,
                    LotKey {
                        source_seq: leg.source_seq,
                        arrival_seq,
                    },
                    leg.amount,
                    arrival_day,
                    field,
                )?;
            }
            _ => {
                let mut source = m.txn.source(leg.source_seq)?.ok_or_else(|| {
                    Rejection::unavailable(format!("derived state lacks source {}", leg.source_seq))
                })?;
                source.withdrawn = source
                    .withdrawn
                    .checked_add(leg.amount)
                    .filter(|w| *w <= source.amount)
                    .ok_or_else(|| {
                        Rejection::unavailable(format!(
                            "source {} would be withdrawn beyond its amount",
                            leg.source_seq
                        ))
                    })?;
                m.txn.put(key::seq(key::SOURCE, source.source_seq), &source);
            }
        }
        m.legs.push(Leg {
            from_account_id: leg.to_account_id.clone(),
            to_account_id: leg.from_account_id.clone(),
            source_seq: leg.source_seq,
            amount: leg.amount,
            from_arrival_seq: Some(r.target_seq),
        });
    }
    for account in accounts.values() {
        m.txn
            .put(key::named(key::ACCOUNT, &account.account_id), account);
    }
    // What the reversed record did to the registry is undone as well.
    let amount = Fen(target.legs.iter().map(|l| l.amount.0).sum());
    match target.kind.as_str() {
        "Allocation" => {
            if let Some(project_id) = target.legs.first().and_then(|l| l.to_account_id.clone()) {
                if let Some(mut project) = m.txn.project(&project_id)? {
                    project.allocated = project.allocated.checked_sub(amount).unwrap_or(Fen::ZERO);
                    m.txn.put(key::named(key::PROJECT, &project_id), &project);
                }
            }
        }
        "Disbursement" => {
            if let Some(household_id) = target.legs.first().and_then(|l| l.to_account_id.clone()) {
                if let Some(mut household) = m.txn.household(&household_id)? {
                    for payment in household
                        .payments
                        .iter_mut()
                        .filter(|p| p.seq == target.seq)
                    {
                        payment.reversed = true;
                    }
                    m.txn
                        .put(key::named(key::HOUSEHOLD, &household_id), &household);
                }
            }
        }
        _ => {}
    }
    target.reversed_by = Some(m.seq);
    m.txn.put(key::seq(key::MOVEMENT, target.seq), &target);
    Ok(())
}
