//! Budget quota (预算指标, rules 8): authority to spend, issued down the
//! levels apart from the cash that follows it. A quota at the top is new
//! authority its signer creates for itself (only the root org creates
//! 直达资金 quota); every other quota is split from one its signer holds, to
//! a child org, and keeps what the 直达 system keeps unchanged down the
//! levels: programme, fiscal year, the 直达 mark and the 项目代码.
//!
//! From rules 9 cash follows quota: a transfer down the levels names the
//! quota issued to the org it pays, a household payment the quota its payer
//! holds, and neither may pass it or move money of another programme.

use super::Act;
use crate::model::{IssueQuota, Quota, QuotaDocument, QuotaDraw, QuotaUse};
use crate::money::Fen;
use crate::rules::Rules;
use crate::state::{key, Kv, StateRead};
use crate::{Error, Fault, Rejection};

pub(super) fn issue_quota<K: Kv + ?Sized>(act: &mut Act<K>, q: &IssueQuota) -> Result<(), Error> {
    let (parent_seq, root_seq) = match q.from_quota_seq {
        None => {
            check_top(act, q)?;
            (None, act.seq)
        }
        Some(from) => {
            let mut parent = held_parent(act, from)?;
            check_split(act, q, &parent)?;
            parent.issued_down = Fen(parent
                .issued_down
                .0
                .checked_add(q.amount.0)
                .expect("issued_down + amount <= parent amount, checked by check_split"));
            act.txn.put(key::seq(key::QUOTA, from), &parent);
            act.txn.put_raw(key::quota_split(from, act.seq), Vec::new());
            (Some(from), parent.root_seq)
        }
    };
    check_document(act, q)?;
    let quota = Quota {
        seq: act.seq,
        holder_org_id: q.to_org_id.clone(),
        parent_seq,
        root_seq,
        programme_code: q.programme_code.clone(),
        fiscal_year: q.fiscal_year,
        document_no: q.document_no.clone(),
        direct: q.direct,
        project_code: q.project_code.clone(),
        amount: q.amount,
        issued_down: Fen(0),
        issued_day: act.day,
        cash_followed: act.rules >= Rules::V9,
    };
    act.txn.put(key::seq(key::QUOTA, act.seq), &quota);
    act.txn.put_raw(
        key::named_seq(key::QUOTA_HOLDER, &q.to_org_id, act.seq),
        Vec::new(),
    );
    Ok(())
}

/// New quota at the top goes to its signer; only the root org creates
/// 直达资金 (it comes from the centre).
fn check_top<K: Kv + ?Sized>(act: &Act<K>, q: &IssueQuota) -> Result<(), Error> {
    if q.to_org_id != act.org.org_id {
        return Err(Rejection::invalid(
            "issue_quota.to_org_id",
            format!(
                "new quota (no from_quota_seq) is created by an org for itself; to issue quota to {}, split it from a quota {} holds",
                q.to_org_id, act.org.org_id
            ),
        )
        .into());
    }
    if q.direct && act.org.org_id != act.root_org_id {
        return Err(Rejection::denied(
            "issue_quota.direct",
            format!(
                "直达资金 quota comes from the centre: only the root org {} creates it; {} splits quota it was issued",
                act.root_org_id, act.org.org_id
            ),
        )
        .into());
    }
    Ok(())
}

/// The quota `from` names, which the signer must hold. Budgets are public,
/// so naming one that does not exist reveals nothing a read would not.
fn held_parent<K: Kv + ?Sized>(act: &Act<K>, from: u64) -> Result<Quota, Error> {
    let field = "issue_quota.from_quota_seq";
    let parent = act
        .txn
        .quota(from)?
        .ok_or_else(|| Rejection::not_found(field, format!("record {from} issued no quota")))?;
    if parent.holder_org_id != act.org.org_id {
        return Err(Rejection::denied(
            field,
            format!(
                "quota {from} is held by {}; {} may split only quota it holds",
                parent.holder_org_id, act.org.org_id
            ),
        )
        .into());
    }
    Ok(parent)
}

/// A split goes to a child org of the signer, keeps its parent's programme,
/// fiscal year, 直达 mark and 项目代码, and issues no more than the parent
/// still holds.
fn check_split<K: Kv + ?Sized>(act: &Act<K>, q: &IssueQuota, parent: &Quota) -> Result<(), Error> {
    let field = "issue_quota.to_org_id";
    let to = act.txn.org(&q.to_org_id)?.ok_or_else(|| {
        Rejection::not_found(field, format!("org {:?} is not registered", q.to_org_id))
    })?;
    if to.parent_org_id.as_deref() != Some(act.org.org_id.as_str()) {
        return Err(Rejection::denied(
            field,
            format!(
                "quota is issued down one level: {} is not a child org of {}",
                to.org_id, act.org.org_id
            ),
        )
        .into());
    }
    let kept = [
        (
            "issue_quota.programme_code",
            "programme",
            q.programme_code == parent.programme_code,
        ),
        (
            "issue_quota.fiscal_year",
            "fiscal year",
            q.fiscal_year == parent.fiscal_year,
        ),
        (
            "issue_quota.direct",
            "直达资金 mark",
            q.direct == parent.direct,
        ),
        (
            "issue_quota.project_code",
            "项目代码",
            q.project_code == parent.project_code,
        ),
    ];
    if let Some((field, what, _)) = kept.into_iter().find(|(_, _, same)| !same) {
        return Err(Rejection::invalid(
            field,
            format!(
                "a split keeps the {what} of the quota it is split from (quota {}: programme {}, fiscal year {}, 直达 {}, 项目代码 {:?})",
                parent.seq, parent.programme_code, parent.fiscal_year, parent.direct, parent.project_code
            ),
        )
        .into());
    }
    let held = parent.held(&act.txn.quota_use(parent.seq)?);
    if q.amount > held {
        return Err(Rejection::precondition(
            "issue_quota.amount_fen",
            format!(
                "quota {} holds {} fen not yet issued down or paid; {} fen cannot be split from it",
                parent.seq, held.0, q.amount.0
            ),
        )
        .into());
    }
    Ok(())
}

/// 单独下达: a document that issues 直达资金 issues one programme only, and
/// nothing else; the first quota a document issues fixes what it is.
fn check_document<K: Kv + ?Sized>(act: &mut Act<K>, q: &IssueQuota) -> Result<(), Error> {
    let document_key = key::named(key::QUOTA_DOCUMENT, &q.document_no);
    let Some(first) = act.txn.quota_document(&q.document_no)? else {
        let document = QuotaDocument {
            programme_code: q.programme_code.clone(),
            direct: q.direct,
        };
        act.txn.put(document_key, &document);
        return Ok(());
    };
    let mixed = (first.direct || q.direct)
        && (first.direct != q.direct || first.programme_code != q.programme_code);
    if mixed {
        return Err(Rejection::precondition(
            "issue_quota.document_no",
            format!(
                "document {} issued quota of programme {} ({}); a document issuing 直达资金 issues one programme only and no other money (单独下达)",
                q.document_no,
                first.programme_code,
                if first.direct { "直达资金" } else { "not 直达资金" }
            ),
        )
        .into());
    }
    Ok(())
}

/// Rules 9: a transfer to an account of `to_org_id`, an org below the
/// paying account's owner when `down`, follows quota issued to `to_org_id`;
/// any other transfer draws on none. Called once the transfer's legs (from
/// `legs_from` on) are in the effects.
pub(super) fn follow_cash<K: Kv + ?Sized>(
    act: &mut Act<K>,
    quota_seq: Option<u64>,
    down: bool,
    to_org_id: &str,
    amount: Fen,
    legs_from: usize,
) -> Result<(), Error> {
    let field = "transfer.quota_seq";
    if act.rules < Rules::V9 {
        return Ok(());
    }
    match (down, quota_seq) {
        (true, Some(seq)) => draw(act, field, seq, Drawn::Cash { to_org_id }, amount, legs_from),
        (true, None) if act.imported => {
            without_quota(act);
            Ok(())
        }
        (true, None) => Err(Rejection::precondition(
            field,
            format!(
                "cash goes down to {to_org_id} only against quota issued to it: name that quota (quota_seq)"
            ),
        )
        .into()),
        (false, Some(_)) => Err(Rejection::invalid(
            field,
            "only a transfer down the levels (to an account of an org below the payer's) follows quota",
        )
        .into()),
        (false, None) => Ok(()),
    }
}

/// Rules 9: a household payment of `programme_code` draws on quota its
/// payer (the signer) holds. Called once the payment's legs are in the
/// effects.
pub(super) fn pay<K: Kv + ?Sized>(
    act: &mut Act<K>,
    quota_seq: Option<u64>,
    programme_code: &str,
    amount: Fen,
    legs_from: usize,
) -> Result<(), Error> {
    let field = "disbursement.quota_seq";
    if act.rules < Rules::V9 {
        return Ok(());
    }
    match quota_seq {
        Some(seq) => draw(
            act,
            field,
            seq,
            Drawn::Payment { programme_code },
            amount,
            legs_from,
        ),
        None if act.imported => {
            without_quota(act);
            Ok(())
        }
        None => Err(Rejection::precondition(
            field,
            "a payment draws on quota its payer holds: name that quota (quota_seq)",
        )
        .into()),
    }
}

/// Rules 9: an allocation to a project may draw on quota its signer holds,
/// counted as paid against it (spending on a project); naming none, it
/// draws on no quota. Called once the allocation's legs are in the
/// effects.
pub(super) fn fund_project<K: Kv + ?Sized>(
    act: &mut Act<K>,
    quota_seq: Option<u64>,
    amount: Fen,
    legs_from: usize,
) -> Result<(), Error> {
    match quota_seq {
        Some(seq) if act.rules >= Rules::V9 => draw(
            act,
            "allocation.quota_seq",
            seq,
            Drawn::Project,
            amount,
            legs_from,
        ),
        _ => Ok(()),
    }
}

/// Notes an imported record that moved cash down or paid out naming no
/// quota (rules 9 accept it from history), for the compliance report's
/// CASH_WITHOUT_QUOTA.
fn without_quota<K: Kv + ?Sized>(act: &mut Act<K>) {
    act.txn
        .put_raw(key::seq(key::CASH_WITHOUT_QUOTA, act.seq), Vec::new());
}

enum Drawn<'a> {
    /// Cash sent down to an account of this org.
    Cash { to_org_id: &'a str },
    /// A payment, of this programme, by the signer.
    Payment { programme_code: &'a str },
    /// Money the signer allocated to one of its projects.
    Project,
}

/// Draws `amount` of this record on quota `seq`, after checking whose it
/// is, that the record's legs (from `legs_from` on) move only money of its
/// programme, and that it holds enough.
fn draw<K: Kv + ?Sized>(
    act: &mut Act<K>,
    field: &str,
    seq: u64,
    drawn: Drawn,
    amount: Fen,
    legs_from: usize,
) -> Result<(), Error> {
    let quota = act
        .txn
        .quota(seq)?
        .ok_or_else(|| Rejection::not_found(field, format!("record {seq} issued no quota")))?;
    let mut used = act.txn.quota_use(seq)?;
    match drawn {
        Drawn::Cash { to_org_id } if quota.holder_org_id != to_org_id => {
            return Err(Rejection::precondition(
                field,
                format!(
                    "quota {seq} was issued to {}; cash to an account of {to_org_id} follows quota issued to {to_org_id}",
                    quota.holder_org_id
                ),
            )
            .into());
        }
        Drawn::Payment { .. } | Drawn::Project if quota.holder_org_id != act.org.org_id => {
            return Err(Rejection::denied(
                field,
                format!(
                    "quota {seq} is held by {}; {} pays only against quota it holds",
                    quota.holder_org_id, act.org.org_id
                ),
            )
            .into());
        }
        Drawn::Payment { programme_code } if programme_code != quota.programme_code => {
            return Err(Rejection::invalid(
                "disbursement.programme_code",
                format!(
                    "the payment is of programme {programme_code}, quota {seq} of programme {}",
                    quota.programme_code
                ),
            )
            .into());
        }
        _ => {}
    }
    same_programme(act, field, &quota, legs_from)?;
    // Cash received may reach the amount; payments what was not issued on.
    let not_issued = quota
        .amount
        .checked_sub(quota.issued_down)
        .expect("a quota never issues down more than its amount");
    let (drawn_so_far, room, cash) = match drawn {
        Drawn::Cash { .. } => (&mut used.cash_received, quota.amount, true),
        Drawn::Payment { .. } | Drawn::Project => (&mut used.paid, not_issued, false),
    };
    let total = drawn_so_far.checked_add(amount).filter(|t| *t <= room);
    let Some(total) = total else {
        let what = if cash {
            "cash received against"
        } else {
            "paid against"
        };
        return Err(Rejection::precondition(
            field,
            format!(
                "quota {seq} allows {} fen and {} fen was already {what} it; {} fen more would pass it",
                room.0, drawn_so_far.0, amount.0
            ),
        )
        .into());
    };
    *drawn_so_far = total;
    act.txn.put(key::seq(key::QUOTA_USE, seq), &used);
    let draw = QuotaDraw {
        quota_seq: seq,
        cash,
        amount,
        day: act.day,
    };
    count_in_month(act, &draw, true)?;
    if cash {
        act.txn.put_raw(key::quota_cash(seq, act.seq), Vec::new());
    }
    act.txn.put(key::seq(key::QUOTA_DRAW, act.seq), &draw);
    Ok(())
}

/// Adds `draw` to (or, undoing it, takes it from) what its quota had drawn
/// in the draw's month, for the spending-progress report.
fn count_in_month<K: Kv + ?Sized>(
    act: &mut Act<K>,
    draw: &QuotaDraw,
    add: bool,
) -> Result<(), Error> {
    let month_key = key::quota_month(draw.quota_seq, crate::dates::month_of(draw.day));
    let mut month: QuotaUse = act.txn.read(&month_key)?.unwrap_or_default();
    let drawn = match draw.cash {
        true => &mut month.cash_received,
        false => &mut month.paid,
    };
    *drawn = match add {
        true => drawn.checked_add(draw.amount).ok_or_else(|| {
            Fault::corrupt(format!(
                "quota {} drew more than fits in a u64",
                draw.quota_seq
            ))
        })?,
        false => drawn.checked_sub(draw.amount).ok_or_else(|| {
            Fault::corrupt(format!(
                "quota {} records less drawn in a month than one record drew",
                draw.quota_seq
            ))
        })?,
    };
    act.txn.put(month_key, &month);
    Ok(())
}

/// Refuses a record whose legs (from `legs_from` on) move money of another
/// programme than `quota`'s (挤占挪用), or money its lineage did not create
/// the authority for. Quota created at the top by org X carries money X
/// appropriated, and money appropriated by an org outside X's line (neither
/// above nor below it: a paired org's, sent sideways), never money of an
/// org above or below X: no org can mint quota of its own to pay out money
/// the centre sent it, nor spend its own money against the centre's quota.
fn same_programme<K: Kv + ?Sized>(
    act: &Act<K>,
    field: &str,
    quota: &Quota,
    legs_from: usize,
) -> Result<(), Error> {
    let creator = match quota.parent_seq {
        None => quota.holder_org_id.clone(),
        Some(_) => {
            act.txn
                .quota(quota.root_seq)?
                .ok_or_else(|| {
                    Fault::corrupt(format!(
                        "quota {}, at the top of quota {}, is not in derived state",
                        quota.root_seq, quota.seq
                    ))
                })?
                .holder_org_id
        }
    };
    for leg in &act.effects.legs[legs_from..] {
        let source = act.txn.source(leg.source_seq)?.ok_or_else(|| {
            Fault::corrupt(format!("derived state lacks source {}", leg.source_seq))
        })?;
        if source.programme_code != quota.programme_code {
            return Err(Rejection::precondition(
                field,
                format!(
                    "the money moved includes source {} of programme {}; quota {} is for programme {}: pay it with money of that programme (name its sources)",
                    source.source_seq, source.programme_code, quota.seq, quota.programme_code
                ),
            )
            .into());
        }
        let appropriated_by = act
            .txn
            .account(&source.account_id)?
            .ok_or_else(|| {
                Fault::corrupt(format!(
                    "derived state lacks account {}, which source {} was appropriated into",
                    source.account_id, source.source_seq
                ))
            })?
            .owner_org_id;
        let in_line = appropriated_by != creator
            && (is_below(act, &appropriated_by, &creator)?
                || is_below(act, &creator, &appropriated_by)?);
        if in_line {
            return Err(Rejection::precondition(
                field,
                format!(
                    "the money moved includes source {}, appropriated by {appropriated_by}; quota {} descends from budget authority {creator} created: it carries money {creator} appropriated, or money of an org outside its line (a paired org's), never money of an org above or below {creator}",
                    source.source_seq, quota.seq
                ),
            )
            .into());
        }
    }
    Ok(())
}

/// Gives back to its quota what movement `seq` drew, when the movement is
/// reversed or the bank did not credit it.
pub(super) fn give_back<K: Kv + ?Sized>(act: &mut Act<K>, seq: u64) -> Result<(), Error> {
    let Some(draw) = act.txn.quota_draw(seq)? else {
        return Ok(());
    };
    let mut used = act.txn.quota_use(draw.quota_seq)?;
    let drawn = match draw.cash {
        true => &mut used.cash_received,
        false => &mut used.paid,
    };
    *drawn = drawn.checked_sub(draw.amount).ok_or_else(|| {
        Fault::corrupt(format!(
            "quota {} records less drawn than record {seq} drew on it",
            draw.quota_seq
        ))
    })?;
    act.txn.put(key::seq(key::QUOTA_USE, draw.quota_seq), &used);
    count_in_month(act, &draw, false)?;
    if draw.cash {
        act.txn.delete(key::quota_cash(draw.quota_seq, seq));
    }
    act.txn.delete(key::seq(key::QUOTA_DRAW, seq));
    Ok(())
}

/// Whether `org_id` lies below `above_org_id` (a descendant, not itself).
pub(super) fn is_below<K: Kv + ?Sized>(
    act: &Act<K>,
    org_id: &str,
    above_org_id: &str,
) -> Result<bool, Fault> {
    let chain = act.txn.org_chain(org_id)?;
    Ok(chain.iter().skip(1).any(|o| o.org_id == above_org_id))
}
