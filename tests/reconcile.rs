//! `fundtrail reconcile`, the real binary against a real server: generated
//! bank files with every kind of finding, in UTF-8 and in GB18030, and with
//! malformed lines (refused whole, each named by its line, unless
//! --skip-bad-lines).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use fundtrail_core::dates::{day_of_ms, format_date};
use serde_json::{json, Value};

/// Pays dx-hh-0002..0005 ¥300.00 each as 东乡县 (dx-hh-0001 was paid
/// ¥3,000.00 by the chain), all dated today.
async fn county_with_payments(server: &TestServer) -> Chain {
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    for n in 2..=5 {
        let id = format!("dx-hh-000{n}");
        ok(
            &mut client,
            &chain.dongxiang,
            household(&id, &format!("HH-622926-000{n}")),
        )
        .await;
        ok(
            &mut client,
            &chain.dongxiang,
            chain.quota(disbursement("dx-xczx", &id, 300_00)),
        )
        .await;
    }
    chain
}

fn reconcile(server: &TestServer, dir: &Path, file: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fundtrail"))
        .args(["reconcile", "--county", "dx-czj", "--json", "--bank-file"])
        .arg(file)
        .args(extra)
        .args(["--server", &server.url, "--key"])
        .arg(dir.join("root.key"))
        .output()
        .unwrap()
}

fn today_plus(days: i32) -> String {
    format_date(day_of_ms(fundtrail_client::now_ms()) + days)
}

/// A bank file with one line of each kind of finding, columns in the
/// bank's own order and one column the reconciliation ignores.
fn bank_file() -> String {
    let today = today_plus(0);
    let late = today_plus(31);
    format!(
        "银行流水号,户编号,姓名,金额,入账日期,状态\n\
         R1,HH-622926-0001,,\"3,000.00\",{today},成功\n\
         R2,HH-622926-0002,,300.00,{today},失败\n\
         R3,HH-622926-0003,,299.00,{today},成功\n\
         R4,HH-622926-0004,,300.00,{late},成功\n\
         R5,HH-622926-9999,,300.00,{today},成功\n\
         R1,HH-622926-0001,,3000.00,{today},成功\n"
    )
}

fn report(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn kinds_by_line(report: &Value) -> Vec<(Value, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["line"].clone(), f["kind"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_finding_in_utf8_and_in_gb18030() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    county_with_payments(&server).await;
    let text = bank_file();
    let utf8 = dir.path().join("bank-utf8.csv");
    std::fs::write(&utf8, format!("\u{feff}{text}")).unwrap();
    let gb = dir.path().join("bank-gb18030.csv");
    let (encoded, _, unmappable) = encoding_rs::GB18030.encode(&text);
    assert!(!unmappable);
    assert!(std::str::from_utf8(&encoded).is_err(), "really not UTF-8");
    std::fs::write(&gb, &encoded).unwrap();

    for file in [&utf8, &gb] {
        let report = report(&reconcile(&server, dir.path(), file, &[]));
        assert_eq!(
            kinds_by_line(&report),
            vec![
                (json!(2), "CREDITED".to_string()),
                (json!(3), "FAILED".to_string()),
                (json!(4), "MISMATCH".to_string()),
                (json!(5), "MISMATCH".to_string()),
                (json!(6), "NO_PAYMENT".to_string()),
                (json!(7), "DUPLICATE_REFERENCE".to_string()),
                (Value::Null, "NO_BANK_LINE".to_string()),
            ],
            "{}",
            file.display()
        );
        let findings = report["findings"].as_array().unwrap();
        assert_eq!(findings[2]["amount_differs"], json!(true));
        assert_eq!(findings[2]["date_differs"], json!(false));
        assert_eq!(findings[3]["amount_differs"], json!(false));
        assert_eq!(findings[3]["date_differs"], json!(true));
        assert_eq!(findings[5]["first_line"], json!(2));
        assert_eq!(report["lines"], json!(6));
        assert_eq!(report["payments"], json!(5));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_lines_are_named_and_nothing_is_reconciled_without_skip() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    county_with_payments(&server).await;
    let today = today_plus(0);
    let file = dir.path().join("bank.csv");
    std::fs::write(
        &file,
        format!(
            "户编号,金额,入账日期,银行流水号,状态\n\
             HH-622926-0002,300.00,{today},R1,成功\n\
             HH-622926-0003,300.001,{today},R2,成功\n\
             HH-622926-0004,300.00,2025/09/21,R3,成功\n\
             ,300.00,{today},R4,成功\n\
             HH-622926-0005,300.00,{today},R5,退票\n\
             HH-622926-0001,0,{today},R6,成功\n\
             HH-622926-0001,3000.00,{today},,成功\n"
        ),
    )
    .unwrap();
    let refused = reconcile(&server, dir.path(), &file, &[]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    for (line, reason) in [
        (3, "two decimals"),
        (4, "入账日期"),
        (5, "户编号"),
        (6, "状态"),
        (7, "zero"),
        (8, "银行流水号"),
    ] {
        assert!(
            said.lines()
                .any(|l| l.starts_with(&format!("line {line}: ")) && l.contains(reason)),
            "line {line} ({reason}) in:\n{said}"
        );
    }
    assert!(
        said.contains("6 malformed lines; nothing was reconciled"),
        "{said}"
    );
    assert!(refused.stdout.is_empty());

    let report = report(&reconcile(
        &server,
        dir.path(),
        &file,
        &["--skip-bad-lines"],
    ));
    let bad: Vec<u64> = report["bad_lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["line"].as_u64().unwrap())
        .collect();
    assert_eq!(bad, vec![3, 4, 5, 6, 7, 8]);
    assert_eq!(report["lines"], json!(1));
    assert_eq!(report["summary"]["CREDITED"], json!(1));
    assert_eq!(report["summary"]["NO_BANK_LINE"], json!(4));

    // A header without a needed column refuses the file.
    let headless = dir.path().join("headless.csv");
    std::fs::write(
        &headless,
        "户编号,金额,入账日期,状态\nH,1.00,2025-01-01,成功\n",
    )
    .unwrap();
    let refused = reconcile(&server, dir.path(), &headless, &[]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("银行流水号"));
}

fn bank_lines() -> Vec<fundtrail_api::pb::BankLine> {
    let today = today_plus(0);
    let late = today_plus(31);
    let line = |line, household: &str, amount_fen, date: &str, reference: &str, failed| {
        fundtrail_api::pb::BankLine {
            line,
            household_ref: household.into(),
            amount_fen,
            value_date: date.into(),
            bank_reference: reference.into(),
            failed,
        }
    };
    vec![
        line(2, "HH-622926-0001", 3_000_00, &today, "R1", false),
        line(3, "HH-622926-0002", 300_00, &today, "R2", true),
        line(4, "HH-622926-0003", 299_00, &today, "R3", false),
        line(5, "HH-622926-0004", 300_00, &late, "R4", false),
        line(6, "HH-622926-9999", 300_00, &today, "R5", false),
        line(7, "HH-622926-0001", 3_000_00, &today, "R1", false),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_call_reports_what_the_cli_reports() {
    use fundtrail_api::pb;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let chain = county_with_payments(&server).await;
    let file = dir.path().join("bank.csv");
    std::fs::write(&file, bank_file()).unwrap();
    let cli = report(&reconcile(&server, dir.path(), &file, &[]));

    let mut client = server.client().await;
    let answer = client
        .query
        .reconcile(pb::ReconcileRequest {
            county_org_id: "dx-czj".into(),
            lines: bank_lines(),
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<Value> = answer
        .findings
        .iter()
        .map(|f| {
            let line = if f.line == 0 {
                Value::Null
            } else {
                json!(f.line)
            };
            (line, f.kind.clone(), f.seq)
        })
        .map(|(line, kind, seq)| json!([line, kind, seq]))
        .collect();
    let want: Vec<Value> = cli["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| json!([f["line"], f["kind"], f["seq"]]))
        .collect();
    assert_eq!(got, want);
    assert_eq!(json!(answer.payments), cli["payments"]);

    // A malformed line is refused, named by its number.
    let mut lines = bank_lines();
    lines[3].value_date = "2025/09/21".into();
    let refused = client
        .query
        .reconcile(pb::ReconcileRequest {
            county_org_id: "dx-czj".into(),
            lines,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("line 5"), "{refused:?}");
    // Too many lines.
    let many = (0..20_001)
        .map(|i| pb::BankLine {
            line: i + 2,
            household_ref: "H".into(),
            amount_fen: 1,
            value_date: "2025-01-01".into(),
            bank_reference: format!("R{i}"),
            failed: false,
        })
        .collect();
    let refused = client
        .query
        .reconcile(pb::ReconcileRequest {
            county_org_id: "dx-czj".into(),
            lines: many,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    // Another county sees the households under pseudonyms: nothing matches.
    let mut linxia = server.client_as(&chain.linxia).await;
    let outsider = linxia
        .query
        .reconcile(pb::ReconcileRequest {
            county_org_id: "dx-czj".into(),
            lines: bank_lines(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(outsider.findings.iter().all(|f| f.kind != "CREDITED"));
}

/// Runs `fundtrail reconcile --post` signed by `key` (text output).
fn reconcile_and_post(server: &TestServer, key: &Path, file: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fundtrail"))
        .args(["reconcile", "--county", "dx-czj", "--post", "--bank-file"])
        .arg(file)
        .args(extra)
        .args(["--server", &server.url, "--key"])
        .arg(key)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posting_the_banks_results_settles_each_payment_once() {
    use fundtrail_api::pb;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let chain = county_with_payments(&server).await;
    let key = dir.path().join("dongxiang.key");
    let file = fundtrail_core::keyfile::KeyFile::new("dx-czj", chain.dongxiang.signing_key());
    std::fs::write(&key, file.to_json()).unwrap();
    let bank = dir.path().join("bank.csv");
    std::fs::write(&bank, bank_file()).unwrap();
    let mut client = server.client().await;
    let before = ledger_info(&mut client).await.record_count;

    // A file with a malformed line posts nothing.
    let broken = dir.path().join("broken.csv");
    std::fs::write(
        &broken,
        format!("{}HH-622926-0005,3.001,2026-01-01,R9,成功\n", bank_file()),
    )
    .unwrap();
    let refused = reconcile_and_post(&server, &key, &broken, &[]);
    assert!(!refused.status.success());
    assert_eq!(ledger_info(&mut client).await.record_count, before);

    // Line 2 was credited, line 3 failed; the other lines are no results.
    let posted = reconcile_and_post(&server, &key, &bank, &[]);
    let said = String::from_utf8_lossy(&posted.stdout);
    assert!(
        posted.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&posted.stderr)
    );
    assert!(
        said.contains("bank results: 2 posted, 0 posted before, 0 refused"),
        "{said}"
    );
    assert_eq!(ledger_info(&mut client).await.record_count, before + 2);
    let statement = |id: &str| {
        let mut client = client.clone();
        let id = id.to_string();
        async move {
            client
                .query
                .household_statement(pb::HouseholdStatementRequest { account_id: id })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let credited = statement("dx-hh-0001").await;
    assert_eq!(credited.payments[0].bank_status(), pb::BankStatus::Credited);
    assert_eq!(credited.payments[0].bank_reference, "R1");
    let failed = statement("dx-hh-0002").await;
    assert_eq!(failed.payments[0].bank_status(), pb::BankStatus::Failed);
    assert_eq!((failed.received_fen, failed.balance_fen), (0, 0));
    let untouched = statement("dx-hh-0003").await;
    assert_eq!(
        untouched.payments[0].bank_status(),
        pb::BankStatus::Unconfirmed
    );

    // The same file again posts nothing new.
    let again = reconcile_and_post(&server, &key, &bank, &[]);
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{said}");
    assert!(
        said.contains("bank results: 0 posted, 2 posted before, 0 refused"),
        "{said}"
    );
    assert_eq!(ledger_info(&mut client).await.record_count, before + 2);
}
