//! Verifying replicas (`serve --follow-db`) of a ledger kept in replicated
//! PostgreSQL: a replica reading a synchronous standby catches up with a
//! writer under load and ends with the writer's balances; a replica shown
//! a forged record, or a checkpoint the records do not have, stops
//! following, keeps serving what it verified and writes the evidence.

mod common;

use std::path::Path;

use common::*;
use fundtrail_api::pb;
use fundtrail_core::clock::SystemClock;
use fundtrail_core::rules::Rules;
use fundtrail_pgtest::Cluster;
use fundtrail_server::engine::EngineConfig;
use fundtrail_server::follow::{Upstream, EVIDENCE_FILE_NAME};
use fundtrail_server::genesis::{self, JournalAt, RootOrg};
use prost::Message;

const APP_ROLE: &str = "fundtrail_app";
const READER_ROLE: &str = "fundtrail_reader";

/// A writer's engine on the primary, a standby, and the ledger's tables.
async fn writer(dir: &Path) -> (Cluster, Cluster, TestServer) {
    let primary = Cluster::start_primary(&["standby_a"]);
    let standby = Cluster::start_standby(&primary, "standby_a");
    genesis::init_at(
        dir,
        JournalAt::Postgres(&primary.url("postgres")),
        &RootOrg::default(),
        Rules::CURRENT,
        &SystemClock,
    )
    .unwrap();
    primary.admin(&format!("CREATE ROLE {APP_ROLE} LOGIN;"));
    primary.admin(&fundtrail_pg::grants_sql(APP_ROLE));
    // A replica only reads: SELECT on the tables, nothing more.
    primary.admin(&format!(
        "CREATE ROLE {READER_ROLE} LOGIN;
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER_ROLE};"
    ));
    let engine = fundtrail_server::open(
        EngineConfig {
            skew_ms_max: SKEW_MS_MAX,
            checkpoints: fast_checkpoints(),
            journal_url: Some(primary.url(APP_ROLE)),
            ..EngineConfig::new(dir)
        },
        fundtrail_server::Role::Writer {
            scrub_on_start: true,
        },
    )
    .unwrap_or_else(|e| panic!("writer did not open: {e}"));
    let server = TestServer::serve(engine, dir, unmetered()).await;
    (primary, standby, server)
}

/// A replica of the database at `url`, served; the test reads it with the
/// ledger's root key, copied from the writer's directory.
async fn replica(dir: &Path, writer_dir: &Path, url: &str) -> TestServer {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(writer_dir.join("root.key"), dir.join("root.key")).unwrap();
    let engine = fundtrail_server::open(
        EngineConfig {
            skew_ms_max: SKEW_MS_MAX,
            ..EngineConfig::new(dir)
        },
        fundtrail_server::Role::Replica(Upstream::Database(url.to_string())),
    )
    .unwrap_or_else(|e| panic!("replica did not open: {e}"));
    TestServer::serve(engine, dir, unmetered()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_of_a_standby_catches_up_under_load_and_agrees_with_the_writer() {
    let dirs = tempfile::tempdir().unwrap();
    let writer_dir = dirs.path().join("writer");
    let (_primary, standby, writer) = writer(&writer_dir).await;
    let mut client = writer.client().await;
    let chain = build_chain(&mut client, writer.root()).await;

    let replica = replica(
        &dirs.path().join("replica"),
        &writer_dir,
        &standby.url(READER_ROLE),
    )
    .await;
    let mut replica_client = replica.client().await;

    // The writer keeps posting while the replica follows.
    pay_one_fen_concurrently(&writer, &chain, 3, 80).await;
    let newest = checkpoint_of_all(&writer, &mut client).await;
    verified(&replica, newest.tree_size).await;

    // Caught up: no lag between what it verified and what the log signed.
    let mut status = replica.engine.replica_status().unwrap().subscribe();
    let newest_size = format!("newest checkpoint is of {} records", newest.tree_size);
    tokio::time::timeout(
        CATCH_UP,
        status.wait_for(|s| s.reason.contains(&newest_size)),
    )
    .await
    .expect("the status names the upstream's newest checkpoint")
    .unwrap();
    let info = ledger_info(&mut replica_client).await;
    assert_eq!(info.record_count, newest.tree_size);
    assert!(!info.writable);
    assert!(
        info.read_only_reason.contains("a replica of")
            && info
                .read_only_reason
                .contains(&format!("checkpoint of {} records", newest.tree_size)),
        "{}",
        info.read_only_reason
    );
    for account in ["dx-hh-0001", "dx-xczx", "gs-xczx"] {
        assert_eq!(
            balance(&mut replica_client, account).await,
            balance(&mut client, account).await,
            "{account}"
        );
    }
    // It serves the checkpoint it adopted, as the log signed it.
    let served = replica_client
        .audit
        .get_checkpoint(pb::GetCheckpointRequest { tree_size: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(served.note, newest.note);
    // And takes no writes.
    let refused = replica_client
        .post(
            &chain.dongxiang,
            chain.quota(disbursement("dx-xczx", "dx-hh-0001", 1)),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    replica.stop().await;
    writer.stop().await;
}

/// Signs, with the log key in `writer_dir`, a checkpoint of the first
/// `size` records with root `root`, and stores it in the database as the
/// log would.
fn sign_checkpoint_as_the_log(
    primary: &Cluster,
    writer_dir: &Path,
    ledger_id: &str,
    size: u64,
    root: [u8; 32],
) -> String {
    let text = std::fs::read_to_string(writer_dir.join(genesis::LOG_KEY_FILE_NAME)).unwrap();
    let (_, key) = fundtrail_core::keyfile::KeyFile::from_json(&text).unwrap();
    let origin = fundtrail_server::engine::checkpoint_origin(ledger_id);
    let signer = fundtrail_tlog::NoteSigner::new(&origin, key).unwrap();
    let checkpoint = fundtrail_tlog::Checkpoint {
        origin,
        tree_size: size,
        root_hash: root,
    };
    let note = fundtrail_tlog::sign_checkpoint(&checkpoint, &signer).unwrap();
    primary.admin(&format!(
        "DELETE FROM fundtrail_cosignatures WHERE tree_size >= {size};
         DELETE FROM fundtrail_checkpoints WHERE tree_size >= {size};
         INSERT INTO fundtrail_checkpoints VALUES ({size}, '\\x{}'::bytea, $note${note}$note$);",
        hex(&root)
    ));
    note
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stops_at_a_forked_checkpoint_or_a_forged_record_and_keeps_what_it_verified() {
    let dirs = tempfile::tempdir().unwrap();
    let writer_dir = dirs.path().join("writer");
    let (primary, standby, writer) = writer(&writer_dir).await;
    let mut client = writer.client().await;
    build_chain(&mut client, writer.root()).await;
    let ledger_id = ledger_info(&mut client).await.ledger_id;
    let first = checkpoint_of_all(&writer, &mut client).await;
    writer.stop().await;
    let upstream = standby.url(READER_ROLE);

    // A replica that verified the first checkpoint.
    let honest_dir = dirs.path().join("honest");
    let honest = replica(&honest_dir, &writer_dir, &upstream).await;
    verified(&honest, first.tree_size).await;
    honest.stop().await;

    // The log (its key stolen, or itself dishonest) appends a record that
    // is not what it claims and signs a checkpoint over it.
    let records = pg_records(&primary.url("postgres"));
    let (last_seq, last) = records.last().unwrap().clone();
    let mut forged = pb::Record::decode(last.as_slice()).unwrap();
    forged.seq = last_seq + 1;
    forged.commit_time_ms += 1;
    let forged = forged.encode_to_vec();
    let mut tree = fundtrail_tlog::MemoryHashes::new();
    for (_, record) in &records {
        tree.append(record).unwrap();
    }
    tree.append(&forged).unwrap();
    let size = last_seq + 2;
    let end: u64 = records.iter().map(|(_, r)| 8 + r.len() as u64).sum();
    primary.admin(&format!(
        "INSERT INTO fundtrail_records VALUES ({}, {end}, '\\x{}'::bytea, '\\x{}'::bytea);
         UPDATE fundtrail_head SET size = {size}, end_location = {}, root_hash = NULL;",
        last_seq + 1,
        hex(&forged),
        hex(&fundtrail_tlog::record_hash(&forged)),
        end + 8 + forged.len() as u64
    ));
    let root = fundtrail_tlog::tree_hash(size, &tree).unwrap();
    sign_checkpoint_as_the_log(&primary, &writer_dir, &ledger_id, size, root);

    let honest = replica(&honest_dir, &writer_dir, &upstream).await;
    let reason = stopped(&honest).await;
    assert!(
        reason.contains(&format!("record {}", last_seq + 1)),
        "{reason}"
    );
    let evidence = std::fs::read_to_string(honest_dir.join(EVIDENCE_FILE_NAME)).unwrap();
    assert!(evidence.contains(&format!("\n{size}\n")), "{evidence}");
    let mut replica_client = honest.client().await;
    assert_eq!(
        ledger_info(&mut replica_client).await.record_count,
        first.tree_size,
        "it serves what it verified"
    );
    assert_eq!(balance(&mut replica_client, "dx-hh-0001").await, 3_000_00);
    honest.stop().await;

    // The log signs another checkpoint of a size the replica verified.
    let fork =
        sign_checkpoint_as_the_log(&primary, &writer_dir, &ledger_id, first.tree_size, [7; 32]);
    let honest = replica(&honest_dir, &writer_dir, &upstream).await;
    let reason = stopped(&honest).await;
    assert!(reason.contains("two different checkpoints"), "{reason}");
    let evidence = std::fs::read_to_string(honest_dir.join(EVIDENCE_FILE_NAME)).unwrap();
    assert!(
        evidence.contains(&fork) && evidence.contains(&first.note),
        "both signed checkpoints are the evidence: {evidence}"
    );
    honest.stop().await;

    // A replica starting afresh replays the records and finds their root
    // is not the one signed.
    let fresh = replica(&dirs.path().join("fresh"), &writer_dir, &upstream).await;
    let reason = stopped(&fresh).await;
    assert!(reason.contains("not the root of those records"), "{reason}");
    fresh.stop().await;
}
