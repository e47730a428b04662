//! Property tests of DESIGN.md §7 invariants 1–3 over random sequences of
//! valid and invalid operations: conservation per source, no balance below
//! zero, every movement's legs adding up to its amount, and replayed state
//! equal to live state byte for byte.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use fundtrail_core::apply::{apply, Context, Outcome};
use fundtrail_core::model::*;
use fundtrail_core::money::Fen;
use fundtrail_core::signing;
use fundtrail_core::state::{decode, key, MemoryKv};
use proptest::prelude::*;

const LEDGER: &str = "fundtrail-test";

/// Orgs: 0 = root (mof), 1 = province (child of root), 2 = county (child of province).
const ORGS: [&str; 3] = ["mof", "gs-czt", "dx-czj"];
/// Accounts and the org owning each; the last is the county's household.
const ACCOUNTS: [(&str, usize, AccountKind); 6] = [
    ("mof-treasury", 0, AccountKind::Treasury),
    ("mof-xczx", 0, AccountKind::Programme),
    ("gs-xczx", 1, AccountKind::Programme),
    ("dx-xczx", 2, AccountKind::Programme),
    ("dx-pool", 2, AccountKind::Pool),
    ("dx-hh-1", 2, AccountKind::Household),
];

fn key(org: usize) -> SigningKey {
    SigningKey::from_bytes(&[org as u8 + 1; 32])
}

struct Ledger {
    state: MemoryKv,
    /// Accepted requests in log order, with their contexts' data, for replay.
    log: Vec<(u64, String, Vec<u8>, Vec<u8>, Request)>,
    seq: u64,
}

impl Ledger {
    fn post(&mut self, signer: usize, body: Body) -> Result<Effects, fundtrail_core::Rejection> {
        let request = Request {
            ledger_id: LEDGER.into(),
            idempotency_key: format!("k{}", self.log.len() + 1_000 * self.seq as usize),
            signed_at_ms: 1_000,
            value_date: None,
            imported: false,
            body,
        };
        // Any bytes unique to the request stand for its encoding here.
        let payload = format!("{}|{request:?}", self.seq).into_bytes();
        let signing_key = key(signer);
        let key_id = signing::key_id(&signing_key.verifying_key().to_bytes());
        let signature = signing::sign(&signing_key, &payload).to_vec();
        let ctx = Context {
            seq: self.seq,
            commit_time_ms: 1_000,
            key_id: &key_id,
            payload: &payload,
            signature: &signature,
            verified_public_key: None,
            skew_ms_max: None,
        };
        match apply(&self.state, &ctx, &request)? {
            Outcome::Duplicate { .. } => panic!("fresh idempotency keys never repeat"),
            Outcome::Accepted { effects, writes } => {
                self.state.extend(writes);
                self.log
                    .push((self.seq, key_id, payload, signature, request));
                self.seq += 1;
                Ok(effects)
            }
        }
    }
}

fn genesis() -> Ledger {
    let mut ledger = Ledger {
        state: MemoryKv::new(),
        log: Vec::new(),
        seq: 0,
    };
    let root = key(0).verifying_key().to_bytes();
    ledger
        .post(
            0,
            Body::Genesis(Genesis {
                root_org_id: ORGS[0].into(),
                root_org_name: "财政部".into(),
                division_code: "000000".into(),
                root_public_key: root,
                log_public_key: key(9).verifying_key().to_bytes(),
            }),
        )
        .expect("genesis");
    for (child, parent, division) in [(1, 0, "620000"), (2, 1, "622926")] {
        ledger
            .post(
                parent,
                Body::RegisterOrg(RegisterOrg {
                    org_id: ORGS[child].into(),
                    name: format!("org {child}"),
                    role: Role::Finance,
                    division_code: division.into(),
                    public_key: key(child).verifying_key().to_bytes(),
                }),
            )
            .expect("register");
    }
    for (account_id, owner, kind) in ACCOUNTS {
        ledger
            .post(
                owner,
                if kind == AccountKind::Household {
                    Body::RegisterHousehold(RegisterHousehold {
                        account_id: account_id.into(),
                        household_ref: "HH-1".into(),
                        village_code: "622926100".into(),
                        basis: SubsidyBasis::PerHousehold,
                        members: 3,
                    })
                } else {
                    Body::OpenAccount(OpenAccount {
                        account_id: account_id.into(),
                        kind,
                        name: account_id.into(),
                        programme_code: String::new(),
                        household_ref: String::new(),
                    })
                },
            )
            .expect("open");
    }
    ledger
}

#[derive(Debug, Clone)]
enum Op {
    Appropriate {
        signer: usize,
        account: usize,
        amount: u64,
    },
    Transfer {
        signer: usize,
        from: usize,
        to: usize,
        amount: u64,
        earmark_source: Option<u64>,
    },
    Disburse {
        signer: usize,
        from: usize,
        amount: u64,
    },
    Reverse {
        signer: usize,
        target: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let amount = prop_oneof![1 => Just(0u64), 8 => 1u64..5_000, 1 => Just(u64::MAX)];
    prop_oneof![
        2 => (0..8usize, 0..6usize, amount.clone()).prop_map(|(signer, account, amount)| Op::Appropriate { signer, account, amount }),
        5 => (0..8usize, 0..6usize, 0..6usize, amount.clone(), proptest::option::of(0u64..40))
            .prop_map(|(signer, from, to, amount, earmark_source)| Op::Transfer { signer, from, to, amount, earmark_source }),
        2 => (0..8usize, 0..6usize, amount).prop_map(|(signer, from, amount)| Op::Disburse { signer, from, amount }),
        2 => (0..3usize, 0u64..60).prop_map(|(signer, target)| Op::Reverse { signer, target }),
    ]
}

/// Signers 0–2 are those orgs; 3 and above stand for "the owner of the
/// account debited", so that most operations are authorised.
fn signer_for(signer: usize, account: usize) -> usize {
    if signer >= 3 {
        ACCOUNTS[account].1
    } else {
        signer
    }
}

fn body(op: &Op) -> (usize, Body) {
    match *op {
        Op::Appropriate {
            signer,
            account,
            amount,
        } => (
            signer_for(signer, account),
            Body::Appropriation(Appropriation {
                account_id: ACCOUNTS[account].0.into(),
                amount: Fen(amount),
                programme_code: "2130599".into(),
                fiscal_year: 2026,
                document_no: "财农〔2026〕12号".into(),
                purpose: String::new(),
                memo: String::new(),
            }),
        ),
        Op::Transfer {
            signer,
            from,
            to,
            amount,
            earmark_source,
        } => (
            signer_for(signer, from),
            Body::Transfer(Transfer {
                from_account_id: ACCOUNTS[from].0.into(),
                to_account_id: ACCOUNTS[to].0.into(),
                amount: Fen(amount),
                sources: earmark_source
                    .map(|source_seq| {
                        vec![Earmark {
                            source_seq,
                            amount: Fen(amount),
                        }]
                    })
                    .unwrap_or_default(),
                document_no: "甘财农〔2026〕7号".into(),
                purpose: String::new(),
                memo: String::new(),
            }),
        ),
        Op::Disburse {
            signer,
            from,
            amount,
        } => (
            signer_for(signer, from),
            Body::Disbursement(Disbursement {
                from_account_id: ACCOUNTS[from].0.into(),
                household_account_id: "dx-hh-1".into(),
                amount: Fen(amount),
                sources: Vec::new(),
                programme_code: "2130599".into(),
                period: "2026-03".into(),
                document_no: "东财〔2026〕3号".into(),
                memo: String::new(),
            }),
        ),
        Op::Reverse { signer, target } => (
            signer % 3,
            Body::Reversal(Reversal {
                target_seq: target,
                document_no: "冲〔2026〕1号".into(),
                reason: "录入错误".into(),
            }),
        ),
    }
}

fn values<T: serde::de::DeserializeOwned>(state: &MemoryKv, prefix: u8) -> Vec<T> {
    state
        .range(vec![prefix]..vec![prefix + 1])
        .map(|(_, v)| decode(v).expect("decodes"))
        .collect()
}

/// Invariants 1 and 2: for every source, what was appropriated and not
/// withdrawn is exactly what the accounts hold of it; no stored balance is zero
/// or below (u64 cannot go below zero, and a debit past zero is refused).
fn check_conservation(state: &MemoryKv) {
    let accounts: Vec<Account> = values(state, key::ACCOUNT);
    let sources: Vec<Source> = values(state, key::SOURCE);
    let mut held: BTreeMap<u64, u128> = BTreeMap::new();
    for account in &accounts {
        for (lot, held_lot) in &account.lots {
            assert!(held_lot.amount.0 > 0, "empty lots are removed");
            *held.entry(lot.source_seq).or_default() += u128::from(held_lot.amount.0);
        }
    }
    for source in &sources {
        let net = u128::from(source.amount.0) - u128::from(source.withdrawn.0);
        assert_eq!(
            held.remove(&source.source_seq).unwrap_or(0),
            net,
            "source {} is conserved",
            source.source_seq
        );
    }
    assert!(
        held.is_empty(),
        "accounts hold money of unknown sources: {held:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn conservation_and_replay_hold(ops in proptest::collection::vec(op(), 1..80)) {
        let mut ledger = genesis();
        for op in &ops {
            let (signer, body) = body(op);
            let before = ledger.state.clone();
            let amount = match &body {
                Body::Appropriation(a) => Some(a.amount),
                Body::Transfer(t) => Some(t.amount),
                Body::Disbursement(d) => Some(d.amount),
                _ => None,
            };
            match ledger.post(signer, body) {
                Ok(effects) => {
                    // Every record's legs move exactly its amount.
                    if let Some(amount) = amount {
                        let moved: u128 = effects.legs.iter().map(|l| u128::from(l.amount.0)).sum();
                        prop_assert_eq!(moved, u128::from(amount.0));
                    }
                }
                Err(_) => prop_assert!(before == ledger.state, "a refused request changed state"),
            }
            check_conservation(&ledger.state);
        }
        // Invariant 3: replaying the accepted requests from genesis gives the
        // identical state, byte for byte.
        let mut replayed = MemoryKv::new();
        for (seq, key_id, payload, signature, request) in &ledger.log {
            let ctx = Context {
                seq: *seq,
                commit_time_ms: 1_000,
                key_id,
                payload,
                signature,
                verified_public_key: None,
                skew_ms_max: None,
            };
            match apply(&replayed, &ctx, request).expect("replay accepts what was accepted") {
                Outcome::Accepted { writes, .. } => replayed.extend(writes),
                Outcome::Duplicate { .. } => panic!("replay saw a duplicate"),
            }
        }
        prop_assert!(replayed == ledger.state, "replayed state differs from live state");
    }
}
