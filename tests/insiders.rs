//! Insiders cannot bend the rules, and no client can starve the others:
//! each test acts as a registered org acting against the rules (or as a
//! client with no key) over real gRPC against a real server, and checks
//! both the refusal and that nothing changed for anyone else.

mod common;

use std::time::Duration;

use common::*;
use fundtrail_api::pb;
use fundtrail_api::pb::request::Body as B;
use fundtrail_client::{Client, Signer};
use fundtrail_core::dates::{day_of_ms, format_date, Day};
use tonic::Code;

fn today() -> Day {
    day_of_ms(fundtrail_client::now_ms())
}

/// `body` signed by `signer`, dated `value_date` and marked `imported`.
fn dated(
    client: &Client,
    signer: &Signer,
    value_date: Day,
    imported: bool,
    body: B,
) -> pb::SignedRequest {
    let mut request = client.request(body);
    request.value_date = format_date(value_date);
    request.imported = imported;
    signer.sign(&request)
}

fn set_status(account: &str, status: pb::HouseholdStatus) -> B {
    B::SetHouseholdStatus(pb::SetHouseholdStatus {
        account_id: account.into(),
        status: status as i32,
        document_no: "东扶〔2026〕3号".into(),
        reason: "动态调整".into(),
    })
}

/// Refuses `body` from `signer` and checks nothing changed: no record, and
/// derived state byte for byte as before. Returns the refusal.
async fn refused(
    server: &TestServer,
    client: &mut Client,
    signer: &Signer,
    body: B,
) -> tonic::Status {
    let count = ledger_info(client).await.record_count;
    let state = server.dump();
    let what = format!("{body:?}");
    let refusal = match client.post(signer, body).await {
        Ok(posted) => panic!("accepted as #{}: {what}", posted.seq),
        Err(status) => status,
    };
    assert_eq!(ledger_info(client).await.record_count, count, "{what}");
    assert!(
        server.dump() == state,
        "a refusal changed derived state: {what}"
    );
    refusal
}

/// Finding 1: a county registered an audit office of its own and read who
/// audited it. From rules 6 the root registers administrators, witnesses,
/// mirrors and the top audit office; audit offices register audit offices
/// inside their division; every other org registers finance orgs only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_county_registers_neither_an_auditor_nor_a_witness() {
    use pb::OrgRole as R;
    let (_dir, server, mut client, chain) = start_with_chain().await;
    for (signer, role) in [
        (&chain.dongxiang, R::Auditor),
        (&chain.dongxiang, R::Witness),
        (&chain.dongxiang, R::Administrator),
        (&chain.dongxiang, R::Mirror),
        (&chain.province, R::Auditor),
        (&chain.auditor, R::Finance),
        (&chain.auditor, R::Witness),
    ] {
        let refusal = refused(
            &server,
            &mut client,
            signer,
            register_org("x-org", "越权机构", role, "622926", &new_signer()),
        )
        .await;
        assert_eq!(
            refusal.code(),
            Code::PermissionDenied,
            "{role:?}: {refusal:?}"
        );
        assert!(
            refusal
                .message()
                .contains("may not register an org of role"),
            "{}",
            refusal.message()
        );
    }
    // Each may register what its duties allow.
    let gs_audit = new_signer();
    ok(
        &mut client,
        &chain.auditor,
        register_org("gs-sjt", "甘肃省审计厅", R::Auditor, "620000", &gs_audit),
    )
    .await;
    ok(
        &mut client,
        &gs_audit,
        register_org(
            "dx-sjj",
            "东乡县审计局",
            R::Auditor,
            "622926",
            &new_signer(),
        ),
    )
    .await;
    ok(
        &mut client,
        &chain.dongxiang,
        register_org(
            "dx-nyj",
            "东乡县农业农村局",
            R::Finance,
            "622926",
            &new_signer(),
        ),
    )
    .await;
    ok(
        &mut client,
        &chain.root,
        register_org("w-1", "见证节点", R::Witness, "000000", &new_signer()),
    )
    .await;
    // A finance org holds no key of an audit office, even one of its own
    // division: it cannot add one to the office it did not register.
    let refusal = refused(
        &server,
        &mut client,
        &chain.province,
        B::AddKey(pb::AddKey {
            org_id: "gs-sjt".into(),
            public_key: new_signer().public_key().to_vec(),
            read_only: false,
        }),
    )
    .await;
    assert_eq!(refusal.code(), Code::PermissionDenied, "{refusal:?}");
    server.stop().await;
}

/// Finding 2: a county marked a household INELIGIBLE, then paid it with
/// `imported` and yesterday's date. From rules 6 `imported` needs an open
/// import window declared by the root org or the org's parent, and every
/// record must pass today's rules as well as its value date's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_records_need_an_open_window_and_pass_todays_rules() {
    let (_dir, server, mut client, chain) = start_with_chain().await;
    let dongxiang = chain.dongxiang.clone();
    ok(
        &mut client,
        &dongxiang,
        household("dx-hh-0002", "HH-622926-0002"),
    )
    .await;
    ok(
        &mut client,
        &dongxiang,
        set_status("dx-hh-0001", pb::HouseholdStatus::Ineligible),
    )
    .await;
    let yesterday = today() - 1;
    // History from before quota was kept names none (rules 9 accept that
    // from imported records, and report it).
    let backdated = |client: &Client, household: &str| {
        dated(
            client,
            &dongxiang,
            yesterday,
            true,
            disbursement("dx-xczx", household, 500_00),
        )
    };
    let poster = client.clone();
    let post = |signed: pb::SignedRequest| {
        let mut client = poster.clone();
        async move { client.post_signed(signed).await }
    };

    // No window: refused, whatever the household.
    let count = ledger_info(&mut client).await.record_count;
    for household in ["dx-hh-0001", "dx-hh-0002"] {
        let refusal = post(backdated(&client, household)).await.unwrap_err();
        assert_eq!(refusal.code(), Code::FailedPrecondition, "{refusal:?}");
        assert!(
            refusal.message().contains("no import window"),
            "{}",
            refusal.message()
        );
    }
    // A county cannot open its own window, nor one for its neighbour.
    let until = format_date(today() + 30);
    for (signer, org) in [
        (&dongxiang, "dx-czj"),
        (&dongxiang, "lx-czj"),
        (&chain.linxia, "dx-czj"),
    ] {
        let refusal = refused(&server, &mut client, signer, import_window(org, &until)).await;
        assert_eq!(refusal.code(), Code::PermissionDenied, "{refusal:?}");
    }
    // Nor can anyone open one for more than a year.
    let refusal = refused(
        &server,
        &mut client,
        &chain.province,
        import_window("dx-czj", &format_date(today() + 367)),
    )
    .await;
    assert_eq!(refusal.code(), Code::InvalidArgument, "{refusal:?}");
    assert_eq!(ledger_info(&mut client).await.record_count, count);

    // Its parent opens one: the back-dated payment to the household found
    // ineligible today is still refused, by today's rules.
    ok(
        &mut client,
        &chain.province,
        import_window("dx-czj", &until),
    )
    .await;
    let refusal = post(backdated(&client, "dx-hh-0001")).await.unwrap_err();
    assert_eq!(refusal.code(), Code::FailedPrecondition, "{refusal:?}");
    assert!(
        refusal
            .message()
            .contains(&format!("not eligible on {}", format_date(today()))),
        "{}",
        refusal.message()
    );
    // Not imported, it may not carry a past date at all.
    let plain = dated(
        &client,
        &dongxiang,
        yesterday,
        false,
        chain.quota(disbursement("dx-xczx", "dx-hh-0002", 1)),
    );
    let refusal = post(plain).await.unwrap_err();
    assert_eq!(refusal.code(), Code::InvalidArgument, "{refusal:?}");
    // An eligible household's history imports, dated as it happened: the
    // county's own money of three days ago, then the payment of yesterday.
    let own_money = dated(
        &client,
        &dongxiang,
        today() - 3,
        true,
        appropriation("dx-xczx", 1_000_00, "东财〔2026〕1号"),
    );
    post(own_money).await.expect("imported appropriation");
    let imported = post(backdated(&client, "dx-hh-0002"))
        .await
        .expect("imported");
    let entry = client
        .query
        .get_entry(pb::GetEntryRequest { seq: imported.seq })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(entry.effects.expect("effects").value_day, yesterday);

    // The root org closes the window (a last day before today): imports stop.
    ok(
        &mut client,
        &chain.root,
        import_window("dx-czj", &format_date(today() - 1)),
    )
    .await;
    let refusal = post(backdated(&client, "dx-hh-0002")).await.unwrap_err();
    assert_eq!(refusal.code(), Code::FailedPrecondition, "{refusal:?}");
    assert!(
        refusal.message().contains("closed on"),
        "{}",
        refusal.message()
    );
    server.stop().await;
}

/// Finding 3: the county's own evaluation (100) cleared the province's
/// failing one (40). From rules 6 every evaluation says whether the
/// project's owner signed it, and a self-evaluation never clears a failed
/// external one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_evaluation_never_clears_a_failed_external_one() {
    let (_dir, server, mut client, chain) = start_with_chain().await;
    let dongxiang = chain.dongxiang.clone();
    ok(
        &mut client,
        &dongxiang,
        open_account("dx-pool", pb::AccountKind::Pool, "东乡县统筹整合资金"),
    )
    .await;
    ok(
        &mut client,
        &dongxiang,
        B::Consolidation(pb::Consolidation {
            from_account_id: "dx-xczx".into(),
            pool_account_id: "dx-pool".into(),
            amount_fen: 1_000_000_00,
            sources: Vec::new(),
            plan_document_no: "东政办〔2026〕1号".into(),
            memo: String::new(),
        }),
    )
    .await;
    ok(
        &mut client,
        &dongxiang,
        B::RegisterProject(pb::RegisterProject {
            account_id: "dx-road".into(),
            name: "村组道路硬化".into(),
            category: "基础设施".into(),
            location_code: "622926100".into(),
            budget_fen: 1_000_000_00,
            performance_targets: vec!["硬化道路 5 公里".into()],
            responsible_unit: "县交通运输局".into(),
            fiscal_year: 2026,
        }),
    )
    .await;
    let evaluate = |score: u32, met: bool| {
        B::EvaluateProject(pb::EvaluateProject {
            account_id: "dx-road".into(),
            document_no: "甘财绩〔2026〕4号".into(),
            score,
            targets_met: vec![met],
        })
    };
    let failed = ok(&mut client, &chain.province, evaluate(40, false))
        .await
        .seq;
    ok(&mut client, &dongxiang, evaluate(100, true)).await;
    let allocated = ok(
        &mut client,
        &dongxiang,
        B::Allocation(pb::Allocation {
            quota_seq: None,
            pool_account_id: "dx-pool".into(),
            project_account_id: "dx-road".into(),
            amount_fen: 300_000_00,
            sources: Vec::new(),
            document_no: "东财整〔2026〕5号".into(),
            memo: String::new(),
        }),
    )
    .await
    .seq;
    let breaches = client
        .query
        .compliance(pb::ComplianceRequest::default())
        .await
        .unwrap()
        .into_inner()
        .breaches;
    let funded: Vec<_> = breaches
        .iter()
        .filter(|b| b.kind == "FAILED_EVALUATION_FUNDED")
        .map(|b| {
            (
                b.account_id.as_str(),
                b.rule_seq,
                b.seqs.clone(),
                b.amount_fen,
            )
        })
        .collect();
    assert_eq!(
        funded,
        vec![("dx-road", failed, vec![allocated], 300_000_00)]
    );
    // An audit office evaluates within its jurisdiction too (rules 6); a
    // county evaluates no other county's project, and is told nothing of it.
    ok(&mut client, &chain.auditor, evaluate(85, true)).await;
    let refusal = refused(&server, &mut client, &chain.linxia, evaluate(90, true)).await;
    assert_eq!(refusal.code(), Code::PermissionDenied);
    assert!(
        !refusal.message().contains("dx-czj"),
        "{}",
        refusal.message()
    );
    // Nor does a finance org whose division holds the county but which may
    // not read it (outside its chain): a division is not enough. It gets
    // the answer a project that does not exist gets.
    let outsider = new_signer();
    ok(
        &mut client,
        &chain.root,
        register_org(
            "gs-nyt",
            "甘肃省农业农村厅",
            pb::OrgRole::Finance,
            "620000",
            &outsider,
        ),
    )
    .await;
    let refusal = refused(&server, &mut client, &outsider, evaluate(95, true)).await;
    let mut nowhere = evaluate(95, true);
    if let B::EvaluateProject(e) = &mut nowhere {
        e.account_id = "dx-nowhere".into();
    }
    let absent = refused(&server, &mut client, &outsider, nowhere).await;
    assert_eq!(refusal.code(), Code::PermissionDenied, "{refusal:?}");
    assert_eq!(
        (
            absent.code(),
            absent.message().replace("dx-nowhere", "dx-road")
        ),
        (refusal.code(), refusal.message().to_string())
    );
    server.stop().await;
}

/// Finding 4: writes answered what reads hide. A write naming something the
/// signer may not read gets the very answer it gets for something that does
/// not exist, and no refusal names another org's account or owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reveal_no_more_than_reads() {
    let (_dir, server, mut client, chain) = start_with_chain().await;
    let linxia = chain.linxia.clone();
    // Dongxiang's payment to its household: the record Linxia probes.
    let payment = ok(
        &mut client,
        &chain.dongxiang,
        chain.quota(disbursement("dx-xczx", "dx-hh-0001", 1_00)),
    )
    .await
    .seq;
    let reversal = |seq: u64| {
        B::Reversal(pb::Reversal {
            target_seq: seq,
            document_no: "临财〔2026〕9号".into(),
            reason: "试探".into(),
        })
    };
    let consolidate = |from: &str, to: &str| {
        B::Consolidation(pb::Consolidation {
            from_account_id: from.into(),
            pool_account_id: to.into(),
            amount_fen: 1,
            sources: Vec::new(),
            plan_document_no: "临政办〔2026〕1号".into(),
            memo: String::new(),
        })
    };
    let allocate = |from: &str, to: &str| {
        B::Allocation(pb::Allocation {
            quota_seq: None,
            pool_account_id: from.into(),
            project_account_id: to.into(),
            amount_fen: 1,
            sources: Vec::new(),
            document_no: "临财整〔2026〕1号".into(),
            memo: String::new(),
        })
    };
    let probes: Vec<(&str, B, B)> = vec![
        (
            "household status",
            set_status("dx-hh-0001", pb::HouseholdStatus::Exited),
            set_status("dx-hh-9999", pb::HouseholdStatus::Exited),
        ),
        (
            "payment to a household",
            chain.quota(disbursement("lx-xczx", "dx-hh-0001", 1)),
            chain.quota(disbursement("lx-xczx", "dx-hh-9999", 1)),
        ),
        (
            "paying from an account",
            transfer("dx-xczx", "lx-xczx", 1, "临财〔2026〕8号"),
            transfer("dx-nowhere", "lx-xczx", 1, "临财〔2026〕8号"),
        ),
        (
            "transfer to another county's household",
            transfer("lx-xczx", "dx-hh-0001", 1, "临财〔2026〕8号"),
            transfer("lx-xczx", "dx-hh-9999", 1, "临财〔2026〕8号"),
        ),
        (
            "consolidation into another county's account",
            consolidate("lx-xczx", "dx-xczx"),
            consolidate("lx-xczx", "dx-nowhere"),
        ),
        (
            "allocation from an account that is no pool",
            allocate("lx-xczx", "dx-xczx"),
            allocate("lx-xczx", "dx-nowhere"),
        ),
        ("reversal", reversal(payment), reversal(1_000_000)),
        (
            "reversal of a registry record",
            reversal(payment),
            reversal(1),
        ),
    ];
    for (what, existing, absent) in probes {
        let a = refused(&server, &mut client, &linxia, existing).await;
        let b = refused(&server, &mut client, &linxia, absent).await;
        assert_eq!(
            (a.code(), a.message()),
            (b.code(), b.message()),
            "{what}: the answer tells existing from absent"
        );
        for secret in ["dx-czj", "dx-hh-0001", "dx-xczx"] {
            assert!(
                !a.message().contains(secret),
                "{what} names {secret}: {}",
                a.message()
            );
        }
    }
    // An ancestor, which may read the household, is told why.
    let refusal = refused(
        &server,
        &mut client,
        &chain.province,
        set_status("dx-hh-0001", pb::HouseholdStatus::Exited),
    )
    .await;
    assert!(
        refusal.message().contains("registered with dx-czj"),
        "{}",
        refusal.message()
    );
    // The root org sees everything: absence is no secret to it.
    let refusal = refused(
        &server,
        &mut client,
        &chain.root,
        set_status("dx-hh-9999", pb::HouseholdStatus::Exited),
    )
    .await;
    assert_eq!(refusal.code(), Code::NotFound, "{refusal:?}");
    server.stop().await;
}

/// Finding 6: a 64 KiB key id in one request of a batch reached the key
/// store and failed all twenty. Now it is INVALID_ARGUMENT alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_key_id_fails_its_request_alone() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let root = server.root();
    let count = ledger_info(&mut client).await.record_count;
    let mut requests: Vec<pb::SignedRequest> = (0..20)
        .map(|i| {
            let body = open_account(&format!("mof-a{i}"), pb::AccountKind::Treasury, "国库");
            root.sign(&client.request(body))
        })
        .collect();
    requests[7].key_id = "a".repeat(64 * 1024);
    requests[13].key_id = "ABCDEF0123456789".into();
    let results = client
        .post_batch(requests)
        .await
        .expect("the batch is answered");
    assert_eq!(results.len(), 20);
    for (i, result) in results.iter().enumerate() {
        match (&result.result, i) {
            (Some(pb::post_result::Result::Error(error)), 7 | 13) => {
                assert_eq!(error.code, Code::InvalidArgument as i32, "{i}: {error:?}");
                assert_eq!(error.field, "key_id");
            }
            (Some(pb::post_result::Result::Ok(_)), i) if i != 7 && i != 13 => {}
            (other, i) => panic!("request {i}: {other:?}"),
        }
    }
    assert_eq!(ledger_info(&mut client).await.record_count, count + 18);
    server.stop().await;
}

/// Opens `calls` Post calls from `from` (a loopback address of its own) to
/// `addr`, on connections of up to 100 calls each: each sends its headers
/// and never a body. Returns, per connection, its sender (to probe it) and
/// the calls' answers still to come.
async fn hold_calls(
    addr: std::net::SocketAddr,
    from: std::net::IpAddr,
    calls: usize,
) -> Vec<(
    h2::client::SendRequest<bytes::Bytes>,
    Vec<(h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>)>,
)> {
    let mut connections = Vec::new();
    for chunk in 0..calls.div_ceil(100) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::new(from, 0)).unwrap();
        let tcp = socket.connect(addr).await.unwrap();
        let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        let mut h2 = h2.ready().await.unwrap();
        let mut held = Vec::new();
        for _ in 0..(calls - chunk * 100).min(100) {
            let request = grpc_request(addr, "/fundtrail.v1.Ledger/Post");
            h2 = h2.ready().await.unwrap();
            held.push(h2.send_request(request, false).unwrap());
        }
        connections.push((h2, held));
    }
    connections
}

/// A health check on `h2`: once it is answered the server has taken in
/// every call opened before it on that connection.
async fn health_on(h2: &mut h2::client::SendRequest<bytes::Bytes>, addr: std::net::SocketAddr) {
    let request = grpc_request(addr, "/grpc.health.v1.Health/Check");
    let mut ready = h2.clone().ready().await.unwrap();
    let (response, mut send) = ready.send_request(request, false).unwrap();
    // HealthCheckRequest { service: "" }: an empty message.
    send.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        chunk.unwrap();
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.to_str().unwrap()),
        Some("0"),
        "the health check answers: {trailers:?}"
    );
}

/// Finding 5: 540 calls that sent headers and never a body, from one
/// address, made every other client's calls UNAVAILABLE. A call now holds
/// no answering slot while its message arrives, only a share of its own
/// address; so while 600 such calls are held open, a registered org posts
/// and reads, and health checks answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_held_open_without_a_body_starve_no_one_else() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let root = server.root();
    let addr: std::net::SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let from: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let mut connections = hold_calls(addr, from, 600).await;
    // The attacker's own health checks answer, each after every call
    // opened before it on its connection was taken in.
    for (h2, _) in &mut connections {
        health_on(h2, addr).await;
    }
    // Everyone else: a post and a signed read.
    let posted = client
        .post(
            &root,
            open_account("mof-b", pb::AccountKind::Treasury, "国库"),
        )
        .await
        .expect("a registered org posts while 600 calls are held");
    let entry = client
        .query
        .get_entry(pb::GetEntryRequest { seq: posted.seq })
        .await
        .expect("a signed read is answered while 600 calls are held")
        .into_inner();
    assert_eq!(entry.seq, posted.seq);
    // And every held call was still held all that time (a write's message
    // has REQUEST_BODY_TIMEOUT_MS, 10 s, to arrive).
    let mut still_held = 0;
    for (_, held) in &mut connections {
        for (response, _) in held.iter_mut() {
            if tokio::time::timeout(Duration::ZERO, response)
                .await
                .is_err()
            {
                still_held += 1;
            }
        }
    }
    assert_eq!(still_held, 600, "calls were answered before the test's own");
    drop(connections);
    server.stop().await;
}

/// Finding 7: one org could fill the replay store (1,048,576 nonces) by
/// adding keys to itself, and then every other org's signed reads were
/// refused. Each org now holds at most its share (here, on a small store:
/// 16 of 64), and is refused alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_that_floods_the_replay_store_is_refused_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = unmetered();
    options.boundary.read_nonces_max = 64;
    options.boundary.read_nonces_per_org_max = 16;
    let server = TestServer::start_serving(
        dir.path(),
        fast_checkpoints(),
        std::sync::Arc::new(fundtrail_core::clock::SystemClock),
        options,
    )
    .await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    // The county adds keys to itself, and reads with each, 15 times.
    let mut keys = vec![chain.dongxiang.clone()];
    for _ in 0..3 {
        let key = new_signer();
        ok(
            &mut client,
            &chain.dongxiang,
            B::AddKey(pb::AddKey {
                org_id: "dx-czj".into(),
                public_key: key.public_key().to_vec(),
                read_only: false,
            }),
        )
        .await;
        keys.push(key);
    }
    let (mut read, mut refused) = (0, 0);
    for key in &keys {
        let mut county = server.client_as(key).await;
        for _ in 0..15 {
            match county.query.get_ledger(pb::GetLedgerRequest {}).await {
                Ok(_) => read += 1,
                Err(status) => {
                    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                    assert!(
                        status.message().contains("its share"),
                        "{}",
                        status.message()
                    );
                    refused += 1;
                }
            }
        }
    }
    assert!(read <= 16, "the county kept {read} nonces, above its share");
    assert!(refused >= 60 - 16, "{refused} refused");
    // Another org reads on, within its own share.
    let mut province = server.client_as(&chain.province).await;
    for i in 0..12 {
        province
            .query
            .get_ledger(pb::GetLedgerRequest {})
            .await
            .unwrap_or_else(|status| panic!("read {i} of another org: {status:?}"));
    }
    server.stop().await;
}

/// Finding 7: `GetInclusionProofs` (public) ran on a blocking-pool thread
/// that waited forever on a client that stopped reading, so as many such
/// calls as the pool has threads (512 by default; 16 here) pinned the pool
/// every signed read needs. Proofs are now made a chunk at a time and sent
/// from an async task: 24 calls whose client never reads hold no thread,
/// and a signed read is answered.
#[test]
fn clients_that_stop_reading_proofs_hold_no_thread() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(stalled_proof_streams());
}

async fn stalled_proof_streams() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    build_chain(&mut client, server.root()).await;
    let tree_size = ledger_info(&mut client).await.record_count;
    let addr: std::net::SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    // 4,096 proofs of ~200 bytes: more than the server buffers for a call.
    let message = pb::GetInclusionProofsRequest {
        tree_size,
        indexes: (0..4096).map(|i| i % tree_size).collect(),
    }
    .encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let frame = bytes::Bytes::from(frame);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A client that reads nothing past its first kilobyte per call.
    let (h2, connection) = h2::client::Builder::new()
        .initial_window_size(1024)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut h2 = h2.ready().await.unwrap();
    let mut responses = Vec::new();
    for _ in 0..24 {
        let request = grpc_request(addr, "/fundtrail.v1.Audit/GetInclusionProofs");
        h2 = h2.ready().await.unwrap();
        let (response, mut send) = h2.send_request(request, false).unwrap();
        send.send_data(frame.clone(), true).unwrap();
        responses.push(response);
    }
    let mut held = Vec::new();
    for response in responses {
        // Each stream starts; its body is never read.
        let response = response.await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            !response.headers().contains_key("grpc-status"),
            "{response:?}"
        );
        held.push(response);
    }
    // A signed read needs the blocking pool (its key is looked up there).
    let read = tokio::time::timeout(
        Duration::from_secs(60),
        client.query.get_entry(pb::GetEntryRequest { seq: 1 }),
    )
    .await
    .expect("a signed read is answered while proof streams stall")
    .expect("the read succeeds");
    assert_eq!(read.into_inner().seq, 1);
    drop(held);
    server.stop().await;
}

/// Finding 7: anyone could credit another org's account (1,001 one-fen
/// transfers made the victim's oldest 1,001 lots, and its next payment
/// without earmarks was refused). From rules 6 an org credits only its own,
/// its descendants' and its ancestors' accounts, or those of an org paired
/// with it by a superior of both (东西部协作: 福建 → 甘肃); any other credit
/// answers as an account that does not exist would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_goes_sideways_only_between_paired_orgs() {
    let (_dir, server, mut client, chain) = start_with_chain().await;
    let fujian = new_signer();
    ok(
        &mut client,
        &chain.root,
        register_org(
            "fj-czt",
            "福建省财政厅",
            pb::OrgRole::Finance,
            "350000",
            &fujian,
        ),
    )
    .await;
    ok(
        &mut client,
        &fujian,
        open_account("fj-xczx", pb::AccountKind::Programme, "闽宁协作资金"),
    )
    .await;
    let fujian_quota = ok(
        &mut client,
        &chain.root,
        quota(
            "fj-czt",
            Some(chain.quota_central),
            1_000_000_00,
            "财农〔2026〕30号",
        ),
    )
    .await
    .seq;
    ok(
        &mut client,
        &chain.root,
        against(
            Some(fujian_quota),
            &[],
            transfer("mof-xczx", "fj-xczx", 1_000_000_00, "财农〔2026〕30号"),
        ),
    )
    .await;
    // Unpaired: a stranger's account and no account at all answer alike.
    for (signer, from) in [(&fujian, "fj-xczx"), (&chain.linxia, "lx-xczx")] {
        let real = refused(
            &server,
            &mut client,
            signer,
            transfer(from, "dx-xczx", 1, "x"),
        )
        .await;
        let none = refused(
            &server,
            &mut client,
            signer,
            transfer(from, "dx-nowhere", 1, "x"),
        )
        .await;
        assert_eq!(real.code(), Code::PermissionDenied, "{real:?}");
        assert_eq!((real.code(), real.message()), (none.code(), none.message()));
    }
    // Neither side pairs itself, nor does a superior of only one side.
    for signer in [&fujian, &chain.province] {
        let refusal = refused(&server, &mut client, signer, pairing("fj-czt", "gs-czt")).await;
        assert_eq!(refusal.code(), Code::PermissionDenied, "{refusal:?}");
    }
    // The root pairs 福建 with 甘肃: 福建 may now credit 甘肃's counties.
    ok(&mut client, &chain.root, pairing("fj-czt", "gs-czt")).await;
    let fujian_money = ok(
        &mut client,
        &fujian,
        appropriation("fj-xczx", 500_000_00, "闽财〔2026〕7号"),
    )
    .await
    .seq;
    let mut sent = transfer("fj-xczx", "dx-xczx", 500_000_00, "闽财〔2026〕8号");
    if let B::Transfer(t) = &mut sent {
        t.sources = vec![pb::SourceAmount {
            source_seq: fujian_money,
            amount_fen: 500_000_00,
        }];
    }
    ok(&mut client, &fujian, sent).await;
    // 东乡 pays its partner's money against budget authority of its own
    // (纳入县级预算), not the centre's: quota created by an org carries
    // money of orgs outside its line, and never the centre's.
    let own = own_quota("dx-czj", 2_000_00, "东财预〔2026〕8号");
    let own = ok(&mut client, &chain.dongxiang, own).await.seq;
    let paying = |quota_seq| {
        against(
            Some(quota_seq),
            &[(fujian_money, 2_000_00)],
            disbursement("dx-xczx", "dx-hh-0001", 2_000_00),
        )
    };
    let refusal = refused(
        &server,
        &mut client,
        &chain.dongxiang,
        paying(chain.quota_dongxiang),
    )
    .await;
    assert_eq!(refusal.code(), Code::FailedPrecondition, "{refusal:?}");
    let payment = ok(&mut client, &chain.dongxiang, paying(own)).await.seq;
    // 福建 follows its money to the household, under a pseudonym: the
    // amount is exact, but which record paid it, under which document, is
    // the household's data (finding 4).
    let trace = |reader: &Signer| {
        let reader = reader.clone();
        let server = &server;
        async move {
            let mut client = server.client_as(&reader).await;
            client
                .query
                .trace_forward(pb::TraceForwardRequest {
                    seq: fujian_money,
                    ..Default::default()
                })
                .await
                .expect("trace")
                .into_inner()
        }
    };
    let graph = trace(&fujian).await;
    let edge = graph
        .edges
        .iter()
        .find(|e| e.to_account_id.starts_with("hh~"))
        .expect("an edge into a pseudonymised household");
    assert_eq!(edge.amount_fen, 2_000_00);
    assert_eq!((edge.first_seq, edge.last_seq), (0, 0));
    assert!(edge.document_nos.is_empty(), "{edge:?}");
    let graph = trace(&chain.root).await;
    let edge = graph
        .edges
        .iter()
        .find(|e| e.to_account_id == "dx-hh-0001")
        .expect("the root sees the household");
    assert_eq!((edge.first_seq, edge.last_seq), (payment, payment));
    // Only that way round, and only for the paired orgs.
    let refusal = refused(
        &server,
        &mut client,
        &chain.dongxiang,
        transfer("dx-xczx", "fj-xczx", 1, "x"),
    )
    .await;
    assert_eq!(refusal.code(), Code::PermissionDenied, "{refusal:?}");
    // Money still goes back up the chain.
    ok(
        &mut client,
        &chain.dongxiang,
        B::Return(pb::Return {
            from_account_id: "dx-xczx".into(),
            to_account_id: "gs-xczx".into(),
            amount_fen: 1_00,
            kind: pb::ReturnKind::IdleRecovery as i32,
            document_no: "东财〔2026〕4号".into(),
            reason: "闲置资金收回".into(),
            ..Default::default()
        }),
    )
    .await;
    server.stop().await;
}

/// Finding 7: the 256 `Watch` slots had no per-org share and the 16
/// `PostStream` slots could all be held by one client. An org now holds at
/// most 32 watch streams and an address 4 post streams; another org's
/// watch still starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_slots_are_shared_out() {
    let (_dir, server, mut client, chain) = start_with_chain().await;
    let head = ledger_info(&mut client).await.record_count;
    let from_head = || pb::WatchRequest {
        from_seq: head,
        ..Default::default()
    };
    let mut county = server.client_as(&chain.dongxiang).await;
    let mut watches = Vec::new();
    for i in 0..32 {
        let watch = county
            .query
            .watch(from_head())
            .await
            .unwrap_or_else(|status| panic!("watch {i} of the org's share: {status:?}"));
        watches.push(watch.into_inner());
    }
    let refused = county.query.watch(from_head()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("its share"),
        "{}",
        refused.message()
    );
    let mut province = server.client_as(&chain.province).await;
    province
        .query
        .watch(from_head())
        .await
        .expect("another org's watch starts");

    let mut streams = Vec::new();
    for i in 0..4 {
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::SignedRequest>(1);
        let stream = client
            .ledger
            .post_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap_or_else(|status| panic!("post stream {i}: {status:?}"));
        streams.push((tx, stream));
    }
    let (_tx, rx) = tokio::sync::mpsc::channel::<pb::SignedRequest>(1);
    let refused = client
        .ledger
        .post_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    drop(streams);
    drop(watches);
    server.stop().await;
}

/// Review of this issue: one address's slow request bodies could hold the
/// whole server-wide receive buffer (256 MiB). An address holds at most
/// 64 MiB: its third 23 MB body is refused while the first two still
/// arrive, and another address posts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_its_share_of_bytes_being_received() {
    let (_dir, server, mut client, chain) = start_with_chain().await;
    let addr: std::net::SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.5:0".parse().unwrap()).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut h2 = h2.ready().await.unwrap();
    // A PostBatch frame header declaring 24 MB, then 23 MB of it.
    let declared: u32 = 24 * 1024 * 1024;
    let mut head = vec![0u8];
    head.extend_from_slice(&declared.to_be_bytes());
    let chunk = bytes::Bytes::from(vec![0u8; 1024 * 1024]);
    assert!(23 * chunk.len() < declared as usize);
    let mut calls = Vec::new();
    for _ in 0..3 {
        let request = grpc_request(addr, "/fundtrail.v1.Ledger/PostBatch");
        h2 = h2.ready().await.unwrap();
        let (response, mut send) = h2.send_request(request, false).unwrap();
        send.send_data(bytes::Bytes::from(head.clone()), false)
            .unwrap();
        calls.push((response, send));
    }
    // Send 23 MiB on each, as fast as flow control allows.
    let mut refused = None;
    'calls: for (i, (response, send)) in calls.iter_mut().enumerate() {
        let mut left = 23 * chunk.len();
        while left > 0 {
            send.reserve_capacity(left.min(chunk.len()));
            let granted = match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(n)) => n.min(left),
                // The server ended this call: it must say why.
                _ => {
                    refused = Some((i, response.await.unwrap()));
                    break 'calls;
                }
            };
            if granted == 0 {
                continue;
            }
            if send.send_data(chunk.slice(..granted), false).is_err() {
                refused = Some((i, response.await.unwrap()));
                break 'calls;
            }
            left -= granted;
        }
    }
    let (index, answer) = refused.expect("the address went past its share unrefused");
    assert_eq!(index, 2, "the first two bodies fit the share");
    let status = answer
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(status.as_deref(), Some("14"), "UNAVAILABLE: {answer:?}");
    let message = answer
        .headers()
        .get("grpc-message")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        message.contains("its%20share") || message.contains("its share"),
        "{message}"
    );
    // Meanwhile another address posts.
    ok(
        &mut client,
        &chain.root,
        open_account("mof-c", pb::AccountKind::Treasury, "国库"),
    )
    .await;
    drop(calls);
    server.stop().await;
}

/// A report computes only what its reader may read: a county's first page
/// of anomalies holds its own finding, even when another county's findings
/// come first in key order (they used to fill the page and be dropped,
/// leaving the county an empty page and the cost of everyone's findings).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_page_holds_what_its_reader_may_read() {
    let (_dir, server, mut client, chain) = start_with_chain().await;
    for (county, pool, household) in [
        (&chain.dongxiang, "dx-xczx", "dx-hh-0001"),
        (&chain.linxia, "lx-xczx", "lx-hh-0001"),
    ] {
        for _ in 0..2 {
            ok(
                &mut client,
                county,
                chain.quota(disbursement(pool, household, 1_00)),
            )
            .await;
        }
    }
    let everything = client
        .query
        .anomalies(pb::AnomaliesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let duplicates: Vec<&str> = everything
        .findings
        .iter()
        .filter(|f| f.kind == "DUPLICATE_PAYMENT")
        .map(|f| f.account_id.as_str())
        .collect();
    assert_eq!(
        duplicates,
        ["dx-hh-0001", "lx-hh-0001"],
        "the root sees both, Dongxiang's first"
    );
    let mut linxia = server.client_as(&chain.linxia).await;
    let page = linxia
        .query
        .anomalies(pb::AnomaliesRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let found: Vec<(&str, &str)> = page
        .findings
        .iter()
        .map(|f| (f.kind.as_str(), f.account_id.as_str()))
        .collect();
    assert_eq!(found.first(), Some(&("DUPLICATE_PAYMENT", "lx-hh-0001")));
    assert!(
        found.iter().all(|(_, account)| *account == "lx-hh-0001"),
        "{found:?}"
    );
    let breaches = linxia
        .query
        .compliance(pb::ComplianceRequest::default())
        .await
        .unwrap()
        .into_inner()
        .breaches;
    assert!(
        breaches.iter().all(|b| !format!("{b:?}").contains("dx-")),
        "{breaches:?}"
    );
    server.stop().await;
}

/// Stream slots have per-org shares: an org posting on PostStreams from
/// five addresses holds four; the fifth stream ends, with the record it
/// carried answered (and durable), once that record shows whose it is.
/// Another org still posts on a stream of its own, and a stream the org
/// closes gives its place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_holds_at_most_its_share_of_post_streams() {
    let (_dir, server, client, chain) = start_with_chain().await;
    let stream_from = |last_octet: u8| {
        let url = server.url.clone();
        async move {
            let from = std::net::IpAddr::from([127, 0, 0, last_octet]);
            let channel = tonic::transport::Endpoint::from_shared(url)
                .unwrap()
                .local_address(Some(from))
                .connect()
                .await
                .unwrap();
            let mut ledger = pb::ledger_client::LedgerClient::new(channel);
            let (tx, rx) = tokio::sync::mpsc::channel::<pb::SignedRequest>(4);
            let answers = ledger
                .post_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            (tx, answers)
        }
    };
    let new_account = |signer: &Signer, id: String| {
        signer.sign(&client.request(open_account(&id, pb::AccountKind::Programme, "专户")))
    };
    let posted = |answer: Option<pb::PostResult>| match answer.and_then(|a| a.result) {
        Some(pb::post_result::Result::Ok(ok)) => ok.seq,
        other => panic!("not posted: {other:?}"),
    };
    let mut held = Vec::new();
    for i in 0..4u8 {
        let (tx, mut answers) = stream_from(20 + i).await;
        tx.send(new_account(&chain.dongxiang, format!("dx-stream-{i}")))
            .await
            .unwrap();
        posted(answers.message().await.unwrap());
        held.push((tx, answers));
    }
    let (fifth_tx, mut fifth) = stream_from(24).await;
    fifth_tx
        .send(new_account(&chain.dongxiang, "dx-stream-4".into()))
        .await
        .unwrap();
    let seq = posted(fifth.message().await.unwrap());
    let ended = fifth.message().await.unwrap_err();
    assert_eq!(ended.code(), Code::ResourceExhausted, "{ended:?}");
    assert!(ended.message().contains("its share"), "{}", ended.message());
    assert!(
        seq < ledger_info(&mut client.clone()).await.record_count,
        "the record is durable"
    );
    // Another org, from the same address as the fifth.
    let (province_tx, mut province) = stream_from(24).await;
    province_tx
        .send(new_account(&chain.province, "gs-stream".into()))
        .await
        .unwrap();
    posted(province.message().await.unwrap());
    drop((fifth_tx, province_tx));
    // Closing one of the four gives its place back.
    let (tx, mut answers) = held.pop().unwrap();
    drop(tx);
    assert!(
        answers.message().await.unwrap().is_none(),
        "the closed stream ends"
    );
    let (tx, mut again) = stream_from(25).await;
    tx.send(new_account(&chain.dongxiang, "dx-stream-5".into()))
        .await
        .unwrap();
    posted(again.message().await.unwrap());
    drop(tx);
    assert!(
        again.message().await.unwrap().is_none(),
        "and keeps posting until closed"
    );
    drop(held);
    server.stop().await;
}

/// Finding 7: a PostStream on which nothing arrives held its slot forever.
/// Four idle streams from one address (its whole share) are ended after
/// 30 s, `DEADLINE_EXCEEDED`, and then the address opens streams again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_post_streams_give_their_places_back() {
    let (_dir, server, client, _chain) = start_with_chain().await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::SignedRequest>(1);
        let answers = client
            .ledger
            .clone()
            .post_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        idle.push((tx, answers));
    }
    let (_tx, rx) = tokio::sync::mpsc::channel::<pb::SignedRequest>(1);
    let full = client
        .ledger
        .clone()
        .post_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(full.code(), Code::ResourceExhausted, "{full:?}");
    for (_tx, answers) in &mut idle {
        let ended = answers.message().await.unwrap_err();
        assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
        assert!(
            ended.message().contains("no request arrived"),
            "{}",
            ended.message()
        );
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::SignedRequest>(1);
    let mut again = client
        .ledger
        .clone()
        .post_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("the address's places are free again")
        .into_inner();
    drop(tx);
    assert!(again.message().await.unwrap().is_none());
    drop(idle);
    server.stop().await;
}

/// One gRPC-web call, unsigned or with `signature_headers`, POSTed over
/// HTTP/1.1 to the HTTP port at `addr` as if a proxy forwarded it for
/// `client`: the answer's `grpc-status` (0 when the call succeeded) and
/// `grpc-message`.
async fn grpc_web(
    addr: std::net::SocketAddr,
    client: &str,
    method: &str,
    message: &[u8],
    signature_headers: &str,
) -> (u32, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    let head = format!(
        "POST {method} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\ncontent-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\nx-forwarded-for: {client}\r\n{signature_headers}content-length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).to_lowercase();
    let field = |name: &str| {
        // In the head, or in the trailer frame at the end of the body.
        text.lines()
            .find_map(|line| line.split_once(&format!("{name}:")).map(|(_, v)| v))
            .map(|v| v.trim().to_string())
    };
    let status = field("grpc-status")
        .map(|s| s.parse().unwrap())
        .unwrap_or_else(|| panic!("no grpc-status in {text}"));
    (status, field("grpc-message").unwrap_or_default())
}

/// Finding 7: public gRPC-web calls were all charged to one "unknown
/// address", and failed signature checks to no one. Behind the proxy each
/// client address now has its own allowance, and a call whose signature
/// fails costs its address what the call would have cost a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_calls_and_failed_signatures_are_charged_to_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let options = fundtrail_server::ServeOptions {
        boundary: fundtrail_server::boundary::BoundaryConfig {
            read_cost_per_second: std::num::NonZeroU32::new(1).unwrap(),
            read_cost_burst: std::num::NonZeroU32::new(20).unwrap(),
            ..Default::default()
        },
        ..Default::default()
    };
    let server = TestServer::start_serving(
        dir.path(),
        fast_checkpoints(),
        std::sync::Arc::new(fundtrail_core::clock::SystemClock),
        options.clone(),
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(fundtrail_server::http_view::serve_http(
        server.engine.clone(),
        fundtrail_server::boundary_layer(&server.engine, &options),
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    const RESOURCE_EXHAUSTED: u32 = 8;
    const UNAUTHENTICATED: u32 = 16;
    let get_ledger = "/fundtrail.v1.Query/GetLedger";
    let mut spent = None;
    for _ in 0..200 {
        let (code, message) = grpc_web(addr, "203.0.113.7", get_ledger, &[], "").await;
        if code != 0 {
            spent = Some((code, message));
            break;
        }
    }
    let (code, message) = spent.expect("the address's allowance never ran out");
    assert_eq!(code, RESOURCE_EXHAUSTED, "{message}");
    assert!(message.contains("203.0.113.7"), "{message}");
    assert_eq!(
        grpc_web(addr, "203.0.113.8", get_ledger, &[], "").await.0,
        0,
        "another address behind the same proxy reads on"
    );
    // Signatures that fail: refused, and charged to the address.
    let forged = format!(
        "fundtrail-key-id: 00000000000000aa\r\nfundtrail-signed-at-ms: {}\r\nfundtrail-nonce: 00112233445566778899aabbccddeeff\r\nfundtrail-signature-bin: {}\r\n",
        fundtrail_core::clock::Clock::now_ms(&fundtrail_core::clock::SystemClock),
        "A".repeat(86) + "=="
    );
    let get_entry = "/fundtrail.v1.Query/GetEntry";
    let mut refusals = Vec::new();
    for _ in 0..200 {
        let (code, message) = grpc_web(addr, "203.0.113.9", get_entry, &[], &forged).await;
        refusals.push(code);
        if code != UNAUTHENTICATED {
            assert_eq!(code, RESOURCE_EXHAUSTED, "{message}");
            assert!(message.contains("203.0.113.9"), "{message}");
            break;
        }
    }
    assert_eq!(refusals.last(), Some(&RESOURCE_EXHAUSTED), "{refusals:?}");
    assert!(
        refusals.len() > 1 && refusals[0] == UNAUTHENTICATED,
        "{refusals:?}"
    );
    let _ = stop.send(());
    http.await.unwrap().unwrap();
    server.stop().await;
}
