//! Every reader is known, and reads what its jurisdiction allows: signed
//! reads checked over real gRPC (unsigned, stale, replayed, tampered,
//! revoked, unregistered), and no household id or ref reaching an org
//! outside its allowed set through any call.

mod common;

use std::collections::BTreeMap;

use common::*;
use fundtrail_api::pb;
use fundtrail_client::{Client, Signer};
use prost::Message;
use tonic::Code;

/// A Query client over a raw channel: no signing of its own.
async fn raw_query(url: &str) -> pb::query_client::QueryClient<tonic::transport::Channel> {
    pb::query_client::QueryClient::connect(url.to_string())
        .await
        .expect("connect")
}

/// `message` for `method`, with read metadata signed by `signer` at
/// `signed_at_ms` with `nonce`.
fn signed<T: Message>(
    message: T,
    method: &str,
    ledger_id: &str,
    signer: &Signer,
    signed_at_ms: i64,
    nonce: &str,
) -> tonic::Request<T> {
    let bytes = message.encode_to_vec();
    let mut request = tonic::Request::new(message);
    sign_read(
        request.metadata_mut(),
        &bytes,
        method,
        ledger_id,
        signer,
        signed_at_ms,
        nonce,
    );
    request
}

const GET_ENTRY: &str = "/fundtrail.v1.Query/GetEntry";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_signed_by_registered_keys_once_and_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    let ledger_id = client.ledger_id().to_string();
    let root = server.root();
    let now = fundtrail_client::now_ms();
    let mut raw = raw_query(&server.url).await;
    let entry = pb::GetEntryRequest { seq: 1 };

    // No signature: refused, and told what to send.
    let refused = raw.get_entry(entry).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused.message().contains("fundtrail-key-id"),
        "{refused:?}"
    );

    // A good signature, from tonic's own metadata encoding.
    let nonce = fresh_nonce();
    let good = || signed(entry, GET_ENTRY, &ledger_id, &root, now, &nonce);
    assert_eq!(raw.get_entry(good()).await.unwrap().into_inner().seq, 1);
    // The very same metadata again: a replay.
    let replayed = raw.get_entry(good()).await.unwrap_err();
    assert_eq!(replayed.code(), Code::Unauthenticated);
    assert!(replayed.message().contains("already used"), "{replayed:?}");

    let cases: Vec<(&str, tonic::Request<pb::GetEntryRequest>, &str)> = vec![
        (
            "stale",
            signed(
                entry,
                GET_ENTRY,
                &ledger_id,
                &root,
                now - SKEW_MS_MAX as i64 - 60_000,
                &fresh_nonce(),
            ),
            "ms from the server's clock",
        ),
        (
            "from the future",
            signed(
                entry,
                GET_ENTRY,
                &ledger_id,
                &root,
                now + SKEW_MS_MAX as i64 + 60_000,
                &fresh_nonce(),
            ),
            "ms from the server's clock",
        ),
        (
            "another method's signature",
            signed(
                entry,
                "/fundtrail.v1.Query/GetAccount",
                &ledger_id,
                &root,
                now,
                &fresh_nonce(),
            ),
            "does not match",
        ),
        (
            "another ledger's signature",
            signed(
                entry,
                GET_ENTRY,
                "fundtrail-000000000000",
                &root,
                now,
                &fresh_nonce(),
            ),
            "does not match",
        ),
        (
            "an unregistered key",
            signed(
                entry,
                GET_ENTRY,
                &ledger_id,
                &new_signer(),
                now,
                &fresh_nonce(),
            ),
            "not registered",
        ),
        (
            "a revoked key",
            signed(
                entry,
                GET_ENTRY,
                &ledger_id,
                &chain.revoked,
                now,
                &fresh_nonce(),
            ),
            "revoked",
        ),
        (
            "a short nonce",
            signed(entry, GET_ENTRY, &ledger_id, &root, now, "abc"),
            "32 lowercase hex",
        ),
    ];
    for (what, request, says) in cases {
        let refused = raw.get_entry(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{what}: {refused:?}");
        assert!(
            refused.message().contains(says),
            "{what}: {}",
            refused.message()
        );
    }
    // A signature over one request does not carry another.
    let mut tampered = signed(entry, GET_ENTRY, &ledger_id, &root, now, &fresh_nonce());
    tampered.get_mut().seq = 2;
    let refused = raw.get_entry(tampered).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("does not match"), "{refused:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifying_the_log_needs_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    build_chain(&mut client, server.root()).await;
    let cp = checkpoint_of_all(&server, &mut client).await;
    let mut anonymous = server.anonymous_client().await;
    let vkey = vkey(&mut anonymous).await;
    let info = ledger_info(&mut anonymous).await;
    assert_eq!(info.record_count, cp.tree_size);
    let consistency = anonymous
        .audit
        .get_consistency_proof(pb::GetConsistencyProofRequest {
            first_size: 3,
            second_size: cp.tree_size,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!consistency.hashes.is_empty());
    // An inclusion proof of a household's payment: hashes only, and they
    // prove the leaf against the signed checkpoint.
    let note = anonymous
        .audit
        .get_checkpoint(pb::GetCheckpointRequest {
            tree_size: cp.tree_size,
        })
        .await
        .unwrap()
        .into_inner()
        .note;
    let checkpoint = fundtrail_client::proofs::open_pinned(&vkey, &note).unwrap();
    let disbursement_seq = cp.tree_size - 3;
    let proof = anonymous
        .audit
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            index: disbursement_seq,
            tree_size: cp.tree_size,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        proof.record.is_empty(),
        "an anonymous caller got record bytes"
    );
    let leaf: [u8; 32] = proof.leaf_hash.clone().try_into().unwrap();
    let hashes: Vec<[u8; 32]> = proof
        .hashes
        .iter()
        .map(|h| h.clone().try_into().unwrap())
        .collect();
    fundtrail_tlog::check_record(
        &hashes,
        cp.tree_size,
        &checkpoint.root_hash,
        disbursement_seq,
        &leaf,
    )
    .expect("the hash-only proof verifies");
    // Found by its leaf hash alone (RFC 9162 get-proof-by-hash).
    let by_hash = anonymous
        .audit
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            tree_size: cp.tree_size,
            leaf_hash: proof.leaf_hash.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_hash, proof);
    for (leaf_hash, code) in [
        (vec![7u8; 32], Code::NotFound),
        (vec![7u8; 31], Code::InvalidArgument),
    ] {
        let refused = anonymous
            .audit
            .get_inclusion_proof(pb::GetInclusionProofRequest {
                tree_size: cp.tree_size,
                leaf_hash,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), code, "{refused:?}");
    }
    // The same proof, signed by the root org, carries the record.
    let signed = client
        .audit
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            index: disbursement_seq,
            tree_size: cp.tree_size,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        fundtrail_tlog::record_hash(&signed.record).to_vec(),
        proof.leaf_hash
    );
    // Everything else needs a key.
    let refused = anonymous
        .query
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let refused = anonymous
        .audit
        .export_log(pb::ExportLogRequest { start: 0, end: 0 })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    server.stop().await;
}

/// The world of `build_chain`, and more readers around it.
struct World {
    readers: BTreeMap<&'static str, Signer>,
}

async fn build_world(client: &mut Client, root: Signer) -> World {
    use pb::AccountKind as K;
    use pb::OrgRole as R;
    let chain = build_chain(client, root.clone()).await;
    let mut readers = BTreeMap::new();
    let mut add = |id: &'static str| {
        let signer = new_signer();
        readers.insert(id, signer.clone());
        signer
    };
    let gs_audit = add("gs-audit");
    let lx_audit = add("lx-audit");
    let dx_nyj = add("dx-nyj");
    let sc = add("sc-czt");
    let witness = add("witness");
    let mirror = add("mirror");
    // Audit offices register audit offices inside their division (rules 6).
    ok(
        client,
        &chain.auditor,
        register_org("gs-audit", "甘肃省审计厅", R::Auditor, "620000", &gs_audit),
    )
    .await;
    ok(
        client,
        &gs_audit,
        register_org("lx-audit", "临夏县审计局", R::Auditor, "622921", &lx_audit),
    )
    .await;
    ok(
        client,
        &chain.dongxiang,
        register_org("dx-nyj", "东乡县农业农村局", R::Finance, "622926", &dx_nyj),
    )
    .await;
    ok(
        client,
        &root,
        register_org("sc-czt", "四川省财政厅", R::Finance, "510000", &sc),
    )
    .await;
    ok(
        client,
        &root,
        register_org("witness", "见证人", R::Witness, "000000", &witness),
    )
    .await;
    ok(
        client,
        &root,
        register_org("mirror", "镜像", R::Mirror, "000000", &mirror),
    )
    .await;
    // East–west cooperation: Sichuan's money reaches a Linxia household,
    // the two paired by the root org (rules 6).
    ok(client, &root, pairing("sc-czt", "lx-czj")).await;
    ok(
        client,
        &sc,
        open_account("sc-xczx", K::Programme, "四川省协作资金"),
    )
    .await;
    let sc_source = ok(
        client,
        &sc,
        appropriation("sc-xczx", 1_000_000_00, "川财农〔2026〕1号"),
    )
    .await
    .seq;
    ok(
        client,
        &sc,
        transfer("sc-xczx", "lx-xczx", 500_000_00, "川财农〔2026〕2号"),
    )
    .await;
    // Linxia pays its partner's money against budget authority of its own.
    let own = ok(
        client,
        &chain.linxia,
        own_quota("lx-czj", 2_000_00, "临财预〔2026〕1号"),
    )
    .await
    .seq;
    let paid = against(
        Some(own),
        &[(sc_source, 2_000_00)],
        disbursement("lx-xczx", "lx-hh-0001", 2_000_00),
    );
    ok(client, &chain.linxia, paid).await;
    readers.insert("mof", chain.root.clone());
    readers.insert("gs-czt", chain.province.clone());
    readers.insert("dx-czj", chain.dongxiang.clone());
    readers.insert("lx-czj", chain.linxia.clone());
    readers.insert("cnao", chain.auditor.clone());
    World { readers }
}

/// Household → (its account id, its registry ref, the orgs that may see it).
fn households() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        (
            "dx-hh-0001",
            "HH-622926-0001",
            vec!["mof", "gs-czt", "dx-czj", "cnao", "gs-audit", "mirror"],
        ),
        (
            "lx-hh-0001",
            "HH-622921-0001",
            vec![
                "mof", "gs-czt", "lx-czj", "cnao", "gs-audit", "lx-audit", "mirror",
            ],
        ),
    ]
}

/// Every answer `reader` gets from every read call, encoded.
async fn everything_readable(client: &mut Client, count: u64) -> Vec<Vec<u8>> {
    let mut answers: Vec<Vec<u8>> = Vec::new();
    let mut keep = |bytes: Vec<u8>| answers.push(bytes);
    let accounts = [
        "mof-xczx",
        "gs-xczx",
        "dx-xczx",
        "lx-xczx",
        "sc-xczx",
        "dx-hh-0001",
        "lx-hh-0001",
    ];
    for seq in 0..count {
        if let Ok(r) = client.query.get_entry(pb::GetEntryRequest { seq }).await {
            keep(r.into_inner().encode_to_vec());
        }
        if let Ok(r) = client
            .query
            .trace_forward(pb::TraceForwardRequest {
                seq,
                ..Default::default()
            })
            .await
        {
            keep(r.into_inner().encode_to_vec());
        }
        let target = pb::trace_backward_request::Target::Seq(seq);
        if let Ok(r) = client
            .query
            .trace_backward(pb::TraceBackwardRequest {
                target: Some(target),
            })
            .await
        {
            keep(r.into_inner().encode_to_vec());
        }
        if let Ok(r) = client
            .audit
            .get_inclusion_proof(pb::GetInclusionProofRequest {
                index: seq,
                tree_size: count,
                ..Default::default()
            })
            .await
        {
            keep(r.into_inner().encode_to_vec());
        }
    }
    for account in accounts {
        let request = pb::GetAccountRequest {
            account_id: account.into(),
            ..Default::default()
        };
        if let Ok(r) = client.query.get_account(request).await {
            keep(r.into_inner().encode_to_vec());
        }
        let request = pb::HouseholdStatementRequest {
            account_id: account.into(),
        };
        if let Ok(r) = client.query.household_statement(request).await {
            keep(r.into_inner().encode_to_vec());
        }
        let target = pb::trace_backward_request::Target::AccountId(account.into());
        if let Ok(r) = client
            .query
            .trace_backward(pb::TraceBackwardRequest {
                target: Some(target),
            })
            .await
        {
            keep(r.into_inner().encode_to_vec());
        }
        let request = pb::ListEntriesRequest {
            account_id: account.into(),
            ..Default::default()
        };
        if let Ok(r) = client.query.list_entries(request).await {
            keep(r.into_inner().encode_to_vec());
        }
    }
    let all = client
        .query
        .list_entries(pb::ListEntriesRequest::default())
        .await
        .unwrap();
    keep(all.into_inner().encode_to_vec());
    // One item a page, so every page token is handed out too.
    let query = client.query.clone();
    let pages = every_page(|page_token| {
        let mut query = query.clone();
        async move {
            let request = pb::ListAccountsRequest {
                page_size: 1,
                page_token,
                ..Default::default()
            };
            let page = query.list_accounts(request).await.unwrap().into_inner();
            (page.encode_to_vec(), page.next_page_token)
        }
    })
    .await;
    pages.into_iter().for_each(&mut keep);
    let pages = every_page(|page_token| {
        let mut query = query.clone();
        async move {
            let request = pb::IdleFundsRequest {
                page_size: 1,
                page_token,
                ..Default::default()
            };
            let page = query.idle_funds(request).await.unwrap().into_inner();
            (page.encode_to_vec(), page.next_page_token)
        }
    })
    .await;
    pages.into_iter().for_each(&mut keep);
    let pages = every_page(|page_token| {
        let mut query = query.clone();
        async move {
            let request = pb::AnomaliesRequest {
                page_size: 1,
                page_token,
                ..Default::default()
            };
            let page = query.anomalies(request).await.unwrap().into_inner();
            (page.encode_to_vec(), page.next_page_token)
        }
    })
    .await;
    pages.into_iter().for_each(&mut keep);
    let mut export = client
        .audit
        .export_log(pb::ExportLogRequest {
            start: 0,
            end: count,
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(record) = export.message().await.unwrap() {
        keep(record.encode_to_vec());
    }
    answers
}

/// Every page of a listing (at most 100), each encoded: `page` takes a
/// page token and answers (the page's bytes, the next token).
async fn every_page<F, Fut>(mut page: F) -> Vec<Vec<u8>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = (Vec<u8>, String)>,
{
    let mut pages = Vec::new();
    let mut token = String::new();
    for _ in 0..100 {
        let (bytes, next) = page(token).await;
        pages.push(bytes);
        if next.is_empty() {
            break;
        }
        token = next;
    }
    pages
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The property: for every reader and every read call, a household's id
/// and ref appear in an answer only if the reader is in its allowed set —
/// and readers in the set do get them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_household_reaches_an_org_outside_its_allowed_set() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let world = build_world(&mut client, server.root()).await;
    let count = ledger_info(&mut client).await.record_count;
    for (org, signer) in &world.readers {
        let mut reader = server.client_as(signer).await;
        let answers = everything_readable(&mut reader, count).await;
        for (account_id, household_ref, allowed) in households() {
            let may = allowed.contains(org);
            let seen = answers
                .iter()
                .any(|a| contains(a, account_id) || contains(a, household_ref));
            assert_eq!(
                seen, may,
                "{org} and household {account_id}: seen {seen}, may {may}"
            );
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_gets_what_the_table_says() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let world = build_world(&mut client, server.root()).await;
    let count = ledger_info(&mut client).await.record_count;
    let reader = |org: &str| world.readers[org].clone();
    let household = |id: &str| pb::HouseholdStatementRequest {
        account_id: id.into(),
    };

    // The owning county reads its household; a sibling county is denied.
    let mut dongxiang = server.client_as(&reader("dx-czj")).await;
    let statement = dongxiang
        .query
        .household_statement(household("dx-hh-0001"))
        .await
        .unwrap();
    assert_eq!(statement.into_inner().household_ref, "HH-622926-0001");
    let mut linxia = server.client_as(&reader("lx-czj")).await;
    let denied = linxia
        .query
        .household_statement(household("dx-hh-0001"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("jurisdiction"), "{denied:?}");
    // A county's own department is not its parent: denied too.
    let mut department = server.client_as(&reader("dx-nyj")).await;
    let denied = department
        .query
        .household_statement(household("dx-hh-0001"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // Sichuan traces its money into Linxia: the household is there, under a pseudonym.
    let mut sichuan = server.client_as(&reader("sc-czt")).await;
    let source = sichuan
        .query
        .list_entries(pb::ListEntriesRequest {
            account_id: "sc-xczx".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries[1]
        .seq;
    let graph = sichuan
        .query
        .trace_forward(pb::TraceForwardRequest {
            seq: source,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(graph.reached_households_fen, 2_000_00, "{graph:?}");
    let household_node = graph
        .nodes
        .iter()
        .find(|n| n.kind == pb::AccountKind::Household as i32)
        .expect("the household node");
    assert!(
        household_node.account_id.starts_with("hh~"),
        "{household_node:?}"
    );
    assert_eq!(household_node.received_fen, 2_000_00);
    // The same trace for Linxia's auditor names the household.
    let mut lx_audit = server.client_as(&reader("lx-audit")).await;
    let graph = lx_audit
        .query
        .trace_forward(pb::TraceForwardRequest {
            seq: source,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        graph.nodes.iter().any(|n| n.account_id == "lx-hh-0001"),
        "{graph:?}"
    );

    // Exports: a mirror gets every record; a county gets leaf hashes for
    // what it may not read.
    for (org, whole) in [("mirror", true), ("lx-czj", false)] {
        let mut reader_client = server.client_as(&reader(org)).await;
        let mut export = reader_client
            .audit
            .export_log(pb::ExportLogRequest {
                start: 0,
                end: count,
            })
            .await
            .unwrap()
            .into_inner();
        let (mut records, mut withheld) = (0, 0);
        while let Some(item) = export.message().await.unwrap() {
            if item.record.is_empty() {
                assert_eq!(item.leaf_hash.len(), 32);
                withheld += 1;
            } else {
                records += 1;
            }
        }
        assert_eq!(records + withheld, count);
        assert_eq!(withheld == 0, whole, "{org}: {withheld} withheld");
    }

    // An account that does not exist looks, to a county, like one that is
    // not its own; the root org, which sees everything, is told it is absent.
    let absent = pb::GetAccountRequest {
        account_id: "dx-hh-9999".into(),
        ..Default::default()
    };
    let refused = linxia.query.get_account(absent.clone()).await.unwrap_err();
    let outside = linxia
        .query
        .get_account(pb::GetAccountRequest {
            account_id: "dx-hh-0001".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(
        refused.message().replace("dx-hh-9999", "X"),
        outside.message().replace("dx-hh-0001", "X")
    );
    let absent = client.query.get_account(absent).await.unwrap_err();
    assert_eq!(absent.code(), Code::NotFound);
    // A page token is sealed: it names nothing and cannot be forged.
    let forged = linxia
        .query
        .list_accounts(pb::ListAccountsRequest {
            page_token: "dx-hh-0001".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(forged.code(), Code::InvalidArgument, "{forged:?}");

    // Scrub: the administrator only.
    let mut cnao = server.client_as(&reader("cnao")).await;
    let denied = cnao.audit.scrub(pb::ScrubRequest {}).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let report = client
        .audit
        .scrub(pb::ScrubRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(report.ok, "{report:?}");

    // A witness reads orgs (to check keys) but no money.
    let mut witness = server.client_as(&reader("witness")).await;
    witness
        .query
        .get_org(pb::GetOrgRequest {
            org_id: "mof".into(),
        })
        .await
        .unwrap();
    let denied = witness
        .query
        .get_account(pb::GetAccountRequest {
            account_id: "mof-xczx".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_org_registers_a_child_beyond_its_own_division() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    let gs_audit = new_signer();
    ok(
        &mut client,
        &chain.auditor,
        register_org(
            "gs-audit",
            "甘肃省审计厅",
            pb::OrgRole::Auditor,
            "620000",
            &gs_audit,
        ),
    )
    .await;
    let count = ledger_info(&mut client).await.record_count;
    let state = server.dump();
    let cases = [
        (
            &gs_audit,
            register_org(
                "dx-audit",
                "越权审计",
                pb::OrgRole::Auditor,
                "000000",
                &new_signer(),
            ),
            Code::PermissionDenied,
            "lies outside division 620000",
        ),
        (
            &chain.province,
            register_org(
                "gs-mirror",
                "省镜像",
                pb::OrgRole::Mirror,
                "620000",
                &new_signer(),
            ),
            Code::PermissionDenied,
            "only the root org",
        ),
    ];
    for (signer, body, code, says) in cases {
        let refused = client.post(signer, body).await.unwrap_err();
        assert_eq!(refused.code(), code, "{refused:?}");
        assert!(refused.message().contains(says), "{}", refused.message());
    }
    assert_eq!(ledger_info(&mut client).await.record_count, count);
    assert!(
        server.dump() == state,
        "a refused registration changed state"
    );
    // Within its division it may.
    ok(
        &mut client,
        &gs_audit,
        register_org(
            "dx-audit",
            "东乡县审计局",
            pb::OrgRole::Auditor,
            "622926",
            &new_signer(),
        ),
    )
    .await;
    server.stop().await;
}
