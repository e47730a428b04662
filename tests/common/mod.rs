//! Shared set-up for the end-to-end tests: a real server (in this process) on
//! a real data directory, reached over real gRPC on a loopback port.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fundtrail_api::pb;
use fundtrail_api::pb::request::Body as B;
use fundtrail_client::{Client, Session, Signer};
use fundtrail_core::clock::{Clock, SystemClock};
use fundtrail_core::rules::Rules;
use fundtrail_server::checkpoints::CheckpointPolicy;
use fundtrail_server::engine::{Engine, EngineConfig};
use fundtrail_server::genesis::{self, RootOrg};
use fundtrail_server::ServeOptions;

pub const SKEW_MS_MAX: u64 = 300_000;

pub struct TestServer {
    pub engine: Arc<Engine>,
    pub url: String,
    pub data_dir: PathBuf,
    /// Shared by every client this server hands out: each reads what the
    /// others wrote, as one user with several keys would expect.
    pub session: Session,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

/// Checkpoints signed quickly, so tests need not wait.
pub fn fast_checkpoints() -> CheckpointPolicy {
    CheckpointPolicy {
        every_records: 16,
        every_ms: 20,
    }
}

/// Opens the engine. A server stopped before has shut its engine down and
/// released the directory, so no retry is needed.
pub fn open_engine(
    data_dir: &Path,
    checkpoints: CheckpointPolicy,
    clock: Arc<dyn Clock>,
) -> Arc<Engine> {
    fundtrail_server::open(
        EngineConfig {
            skew_ms_max: SKEW_MS_MAX,
            checkpoints,
            clock,
            ..EngineConfig::new(data_dir)
        },
        fundtrail_server::Role::Writer {
            scrub_on_start: true,
        },
    )
    .unwrap_or_else(|e| panic!("engine did not open: {e}"))
}

/// Serving options without a read allowance to run out of: tests make
/// thousands of calls in a second. The allowance has its own test.
pub fn unmetered() -> ServeOptions {
    ServeOptions {
        boundary: fundtrail_server::boundary::BoundaryConfig {
            read_cost_per_second: std::num::NonZeroU32::MAX,
            read_cost_burst: std::num::NonZeroU32::MAX,
            ..Default::default()
        },
        ..Default::default()
    }
}

impl TestServer {
    /// Starts a server on `data_dir`, creating the ledger if there is none.
    pub async fn start(data_dir: &Path) -> TestServer {
        TestServer::start_with(data_dir, fast_checkpoints()).await
    }

    /// Starts a server on a new ledger in `data_dir` that begins under
    /// `rules` (an older version, for tests of what changed since).
    pub async fn start_under(data_dir: &Path, rules: Rules) -> TestServer {
        genesis::init_with(data_dir, &RootOrg::default(), rules, &SystemClock).expect("init");
        TestServer::start(data_dir).await
    }

    pub async fn start_with(data_dir: &Path, checkpoints: CheckpointPolicy) -> TestServer {
        TestServer::start_clocked(data_dir, checkpoints, Arc::new(SystemClock)).await
    }

    /// A server whose commit times and "today" come from `clock`.
    pub async fn start_clocked(
        data_dir: &Path,
        checkpoints: CheckpointPolicy,
        clock: Arc<dyn Clock>,
    ) -> TestServer {
        TestServer::start_serving(data_dir, checkpoints, clock, unmetered()).await
    }

    /// A server with its own serving options (TLS, boundary limits); its
    /// URL is https://localhost:PORT when it serves TLS.
    pub async fn start_serving(
        data_dir: &Path,
        checkpoints: CheckpointPolicy,
        clock: Arc<dyn Clock>,
        options: ServeOptions,
    ) -> TestServer {
        if !genesis::exists(data_dir) {
            genesis::init_with(
                data_dir,
                &RootOrg::default(),
                Rules::CURRENT,
                clock.as_ref(),
            )
            .expect("init");
        }
        let engine = open_engine(data_dir, checkpoints, clock);
        TestServer::serve(engine, data_dir, options).await
    }

    /// Serves an engine opened by the caller.
    pub async fn serve(engine: Arc<Engine>, data_dir: &Path, options: ServeOptions) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let url = match options.tls {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://127.0.0.1:{port}"),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(fundtrail_server::serve_on(
            engine.clone(),
            listener,
            options,
            async {
                let _ = stopped.await;
            },
        ));
        TestServer {
            engine,
            url,
            data_dir: data_dir.to_path_buf(),
            session: Session::default(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A client that signs its reads as the root org (reads everything).
    pub async fn client(&self) -> Client {
        self.client_as(&self.root()).await
    }

    /// A client that signs its reads with `reader`.
    pub async fn client_as(&self, reader: &Signer) -> Client {
        self.connect(Some(reader.clone())).await
    }

    /// A client with no reader key: public calls only.
    pub async fn anonymous_client(&self) -> Client {
        self.connect(None).await
    }

    async fn connect(&self, reader: Option<Signer>) -> Client {
        let options = fundtrail_client::ConnectOptions {
            reader,
            session: Some(self.session.clone()),
            ..Default::default()
        };
        Client::connect_with(&self.url, &options)
            .await
            .expect("connect")
    }

    /// Waits until derived state holds every durable record.
    pub fn settle(&self) {
        let count = self.engine.record_count();
        assert!(
            self.engine
                .indexed()
                .wait_blocking(count, std::time::Duration::from_secs(30)),
            "derived state reaches the journal"
        );
    }

    pub fn root(&self) -> Signer {
        Signer::from_key_file(&self.data_dir.join("root.key")).expect("root key")
    }

    /// Every key and value of derived state.
    pub fn dump(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.settle();
        self.engine.state().dump().expect("dump")
    }

    /// Stops serving and releases the data directory.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("server");
        }
    }
}

/// A server on a fresh data directory with [`build_chain`] posted, and a
/// client reading as the root org.
pub async fn start_with_chain() -> (tempfile::TempDir, TestServer, Client, Chain) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    (dir, server, client, chain)
}

pub fn new_signer() -> Signer {
    Signer::new(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))
}

/// The ledger's identity, size and whether it takes writes.
pub async fn ledger_info(client: &mut Client) -> pb::LedgerInfo {
    client
        .query
        .get_ledger(pb::GetLedgerRequest {})
        .await
        .expect("GetLedger")
        .into_inner()
}

/// The log's verifier key, as GetLogKey serves it.
pub async fn vkey(client: &mut Client) -> String {
    client
        .audit
        .get_log_key(pb::GetLogKeyRequest {})
        .await
        .expect("GetLogKey")
        .into_inner()
        .vkey
}

/// Posts and expects success.
pub async fn ok(client: &mut Client, signer: &Signer, body: B) -> pb::PostResponse {
    let what = format!("{body:?}");
    match client.post(signer, body).await {
        Ok(response) => response,
        Err(status) => panic!("post refused: {status:?}\nrequest: {what}"),
    }
}

pub fn open_account(id: &str, kind: pb::AccountKind, name: &str) -> B {
    B::OpenAccount(pb::OpenAccount {
        account_id: id.into(),
        kind: kind as i32,
        name: name.into(),
        ..Default::default()
    })
}

pub fn household(id: &str, registry_ref: &str) -> B {
    B::RegisterHousehold(pb::RegisterHousehold {
        account_id: id.into(),
        household_ref: registry_ref.into(),
        village_code: "622926100201".into(),
        basis: pb::SubsidyBasis::PerHousehold as i32,
        members: 4,
    })
}

pub fn register_org(id: &str, name: &str, role: pb::OrgRole, division: &str, key: &Signer) -> B {
    B::RegisterOrg(pb::RegisterOrg {
        org_id: id.into(),
        name: name.into(),
        role: role as i32,
        division_code: division.into(),
        public_key: key.public_key().to_vec(),
    })
}

pub fn appropriation(account: &str, amount_fen: u64, document: &str) -> B {
    B::Appropriation(pb::Appropriation {
        account_id: account.into(),
        amount_fen,
        programme_code: "2130599".into(),
        fiscal_year: 2026,
        document_no: document.into(),
        purpose: "中央财政衔接推进乡村振兴补助资金".into(),
        memo: String::new(),
    })
}

/// An import window for `org` open until `until` (YYYY-MM-DD): from rules 6
/// it may then post records marked imported, with past value dates.
pub fn import_window(org: &str, until: &str) -> B {
    B::DeclareImportWindow(pb::DeclareImportWindow {
        org_id: org.into(),
        until_date: until.into(),
        document_no: "财办〔2026〕1号 历史数据迁移".into(),
    })
}

/// Pairs `from` with `to` (东西部协作): from rules 6 `from` and its
/// descendants may then credit `to` and its descendants.
pub fn pairing(from: &str, to: &str) -> B {
    B::DeclarePairing(pb::DeclarePairing {
        from_org_id: from.into(),
        to_org_id: to.into(),
        document_no: "国办发〔2026〕3号 东西部协作结对".into(),
    })
}

pub fn transfer(from: &str, to: &str, amount_fen: u64, document: &str) -> B {
    B::Transfer(pb::Transfer {
        quota_seq: None,
        from_account_id: from.into(),
        to_account_id: to.into(),
        amount_fen,
        sources: Vec::new(),
        document_no: document.into(),
        purpose: "下达资金".into(),
        memo: String::new(),
    })
}

/// Budget quota (rules 8) of 衔接资金 (2130599) for 2026, 直达资金 with one
/// 项目代码: new at the top for the signer's own org when `from` is None,
/// else split from quota `from` to `to`.
pub fn quota(to: &str, from: Option<u64>, amount_fen: u64, document: &str) -> B {
    B::IssueQuota(pb::IssueQuota {
        to_org_id: to.into(),
        from_quota_seq: from,
        amount_fen,
        programme_code: "2130599".into(),
        fiscal_year: 2026,
        document_no: document.into(),
        direct: true,
        project_code: "100000213059926000001".into(),
    })
}

/// New quota of 衔接资金 (2130599) for 2026 at the top that `org` creates
/// for its own budget (not 直达资金, which only the root creates): it
/// carries `org`'s own money and money of orgs outside its line, such as a
/// paired org's (rules 9).
pub fn own_quota(org: &str, amount_fen: u64, document: &str) -> B {
    let mut body = quota(org, None, amount_fen, document);
    if let B::IssueQuota(q) = &mut body {
        (q.direct, q.project_code) = (false, String::new());
    }
    body
}

/// `body` (a Transfer or Disbursement) drawing on quota `seq` (rules 9:
/// cash down the levels and household payments follow quota), and
/// spending `sources` (source seq, fen) if any are given.
pub fn against(seq: Option<u64>, sources: &[(u64, u64)], mut body: B) -> B {
    let earmarks = sources
        .iter()
        .map(|&(source_seq, amount_fen)| pb::SourceAmount {
            source_seq,
            amount_fen,
        })
        .collect();
    match &mut body {
        B::Transfer(t) => (t.quota_seq, t.sources) = (seq, earmarks),
        B::Disbursement(d) => (d.quota_seq, d.sources) = (seq, earmarks),
        _ => unreachable!("only cash follows quota"),
    }
    body
}

pub fn disbursement(from: &str, household: &str, amount_fen: u64) -> B {
    B::Disbursement(pb::Disbursement {
        quota_seq: None,
        from_account_id: from.into(),
        household_account_id: household.into(),
        amount_fen,
        sources: Vec::new(),
        programme_code: "2130599".into(),
        period: "2026-03".into(),
        document_no: "东财农〔2026〕3号".into(),
        memo: String::new(),
    })
}

pub async fn balance(client: &mut Client, account: &str) -> u64 {
    client
        .query
        .get_account(pb::GetAccountRequest {
            account_id: account.into(),
            ..Default::default()
        })
        .await
        .expect("get account")
        .into_inner()
        .balance_fen
}

/// A small national chain: 财政部 → 甘肃省财政厅 → 东乡县 / 临夏县 财政局, an
/// audit office, household accounts, and money moved down to a household.
pub struct Chain {
    pub root: Signer,
    pub province: Signer,
    pub dongxiang: Signer,
    pub linxia: Signer,
    pub auditor: Signer,
    /// A key of the province that was revoked.
    pub revoked: Signer,
    /// Seq of the central appropriation (its source id).
    pub central_source: u64,
    /// Seq of a transfer that has been reversed.
    pub reversed_transfer: u64,
    /// Seq of the centre's ¥40m transfer to the province, most of which
    /// the province has sent on.
    pub province_cash: u64,
    /// Budget quota (rules 8), issued by the documents the cash cites: the
    /// centre's own, split to the province and by it to each county. Cash
    /// down the levels and household payments name them (rules 9).
    pub quota_central: u64,
    pub quota_province: u64,
    pub quota_dongxiang: u64,
    pub quota_linxia: u64,
}

impl Chain {
    /// `body` naming the chain's quota it draws on: see [`quota_of_gansu`].
    pub fn quota(&self, body: B) -> B {
        quota_of_gansu(
            body,
            self.quota_province,
            self.quota_dongxiang,
            self.quota_linxia,
        )
    }
}

/// `body` naming the quota it draws on (rules 9), of the province or a
/// county of the two test scenarios: a transfer down, the quota of the org
/// receiving it; a household payment, the payer's. The org is told by the
/// account's prefix (gs-, dx-, lx-).
pub fn quota_of_gansu(body: B, province: u64, dongxiang: u64, linxia: u64) -> B {
    let account = match &body {
        B::Transfer(t) => &t.to_account_id,
        B::Disbursement(d) => &d.from_account_id,
        _ => panic!("only cash follows quota"),
    };
    let seq = match account.split('-').next() {
        Some("gs") => province,
        Some("dx") => dongxiang,
        Some("lx") => linxia,
        _ => panic!("{account} is not an account of a quota holder of Gansu"),
    };
    against(Some(seq), &[], body)
}

/// Quota issued to the province and to each county in [`build_chain`]:
/// more than the cash sent there, so that tests may send and pay more.
pub const PROVINCE_QUOTA_FEN: u64 = 50_000_000_00;
pub const COUNTY_QUOTA_FEN: u64 = 15_000_000_00;

pub const CENTRAL_FEN: u64 = 100_000_000_00; // ¥100,000,000.00

/// 甘肃省财政厅 (`gs-czt`, division 620000), registered by the root org
/// with `province` as its key: the province both test scenarios use.
pub async fn register_gansu(client: &mut Client, root: &Signer, province: &Signer) {
    ok(
        client,
        root,
        register_org(
            "gs-czt",
            "甘肃省财政厅",
            pb::OrgRole::Finance,
            "620000",
            province,
        ),
    )
    .await;
}

/// Its two counties, registered by the province: 东乡 (`dx-czj`, 622926)
/// and 临夏 (`lx-czj`, 622921).
pub async fn register_gansu_counties(
    client: &mut Client,
    province: &Signer,
    dongxiang: &Signer,
    linxia: &Signer,
) {
    for (org, name, division, key) in [
        ("dx-czj", "东乡族自治县财政局", "622926", dongxiang),
        ("lx-czj", "临夏县财政局", "622921", linxia),
    ] {
        ok(
            client,
            province,
            register_org(org, name, pb::OrgRole::Finance, division, key),
        )
        .await;
    }
}

pub async fn build_chain(client: &mut Client, root: Signer) -> Chain {
    use pb::AccountKind as K;
    use pb::OrgRole as R;
    let province = new_signer();
    let dongxiang = new_signer();
    let linxia = new_signer();
    let auditor = new_signer();
    let revoked = new_signer();
    ok(
        client,
        &root,
        open_account("mof-xczx", K::Programme, "中央财政衔接推进乡村振兴补助资金"),
    )
    .await;
    let central_source = ok(
        client,
        &root,
        appropriation("mof-xczx", CENTRAL_FEN, "财农〔2026〕12号"),
    )
    .await
    .seq;
    register_gansu(client, &root, &province).await;
    ok(
        client,
        &root,
        register_org("cnao", "审计署", R::Auditor, "000000", &auditor),
    )
    .await;
    register_gansu_counties(client, &province, &dongxiang, &linxia).await;
    ok(
        client,
        &province,
        B::AddKey(pb::AddKey {
            org_id: "gs-czt".into(),
            public_key: revoked.public_key().to_vec(),
            read_only: false,
        }),
    )
    .await;
    ok(
        client,
        &province,
        B::RevokeKey(pb::RevokeKey {
            key_id: revoked.key_id().into(),
            reason: "密钥保管人员调离".into(),
        }),
    )
    .await;
    ok(
        client,
        &province,
        open_account("gs-xczx", K::Programme, "甘肃省衔接资金"),
    )
    .await;
    ok(
        client,
        &dongxiang,
        open_account("dx-xczx", K::Programme, "东乡县衔接资金"),
    )
    .await;
    ok(
        client,
        &dongxiang,
        household("dx-hh-0001", "HH-622926-0001"),
    )
    .await;
    ok(
        client,
        &linxia,
        open_account("lx-xczx", K::Programme, "临夏县衔接资金"),
    )
    .await;
    ok(client, &linxia, household("lx-hh-0001", "HH-622921-0001")).await;
    let quota_central = ok(
        client,
        &root,
        quota("mof", None, CENTRAL_FEN, "财农〔2026〕12号"),
    )
    .await
    .seq;
    let quota_province = ok(
        client,
        &root,
        quota(
            "gs-czt",
            Some(quota_central),
            PROVINCE_QUOTA_FEN,
            "财农〔2026〕20号",
        ),
    )
    .await
    .seq;
    let mut county_quota = Vec::new();
    for (county, document) in [
        ("dx-czj", "甘财农〔2026〕7号"),
        ("lx-czj", "甘财农〔2026〕8号"),
    ] {
        let split = quota(county, Some(quota_province), COUNTY_QUOTA_FEN, document);
        county_quota.push(ok(client, &province, split).await.seq);
    }
    let (quota_dongxiang, quota_linxia) = (county_quota[0], county_quota[1]);
    let province_cash = ok(
        client,
        &root,
        against(
            Some(quota_province),
            &[],
            transfer("mof-xczx", "gs-xczx", 40_000_000_00, "财农〔2026〕20号"),
        ),
    )
    .await
    .seq;
    ok(
        client,
        &province,
        against(
            Some(quota_dongxiang),
            &[],
            transfer("gs-xczx", "dx-xczx", 10_000_000_00, "甘财农〔2026〕7号"),
        ),
    )
    .await;
    ok(
        client,
        &province,
        against(
            Some(quota_linxia),
            &[],
            transfer("gs-xczx", "lx-xczx", 5_000_000_00, "甘财农〔2026〕8号"),
        ),
    )
    .await;
    ok(
        client,
        &dongxiang,
        against(
            Some(quota_dongxiang),
            &[],
            disbursement("dx-xczx", "dx-hh-0001", 3_000_00),
        ),
    )
    .await;
    let reversed_transfer = ok(
        client,
        &province,
        against(
            Some(quota_linxia),
            &[],
            transfer("gs-xczx", "lx-xczx", 1_000_00, "甘财农〔2026〕9号"),
        ),
    )
    .await
    .seq;
    ok(
        client,
        &linxia,
        B::Reversal(pb::Reversal {
            target_seq: reversed_transfer,
            document_no: "临财〔2026〕1号".into(),
            reason: "重复下达".into(),
        }),
    )
    .await;
    Chain {
        root,
        province,
        dongxiang,
        linxia,
        auditor,
        revoked,
        central_source,
        reversed_transfer,
        province_cash,
        quota_central,
        quota_province,
        quota_dongxiang,
        quota_linxia,
    }
}

/// A signed checkpoint of every record: signed now, by the server's own
/// checkpoint store (the one the background checkpointer uses), then
/// fetched over gRPC like any client would.
pub async fn checkpoint_of_all(
    server: &TestServer,
    client: &mut Client,
) -> pb::GetCheckpointResponse {
    let count = ledger_info(client).await.record_count;
    server
        .engine
        .checkpoints()
        .sign(count, server.engine.state())
        .expect("sign a checkpoint of every record");
    client
        .audit
        .get_checkpoint(pb::GetCheckpointRequest { tree_size: count })
        .await
        .expect("checkpoint")
        .into_inner()
}

/// Why the server refuses writes, once its start-up scrub has finished.
pub async fn read_only_reason(server: &TestServer, client: &mut Client) -> String {
    server.engine.join_scrub();
    let info = ledger_info(client).await;
    assert!(!info.writable, "the server kept accepting writes");
    info.read_only_reason
}

/// Rewrites the journal frame at `offset` with `change` applied to its record
/// bytes and a checksum that matches them again, as a careful forger would.
pub fn forge_record(journal: &Path, offset: u64, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(journal).expect("read journal");
    let start = offset as usize;
    let len = u32::from_le_bytes(bytes[start..start + 4].try_into().unwrap()) as usize;
    let mut record = bytes[start + 8..start + 8 + len].to_vec();
    change(&mut record);
    assert_eq!(record.len(), len, "a forgery keeps the frame length");
    bytes[start + 4..start + 8].copy_from_slice(&crc32c::crc32c(&record).to_le_bytes());
    bytes[start + 8..start + 8 + len].copy_from_slice(&record);
    std::fs::write(journal, bytes).expect("write journal");
}

/// Adds read-signature metadata (docs/read-signature.md) for a request
/// whose message bytes are `message`, signed by `signer` at `signed_at_ms`.
pub fn sign_read(
    metadata: &mut tonic::metadata::MetadataMap,
    message: &[u8],
    method: &str,
    ledger_id: &str,
    signer: &Signer,
    signed_at_ms: i64,
    nonce: &str,
) {
    use fundtrail_core::signing::{sha256, ReadClaim};
    let claim = ReadClaim {
        ledger_id,
        method,
        request_sha256: sha256(message),
        signed_at_ms,
        nonce,
    };
    let signature = claim.sign(signer.signing_key());
    metadata.insert("fundtrail-key-id", signer.key_id().parse().unwrap());
    metadata.insert(
        "fundtrail-signed-at-ms",
        signed_at_ms.to_string().parse().unwrap(),
    );
    metadata.insert("fundtrail-nonce", nonce.parse().unwrap());
    metadata.insert_bin(
        "fundtrail-signature-bin",
        tonic::metadata::BinaryMetadataValue::from_bytes(&signature),
    );
}

/// 16 fresh random bytes in hex, for a read signature.
pub fn fresh_nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// (seq, record) of every row of a PostgreSQL journal at `url`, in order,
/// read on a thread of its own: the driver may not be called from inside
/// the test's runtime.
pub fn pg_records(url: &str) -> Vec<(u64, Vec<u8>)> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let mut db = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        db.query(
            "SELECT seq, record FROM fundtrail_records ORDER BY seq",
            &[],
        )
        .expect("read the records")
        .iter()
        .map(|row| (row.get::<_, i64>(0) as u64, row.get(1)))
        .collect()
    })
    .join()
    .expect("read the records")
}

/// How long a replica may take to catch up, or to stop, in a test.
pub const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until the replica serves at least `count` records.
pub async fn verified(replica: &TestServer, count: u64) {
    assert!(
        replica.engine.indexed().wait(count, CATCH_UP).await,
        "the replica reached {count} records; it says: {:?}",
        replica.engine.read_only_reason()
    );
}

/// Waits until the replica says it stopped following, and returns why.
pub async fn stopped(replica: &TestServer) -> String {
    let mut status = replica
        .engine
        .replica_status()
        .expect("a replica")
        .subscribe();
    let reason = tokio::time::timeout(CATCH_UP, status.wait_for(|report| report.stopped))
        .await
        .expect("the replica stopped following in time")
        .expect("the replica's status")
        .reason
        .clone();
    assert!(reason.contains("stopped following"), "{reason}");
    reason
}

/// `clients` clients of `server` each pay dx-hh-0001 one fen `each` times
/// from dx-xczx as the chain's 东乡, all at once; returns when all were
/// accepted.
pub async fn pay_one_fen_concurrently(
    server: &TestServer,
    chain: &Chain,
    clients: usize,
    each: usize,
) {
    let mut loads = Vec::new();
    for _ in 0..clients {
        let (mut client, county) = (server.client().await, chain.dongxiang.clone());
        let payment = chain.quota(disbursement("dx-xczx", "dx-hh-0001", 1));
        loads.push(tokio::spawn(async move {
            for _ in 0..each {
                ok(&mut client, &county, payment.clone()).await;
            }
        }));
    }
    for load in loads {
        load.await.unwrap();
    }
}

/// The head of a raw gRPC call to `path` (`/package.Service/Method`) on the
/// server at `addr`, for tests that speak HTTP/2 themselves: the body
/// (length-prefixed messages) is theirs to send, or to hold back.
pub fn grpc_request(addr: impl std::fmt::Display, path: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("a request of fixed parts")
}
