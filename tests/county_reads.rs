//! Reading balances and records over real gRPC on the county chain of
//! `county/mod.rs`: an account as of a business date or a record, and the
//! filters of ListEntries.

mod common;
mod county;

use county::*;

// ---------------------------------------------------------------------------
// GetAccount as of a record, and ListEntries filters.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_by_business_date() {
    let (_dir, _server, mut client, county) = start().await;
    // mof-xczx: appropriated 800 days ago, ¥600,000 to the province 400
    // days ago. dx-xczx: its own ¥50,000 300 days ago, ¥300,000 from the
    // province 200 days ago.
    let central = |a: &pb::Account| {
        a.balances
            .iter()
            .map(|b| (b.source_seq, b.amount_fen))
            .collect::<Vec<_>>()
    };
    let before = account_on(&mut client, "mof-xczx", &date(801))
        .await
        .unwrap();
    assert_eq!((before.balance_fen, central(&before)), (0, vec![]));
    let appropriated = account_on(&mut client, "mof-xczx", &date(800))
        .await
        .unwrap();
    assert_eq!(central(&appropriated), vec![(county.s, CENTRAL)]);
    let transferred = account_on(&mut client, "mof-xczx", &date(400))
        .await
        .unwrap();
    assert_eq!(transferred.balance_fen, CENTRAL - TO_PROVINCE);
    let county_before = account_on(&mut client, "dx-xczx", &date(250))
        .await
        .unwrap();
    assert_eq!(central(&county_before), vec![(county.s2, COUNTY_OWN)]);
    let county_after = account_on(&mut client, "dx-xczx", &date(200))
        .await
        .unwrap();
    assert_eq!(
        central(&county_after),
        vec![(county.s, TO_DONGXIANG), (county.s2, COUNTY_OWN)]
    );
    // Today's balance by date is today's balance.
    let now = client
        .query
        .get_account(pb::GetAccountRequest {
            account_id: "dx-xczx".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let today = account_on(&mut client, "dx-xczx", &date(0)).await.unwrap();
    assert_eq!(today.balances, now.balances);
    // Not a date, or both kinds of moment: refused.
    for bad in ["2025-13-01", "yesterday", "2025-1-1"] {
        let refused = account_on(&mut client, "dx-xczx", bad).await;
        assert_eq!(code_of(refused), Some(Code::InvalidArgument), "{bad}");
    }
    let both = client
        .query
        .get_account(pb::GetAccountRequest {
            account_id: "dx-xczx".into(),
            as_of_seq: Some(county.t2),
            as_of_date: date(10),
        })
        .await;
    assert_eq!(code_of(both), Some(Code::InvalidArgument));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_as_of_a_record_and_filtered_entries() {
    let (_dir, server, mut client, county) = start().await;
    let by_source = |account: &pb::Account| -> Vec<(u64, u64)> {
        account
            .balances
            .iter()
            .map(|b| (b.source_seq, b.amount_fen))
            .collect()
    };
    let opened = account_as_of(&mut client, "dx-xczx", Some(county.dx_xczx_opened))
        .await
        .unwrap();
    assert_eq!(opened.balance_fen, 0);
    let before = account_as_of(&mut client, "dx-xczx", Some(county.t2 - 1))
        .await
        .unwrap();
    assert_eq!(
        before.balance_fen, COUNTY_OWN,
        "before the province's transfer"
    );
    assert_eq!(by_source(&before), vec![(county.s2, COUNTY_OWN)]);
    let after = account_as_of(&mut client, "dx-xczx", Some(county.t2))
        .await
        .unwrap();
    assert_eq!(
        after.balance_fen,
        COUNTY_OWN + TO_DONGXIANG,
        "just after it"
    );
    assert_eq!(
        after
            .balances
            .iter()
            .map(|b| (b.source_seq, b.amount_fen, b.document_no.as_str()))
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([
            (county.s, TO_DONGXIANG, S_DOC),
            (county.s2, COUNTY_OWN, S2_DOC)
        ])
    );
    let pooled = account_as_of(&mut client, "dx-xczx", Some(county.c))
        .await
        .unwrap();
    assert_eq!(pooled.balance_fen, COUNTY_OWN + TO_DONGXIANG - CONSOLIDATED);
    let now = account_as_of(&mut client, "dx-xczx", None).await.unwrap();
    assert_eq!(now.balance_fen, pooled.balance_fen);
    let pool_before = account_as_of(&mut client, "dx-pool", Some(county.a - 1))
        .await
        .unwrap();
    let pool_after = account_as_of(&mut client, "dx-pool", Some(county.a))
        .await
        .unwrap();
    assert_eq!(
        (pool_before.balance_fen, pool_after.balance_fen),
        (CONSOLIDATED, CONSOLIDATED - ALLOCATED)
    );
    let hh_before = account_as_of(&mut client, "dx-hh-2", Some(county.d[1] - 1))
        .await
        .unwrap();
    let hh_after = account_as_of(&mut client, "dx-hh-2", Some(county.d[1]))
        .await
        .unwrap();
    assert_eq!((hh_before.balance_fen, hh_after.balance_fen), (0, PAID[1]));
    let count = client
        .query
        .get_ledger(pb::GetLedgerRequest {})
        .await
        .unwrap()
        .into_inner()
        .record_count;
    let last = account_as_of(&mut client, "dx-xczx", Some(count - 1))
        .await
        .unwrap();
    assert_eq!(last.balance_fen, now.balance_fen);
    assert_eq!(
        code_of(account_as_of(&mut client, "dx-xczx", Some(count)).await),
        Some(Code::NotFound)
    );
    assert_eq!(
        code_of(account_as_of(&mut client, "dx-xczx", Some(county.dx_xczx_opened - 1)).await),
        Some(Code::FailedPrecondition),
        "before the account was opened"
    );

    // ListEntries: every filter agrees with filtering the whole log by hand.
    let everything = list_all(
        &mut client,
        pb::ListEntriesRequest {
            page_size: 50,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(everything.len() as u64, count);
    let by_hand = |keep: &dyn Fn(&pb::Entry) -> bool| -> Vec<u64> {
        everything
            .iter()
            .filter(|e| keep(e))
            .map(|e| e.seq)
            .collect()
    };
    let kind_of = |e: &pb::Entry| fundtrail_api::body_kind(&e.body.as_ref().unwrap().body);
    let legs = |e: &pb::Entry| e.effects.clone().unwrap_or_default().legs;

    let dongxiang = list_all(
        &mut client,
        pb::ListEntriesRequest {
            org_id: "dx-czj".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        seqs(&dongxiang),
        by_hand(&|e| e.effects.as_ref().unwrap().signer_org_id == "dx-czj")
    );
    assert!(seqs(&dongxiang).contains(&county.c) && !seqs(&dongxiang).contains(&county.t2));

    let payments = list_all(
        &mut client,
        pb::ListEntriesRequest {
            kind: "Disbursement".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&payments), county.d.to_vec());
    let consolidations = list_all(
        &mut client,
        pb::ListEntriesRequest {
            kind: "Consolidation".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&consolidations), vec![county.lc, county.c]);
    assert_eq!(
        seqs(&consolidations),
        by_hand(&|e| kind_of(e) == "Consolidation")
    );

    let own_money = list_all(
        &mut client,
        pb::ListEntriesRequest {
            source_seq: Some(county.s2),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        seqs(&own_money),
        vec![county.s2, county.c],
        "appropriated, then pooled; never allocated"
    );
    let central_money = list_all(
        &mut client,
        pb::ListEntriesRequest {
            source_seq: Some(county.s),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        seqs(&central_money),
        by_hand(&|e| legs(e).iter().any(|l| l.source_seq == county.s))
    );
    assert_eq!(central_money.len(), 10);

    let cited = list_all(
        &mut client,
        pb::ListEntriesRequest {
            document_no: T2_DOC.into(),
            ..Default::default()
        },
    )
    .await;
    // The province's document issued 东乡's quota and sent its cash.
    assert_eq!(seqs(&cited), vec![county.quota_dongxiang, county.t2]);
    let plan = list_all(
        &mut client,
        pb::ListEntriesRequest {
            document_no: C_DOC.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&plan), vec![county.c]);
    let announced = list_all(
        &mut client,
        pb::ListEntriesRequest {
            document_no: ANNOUNCE_DOC.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(announced.len(), 1);
    assert_eq!(kind_of(&announced[0]), "AnnounceProject");

    let pool = list_all(
        &mut client,
        pb::ListEntriesRequest {
            account_id: "dx-pool".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&pool), vec![county.c, county.a]);
    let project = list_all(
        &mut client,
        pb::ListEntriesRequest {
            account_id: "dx-proj-1".into(),
            ..Default::default()
        },
    )
    .await;
    let mut expected = vec![county.a];
    expected.extend(county.d);
    assert_eq!(seqs(&project), expected);

    // Combined filters: all must hold.
    let both = list_all(
        &mut client,
        pb::ListEntriesRequest {
            org_id: "dx-czj".into(),
            kind: "Allocation".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&both), vec![county.a]);
    let none = list_all(
        &mut client,
        pb::ListEntriesRequest {
            org_id: "gs-czt".into(),
            kind: "Allocation".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(none.is_empty());
    let account_and_kind = list_all(
        &mut client,
        pb::ListEntriesRequest {
            account_id: "dx-xczx".into(),
            kind: "Appropriation".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&account_and_kind), vec![county.s2]);

    // Commit-time range [from, to): the second payment alone.
    let middle = list_all(
        &mut client,
        pb::ListEntriesRequest {
            from_time_ms: county.d_commit_ms[1],
            to_time_ms: county.d_commit_ms[2],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&middle), vec![county.d[1]]);
    let from_second = list_all(
        &mut client,
        pb::ListEntriesRequest {
            from_time_ms: county.d_commit_ms[1],
            kind: "Disbursement".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&from_second), vec![county.d[1], county.d[2]]);
    let until_second = list_all(
        &mut client,
        pb::ListEntriesRequest {
            to_time_ms: county.d_commit_ms[1],
            kind: "Disbursement".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&until_second), vec![county.d[0]]);

    // Page size: 4 households in pages of 2.
    let first = list(
        &mut client,
        pb::ListEntriesRequest {
            kind: "RegisterHousehold".into(),
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(first.entries.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let rest = list_all(
        &mut client,
        pb::ListEntriesRequest {
            kind: "RegisterHousehold".into(),
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        },
    )
    .await;
    let mut all_households = seqs(&first.entries);
    all_households.extend(seqs(&rest));
    assert_eq!(
        all_households,
        by_hand(&|e| kind_of(e) == "RegisterHousehold")
    );
    assert_eq!(all_households.len(), 4);
    server.stop().await;
}
