//! The verifiable log end to end: signed checkpoints and proofs that check
//! against a pinned key, witnesses, export and the offline audit, and tamper
//! evidence on a stopped server's files.

mod common;

use common::*;
use fundtrail_api::pb;
use fundtrail_client::proofs::{
    open_pinned, verify_consistency, verify_inclusion, ConsistencyProof, InclusionProof,
};
use fundtrail_client::witness::{log_signed_note, witness_round, Round, WitnessState};
use fundtrail_server::checkpoints::CheckpointPolicy;
use fundtrail_tlog::ed25519_dalek::SigningKey;
use fundtrail_tlog::{verify_cosignature, CosignatureVerifier, CosignerKey};
use tonic::Code;

fn journal_path(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join(fundtrail_store::journal::JOURNAL_FILE_NAME)
}

async fn inclusion(
    client: &mut fundtrail_client::Client,
    index: u64,
    tree_size: u64,
) -> InclusionProof {
    client
        .audit
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            index,
            tree_size,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_proven_in_the_signed_tree_and_the_tree_only_grows() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    let vkey = vkey(&mut client).await;
    let old = checkpoint_of_all(&server, &mut client).await;
    assert_eq!(
        open_pinned(&vkey, &old.note).unwrap().root_hash.to_vec(),
        old.root_hash
    );

    // Every record, proven against the signed checkpoint.
    for index in 0..old.tree_size {
        let proof = inclusion(&mut client, index, old.tree_size).await;
        let record = verify_inclusion(&vkey, &old.note, &proof).unwrap();
        assert_eq!(record.seq, index);
        // One hash too many or too few is refused, and so is another record.
        let mut longer = proof.clone();
        longer.hashes.push(
            longer
                .hashes
                .first()
                .cloned()
                .unwrap_or_else(|| proof.record.clone()),
        );
        assert!(
            verify_inclusion(&vkey, &old.note, &longer).is_err(),
            "extra hash accepted at {index}"
        );
        if !proof.hashes.is_empty() {
            let mut shorter = proof.clone();
            shorter.hashes.pop();
            assert!(
                verify_inclusion(&vkey, &old.note, &shorter).is_err(),
                "short proof accepted at {index}"
            );
        }
        let mut other = proof.clone();
        other.index = (index + 1) % old.tree_size;
        assert!(
            verify_inclusion(&vkey, &old.note, &other).is_err(),
            "proof for the wrong leaf accepted"
        );
    }
    // A checkpoint signed by another key is refused.
    let stranger =
        fundtrail_tlog::NoteSigner::new("fundtrail/someone-else", SigningKey::from_bytes(&[3; 32]))
            .unwrap();
    assert!(open_pinned(&stranger.verifier().vkey(), &old.note).is_err());

    // More records; the new checkpoint extends the old one.
    for _ in 0..20 {
        ok(
            &mut client,
            &chain.dongxiang,
            chain.quota(disbursement("dx-xczx", "dx-hh-0001", 10_00)),
        )
        .await;
    }
    let new = checkpoint_of_all(&server, &mut client).await;
    assert!(new.tree_size > old.tree_size);
    let proof = client
        .audit
        .get_consistency_proof(pb::GetConsistencyProofRequest {
            first_size: old.tree_size,
            second_size: new.tree_size,
        })
        .await
        .unwrap()
        .into_inner();
    let proof = ConsistencyProof {
        first_size: old.tree_size,
        second_size: new.tree_size,
        hashes: proof
            .hashes
            .iter()
            .map(|h| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, h))
            .collect(),
    };
    verify_consistency(&vkey, &old.note, &new.note, &proof).unwrap();
    let mut broken = proof.clone();
    broken.hashes.reverse();
    assert!(verify_consistency(&vkey, &old.note, &new.note, &broken).is_err());
    let mut short = proof.clone();
    short.hashes.pop();
    assert!(verify_consistency(&vkey, &old.note, &new.note, &short).is_err());

    // Requests outside the tree get clear errors.
    let a = &mut client.audit;
    let count = new.tree_size;
    assert_eq!(
        code(
            a.get_inclusion_proof(pb::GetInclusionProofRequest {
                index: 0,
                tree_size: count + 5,
                ..Default::default()
            })
            .await
        ),
        Some(Code::OutOfRange)
    );
    assert_eq!(
        code(
            a.get_inclusion_proof(pb::GetInclusionProofRequest {
                index: count,
                tree_size: count,
                ..Default::default()
            })
            .await
        ),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        code(
            a.get_consistency_proof(pb::GetConsistencyProofRequest {
                first_size: 5,
                second_size: count + 1
            })
            .await
        ),
        Some(Code::OutOfRange)
    );
    assert_eq!(
        code(
            a.get_consistency_proof(pb::GetConsistencyProofRequest {
                first_size: 9,
                second_size: 4
            })
            .await
        ),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        code(
            a.get_checkpoint(pb::GetCheckpointRequest {
                tree_size: count + 100
            })
            .await
        ),
        Some(Code::NotFound)
    );
    assert_eq!(
        code(
            a.export_log(pb::ExportLogRequest {
                start: 0,
                end: count + 1
            })
            .await
        ),
        Some(Code::OutOfRange)
    );
    assert_eq!(
        code(
            a.export_log(pb::ExportLogRequest { start: 5, end: 2 })
                .await
        ),
        Some(Code::InvalidArgument)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_cosigns_consistent_checkpoints_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let root = server.root();
    let witness_key = SigningKey::from_bytes(&[21; 32]);
    let witness_signer = fundtrail_client::Signer::new(witness_key.clone());
    ok(
        &mut client,
        &root,
        register_org(
            "cnao-witness",
            "审计署见证节点",
            pb::OrgRole::Witness,
            "000000",
            &witness_signer,
        ),
    )
    .await;
    let vkey = vkey(&mut client).await;
    checkpoint_of_all(&server, &mut client).await;

    let mut state = WitnessState::default();
    let first = witness_round(
        &mut client,
        &vkey,
        "cnao-witness",
        &witness_key,
        &mut state,
        1_800_000_000,
    )
    .await
    .unwrap();
    let Round::Cosigned { tree_size } = first else {
        panic!("expected a cosignature, got {first:?}")
    };
    // The log serves the checkpoint with the witness's cosignature.
    let served = client
        .audit
        .get_checkpoint(pb::GetCheckpointRequest { tree_size })
        .await
        .unwrap()
        .into_inner();
    let cosigner = CosignatureVerifier::new("cnao-witness", witness_key.verifying_key()).unwrap();
    assert_eq!(
        verify_cosignature(&served.note, &cosigner).unwrap(),
        1_800_000_000
    );
    open_pinned(&vkey, &served.note).expect("still verifies with the log key");
    // Resending a cosignature, or cosigning the same checkpoint again later,
    // is answered OK and writes nothing: the first cosignature stands.
    let log_file = dir.path().join("checkpoints.log");
    let log_bytes = std::fs::metadata(&log_file).unwrap().len();
    for _ in 0..20 {
        let answer = client
            .audit
            .add_cosignature(pb::AddCosignatureRequest {
                cosigned_note: served.note.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.witnesses, vec!["cnao-witness".to_string()]);
    }
    let mut fresh = WitnessState::default();
    let later = witness_round(
        &mut client,
        &vkey,
        "cnao-witness",
        &witness_key,
        &mut fresh,
        1_800_000_005,
    )
    .await
    .unwrap();
    assert_eq!(later, Round::Cosigned { tree_size });
    assert_eq!(std::fs::metadata(&log_file).unwrap().len(), log_bytes);
    let served_again = client
        .audit
        .get_checkpoint(pb::GetCheckpointRequest { tree_size })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        verify_cosignature(&served_again.note, &cosigner).unwrap(),
        1_800_000_000
    );
    // Nothing new: nothing to cosign.
    let again = witness_round(
        &mut client,
        &vkey,
        "cnao-witness",
        &witness_key,
        &mut state,
        1_800_000_001,
    )
    .await
    .unwrap();
    assert_eq!(again, Round::Unchanged { tree_size });

    // The log grows; the witness checks consistency and cosigns the new checkpoint.
    ok(
        &mut client,
        &root,
        open_account("mof-a", pb::AccountKind::Treasury, "A"),
    )
    .await;
    checkpoint_of_all(&server, &mut client).await;
    let next = witness_round(
        &mut client,
        &vkey,
        "cnao-witness",
        &witness_key,
        &mut state,
        1_800_000_002,
    )
    .await
    .unwrap();
    assert!(matches!(next, Round::Cosigned { tree_size: t } if t > tree_size));

    // A witness that remembers another tree of the same past size refuses:
    // the log key itself signs a forged old checkpoint here.
    let log_key = fundtrail_core::keyfile::KeyFile::from_json(
        &std::fs::read_to_string(dir.path().join("log.key")).unwrap(),
    )
    .unwrap()
    .1;
    let origin = vkey.split('+').next().unwrap();
    let forged = fundtrail_tlog::Checkpoint {
        origin: origin.into(),
        tree_size: 2,
        root_hash: [7; 32],
    };
    let forged_note = fundtrail_tlog::sign_checkpoint(
        &forged,
        &fundtrail_tlog::NoteSigner::new(origin, log_key).unwrap(),
    )
    .unwrap();
    let mut fooled = WitnessState {
        note: Some(forged_note),
        tree_size: 2,
    };
    let refused = witness_round(
        &mut client,
        &vkey,
        "cnao-witness",
        &witness_key,
        &mut fooled,
        1_800_000_003,
    )
    .await
    .unwrap_err();
    assert!(refused.contains("refusing"), "{refused}");
    assert_eq!(fooled.tree_size, 2, "a refused round keeps the state");

    // The log refuses cosignatures from unknown witnesses and bad cosignatures.
    let latest = client
        .audit
        .get_checkpoint(pb::GetCheckpointRequest { tree_size: 0 })
        .await
        .unwrap()
        .into_inner();
    let body = open_pinned(&vkey, &latest.note).unwrap().to_body();
    let log_only = log_signed_note(&latest.note, origin);
    let stranger = CosignerKey::new("not-a-witness", SigningKey::from_bytes(&[22; 32])).unwrap();
    let note = format!(
        "{log_only}{}",
        stranger.cosign(&body, 1_800_000_004).unwrap()
    );
    let status = client
        .audit
        .add_cosignature(pb::AddCosignatureRequest {
            cosigned_note: note,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{}", status.message());
    let impostor = CosignerKey::new("cnao-witness", SigningKey::from_bytes(&[23; 32])).unwrap();
    let note = format!(
        "{log_only}{}",
        impostor.cosign(&body, 1_800_000_005).unwrap()
    );
    let status = client
        .audit
        .add_cosignature(pb::AddCosignatureRequest {
            cosigned_note: note,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{}", status.message());
    let honest = CosignerKey::new("cnao-witness", witness_key.clone()).unwrap();
    let not_signed_by_log = format!("{body}\n{}", honest.cosign(&body, 1_800_000_006).unwrap());
    let status = client
        .audit
        .add_cosignature(pb::AddCosignatureRequest {
            cosigned_note: not_signed_by_log,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{}", status.message());
    server.stop().await;
}

fn fundtrail(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_fundtrail"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run fundtrail")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_audit_checks_everything_and_names_a_forged_record() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    build_chain(&mut client, server.root()).await;
    let cp = checkpoint_of_all(&server, &mut client).await;
    let vkey = vkey(&mut client).await;
    let work = tempfile::tempdir().unwrap();
    let checkpoint = work.path().join("checkpoint.txt");
    std::fs::write(&checkpoint, &cp.note).unwrap();
    let export = export_from(&server, &work.path().join("export.log"), 0);

    let audit = |export: &std::path::Path| audit_json(export, &vkey, &checkpoint, &[]);
    let out = audit(&export);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["records"], cp.tree_size);
    assert_eq!(summary["appropriated_fen"], CENTRAL_FEN);
    assert_eq!(summary["disbursed_fen"], 3_000_00);
    assert_eq!(summary["idle_fen"], CENTRAL_FEN - 3_000_00);

    // A backup of the server's journal file, copied while it runs, audits
    // the same: the file kind differs, the records do not.
    let backup = work.path().join("backup-journal.log");
    std::fs::copy(journal_path(dir.path()), &backup).unwrap();
    let out = audit(&backup);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut from_backup: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut expected = summary.clone();
    for timed in [&mut from_backup, &mut expected] {
        timed["replay_records_per_second"] = serde_json::Value::Null;
    }
    assert_eq!(from_backup, expected);

    // Forge record 14 (a transfer): one byte of its amount, checksum fixed up.
    let forged = forged_copy(&server, dir.path(), &export, 14);
    let out = audit(&forged);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("record #14"),
        "names the forged record: {stderr}"
    );

    // A checkpoint signed by another key is refused.
    let other =
        fundtrail_tlog::NoteSigner::new("fundtrail/other", SigningKey::from_bytes(&[5; 32]))
            .unwrap();
    let out = fundtrail(&[
        "audit",
        "--export",
        export.to_str().unwrap(),
        "--vkey",
        &other.verifier().vkey(),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_resumes_from_the_checkpoint_it_saved_and_checks_what_it_skips() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    let first = checkpoint_of_all(&server, &mut client).await;
    let vkey = vkey(&mut client).await;
    let work = tempfile::tempdir().unwrap();
    let export = |name: &str, start: u64| export_from(&server, &work.path().join(name), start);
    let note = |name: &str, cp: &pb::GetCheckpointResponse| {
        let path = work.path().join(name);
        std::fs::write(&path, &cp.note).unwrap();
        path
    };
    let saved = work.path().join("audit.saved");
    let audit = |export: &std::path::Path, checkpoint: &std::path::Path, extra: &[&str]| {
        audit_json(export, &vkey, checkpoint, extra)
    };
    let json = |out: std::process::Output| -> serde_json::Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first_note = note("first.txt", &first);
    let saved_arg = saved.to_str().unwrap();
    let before = json(audit(
        &export("all-1.log", 0),
        &first_note,
        &["--save", saved_arg],
    ));
    assert_eq!(before["records"], first.tree_size);

    // More records, a newer checkpoint, and an export of only the new ones.
    ok(
        &mut client,
        &chain.province,
        chain.quota(transfer(
            "gs-xczx",
            "lx-xczx",
            2_000_00,
            "甘财农〔2026〕30号",
        )),
    )
    .await;
    ok(
        &mut client,
        &chain.dongxiang,
        chain.quota(disbursement("dx-xczx", "dx-hh-0001", 500_00)),
    )
    .await;
    let second = checkpoint_of_all(&server, &mut client).await;
    assert!(second.tree_size > first.tree_size);
    let second_note = note("second.txt", &second);
    let tail = export("tail.log", first.tree_size);
    let all = export("all-2.log", 0);
    let full = json(audit(&all, &second_note, &[]));
    let resumed = json(audit(
        &tail,
        &second_note,
        &["--since-checkpoint", saved_arg, "--save", saved_arg],
    ));
    assert_eq!(resumed["resumed_after_records"], first.tree_size);
    for field in [
        "records",
        "appropriated_fen",
        "withdrawn_fen",
        "disbursed_fen",
        "idle_fen",
        "accounts",
    ] {
        assert_eq!(resumed[field], full[field], "{field}");
    }
    assert_eq!(full["disbursed_fen"], 3_500_00);

    // Saved at the second checkpoint now: an export that starts earlier is
    // checked against it and skipped; an older checkpoint is refused.
    let again = json(audit(
        &all,
        &second_note,
        &["--since-checkpoint", saved_arg],
    ));
    assert_eq!(again["resumed_after_records"], second.tree_size);
    assert_eq!(again["records"], second.tree_size);
    let out = audit(&all, &first_note, &["--since-checkpoint", saved_arg]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fewer than"));

    // An export with a gap after the saved audit is refused, naming where it starts.
    let state_at_first = work.path().join("first.saved");
    json(audit(
        &all,
        &first_note,
        &["--save", state_at_first.to_str().unwrap()],
    ));
    let gap = export("gap.log", first.tree_size + 1);
    let out = audit(
        &gap,
        &second_note,
        &["--since-checkpoint", state_at_first.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("begins at record #{}", first.tree_size + 1)),
        "{stderr}"
    );

    // A record before the saved end that differs from the audited one is caught.
    let forged = forged_copy(&server, dir.path(), &all, 14);
    let out = audit(
        &forged,
        &second_note,
        &["--since-checkpoint", state_at_first.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("record #14 of the export differs"),
        "{stderr}"
    );

    // A damaged saved audit is refused, not trusted.
    let mut damaged = std::fs::read(&state_at_first).unwrap();
    let at = damaged.len() / 2;
    damaged[at] ^= 0x01;
    std::fs::write(&state_at_first, damaged).unwrap();
    let out = audit(
        &tail,
        &second_note,
        &["--since-checkpoint", state_at_first.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("damaged"));
    server.stop().await;
}

/// `fundtrail audit --json` of `export` against `checkpoint`, pinned to
/// `vkey`, with `extra` arguments.
fn audit_json(
    export: &std::path::Path,
    vkey: &str,
    checkpoint: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "audit",
        "--export",
        export.to_str().unwrap(),
        "--vkey",
        vkey,
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    fundtrail(&args)
}

/// Exports the server's records from `start` on to `out` with the CLI, as
/// the root org.
fn export_from(server: &TestServer, out: &std::path::Path, start: u64) -> std::path::PathBuf {
    let root_key = server.data_dir.join("root.key");
    let result = fundtrail(&[
        "export",
        "--server",
        &server.url,
        "--key",
        root_key.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--start",
        &start.to_string(),
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    out.to_path_buf()
}

/// A copy of `export` (next to it) in which record `seq` has one byte of
/// its middle flipped and its frame checksum fixed up.
fn forged_copy(
    server: &TestServer,
    data_dir: &std::path::Path,
    export: &std::path::Path,
    seq: u64,
) -> std::path::PathBuf {
    let offset = server.engine.state().record_location(seq).unwrap().unwrap() as usize;
    let forged = export.with_extension("forged");
    std::fs::copy(export, &forged).unwrap();
    let journal = std::fs::read(journal_path(data_dir)).unwrap();
    let export_offset = find(
        &std::fs::read(&forged).unwrap(),
        &journal[offset..offset + 64],
    );
    forge_record(&forged, export_offset as u64, |record| {
        let at = record.len() / 2;
        record[at] ^= 0x01;
    });
    forged
}

fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Option<Code> {
    r.err().map(|s| s.code())
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("frame present in the export")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_old_record_is_found_by_the_scrub() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    build_chain(&mut client, server.root()).await;
    checkpoint_of_all(&server, &mut client).await;
    let offset = server.engine.state().record_location(5).unwrap().unwrap();
    server.stop().await;

    forge_record(&journal_path(dir.path()), offset, |record| {
        let last = record.len() - 1;
        record[last] ^= 0x01;
    });
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let reason = read_only_reason(&server, &mut client).await;
    assert!(
        reason.contains("record 5"),
        "the background scrub names the record: {reason}"
    );
    let report = client
        .audit
        .scrub(pb::ScrubRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!report.ok);
    assert_eq!(report.first_bad_seq, Some(5), "{}", report.problem);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_balance_in_the_state_store_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    build_chain(&mut client, server.root()).await;
    let report = client
        .audit
        .scrub(pb::ScrubRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        report.ok,
        "an untouched ledger scrubs clean: {}",
        report.problem
    );
    server.stop().await;

    // Someone adds ¥1,000,000.00 to a county account directly in the state.
    {
        // The stopped server shut its engine down and let go of the state.
        let path = fundtrail_store::state::kv_dir(&fundtrail_server::engine::state_dir(dir.path()));
        let keyspace = fjall::Config::new(&path)
            .open()
            .expect("the state opens once the server is gone");
        let db = keyspace
            .open_partition(fundtrail_store::state::KV_PARTITION, Default::default())
            .unwrap();
        let key = fundtrail_core::state::key::named(fundtrail_core::state::key::ACCOUNT, "dx-xczx");
        let mut account: fundtrail_core::model::Account =
            fundtrail_core::state::decode(&db.get(&key).unwrap().unwrap()).unwrap();
        for amount in account.balances.values_mut() {
            amount.0 += 1_000_000_00;
        }
        db.insert(key, fundtrail_core::state::encode(&account))
            .unwrap();
        keyspace.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let reason = read_only_reason(&server, &mut client).await;
    assert!(
        reason.contains("account dx-xczx"),
        "names the changed account: {reason}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_checks_the_journal_against_the_newest_checkpoint() {
    // Checkpoints only at start-up, so later records are not yet covered.
    let rarely = CheckpointPolicy {
        every_records: 1_000_000,
        every_ms: 3_600_000,
    };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), rarely).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    server.stop().await;

    // Restart: a checkpoint of every record is signed at start-up.
    let server = TestServer::start_with(dir.path(), rarely).await;
    let mut client = server.client().await;
    let covered = client
        .audit
        .get_checkpoint(pb::GetCheckpointRequest { tree_size: 0 })
        .await
        .unwrap()
        .into_inner()
        .tree_size;
    let after = ok(
        &mut client,
        &chain.dongxiang,
        chain.quota(disbursement("dx-xczx", "dx-hh-0001", 1_00)),
    )
    .await
    .seq;
    assert_eq!(
        after, covered,
        "the new record is past the newest checkpoint"
    );
    let offset = server
        .engine
        .state()
        .record_location(after)
        .unwrap()
        .unwrap();
    server.stop().await;

    // (1) A record after the newest checkpoint is changed: found at start-up.
    let journal = journal_path(dir.path());
    let pristine = std::fs::read(&journal).unwrap();
    forge_record(&journal, offset, |record| {
        let last = record.len() - 1;
        record[last] ^= 0x01;
    });
    let server = TestServer::start_with(dir.path(), rarely).await;
    let mut client = server.client().await;
    let info = client
        .query
        .get_ledger(pb::GetLedgerRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!info.writable);
    assert!(
        info.read_only_reason.contains(&format!("record {after}")),
        "{}",
        info.read_only_reason
    );
    server.stop().await;

    // (2) The state is lost and the last records are deleted: the signed
    // checkpoint says how many there were.
    let cut_at = server_offset_of(&pristine, covered - 2);
    std::fs::write(&journal, &pristine[..cut_at]).unwrap();
    std::fs::remove_dir_all(fundtrail_server::engine::state_dir(dir.path())).unwrap();
    let server = TestServer::start_with(dir.path(), rarely).await;
    let mut client = server.client().await;
    let info = client
        .query
        .get_ledger(pb::GetLedgerRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!info.writable);
    assert!(
        info.read_only_reason.contains(&format!(
            "records {} to {} are missing",
            covered - 2,
            covered - 1
        )),
        "{}",
        info.read_only_reason
    );
    server.stop().await;
}

/// The byte offset of frame `seq` in a journal's bytes.
fn server_offset_of(journal: &[u8], seq: u64) -> usize {
    let (_, header_len) = fundtrail_store::header::FileHeader::read(
        &mut &journal[..],
        fundtrail_store::header::FileKind::Journal,
        None,
    )
    .unwrap();
    let mut offset = header_len as usize;
    for _ in 0..seq {
        let len = u32::from_le_bytes(journal[offset..offset + 4].try_into().unwrap()) as usize;
        offset += 8 + len;
    }
    offset
}

/// GetInclusionProofs streams the same proofs GetInclusionProof answers one
/// at a time, each checking against the signed root; it refuses an index
/// outside the tree, or too many, before sending any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_proofs_stream_in_the_order_asked_and_check_against_the_root() {
    use tokio_stream::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    build_chain(&mut client, server.root()).await;
    let checkpoint = checkpoint_of_all(&server, &mut client).await;
    let tree_size = checkpoint.tree_size;
    let root: fundtrail_tlog::Hash = checkpoint.root_hash.as_slice().try_into().unwrap();
    let mut anonymous = server.anonymous_client().await;
    let indexes: Vec<u64> = (0..tree_size).rev().chain([0, tree_size / 2]).collect();
    let proofs: Vec<pb::GetInclusionProofResponse> = anonymous
        .audit
        .get_inclusion_proofs(pb::GetInclusionProofsRequest {
            tree_size,
            indexes: indexes.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(proofs.len(), indexes.len());
    for (proof, &index) in proofs.iter().zip(&indexes) {
        assert_eq!(proof.index, index, "in the order asked");
        assert!(proof.record.is_empty(), "hashes only");
        let hashes: Vec<fundtrail_tlog::Hash> = proof
            .hashes
            .iter()
            .map(|h| h.as_slice().try_into().unwrap())
            .collect();
        let leaf: fundtrail_tlog::Hash = proof.leaf_hash.as_slice().try_into().unwrap();
        fundtrail_tlog::check_record(&hashes, tree_size, &root, index, &leaf).unwrap();
        let record = server.engine.record_bytes(index).unwrap();
        assert_eq!(leaf, fundtrail_tlog::record_hash(&record));
        let one = anonymous
            .audit
            .get_inclusion_proof(pb::GetInclusionProofRequest {
                index,
                tree_size,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(one.hashes, proof.hashes);
    }
    let refused = |indexes: Vec<u64>| {
        let mut anonymous = anonymous.clone();
        async move {
            anonymous
                .audit
                .get_inclusion_proofs(pb::GetInclusionProofsRequest { tree_size, indexes })
                .await
                .map(|_| ())
                .unwrap_err()
                .code()
        }
    };
    assert_eq!(refused(vec![0, tree_size]).await, Code::InvalidArgument);
    assert_eq!(
        refused(vec![
            0;
            fundtrail_core::limits::INCLUSION_PROOFS_PER_CALL_MAX
                + 1
        ])
        .await,
        Code::ResourceExhausted
    );
    server.stop().await;
}

/// The audit's parallel replay checks signatures ahead on other threads;
/// it must reach the same state and root as the one-by-one replay, and
/// stop at the same record, for the same reason, when a signature is bad.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parallel_replay_agrees_with_the_sequential_one() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    build_chain(&mut client, server.root()).await;
    let count = ledger_info(&mut client).await.record_count;
    let records: Vec<Vec<u8>> = (0..count)
        .map(|seq| server.engine.record_bytes(seq).unwrap())
        .collect();
    server.stop().await;

    let mut sequential = fundtrail_verify::Replay::new();
    for record in &records {
        sequential.push(record).unwrap();
    }
    for threads in [1, 2, 3] {
        let mut parallel = fundtrail_verify::Replay::new();
        fundtrail_verify::replay_all(&mut parallel, records.clone().into_iter(), threads, |_| {})
            .unwrap();
        assert_eq!(parallel.record_count(), count);
        assert_eq!(parallel.root(count), sequential.root(count));
        assert!(parallel.state == sequential.state, "{threads} threads");
    }

    // A bad signature deep in the log: both stop there, saying the same.
    let bad_at = count - 3;
    let mut record =
        fundtrail_api::pb::Record::decode(records[bad_at as usize].as_slice()).unwrap();
    record.request.as_mut().unwrap().signature[5] ^= 1;
    let mut tampered = records.clone();
    tampered[bad_at as usize] = record.encode_to_vec();
    let mut sequential = fundtrail_verify::Replay::new();
    let expected = tampered
        .iter()
        .enumerate()
        .find_map(|(seq, r)| sequential.push(r).err().map(|e| (seq as u64, e)))
        .unwrap();
    assert_eq!(expected.0, bad_at);
    let mut parallel = fundtrail_verify::Replay::new();
    let found =
        fundtrail_verify::replay_all(&mut parallel, tampered.into_iter(), 2, |_| {}).unwrap_err();
    assert_eq!(found, expected);
}

/// A checkpoint the log once published, older than the newest, that the
/// tree does not extend (a fork signed in the past) keeps the ledger from
/// writing, naming its size: every published checkpoint is checked, not
/// only the newest.
#[tokio::test]
async fn an_older_published_checkpoint_the_tree_does_not_extend_stops_writes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    build_chain(&mut client, server.root()).await;
    checkpoint_of_all(&server, &mut client).await;
    let ledger_id = ledger_info(&mut client).await.ledger_id;
    // A size the log never signed (two checkpoints of one size are refused
    // outright, a different case).
    let signed: Vec<u64> = server
        .engine
        .checkpoints()
        .all()
        .iter()
        .map(|s| s.checkpoint.tree_size)
        .collect();
    let size = (2..).find(|n| !signed.contains(n)).unwrap();
    server.stop().await;

    // The log's key signs a checkpoint of that size with another root, as
    // a log that forked would have, and it sits among the published ones.
    let text = std::fs::read_to_string(
        dir.path()
            .join(fundtrail_server::genesis::LOG_KEY_FILE_NAME),
    )
    .unwrap();
    let (_, key) = fundtrail_core::keyfile::KeyFile::from_json(&text).unwrap();
    let origin = fundtrail_server::engine::checkpoint_origin(&ledger_id);
    let signer = fundtrail_tlog::NoteSigner::new(&origin, key).unwrap();
    let forked = fundtrail_tlog::Checkpoint {
        origin,
        tree_size: size,
        root_hash: [7; 32],
    };
    let note = fundtrail_tlog::sign_checkpoint(&forked, &signer).unwrap();
    let mut log = fundtrail_store::Journal::open(
        &dir.path()
            .join(fundtrail_server::checkpoints::CHECKPOINTS_FILE_NAME),
        fundtrail_store::header::FileKind::Checkpoints,
        None,
    )
    .unwrap();
    log.append(&[note.into_bytes()]).unwrap();
    drop(log);

    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let reason = read_only_reason(&server, &mut client).await;
    assert!(
        reason.contains("the root of the signed checkpoint of that size")
            && reason.contains(&format!("before {size} ")),
        "{reason}"
    );
    server.stop().await;
}
