//! The rules: whether a signed request may become record `seq`, and what it
//! changes. Run by the single sequencer in log order, and again by replay.

use std::collections::BTreeMap;

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
        writes: BTreeMap<Vec<u8>, Vec<u8>>,
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

    let mut effects = Effects {
        signer_org_id: org.org_id.clone(),
        ..Effects::default()
    };
    match &request.body {
        Body::Genesis(_) => unreachable!("handled above"),
        Body::RegisterOrg(r) => register_org(&mut txn, ctx, &org, r, &mut effects)?,
        Body::AddKey(a) => add_key(&mut txn, ctx, &org, a, &mut effects)?,
        Body::RevokeKey(r) => revoke_key(&mut txn, ctx, &org, r)?,
        Body::OpenAccount(o) => open_account(&mut txn, ctx, &org, o)?,
        Body::Appropriation(a) => appropriation(&mut txn, ctx, &org, a, &mut effects)?,
        Body::Transfer(t) => {
            let from = debit_account(&txn, &org, "transfer.from_account_id", &t.from_account_id)?;
            let to = credit_account(&txn, "transfer.to_account_id", &t.to_account_id)?;
            if to.kind == AccountKind::Household {
                return Err(Rejection::precondition(
                    "transfer.to_account_id",
                    format!(
                        "{} is a household account; pay households with a Disbursement",
                        to.account_id
                    ),
                ));
            }
            move_money(
                &mut txn,
                from,
                to,
                t.amount,
                &t.sources,
                "transfer.sources",
                &mut effects,
            )?;
        }
        Body::Disbursement(d) => {
            let from = debit_account(
                &txn,
                &org,
                "disbursement.from_account_id",
                &d.from_account_id,
            )?;
            let to = credit_account(
                &txn,
                "disbursement.household_account_id",
                &d.household_account_id,
            )?;
            if to.kind != AccountKind::Household {
                return Err(Rejection::precondition(
                    "disbursement.household_account_id",
                    format!("{} is not a registered household account", to.account_id),
                ));
            }
            if to.owner_org_id != org.org_id {
                return Err(Rejection::precondition(
                    "disbursement.household_account_id",
                    format!(
                        "household {} is registered with {}, not with {}; only the county that registered a household pays it",
                        to.account_id, to.owner_org_id, org.org_id
                    ),
                ));
            }
            move_money(
                &mut txn,
                from,
                to,
                d.amount,
                &d.sources,
                "disbursement.sources",
                &mut effects,
            )?;
        }
        Body::Reversal(r) => reversal(&mut txn, ctx, &org, r, &mut effects)?,
    }
    txn.put(
        key::idempotency(ctx.key_id, &request.idempotency_key),
        &IdempotencyEntry {
            seq: ctx.seq,
            payload_sha256,
        },
    );
    if !effects.legs.is_empty() {
        let movement = Movement {
            seq: ctx.seq,
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
        }
    }
    Ok(Outcome::Accepted {
        effects,
        writes: txn.into_writes(),
    })
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

fn open_account<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    ctx: &Context,
    org: &Org,
    o: &OpenAccount,
) -> Result<(), Rejection> {
    if !org.role.handles_money() {
        return Err(Rejection::denied(
            "key_id",
            format!(
                "{} is an {:?} org and may not hold accounts",
                org.org_id, org.role
            ),
        ));
    }
    if txn.account(&o.account_id)?.is_some() {
        return Err(Rejection::exists(
            "open_account.account_id",
            format!("account id {:?} is already taken", o.account_id),
        ));
    }
    let account = Account {
        account_id: o.account_id.clone(),
        owner_org_id: org.org_id.clone(),
        kind: o.kind,
        name: o.name.clone(),
        programme_code: o.programme_code.clone(),
        household_ref: o.household_ref.clone(),
        division_code: org.division_code.clone(),
        opened_seq: ctx.seq,
        balances: BTreeMap::new(),
    };
    txn.put(key::named(key::ACCOUNT, &account.account_id), &account);
    Ok(())
}

fn appropriation<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    ctx: &Context,
    org: &Org,
    a: &Appropriation,
    effects: &mut Effects,
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
    let mut account = txn.account(&a.account_id)?.ok_or_else(|| {
        Rejection::not_found(
            "appropriation.account_id",
            format!("account {:?} does not exist", a.account_id),
        )
    })?;
    if account.owner_org_id != org.org_id {
        return Err(Rejection::denied(
            "appropriation.account_id",
            format!(
                "account {} belongs to {}; {} may only appropriate into its own accounts",
                account.account_id, account.owner_org_id, org.org_id
            ),
        ));
    }
    if !matches!(account.kind, AccountKind::Treasury | AccountKind::Programme) {
        return Err(Rejection::precondition(
            "appropriation.account_id",
            format!(
                "appropriations go into a treasury or programme account; {} is a {:?} account",
                account.account_id, account.kind
            ),
        ));
    }
    credit(&mut account, ctx.seq, a.amount, "appropriation.account_id")?;
    txn.put(key::named(key::ACCOUNT, &account.account_id), &account);
    txn.put(
        key::seq(key::SOURCE, ctx.seq),
        &Source {
            source_seq: ctx.seq,
            account_id: account.account_id.clone(),
            amount: a.amount,
            withdrawn: Fen::ZERO,
            programme_code: a.programme_code.clone(),
            fiscal_year: a.fiscal_year,
            document_no: a.document_no.clone(),
        },
    );
    effects.legs.push(Leg {
        from_account_id: None,
        to_account_id: Some(account.account_id),
        source_seq: ctx.seq,
        amount: a.amount,
    });
    Ok(())
}

/// The account `org` wants to debit: it must exist, be `org`'s own, and not
/// be a household account (households are final recipients).
fn debit_account<K: Kv + ?Sized>(
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
    if account.kind == AccountKind::Household {
        return Err(Rejection::precondition(
            field,
            format!("{account_id} is a household account; money paid to a household can only come back by reversing the payment"),
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

fn credit(
    account: &mut Account,
    source_seq: u64,
    amount: Fen,
    field: &str,
) -> Result<(), Rejection> {
    let balance = account.balances.entry(source_seq).or_insert(Fen::ZERO);
    *balance = balance.checked_add(amount).ok_or_else(|| {
        Rejection::invalid(
            field,
            format!(
                "the balance of account {} would overflow",
                account.account_id
            ),
        )
    })?;
    if account.balances.len() > ACCOUNT_SOURCES_MAX {
        return Err(Rejection::new(
            Code::ResourceExhausted,
            field,
            format!(
                "account {} would hold more than {ACCOUNT_SOURCES_MAX} sources",
                account.account_id
            ),
        ));
    }
    Ok(())
}

fn debit(
    account: &mut Account,
    source_seq: u64,
    amount: Fen,
    field: &str,
) -> Result<(), Rejection> {
    let held = account
        .balances
        .get(&source_seq)
        .copied()
        .unwrap_or(Fen::ZERO);
    let left = held.checked_sub(amount).ok_or_else(|| {
        Rejection::precondition(
            field,
            format!(
                "account {} holds {held} of source {source_seq}, less than the {amount} asked for",
                account.account_id
            ),
        )
    })?;
    if left == Fen::ZERO {
        account.balances.remove(&source_seq);
    } else {
        account.balances.insert(source_seq, left);
    }
    Ok(())
}

/// Which sources pay `amount` out of `account`: the earmarks when given,
/// otherwise oldest source first (lowest source seq), which is deterministic
/// and spends money in the order it arrived.
pub fn attribute(
    account: &Account,
    amount: Fen,
    earmarks: &[Earmark],
    field: &str,
) -> Result<Vec<Earmark>, Rejection> {
    if !earmarks.is_empty() {
        for earmark in earmarks {
            let held = account
                .balances
                .get(&earmark.source_seq)
                .copied()
                .unwrap_or(Fen::ZERO);
            if held < earmark.amount {
                return Err(Rejection::precondition(
                    field,
                    format!(
                        "insufficient funds: account {} holds {held} of source {}, the request names {}",
                        account.account_id, earmark.source_seq, earmark.amount
                    ),
                ));
            }
        }
        return Ok(earmarks.to_vec());
    }
    let mut left = amount;
    let mut picked = Vec::new();
    for (&source_seq, &held) in &account.balances {
        if left == Fen::ZERO {
            break;
        }
        let take = held.min(left);
        picked.push(Earmark {
            source_seq,
            amount: take,
        });
        left = Fen(left.0 - take.0);
    }
    if left != Fen::ZERO {
        return Err(Rejection::precondition(
            field,
            format!(
                "insufficient funds: account {} holds {}, the request needs {amount}",
                account.account_id,
                Fen(u64::try_from(account.balance()).unwrap_or(u64::MAX))
            ),
        ));
    }
    Ok(picked)
}

fn move_money<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    mut from: Account,
    mut to: Account,
    amount: Fen,
    earmarks: &[Earmark],
    field: &str,
    effects: &mut Effects,
) -> Result<(), Rejection> {
    let parts = attribute(&from, amount, earmarks, field)?;
    let mut moved: u128 = 0;
    for part in &parts {
        debit(&mut from, part.source_seq, part.amount, field)?;
        credit(&mut to, part.source_seq, part.amount, field)?;
        moved += u128::from(part.amount.0);
        effects.legs.push(Leg {
            from_account_id: Some(from.account_id.clone()),
            to_account_id: Some(to.account_id.clone()),
            source_seq: part.source_seq,
            amount: part.amount,
        });
    }
    assert_eq!(
        moved,
        u128::from(amount.0),
        "attribution must cover the amount exactly"
    );
    txn.put(key::named(key::ACCOUNT, &from.account_id), &from);
    txn.put(key::named(key::ACCOUNT, &to.account_id), &to);
    Ok(())
}

fn reversal<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    ctx: &Context,
    org: &Org,
    r: &Reversal,
    effects: &mut Effects,
) -> Result<(), Rejection> {
    let field = "reversal.target_seq";
    if r.target_seq >= ctx.seq {
        return Err(Rejection::not_found(
            field,
            format!("record {} does not exist yet", r.target_seq),
        ));
    }
    let mut target = txn.movement(r.target_seq)?.ok_or_else(|| {
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
    // Undo legs last-first, each debiting what the original credited. Accounts
    // are staged in a map so a leg sees the effect of earlier ones.
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
            let account = credit_account(txn, field, debited_id)?;
            if account.owner_org_id != org.org_id {
                return Err(Rejection::denied(
                    field,
                    format!("reversing record {} takes money out of account {debited_id}, which belongs to {}; a key of {} may not sign it", r.target_seq, account.owner_org_id, org.org_id),
                ));
            }
            accounts.insert(debited_id.clone(), account);
        }
        let debited = accounts.get_mut(debited_id).expect("inserted above");
        debit(debited, leg.source_seq, leg.amount, field).map_err(|_| {
            Rejection::precondition(
                field,
                format!("the money of record {} has moved on from account {debited_id}; reverse the later movements first", r.target_seq),
            )
        })?;
        match &leg.from_account_id {
            Some(credited_id) => {
                if !accounts.contains_key(credited_id) {
                    let account = credit_account(txn, field, credited_id)?;
                    accounts.insert(credited_id.clone(), account);
                }
                let credited = accounts.get_mut(credited_id).expect("inserted above");
                credit(credited, leg.source_seq, leg.amount, field)?;
            }
            None => {
                let mut source = txn.source(leg.source_seq)?.ok_or_else(|| {
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
                txn.put(key::seq(key::SOURCE, source.source_seq), &source);
            }
        }
        effects.legs.push(Leg {
            from_account_id: leg.to_account_id.clone(),
            to_account_id: leg.from_account_id.clone(),
            source_seq: leg.source_seq,
            amount: leg.amount,
        });
    }
    for account in accounts.values() {
        txn.put(key::named(key::ACCOUNT, &account.account_id), account);
    }
    target.reversed_by = Some(ctx.seq);
    txn.put(key::seq(key::MOVEMENT, target.seq), &target);
    Ok(())
}
