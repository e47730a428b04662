//! The rules of the record kinds that move money down to households, over
//! real gRPC on the county chain of `county/mod.rs`: every refusal (each
//! checked to change nothing), reversing an allocation, and the bank's
//! results for household payments (rules 5).

mod common;
mod county;

use county::*;

// ---------------------------------------------------------------------------
// Refusals.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_rules_refuse_and_change_nothing() {
    let (_dir, server, mut client, county) = start().await;
    let dongxiang = county.dongxiang.clone();
    let linxia = county.linxia.clone();
    let province = county.province.clone();
    // A project without performance targets; an ineligible household.
    ok(
        &mut client,
        &dongxiang,
        register_project("dx-proj-nt", "622926100", 10_000_00, &[]),
    )
    .await;
    ok(
        &mut client,
        &dongxiang,
        household_in("dx-hh-x", "HH-622926-0099", "622926100209"),
    )
    .await;
    ok(
        &mut client,
        &dongxiang,
        set_status(
            "dx-hh-x",
            pb::HouseholdStatus::Ineligible,
            "东乡核查〔2026〕1号",
        ),
    )
    .await;
    let requester = client.clone();
    let signed = |signer: &Signer, body: B| signer.sign(&requester.request(body));
    let on = |signer: &Signer, value_date: &str, imported: bool, body: B| {
        dated(&requester, signer, value_date, imported, body)
    };
    let budget_left = BUDGET - ALLOCATED;
    let fp = Code::FailedPrecondition;
    let ia = Code::InvalidArgument;
    let cases = vec![
        refusal(
            "allocation to a project without performance targets",
            signed(
                &dongxiang,
                allocation("dx-pool", "dx-proj-nt", 1_000_00, "东财农〔2026〕70号"),
            ),
            fp,
            "allocation.project_account_id",
            "performance target",
        ),
        refusal(
            "allocation over the project's budget",
            signed(
                &dongxiang,
                allocation(
                    "dx-pool",
                    "dx-proj-1",
                    budget_left + 1,
                    "东财农〔2026〕71号",
                ),
            ),
            fp,
            "allocation.project_account_id",
            "budget",
        ),
        refusal(
            "allocation to another county's project",
            signed(
                &linxia,
                allocation("lx-pool", "dx-proj-1", 1_000_00, "临财农〔2026〕72号"),
            ),
            Code::PermissionDenied,
            "allocation.project_account_id",
            "names nothing this org may act on",
        ),
        refusal(
            "allocation from Dongxiang's pool to Linxia's project",
            signed(
                &dongxiang,
                allocation("dx-pool", "lx-proj-1", 1_000_00, "东财农〔2026〕73号"),
            ),
            Code::PermissionDenied,
            "allocation.project_account_id",
            "names nothing this org may act on",
        ),
        refusal(
            "allocation to an account that is not a library project",
            signed(
                &dongxiang,
                allocation("dx-pool", "dx-xczx", 1_000_00, "东财农〔2026〕74号"),
            ),
            fp,
            "allocation.project_account_id",
            "not in a county project library",
        ),
        refusal(
            "disbursement to an account that is not a registered household",
            signed(
                &dongxiang,
                county.quota(pay(
                    "dx-proj-1",
                    "dx-pool",
                    100_00,
                    PERIOD,
                    "东财农〔2026〕75号",
                )),
            ),
            fp,
            "disbursement.household_account_id",
            "not a registered household",
        ),
        refusal(
            "disbursement to an ineligible household",
            signed(
                &dongxiang,
                county.quota(pay(
                    "dx-proj-1",
                    "dx-hh-x",
                    100_00,
                    PERIOD,
                    "东财农〔2026〕76号",
                )),
            ),
            fp,
            "disbursement.household_account_id",
            "not eligible",
        ),
        refusal(
            "disbursement to another county's household",
            signed(
                &dongxiang,
                county.quota(pay(
                    "dx-proj-1",
                    "lx-hh-1",
                    100_00,
                    PERIOD,
                    "东财农〔2026〕77号",
                )),
            ),
            Code::PermissionDenied,
            "disbursement.household_account_id",
            "names nothing this org may act on",
        ),
        refusal(
            "consolidation from a project account",
            signed(
                &dongxiang,
                consolidation("dx-proj-1", "dx-pool", 100_00, "东政办〔2026〕78号"),
            ),
            fp,
            "consolidation.from_account_id",
            "programme money",
        ),
        refusal(
            "consolidation from the pool itself",
            signed(
                &dongxiang,
                consolidation("dx-pool", "dx-pool", 100_00, "东政办〔2026〕79号"),
            ),
            fp,
            "consolidation.from_account_id",
            "programme money",
        ),
        refusal(
            "consolidation into another county's pool",
            signed(
                &dongxiang,
                consolidation("dx-xczx", "lx-pool", 100_00, "东政办〔2026〕80号"),
            ),
            Code::PermissionDenied,
            "consolidation.pool_account_id",
            "names nothing this org may act on",
        ),
        refusal(
            "consolidation into a project instead of the pool",
            signed(
                &dongxiang,
                consolidation("dx-xczx", "dx-proj-1", 100_00, "东政办〔2026〕81号"),
            ),
            fp,
            "consolidation.pool_account_id",
            "not a consolidated pool",
        ),
        refusal(
            "value date tomorrow",
            on(
                &province,
                &date(-1),
                true,
                county.quota(transfer("gs-xczx", "dx-xczx", 100_00, "甘财农〔2026〕82号")),
            ),
            ia,
            "value_date",
            "future",
        ),
        refusal(
            "past value date on a record that is not imported",
            on(
                &province,
                &date(10),
                false,
                county.quota(transfer("gs-xczx", "dx-xczx", 100_00, "甘财农〔2026〕83号")),
            ),
            ia,
            "value_date",
            "imported",
        ),
        refusal(
            "value date that is no date",
            on(
                &province,
                "2025-02-30",
                true,
                county.quota(transfer("gs-xczx", "dx-xczx", 100_00, "甘财农〔2026〕84号")),
            ),
            ia,
            "value_date",
            "2025-02-30",
        ),
        refusal(
            "value date in another format",
            on(
                &province,
                "2025/03/01",
                true,
                county.quota(transfer("gs-xczx", "dx-xczx", 100_00, "甘财农〔2026〕85号")),
            ),
            ia,
            "value_date",
            "2025/03/01",
        ),
        refusal(
            "money spent with a value date before it arrived",
            on(
                &province,
                &date(500),
                true,
                county.quota(transfer("gs-xczx", "dx-xczx", 100_00, "甘财农〔2026〕86号")),
            ),
            fp,
            "transfer.sources",
            "arrived after",
        ),
        refusal(
            "payment dated before the project received its money",
            on(
                &dongxiang,
                &date(25),
                true,
                county.quota(pay(
                    "dx-proj-1",
                    "dx-hh-3",
                    100_00,
                    PERIOD,
                    "东财农〔2026〕87号",
                )),
            ),
            fp,
            "disbursement.sources",
            "arrived after",
        ),
        refusal(
            "OpenAccount of kind PROJECT",
            signed(
                &dongxiang,
                open_account("dx-proj-9", pb::AccountKind::Project, "项目"),
            ),
            ia,
            "open_account.kind",
            "RegisterProject",
        ),
        refusal(
            "OpenAccount of kind HOUSEHOLD",
            signed(
                &dongxiang,
                open_account("dx-hh-99", pb::AccountKind::Household, "户"),
            ),
            ia,
            "open_account.kind",
            "RegisterHousehold",
        ),
        refusal(
            "household with an 8-digit village code",
            signed(
                &dongxiang,
                household_in("dx-hh-98", "HH-622926-0098", "62292610"),
            ),
            ia,
            "register_household.village_code",
            "village",
        ),
        refusal(
            "household with a county code for a village code",
            signed(
                &dongxiang,
                household_in("dx-hh-97", "HH-622926-0097", "622926"),
            ),
            ia,
            "register_household.village_code",
            "village",
        ),
        refusal(
            "household with letters in its village code",
            signed(
                &dongxiang,
                household_in("dx-hh-96", "HH-622926-0096", "6229261002A1"),
            ),
            ia,
            "register_household.village_code",
            "6229261002A1",
        ),
        refusal(
            "return without a reason",
            signed(
                &dongxiang,
                give_back(
                    "dx-xczx",
                    "gs-xczx",
                    100_00,
                    pb::ReturnKind::IdleRecovery,
                    "",
                ),
            ),
            ia,
            "return.reason",
            "reason",
        ),
        refusal(
            "return with a blank reason",
            signed(
                &dongxiang,
                give_back("dx-xczx", "gs-xczx", 100_00, pb::ReturnKind::Surplus, "   "),
            ),
            ia,
            "return.reason",
            "reason",
        ),
    ];
    check_refusals(&server, &mut client, cases).await;

    // The refusals were about the rule, not the money: the same requests
    // made right are accepted.
    ok(
        &mut client,
        &dongxiang,
        allocation("dx-pool", "dx-proj-1", budget_left, "东财农〔2026〕90号"),
    )
    .await;
    ok(
        &mut client,
        &dongxiang,
        county.quota(pay(
            "dx-proj-1",
            "dx-hh-3",
            100_00,
            PERIOD,
            "东财农〔2026〕91号",
        )),
    )
    .await;
    post_dated(
        &mut client,
        &province,
        &date(150),
        true,
        county.quota(transfer("gs-xczx", "dx-xczx", 100_00, "甘财农〔2026〕92号")),
    )
    .await;
    ok(
        &mut client,
        &dongxiang,
        give_back(
            "dx-xczx",
            "gs-xczx",
            100_00,
            pb::ReturnKind::IdleRecovery,
            "项目结余",
        ),
    )
    .await;
    ok(
        &mut client,
        &dongxiang,
        household_in("dx-hh-95", "HH-622926-0095", "622926100"),
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversing_an_allocation_gives_the_budget_back() {
    let (_dir, server, mut client, county) = start().await;
    let dongxiang = county.dongxiang.clone();
    let budget_left = BUDGET - ALLOCATED;
    let topped = ok(
        &mut client,
        &dongxiang,
        allocation("dx-pool", "dx-proj-1", budget_left, "东财农〔2026〕100号"),
    )
    .await
    .seq;
    let over = client
        .post(
            &dongxiang,
            allocation("dx-pool", "dx-proj-1", 1, "东财农〔2026〕101号"),
        )
        .await
        .unwrap_err();
    assert_eq!(over.code(), Code::FailedPrecondition);
    assert!(over.message().contains("budget"), "{}", over.message());

    let pool_before = balance(&mut client, "dx-pool").await;
    let reversal = ok(
        &mut client,
        &dongxiang,
        reverse(topped, "东财农〔2026〕102号"),
    )
    .await
    .seq;
    assert_eq!(
        balance(&mut client, "dx-pool").await,
        pool_before + budget_left
    );
    assert_eq!(
        balance(&mut client, "dx-proj-1").await,
        ALLOCATED - PAID_TOTAL
    );
    let entry = client
        .query
        .get_entry(pb::GetEntryRequest { seq: topped })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(entry.reversed_by_seq, Some(reversal));

    // The budget is free again, exactly.
    ok(
        &mut client,
        &dongxiang,
        allocation("dx-pool", "dx-proj-1", budget_left, "东财农〔2026〕103号"),
    )
    .await;
    let still_over = client
        .post(
            &dongxiang,
            allocation("dx-pool", "dx-proj-1", 1, "东财农〔2026〕104号"),
        )
        .await
        .unwrap_err();
    assert_eq!(still_over.code(), Code::FailedPrecondition);

    // The first allocation's money has moved on to households: it cannot be
    // reversed, and the refusal leaves the budget as it was.
    let state_before = server.dump();
    let moved_on = client
        .post(&dongxiang, reverse(county.a, "东财农〔2026〕105号"))
        .await
        .unwrap_err();
    assert_eq!(moved_on.code(), Code::FailedPrecondition);
    assert!(state_before == server.dump());
    server.stop().await;
}
// ---------------------------------------------------------------------------
// The bank's results (rules 5).

fn confirm(disbursement_seq: u64, household: &str, reference: &str) -> B {
    B::ConfirmCredit(pb::ConfirmCredit {
        disbursement_seq,
        household_account_id: household.into(),
        bank_reference: reference.into(),
        document_no: "农信回单〔2026〕1号".into(),
    })
}

fn bank_failure(
    disbursement_seq: u64,
    household: &str,
    to: &str,
    amount_fen: u64,
    reference: &str,
) -> B {
    B::Return(pb::Return {
        from_account_id: household.into(),
        to_account_id: to.into(),
        amount_fen,
        kind: pb::ReturnKind::BankFailure as i32,
        document_no: "农信回单〔2026〕1号".into(),
        reason: "账户已销户".into(),
        disbursement_seq,
        bank_reference: reference.into(),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banks_results_settle_payments_and_a_failure_brings_the_money_back() {
    let (_dir, server, mut client, county) = start().await;
    let dongxiang = county.dongxiang.clone();
    let d = county.d;
    // Credited four days ago (the result file came today); the second
    // household's card was closed, so the bank sent its money back.
    let credited = post_dated(
        &mut client,
        &dongxiang,
        &date(4),
        false,
        confirm(d[0], HOUSEHOLDS[0], "NX-20260001"),
    )
    .await;
    let failed = ok(
        &mut client,
        &dongxiang,
        bank_failure(d[1], HOUSEHOLDS[1], "dx-proj-1", PAID[1], "NX-20260002"),
    )
    .await;
    let legs = failed.effects.clone().unwrap().legs;
    assert_eq!(legs.len(), 1);
    assert_eq!(
        (
            legs[0].from_account_id.as_str(),
            legs[0].to_account_id.as_str()
        ),
        (HOUSEHOLDS[1], "dx-proj-1")
    );
    assert_eq!(
        (legs[0].amount_fen, legs[0].from_arrival_seq),
        (PAID[1], Some(d[1]))
    );

    // The statements say what the bank said.
    let first = statement(&mut client, HOUSEHOLDS[0]).await.unwrap();
    let line = &first.payments[0];
    assert_eq!(line.bank_status(), pb::BankStatus::Credited);
    assert_eq!(
        (
            line.bank_result_seq,
            line.bank_reference.as_str(),
            line.bank_day
        ),
        (credited.seq, "NX-20260001", today() - 4)
    );
    assert_eq!((first.received_fen, first.balance_fen), (PAID[0], PAID[0]));
    let second = statement(&mut client, HOUSEHOLDS[1]).await.unwrap();
    let line = &second.payments[0];
    assert_eq!(line.bank_status(), pb::BankStatus::Failed);
    assert_eq!((line.bank_result_seq, line.bank_day), (failed.seq, today()));
    assert_eq!((second.received_fen, second.balance_fen), (0, 0));
    let third = statement(&mut client, HOUSEHOLDS[2]).await.unwrap();
    assert_eq!(third.payments[0].bank_status(), pb::BankStatus::Unconfirmed);

    // The trace shows the money back at the project, not at the household.
    let graph = trace_forward(&mut client, county.s, 0, "").await.unwrap();
    assert_eq!(graph.reached_households_fen, PAID_TOTAL - PAID[1]);
    assert_eq!(node(&graph, HOUSEHOLDS[1]).held_fen, 0);
    let back = edge(&graph, HOUSEHOLDS[1], "dx-proj-1");
    assert_eq!(
        (back.kinds.clone(), back.first_seq),
        (vec!["Return".to_string()], failed.seq)
    );
    assert_eq!(
        accounted(&graph),
        graph.traced_fen,
        "Σ held + withdrawn = traced"
    );

    // Three days on, only the third payment (five days old) lacks a result.
    let findings = |days| pb::AnomaliesRequest {
        unconfirmed_after_days: days,
        page_size: 1_000,
        ..Default::default()
    };
    let unconfirmed = |r: pb::AnomaliesResponse| -> Vec<(String, Vec<u64>, u64)> {
        r.findings
            .into_iter()
            .filter(|f| f.kind == "UNCONFIRMED_PAYMENT")
            .map(|f| (f.account_id, f.seqs, f.amount_fen))
            .collect()
    };
    assert_eq!(
        unconfirmed(anomalies(&mut client, findings(3)).await),
        vec![(HOUSEHOLDS[2].to_string(), vec![d[2]], PAID[2])]
    );
    assert!(unconfirmed(anomalies(&mut client, findings(10)).await).is_empty());
    assert!(unconfirmed(anomalies(&mut client, findings(0)).await).is_empty());

    // What the rules refuse, each changing nothing.
    let requester = client.clone();
    let signed = |signer: &Signer, body: B| signer.sign(&requester.request(body));
    let on = |value_date: &str, body: B| dated(&requester, &dongxiang, value_date, false, body);
    let fp = Code::FailedPrecondition;
    let ia = Code::InvalidArgument;
    let cases = vec![
        refusal(
            "a second result for a payment",
            signed(&dongxiang, confirm(d[0], HOUSEHOLDS[0], "NX-20260009")),
            fp,
            "confirm_credit.disbursement_seq",
            "already posted",
        ),
        refusal(
            "a bank reference used before",
            signed(&dongxiang, confirm(d[2], HOUSEHOLDS[2], "NX-20260002")),
            Code::AlreadyExists,
            "confirm_credit.bank_reference",
            "already posted by record",
        ),
        refusal(
            "another county's payment",
            signed(&county.linxia, confirm(d[2], HOUSEHOLDS[2], "LX-1")),
            Code::PermissionDenied,
            "confirm_credit.disbursement_seq",
            "only the org that paid",
        ),
        refusal(
            "another household than the payment's",
            signed(&dongxiang, confirm(d[2], HOUSEHOLDS[0], "NX-20260003")),
            ia,
            "confirm_credit.household_account_id",
            "not dx-hh-1",
        ),
        refusal(
            "a record that is not a payment",
            signed(&dongxiang, confirm(county.a, HOUSEHOLDS[2], "NX-20260003")),
            Code::PermissionDenied,
            "confirm_credit.disbursement_seq",
            "names no household payment",
        ),
        refusal(
            "credited before it was paid",
            on(&date(6), confirm(d[2], HOUSEHOLDS[2], "NX-20260003")),
            fp,
            "value_date",
            "cannot have credited",
        ),
        refusal(
            "a card-number-shaped reference",
            signed(
                &dongxiang,
                confirm(d[2], HOUSEHOLDS[2], "6222021234567890123"),
            ),
            ia,
            "confirm_credit.bank_reference",
            "bank card number",
        ),
        refusal(
            "a failure for less than the payment",
            signed(
                &dongxiang,
                bank_failure(d[2], HOUSEHOLDS[2], "dx-proj-1", PAID[2] - 1, "NX-20260003"),
            ),
            ia,
            "return.amount_fen",
            "whole payment",
        ),
        refusal(
            "a failure sent elsewhere than the paying account",
            signed(
                &dongxiang,
                bank_failure(d[2], HOUSEHOLDS[2], "dx-pool", PAID[2], "NX-20260003"),
            ),
            ia,
            "return.to_account_id",
            "the account that paid",
        ),
        refusal(
            "reversing a credited payment",
            signed(&dongxiang, reverse(d[0], "东财农〔2026〕91号")),
            fp,
            "reversal.target_seq",
            "CLAWBACK",
        ),
        refusal(
            "reversing the bank's failure",
            signed(&dongxiang, reverse(failed.seq, "东财农〔2026〕92号")),
            fp,
            "reversal.target_seq",
            "not reversed",
        ),
    ];
    check_refusals(&server, &mut client, cases).await;

    // The third payment settles once the bank says so.
    ok(
        &mut client,
        &dongxiang,
        confirm(d[2], HOUSEHOLDS[2], "NX-20260003"),
    )
    .await;
    assert!(unconfirmed(anomalies(&mut client, findings(3)).await).is_empty());
    replays_from_genesis(&server);
}
