//! The `fundtrail.v1.Audit` service: the log key, signed checkpoints,
//! inclusion and consistency proofs, export, witness cosignatures, scrub.

use std::sync::Arc;

use crate::paced;
use fundtrail_api::pb;
use fundtrail_core::model::Role;
use fundtrail_core::state::StateRead;
use fundtrail_tlog::ed25519_dalek::VerifyingKey;
use fundtrail_tlog::{
    open_note, parse_signature_line, prove_record, prove_tree, signature_line, Checkpoint,
    CosignatureVerifier, Verifier,
};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::boundary::Caller;
use crate::engine::Engine;
use crate::jurisdiction::{self, Facts};
use crate::status::status;
use fundtrail_core::access::{decide, Answer, Call, Data, Reader};
use fundtrail_core::{Error, Fault, Rejection};
use fundtrail_query::Records;

use fundtrail_core::limits::{
    COSIGNED_NOTE_BYTES_MAX, EXPORT_BUFFER_RECORDS, INCLUSION_PROOFS_PER_CALL_MAX,
};

pub struct AuditService {
    pub engine: Arc<Engine>,
}

fn beyond(what: &str, size: u64, count: u64) -> Status {
    Status::out_of_range(format!(
        "{what} {size} is beyond the log, which holds {count} records"
    ))
}

fn hashes(proof: Vec<fundtrail_tlog::Hash>) -> Vec<Vec<u8>> {
    proof.into_iter().map(|h| h.to_vec()).collect()
}

/// Records `start..end` of an export, each whole if the caller may read it
/// whole, else as its leaf hash only (the tree still verifies; nothing of it
/// is revealed). The chunk is in the access log, durably, before it is sent.
fn export_chunk(
    engine: &Engine,
    caller: &Caller,
    start: u64,
    end: u64,
) -> Result<Vec<pb::ExportLogRecord>, Status> {
    let mut facts = Facts::new(engine);
    let mut items = Vec::with_capacity((end - start) as usize);
    let mut whole = 0;
    for index in start..end {
        let read = engine.read(index).map_err(status)?;
        let entry = read.wire;
        let item = if facts
            .entry_answer(&caller.reader, Call::ExportLog, &read.entry)
            .map_err(status)?
            == Answer::Full
        {
            whole += 1;
            pb::ExportLogRecord {
                index,
                record: entry.record,
                leaf_hash: Vec::new(),
            }
        } else {
            pb::ExportLogRecord {
                index,
                record: Vec::new(),
                leaf_hash: fundtrail_tlog::record_hash(&entry.record).to_vec(),
            }
        };
        items.push(item);
    }
    let touched = facts.touched;
    jurisdiction::log_read(
        engine,
        caller,
        "/fundtrail.v1.Audit/ExportLog",
        touched.accounts,
        touched.households,
        whole,
        "OK".into(),
    )
    .map_err(status)?;
    Ok(items)
}

/// A page of access-log entries about one household or one org's reads,
/// with a signed access checkpoint and each entry's proof against it.
fn access_log_page(
    engine: &Engine,
    reader: &Reader,
    facts: &mut Facts<'_>,
    request: pb::GetAccessLogRequest,
) -> Result<pb::GetAccessLogResponse, Error> {
    use pb::get_access_log_request::About;
    let limit = crate::service::page_size(request.page_size)?;
    let start = crate::service::seq_token(&request.page_token)?;
    let (household, org) = match &request.about {
        Some(About::HouseholdAccountId(account_id)) => {
            fundtrail_core::validate::id("household_account_id", account_id)?;
            if facts.account_answer(reader, Call::AccessLog, account_id)? != Answer::Full {
                return Err(jurisdiction::denied(
                    format_args!("the access log of household {account_id}"),
                    reader,
                ));
            }
            (Some(account_id.as_str()), None)
        }
        Some(About::OrgId(org_id)) => {
            fundtrail_core::validate::id("org_id", org_id)?;
            engine.state().org(org_id)?.ok_or_else(|| {
                Rejection::not_found("org_id", format!("org {org_id:?} is not registered"))
            })?;
            let party = fundtrail_core::access::Party {
                owner: facts.owner(org_id)?,
                household: false,
            };
            if decide(reader, Call::AccessLog, Data::Account(&party)) != Answer::Full {
                return Err(jurisdiction::denied(
                    format_args!("the access log of org {org_id}"),
                    reader,
                ));
            }
            (None, Some(org_id.as_str()))
        }
        None => {
            return Err(
                Rejection::invalid("about", "name a household_account_id or an org_id").into(),
            )
        }
    };
    let log = engine.access_log();
    let (checkpoint, note) = log.checkpoint()?;
    let indexes = log.find(household, org, start, limit + 1);
    let state = engine.state();
    let mut audit_divisions: std::collections::HashMap<String, Option<String>> =
        std::collections::HashMap::new();
    let mut entries = Vec::with_capacity(limit);
    let mut next_page_token = String::new();
    for index in indexes {
        if index >= checkpoint.tree_size {
            break;
        }
        if entries.len() == limit {
            next_page_token = index.to_string();
            break;
        }
        let (record, proof) = log.entry(index, checkpoint.tree_size)?;
        // An entry naming accounts outside the reader's jurisdiction (an
        // export by a national office, say) is proved but not shown.
        let decoded = pb::AccessRecord::decode(record.as_slice()).map_err(|e| {
            Fault::corrupt(format!("access-log entry {index} does not decode: {e}"))
        })?;
        let named: Vec<String> = decoded
            .account_ids
            .into_iter()
            .chain(decoded.household_account_ids)
            .collect();
        // A read by an audit office is shown only to the root org and to
        // audit offices above it: never to the audited.
        let auditor_division = match audit_divisions.get(&decoded.org_id) {
            Some(division) => division.clone(),
            None => {
                let division = state
                    .org(&decoded.org_id)?
                    .filter(|o| o.role == fundtrail_core::model::Role::Auditor)
                    .map(|o| o.division_code);
                audit_divisions.insert(decoded.org_id.clone(), division.clone());
                division
            }
        };
        let audit_hidden = auditor_division
            .is_some_and(|division| !fundtrail_core::access::sees_audit_read(reader, &division));
        let (record, leaf_hash) = match !audit_hidden && facts.sees_all(reader, &named)? {
            true => (record, Vec::new()),
            false => (Vec::new(), fundtrail_tlog::record_hash(&record).to_vec()),
        };
        entries.push(pb::AccessLogEntry {
            index,
            record,
            inclusion_proof: hashes(proof),
            leaf_hash,
        });
    }
    facts.rows(entries.len());
    Ok(pb::GetAccessLogResponse {
        checkpoint_note: note,
        tree_size: checkpoint.tree_size,
        entries,
        next_page_token,
    })
}

/// Checks a witness's cosignatures against its registered keys before
/// anything is written, then keeps each (a cosignature already held is
/// not written again).
fn add_cosignature(engine: &Engine, note: &str) -> Result<pb::AddCosignatureResponse, Status> {
    let checkpoints = engine.checkpoints();
    let log = checkpoints.verifier();
    let opened = open_note(note, &[log as &dyn Verifier]).map_err(|e| {
        Status::unauthenticated(format!(
            "the note does not carry this log's valid signature: {e}"
        ))
    })?;
    let checkpoint = Checkpoint::parse(&opened.text)
        .map_err(|e| Status::invalid_argument(format!("the note is not a checkpoint: {e}")))?;
    let signed = checkpoints
        .get(checkpoint.tree_size)
        .filter(|s| s.checkpoint == checkpoint)
        .ok_or_else(|| Status::not_found("the log never signed this checkpoint"))?;
    let state = engine.state();
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    // Whether every refusal named an org that is no registered witness.
    let mut only_unknown = true;
    for line in &opened.unverified {
        let Ok(name) = parse_signature_line(line).map(|signature| signature.name) else {
            refused.push(format!("{line:?} is not a signature line"));
            only_unknown = false;
            continue;
        };
        let org = match state.org(&name).map_err(status)? {
            Some(org) if org.role == Role::Witness => org,
            _ => {
                refused.push(format!("{name:?} is not a registered witness"));
                continue;
            }
        };
        let mut verified = None;
        for key_id in &org.key_ids {
            let key = state.key(key_id).map_err(status)?.ok_or_else(|| {
                status(fundtrail_core::Fault::corrupt(format!(
                    "derived state lacks key {key_id} of witness {name}"
                )))
            })?;
            if key.revoked_seq.is_some() {
                continue;
            }
            let Ok(public) = VerifyingKey::from_bytes(&key.public_key) else {
                continue;
            };
            let Ok(cosigner) = CosignatureVerifier::new(&name, public) else {
                continue;
            };
            if let Ok(with_cosigner) = open_note(note, &[&cosigner as &dyn Verifier]) {
                if let Some(signature) = with_cosigner.verified.first() {
                    verified = Some(signature_line(
                        &name,
                        signature.key_id,
                        &signature.signature,
                    ));
                    break;
                }
            }
        }
        match verified {
            Some(line) => accepted.push((name, line)),
            None => {
                refused.push(format!(
                    "the cosignature of witness {name} does not verify with its registered keys"
                ));
                only_unknown = false;
            }
        }
    }
    if accepted.is_empty() {
        return Err(if refused.is_empty() {
            Status::invalid_argument("the note carries no cosignature")
        } else if only_unknown {
            Status::not_found(format!("unknown witness: {}", refused.join("; ")))
        } else {
            Status::unauthenticated(refused.join("; "))
        });
    }
    let mut witnesses = Vec::new();
    for (name, line) in accepted {
        checkpoints
            .add_cosignature(signed.checkpoint.tree_size, &name, line)
            .map_err(status)?;
        witnesses.push(name);
    }
    Ok(pb::AddCosignatureResponse {
        witnesses,
        tree_size: signed.checkpoint.tree_size,
    })
}

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditService {
    async fn get_log_key(
        &self,
        _: Request<pb::GetLogKeyRequest>,
    ) -> Result<Response<pb::GetLogKeyResponse>, Status> {
        Ok(Response::new(pb::GetLogKeyResponse {
            vkey: self.engine.checkpoints().verifier().vkey(),
            access_log_vkey: self.engine.access_log().verifier().vkey(),
        }))
    }

    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        let tree_size = request.into_inner().tree_size;
        let checkpoints = self.engine.checkpoints();
        let signed = if tree_size == 0 {
            checkpoints.latest()
        } else {
            checkpoints.get(tree_size)
        }
        .ok_or_else(|| {
            Status::not_found(format!(
                "the log signed no checkpoint of {tree_size} records"
            ))
        })?;
        Ok(Response::new(pb::GetCheckpointResponse {
            note: signed.note_with_cosignatures(),
            tree_size: signed.checkpoint.tree_size,
            root_hash: signed.checkpoint.root_hash.to_vec(),
        }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::GetInclusionProofResponse>, Status> {
        let caller = jurisdiction::optional_caller(&request);
        let request = request.into_inner();
        let tree_size = proof_tree_size(&self.engine, request.tree_size)?;
        let index = match request.leaf_hash.len() {
            0 => request.index,
            32 => {
                let leaf: fundtrail_tlog::Hash =
                    request.leaf_hash.as_slice().try_into().expect("32 bytes");
                let found = jurisdiction::blocking(self.engine.clone(), move |engine| {
                    Ok(engine.state().seq_of_leaf(&leaf)?)
                })
                .await?;
                match found.into_inner() {
                    Some(seq) if seq < tree_size => seq,
                    _ => {
                        return Err(Status::not_found(format!(
                            "no record in the tree of {tree_size} records has leaf hash {}",
                            hex::encode(&request.leaf_hash)
                        )))
                    }
                }
            }
            n => {
                return Err(Status::invalid_argument(format!(
                    "leaf_hash must be 32 bytes (SHA-256), not {n}"
                )))
            }
        };
        if index >= tree_size {
            return Err(Status::invalid_argument(format!(
                "record {index} is not in a tree of {tree_size} records (indexes start at 0)"
            )));
        }
        let prove = move |engine: &Engine, reader: Option<&Reader>, facts: &mut Facts<'_>| {
            let mut proof = public_proof(engine, tree_size, index)?;
            // The record's bytes go only to a signed reader who may read the
            // record whole.
            proof.record = match reader {
                Some(reader) => {
                    let read = engine.read(index)?;
                    match facts.entry_answer(reader, Call::InclusionProofRecord, &read.entry)? {
                        Answer::Full => read.wire.record,
                        _ => Vec::new(),
                    }
                }
                None => Vec::new(),
            };
            Ok(proof)
        };
        match caller {
            Some(caller) => {
                jurisdiction::answer(self.engine.clone(), caller, move |engine, reader, facts| {
                    prove(engine, Some(reader), facts)
                })
                .await
            }
            // Answered on the async worker: a public proof is a few reads of
            // the tree-hash file (in the page cache, 32 bytes a hash), and
            // handing it to the blocking pool cost more than the proof.
            None => prove(&self.engine, None, &mut Facts::new(&self.engine))
                .map(Response::new)
                .map_err(status),
        }
    }

    type GetInclusionProofsStream = paced::Paced<pb::GetInclusionProofResponse>;

    async fn get_inclusion_proofs(
        &self,
        request: Request<pb::GetInclusionProofsRequest>,
    ) -> Result<Response<Self::GetInclusionProofsStream>, Status> {
        let request = request.into_inner();
        let tree_size = proof_tree_size(&self.engine, request.tree_size)?;
        if request.indexes.len() > INCLUSION_PROOFS_PER_CALL_MAX {
            return Err(Status::resource_exhausted(format!(
                "{} indexes asked; one call proves at most {INCLUSION_PROOFS_PER_CALL_MAX}",
                request.indexes.len()
            )));
        }
        if let Some(index) = request.indexes.iter().find(|&&i| i >= tree_size) {
            return Err(Status::invalid_argument(format!(
                "record {index} is not in a tree of {tree_size} records (indexes start at 0)"
            )));
        }
        let engine = self.engine.clone();
        let indexes = request.indexes;
        let count = indexes.len() as u64;
        Ok(Response::new(paced::chunked(
            0,
            count,
            PROOFS_SENT_AHEAD,
            PROOFS_SENT_AHEAD,
            "position {} of the indexes asked",
            move |from, to| {
                indexes[from as usize..to as usize]
                    .iter()
                    .map(|&index| public_proof(&engine, tree_size, index).map_err(status))
                    .collect()
            },
        )))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::GetConsistencyProofResponse>, Status> {
        let request = request.into_inner();
        let count = self.engine.record_count();
        if request.second_size > count {
            return Err(beyond("second_size", request.second_size, count));
        }
        if request.first_size > request.second_size {
            return Err(Status::invalid_argument(format!(
                "first_size {} is larger than second_size {}: a consistency proof goes from an older, smaller tree to a newer one",
                request.first_size, request.second_size
            )));
        }
        jurisdiction::blocking(self.engine.clone(), move |engine| {
            let proof = prove_tree(request.second_size, request.first_size, engine.state())
                .map_err(|e| Fault::io(format!("the tree cannot be read: {e}")))?;
            Ok(pb::GetConsistencyProofResponse {
                hashes: hashes(proof),
            })
        })
        .await
    }

    type ExportLogStream = paced::Paced<pb::ExportLogRecord>;

    async fn export_log(
        &self,
        request: Request<pb::ExportLogRequest>,
    ) -> Result<Response<Self::ExportLogStream>, Status> {
        let caller = jurisdiction::caller(&request)?;
        let request = request.into_inner();
        let count = self.engine.record_count();
        let end = if request.end == 0 { count } else { request.end };
        if end > count {
            return Err(beyond("end", end, count));
        }
        if request.start > end {
            return Err(Status::invalid_argument(format!(
                "start {} is after end {end}",
                request.start
            )));
        }
        let engine = self.engine.clone();
        Ok(Response::new(paced::chunked(
            request.start,
            end,
            EXPORT_BUFFER_RECORDS,
            EXPORT_BUFFER_RECORDS,
            "seq {}",
            move |start, end| export_chunk(&engine, &caller, start, end),
        )))
    }

    async fn add_cosignature(
        &self,
        request: Request<pb::AddCosignatureRequest>,
    ) -> Result<Response<pb::AddCosignatureResponse>, Status> {
        let note = request.into_inner().cosigned_note;
        if note.len() > COSIGNED_NOTE_BYTES_MAX {
            return Err(Status::resource_exhausted(format!(
                "the note is {} bytes; at most {COSIGNED_NOTE_BYTES_MAX} are accepted",
                note.len()
            )));
        }
        let engine = self.engine.clone();
        // Ed25519 checks and the fsync of checkpoints.log: off the async workers.
        tokio::task::spawn_blocking(move || add_cosignature(&engine, &note))
            .await
            .map_err(|e| Status::unavailable(format!("the cosignature check did not finish: {e}")))?
            .map(Response::new)
    }

    async fn scrub(
        &self,
        request: Request<pb::ScrubRequest>,
    ) -> Result<Response<pb::ScrubResponse>, Status> {
        // A scrub reads the whole journal and may stop writes.
        let caller = jurisdiction::caller(&request)?;
        let allowed =
            jurisdiction::answer(self.engine.clone(), caller, |_, reader, _| {
                match decide(reader, Call::Scrub, Data::Ledger) {
                    Answer::Full => Ok(()),
                    _ => Err(Rejection::denied(
                        "",
                        format!(
                            "only an ADMINISTRATOR org may scrub the ledger; org {} is {:?}",
                            reader.org_id, reader.role
                        ),
                    )
                    .into()),
                }
            });
        allowed.await?;
        let engine = self.engine.clone();
        let report = tokio::task::spawn_blocking(move || {
            let report = crate::verify::scrub(&engine);
            if let Some(problem) = &report.problem {
                engine.metrics().scrubbed("problem");
                engine
                    .gate()
                    .stop(crate::gate::Stop::Scrub(problem.clone()));
            } else if !report.stopped {
                engine.metrics().scrubbed("intact");
            }
            report
        })
        .await
        .map_err(|e| Status::unavailable(format!("the scrub failed: {e}")))?;
        Ok(Response::new(pb::ScrubResponse {
            records_checked: report.records_checked,
            ok: report.problem.is_none(),
            first_bad_seq: report.first_bad_seq,
            problem: report.problem.unwrap_or_default(),
        }))
    }

    async fn get_access_log(
        &self,
        request: Request<pb::GetAccessLogRequest>,
    ) -> Result<Response<pb::GetAccessLogResponse>, Status> {
        jurisdiction::signed(&self.engine, request, access_log_page).await
    }

    async fn get_access_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::GetConsistencyProofResponse>, Status> {
        let request = request.into_inner();
        let engine = self.engine.clone();
        let proof = tokio::task::spawn_blocking(move || {
            engine
                .access_log()
                .consistency(request.first_size, request.second_size)
        })
        .await
        .map_err(|e| Status::unavailable(format!("the proof did not finish: {e}")))?
        .map_err(Status::out_of_range)?;
        Ok(Response::new(pb::GetConsistencyProofResponse {
            hashes: hashes(proof),
        }))
    }
}

/// The tree a proof is asked in: `requested`, or for 0 the newest
/// checkpoint's; never past the durable records.
fn proof_tree_size(engine: &Engine, requested: u64) -> Result<u64, Status> {
    let count = engine.record_count();
    let tree_size = match requested {
        0 => engine
            .checkpoints()
            .latest()
            .map(|s| s.checkpoint.tree_size)
            .unwrap_or(0),
        size => size,
    };
    if tree_size > count {
        return Err(beyond("tree_size", tree_size, count));
    }
    Ok(tree_size)
}

/// Inclusion proofs sent ahead of the client's reading.
const PROOFS_SENT_AHEAD: usize = 256;

/// The proof that record `index` is in the tree of `tree_size` records,
/// with its leaf hash, read from the tree alone (no record bytes).
fn public_proof(
    engine: &Engine,
    tree_size: u64,
    index: u64,
) -> Result<pb::GetInclusionProofResponse, Error> {
    let proof = prove_record(tree_size, index, engine.state())
        .map_err(|e| Fault::io(format!("the tree cannot be read: {e}")))?;
    let leaf_hash = engine
        .state()
        .read_hashes(&[fundtrail_tlog::stored_hash_index(0, index)])
        .map_err(|e| Fault::io(format!("the tree cannot be read: {e}")))?
        .pop()
        .expect("one hash per index asked")
        .to_vec();
    Ok(pb::GetInclusionProofResponse {
        index,
        tree_size,
        record: Vec::new(),
        hashes: hashes(proof),
        leaf_hash,
    })
}
