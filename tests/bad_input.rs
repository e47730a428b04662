//! Every write path answers bad input with the gRPC code of docs/design.md §8 and
//! a readable message, and changes nothing: neither the records nor any byte
//! of derived state.

mod common;

use common::*;
use fundtrail_api::pb;
use fundtrail_api::pb::request::Body as B;
use fundtrail_client::Signer;
use tonic::Code;
use tonic_types::StatusExt;

struct Case {
    name: &'static str,
    request: pb::SignedRequest,
    code: Code,
    /// The field the rich error details must name, when there is one.
    field: Option<&'static str>,
}

fn case(
    name: &'static str,
    request: pb::SignedRequest,
    code: Code,
    field: Option<&'static str>,
) -> Case {
    Case {
        name,
        request,
        code,
        field,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_right_code_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    let requester = client.clone();
    let signed = |signer: &Signer, body: B| signer.sign(&requester.request(body));
    let stranger = new_signer();
    let root = &chain.root;
    let province = &chain.province;
    let county = &chain.dongxiang;

    let valid = signed(
        root,
        chain.quota(transfer("mof-xczx", "gs-xczx", 100, "财农〔2026〕30号")),
    );
    let mut tampered = valid.clone();
    tampered.payload[5] ^= 0x01;
    let mut wrong_key_signature = signed(
        &stranger,
        chain.quota(transfer("mof-xczx", "gs-xczx", 100, "财农〔2026〕30号")),
    );
    wrong_key_signature.key_id = root.key_id().into();
    let mut short_signature = valid.clone();
    short_signature.signature.truncate(10);
    let mut no_key = valid.clone();
    no_key.key_id.clear();
    let mut no_signature = valid.clone();
    no_signature.signature.clear();
    let raw = |signer: &Signer, request: pb::Request| signer.sign(&request);
    let mut other_ledger = client.request(chain.quota(transfer("mof-xczx", "gs-xczx", 100, "x")));
    other_ledger.ledger_id = "fundtrail-someone-else".into();
    let mut stale = client.request(chain.quota(transfer("mof-xczx", "gs-xczx", 100, "x")));
    stale.signed_at_ms -= 3_600_000;
    let mut future = client.request(chain.quota(transfer("mof-xczx", "gs-xczx", 100, "x")));
    future.signed_at_ms += 3_600_000;
    let mut no_idempotency_key =
        client.request(chain.quota(transfer("mof-xczx", "gs-xczx", 100, "x")));
    no_idempotency_key.idempotency_key.clear();
    let mut no_body = client.request(chain.quota(transfer("mof-xczx", "gs-xczx", 100, "x")));
    no_body.body = None;
    // An idempotency key already used for another request.
    let used =
        client.request(chain.quota(transfer("mof-xczx", "gs-xczx", 100, "财农〔2026〕31号")));
    ok_signed(&mut client, root.sign(&used)).await;
    let reused = client.request_with_key(
        chain.quota(transfer("mof-xczx", "gs-xczx", 200, "财农〔2026〕31号")),
        used.idempotency_key.clone(),
    );

    let earmarks = |sources: Vec<pb::SourceAmount>, amount_fen: u64| {
        B::Transfer(pb::Transfer {
            from_account_id: "mof-xczx".into(),
            to_account_id: "gs-xczx".into(),
            amount_fen,
            sources,
            document_no: "财农〔2026〕32号".into(),
            ..Default::default()
        })
    };
    let src = chain.central_source;
    let too_many_sources: Vec<pb::SourceAmount> = (0..65)
        .map(|i| pb::SourceAmount {
            source_seq: i,
            amount_fen: 1,
        })
        .collect();

    let cases = vec![
        case(
            "empty payload",
            pb::SignedRequest {
                payload: vec![],
                ..valid.clone()
            },
            Code::InvalidArgument,
            Some("payload"),
        ),
        case(
            "payload that is not protobuf",
            pb::SignedRequest {
                payload: vec![0xff; 40],
                ..valid.clone()
            },
            Code::InvalidArgument,
            Some("payload"),
        ),
        case(
            "oversized payload",
            pb::SignedRequest {
                payload: vec![0x0a; 20_000],
                ..valid.clone()
            },
            Code::ResourceExhausted,
            Some("payload"),
        ),
        case(
            "unsigned: no key id",
            no_key,
            Code::Unauthenticated,
            Some("key_id"),
        ),
        case(
            "unsigned: no signature",
            no_signature,
            Code::Unauthenticated,
            Some("signature"),
        ),
        case(
            "signature cut short",
            short_signature,
            Code::Unauthenticated,
            Some("signature"),
        ),
        case(
            "payload changed after signing",
            tampered,
            Code::Unauthenticated,
            Some("signature"),
        ),
        case(
            "signed by another key than named",
            wrong_key_signature,
            Code::Unauthenticated,
            Some("signature"),
        ),
        case(
            "unknown key",
            signed(
                &stranger,
                chain.quota(transfer("mof-xczx", "gs-xczx", 100, "x")),
            ),
            Code::Unauthenticated,
            Some("key_id"),
        ),
        case(
            "revoked key",
            signed(
                &chain.revoked,
                chain.quota(transfer("gs-xczx", "dx-xczx", 100, "x")),
            ),
            Code::Unauthenticated,
            Some("key_id"),
        ),
        case(
            "wrong ledger",
            raw(root, other_ledger),
            Code::InvalidArgument,
            Some("ledger_id"),
        ),
        case(
            "signed an hour ago",
            raw(root, stale),
            Code::InvalidArgument,
            Some("signed_at_ms"),
        ),
        case(
            "signed an hour ahead",
            raw(root, future),
            Code::InvalidArgument,
            Some("signed_at_ms"),
        ),
        case(
            "no idempotency key",
            raw(root, no_idempotency_key),
            Code::InvalidArgument,
            Some("idempotency_key"),
        ),
        case(
            "no body",
            raw(root, no_body),
            Code::InvalidArgument,
            Some("body"),
        ),
        case(
            "idempotency key reused for another request",
            root.sign(&reused),
            Code::AlreadyExists,
            Some("idempotency_key"),
        ),
        case(
            "zero amount",
            signed(root, chain.quota(transfer("mof-xczx", "gs-xczx", 0, "x"))),
            Code::InvalidArgument,
            Some("transfer.amount_fen"),
        ),
        case(
            "amount above the limit",
            signed(
                root,
                chain.quota(transfer("mof-xczx", "gs-xczx", u64::MAX, "x")),
            ),
            Code::InvalidArgument,
            Some("transfer.amount_fen"),
        ),
        case(
            "earmarks that overflow and do not add up",
            signed(
                root,
                earmarks(
                    vec![
                        pb::SourceAmount {
                            source_seq: src,
                            amount_fen: u64::MAX,
                        },
                        pb::SourceAmount {
                            source_seq: 1,
                            amount_fen: u64::MAX,
                        },
                    ],
                    100,
                ),
            ),
            Code::InvalidArgument,
            Some("transfer.sources"),
        ),
        case(
            "too many earmarks",
            signed(root, earmarks(too_many_sources, 65)),
            Code::ResourceExhausted,
            Some("transfer.sources"),
        ),
        case(
            "earmark of a source the account does not hold",
            signed(
                root,
                earmarks(
                    vec![pb::SourceAmount {
                        source_seq: 3,
                        amount_fen: 100,
                    }],
                    100,
                ),
            ),
            Code::FailedPrecondition,
            Some("transfer.sources"),
        ),
        case(
            "unknown source account",
            signed(root, transfer("mof-nothing", "gs-xczx", 100, "x")),
            Code::NotFound,
            Some("transfer.from_account_id"),
        ),
        case(
            "unknown target account",
            signed(root, transfer("mof-xczx", "gs-nothing", 100, "x")),
            Code::NotFound,
            Some("transfer.to_account_id"),
        ),
        case(
            "insufficient funds",
            signed(county, transfer("dx-xczx", "gs-xczx", CENTRAL_FEN, "x")),
            Code::FailedPrecondition,
            Some("transfer.sources"),
        ),
        case(
            "debit another org's account",
            signed(root, transfer("gs-xczx", "mof-xczx", 100, "x")),
            Code::PermissionDenied,
            Some("transfer.from_account_id"),
        ),
        case(
            "county pays from the province's account",
            signed(
                county,
                chain.quota(transfer("gs-xczx", "dx-xczx", 100, "x")),
            ),
            Code::PermissionDenied,
            Some("transfer.from_account_id"),
        ),
        case(
            "transfer straight to a household",
            signed(county, transfer("dx-xczx", "dx-hh-0001", 100, "x")),
            Code::FailedPrecondition,
            Some("transfer.to_account_id"),
        ),
        case(
            "disburse to another county's account (one it may not read)",
            signed(county, disbursement("dx-xczx", "lx-xczx", 100)),
            Code::PermissionDenied,
            Some("disbursement.household_account_id"),
        ),
        case(
            "disburse to another county's household",
            signed(county, disbursement("dx-xczx", "lx-hh-0001", 100)),
            Code::PermissionDenied,
            Some("disbursement.household_account_id"),
        ),
        case(
            "move money out of a household",
            signed(county, transfer("dx-hh-0001", "dx-xczx", 100, "x")),
            Code::FailedPrecondition,
            Some("transfer.from_account_id"),
        ),
        case(
            "malformed payment period",
            signed(
                county,
                B::Disbursement(pb::Disbursement {
                    period: "2026-13".into(),
                    ..disbursement_pb()
                }),
            ),
            Code::InvalidArgument,
            Some("disbursement.period"),
        ),
        case(
            "ID number in a memo",
            signed(
                county,
                B::Disbursement(pb::Disbursement {
                    memo: "身份证 62292619800101123X".into(),
                    ..disbursement_pb()
                }),
            ),
            Code::InvalidArgument,
            Some("disbursement.memo"),
        ),
        case(
            "missing 文号",
            signed(root, chain.quota(transfer("mof-xczx", "gs-xczx", 100, " "))),
            Code::InvalidArgument,
            Some("transfer.document_no"),
        ),
        case(
            "unknown org role",
            signed(
                root,
                B::RegisterOrg(pb::RegisterOrg {
                    role: 99,
                    ..register_org_pb(&stranger)
                }),
            ),
            Code::InvalidArgument,
            Some("register_org.role"),
        ),
        case(
            "bad division code",
            signed(
                root,
                B::RegisterOrg(pb::RegisterOrg {
                    division_code: "62".into(),
                    ..register_org_pb(&stranger)
                }),
            ),
            Code::InvalidArgument,
            Some("register_org.division_code"),
        ),
        case(
            "public key of the wrong length",
            signed(
                root,
                B::RegisterOrg(pb::RegisterOrg {
                    public_key: vec![1; 31],
                    ..register_org_pb(&stranger)
                }),
            ),
            Code::InvalidArgument,
            Some("register_org.public_key"),
        ),
        case(
            "org id taken",
            signed(
                root,
                B::RegisterOrg(pb::RegisterOrg {
                    org_id: "gs-czt".into(),
                    ..register_org_pb(&stranger)
                }),
            ),
            Code::AlreadyExists,
            Some("register_org.org_id"),
        ),
        case(
            "public key already registered",
            signed(root, B::RegisterOrg(register_org_pb(province))),
            Code::AlreadyExists,
            Some("register_org.public_key"),
        ),
        case(
            "auditor registers an org other than an audit office",
            signed(&chain.auditor, B::RegisterOrg(register_org_pb(&stranger))),
            Code::PermissionDenied,
            Some("register_org.role"),
        ),
        case(
            "auditor opens an account",
            signed(
                &chain.auditor,
                open_account("cnao-acct", pb::AccountKind::Treasury, "审计署账户"),
            ),
            Code::PermissionDenied,
            Some("key_id"),
        ),
        case(
            "add a key to an org one did not register",
            signed(
                county,
                B::AddKey(pb::AddKey {
                    org_id: "lx-czj".into(),
                    public_key: stranger.public_key().to_vec(),
                    read_only: false,
                }),
            ),
            Code::PermissionDenied,
            Some("add_key.org_id"),
        ),
        case(
            "revoke a key of a sibling org",
            signed(
                county,
                B::RevokeKey(pb::RevokeKey {
                    key_id: chain.linxia.key_id().into(),
                    reason: "x".into(),
                }),
            ),
            Code::PermissionDenied,
            Some("revoke_key.key_id"),
        ),
        case(
            "revoke a key twice",
            signed(
                province,
                B::RevokeKey(pb::RevokeKey {
                    key_id: chain.revoked.key_id().into(),
                    reason: "x".into(),
                }),
            ),
            Code::FailedPrecondition,
            Some("revoke_key.key_id"),
        ),
        case(
            "account id taken",
            signed(
                county,
                open_account("dx-xczx", pb::AccountKind::Programme, "重复"),
            ),
            Code::AlreadyExists,
            Some("open_account.account_id"),
        ),
        case(
            "household account without registry id",
            signed(county, household("dx-hh-0002", "")),
            Code::InvalidArgument,
            Some("register_household.household_ref"),
        ),
        case(
            "unknown account kind",
            signed(
                county,
                B::OpenAccount(pb::OpenAccount {
                    account_id: "dx-x".into(),
                    kind: 42,
                    name: "x".into(),
                    ..Default::default()
                }),
            ),
            Code::InvalidArgument,
            Some("open_account.kind"),
        ),
        case(
            "appropriation into a household account",
            signed(county, appropriation("dx-hh-0001", 100, "x")),
            Code::FailedPrecondition,
            Some("appropriation.account_id"),
        ),
        case(
            "reverse a record that does not exist",
            signed(root, reversal(1_000_000)),
            Code::NotFound,
            Some("reversal.target_seq"),
        ),
        case(
            "reverse a record twice",
            signed(&chain.linxia, reversal(chain.reversed_transfer)),
            Code::FailedPrecondition,
            Some("reversal.target_seq"),
        ),
        case(
            "reverse a record that moved no money",
            signed(root, reversal(1)),
            Code::FailedPrecondition,
            Some("reversal.target_seq"),
        ),
        case(
            "reverse money that has moved on",
            signed(province, reversal(chain.province_cash)),
            Code::FailedPrecondition,
            Some("reversal.target_seq"),
        ),
        case(
            "reverse a movement into another org's account",
            signed(root, reversal(chain.province_cash)),
            Code::PermissionDenied,
            Some("reversal.target_seq"),
        ),
    ];
    assert!(cases.len() >= 25, "the table must hold at least 25 inputs");

    for case in cases {
        let before_count = client
            .query
            .get_ledger(pb::GetLedgerRequest {})
            .await
            .unwrap()
            .into_inner()
            .record_count;
        let before_state = server.dump();
        let status = match client.post_signed(case.request.clone()).await {
            Ok(response) => panic!(
                "{}: accepted as #{}, expected {:?}",
                case.name, response.seq, case.code
            ),
            Err(status) => status,
        };
        assert_eq!(
            status.code(),
            case.code,
            "{}: {}",
            case.name,
            status.message()
        );
        assert!(
            !status.message().is_empty(),
            "{}: the message must say what was wrong",
            case.name
        );
        if let Some(field) = case.field {
            let details = status.get_error_details();
            let named: Vec<String> = details
                .bad_request()
                .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
                .unwrap_or_default();
            assert_eq!(
                named,
                vec![field.to_string()],
                "{}: rich error details must name the field",
                case.name
            );
        }
        let after_count = client
            .query
            .get_ledger(pb::GetLedgerRequest {})
            .await
            .unwrap()
            .into_inner()
            .record_count;
        assert_eq!(
            before_count, after_count,
            "{}: a refused request must not add a record",
            case.name
        );
        assert!(
            before_state == server.dump(),
            "{}: a refused request must not change derived state",
            case.name
        );

        // The same input inside a PostBatch gets the same refusal.
        let results = client.post_batch(vec![case.request]).await.expect("batch");
        match &results[0].result {
            Some(pb::post_result::Result::Error(e)) => {
                assert_eq!(e.code, case.code as i32, "{} in a batch", case.name)
            }
            other => panic!(
                "{} in a batch: expected a refusal, got {other:?}",
                case.name
            ),
        }
        assert!(
            before_state == server.dump(),
            "{} in a batch: state changed",
            case.name
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let q = &mut client.query;
    assert_eq!(
        code(q.get_entry(pb::GetEntryRequest { seq: 99 }).await),
        Some(Code::NotFound)
    );
    assert_eq!(
        code(
            q.get_account(pb::GetAccountRequest {
                account_id: "nope".into(),
                ..Default::default()
            })
            .await
        ),
        Some(Code::NotFound)
    );
    assert_eq!(
        code(
            q.get_account(pb::GetAccountRequest {
                account_id: "bad id!".into(),
                ..Default::default()
            })
            .await
        ),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        code(
            q.get_org(pb::GetOrgRequest {
                org_id: "nope".into()
            })
            .await
        ),
        Some(Code::NotFound)
    );
    assert_eq!(
        code(
            q.list_entries(pb::ListEntriesRequest {
                page_size: 1_001,
                ..Default::default()
            })
            .await
        ),
        Some(Code::ResourceExhausted)
    );
    assert_eq!(
        code(
            q.list_entries(pb::ListEntriesRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            })
            .await
        ),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        code(
            q.list_entries(pb::ListEntriesRequest {
                account_id: "nope".into(),
                ..Default::default()
            })
            .await
        ),
        Some(Code::NotFound)
    );
    assert_eq!(
        code(
            q.list_accounts(pb::ListAccountsRequest {
                page_size: 5_000,
                ..Default::default()
            })
            .await
        ),
        Some(Code::ResourceExhausted)
    );
    // Budget quota and spending progress: a quota no record issued, an org
    // that is not registered or no id at all, too large a page.
    assert_eq!(
        code(q.get_quota(pb::GetQuotaRequest { seq: 99 }).await),
        Some(Code::NotFound)
    );
    for (org_id, want) in [
        ("nope", Code::NotFound),
        ("bad id!", Code::InvalidArgument),
        ("", Code::InvalidArgument),
    ] {
        let progress = q
            .spending_progress(pb::SpendingProgressRequest {
                org_id: org_id.into(),
                ..Default::default()
            })
            .await;
        assert_eq!(code(progress), Some(want), "progress of {org_id:?}");
        let quotas = q
            .list_quotas(pb::ListQuotasRequest {
                org_id: org_id.into(),
                ..Default::default()
            })
            .await;
        assert_eq!(code(quotas), Some(want), "quotas of {org_id:?}");
    }
    assert_eq!(
        code(
            q.list_quotas(pb::ListQuotasRequest {
                org_id: "mof".into(),
                page_size: 1_001,
                ..Default::default()
            })
            .await
        ),
        Some(Code::ResourceExhausted)
    );
    let too_many = vec![pb::SignedRequest::default(); 1_001];
    assert_eq!(
        client.post_batch(too_many).await.err().map(|s| s.code()),
        Some(Code::ResourceExhausted)
    );
    assert_eq!(
        client.post_batch(vec![]).await.err().map(|s| s.code()),
        Some(Code::InvalidArgument)
    );
    server.stop().await;
}

async fn ok_signed(
    client: &mut fundtrail_client::Client,
    signed: pb::SignedRequest,
) -> pb::PostResponse {
    client.post_signed(signed).await.expect("post")
}

fn disbursement_pb() -> pb::Disbursement {
    match disbursement("dx-xczx", "dx-hh-0001", 100) {
        B::Disbursement(d) => d,
        _ => unreachable!(),
    }
}

fn register_org_pb(key: &Signer) -> pb::RegisterOrg {
    pb::RegisterOrg {
        org_id: "xj-czt".into(),
        name: "新疆维吾尔自治区财政厅".into(),
        role: pb::OrgRole::Finance as i32,
        division_code: "650000".into(),
        public_key: key.public_key().to_vec(),
    }
}

fn reversal(target_seq: u64) -> B {
    B::Reversal(pb::Reversal {
        target_seq,
        document_no: "冲〔2026〕1号".into(),
        reason: "录入错误".into(),
    })
}

fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Option<Code> {
    r.err().map(|s| s.code())
}

/// The record-format document is a contract for clients in other
/// languages: its table of request bodies must give every body the field
/// number and wire tag the proto files give it.
#[test]
fn the_documented_body_tags_are_the_protos() {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(fundtrail_api::FILE_DESCRIPTOR_SET).unwrap();
    let request = set
        .file
        .iter()
        .flat_map(|f| f.message_type.iter())
        .find(|m| m.name() == "Request")
        .expect("fundtrail.v1.Request");
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/record-format.md"),
    )
    .unwrap();
    let bodies: Vec<_> = request
        .field
        .iter()
        .filter(|f| f.oneof_index.is_some())
        .collect();
    assert!(bodies.len() >= 17, "every record kind is a body");
    for field in bodies {
        let name = field.type_name().rsplit('.').next().unwrap();
        let mut key = (field.number() as u64) << 3 | 2;
        let mut tag = Vec::new();
        loop {
            let byte = (key & 0x7f) as u8;
            key >>= 7;
            if key == 0 {
                tag.push(format!("{byte:02x}"));
                break;
            }
            tag.push(format!("{:02x}", byte | 0x80));
        }
        let row = format!("| {} | `{name}` | `{}` |", field.number(), tag.join(" "));
        assert!(
            doc.contains(&row),
            "docs/record-format.md lacks the row {row}"
        );
    }
}
