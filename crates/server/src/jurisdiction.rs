//! The server's side of the access rules (`fundtrail_core::access`): it
//! gathers the facts they need from derived state — who owns an account,
//! which accounts a record names — and applies the answer to what a call
//! returns: whole, pseudonymised, left out, or PERMISSION_DENIED.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fundtrail_api::pb;
use fundtrail_core::access::{decide, Answer, Call, Data, Owner, Party, Reader, RecordScope};
use fundtrail_core::model::AccountKind;
use fundtrail_core::state::StateRead;
use fundtrail_core::{Error, Fault, Rejection};
use fundtrail_query::Entry;
use tonic::{Request, Status};

use crate::boundary::Caller;
use crate::engine::Engine;
use crate::status::status;
use fundtrail_core::limits::ACCESS_LOG_IDS_MAX;

/// The caller of a signed call. The boundary refuses unsigned calls to
/// signed methods, so a missing caller here is a public call's.
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    optional_caller(request).ok_or_else(|| {
        Status::unauthenticated(
            "this call needs a signed read (docs/read-signature.md); the CLI signs with --key",
        )
    })
}

/// The caller of a public call, if it signed.
pub fn optional_caller<T>(request: &Request<T>) -> Option<Caller> {
    request.extensions().get::<Caller>().cloned()
}

/// Runs a public read off the async workers: store reads block.
pub async fn blocking<T: Send + 'static>(
    engine: Arc<Engine>,
    read: impl FnOnce(&Engine) -> Result<T, Error> + Send + 'static,
) -> Result<tonic::Response<T>, Status> {
    let answer = tokio::task::spawn_blocking(move || read(&engine))
        .await
        .map_err(|e| Status::unavailable(format!("the read did not finish: {e}")))?
        .map_err(status)?;
    Ok(tonic::Response::new(answer))
}

/// Answers a signed read off the async workers, and records it in the
/// access log: durably, before the answer leaves, when it revealed a
/// household. A read that cannot be recorded is not answered.
pub async fn answer<T: Send + 'static>(
    engine: Arc<Engine>,
    caller: Caller,
    read: impl FnOnce(&Engine, &Reader, &mut Facts<'_>) -> Result<T, Error> + Send + 'static,
) -> Result<tonic::Response<T>, Status> {
    // Dropped with this future when the client goes away.
    let _gone = GoneOnDrop(Arc::new(AtomicBool::new(false)));
    let flag = _gone.0.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let mut facts = Facts::new(&engine);
        facts.gone = flag;
        let result = read(&engine, &caller.reader, &mut facts);
        let outcome = match &result {
            Ok(_) => "OK".to_string(),
            Err(Error::Refused(rejection)) => rejection.code.grpc_name().to_string(),
            Err(Error::Fault(_)) => fundtrail_core::Code::Unavailable.grpc_name().to_string(),
        };
        let touched = facts.touched;
        let rows = match &result {
            Ok(_) => touched.rows.unwrap_or(1),
            Err(_) => 0,
        };
        log_read(
            &engine,
            &caller,
            caller.method,
            touched.accounts,
            touched.households,
            rows,
            outcome,
        )?;
        result
    })
    .await
    .map_err(|e| Status::unavailable(format!("the read did not finish: {e}")))?
    .map_err(status)?;
    Ok(tonic::Response::new(answer))
}

/// A signed read's whole handler: the caller the boundary checked, then
/// `read` on the request's message, run and logged by [`answer`].
pub async fn signed<Q: Send + 'static, A: Send + 'static>(
    engine: &Arc<Engine>,
    request: Request<Q>,
    read: fn(&Engine, &Reader, &mut Facts<'_>, Q) -> Result<A, Error>,
) -> Result<tonic::Response<A>, Status> {
    let caller = caller(&request)?;
    let request = request.into_inner();
    answer(engine.clone(), caller, move |engine, reader, facts| {
        read(engine, reader, facts, request)
    })
    .await
}

/// Raises its flag when dropped: a call's answer future is dropped when
/// its client goes away.
struct GoneOnDrop(Arc<AtomicBool>);

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Appends one read to the access log; durable first when it revealed a
/// household.
pub fn log_read(
    engine: &Engine,
    caller: &Caller,
    method: &str,
    accounts: BTreeSet<String>,
    households: BTreeSet<String>,
    rows: u64,
    outcome: String,
) -> Result<(), Fault> {
    // Household reads, and refusals that named an account (perhaps a
    // household), are on disk before the answer leaves.
    let durable = !households.is_empty() || (outcome != "OK" && !accounts.is_empty());
    let record = pb::AccessRecord {
        index: 0,
        time_ms: engine.clock().now_ms(),
        org_id: caller.reader.org_id.clone(),
        key_id: caller.key_id.clone(),
        method: method.to_string(),
        account_ids: accounts.into_iter().take(ACCESS_LOG_IDS_MAX).collect(),
        household_account_ids: households.into_iter().take(ACCESS_LOG_IDS_MAX).collect(),
        rows,
        outcome,
    };
    engine.access_log().record(record, durable)
}

/// What an answer concerned, for the access log.
#[derive(Debug, Default)]
pub struct Touched {
    pub accounts: BTreeSet<String>,
    /// Household accounts shown whole.
    pub households: BTreeSet<String>,
    /// Items returned, when not one.
    pub rows: Option<u64>,
}

/// Facts about owners, read once per call, and what the answer touched.
pub struct Facts<'e> {
    engine: &'e Engine,
    owners: HashMap<String, Owner>,
    parties: HashMap<String, Option<Party>>,
    pub touched: Touched,
    /// Set once the client stopped waiting for the answer.
    gone: Arc<AtomicBool>,
}

impl<'e> Facts<'e> {
    pub fn new(engine: &'e Engine) -> Facts<'e> {
        Facts {
            engine,
            owners: HashMap::new(),
            parties: HashMap::new(),
            touched: Touched::default(),
            gone: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Refuses to go on once the client has gone: a long scan checks this
    /// between pages, so it stops with its client.
    pub fn still_wanted(&self) -> Result<(), Rejection> {
        if self.gone.load(Ordering::Relaxed) {
            return Err(Rejection::unavailable(
                "the client went away before the answer was ready",
            ));
        }
        Ok(())
    }

    /// Notes how many items the answer holds.
    pub fn rows(&mut self, count: usize) {
        self.touched.rows = Some(count as u64);
    }

    /// Notes that the answer showed `account_id` whole.
    fn shown(&mut self, account_id: &str, household: bool) {
        if self.touched.accounts.len() < ACCESS_LOG_IDS_MAX {
            self.touched.accounts.insert(account_id.to_string());
        }
        if household && self.touched.households.len() < ACCESS_LOG_IDS_MAX {
            self.touched.households.insert(account_id.to_string());
        }
    }

    pub fn owner(&mut self, org_id: &str) -> Result<Owner, Fault> {
        if let Some(owner) = self.owners.get(org_id) {
            return Ok(owner.clone());
        }
        let chain = self.engine.state().org_chain(org_id)?;
        if chain.is_empty() {
            return Err(Fault::corrupt(format!("derived state lacks org {org_id}")));
        }
        let owner = Owner::of_chain(&chain);
        self.owners.insert(org_id.to_string(), owner.clone());
        Ok(owner)
    }

    /// The owner of an account, and whether it is a household's; `None` for
    /// an account that does not exist.
    pub fn party(&mut self, account_id: &str) -> Result<Option<Party>, Fault> {
        if let Some(party) = self.parties.get(account_id) {
            return Ok(party.clone());
        }
        let party = match self.engine.state().account(account_id)? {
            Some(account) => Some(Party {
                owner: self.owner(&account.owner_org_id)?,
                household: account.kind == AccountKind::Household,
            }),
            None => None,
        };
        self.parties.insert(account_id.to_string(), party.clone());
        Ok(party)
    }

    /// Whether `reader` may see every account in `account_ids` (accounts
    /// that do not exist name no one).
    pub fn sees_all(&mut self, reader: &Reader, account_ids: &[String]) -> Result<bool, Fault> {
        for account_id in account_ids {
            if let Some(party) = self.party(account_id)? {
                if !fundtrail_core::access::sees(reader, &party.owner) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Whether `account_id` is a household account `reader` may not see.
    fn hides(&mut self, reader: &Reader, account_id: &str) -> Result<bool, Fault> {
        Ok(match self.party(account_id)? {
            Some(party) => party.household && !fundtrail_core::access::sees(reader, &party.owner),
            None => false,
        })
    }

    /// What a stored record is about: `None` for the registry, else the
    /// signer and each account named.
    #[allow(clippy::type_complexity)]
    fn record_parties(
        &mut self,
        entry: &Entry,
    ) -> Result<Option<(Owner, Vec<(String, Party)>)>, Fault> {
        if entry.request.body.is_registry() {
            return Ok(None);
        }
        let mut accounts: Vec<&str> = entry.request.body.accounts_named();
        for leg in &entry.effects.legs {
            accounts.extend(leg.from_account_id.as_deref());
            accounts.extend(leg.to_account_id.as_deref());
        }
        accounts.sort();
        accounts.dedup();
        let mut parties = Vec::new();
        for account in accounts.into_iter().filter(|a| !a.is_empty()) {
            if let Some(party) = self.party(account)? {
                parties.push((account.to_string(), party));
            }
        }
        Ok(Some((self.owner(&entry.effects.signer_org_id)?, parties)))
    }

    /// What `reader` gets of `entry` from `call`; the accounts of an answer
    /// given whole are noted (a pseudonymised one notes what `mask` shows).
    pub fn entry_answer(
        &mut self,
        reader: &Reader,
        call: Call,
        entry: &Entry,
    ) -> Result<Answer, Fault> {
        let Some((signer, named)) = self.record_parties(entry)? else {
            return Ok(decide(reader, call, Data::Record(&RecordScope::Registry)));
        };
        let scope = RecordScope::Accounts {
            signer,
            parties: named.iter().map(|(_, party)| party.clone()).collect(),
        };
        let answer = decide(reader, call, Data::Record(&scope));
        if answer == Answer::Full {
            for (account_id, party) in &named {
                self.shown(account_id, party.household);
            }
        }
        Ok(answer)
    }

    /// What `reader` gets of account `account_id` from `call`. An account
    /// that does not exist is NOT_FOUND only to a reader of everything; to
    /// others it is refused exactly like one outside their jurisdiction.
    pub fn account_answer(
        &mut self,
        reader: &Reader,
        call: Call,
        account_id: &str,
    ) -> Result<Answer, Error> {
        let Some(party) = self.party(account_id)? else {
            if !reader.sees_everything() {
                if self.touched.accounts.len() < ACCESS_LOG_IDS_MAX {
                    self.touched.accounts.insert(account_id.to_string());
                }
                return Err(denied(format_args!("account {account_id}"), reader));
            }
            return Err(Rejection::not_found(
                "account_id",
                format!("account {account_id:?} does not exist"),
            )
            .into());
        };
        let answer = decide(reader, call, Data::Account(&party));
        if answer == Answer::Full {
            self.shown(account_id, party.household);
        } else if answer == Answer::Denied && self.touched.accounts.len() < ACCESS_LOG_IDS_MAX {
            // A refusal names what was asked for; an item left out of a
            // listing was never asked for and is not named.
            self.touched.accounts.insert(account_id.to_string());
        }
        Ok(answer)
    }

    /// Replaces, in `entry`, every household account `reader` may not see
    /// by its pseudonym, and drops the signed bytes that would name it.
    pub fn pseudonymise_entry(
        &mut self,
        reader: &Reader,
        entry: &mut pb::Entry,
    ) -> Result<(), Fault> {
        entry.record.clear();
        if let Some(body) = entry.body.as_mut() {
            body.idempotency_key.clear();
        }
        if let Some(request) = &mut entry.request {
            request.payload.clear();
            request.signature.clear();
        }
        if let Some(effects) = &mut entry.effects {
            for leg in &mut effects.legs {
                self.mask(reader, &mut leg.from_account_id)?;
                self.mask(reader, &mut leg.to_account_id)?;
            }
        }
        let Some(body) = entry.body.as_mut().and_then(|b| b.body.as_mut()) else {
            return Ok(());
        };
        use pb::request::Body as B;
        match body {
            B::OpenAccount(b) => {
                let hidden = self.mask(reader, &mut b.account_id)?;
                conceal(hidden, &b.account_id, [&mut b.household_ref, &mut b.name]);
            }
            B::Disbursement(b) => {
                let hidden = self.mask(reader, &mut b.household_account_id)?;
                conceal(hidden, "", [&mut b.memo, &mut b.period, &mut b.document_no]);
            }
            B::RegisterHousehold(b) => {
                let hidden = self.mask(reader, &mut b.account_id)?;
                conceal(hidden, &b.account_id, [&mut b.household_ref]);
                conceal(hidden, "", [&mut b.village_code]);
                if hidden {
                    b.members = 0;
                }
            }
            B::SetHouseholdStatus(b) => {
                let hidden = self.mask(reader, &mut b.account_id)?;
                conceal(hidden, "", [&mut b.reason, &mut b.document_no]);
            }
            B::SetMonitoring(b) => {
                let hidden = self.mask(reader, &mut b.account_id)?;
                conceal(hidden, "", [&mut b.reason, &mut b.document_no]);
                if hidden {
                    b.category = 0;
                }
            }
            B::Return(b) => {
                let hidden = self.mask(reader, &mut b.from_account_id)?
                    | self.mask(reader, &mut b.to_account_id)?;
                conceal(
                    hidden,
                    "",
                    [&mut b.reason, &mut b.document_no, &mut b.bank_reference],
                );
            }
            B::ConfirmCredit(b) => {
                let hidden = self.mask(reader, &mut b.household_account_id)?;
                conceal(hidden, "", [&mut b.bank_reference, &mut b.document_no]);
            }
            _ => {}
        }
        Ok(())
    }

    /// Replaces `account_id` by its pseudonym if `reader` may not see it.
    pub fn mask(&mut self, reader: &Reader, account_id: &mut String) -> Result<bool, Fault> {
        if account_id.is_empty() {
            return Ok(false);
        }
        if !self.hides(reader, account_id)? {
            let household = self.party(account_id)?.is_some_and(|p| p.household);
            self.shown(account_id, household);
            return Ok(false);
        }
        *account_id = self.engine.household_pseudonym(account_id);
        Ok(true)
    }
}

/// Overwrites `fields` that could name a hidden household with `with` (its
/// pseudonym, or nothing for free text).
fn conceal<'f>(hidden: bool, with: &str, fields: impl IntoIterator<Item = &'f mut String>) {
    if hidden {
        for field in fields {
            *field = with.to_string();
        }
    }
}

/// PERMISSION_DENIED for a call that names what the reader may not see.
pub fn denied(what: impl std::fmt::Display, reader: &Reader) -> Error {
    Rejection::denied(
        "",
        format!(
            "org {} may not read {what}: it lies outside the org's jurisdiction",
            reader.org_id
        ),
    )
    .into()
}
