//! Sizes are checked before anything reaches the journal: one request whose
//! record would be too large is refused alone, and the ledger keeps writing.

mod common;

use common::*;
use fundtrail_api::pb;
use fundtrail_client::{Client, Signer};
use fundtrail_core::rules::Rules;

const A: &str = "mof-central-treasury-account-for-limits-a";
const B: &str = "mof-central-programme-account-for-limits-b";

/// Rules 3: the sequencer's record-size check refuses the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_rules_3_a_record_over_the_size_limit_is_refused_alone() {
    huge_movement_is_refused_alone(Rules::V3, "too many lots").await;
}

/// Rules 4: the leg cap refuses it while the lots are picked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_rules_4_a_movement_over_the_leg_cap_is_refused_alone() {
    huge_movement_is_refused_alone(Rules::V4, "more than 1000 lots").await;
}

/// Rules 7: skipping small lots does not help when every lot is small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_rules_7_money_in_too_many_pieces_is_still_refused_alone() {
    huge_movement_is_refused_alone(Rules::V7, "more than 1000 lots").await;
}

/// Many one-fen lots sent ahead of real money: under rules 6 they block the
/// next payment without earmarks (it would take more than 1,000 legs);
/// from rules 7 the payment skips them and is paid out of the large lot,
/// and a small payment still spends the oldest lots first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_rules_7_small_lots_sent_ahead_do_not_block_a_payment() {
    for rules in [Rules::V6, Rules::V7] {
        let (_dir, server, mut client) = start_under(rules).await;
        let root = server.root();
        const DUST: u64 = 1_001;
        send_lots(&mut client, &root, DUST, 1, 2).await;
        ok(
            &mut client,
            &root,
            transfer(A, B, 1_000_000_00, "财〔2026〕9000号"),
        )
        .await;
        let count = ledger_info(&mut client).await.record_count;
        let payment = client
            .post(&root, transfer(B, A, 500_000_00, "财〔2026〕9001号"))
            .await;
        if rules < Rules::V7 {
            let refused = payment.expect_err("rules 6 refuse a payment over 1,000 lots");
            assert_eq!(
                refused.code(),
                tonic::Code::ResourceExhausted,
                "{refused:?}"
            );
            assert!(
                refused.message().contains("more than 1000 lots"),
                "{}",
                refused.message()
            );
            assert_eq!(ledger_info(&mut client).await.record_count, count);
            server.stop().await;
            continue;
        }
        let paid = payment.expect("rules 7 skip the one-fen lots");
        assert_eq!(paid.seq, count);
        assert_eq!(
            paid.effects.as_ref().unwrap().legs.len(),
            1,
            "paid out of the large lot alone"
        );
        assert_eq!(balance(&mut client, B).await, DUST + 500_000_00);
        // Naming the source: the same, one leg out of the large lot.
        let source_seq = paid.effects.as_ref().unwrap().legs[0].source_seq;
        let mut named = transfer(B, A, 100_000_00, "财〔2026〕9003号");
        if let pb::request::Body::Transfer(t) = &mut named {
            t.sources = vec![pb::SourceAmount {
                source_seq,
                amount_fen: 100_000_00,
            }];
        }
        let named = ok(&mut client, &root, named).await;
        assert_eq!(named.effects.as_ref().unwrap().legs.len(), 1);
        assert_eq!(balance(&mut client, B).await, DUST + 400_000_00);
        // A payment small enough to fit oldest first still spends the
        // one-fen lots, oldest first: one leg each.
        let small = ok(&mut client, &root, transfer(B, A, 300, "财〔2026〕9002号")).await;
        let legs = &small.effects.as_ref().unwrap().legs;
        assert_eq!(legs.len(), 300);
        assert!(legs.iter().all(|l| l.amount_fen == 1));
        assert_eq!(balance(&mut client, B).await, DUST - 300 + 400_000_00);
        server.stop().await;
    }
}

async fn start_under(rules: Rules) -> (tempfile::TempDir, TestServer, Client) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_under(dir.path(), rules).await;
    let mut client = server.client().await;
    let root = server.root();
    use pb::AccountKind as K;
    ok(&mut client, &root, open_account(A, K::Treasury, "国库A")).await;
    ok(&mut client, &root, open_account(B, K::Programme, "专项B")).await;
    ok(
        &mut client,
        &root,
        appropriation(A, 1_000_000_000_00, "财〔2026〕1号"),
    )
    .await;
    (dir, server, client)
}

/// `count` transfers of `amount_fen` each from A to B, numbered from
/// `first_document`: one lot each at B.
async fn send_lots(
    client: &mut Client,
    root: &Signer,
    count: u64,
    amount_fen: u64,
    first_document: u64,
) {
    let mut sent = 0;
    while sent < count {
        let chunk = (count - sent).min(1_000);
        let requests = (sent..sent + chunk)
            .map(|i| {
                let request = client.request(transfer(
                    A,
                    B,
                    amount_fen,
                    &format!("财〔2026〕{}号", first_document + i),
                ));
                root.sign(&request)
            })
            .collect();
        let results = client.post_batch(requests).await.unwrap();
        assert!(
            results
                .iter()
                .all(|r| matches!(r.result, Some(pb::post_result::Result::Ok(_)))),
            "{:?}",
            results
                .iter()
                .find(|r| !matches!(r.result, Some(pb::post_result::Result::Ok(_))))
        );
        sent += chunk;
    }
}

async fn huge_movement_is_refused_alone(rules: Rules, says: &str) {
    let (_dir, server, mut client) = start_under(rules).await;
    let root = server.root();
    // Many small transfers make as many lots in mof-b.
    // Long account ids make a leg about 75 bytes: 5,000 legs are well past
    // the 256 KiB a record holds.
    const LOTS: usize = 5_000;
    send_lots(&mut client, &root, LOTS as u64, 1_00, 2).await;
    let count = ledger_info(&mut client).await.record_count;
    // Spending all of them at once, with no earmarks, takes one leg a lot:
    // a record larger than the journal takes.
    let refused = match client
        .post(
            &root,
            transfer(B, A, LOTS as u64 * 1_00, "财〔2026〕99999号"),
        )
        .await
    {
        Ok(posted) => panic!("a {}-leg record was accepted as #{}", LOTS, posted.seq),
        Err(status) => status,
    };
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(refused.message().contains(says), "{}", refused.message());
    let info = ledger_info(&mut client).await;
    assert!(info.writable, "{}", info.read_only_reason);
    assert_eq!(
        info.record_count, count,
        "the refused request wrote nothing"
    );
    // Smaller pieces go through.
    let moved = ok(
        &mut client,
        &root,
        transfer(B, A, 500 * 1_00, "财〔2026〕100000号"),
    )
    .await;
    assert_eq!(moved.seq, count);
    assert_eq!(balance(&mut client, B).await, (LOTS as u64 - 500) * 1_00);
    server.stop().await;
}
