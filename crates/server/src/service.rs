//! The gRPC services `fundtrail.v1.Ledger` and `fundtrail.v1.Query`.

use std::sync::Arc;

use fundtrail_api::{account_to_pb, key_to_pb, org_to_pb, pb};
use fundtrail_core::limits::{PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, POST_BATCH_REQUESTS_MAX};
use fundtrail_core::model::Account;
use fundtrail_core::state::{decode, key, StateRead};
use fundtrail_core::{validate, Code, Rejection};
use tonic::{Request, Response, Status};

use crate::engine::{Committed, Engine};
use crate::status::status;

/// Rows a filtered list may examine for one page, so that a sparse filter
/// cannot turn one request into a scan of the whole ledger.
const LIST_SCAN_ROWS_MAX: usize = 10_000;

pub struct LedgerService {
    pub engine: Arc<Engine>,
}

pub struct QueryService {
    pub engine: Arc<Engine>,
}

fn post_response(committed: Committed) -> pb::PostResponse {
    pb::PostResponse {
        seq: committed.seq,
        commit_time_ms: committed.commit_time_ms,
        duplicate: committed.duplicate,
        effects: Some(committed.effects),
    }
}

#[tonic::async_trait]
impl pb::ledger_server::Ledger for LedgerService {
    async fn post(
        &self,
        request: Request<pb::SignedRequest>,
    ) -> Result<Response<pb::PostResponse>, Status> {
        let committed = self
            .engine
            .submit(request.into_inner())
            .await
            .map_err(status)?;
        Ok(Response::new(post_response(committed)))
    }

    async fn post_batch(
        &self,
        request: Request<pb::PostBatchRequest>,
    ) -> Result<Response<pb::PostBatchResponse>, Status> {
        let requests = request.into_inner().requests;
        if requests.is_empty() {
            return Err(status(Rejection::invalid(
                "requests",
                "the batch holds no requests",
            )));
        }
        if requests.len() > POST_BATCH_REQUESTS_MAX {
            return Err(status(Rejection::new(
                Code::ResourceExhausted,
                "requests",
                format!(
                    "the batch holds {} requests; at most {POST_BATCH_REQUESTS_MAX} are accepted",
                    requests.len()
                ),
            )));
        }
        let results = self
            .engine
            .submit_all(requests)
            .await
            .into_iter()
            .map(|result| pb::PostResult {
                result: Some(match result {
                    Ok(committed) => pb::post_result::Result::Ok(post_response(committed)),
                    Err(rejection) => pb::post_result::Result::Error(pb::PostError {
                        code: crate::status::code(rejection.code) as i32,
                        message: rejection.message,
                        field: rejection.field,
                    }),
                }),
            })
            .collect();
        Ok(Response::new(pb::PostBatchResponse { results }))
    }
}

/// A page size within bounds: 0 means the default.
fn page_size(requested: u32) -> Result<usize, Rejection> {
    match requested {
        0 => Ok(PAGE_SIZE_DEFAULT as usize),
        n if n > PAGE_SIZE_MAX => Err(Rejection::new(
            Code::ResourceExhausted,
            "page_size",
            format!("page_size {n} is above the largest page of {PAGE_SIZE_MAX}"),
        )),
        n => Ok(n as usize),
    }
}

fn seq_token(token: &str) -> Result<u64, Rejection> {
    if token.is_empty() {
        return Ok(0);
    }
    token.parse().map_err(|_| {
        Rejection::invalid("page_token", "the page token is not one this server issued")
    })
}

impl QueryService {
    fn account_pb(&self, account: &Account) -> pb::Account {
        let state = self.engine.state();
        account_to_pb(account, |seq| state.source(seq).ok().flatten())
    }
}

#[tonic::async_trait]
impl pb::query_server::Query for QueryService {
    async fn get_ledger(
        &self,
        _: Request<pb::GetLedgerRequest>,
    ) -> Result<Response<pb::LedgerInfo>, Status> {
        let meta = self.engine.meta();
        let reason = self.engine.read_only_reason();
        Ok(Response::new(pb::LedgerInfo {
            ledger_id: meta.ledger_id.clone(),
            root_org_id: meta.root_org_id.clone(),
            record_count: self.engine.record_count(),
            writable: reason.is_none(),
            read_only_reason: reason.unwrap_or_default(),
            log_public_key: meta.log_public_key.to_vec(),
        }))
    }

    async fn get_entry(
        &self,
        request: Request<pb::GetEntryRequest>,
    ) -> Result<Response<pb::Entry>, Status> {
        let entry = self
            .engine
            .entry(request.into_inner().seq)
            .map_err(status)?;
        Ok(Response::new(entry))
    }

    async fn list_entries(
        &self,
        request: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<pb::ListEntriesResponse>, Status> {
        let request = request.into_inner();
        let limit = page_size(request.page_size).map_err(status)?;
        let start = seq_token(&request.page_token).map_err(status)?;
        let count = self.engine.record_count();
        let seqs: Vec<u64> = if request.account_id.is_empty() {
            (start..count).take(limit).collect()
        } else {
            validate::id("account_id", &request.account_id).map_err(status)?;
            let state = self.engine.state();
            if state
                .account(&request.account_id)
                .map_err(status)?
                .is_none()
            {
                return Err(status(Rejection::not_found(
                    "account_id",
                    format!("account {:?} does not exist", request.account_id),
                )));
            }
            let prefix = key::account_entries(&request.account_id);
            let from = key::account_entry(&request.account_id, start);
            state
                .scan(&prefix, &from, limit)
                .map_err(status)?
                .into_iter()
                .filter_map(|(k, _)| k[prefix.len()..].try_into().ok().map(u64::from_be_bytes))
                .filter(|&seq| seq < count)
                .collect()
        };
        let mut entries = Vec::with_capacity(seqs.len());
        for &seq in &seqs {
            entries.push(self.engine.entry(seq).map_err(status)?);
        }
        let next_page_token = match seqs.last() {
            Some(&last) if seqs.len() == limit && last + 1 < count => (last + 1).to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListEntriesResponse {
            entries,
            next_page_token,
        }))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let account_id = request.into_inner().account_id;
        validate::id("account_id", &account_id).map_err(status)?;
        let account = self
            .engine
            .state()
            .account(&account_id)
            .map_err(status)?
            .ok_or_else(|| {
                status(Rejection::not_found(
                    "account_id",
                    format!("account {account_id:?} does not exist"),
                ))
            })?;
        Ok(Response::new(self.account_pb(&account)))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        let request = request.into_inner();
        let limit = page_size(request.page_size).map_err(status)?;
        let prefix = [key::ACCOUNT];
        let mut from = key::named(key::ACCOUNT, &request.page_token);
        if !request.page_token.is_empty() {
            // Start just after the last account of the previous page.
            from.push(0);
        }
        let rows = self
            .engine
            .state()
            .scan(&prefix, &from, LIST_SCAN_ROWS_MAX)
            .map_err(status)?;
        let mut accounts = Vec::new();
        let mut last_examined = None;
        let mut stopped_early = false;
        for (row_key, value) in &rows {
            if accounts.len() == limit {
                stopped_early = true;
                break;
            }
            last_examined = Some(String::from_utf8_lossy(&row_key[1..]).into_owned());
            let account: Account = decode(value).map_err(status)?;
            if request.owner_org_id.is_empty() || account.owner_org_id == request.owner_org_id {
                accounts.push(self.account_pb(&account));
            }
        }
        let more = stopped_early || rows.len() == LIST_SCAN_ROWS_MAX;
        let next_page_token = if more {
            last_examined.unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListAccountsResponse {
            accounts,
            next_page_token,
        }))
    }

    async fn get_org(
        &self,
        request: Request<pb::GetOrgRequest>,
    ) -> Result<Response<pb::Org>, Status> {
        let org_id = request.into_inner().org_id;
        validate::id("org_id", &org_id).map_err(status)?;
        let state = self.engine.state();
        let org = state.org(&org_id).map_err(status)?.ok_or_else(|| {
            status(Rejection::not_found(
                "org_id",
                format!("org {org_id:?} is not registered"),
            ))
        })?;
        let mut keys = Vec::with_capacity(org.key_ids.len());
        for key_id in &org.key_ids {
            if let Some(key) = state.key(key_id).map_err(status)? {
                keys.push(key_to_pb(&key));
            }
        }
        Ok(Response::new(org_to_pb(&org, keys)))
    }
}
