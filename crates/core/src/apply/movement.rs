//! Record kinds that move money, and the one place money moves: lots are
//! picked oldest first (or by earmark), taken out of the paying account and
//! added, as new lots named by the record, to the receiving one.

use std::collections::BTreeMap;

use super::Act;
use crate::dates::Day;
use crate::limits::{
    ACCOUNT_SOURCES_MAX, LEGS_PER_RECORD_MAX, LOT_SCAN_CHUNK, LOT_SCAN_FIRST, LOT_SCAN_ROWS_MAX,
};
use crate::model::*;
use crate::money::Fen;
use crate::rules::Rules;
use crate::state::{key, Kv, StateRead, Txn};
use crate::{Code, Error, Fault, Rejection};

/// The account the signer wants to debit: it must exist, be the signer's
/// own, and not be a household account (households are final recipients).
fn debit_account<K: Kv + ?Sized>(
    m: &Act<K>,
    field: &str,
    account_id: &str,
) -> Result<Account, Error> {
    let account = return_account(m, field, account_id)?;
    if account.kind == AccountKind::Household {
        return Err(Rejection::precondition(
            field,
            format!("{account_id} is a household account; money paid to a household can only come back by a Return or by reversing the payment"),
        ).into());
    }
    Ok(account)
}

/// The account the signer sends money back from: its own, household ones
/// included. Another org's account is refused naming its owner only to a
/// signer that may read it.
fn return_account<K: Kv + ?Sized>(
    m: &Act<K>,
    field: &str,
    account_id: &str,
) -> Result<Account, Error> {
    let account = existing_account(m, field, account_id)?;
    if account.owner_org_id != m.org.org_id {
        return Err(m
            .refuse_as_reader(field, &account.owner_org_id, || {
                Rejection::denied(
                    field,
                    format!(
                        "account {account_id} belongs to {}; a key of {} may not pay out of it",
                        account.owner_org_id, m.org.org_id
                    ),
                )
            })?
            .into());
    }
    Ok(account)
}

/// An account a record names: absent is refused as [`Act::absent`] says.
fn existing_account<K: Kv + ?Sized>(
    m: &Act<K>,
    field: &str,
    account_id: &str,
) -> Result<Account, Error> {
    match m.txn.account(account_id)? {
        Some(account) => Ok(account),
        None => Err(m
            .absent(field, format!("account {account_id:?} does not exist"))?
            .into()),
    }
}

/// An account the ledger itself named (in a leg): it must be there.
fn named_account<K: Kv + ?Sized>(txn: &Txn<K>, account_id: &str) -> Result<Account, Fault> {
    txn.account(account_id)?
        .ok_or_else(|| Fault::corrupt(format!("derived state lacks account {account_id}")))
}

fn too_many_legs(account_id: &str, field: &str) -> Error {
    Rejection::new(
        Code::ResourceExhausted,
        field,
        format!(
            "paying this from account {account_id} would take more than {LEGS_PER_RECORD_MAX} lots (one leg each), the most one record holds; name the sources to pay from with earmarks, or split it into smaller movements"
        ),
    )
    .into()
}

/// Which lots pay `amount` out of `account` on `day`: of the named sources
/// when earmarks are given, otherwise of any source; within that, oldest
/// first (earliest arrival date, then earliest arrival record), which is
/// deterministic and spends money in the order it arrived. Money that
/// arrived after `day` cannot pay on `day`. Returns (lot, its arrival day,
/// amount taken from it). From rules 4, more than [`LEGS_PER_RECORD_MAX`]
/// lots is a refusal: the record would be too large to keep. From rules 7,
/// before refusing, the lots are picked again skipping every lot too small
/// to matter ([`Picking::SkipSmall`]): so many small lots sent to an account
/// (by a parent or a paired org) never stop it paying out of larger ones.
fn pick_lots<K: Kv + ?Sized>(
    txn: &Txn<K>,
    account: &Account,
    amount: Fen,
    earmarks: &[Earmark],
    day: Day,
    field: &str,
    rules: Rules,
) -> Result<Vec<Picked>, Error> {
    let wants: Vec<(Option<u64>, Fen)> = if earmarks.is_empty() {
        vec![(None, amount)]
    } else {
        earmarks
            .iter()
            .map(|e| (Some(e.source_seq), e.amount))
            .collect()
    };
    let mut scan = LotScan {
        txn,
        account,
        day,
        field,
        rules,
        rows_read: 0,
    };
    match scan.pick(&wants, Picking::OldestFirst)? {
        Some(picked) => Ok(picked),
        None if rules >= Rules::V7 => scan
            .pick(&wants, Picking::SkipSmall)?
            .ok_or_else(|| too_many_legs(&account.account_id, field)),
        None => Err(too_many_legs(&account.account_id, field)),
    }
}

/// A lot picked to pay from: the lot, its arrival day, the amount taken.
type Picked = (LotKey, Day, Fen);

/// How [`LotScan::pick`] chooses among the lots, oldest first.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Picking {
    /// Every lot in turn.
    OldestFirst,
    /// Only lots holding at least what is left to pay divided by the legs
    /// left for it. Such a pick never needs more legs than a record holds:
    /// with one leg left only a lot covering the rest is taken.
    SkipSmall,
}

/// One account's lots read for one movement; `rows_read` counts across
/// both pickings, so the movement reads at most [`LOT_SCAN_ROWS_MAX`] rows.
struct LotScan<'a, K: Kv + ?Sized> {
    txn: &'a Txn<'a, K>,
    account: &'a Account,
    day: Day,
    field: &'a str,
    rules: Rules,
    rows_read: usize,
}

impl<K: Kv + ?Sized> LotScan<'_, K> {
    /// The lots paying each (source, amount) in `wants`, or `None` when they
    /// would take more legs than a record holds (from rules 4).
    fn pick(
        &mut self,
        wants: &[(Option<u64>, Fen)],
        picking: Picking,
    ) -> Result<Option<Vec<Picked>>, Error> {
        let account_id = &self.account.account_id;
        let prefix = key::lots(account_id);
        let mut picked = Vec::new();
        for (want_index, &(source, want)) in wants.iter().enumerate() {
            // From rules 7 later wants keep a leg each, so skipping small
            // lots never starves them (the outcome is the same: a pick that
            // needs their legs would not fit either way).
            let legs_reserved = if self.rules >= Rules::V7 {
                wants.len() - want_index - 1
            } else {
                0
            };
            let mut left = want;
            let mut start = prefix.clone();
            let mut chunk = LOT_SCAN_FIRST;
            'scan: loop {
                let rows = self.txn.scan(&prefix, &start, chunk)?;
                self.rows_read += rows.len();
                if self.rules >= Rules::V6 && self.rows_read > LOT_SCAN_ROWS_MAX {
                    return Err(Rejection::new(
                        Code::ResourceExhausted,
                        self.field,
                        format!(
                            "paying this from account {account_id} would read more than {LOT_SCAN_ROWS_MAX} lots; name fewer sources, or move the money in smaller steps"
                        ),
                    )
                    .into());
                }
                for (row, value) in &rows {
                    let (lot_day, arrival_seq, source_seq) = key::parse_lot(account_id, row)
                        .ok_or_else(|| {
                            Fault::corrupt(format!("a lot key of account {account_id} is corrupt"))
                        })?;
                    if lot_day > self.day {
                        break 'scan;
                    }
                    if source.is_some_and(|s| s != source_seq) {
                        continue;
                    }
                    if self.rules >= Rules::V4
                        && picked.len() + legs_reserved >= LEGS_PER_RECORD_MAX
                    {
                        return Ok(None);
                    }
                    let held: Fen = crate::state::decode(value)?;
                    if picking == Picking::SkipSmall {
                        let legs_left = LEGS_PER_RECORD_MAX - legs_reserved - picked.len();
                        if u128::from(held.0) * (legs_left as u128) < u128::from(left.0) {
                            continue;
                        }
                    }
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
                    Some((last, _)) if rows.len() == chunk => {
                        start = last.clone();
                        start.push(0);
                        chunk = LOT_SCAN_CHUNK;
                    }
                    _ => break,
                }
            }
            if left != Fen::ZERO {
                return Err(self.short(source, want, picking));
            }
        }
        Ok(Some(picked))
    }

    /// Why `want` of `source` could not be paid: the account holds less, or
    /// part arrived after the value date, or (skipping small lots) the money
    /// lies in more pieces than a record holds.
    fn short(&self, source: Option<u64>, want: Fen, picking: Picking) -> Error {
        let account_id = &self.account.account_id;
        let held = match source {
            Some(s) => self.account.balance_of(s),
            None => self.account.balance(),
        };
        if picking == Picking::SkipSmall && held >= u128::from(want.0) {
            return too_many_legs(account_id, self.field);
        }
        let what = source
            .map(|s| format!(" of source {s}"))
            .unwrap_or_default();
        let later = if held >= u128::from(want.0) {
            format!(
                "; part of it arrived after {}",
                crate::dates::format_date(self.day)
            )
        } else {
            String::new()
        };
        Rejection::precondition(
            self.field,
            format!(
                "insufficient funds: account {account_id} holds {}{what}, the request needs {want}{later}",
                crate::money::format_fen(held)
            ),
        )
        .into()
    }
}

/// From rules 3 on, no account may hold more than u64::MAX fen in all, so
/// that every total the ledger reports about it stays exact.
fn total_within_limit(rules: Rules, account: &Account, field: &str) -> Result<(), Rejection> {
    if rules >= Rules::V3 && account.balance() > u128::from(u64::MAX) {
        return Err(Rejection::new(
            Code::ResourceExhausted,
            field,
            format!(
                "account {} would hold more than {} in all, more than the ledger can report exactly",
                account.account_id,
                crate::money::format_fen(u128::from(u64::MAX))
            ),
        ));
    }
    Ok(())
}

/// Adds `amount` to a lot of `account` (creating it) and to its balances.
fn add_lot<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    account: &mut Account,
    lot: LotKey,
    amount: Fen,
    arrival_day: Day,
    field: &str,
) -> Result<(), Error> {
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
        )
        .into());
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
) -> Result<(), Error> {
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

impl<K: Kv + ?Sized> Act<'_, '_, K> {
    /// Moves `amount` from `from` to `to`; the money forms new lots at `to`
    /// named by this record, dated by its value date.
    fn move_money(
        &mut self,
        mut from: Account,
        mut to: Account,
        amount: Fen,
        earmarks: &[Earmark],
        field: &str,
    ) -> Result<(), Error> {
        let picked = pick_lots(
            self.txn, &from, amount, earmarks, self.day, field, self.rules,
        )?;
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
            self.effects.legs.push(Leg {
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
        total_within_limit(self.rules, &to, field)?;
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

/// Writes the indexes of a record that moved money: its movement, and each
/// account, source and lot it touched.
pub(super) fn index_movement<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    seq: u64,
    body: &Body,
    effects: &Effects,
) {
    let movement = Movement {
        seq,
        kind: body.kind(),
        value_day: effects.value_day,
        signer_org_id: effects.signer_org_id.clone(),
        legs: effects.legs.clone(),
        is_reversal: matches!(body, Body::Reversal(_)),
        reversed_by: None,
    };
    txn.put(key::seq(key::MOVEMENT, seq), &movement);
    for leg in &effects.legs {
        for account_id in [&leg.from_account_id, &leg.to_account_id]
            .into_iter()
            .flatten()
        {
            txn.put_raw(key::account_entry(account_id, seq), Vec::new());
        }
        txn.put_raw(key::source_entry(leg.source_seq, seq), Vec::new());
        if let (Some(from), Some(arrival)) = (&leg.from_account_id, leg.from_arrival_seq) {
            txn.put_raw(
                key::lot_spend(from, leg.source_seq, arrival, seq),
                Vec::new(),
            );
        }
    }
}

/// Level to level, and east–west: any account but a project's or a household's.
pub(super) fn transfer<K: Kv + ?Sized>(m: &mut Act<K>, t: &Transfer) -> Result<(), Error> {
    let field = "transfer.to_account_id";
    // Everything about the paying account is checked before the receiving
    // one is looked at, and whether the signer may credit it before what
    // kind it is: an account the signer may not read tells nothing.
    let from = debit_account(m, "transfer.from_account_id", &t.from_account_id)?;
    let to = existing_account(m, field, &t.to_account_id)?;
    check_credit(m, field, &to)?;
    match to.kind {
        AccountKind::Household => {
            return Err(Rejection::precondition(
                field,
                format!(
                    "{} is a household account; pay households with a Disbursement",
                    to.account_id
                ),
            )
            .into())
        }
        AccountKind::Project => {
            return Err(Rejection::precondition(
                field,
                format!(
                "{} is a library project; fund projects with an Allocation from the county pool",
                to.account_id
            ),
            )
            .into())
        }
        _ => {}
    }
    let down =
        m.rules >= Rules::V9 && super::quota::is_below(m, &to.owner_org_id, &from.owner_org_id)?;
    let to_org_id = to.owner_org_id.clone();
    let legs_from = m.effects.legs.len();
    m.move_money(from, to, t.amount, &t.sources, "transfer.sources")?;
    super::quota::follow_cash(m, t.quota_seq, down, &to_org_id, t.amount, legs_from)
}

/// Rules 6: the signer may credit (by Transfer or Return) only accounts of
/// its own org, its descendants and its ancestors, or of an org paired with
/// it: a pairing (A, B) lets A and its descendants credit B and its
/// descendants. So nobody can fill a stranger's account with lots, and an
/// account the signer may not read is refused as if it did not exist.
fn check_credit<K: Kv + ?Sized>(m: &Act<K>, field: &str, to: &Account) -> Result<(), Error> {
    if m.rules < Rules::V6 {
        return Ok(());
    }
    let owner = &to.owner_org_id;
    let owner_chain = m.txn.org_chain(owner)?;
    if owner_chain.iter().any(|o| o.org_id == m.org.org_id) {
        return Ok(());
    }
    let signer_chain = m.txn.org_chain(&m.org.org_id)?;
    if signer_chain.iter().any(|o| &o.org_id == owner) {
        return Ok(());
    }
    for from in &signer_chain {
        for into in &owner_chain {
            if m.txn
                .read::<u64>(&key::pairing(&from.org_id, &into.org_id))?
                .is_some()
            {
                return Ok(());
            }
        }
    }
    Err(m
        .refuse_as_reader(field, owner, || {
            Rejection::denied(
                field,
                format!(
                    "{} belongs to {owner}, which is neither above nor below {}; money goes sideways only between orgs paired by a common superior (DeclarePairing)",
                    to.account_id, m.org.org_id
                ),
            )
        })?
        .into())
}

/// Programme money into the signer's own consolidated pool (统筹整合).
pub(super) fn consolidation<K: Kv + ?Sized>(
    m: &mut Act<K>,
    c: &Consolidation,
) -> Result<(), Error> {
    let field = "consolidation.pool_account_id";
    let from = debit_account(m, "consolidation.from_account_id", &c.from_account_id)?;
    if from.kind != AccountKind::Programme {
        return Err(Rejection::precondition(
            "consolidation.from_account_id",
            format!(
                "consolidation takes programme money; {} is a {:?} account",
                from.account_id, from.kind
            ),
        )
        .into());
    }
    let to = existing_account(m, field, &c.pool_account_id)?;
    let not_a_pool = || {
        format!(
            "{} is not a consolidated pool of {}",
            to.account_id, m.org.org_id
        )
    };
    owned_by_signer(m, field, &to.owner_org_id, not_a_pool)?;
    if to.kind != AccountKind::Pool {
        return Err(Rejection::precondition(field, not_a_pool()).into());
    }
    m.move_money(from, to, c.amount, &c.sources, "consolidation.sources")
}

/// Refuses a registry entry (project or household) of another org: only the
/// county whose library or registry holds it may fund or pay it. Named, with
/// its owner, only to a signer that may read it.
fn owned_by_signer<K: Kv + ?Sized>(
    m: &Act<K>,
    field: &str,
    owner_org_id: &str,
    why: impl FnOnce() -> String,
) -> Result<(), Error> {
    if owner_org_id == m.org.org_id {
        return Ok(());
    }
    Err(m
        .refuse_as_reader(field, owner_org_id, || {
            Rejection::precondition(field, why())
        })?
        .into())
}

/// Pool money to a library project that has a performance target, within
/// its budget.
pub(super) fn allocation<K: Kv + ?Sized>(m: &mut Act<K>, a: &Allocation) -> Result<(), Error> {
    let field = "allocation.project_account_id";
    let from = debit_account(m, "allocation.pool_account_id", &a.pool_account_id)?;
    if from.kind != AccountKind::Pool {
        return Err(Rejection::precondition(
            "allocation.pool_account_id",
            format!(
                "allocations come from the county's consolidated pool; {} is a {:?} account",
                from.account_id, from.kind
            ),
        )
        .into());
    }
    let to = existing_account(m, field, &a.project_account_id)?;
    owned_by_signer(m, field, &to.owner_org_id, || {
        format!(
            "{} belongs to {}, not to {}; only the county whose library holds a project funds it",
            to.account_id, to.owner_org_id, m.org.org_id
        )
    })?;
    let mut project = m.txn.project(&to.account_id)?.ok_or_else(|| {
        Rejection::precondition(
            field,
            format!("{} is not in a county project library", to.account_id),
        )
    })?;
    if project.performance_targets.is_empty() {
        return Err(Rejection::precondition(
            field,
            format!(
                "project {} has no performance target (绩效目标) and may not receive money",
                project.account_id
            ),
        )
        .into());
    }
    let allocated = project
        .allocated
        .checked_add(a.amount)
        .filter(|total| *total <= project.budget)
        .ok_or_else(|| {
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
    let legs_from = m.effects.legs.len();
    m.move_money(from, to, a.amount, &a.sources, "allocation.sources")?;
    super::quota::fund_project(m, a.quota_seq, a.amount, legs_from)
}

/// Payment to a household the signer registered, eligible on the value date.
pub(super) fn disbursement<K: Kv + ?Sized>(m: &mut Act<K>, d: &Disbursement) -> Result<(), Error> {
    let field = "disbursement.household_account_id";
    let from = debit_account(m, "disbursement.from_account_id", &d.from_account_id)?;
    let to = existing_account(m, field, &d.household_account_id)?;
    owned_by_signer(m, field, &to.owner_org_id, || {
        format!(
            "{} is registered with {}, not with {}; only the county that registered a household pays it",
            to.account_id, to.owner_org_id, m.org.org_id
        )
    })?;
    let household = m.txn.household(&to.account_id)?.ok_or_else(|| {
        Rejection::precondition(
            field,
            format!("{} is not a registered household", to.account_id),
        )
    })?;
    // From rules 6 a payment must pass today's rules as well as those of
    // its value date: a household found ineligible cannot then be paid
    // with an earlier date.
    let mut days = vec![m.day];
    if m.rules >= Rules::V6 && m.commit_day != m.day {
        days.push(m.commit_day);
    }
    for day in days {
        if household.status_on(day) == HouseholdStatus::Ineligible {
            return Err(Rejection::precondition(
                field,
                format!(
                    "household {} is not eligible on {}",
                    to.account_id,
                    crate::dates::format_date(day)
                ),
            )
            .into());
        }
    }
    let payment = HouseholdPayment {
        seq: m.seq,
        day: m.day,
        amount: d.amount,
        programme_code: d.programme_code.clone(),
        period: d.period.clone(),
        reversed: false,
    };
    m.txn.put(
        key::household_payment(&household.account_id, m.seq),
        &payment,
    );
    let legs_from = m.effects.legs.len();
    m.move_money(from, to, d.amount, &d.sources, "disbursement.sources")?;
    super::quota::pay(m, d.quota_seq, &d.programme_code, d.amount, legs_from)
}

/// Money sent back up from any of the signer's accounts, households' too.
pub(super) fn return_money<K: Kv + ?Sized>(m: &mut Act<K>, r: &Return) -> Result<(), Error> {
    if r.kind == ReturnKind::BankFailure {
        return bank_failure(m, r);
    }
    let from = return_account(m, "return.from_account_id", &r.from_account_id)?;
    let to = existing_account(m, "return.to_account_id", &r.to_account_id)?;
    check_credit(m, "return.to_account_id", &to)?;
    if matches!(to.kind, AccountKind::Household | AccountKind::Project) {
        return Err(Rejection::precondition(
            "return.to_account_id",
            format!(
                "money is returned to a treasury, programme or pool account; {} is a {:?} account",
                to.account_id, to.kind
            ),
        )
        .into());
    }
    m.move_money(from, to, r.amount, &r.sources, "return.sources")
}

/// A household payment the signer made that has no bank result yet: the
/// payment's movement, the payment, and the account that paid it.
/// `household_id` must be the household it paid.
fn unsettled_payment<K: Kv + ?Sized>(
    m: &Act<K>,
    kind: &str,
    seq: u64,
    household_id: &str,
    household_field: &str,
) -> Result<(Movement, HouseholdPayment, String), Error> {
    let field = format!("{kind}.disbursement_seq");
    // Whose payment it is comes first, and anything but a payment the
    // signer made gets one answer naming nothing: another org must not
    // learn (or test guesses of) what a record is or whom it paid.
    let movement = m
        .txn
        .movement(seq)?
        .filter(|movement| movement.kind == RecordKind::Disbursement)
        .filter(|movement| movement.signer_org_id == m.org.org_id)
        .ok_or_else(|| {
            Rejection::denied(
                &field,
                format!(
                    "{field} names no household payment (Disbursement) that {} made; only the org that paid posts the bank's result for it",
                    m.org.org_id
                ),
            )
        })?;
    let leg = movement.legs.first().expect("a payment moves money");
    let paid = leg
        .to_account_id
        .clone()
        .expect("a payment reaches a household");
    let paying = leg
        .from_account_id
        .clone()
        .expect("a payment leaves an account");
    if paid != household_id {
        return Err(Rejection::invalid(
            household_field,
            format!("record {seq} paid household {paid}, not {household_id}"),
        )
        .into());
    }
    if let Some(by) = movement.reversed_by {
        return Err(Rejection::precondition(
            &field,
            format!("record {seq} was reversed by record {by}; no payment is left for the bank to settle"),
        )
        .into());
    }
    if let Some(settled) = m.txn.settlement(seq)? {
        return Err(Rejection::precondition(
            &field,
            format!(
                "the bank's result for record {seq} was already posted by record {}",
                settled.seq
            ),
        )
        .into());
    }
    let payment = m.txn.household_payment(&paid, seq)?.ok_or_else(|| {
        Fault::corrupt(format!(
            "derived state lacks the payment of record {seq} to {paid}"
        ))
    })?;
    Ok((movement, payment, paying))
}

/// Remembers the bank's result for payment `seq` and takes the bank's
/// reference for the signer's org.
fn settle<K: Kv + ?Sized>(
    m: &mut Act<K>,
    seq: u64,
    credited: bool,
    reference: &str,
    field: &str,
) -> Result<(), Error> {
    let reference_key = key::bank_reference(&m.org.org_id, reference);
    if let Some(first) = m.txn.read::<u64>(&reference_key)? {
        return Err(Rejection::exists(
            field,
            format!("bank reference {reference} was already posted by record {first}"),
        )
        .into());
    }
    m.txn.put(reference_key, &m.seq);
    let settlement = Settlement {
        seq: m.seq,
        day: m.day,
        credited,
        bank_reference: reference.to_string(),
    };
    m.txn.put(key::seq(key::SETTLEMENT, seq), &settlement);
    Ok(())
}

/// The bank credited a household payment (到账确认). Moves no money.
pub(super) fn confirm_credit<K: Kv + ?Sized>(
    m: &mut Act<K>,
    c: &ConfirmCredit,
) -> Result<(), Error> {
    let (_, payment, _) = unsettled_payment(
        m,
        "confirm_credit",
        c.disbursement_seq,
        &c.household_account_id,
        "confirm_credit.household_account_id",
    )?;
    if m.day < payment.day {
        return Err(Rejection::precondition(
            "value_date",
            format!(
                "the bank cannot have credited on {} a payment made on {}",
                crate::dates::format_date(m.day),
                crate::dates::format_date(payment.day)
            ),
        )
        .into());
    }
    settle(
        m,
        c.disbursement_seq,
        true,
        &c.bank_reference,
        "confirm_credit.bank_reference",
    )
}

/// The bank could not credit a household payment (银行退回): exactly that
/// payment's money leaves the lot it made at the household and comes back
/// to the account that paid it, as a new lot there named by this record.
fn bank_failure<K: Kv + ?Sized>(m: &mut Act<K>, r: &Return) -> Result<(), Error> {
    let (movement, payment, paying) = unsettled_payment(
        m,
        "return",
        r.disbursement_seq,
        &r.from_account_id,
        "return.from_account_id",
    )?;
    if r.to_account_id != paying {
        return Err(Rejection::invalid(
            "return.to_account_id",
            format!("a BANK_FAILURE return goes back to {paying}, the account that paid"),
        )
        .into());
    }
    if r.amount != payment.amount {
        return Err(Rejection::invalid(
            "return.amount_fen",
            format!(
                "a BANK_FAILURE return takes back the whole payment, {}",
                payment.amount
            ),
        )
        .into());
    }
    let field = "return.amount_fen";
    let mut household = return_account(m, "return.from_account_id", &r.from_account_id)?;
    let mut to = named_account(m.txn, &paying)?;
    let mut by_source: BTreeMap<u64, Fen> = BTreeMap::new();
    for leg in &movement.legs {
        let part = by_source.entry(leg.source_seq).or_insert(Fen::ZERO);
        *part = part
            .checked_add(leg.amount)
            .expect("a payment's legs sum to its amount");
    }
    for (source_seq, part) in by_source {
        let made = LotKey {
            source_seq,
            arrival_seq: r.disbursement_seq,
        };
        take_lot(m.txn, &mut household, made, payment.day, part, field)?;
        let back = LotKey {
            source_seq,
            arrival_seq: m.seq,
        };
        add_lot(m.txn, &mut to, back, part, m.day, field)?;
        m.effects.legs.push(Leg {
            from_account_id: Some(household.account_id.clone()),
            to_account_id: Some(paying.clone()),
            source_seq,
            amount: part,
            from_arrival_seq: Some(r.disbursement_seq),
        });
    }
    total_within_limit(m.rules, &to, field)?;
    m.txn
        .put(key::named(key::ACCOUNT, &household.account_id), &household);
    m.txn.put(key::named(key::ACCOUNT, &paying), &to);
    m.txn.put_raw(key::named(key::HOLDER, &paying), Vec::new());
    super::quota::give_back(m, r.disbursement_seq)?;
    settle(
        m,
        r.disbursement_seq,
        false,
        &r.bank_reference,
        "return.bank_reference",
    )
}

/// Refuses to reverse a household payment the bank has settled, or a
/// bank-failure return: the bank's result stands (money that reached a
/// household comes back by a CLAWBACK return).
fn settled<K: Kv + ?Sized>(m: &Act<K>, target: &Movement) -> Result<(), Error> {
    let field = "reversal.target_seq";
    let paid = match target.kind {
        RecordKind::Disbursement => target.seq,
        RecordKind::Return => match target.legs.first().and_then(|l| l.from_arrival_seq) {
            Some(lot) => lot,
            None => return Ok(()),
        },
        _ => return Ok(()),
    };
    match m.txn.settlement(paid)? {
        Some(s) if paid == target.seq => Err(Rejection::precondition(
            field,
            format!(
                "the bank's result for payment {paid} was posted by record {}; a settled payment is not reversed (money that reached the household comes back by a CLAWBACK return)",
                s.seq
            ),
        )
        .into()),
        Some(s) if s.seq == target.seq => Err(Rejection::precondition(
            field,
            format!(
                "record {} is the bank's failure to credit payment {paid}; a bank result is not reversed",
                target.seq
            ),
        )
        .into()),
        _ => Ok(()),
    }
}

/// Money into the ledger: a new source, held by the signer's treasury or
/// programme account.
pub(super) fn appropriation<K: Kv + ?Sized>(
    m: &mut Act<K>,
    a: &Appropriation,
) -> Result<(), Error> {
    let org = m.org.clone();
    if !org.role.handles_money() {
        return Err(Rejection::denied(
            "key_id",
            format!(
                "{} is an {:?} org and may not appropriate funds",
                org.org_id, org.role
            ),
        )
        .into());
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
        )
        .into());
    }
    if !matches!(account.kind, AccountKind::Treasury | AccountKind::Programme) {
        return Err(Rejection::precondition(
            field,
            format!(
                "appropriations go into a treasury or programme account; {} is a {:?} account",
                account.account_id, account.kind
            ),
        )
        .into());
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
    total_within_limit(m.rules, &account, field)?;
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
    m.effects.legs.push(Leg {
        from_account_id: None,
        to_account_id: Some(account.account_id),
        source_seq: m.seq,
        amount: a.amount,
        from_arrival_seq: None,
    });
    Ok(())
}

/// The movement record `seq` made, if the signer may reverse it: every
/// account it credited (which the reversal debits) is the signer's. Anything
/// else gets one answer, naming neither account nor owner, unless the
/// signer may read every account the record credited.
fn reversible<K: Kv + ?Sized>(m: &Act<K>, seq: u64) -> Result<Movement, Error> {
    let field = "reversal.target_seq";
    let not_reversible = || {
        Rejection::denied(
            field,
            format!(
                "{field} names no money movement that {} may reverse: a reversal takes the money back out of the accounts the record paid, and those must be the signer's own",
                m.org.org_id
            ),
        )
    };
    let Some(target) = m.txn.movement(seq)? else {
        // Only a signer that sees everything may learn what the record is.
        if !m.reader()?.sees_everything() {
            return Err(not_reversible().into());
        }
        if seq >= m.seq {
            return Err(
                Rejection::not_found(field, format!("record {seq} does not exist yet")).into(),
            );
        }
        return Err(Rejection::precondition(
            field,
            format!("record {seq} did not move money, so there is nothing to reverse"),
        )
        .into());
    };
    for leg in &target.legs {
        let Some(credited_id) = &leg.to_account_id else {
            continue;
        };
        let owner = named_account(m.txn, credited_id)?.owner_org_id;
        if owner == m.org.org_id {
            continue;
        }
        if !m.reads(&owner)? {
            return Err(not_reversible().into());
        }
        return Err(Rejection::denied(
            field,
            format!(
                "reversing record {seq} takes money out of account {credited_id}, which belongs to {owner}; a key of {} may not sign it",
                m.org.org_id
            ),
        )
        .into());
    }
    Ok(target)
}

/// A compensating record: undoes an earlier movement leg by leg, returning
/// each part to the lot it came from. The reversed record stays in the log.
pub(super) fn reversal<K: Kv + ?Sized>(m: &mut Act<K>, r: &Reversal) -> Result<(), Error> {
    let org = m.org.clone();
    let field = "reversal.target_seq";
    let mut target = reversible(m, r.target_seq)?;
    if target.is_reversal {
        return Err(Rejection::precondition(
            field,
            format!(
                "record {} is itself a reversal; post the movement again instead",
                r.target_seq
            ),
        )
        .into());
    }
    if let Some(by) = target.reversed_by {
        return Err(Rejection::precondition(
            field,
            format!(
                "record {} was already reversed by record {by}",
                r.target_seq
            ),
        )
        .into());
    }
    settled(m, &target)?;
    if m.day < target.value_day {
        return Err(Rejection::precondition(
            "value_date",
            format!(
                "a reversal cannot be dated before the record it reverses ({})",
                crate::dates::format_date(target.value_day)
            ),
        )
        .into());
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
            )
            .into());
        };
        if !accounts.contains_key(debited_id) {
            let account = named_account(m.txn, debited_id)?;
            assert_eq!(
                account.owner_org_id, org.org_id,
                "reversible checked the owners"
            );
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
        .map_err(|e| match e {
            Error::Refused(_) => Rejection::precondition(
                field,
                format!("the money of record {} has moved on from account {debited_id}; reverse the later movements first", r.target_seq),
            )
            .into(),
            fault => fault,
        })?;
        match (&leg.from_account_id, leg.from_arrival_seq) {
            (Some(credited_id), Some(arrival_seq)) => {
                if !accounts.contains_key(credited_id) {
                    let account = named_account(m.txn, credited_id)?;
                    accounts.insert(credited_id.clone(), account);
                }
                let arrival_day = m
                    .txn
                    .movement(arrival_seq)?
                    .map(|mv| mv.value_day)
                    .ok_or_else(|| {
                        Fault::corrupt(format!(
                            "derived state lacks the movement of record {arrival_seq}, where a lot of record {} arrived",
                            r.target_seq
                        ))
                    })?;
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
                    Fault::corrupt(format!("derived state lacks source {}", leg.source_seq))
                })?;
                source.withdrawn = source
                    .withdrawn
                    .checked_add(leg.amount)
                    .filter(|w| *w <= source.amount)
                    .ok_or_else(|| {
                        Fault::corrupt(format!(
                            "source {} would be withdrawn beyond its amount",
                            leg.source_seq
                        ))
                    })?;
                m.txn.put(key::seq(key::SOURCE, source.source_seq), &source);
            }
        }
        m.effects.legs.push(Leg {
            from_account_id: leg.to_account_id.clone(),
            to_account_id: leg.from_account_id.clone(),
            source_seq: leg.source_seq,
            amount: leg.amount,
            from_arrival_seq: Some(r.target_seq),
        });
    }
    for account in accounts.values() {
        total_within_limit(m.rules, account, field)?;
        m.txn
            .put(key::named(key::ACCOUNT, &account.account_id), account);
    }
    undo_registry(m, &target)?;
    super::quota::give_back(m, target.seq)?;
    target.reversed_by = Some(m.seq);
    m.txn.put(key::seq(key::MOVEMENT, target.seq), &target);
    Ok(())
}

/// Undoes what a reversed allocation or disbursement did to the registry:
/// the project's allocated total, the household's payment. Their entries
/// must exist and agree, or the derived state is broken.
fn undo_registry<K: Kv + ?Sized>(m: &mut Act<K>, target: &Movement) -> Result<(), Error> {
    let lacks = |what: &str| {
        Fault::corrupt(format!(
            "derived state lacks the {what} that record {} paid",
            target.seq
        ))
    };
    let Some(to_id) = target.legs.first().and_then(|l| l.to_account_id.clone()) else {
        return Ok(());
    };
    match target.kind {
        RecordKind::Allocation => {
            let mut project = m.txn.project(&to_id)?.ok_or_else(|| lacks("project"))?;
            let amount: u128 = target.legs.iter().map(|l| u128::from(l.amount.0)).sum();
            project.allocated = u64::try_from(amount)
                .ok()
                .and_then(|amount| project.allocated.checked_sub(Fen(amount)))
                .ok_or_else(|| {
                    Fault::corrupt(format!(
                        "project {to_id} records less allocated than record {} gave it",
                        target.seq
                    ))
                })?;
            m.txn.put(key::named(key::PROJECT, &to_id), &project);
        }
        RecordKind::Disbursement => {
            let mut payment = m
                .txn
                .household_payment(&to_id, target.seq)?
                .ok_or_else(|| lacks("household payment"))?;
            payment.reversed = true;
            m.txn
                .put(key::household_payment(&to_id, target.seq), &payment);
        }
        _ => {}
    }
    Ok(())
}
