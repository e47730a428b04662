//! The server's side of the access rules (`fundtrail_core::access`): it
//! gathers the facts they need from derived state — who owns an account,
//! which accounts a record names — and applies the answer to what a call
//! returns: whole, pseudonymised, left out, or PERMISSION_DENIED.

use std::collections::HashMap;

use fundtrail_api::pb;
use fundtrail_core::access::{decide, Answer, Call, Data, Owner, Party, Reader, RecordScope};
use fundtrail_core::model::AccountKind;
use fundtrail_core::state::StateRead;
use fundtrail_core::{Error, Fault, Rejection};
use tonic::{Request, Status};

use crate::boundary::Caller;
use crate::engine::Engine;

/// The reader of a signed call. The boundary refuses unsigned calls to
/// signed methods, so a missing caller here is a public call's.
pub fn reader<T>(request: &Request<T>) -> Result<Reader, Status> {
    request
        .extensions()
        .get::<Caller>()
        .map(|caller| caller.reader.clone())
        .ok_or_else(|| {
            Status::unauthenticated(
                "this call needs a signed read (docs/read-signature.md); the CLI signs with --key",
            )
        })
}

/// The reader of a public call, if it signed.
pub fn optional_reader<T>(request: &Request<T>) -> Option<Reader> {
    request
        .extensions()
        .get::<Caller>()
        .map(|caller| caller.reader.clone())
}

/// Facts about owners, read once per call.
pub struct Facts<'e> {
    engine: &'e Engine,
    owners: HashMap<String, Owner>,
    parties: HashMap<String, Option<Party>>,
}

impl<'e> Facts<'e> {
    pub fn new(engine: &'e Engine) -> Facts<'e> {
        Facts {
            engine,
            owners: HashMap::new(),
            parties: HashMap::new(),
        }
    }

    pub fn owner(&mut self, org_id: &str) -> Result<Owner, Fault> {
        if let Some(owner) = self.owners.get(org_id) {
            return Ok(owner.clone());
        }
        let chain = self.engine.state().org_chain(org_id)?;
        if chain.is_empty() {
            return Err(Fault::new(format!("derived state lacks org {org_id}")));
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

    /// Whether `account_id` is a household account `reader` may not see.
    fn hides(&mut self, reader: &Reader, account_id: &str) -> Result<bool, Fault> {
        Ok(match self.party(account_id)? {
            Some(party) => party.household && !fundtrail_core::access::sees(reader, &party.owner),
            None => false,
        })
    }

    /// What a stored record is about.
    pub fn record_scope(&mut self, entry: &pb::Entry) -> Result<RecordScope, Fault> {
        let request = stored_request(entry)?;
        if request.body.is_registry() {
            return Ok(RecordScope::Registry);
        }
        let effects = entry.effects.clone().unwrap_or_default();
        let mut accounts: Vec<String> = request
            .body
            .accounts_named()
            .into_iter()
            .map(str::to_string)
            .collect();
        for leg in &effects.legs {
            accounts.push(leg.from_account_id.clone());
            accounts.push(leg.to_account_id.clone());
        }
        accounts.sort();
        accounts.dedup();
        let mut parties = Vec::new();
        for account in accounts.iter().filter(|a| !a.is_empty()) {
            if let Some(party) = self.party(account)? {
                parties.push(party);
            }
        }
        Ok(RecordScope::Accounts {
            signer: self.owner(&effects.signer_org_id)?,
            parties,
        })
    }

    /// What `reader` gets of `entry` from `call`.
    pub fn entry_answer(
        &mut self,
        reader: &Reader,
        call: Call,
        entry: &pb::Entry,
    ) -> Result<Answer, Fault> {
        let scope = self.record_scope(entry)?;
        Ok(decide(reader, call, Data::Record(&scope)))
    }

    /// What `reader` gets of account `account_id` from `call`; an account
    /// that does not exist is NOT_FOUND for everyone alike.
    pub fn account_answer(
        &mut self,
        reader: &Reader,
        call: Call,
        account_id: &str,
    ) -> Result<Answer, Error> {
        let party = self.party(account_id)?.ok_or_else(|| {
            Rejection::not_found(
                "account_id",
                format!("account {account_id:?} does not exist"),
            )
        })?;
        Ok(decide(reader, call, Data::Account(&party)))
    }

    /// Replaces, in `entry`, every household account `reader` may not see
    /// by its pseudonym, and drops the signed bytes that would name it.
    pub fn pseudonymise_entry(
        &mut self,
        reader: &Reader,
        entry: &mut pb::Entry,
    ) -> Result<(), Fault> {
        entry.record.clear();
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
                self.mask(reader, &mut b.household_account_id)?;
            }
            B::RegisterHousehold(b) => {
                let hidden = self.mask(reader, &mut b.account_id)?;
                conceal(hidden, &b.account_id, [&mut b.household_ref]);
            }
            B::SetHouseholdStatus(b) => {
                self.mask(reader, &mut b.account_id)?;
            }
            B::Return(b) => {
                self.mask(reader, &mut b.from_account_id)?;
                self.mask(reader, &mut b.to_account_id)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Replaces `account_id` by its pseudonym if `reader` may not see it.
    pub fn mask(&mut self, reader: &Reader, account_id: &mut String) -> Result<bool, Fault> {
        if account_id.is_empty() || !self.hides(reader, account_id)? {
            return Ok(false);
        }
        *account_id = self.engine.household_pseudonym(account_id);
        Ok(true)
    }
}

/// Overwrites `fields` that would name a hidden household with its pseudonym.
fn conceal<'f>(hidden: bool, pseudonym: &str, fields: impl IntoIterator<Item = &'f mut String>) {
    if hidden {
        for field in fields {
            *field = pseudonym.to_string();
        }
    }
}

/// The request a stored record carries; every stored payload decoded when
/// it was accepted.
pub fn stored_request(entry: &pb::Entry) -> Result<fundtrail_core::model::Request, Fault> {
    let payload = entry
        .request
        .as_ref()
        .map(|r| r.payload.as_slice())
        .unwrap_or_default();
    fundtrail_api::decode_request(payload).map_err(|e| {
        Fault::new(format!(
            "record {}'s request does not decode: {e}",
            entry.seq
        ))
    })
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
