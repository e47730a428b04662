//! Creating a ledger: the log key, the root org's key, and record 0.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use fundtrail_api::{effects_to_pb, pb};
use fundtrail_core::apply::{apply, Context, Outcome};
use fundtrail_core::keyfile::KeyFile;
use fundtrail_core::state::MemoryKv;
use fundtrail_core::{signing, validate};
use fundtrail_store::secret::write_secret_file;
use fundtrail_store::{Journal, JournalStore};
use prost::Message;
use rand::rngs::OsRng;

use fundtrail_core::clock::{Clock, SystemClock};
use fundtrail_core::rules::Rules;
use fundtrail_store::header::FileKind;
use fundtrail_store::journal::JOURNAL_FILE_NAME;

pub const LOG_KEY_FILE_NAME: &str = "log.key";
pub const ROOT_KEY_FILE_NAME: &str = "root.key";

/// Who the root org is.
#[derive(Debug, Clone)]
pub struct RootOrg {
    pub org_id: String,
    pub name: String,
    pub division_code: String,
}

impl Default for RootOrg {
    fn default() -> Self {
        RootOrg {
            org_id: "mof".into(),
            name: "中华人民共和国财政部".into(),
            division_code: "000000".into(),
        }
    }
}

/// What `init` made.
#[derive(Debug, Clone)]
pub struct Genesis {
    pub ledger_id: String,
    pub root_org_id: String,
    pub root_key_id: String,
    pub root_key_path: PathBuf,
    pub log_key_path: PathBuf,
}

/// Whether `data_dir` already holds a ledger (a non-empty journal).
pub fn exists(data_dir: &Path) -> bool {
    std::fs::metadata(data_dir.join(JOURNAL_FILE_NAME)).is_ok_and(|m| m.len() > 0)
}

/// Creates a new ledger in `data_dir` under the current rules: generates the
/// log key and the root org's key (written to files only the owner can read)
/// and writes the genesis record, signed by the root key, durably to the
/// journal.
pub fn init(data_dir: &Path, root: &RootOrg) -> Result<Genesis, String> {
    init_with(data_dir, root, Rules::CURRENT, &SystemClock)
}

/// [`init`] under the rules `rules`, at the time `clock` says. Older rules
/// are for tests and fixtures that show how old ledgers keep replaying.
pub fn init_with(
    data_dir: &Path,
    root: &RootOrg,
    rules: Rules,
    clock: &dyn Clock,
) -> Result<Genesis, String> {
    init_at(data_dir, JournalAt::File, root, rules, clock)
}

/// Where a ledger's journal is kept.
#[derive(Debug, Clone, Copy)]
pub enum JournalAt<'a> {
    /// `journal.log` in the data directory.
    File,
    /// The database at this connection string (docs/postgres.md).
    Postgres(&'a str),
}

/// Whether the ledger of `data_dir` exists where `at` says its journal is.
pub fn exists_at(data_dir: &Path, at: JournalAt<'_>) -> bool {
    match at {
        JournalAt::File => exists(data_dir),
        JournalAt::Postgres(url) => fundtrail_pg::PgJournal::open(url, None).is_ok(),
    }
}

/// [`init_with`], with the journal kept `at`.
pub fn init_at(
    data_dir: &Path,
    at: JournalAt<'_>,
    root: &RootOrg,
    rules: Rules,
    clock: &dyn Clock,
) -> Result<Genesis, String> {
    if exists_at(data_dir, at) || exists(data_dir) {
        return Err(format!("{} already holds a ledger", data_dir.display()));
    }
    validate::id("root org id", &root.org_id).map_err(|e| e.message)?;
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let log_key = SigningKey::generate(&mut OsRng);
    let root_key = SigningKey::generate(&mut OsRng);
    let ledger_id = format!("fundtrail-{}", hex::encode(rand::random::<[u8; 6]>()));
    let request = pb::Request {
        ledger_id: ledger_id.clone(),
        idempotency_key: "genesis".into(),
        signed_at_ms: clock.now_ms(),
        body: Some(pb::request::Body::Genesis(pb::Genesis {
            root_org_id: root.org_id.clone(),
            root_org_name: root.name.clone(),
            division_code: root.division_code.clone(),
            root_public_key: root_key.verifying_key().to_bytes().to_vec(),
            log_public_key: log_key.verifying_key().to_bytes().to_vec(),
            rules_version: rules.version(),
        })),
        ..Default::default()
    };
    let payload = request.encode_to_vec();
    let root_key_id = signing::key_id(&root_key.verifying_key().to_bytes());
    let signed = pb::SignedRequest {
        payload: payload.clone(),
        key_id: root_key_id.clone(),
        signature: signing::sign(&root_key, &payload).to_vec(),
    };
    let decoded = fundtrail_api::decode_request(&payload).map_err(|e| e.message)?;
    let commit_time_ms = clock.now_ms();
    let ctx = Context {
        seq: 0,
        commit_time_ms,
        key_id: &root_key_id,
        payload: &payload,
        signature: &signed.signature,
        verified_public_key: None,
        skew_ms_max: None,
    };
    let effects = match apply(&MemoryKv::new(), &ctx, &decoded).map_err(|e| e.to_string())? {
        Outcome::Accepted { effects, .. } => effects_to_pb(&effects),
        Outcome::Duplicate { .. } => return Err("genesis cannot be a duplicate".into()),
    };
    let record = pb::Record {
        seq: 0,
        commit_time_ms,
        request: Some(signed),
        effects: Some(effects),
    };

    let log_key_path = data_dir.join(LOG_KEY_FILE_NAME);
    let root_key_path = data_dir.join(ROOT_KEY_FILE_NAME);
    let write_key = |path: &Path, label: &str, key: &SigningKey| {
        write_secret_file(path, KeyFile::new(label, key).to_json().as_bytes())
            .map_err(|e| format!("cannot write key file {}: {e}", path.display()))
    };
    write_key(&log_key_path, "log", &log_key)?;
    write_key(
        &root_key_path,
        &format!("root org {}", root.org_id),
        &root_key,
    )?;
    // Without its journal the keys are no ledger: a failed init leaves
    // none behind, so that it can be run again.
    if let Err(e) = write_genesis(data_dir, at, &ledger_id, record.encode_to_vec()) {
        let _ = std::fs::remove_file(&log_key_path);
        let _ = std::fs::remove_file(&root_key_path);
        return Err(e);
    }
    Ok(Genesis {
        ledger_id,
        root_org_id: root.org_id.clone(),
        root_key_id,
        root_key_path,
        log_key_path,
    })
}

/// Creates the journal `at` for `ledger_id` and writes the genesis record.
fn write_genesis(
    data_dir: &Path,
    at: JournalAt<'_>,
    ledger_id: &str,
    record: Vec<u8>,
) -> Result<(), String> {
    let mut journal: Box<dyn JournalStore> = match at {
        JournalAt::File => Box::new(
            Journal::create(
                &data_dir.join(JOURNAL_FILE_NAME),
                FileKind::Journal,
                ledger_id,
            )
            .map_err(|e| format!("cannot create the journal: {e}"))?,
        ),
        JournalAt::Postgres(url) => Box::new(
            fundtrail_pg::PgJournal::create(url, ledger_id)
                .map_err(|e| format!("cannot create the journal in PostgreSQL: {e}"))?,
        ),
    };
    journal
        .append(&[record])
        .map_err(|e| format!("cannot write the genesis record: {e}"))?;
    Ok(())
}
