//! Budget quota (预算指标, rules 8): authority to spend, issued down the
//! levels apart from the cash that follows it. A quota at the top is new
//! authority its signer creates for itself (only the root org creates
//! 直达资金 quota); every other quota is split from one its signer holds, to
//! a child org, and keeps what the 直达 system keeps unchanged down the
//! levels: programme, fiscal year, the 直达 mark and the 项目代码.

use super::Act;
use crate::model::{IssueQuota, Quota, QuotaDocument};
use crate::money::Fen;
use crate::state::{key, Kv, StateRead};
use crate::{Error, Rejection};

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
    let held = parent.held();
    if q.amount > held {
        return Err(Rejection::precondition(
            "issue_quota.amount_fen",
            format!(
                "quota {} holds {} fen not yet issued down; {} fen cannot be split from it",
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
