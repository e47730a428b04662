//! Accounts as auditors read them: one account with its balance by source
//! now, as of a record or as of a business date; and the accounts a reader
//! may read, a page at a time.

use fundtrail_core::dates::parse_date;
use fundtrail_core::limits::LIST_SCAN_ROWS_MAX;
use fundtrail_core::model::Account;
use fundtrail_core::state::{decode, key, StateRead};
use fundtrail_core::{Error, Rejection};

use crate::trace::{balances_as_of, AsOf};
use crate::{Audience, LedgerView, ROWS_PER_WANTED_CHECK};

/// One account, and the moment its balances are asked for: now when
/// neither `as_of_seq` nor `as_of_date` is given.
#[derive(Debug, Clone, Default)]
pub struct AccountRequest {
    pub account_id: String,
    pub as_of_seq: Option<u64>,
    /// `YYYY-MM-DD`, or empty.
    pub as_of_date: String,
}

/// The account `request` names, its balances as of the moment asked.
pub fn account(ledger: &dyn LedgerView, request: &AccountRequest) -> Result<Account, Error> {
    let account_id = &request.account_id;
    let account = ledger.state().account(account_id)?.ok_or_else(|| {
        Rejection::not_found(
            "account_id",
            format!("account {account_id:?} does not exist"),
        )
    })?;
    let as_of = match (request.as_of_seq, request.as_of_date.as_str()) {
        (None, "") => return Ok(account),
        (Some(_), date) if !date.is_empty() => {
            return Err(
                Rejection::invalid("as_of_date", "give as_of_seq or as_of_date, not both").into(),
            )
        }
        (Some(as_of_seq), _) => as_of_record(ledger, &account, as_of_seq)?,
        (None, date) => AsOf::ValueDay(parse_date(date).ok_or_else(|| {
            Rejection::invalid(
                "as_of_date",
                "as_of_date must be a date of the form YYYY-MM-DD",
            )
        })?),
    };
    let balances = balances_as_of(ledger, &account, as_of)?;
    Ok(Account {
        balances,
        ..account
    })
}

/// Checks `as_of_seq` names a record at or after the account's opening.
fn as_of_record(ledger: &dyn LedgerView, account: &Account, as_of_seq: u64) -> Result<AsOf, Error> {
    let count = ledger.record_count();
    if as_of_seq >= count {
        return Err(Rejection::not_found(
            "as_of_seq",
            format!("record {as_of_seq} does not exist; the ledger holds {count} records"),
        )
        .into());
    }
    if as_of_seq < account.opened_seq {
        return Err(Rejection::precondition(
            "as_of_seq",
            format!(
                "account {} was opened by record {}, after record {as_of_seq}",
                account.account_id, account.opened_seq
            ),
        )
        .into());
    }
    Ok(AsOf::Seq(as_of_seq))
}

/// A page of accounts, and where the next begins (the last account id
/// examined; empty when there is no more).
#[derive(Debug, Clone, Default)]
pub struct AccountsPage {
    pub accounts: Vec<Account>,
    pub next_page_token: String,
}

/// Up to `page_size` accounts `audience` may read, in id order from just
/// after `after` (an account id, or empty for the first page), owned by
/// `owner_org_id` when it is given. A page examines at most
/// [`LIST_SCAN_ROWS_MAX`] accounts.
pub fn accounts(
    ledger: &dyn LedgerView,
    audience: &mut dyn Audience,
    owner_org_id: &str,
    after: &str,
    page_size: usize,
) -> Result<AccountsPage, Error> {
    let prefix = [key::ACCOUNT];
    let mut from = key::named(key::ACCOUNT, after);
    if !after.is_empty() {
        from.push(0);
    }
    let rows = ledger.state().scan(&prefix, &from, LIST_SCAN_ROWS_MAX)?;
    let mut accounts = Vec::new();
    let mut last_examined = None;
    let mut stopped_early = false;
    for (examined, (row_key, value)) in rows.iter().enumerate() {
        if accounts.len() == page_size {
            stopped_early = true;
            break;
        }
        if examined.is_multiple_of(ROWS_PER_WANTED_CHECK) {
            audience.still_wanted()?;
        }
        last_examined = Some(String::from_utf8_lossy(&row_key[1..]).into_owned());
        let account: Account = decode(value)?;
        if !owner_org_id.is_empty() && account.owner_org_id != owner_org_id {
            continue;
        }
        if audience.may_read(&account.account_id)? {
            accounts.push(account);
        }
    }
    let more = stopped_early || rows.len() == LIST_SCAN_ROWS_MAX;
    Ok(AccountsPage {
        accounts,
        next_page_token: match (more, last_examined) {
            (true, Some(last)) => last,
            _ => String::new(),
        },
    })
}
