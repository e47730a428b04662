//! Following the money over real gRPC (docs/design.md §9), on the county
//! chain of `county/mod.rs`: forward traces from an appropriation or a
//! record, backward traces from a household or an account, and a
//! household's statement.

mod common;
mod county;

use county::*;

// ---------------------------------------------------------------------------
// TraceForward.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_forward_from_the_appropriation_accounts_for_every_fen() {
    let (_dir, server, mut client, county) = start().await;
    let graph = trace_forward(&mut client, county.s, 0, "").await.unwrap();
    assert_eq!(graph.source_seq, county.s);
    assert_eq!(graph.traced_fen, CENTRAL);
    assert_eq!(graph.source_document_no, S_DOC);
    assert_eq!(graph.programme_code, CENTRAL_PROGRAMME);
    assert_eq!(graph.withdrawn_fen, 0);
    assert!(graph.next_page_token.is_empty(), "one page holds it all");

    // Level by level: central → province → counties → pool → project → households.
    assert_eq!(edges(&graph), central_edges());
    let down = edge(&graph, "gs-xczx", "dx-xczx");
    assert_eq!(
        (down.records, down.first_seq, down.last_seq),
        (1, county.t2, county.t2)
    );
    assert_eq!(down.kinds, vec!["Transfer".to_string()]);
    assert_eq!(down.document_nos, vec![T2_DOC.to_string()]);
    let pooled = edge(&graph, "dx-xczx", "dx-pool");
    assert_eq!(pooled.kinds, vec!["Consolidation".to_string()]);
    assert_eq!(pooled.document_nos, vec![C_DOC.to_string()]);
    assert_eq!((pooled.first_seq, pooled.last_seq), (county.c, county.c));
    let allocated = edge(&graph, "dx-pool", "dx-proj-1");
    assert_eq!(allocated.kinds, vec!["Allocation".to_string()]);
    assert_eq!(allocated.document_nos, vec![A_DOC.to_string()]);
    let linxia = edge(&graph, "lx-xczx", "lx-pool");
    assert_eq!(
        (linxia.first_seq, linxia.kinds.clone()),
        (county.lc, vec!["Consolidation".to_string()])
    );
    let central = edge(&graph, "mof-xczx", "gs-xczx");
    assert_eq!(
        (central.first_seq, central.document_nos.clone()),
        (county.t1, vec![T1_DOC.to_string()])
    );
    for (i, household) in HOUSEHOLDS.iter().enumerate() {
        let paid = edge(&graph, "dx-proj-1", household);
        assert_eq!((paid.records, paid.first_seq), (1, county.d[i]));
        assert_eq!(paid.kinds, vec!["Disbursement".to_string()]);
        assert_eq!(paid.document_nos, vec![D_DOCS[i].to_string()]);
    }

    // What each account holds of it, and what reached it.
    assert_eq!(held(&graph), central_held());
    assert_eq!(
        received(&graph),
        map(&[
            ("mof-xczx", CENTRAL),
            ("gs-xczx", TO_PROVINCE),
            ("dx-xczx", TO_DONGXIANG),
            ("lx-xczx", TO_LINXIA),
            ("lx-pool", LINXIA_CONSOLIDATED),
            ("dx-pool", CONSOLIDATED - COUNTY_OWN),
            ("dx-proj-1", ALLOCATED),
            ("dx-hh-1", PAID[0]),
            ("dx-hh-2", PAID[1]),
            ("dx-hh-3", PAID[2]),
        ])
    );
    assert_eq!(graph.reached_households_fen, PAID_TOTAL);
    assert_eq!(households_hold(&graph), PAID_TOTAL);
    assert_eq!(
        accounted(&graph),
        graph.traced_fen,
        "Σ held + withdrawn = traced"
    );

    // Who holds it, and since when (the imported value dates).
    let t = today();
    let pool = node(&graph, "dx-pool");
    assert_eq!(pool.kind, pb::AccountKind::Pool as i32);
    assert_eq!(
        (pool.owner_org_id.as_str(), pool.division_code.as_str()),
        ("dx-czj", "622926")
    );
    let since: BTreeMap<String, i32> = graph
        .nodes
        .iter()
        .map(|n| (n.account_id.clone(), n.held_since_day))
        .collect();
    assert_eq!(
        since,
        map(&[
            ("mof-xczx", t - 800),
            ("gs-xczx", t - 400),
            ("dx-xczx", t - 200),
            ("lx-xczx", t - 200),
            ("lx-pool", t),
            ("dx-pool", t - 60),
            ("dx-proj-1", t - 20),
            ("dx-hh-1", t - 5),
            ("dx-hh-2", t - 5),
            ("dx-hh-3", t - 5),
        ])
    );
    assert_eq!(
        node(&graph, "dx-proj-1").kind,
        pb::AccountKind::Project as i32
    );
    assert_eq!(
        node(&graph, "dx-hh-2").kind,
        pb::AccountKind::Household as i32
    );

    // Pages of 3 records: S, T1, T2, T3, LC, C, A, D1, D2, D3 carry the source.
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = trace_forward(&mut client, county.s, 3, &token)
            .await
            .unwrap();
        assert_eq!(
            page.traced_fen, CENTRAL,
            "every page names the traced amount"
        );
        let carried: u32 = page.edges.iter().map(|e| e.records).sum();
        assert!(
            carried <= 3,
            "a page examines at most 3 records, saw {carried}"
        );
        token = page.next_page_token.clone();
        pages.push(page);
        if token.is_empty() {
            break;
        }
        assert!(pages.len() < 20, "paging never ends");
    }
    assert_eq!(pages.len(), 4, "10 records in pages of 3");
    let mut merged_edges: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut merged_records: BTreeMap<(String, String), u32> = BTreeMap::new();
    let mut merged_held: BTreeMap<String, u64> = BTreeMap::new();
    let mut merged_received: BTreeMap<String, u64> = BTreeMap::new();
    let mut households: BTreeMap<String, u64> = BTreeMap::new();
    let mut withdrawn = 0;
    for page in &pages {
        for e in &page.edges {
            *merged_edges
                .entry((e.from_account_id.clone(), e.to_account_id.clone()))
                .or_default() += e.amount_fen;
            *merged_records
                .entry((e.from_account_id.clone(), e.to_account_id.clone()))
                .or_default() += e.records;
        }
        for n in &page.nodes {
            if let Some(before) = merged_held.insert(n.account_id.clone(), n.held_fen) {
                assert_eq!(
                    before, n.held_fen,
                    "{} held differs between pages",
                    n.account_id
                );
            }
            *merged_received.entry(n.account_id.clone()).or_default() += n.received_fen;
            if n.kind == pb::AccountKind::Household as i32 {
                households.insert(n.account_id.clone(), n.held_fen);
            }
        }
        withdrawn += page.withdrawn_fen;
    }
    assert_eq!(merged_edges, edges(&graph));
    assert_eq!(
        merged_records,
        graph
            .edges
            .iter()
            .map(|e| (
                (e.from_account_id.clone(), e.to_account_id.clone()),
                e.records
            ))
            .collect()
    );
    assert_eq!(merged_held, held(&graph));
    assert_eq!(merged_received, received(&graph));
    assert_eq!(
        households.values().sum::<u64>(),
        graph.reached_households_fen
    );
    assert_eq!(merged_held.values().sum::<u64>() + withdrawn, CENTRAL);

    // An appropriation taken back out of the ledger is traced as withdrawn.
    let root = county.root.clone();
    let s3 = ok(
        &mut client,
        &root,
        appropriation_of("mof-xczx", 5_000_00, CENTRAL_PROGRAMME, "财农〔2026〕99号"),
    )
    .await
    .seq;
    ok(&mut client, &root, reverse(s3, "财农〔2026〕100号")).await;
    let gone = trace_forward(&mut client, s3, 0, "").await.unwrap();
    assert_eq!((gone.traced_fen, gone.withdrawn_fen), (5_000_00, 5_000_00));
    assert_eq!(node(&gone, "mof-xczx").held_fen, 0);
    assert_eq!(
        node(&gone, "mof-xczx").held_since_day,
        0,
        "holds none of it"
    );
    assert_eq!(accounted(&gone), gone.traced_fen);
    let again = trace_forward(&mut client, county.s, 0, "").await.unwrap();
    assert_eq!(
        held(&again),
        central_held(),
        "another source does not show up"
    );

    // Bad requests.
    assert_eq!(
        code_of(trace_forward(&mut client, 1, 0, "").await),
        Some(Code::NotFound),
        "record 1 moved no money"
    );
    assert_eq!(
        code_of(trace_forward(&mut client, 1_000_000, 0, "").await),
        Some(Code::NotFound)
    );
    assert_eq!(
        code_of(trace_forward(&mut client, county.s, 10_001, "").await),
        Some(Code::ResourceExhausted)
    );
    assert_eq!(
        code_of(trace_forward(&mut client, county.s, 3, "not-a-token").await),
        Some(Code::InvalidArgument)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_forward_from_a_record_follows_only_the_money_it_moved() {
    let (_dir, server, mut client, county) = start().await;
    // The province → Dongxiang transfer: not Linxia's share, not the
    // county's own money it was pooled with.
    let graph = trace_forward(&mut client, county.t2, 0, "").await.unwrap();
    assert_eq!(graph.traced_fen, TO_DONGXIANG);
    assert_eq!(graph.source_seq, county.s);
    assert_eq!(graph.source_document_no, S_DOC);
    assert!(graph.next_page_token.is_empty());
    assert_eq!(
        edges(&graph),
        edge_map(&[
            ("gs-xczx", "dx-xczx", TO_DONGXIANG),
            ("dx-xczx", "dx-pool", CONSOLIDATED - COUNTY_OWN),
            ("dx-pool", "dx-proj-1", ALLOCATED),
            ("dx-proj-1", "dx-hh-1", PAID[0]),
            ("dx-proj-1", "dx-hh-2", PAID[1]),
            ("dx-proj-1", "dx-hh-3", PAID[2]),
        ])
    );
    assert_eq!(
        held(&graph),
        map(&[
            ("gs-xczx", 0),
            ("dx-xczx", TO_DONGXIANG - (CONSOLIDATED - COUNTY_OWN)),
            ("dx-pool", CONSOLIDATED - COUNTY_OWN - ALLOCATED),
            ("dx-proj-1", ALLOCATED - PAID_TOTAL),
            ("dx-hh-1", PAID[0]),
            ("dx-hh-2", PAID[1]),
            ("dx-hh-3", PAID[2]),
        ])
    );
    assert_eq!(graph.reached_households_fen, PAID_TOTAL);
    assert_eq!(accounted(&graph), graph.traced_fen);

    // The consolidation carried two sources; both are followed, nothing else.
    let pooled = trace_forward(&mut client, county.c, 0, "").await.unwrap();
    assert_eq!(pooled.traced_fen, CONSOLIDATED);
    assert_eq!(
        edges(&pooled),
        edge_map(&[
            ("dx-xczx", "dx-pool", CONSOLIDATED),
            ("dx-pool", "dx-proj-1", ALLOCATED),
            ("dx-proj-1", "dx-hh-1", PAID[0]),
            ("dx-proj-1", "dx-hh-2", PAID[1]),
            ("dx-proj-1", "dx-hh-3", PAID[2]),
        ])
    );
    assert_eq!(
        held(&pooled),
        map(&[
            ("dx-xczx", 0),
            ("dx-pool", CONSOLIDATED - ALLOCATED),
            ("dx-proj-1", ALLOCATED - PAID_TOTAL),
            ("dx-hh-1", PAID[0]),
            ("dx-hh-2", PAID[1]),
            ("dx-hh-3", PAID[2]),
        ])
    );
    assert_eq!(accounted(&pooled), pooled.traced_fen);

    // From one payment: just that household.
    let paid = trace_forward(&mut client, county.d[1], 0, "")
        .await
        .unwrap();
    assert_eq!(paid.traced_fen, PAID[1]);
    assert_eq!(edges(&paid), edge_map(&[("dx-proj-1", "dx-hh-2", PAID[1])]));
    assert_eq!(paid.reached_households_fen, PAID[1]);
    assert_eq!(accounted(&paid), PAID[1]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_forward_from_a_reversed_transfer_ends_where_the_money_came_back() {
    let (_dir, server, mut client, county) = start().await;
    let province = county.province.clone();
    let linxia = county.linxia.clone();
    let t4 = ok(
        &mut client,
        &province,
        county.quota(transfer(
            "gs-xczx",
            "lx-xczx",
            1_000_00,
            "甘财农〔2026〕9号",
        )),
    )
    .await
    .seq;
    let back = ok(&mut client, &linxia, reverse(t4, "临财〔2026〕1号"))
        .await
        .seq;
    let graph = trace_forward(&mut client, t4, 0, "").await.unwrap();
    assert_eq!(graph.traced_fen, 1_000_00);
    assert_eq!(
        accounted(&graph),
        graph.traced_fen,
        "Σ held + withdrawn = traced; held: {:?}",
        held(&graph)
    );
    assert_eq!(
        edges(&graph),
        edge_map(&[
            ("gs-xczx", "lx-xczx", 1_000_00),
            ("lx-xczx", "gs-xczx", 1_000_00)
        ]),
        "only the transfer and its reversal carried this money"
    );
    assert_eq!(edge(&graph, "lx-xczx", "gs-xczx").first_seq, back);
    assert_eq!(
        held(&graph),
        map(&[("gs-xczx", 1_000_00), ("lx-xczx", 0)]),
        "the 1,000.00 is back at the province, and nothing else is counted"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_forward_from_a_record_counts_only_its_money_once_pooled_with_more_of_the_source() {
    let (_dir, server, mut client, county) = start().await;
    let province = county.province.clone();
    let dongxiang = county.dongxiang.clone();
    // A second, small transfer of the same source; the county then pools it
    // together with what is left of the first one.
    let t2b = ok(
        &mut client,
        &province,
        county.quota(transfer(
            "gs-xczx",
            "dx-xczx",
            10_000_00,
            "甘财农〔2026〕10号",
        )),
    )
    .await
    .seq;
    let left = TO_DONGXIANG - (CONSOLIDATED - COUNTY_OWN);
    ok(
        &mut client,
        &dongxiang,
        consolidation("dx-xczx", "dx-pool", left + 10_000_00, "东政办〔2026〕3号"),
    )
    .await;
    let graph = trace_forward(&mut client, t2b, 0, "").await.unwrap();
    assert_eq!(graph.traced_fen, 10_000_00);
    assert_eq!(
        edges(&graph),
        edge_map(&[
            ("gs-xczx", "dx-xczx", 10_000_00),
            ("dx-xczx", "dx-pool", 10_000_00)
        ])
    );
    assert!(
        node(&graph, "dx-pool").held_fen <= 10_000_00,
        "the pool holds at most the 10,000.00 traced, got {:?}",
        graph.nodes
    );
    assert_eq!(
        accounted(&graph),
        graph.traced_fen,
        "Σ held + withdrawn = traced"
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------
// TraceBackward.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_backward_from_a_household_reaches_the_appropriation() {
    let (_dir, server, mut client, county) = start().await;
    let t = today();
    for (i, household) in HOUSEHOLDS.iter().enumerate() {
        let answer = trace_backward(&mut client, Some(Target::AccountId(household.to_string())))
            .await
            .unwrap();
        assert!(!answer.truncated);
        assert_eq!(
            answer.lineages.len(),
            1,
            "{household}: one payment of one source"
        );
        let lineage = &answer.lineages[0];
        assert_eq!(lineage.source_seq, county.s);
        assert_eq!(lineage.amount_fen, PAID[i]);
        assert_eq!(lineage.source_document_no, S_DOC);
        assert_eq!(lineage.programme_code, CENTRAL_PROGRAMME);
        assert_eq!(lineage.appropriating_org_id, "mof");
        let hops = &lineage.hops;
        assert_eq!(
            hops.iter().map(|h| h.seq).collect::<Vec<_>>(),
            vec![
                county.s,
                county.t1,
                county.t2,
                county.c,
                county.a,
                county.d[i]
            ]
        );
        assert_eq!(
            hops.iter().map(|h| h.kind.as_str()).collect::<Vec<_>>(),
            vec![
                "Appropriation",
                "Transfer",
                "Transfer",
                "Consolidation",
                "Allocation",
                "Disbursement"
            ]
        );
        assert_eq!(
            hops.iter()
                .map(|h| (h.from_account_id.as_str(), h.to_account_id.as_str()))
                .collect::<Vec<_>>(),
            vec![
                ("", "mof-xczx"),
                ("mof-xczx", "gs-xczx"),
                ("gs-xczx", "dx-xczx"),
                ("dx-xczx", "dx-pool"),
                ("dx-pool", "dx-proj-1"),
                ("dx-proj-1", *household),
            ]
        );
        assert_eq!(
            hops.iter()
                .map(|h| h.document_no.as_str())
                .collect::<Vec<_>>(),
            vec![S_DOC, T1_DOC, T2_DOC, C_DOC, A_DOC, D_DOCS[i]]
        );
        assert_eq!(
            hops.iter()
                .map(|h| h.signer_org_id.as_str())
                .collect::<Vec<_>>(),
            vec!["mof", "mof", "gs-czt", "dx-czj", "dx-czj", "dx-czj"]
        );
        assert_eq!(
            hops.iter().map(|h| h.key_id.as_str()).collect::<Vec<_>>(),
            vec![
                county.root.key_id(),
                county.root.key_id(),
                county.province.key_id(),
                county.dongxiang.key_id(),
                county.dongxiang.key_id(),
                county.dongxiang.key_id(),
            ]
        );
        assert_eq!(
            hops.iter().map(|h| h.value_day).collect::<Vec<_>>(),
            vec![t - 800, t - 400, t - 200, t - 60, t - 20, t - 5]
        );
        assert_eq!(
            hops.iter().map(|h| h.amount_fen).collect::<Vec<_>>(),
            vec![
                CENTRAL,
                TO_PROVINCE,
                TO_DONGXIANG,
                CONSOLIDATED - COUNTY_OWN,
                ALLOCATED,
                PAID[i]
            ]
        );
    }

    // From a record: the consolidation carried the central money and the
    // county's own; one lineage each.
    let answer = trace_backward(&mut client, Some(Target::Seq(county.c)))
        .await
        .unwrap();
    let by_source: BTreeMap<u64, &pb::Lineage> =
        answer.lineages.iter().map(|l| (l.source_seq, l)).collect();
    assert_eq!(
        by_source.keys().copied().collect::<Vec<_>>(),
        vec![county.s, county.s2]
    );
    let central = by_source[&county.s];
    assert_eq!(central.amount_fen, CONSOLIDATED - COUNTY_OWN);
    assert_eq!(
        central.hops.iter().map(|h| h.seq).collect::<Vec<_>>(),
        vec![county.s, county.t1, county.t2, county.c]
    );
    let own = by_source[&county.s2];
    assert_eq!(own.amount_fen, COUNTY_OWN);
    assert_eq!(
        (
            own.appropriating_org_id.as_str(),
            own.programme_code.as_str()
        ),
        ("dx-czj", COUNTY_PROGRAMME)
    );
    assert_eq!(own.source_document_no, S2_DOC);
    assert_eq!(
        own.hops
            .iter()
            .map(|h| (h.seq, h.kind.as_str(), h.document_no.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (county.s2, "Appropriation", S2_DOC),
            (county.c, "Consolidation", C_DOC)
        ]
    );

    // From Linxia's transfer: Linxia's chain, none of Dongxiang's.
    let answer = trace_backward(&mut client, Some(Target::Seq(county.t3)))
        .await
        .unwrap();
    assert_eq!(answer.lineages.len(), 1);
    assert_eq!(
        answer.lineages[0]
            .hops
            .iter()
            .map(|h| h.seq)
            .collect::<Vec<_>>(),
        vec![county.s, county.t1, county.t3]
    );

    // Bad targets.
    assert_eq!(
        code_of(trace_backward(&mut client, None).await),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        code_of(trace_backward(&mut client, Some(Target::AccountId("bad id!".into()))).await),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        code_of(trace_backward(&mut client, Some(Target::AccountId("nope".into()))).await),
        Some(Code::NotFound)
    );
    assert_eq!(
        code_of(trace_backward(&mut client, Some(Target::Seq(1))).await),
        Some(Code::NotFound),
        "record 1 moved no money"
    );
    assert_eq!(
        code_of(trace_backward(&mut client, Some(Target::Seq(1_000_000))).await),
        Some(Code::NotFound)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_backward_from_an_account_names_every_source_it_holds() {
    let (_dir, server, mut client, county) = start().await;
    // The pool holds two lots that arrived with the same record (the
    // consolidation): 30,000.00 of the central source and 50,000.00 of the
    // county's own.
    let pool = account_as_of(&mut client, "dx-pool", None).await.unwrap();
    assert_eq!(
        pool.balances
            .iter()
            .map(|b| (b.source_seq, b.amount_fen))
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([
            (county.s, CONSOLIDATED - COUNTY_OWN - ALLOCATED),
            (county.s2, COUNTY_OWN)
        ])
    );
    let answer = trace_backward(&mut client, Some(Target::AccountId("dx-pool".into())))
        .await
        .unwrap();
    let sources: BTreeSet<u64> = answer.lineages.iter().map(|l| l.source_seq).collect();
    assert_eq!(
        sources,
        BTreeSet::from([county.s, county.s2]),
        "a lineage for each source the pool holds: {:?}",
        answer.lineages
    );
    for lineage in &answer.lineages {
        assert_eq!(
            lineage.hops.first().map(|h| h.seq),
            Some(lineage.source_seq)
        );
        assert_eq!(
            lineage.hops.last().map(|h| h.to_account_id.as_str()),
            Some("dx-pool")
        );
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------
// HouseholdStatement.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn household_statement_shows_payments_statuses_and_what_is_left() {
    let (_dir, server, mut client, county) = start().await;
    let dongxiang = county.dongxiang.clone();
    let t = today();
    // 2,000.00 clawed back from household 1.
    let clawback = ok(
        &mut client,
        &dongxiang,
        give_back(
            "dx-hh-1",
            "dx-xczx",
            2_000_00,
            pb::ReturnKind::Clawback,
            "虚报冒领追回",
        ),
    )
    .await
    .seq;
    // A second payment to household 3, reversed.
    let extra = ok(
        &mut client,
        &dongxiang,
        county.quota(pay(
            "dx-proj-1",
            "dx-hh-3",
            5_000_00,
            "2026-01",
            "东财农〔2026〕41号",
        )),
    )
    .await
    .seq;
    ok(
        &mut client,
        &dongxiang,
        reverse(extra, "东财农〔2026〕42号"),
    )
    .await;
    // Household 2 exited poverty three days ago (a status change may be dated back).
    let exited = post_dated(
        &mut client,
        &dongxiang,
        &date(3),
        false,
        set_status(
            "dx-hh-2",
            pb::HouseholdStatus::Exited,
            "东乡脱贫〔2026〕1号",
        ),
    )
    .await
    .seq;

    let one = statement(&mut client, "dx-hh-1").await.unwrap();
    assert_eq!(one.account_id, "dx-hh-1");
    assert_eq!(one.owner_org_id, "dx-czj");
    assert_eq!(one.household_ref, "HH-622926-0001");
    assert_eq!(one.village_code, "622926100201");
    assert_eq!(one.basis, pb::SubsidyBasis::PerHousehold as i32);
    assert_eq!(one.members, 4);
    assert_eq!(one.status_today, pb::HouseholdStatus::Registered as i32);
    assert!(one.statuses.is_empty());
    assert_eq!(one.payments.len(), 1);
    let line = &one.payments[0];
    assert_eq!(line.seq, county.d[0]);
    assert_eq!(line.value_day, t - 5);
    assert_eq!(line.amount_fen, PAID[0]);
    assert_eq!(line.programme_code, CENTRAL_PROGRAMME);
    assert_eq!(line.period, PERIOD);
    assert_eq!(line.document_no, D_DOCS[0]);
    assert_eq!(line.from_account_id, "dx-proj-1");
    assert!(!line.reversed);
    assert_eq!(
        line.sources
            .iter()
            .map(|s| (s.source_seq, s.amount_fen))
            .collect::<Vec<_>>(),
        vec![(county.s, PAID[0])]
    );
    assert_eq!(one.received_fen, PAID[0]);
    assert_eq!(
        one.balance_fen,
        PAID[0] - 2_000_00,
        "after the clawback (record {clawback})"
    );

    let two = statement(&mut client, "dx-hh-2").await.unwrap();
    assert_eq!(two.status_today, pb::HouseholdStatus::Exited as i32);
    assert_eq!(
        two.statuses
            .iter()
            .map(|s| (s.effective_day, s.status, s.seq))
            .collect::<Vec<_>>(),
        vec![(t - 3, pb::HouseholdStatus::Exited as i32, exited)]
    );
    assert_eq!((two.received_fen, two.balance_fen), (PAID[1], PAID[1]));

    let three = statement(&mut client, "dx-hh-3").await.unwrap();
    assert_eq!(
        three
            .payments
            .iter()
            .map(|p| (p.seq, p.amount_fen, p.reversed, p.period.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (county.d[2], PAID[2], false, PERIOD),
            (extra, 5_000_00, true, "2026-01")
        ]
    );
    assert_eq!(
        three.received_fen, PAID[2],
        "the reversed payment does not count"
    );
    assert_eq!(three.balance_fen, PAID[2]);

    // The forward trace sees the clawback and the reversal too.
    let graph = trace_forward(&mut client, county.s, 0, "").await.unwrap();
    assert_eq!(graph.reached_households_fen, PAID_TOTAL - 2_000_00);
    assert_eq!(edge(&graph, "dx-hh-1", "dx-xczx").amount_fen, 2_000_00);
    assert_eq!(edge(&graph, "dx-hh-3", "dx-proj-1").amount_fen, 5_000_00);
    assert_eq!(accounted(&graph), CENTRAL);

    // Not a household; no such account; not an id.
    assert_eq!(
        code_of(statement(&mut client, "dx-xczx").await),
        Some(Code::NotFound)
    );
    assert_eq!(
        code_of(statement(&mut client, "nope").await),
        Some(Code::NotFound)
    );
    assert_eq!(
        code_of(statement(&mut client, "bad id!").await),
        Some(Code::InvalidArgument)
    );
    server.stop().await;
}
