//! End to end over real gRPC: a transfer chain from the central level to a
//! household, exactly-once retries, batches, pagination, health, and that a
//! restart keeps every record, seq and balance.

mod common;

use common::*;
use fundtrail_api::pb;
use fundtrail_api::pb::request::Body as B;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_chain_to_a_household_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;

    // Balances per level, to the fen.
    assert_eq!(
        balance(&mut client, "mof-xczx").await,
        CENTRAL_FEN - 40_000_000_00
    );
    assert_eq!(
        balance(&mut client, "gs-xczx").await,
        40_000_000_00 - 10_000_000_00 - 5_000_000_00
    );
    assert_eq!(
        balance(&mut client, "dx-xczx").await,
        10_000_000_00 - 3_000_00
    );
    assert_eq!(balance(&mut client, "dx-hh-0001").await, 3_000_00);
    assert_eq!(
        balance(&mut client, "lx-xczx").await,
        5_000_000_00,
        "the reversed transfer is undone"
    );

    // The household's money is attributed to the central appropriation.
    let household = client
        .query
        .get_account(pb::GetAccountRequest {
            account_id: "dx-hh-0001".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(household.balances.len(), 1);
    assert_eq!(household.balances[0].source_seq, chain.central_source);
    assert_eq!(household.balances[0].document_no, "财农〔2026〕12号");
    assert_eq!(household.owner_org_id, "dx-czj");

    // The reversed record is shown as reversed, and the reversal's legs mirror it.
    let reversed = client
        .query
        .get_entry(pb::GetEntryRequest {
            seq: chain.reversed_transfer,
        })
        .await
        .unwrap()
        .into_inner();
    let reversal_seq = reversed.reversed_by_seq.expect("shown as reversed");
    let reversal = client
        .query
        .get_entry(pb::GetEntryRequest { seq: reversal_seq })
        .await
        .unwrap()
        .into_inner();
    let leg = &reversal.effects.unwrap().legs[0];
    assert_eq!(
        (
            leg.from_account_id.as_str(),
            leg.to_account_id.as_str(),
            leg.amount_fen
        ),
        ("lx-xczx", "gs-xczx", 1_000_00)
    );

    // The org registry and its key history.
    let province = client
        .query
        .get_org(pb::GetOrgRequest {
            org_id: "gs-czt".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(province.parent_org_id, "mof");
    assert_eq!(province.keys.len(), 2);
    assert!(province
        .keys
        .iter()
        .any(|k| k.key_id == chain.revoked.key_id() && k.revoked_seq.is_some()));

    // Entries touching one account, and the whole log, page by page.
    let page = client
        .query
        .list_entries(pb::ListEntriesRequest {
            account_id: "lx-xczx".into(),
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.entries.len(),
        3,
        "transfer in, transfer in, reversal out"
    );
    let all = all_entries(&mut client).await;
    let count = client
        .query
        .get_ledger(pb::GetLedgerRequest {})
        .await
        .unwrap()
        .into_inner()
        .record_count;
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (0..count).collect::<Vec<_>>(),
        "seqs start at 0, no gaps"
    );
    let balances_before = all_balances(&mut client).await;
    let state_before = server.dump();

    // Restart: same records, same seqs, same balances, same derived state.
    server.stop().await;
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let after = all_entries(&mut client).await;
    assert_eq!(
        after
            .iter()
            .map(|e| (e.seq, e.record.clone()))
            .collect::<Vec<_>>(),
        all.iter()
            .map(|e| (e.seq, e.record.clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(all_balances(&mut client).await, balances_before);
    assert!(
        server.dump() == state_before,
        "derived state after restart equals the live state"
    );
    // The next record continues the sequence.
    let next = ok(
        &mut client,
        &chain.dongxiang,
        chain.quota(disbursement("dx-xczx", "dx-hh-0001", 500_00)),
    )
    .await;
    assert_eq!(next.seq, count);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_returns_the_first_result_also_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let root = server.root();
    ok(
        &mut client,
        &root,
        open_account("mof-xczx", pb::AccountKind::Programme, "中央衔接资金"),
    )
    .await;
    ok(
        &mut client,
        &root,
        appropriation("mof-xczx", 1_000_00, "财农〔2026〕12号"),
    )
    .await;
    ok(
        &mut client,
        &root,
        open_account("mof-other", pb::AccountKind::Programme, "其他"),
    )
    .await;
    let request = client.request(transfer("mof-xczx", "mof-other", 10_00, "财农〔2026〕40号"));
    let signed = root.sign(&request);
    let first = client.post_signed(signed.clone()).await.unwrap();
    assert!(!first.duplicate);
    // Concurrent retries of the same request: one record, one seq.
    let mut retries = Vec::new();
    for _ in 0..8 {
        let mut c = client.clone();
        let s = signed.clone();
        retries.push(tokio::spawn(async move { c.post_signed(s).await }));
    }
    for retry in retries {
        let again = retry.await.unwrap().unwrap();
        assert_eq!(
            (again.seq, again.duplicate, again.commit_time_ms),
            (first.seq, true, first.commit_time_ms)
        );
        assert_eq!(again.effects, first.effects);
    }
    assert_eq!(
        balance(&mut client, "mof-other").await,
        10_00,
        "posted once"
    );
    // Same key, different request.
    let changed = client.request_with_key(
        transfer("mof-xczx", "mof-other", 11_00, "财农〔2026〕40号"),
        request.idempotency_key.clone(),
    );
    let refused = client.post_signed(root.sign(&changed)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::AlreadyExists);

    server.stop().await;
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let again = client.post_signed(signed).await.unwrap();
    assert_eq!((again.seq, again.duplicate), (first.seq, true));
    assert_eq!(
        balance(&mut client, "mof-other").await,
        10_00,
        "still posted once after restart"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_request_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let root = server.root();
    let county = new_signer();
    let requests = vec![
        root.sign(&client.request(open_account(
            "mof-xczx",
            pb::AccountKind::Programme,
            "中央衔接资金",
        ))),
        root.sign(&client.request(appropriation("mof-xczx", 500_00, "财农〔2026〕12号"))),
        // A key registered earlier in the same batch can sign later requests.
        root.sign(&client.request(register_org(
            "zj-czj",
            "昭觉县财政局",
            pb::OrgRole::Finance,
            "513431",
            &county,
        ))),
        county.sign(&client.request(open_account(
            "zj-xczx",
            pb::AccountKind::Programme,
            "昭觉县衔接资金",
        ))),
        // Quota created (record 5) and split to the county (record 6) in
        // the same batch can be drawn on by later requests.
        root.sign(&client.request(quota("mof", None, 1_000_00, "财农〔2026〕12号"))),
        root.sign(&client.request(quota("zj-czj", Some(5), 1_000_00, "财农〔2026〕12号"))),
        root.sign(&client.request(against(
            Some(6),
            &[],
            transfer("mof-xczx", "zj-xczx", 600_00, "财农〔2026〕41号"),
        ))),
        root.sign(&client.request(against(
            Some(6),
            &[],
            transfer("mof-xczx", "zj-xczx", 200_00, "财农〔2026〕42号"),
        ))),
    ];
    let results = client.post_batch(requests).await.unwrap();
    let seqs: Vec<Option<u64>> = results
        .iter()
        .map(|r| match &r.result {
            Some(pb::post_result::Result::Ok(ok)) => Some(ok.seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        seqs,
        vec![
            Some(1),
            Some(2),
            Some(3),
            Some(4),
            Some(5),
            Some(6),
            None,
            Some(7)
        ]
    );
    match &results[6].result {
        Some(pb::post_result::Result::Error(e)) => {
            assert_eq!(e.code, tonic::Code::FailedPrecondition as i32);
            assert!(e.message.contains("insufficient funds"), "{}", e.message);
        }
        other => panic!("expected insufficient funds, got {other:?}"),
    }
    assert_eq!(balance(&mut client, "zj-xczx").await, 200_00);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn earmarked_sources_are_spent_as_named_and_otherwise_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let root = server.root();
    ok(
        &mut client,
        &root,
        open_account("mof-a", pb::AccountKind::Programme, "A"),
    )
    .await;
    ok(
        &mut client,
        &root,
        open_account("mof-b", pb::AccountKind::Programme, "B"),
    )
    .await;
    let old = ok(
        &mut client,
        &root,
        appropriation("mof-a", 100_00, "财农〔2026〕1号"),
    )
    .await
    .seq;
    let new = ok(
        &mut client,
        &root,
        appropriation("mof-a", 100_00, "财农〔2026〕2号"),
    )
    .await
    .seq;
    // Earmarked: all from the newer source.
    let earmarked = B::Transfer(pb::Transfer {
        from_account_id: "mof-a".into(),
        to_account_id: "mof-b".into(),
        amount_fen: 30_00,
        sources: vec![pb::SourceAmount {
            source_seq: new,
            amount_fen: 30_00,
        }],
        document_no: "财农〔2026〕3号".into(),
        ..Default::default()
    });
    let legs = ok(&mut client, &root, earmarked)
        .await
        .effects
        .unwrap()
        .legs;
    assert_eq!(
        legs.iter()
            .map(|l| (l.source_seq, l.amount_fen))
            .collect::<Vec<_>>(),
        vec![(new, 30_00)]
    );
    // Default: oldest first, spilling into the next source.
    let legs = ok(
        &mut client,
        &root,
        transfer("mof-a", "mof-b", 120_00, "财农〔2026〕4号"),
    )
    .await
    .effects
    .unwrap()
    .legs;
    assert_eq!(
        legs.iter()
            .map(|l| (l.source_seq, l.amount_fen))
            .collect::<Vec<_>>(),
        vec![(old, 100_00), (new, 20_00)]
    );
    let a = client
        .query
        .get_account(pb::GetAccountRequest {
            account_id: "mof-a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        a.balances
            .iter()
            .map(|b| (b.source_seq, b.amount_fen))
            .collect::<Vec<_>>(),
        vec![(new, 50_00)]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in ["fundtrail.v1.Ledger", "fundtrail.v1.Query"] {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            answer.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving,
            "{service}"
        );
    }
    // Reflection lists the services, so grpcurl-style tools need no .proto files.
    use tonic_reflection::pb::v1 as reflection;
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = reflection::server_reflection_client::ServerReflectionClient::new(channel);
    let ask = reflection::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            reflection::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter(vec![ask]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().expect("an answer");
    let names: Vec<String> = match answer.message_response {
        Some(reflection::server_reflection_response::MessageResponse::ListServicesResponse(
            list,
        )) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("expected a service list, got {other:?}"),
    };
    for service in [
        "fundtrail.v1.Ledger",
        "fundtrail.v1.Query",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == service),
            "{service} missing from {names:?}"
        );
    }
    // The same list over v1alpha, which many tools still speak.
    use tonic_reflection::pb::v1alpha as alpha;
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let ask = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter(vec![ask]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().expect("an answer");
    let alpha_names: Vec<String> = match answer.message_response {
        Some(alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("expected a service list, got {other:?}"),
    };
    assert!(
        alpha_names.iter().any(|n| n == "fundtrail.v1.Audit"),
        "{alpha_names:?}"
    );
    assert_eq!(alpha_names.len(), names.len());
    server.stop().await;
}

async fn all_entries(client: &mut fundtrail_client::Client) -> Vec<pb::Entry> {
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .query
            .list_entries(pb::ListEntriesRequest {
                page_size: 7,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 7, "page size is honoured");
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return entries;
        }
        page_token = page.next_page_token;
    }
}

async fn all_balances(client: &mut fundtrail_client::Client) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .query
            .list_accounts(pb::ListAccountsRequest {
                page_size: 3,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(
            page.accounts
                .into_iter()
                .map(|a| (a.account_id, a.balance_fen)),
        );
        if page.next_page_token.is_empty() {
            return out;
        }
        page_token = page.next_page_token;
    }
}
