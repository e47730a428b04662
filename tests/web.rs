//! The web view in a real browser: Debian's Chromium, headless, driven over
//! WebDriver (chromedriver) against `fundtrail serve --demo --http`, the
//! real binary on a real data directory.
//!
//! Checked: the page's verifier against tlog's vectors; the flow diagram's
//! amounts against TraceForward over gRPC; a record verifies; a tampered
//! inclusion proof and a checkpoint not signed by the pinned key show as
//! failed; a county's reader does not see another county's household; the
//! page's CSV exports equal `fundtrail export-csv`'s, byte for byte.
//!
//! With `FUNDTRAIL_SCREENSHOTS=DIR` the test also saves the main views as
//! PNG (docs/screenshots holds the committed ones).

#[path = "process/mod.rs"]
mod process;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fantoccini::{Client as Browser, Locator};
use fundtrail_api::pb;
use fundtrail_client::{Client, Signer};
use process::{Demo, Killed};
use serde_json::{json, Value};

const CHROMEDRIVER_START_TIMEOUT: Duration = Duration::from_secs(60);

/// A household of 布拖县 (bt-czj, 513429) and one of 昭觉县 (zj-czj, 513431).
const OWN_HOUSEHOLD: &str = "513429-hh-000001";
const OTHER_HOUSEHOLD: &str = "513431-hh-000052";
/// The demo's first appropriation: 财农〔2025〕17号, ¥270,000,000.00.
const APPROPRIATION_SEQ: u64 = 2;

/// Starts chromedriver on a free port, and returns it with its URL.
fn start_chromedriver() -> (Killed, String) {
    // chromedriver cannot be told port 0; take a free one and give it back.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (Debian: apt-get install chromium chromium-driver; .ci/run does it)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("started successfully") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(CHROMEDRIVER_START_TIMEOUT)
        .expect("chromedriver says it started");
    (Killed(child), format!("http://127.0.0.1:{port}"))
}

async fn open_browser(driver: &str) -> Browser {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                        "--disable-gpu", "--window-size=1280,800", "--lang=zh-CN"]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    Browser::with_capabilities_and_connector(driver, &capabilities, connector)
        .await
        .expect("a Chromium session")
}

/// Shows `hash` and returns once its view has finished loading.
async fn view(browser: &Browser, hash: &str) {
    let answer = browser
        .execute_async(
            r#"const [hash, done] = arguments;
               history.replaceState(null, "", hash);
               import("/assets/app.js").then((app) => app.route())
                 .then(() => done("ok"), (e) => done(String(e)));"#,
            vec![json!(hash)],
        )
        .await
        .unwrap();
    assert_eq!(answer, json!("ok"), "{hash}");
}

async fn sign_in(browser: &Browser, http: &str, key: &Path) {
    browser.goto(&format!("{http}/#/signin")).await.unwrap();
    // The page draws the form once its modules have loaded, which may be
    // after the load event `goto` waits for.
    browser
        .wait()
        .for_element(Locator::Id("keyfile"))
        .await
        .unwrap()
        .send_keys(key.to_str().unwrap())
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::XPath(
            "//p[@id='signin-status' and starts-with(., '已登录')]",
        ))
        .await
        .unwrap();
}

async fn pin(browser: &Browser, vkey: &str) {
    view(browser, "#/signin").await;
    let input = browser.find(Locator::Id("vkey")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(vkey).await.unwrap();
    browser
        .find(Locator::Id("pin"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn text(browser: &Browser, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn attr(browser: &Browser, css: &str, name: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .attr(name)
        .await
        .unwrap()
        .unwrap_or_default()
}

/// Shows record `seq` and returns the page's verdict: its state ("ok",
/// "failed" or "pending") and what it says.
async fn verification(browser: &Browser, seq: u64) -> (String, String) {
    view(browser, &format!("#/record/{seq}")).await;
    (
        attr(browser, "#verify-status", "data-state").await,
        text(browser, "#verify-status").await,
    )
}

async fn screenshot(browser: &Browser, name: &str) {
    let Some(dir) = std::env::var_os("FUNDTRAIL_SCREENSHOTS") else {
        return;
    };
    let png = browser.screenshot().await.unwrap();
    std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
}

/// TraceForward's pages merged as the CLI merges them: what each account
/// received, and what households received from each paying account.
async fn traced(client: &mut Client, seq: u64) -> (u64, BTreeMap<String, u64>) {
    let mut nodes: BTreeMap<String, pb::FlowNode> = BTreeMap::new();
    let mut edges = Vec::new();
    let mut traced_fen;
    let mut page_token = String::new();
    loop {
        let page = client
            .query
            .trace_forward(pb::TraceForwardRequest {
                seq,
                page_size: 10_000,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        traced_fen = page.traced_fen;
        edges.extend(page.edges);
        for node in page.nodes {
            nodes
                .entry(node.account_id.clone())
                .and_modify(|n| n.received_fen += node.received_fen)
                .or_insert(node);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let household = pb::AccountKind::Household as i32;
    let mut expected: BTreeMap<String, u64> = nodes
        .values()
        .filter(|n| n.kind != household)
        .map(|n| (n.account_id.clone(), n.received_fen))
        .collect();
    for edge in &edges {
        if nodes[&edge.to_account_id].kind == household {
            *expected
                .entry(format!("households:{}", edge.from_account_id))
                .or_default() += edge.amount_fen;
        }
    }
    (traced_fen, expected)
}

/// The flow diagram's nodes: account (or household group) → received fen.
async fn diagram(browser: &Browser) -> (u64, BTreeMap<String, u64>) {
    let answer = browser
        .execute(
            r#"const svg = document.getElementById("flow-diagram");
               return [svg.dataset.tracedFen,
                       [...svg.querySelectorAll("g.node")].map((g) => [g.dataset.account, g.dataset.receivedFen])];"#,
            vec![],
        )
        .await
        .unwrap();
    let traced = answer[0].as_str().unwrap().parse().unwrap();
    let nodes = answer[1]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap().to_string(),
                pair[1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    (traced, nodes)
}

/// Runs verify.js on tlog's vectors in the page; returns what it got wrong.
async fn verifier_mistakes(browser: &Browser) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/tlog/tests/vectors.json");
    let vectors: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let answer = browser
        .execute_async(
            r#"const [vectors, done] = arguments;
(async () => {
  const v = await import("/assets/verify.js");
  const bad = [];
  let checked = 0;
  const proves = async (c, index, leaf, proof) => {
    const root = await v.rootFromInclusionProof(BigInt(index), BigInt(c.size), leaf, proof);
    return root !== null && v.hex(root) === c.root;
  };
  for (const c of vectors.inclusion) {
    const leaf = await v.leafHash(v.fromHex(c.leaf));
    const proof = c.proof.map(v.fromHex);
    if (!(await proves(c, c.index, leaf, proof))) bad.push(`inclusion ${c.size}/${c.index} refused`);
    for (let i = 0; i < proof.length; i++) {
      const tampered = proof.map((p) => p.slice());
      tampered[i][7] ^= 1;
      if (await proves(c, c.index, leaf, tampered)) bad.push(`inclusion ${c.size}/${c.index}: hash ${i} changed, accepted`);
    }
    if (c.size > 1 && (await proves(c, (c.index + 1) % c.size, leaf, proof))) bad.push(`inclusion ${c.size}/${c.index}: other index accepted`);
    if (await proves(c, c.index, leaf, [...proof, new Uint8Array(32)])) bad.push(`inclusion ${c.size}/${c.index}: longer proof accepted`);
    const otherLeaf = await v.leafHash(v.fromHex(c.leaf + "00"));
    if (await proves(c, c.index, otherLeaf, proof)) bad.push(`inclusion ${c.size}/${c.index}: other leaf accepted`);
    checked++;
  }
  for (const c of vectors.checkpoints) {
    let ok;
    try {
      const cp = await v.openCheckpoint(c.note, await v.parseVkey(c.vkey));
      ok = cp.size === BigInt(c.size) && v.hex(cp.root) === c.root;
    } catch (e) {
      ok = false;
    }
    if (ok !== c.valid) bad.push(`checkpoint ${JSON.stringify(c.note)}: ${ok}, want ${c.valid}`);
    checked++;
  }
  for (const c of vectors.notes) {
    let ok;
    try {
      await v.openNote(c.note, await v.parseVkey(c.vkey));
      ok = true;
    } catch (e) {
      ok = false;
    }
    if (ok !== c.valid) bad.push(`note ${JSON.stringify(c.note)}: ${ok}, want ${c.valid}`);
    checked++;
  }
  return { bad, checked };
})().then(done, (e) => done({ bad: [String(e)], checked: 0 }));"#,
            vec![vectors.clone()],
        )
        .await
        .unwrap();
    let expected = ["inclusion", "checkpoints", "notes"]
        .iter()
        .map(|k| vectors[k].as_array().unwrap().len() as u64)
        .sum::<u64>();
    assert_eq!(answer["checked"], json!(expected), "{answer}");
    serde_json::from_value(answer["bad"].clone()).unwrap()
}

/// Has the page flip one byte of `needle` in the next inclusion proofs the
/// server sends, as a lying server or a man in the middle would.
async fn tamper_inclusion_proofs(browser: &Browser, needle: &[u8]) {
    browser
        .execute(
            r#"const needle = arguments[0];
               const original = window.fetch;
               window.untamper = () => { window.fetch = original; };
               window.fetch = async (input, init) => {
                 const response = await original(input, init);
                 if (!String(input).endsWith("/GetInclusionProof")) return response;
                 const bytes = new Uint8Array(await response.arrayBuffer());
                 search: for (let i = 0; i + needle.length <= bytes.length; i++) {
                   for (let j = 0; j < needle.length; j++) if (bytes[i + j] !== needle[j]) continue search;
                   bytes[i + 9] ^= 1;
                   break;
                 }
                 return new Response(bytes, { status: response.status, headers: response.headers });
               };"#,
            vec![json!(needle)],
        )
        .await
        .unwrap();
}

/// A report exported by the page, as one string (the BOM included).
async fn page_csv(browser: &Browser, call: &str) -> String {
    let script = format!(
        r#"const done = arguments[0];
           Promise.all([import("/assets/app.js"), import("/assets/export.js")])
             .then(([app, e]) => {call})
             .then((parts) => done(parts.join("")), (err) => done("failed: " + err));"#
    );
    let answer = browser.execute_async(&script, vec![]).await.unwrap();
    answer.as_str().unwrap().to_string()
}

/// What `fundtrail COMMAND ARGS --out FILE` writes, signed by the root org.
fn cli_output(demo: &Demo, dir: &Path, command: &str, args: &[&str]) -> String {
    // The CLI never overwrites a file.
    let out = dir.join(format!("{command}-{}.csv", args.join("-")));
    let status = Command::new(env!("CARGO_BIN_EXE_fundtrail"))
        .arg(command)
        .args(args)
        .args(["--server", &demo.grpc, "--key"])
        .arg(demo.data.join("root.key"))
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    String::from_utf8(std::fs::read(out).unwrap()).unwrap()
}

fn cli_csv(demo: &Demo, dir: &Path, args: &[&str]) -> String {
    cli_output(demo, dir, "export-csv", args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_view_shows_the_ledger_and_verifies_it_in_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let demo = process::start_demo(dir.path(), true);
    let http = demo.http.clone().expect("the server names its HTTP port");
    let (_driver, driver_url) = start_chromedriver();
    let browser = open_browser(&driver_url).await;
    let root_key = demo.data.join("root.key");
    let root = Signer::from_key_file(&root_key).unwrap();
    let mut client = Client::connect_as(&demo.grpc, &root).await.unwrap();
    let info = client
        .query
        .get_ledger(pb::GetLedgerRequest {})
        .await
        .unwrap()
        .into_inner();
    let vkey = client
        .audit
        .get_log_key(pb::GetLogKeyRequest {})
        .await
        .unwrap()
        .into_inner()
        .vkey;

    sign_in(&browser, &http, &root_key).await;
    pin(&browser, &vkey).await;
    screenshot(&browser, "signin").await;

    // The page's verifier agrees with tlog on every vector.
    let mistakes = verifier_mistakes(&browser).await;
    assert!(mistakes.is_empty(), "{mistakes:#?}");

    // The diagram draws what TraceForward answers, to the fen.
    view(&browser, &format!("#/trace/{APPROPRIATION_SEQ}")).await;
    let (want_traced, want_nodes) = traced(&mut client, APPROPRIATION_SEQ).await;
    let (traced_fen, nodes) = diagram(&browser).await;
    assert_eq!(traced_fen, want_traced);
    assert_eq!(traced_fen, 270_000_000_00);
    assert_eq!(nodes, want_nodes);
    assert!(nodes.keys().any(|k| k.starts_with("households:")));
    let summary_fen = attr(
        &browser,
        "#trace-summary [data-key=traced] .money",
        "data-fen",
    )
    .await;
    assert_eq!(summary_fen, want_traced.to_string());
    screenshot(&browser, "trace").await;

    // A household payment verifies against the pinned key.
    let statement = client
        .query
        .household_statement(pb::HouseholdStatementRequest {
            account_id: OWN_HOUSEHOLD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let paid = statement.payments.first().expect("the demo pays it").seq;
    let checkpoint = client
        .audit
        .get_checkpoint(pb::GetCheckpointRequest { tree_size: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(
        paid < checkpoint.tree_size,
        "the demo's payments are checkpointed"
    );
    let (state, said) = verification(&browser, paid).await;
    assert_eq!(state, "ok", "{said}");
    let legs = text(&browser, "#legs").await;
    assert!(legs.contains(OWN_HOUSEHOLD), "{legs}");
    screenshot(&browser, "record").await;
    view(&browser, &format!("#/household/{OWN_HOUSEHOLD}")).await;
    let received = attr(
        &browser,
        "#household-summary [data-key=received] .money",
        "data-fen",
    )
    .await;
    assert_eq!(received, statement.received_fen.to_string());
    screenshot(&browser, "household").await;

    // A tampered audit path shows as failed.
    let proof = client
        .audit
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            index: paid,
            tree_size: checkpoint.tree_size,
            leaf_hash: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    tamper_inclusion_proofs(&browser, &proof.hashes[0]).await;
    let (state, said) = verification(&browser, paid).await;
    assert_eq!(state, "failed", "{said}");
    assert!(said.contains("默克尔路径"), "{said}");
    browser.execute("window.untamper()", vec![]).await.unwrap();
    let (state, said) = verification(&browser, paid).await;
    assert_eq!(state, "ok", "{said}");

    // A checkpoint not signed by the pinned key shows as failed: pin a
    // stranger's key under the ledger's own name.
    let stranger = fundtrail_tlog::NoteSigner::new(
        &format!("fundtrail/{}", info.ledger_id),
        fundtrail_tlog::ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
    )
    .unwrap()
    .verifier()
    .vkey();
    pin(&browser, &stranger).await;
    let (state, said) = verification(&browser, paid).await;
    assert_eq!(state, "failed", "{said}");
    assert!(said.contains("检查点未通过"), "{said}");
    pin(&browser, &vkey).await;

    // An account's balance by source at a business date.
    let on_date = |date: &str| pb::GetAccountRequest {
        account_id: "bt-czj-pool".into(),
        as_of_date: date.into(),
        ..Default::default()
    };
    let then = client
        .query
        .get_account(on_date("2025-06-10"))
        .await
        .unwrap()
        .into_inner();
    let now = client
        .query
        .get_account(on_date(""))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(
        then.balance_fen, now.balance_fen,
        "the pool allocated after 2025-06-10"
    );
    view(&browser, "#/account/bt-czj-pool?date=2025-06-10").await;
    assert_eq!(
        attr(&browser, "#balance .money", "data-fen").await,
        then.balance_fen.to_string()
    );
    let rows = text(&browser, "#balances").await;
    for balance in &then.balances {
        assert!(rows.contains(&format!("#{}", balance.source_seq)), "{rows}");
    }
    screenshot(&browser, "account").await;

    // 支出进度: 美姑县's page sets its progress beside 四川's, each as
    // SpendingProgress answers it (tests/quota.rs checks those figures
    // against the log): the county below half, the province above it.
    let progress_of = |org: &str| {
        let (mut client, org) = (client.clone(), org.to_string());
        async move {
            let rows = client
                .query
                .spending_progress(pb::SpendingProgressRequest {
                    org_id: org,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .rows;
            rows.last().expect("quota was issued").paid_basis_points
        }
    };
    let (county_bp, province_bp) = (progress_of("mg-czj").await, progress_of("sc-czt").await);
    assert!(
        county_bp < 5_000 && province_bp > county_bp,
        "{county_bp} {province_bp}"
    );
    view(&browser, "#/progress/mg-czj").await;
    let shown =
        |key: &str| format!("#progress-compare tr[data-programme='2130599'] [data-key={key}]");
    assert_eq!(
        attr(&browser, &shown("org-bp"), "data-bp").await,
        county_bp.to_string()
    );
    assert_eq!(
        attr(&browser, &shown("province-bp"), "data-bp").await,
        province_bp.to_string()
    );
    let said = text(&browser, &shown("org-bp")).await;
    assert_eq!(
        said,
        format!("{}.{:02}%", county_bp / 100, county_bp % 100),
        "shown as a percentage"
    );
    screenshot(&browser, "progress").await;

    // The page's exports are the CLI's, byte for byte.
    view(&browser, "#/idle").await;
    screenshot(&browser, "idle").await;
    let web = page_csv(
        &browser,
        "e.idleCsv(app.state.api, { older_than_days: 90 })",
    )
    .await;
    assert_eq!(web, cli_csv(&demo, dir.path(), &["idle", "--days", "90"]));
    let web = page_csv(
        &browser,
        r#"e.entriesCsv(app.state.api, "entries", { account_id: "bt-czj-pool" })"#,
    )
    .await;
    let cli = cli_csv(&demo, dir.path(), &["entries", "--account", "bt-czj-pool"]);
    assert!(cli.lines().count() > 2, "{cli}");
    assert_eq!(web, cli);
    let web = page_csv(&browser, "e.anomaliesCsv(app.state.api, {})").await;
    assert_eq!(web, cli_csv(&demo, dir.path(), &["anomalies"]));
    view(&browser, "#/anomalies").await;
    screenshot(&browser, "anomalies").await;
    let web = page_csv(&browser, r#"e.projectsCsv(app.state.api, "bt-czj")"#).await;
    let cli = cli_csv(&demo, dir.path(), &["projects", "--org", "bt-czj"]);
    assert!(cli.lines().count() > 2, "{cli}");
    assert_eq!(web, cli);

    // The 公告公示 sheet: the CLI's, with registry references masked.
    for (county, village) in [("bt-czj", ""), ("bt-czj", "513429100")] {
        let web = page_csv(
            &browser,
            &format!(r#"e.notice(app.state.api, "{county}", "{village}").then(e.noticeCsv)"#),
        )
        .await;
        let mut args = vec!["--county", county, "--csv"];
        if !village.is_empty() {
            args.extend(["--village", village]);
        }
        let cli = cli_output(&demo, dir.path(), "public-notice", &args);
        assert!(cli.contains("JDLK"), "{cli}");
        assert_eq!(web, cli, "{county} {village}");
    }
    view(&browser, "#/notice/bt-czj?village=513429100").await;
    let sheet = text(&browser, "#notice-payments").await;
    assert!(sheet.contains("JDLK*"), "{sheet}");
    assert!(
        !sheet.contains("JDLK-513429-"),
        "a whole reference shows: {sheet}"
    );
    let shown = browser
        .find_all(Locator::Css("#notice-payments tbody tr"))
        .await
        .unwrap()
        .len();
    assert_eq!(
        attr(&browser, "#notice-total", "data-count").await,
        shown.to_string()
    );
    assert!(shown > 0);
    screenshot(&browser, "notice").await;

    // A county's reader sees its own households, not another county's.
    sign_in(
        &browser,
        &http,
        &demo.data.join("demo-keys").join("bt-czj.key"),
    )
    .await;
    view(&browser, &format!("#/household/{OWN_HOUSEHOLD}")).await;
    assert!(text(&browser, "#household-summary")
        .await
        .contains("513429"));
    view(&browser, &format!("#/household/{OTHER_HOUSEHOLD}")).await;
    let main = text(&browser, "#main").await;
    assert!(
        browser
            .find(Locator::Id("household-summary"))
            .await
            .is_err(),
        "{main}"
    );
    assert_eq!(
        attr(&browser, "#main .error", "data-code").await,
        "7",
        "{main}"
    );
    assert!(!main.contains("JDLK-513431"), "{main}");

    // On a phone-sized screen.
    browser.set_window_size(390, 844).await.unwrap();
    view(&browser, &format!("#/household/{OWN_HOUSEHOLD}")).await;
    screenshot(&browser, "phone-household").await;
    browser.close().await.unwrap();
}
