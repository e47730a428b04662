//! Sizes are checked before anything reaches the journal: one request whose
//! record would be too large is refused alone, and the ledger keeps writing.

mod common;

use common::*;
use fundtrail_api::pb;
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

async fn huge_movement_is_refused_alone(rules: Rules, says: &str) {
    let dir = tempfile::tempdir().unwrap();
    fundtrail_server::genesis::init_with(
        dir.path(),
        &Default::default(),
        rules,
        &fundtrail_core::clock::SystemClock,
    )
    .unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let root = server.root();
    use pb::AccountKind as K;
    ok(&mut client, &root, open_account(A, K::Treasury, "国库A")).await;
    ok(&mut client, &root, open_account(B, K::Programme, "专项B")).await;
    ok(
        &mut client,
        &root,
        appropriation(A, 1_000_000_00, "财〔2026〕1号"),
    )
    .await;
    // Many small transfers make as many lots in mof-b.
    // Long account ids make a leg about 75 bytes: 5,000 legs are well past
    // the 256 KiB a record holds.
    const LOTS: usize = 5_000;
    for chunk in 0..LOTS / 1_000 {
        let requests = (0..1_000)
            .map(|i| {
                let request = client.request(transfer(
                    A,
                    B,
                    1_00,
                    &format!("财〔2026〕{}号", 2 + chunk * 1_000 + i),
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
    }
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
