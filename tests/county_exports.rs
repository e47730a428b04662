//! The CLI's exports over real gRPC on the county chain of `county/mod.rs`:
//! CSV reports that hold what the queries answer, and the public notice.

mod common;
mod county;

use county::*;

/// Runs `fundtrail COMMAND… --server URL --key ROOT_KEY --out OUT EXTRA…`
/// against `server` as the root org, and returns the file it wrote.
fn report_as_root(
    server: &TestServer,
    command: &[&str],
    out: &std::path::Path,
    extra: &[&str],
) -> Vec<u8> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fundtrail"))
        .args(command)
        .args(["--server", &server.url, "--key"])
        .arg(server.data_dir.join("root.key"))
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(out).unwrap()
}

/// `fundtrail export-csv REPORT` into `dir`: the file's bytes.
fn export_csv(server: &TestServer, dir: &std::path::Path, report: &str, extra: &[&str]) -> Vec<u8> {
    let out = dir.join(format!("{report}.csv"));
    report_as_root(server, &["export-csv", report], &out, extra)
}

/// The header and rows of a CSV export, after its byte-order mark.
fn csv_rows(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let body = bytes
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .expect("UTF-8 with a byte-order mark, for Excel");
    let mut reader = csv::Reader::from_reader(body);
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|row| row.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn fen_of(yuan: &str) -> u64 {
    let (whole, cents) = yuan.split_once('.').expect("two decimals");
    assert_eq!(cents.len(), 2, "{yuan}");
    whole.parse::<u64>().unwrap() * 100 + cents.parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_exports_hold_what_the_queries_answer() {
    let (dir, server, mut client, county) = start().await;
    let work = tempfile::tempdir().unwrap();
    let _ = dir;

    // Payments: one row per Disbursement, amounts to the fen.
    let (header, rows) = csv_rows(&export_csv(&server, work.path(), "payments", &[]));
    assert_eq!(header[0], "序号");
    assert_eq!(header[6], "金额（元）");
    let disbursements = list_all(
        &mut client,
        pb::ListEntriesRequest {
            kind: "Disbursement".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rows.len(), disbursements.len());
    for (row, entry) in rows.iter().zip(&disbursements) {
        assert_eq!(row[0], entry.seq.to_string());
        let legs: u64 = entry
            .effects
            .iter()
            .flat_map(|e| &e.legs)
            .map(|l| l.amount_fen)
            .sum();
        assert_eq!(fen_of(&row[6]), legs);
    }
    for (i, seq) in county.d.iter().enumerate() {
        let row = rows.iter().find(|row| row[0] == seq.to_string()).unwrap();
        assert_eq!(fen_of(&row[6]), PAID[i]);
        assert_eq!(row[5], HOUSEHOLDS[i]);
        assert_eq!(row[8], PERIOD);
    }

    // Entries: one row per leg (a record without legs is one row), the
    // same money as the records.
    let (header, rows) = csv_rows(&export_csv(&server, work.path(), "entries", &[]));
    assert_eq!(header.len(), 10);
    let all = list_all(&mut client, pb::ListEntriesRequest::default()).await;
    let expected_rows: usize = all
        .iter()
        .map(|e| e.effects.as_ref().map_or(0, |e| e.legs.len()).max(1))
        .sum();
    assert_eq!(rows.len(), expected_rows);
    let legs_fen: u64 = all
        .iter()
        .flat_map(|e| e.effects.iter().flat_map(|e| &e.legs))
        .map(|l| l.amount_fen)
        .sum();
    let rows_fen: u64 = rows
        .iter()
        .filter(|row| !row[7].is_empty())
        .map(|row| fen_of(&row[7]))
        .sum();
    assert_eq!(rows_fen, legs_fen);
    let central = rows
        .iter()
        .find(|row| row[0] == county.s.to_string())
        .unwrap();
    assert_eq!(
        (central[3].as_str(), central[9].as_str()),
        ("Appropriation", S_DOC)
    );
    // Filters pass through: one account's records only.
    std::fs::create_dir(work.path().join("one")).unwrap();
    let (_, rows) = csv_rows(&export_csv(
        &server,
        work.path().join("one").as_path(),
        "entries",
        &["--account", "dx-proj-1"],
    ));
    assert!(!rows.is_empty());
    assert!(rows
        .iter()
        .all(|row| row[5] == "dx-proj-1" || row[6] == "dx-proj-1"));

    // Projects: budget, targets, unit, money received, announcement.
    let (_, rows) = csv_rows(&export_csv(&server, work.path(), "projects", &[]));
    let project = |id: &str| rows.iter().find(|row| row[0] == id).unwrap().clone();
    let dx = project("dx-proj-1");
    assert_eq!(fen_of(&dx[5]), BUDGET);
    assert_eq!(dx[6], "带动脱贫户 3 户增收；项目竣工验收合格率 100%");
    assert_eq!(fen_of(&dx[8]), ALLOCATED);
    assert_eq!(dx[9], ANNOUNCE_DOC);
    assert_eq!(project("lx-proj-1")[9], "", "not announced");

    // Idle funds and findings: the same rows as the queries.
    let (_, rows) = csv_rows(&export_csv(&server, work.path(), "idle", &["--days", "30"]));
    let answer = idle(
        &mut client,
        pb::IdleFundsRequest {
            older_than_days: 30,
            page_size: 1_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), answer.rows.len());
    for (row, expected) in rows.iter().zip(&answer.rows) {
        assert_eq!(row[0], expected.account_id);
        assert_eq!(fen_of(&row[6]), expected.idle_fen);
    }
    let (_, rows) = csv_rows(&export_csv(&server, work.path(), "anomalies", &[]));
    let findings = anomalies(
        &mut client,
        pb::AnomaliesRequest {
            page_size: 1_000,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rows.len(), findings.findings.len());
    server.stop().await;
}

/// `fundtrail public-notice` for Dongxiang, as the root org: the file.
fn public_notice(server: &TestServer, out: &std::path::Path, extra: &[&str]) -> String {
    let command = ["public-notice", "--county", "dx-czj"];
    String::from_utf8(report_as_root(server, &command, out, extra)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_notice_shows_announced_projects_and_masked_payments() {
    let (_dir, server, _client, county) = start().await;
    let work = tempfile::tempdir().unwrap();

    let html = public_notice(&server, &work.path().join("dx.html"), &[]);
    assert!(html.contains("扶贫项目和到户资金公告公示"));
    // The announced project, with its money to the fen.
    assert!(html.contains("<td>¥150,000.00</td>"), "budget");
    assert!(html.contains("<td>¥120,000.00</td>"), "received");
    assert!(html.contains(ANNOUNCE_DOC));
    assert!(html.contains("带动脱贫户 3 户增收；项目竣工验收合格率 100%"));
    // Linxia's project is another county's; nothing unannounced shows.
    assert!(!html.contains("修建产业路"));
    // Every payment, each household's reference masked, never whole.
    for (i, seq) in county.d.iter().enumerate() {
        assert!(html.contains(&format!("<td>{seq}</td>")), "payment {seq}");
        let whole = format!("HH-622926-000{}", i + 1);
        assert!(!html.contains(&whole), "{whole} is masked");
        assert!(html.contains(&format!("HH-6********0{}", i + 1)));
    }
    let paid: u64 = PAID.iter().sum();
    assert!(html.contains(&format!(
        "共 3 笔，已拨付合计 {}",
        fundtrail_core::money::format_fen(u128::from(paid))
    )));

    // One village: only its household's payment.
    let village = public_notice(
        &server,
        &work.path().join("village.html"),
        &["--village", "622926100202"],
    );
    assert!(village.contains("HH-6********02"));
    assert!(!village.contains("HH-6********01") && !village.contains("HH-6********03"));
    assert!(village.contains(&format!("<td>{}</td>", county.d[1])));

    // The same as CSV for a spreadsheet.
    let csv = public_notice(&server, &work.path().join("dx.csv"), &["--csv"]);
    let csv = csv.strip_prefix('\u{feff}').expect("a byte-order mark");
    assert!(csv.contains("项目公示") && csv.contains("到户资金公示"));
    assert!(csv.contains(",150000.00,") && csv.contains(",120000.00,"));
    assert!(!csv.contains("HH-622926-0001"));
    assert_eq!(csv.matches("已拨付").count(), 3);
    server.stop().await;
}
