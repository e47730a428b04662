//! Property tests of docs/design.md §7 invariants 1–3 over random sequences of
//! valid and invalid operations: conservation per source, no balance below
//! zero, every movement's legs adding up to its amount, and replayed state
//! equal to live state byte for byte. The operations include the county
//! kinds (consolidation, allocation, return, household status) and records
//! imported with past value dates; the movement legs kept in state must add
//! up, source by source and lot by lot, to what the accounts hold.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use fundtrail_core::apply::{apply, Context, Outcome};
use fundtrail_core::dates::{day_of_ms, days_from_civil, Day};
use fundtrail_core::model::*;
use fundtrail_core::money::Fen;
use fundtrail_core::signing;
use fundtrail_core::state::{decode, key, MemoryKv, StateRead};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

const LEDGER: &str = "fundtrail-test";

/// Every record is committed at 2026-03-15 10:00 China Standard Time.
fn commit_ms() -> i64 {
    (days_from_civil(2026, 3, 15) * 86_400 + 2 * 3_600) * 1_000
}

fn commit_day() -> Day {
    day_of_ms(commit_ms())
}

/// Orgs: 0 = root (mof), 1 = province (child of root), 2 = county (child of province).
const ORGS: [&str; 3] = ["mof", "gs-czt", "dx-czj"];
/// Accounts and the org owning each.
const ACCOUNTS: [(&str, usize, AccountKind); 7] = [
    ("mof-treasury", 0, AccountKind::Treasury),
    ("mof-xczx", 0, AccountKind::Programme),
    ("gs-xczx", 1, AccountKind::Programme),
    ("dx-xczx", 2, AccountKind::Programme),
    ("dx-pool", 2, AccountKind::Pool),
    ("dx-hh-1", 2, AccountKind::Household),
    ("dx-proj", 2, AccountKind::Project),
];
const N: usize = ACCOUNTS.len();
const PROGRAMME: usize = 3;
const POOL: usize = 4;
const HOUSEHOLD: usize = 5;
const PROJECT: usize = 6;
/// The library project's budget: small enough that allocations hit it.
const PROJECT_BUDGET: u64 = 20_000;

fn key(org: usize) -> SigningKey {
    SigningKey::from_bytes(&[org as u8 + 1; 32])
}

/// An accepted request as the log keeps it: seq, key id, payload, signature, request.
type Posted = (u64, String, Vec<u8>, Vec<u8>, Request);

struct Ledger {
    state: MemoryKv,
    /// Accepted requests in log order, with their contexts' data, for replay.
    log: Vec<Posted>,
    seq: u64,
}

/// The business date a request asks for: none (the commit day), or this
/// many days before the commit day (negative: after it).
#[derive(Debug, Clone, Copy, Default)]
struct Dating {
    days_before: Option<i32>,
    imported: bool,
}

impl Ledger {
    fn post(&mut self, signer: usize, body: Body) -> Result<Effects, fundtrail_core::Rejection> {
        self.post_dated(signer, body, Dating::default())
    }

    fn post_dated(
        &mut self,
        signer: usize,
        body: Body,
        dating: Dating,
    ) -> Result<Effects, fundtrail_core::Rejection> {
        let request = Request {
            ledger_id: LEDGER.into(),
            idempotency_key: format!("k{}", self.log.len() + 1_000 * self.seq as usize),
            signed_at_ms: commit_ms(),
            value_date: dating.days_before.map(|d| commit_day() - d),
            imported: dating.imported,
            body,
        };
        // Any bytes unique to the request stand for its encoding here.
        let payload = format!("{}|{request:?}", self.seq).into_bytes();
        let signing_key = key(signer);
        let key_id = signing::key_id(&signing_key.verifying_key().to_bytes());
        let signature = signing::sign(&signing_key, &payload).to_vec();
        let ctx = Context {
            seq: self.seq,
            commit_time_ms: commit_ms(),
            key_id: &key_id,
            payload: &payload,
            signature: &signature,
            verified_public_key: None,
            skew_ms_max: None,
        };
        let outcome = apply(&self.state, &ctx, &request).map_err(|e| match e {
            fundtrail_core::Error::Refused(rejection) => rejection,
            fundtrail_core::Error::Fault(fault) => panic!("memory state cannot fail: {fault}"),
        })?;
        match outcome {
            Outcome::Duplicate { .. } => panic!("fresh idempotency keys never repeat"),
            Outcome::Accepted { effects, writes } => {
                fundtrail_core::state::apply_writes(&mut self.state, writes);
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
                rules_version: fundtrail_core::rules::Rules::CURRENT.version(),
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
    // Every org may import history (rules 6: a window the root declares).
    for org in ORGS {
        ledger
            .post(
                0,
                Body::DeclareImportWindow(DeclareImportWindow {
                    org_id: org.into(),
                    until_day: commit_day(),
                    document_no: "财办〔2026〕1号".into(),
                }),
            )
            .expect("import window");
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
                } else if kind == AccountKind::Project {
                    Body::RegisterProject(RegisterProject {
                        account_id: account_id.into(),
                        name: "产业路".into(),
                        category: "基础设施".into(),
                        location_code: "622926100".into(),
                        budget: Fen(PROJECT_BUDGET),
                        performance_targets: vec!["修建产业路 2 公里".into()],
                        responsible_unit: "县交通局".into(),
                        fiscal_year: 2026,
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
    // Money at the top of the chain, carried over from an earlier system.
    for (account, amount) in [(0, 50_000), (1, 100_000)] {
        ledger
            .post_dated(
                0,
                Body::Appropriation(Appropriation {
                    account_id: ACCOUNTS[account].0.into(),
                    amount: Fen(amount),
                    programme_code: "2130599".into(),
                    fiscal_year: 2024,
                    document_no: "财农〔2024〕1号".into(),
                    purpose: String::new(),
                    memo: String::new(),
                }),
                Dating {
                    days_before: Some(500),
                    imported: true,
                },
            )
            .expect("appropriation");
    }
    // ... and down to every level, on earlier business dates.
    let seed = [
        (
            450,
            Op::Transfer {
                signer: 3,
                from: 1,
                to: 2,
                amount: 60_000,
                earmark_source: None,
            },
        ),
        (
            400,
            Op::Transfer {
                signer: 3,
                from: 2,
                to: PROGRAMME,
                amount: 30_000,
                earmark_source: None,
            },
        ),
        (
            300,
            Op::Consolidate {
                signer: 3,
                from: PROGRAMME,
                to: POOL,
                amount: 15_000,
            },
        ),
        (
            200,
            Op::Allocate {
                signer: 3,
                from: POOL,
                to: PROJECT,
                amount: 8_000,
            },
        ),
    ];
    for (days_before, op) in seed {
        let (signer, body) = body(&op);
        ledger
            .post_dated(
                signer,
                body,
                Dating {
                    days_before: Some(days_before),
                    imported: true,
                },
            )
            .expect("seed movement");
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
        /// `target` counts back from the latest live money record, and
        /// signers 3 and above stand for the owner of the account it debits.
        recent: bool,
    },
    Consolidate {
        signer: usize,
        from: usize,
        to: usize,
        amount: u64,
    },
    Allocate {
        signer: usize,
        from: usize,
        to: usize,
        amount: u64,
    },
    Return {
        signer: usize,
        from: usize,
        to: usize,
        amount: u64,
        kind: u8,
        with_reason: bool,
    },
    SetStatus {
        signer: usize,
        status: u8,
    },
}

/// Mostly the accounts the operation is meant for, sometimes any account.
fn account_or(usual: &'static [usize]) -> impl Strategy<Value = usize> {
    prop_oneof![3 => proptest::sample::select(usual), 1 => 0..N]
}

/// Mostly a (from, to) pair the operation is meant for, sometimes any pair.
fn pair_or(usual: &'static [(usize, usize)]) -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![3 => proptest::sample::select(usual), 1 => (0..N, 0..N)]
}

fn dating() -> impl Strategy<Value = Dating> {
    prop_oneof![
        12 => Just(Dating::default()),
        6 => (0i32..400, proptest::bool::weighted(0.9))
            .prop_map(|(d, imported)| Dating { days_before: Some(d), imported }),
        1 => (-2i32..0, any::<bool>())
            .prop_map(|(d, imported)| Dating { days_before: Some(d), imported }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let appropriated = prop_oneof![1 => Just(0u64), 20 => 1_000u64..20_000, 1 => Just(u64::MAX)];
    let amount = prop_oneof![1 => Just(0u64), 20 => 1u64..3_000, 1 => Just(u64::MAX)];
    // Down the chain, and across one level.
    const TRANSFERS: &[(usize, usize)] = &[(0, 1), (1, 2), (2, 3), (1, 3), (3, 2), (0, 2)];
    const RETURNS: &[(usize, usize)] = &[
        (HOUSEHOLD, PROGRAMME),
        (PROGRAMME, 2),
        (POOL, PROGRAMME),
        (PROJECT, POOL),
        (2, 1),
    ];
    prop_oneof![
        3 => (0..8usize, account_or(&[0, 1, 2, PROGRAMME]), appropriated)
            .prop_map(|(signer, account, amount)| Op::Appropriate { signer, account, amount }),
        5 => (0..8usize, pair_or(TRANSFERS), amount.clone(), proptest::option::weighted(0.2, 0u64..40))
            .prop_map(|(signer, (from, to), amount, earmark_source)| Op::Transfer { signer, from, to, amount, earmark_source }),
        2 => (0..8usize, account_or(&[PROGRAMME, PROJECT, POOL]), amount.clone())
            .prop_map(|(signer, from, amount)| Op::Disburse { signer, from, amount }),
        3 => (0..8usize, 0u64..60, proptest::bool::weighted(0.75))
            .prop_map(|(signer, target, recent)| Op::Reverse { signer, target, recent }),
        2 => (0..8usize, pair_or(&[(PROGRAMME, POOL)]), amount.clone())
            .prop_map(|(signer, (from, to), amount)| Op::Consolidate { signer, from, to, amount }),
        2 => (0..8usize, pair_or(&[(POOL, PROJECT)]), amount.clone())
            .prop_map(|(signer, (from, to), amount)| Op::Allocate { signer, from, to, amount }),
        2 => (0..8usize, pair_or(RETURNS), amount, 0..4u8, proptest::bool::weighted(0.9))
            .prop_map(|(signer, (from, to), amount, kind, with_reason)| Op::Return { signer, from, to, amount, kind, with_reason }),
        1 => (0..8usize, 0..3u8).prop_map(|(signer, status)| Op::SetStatus { signer, status }),
    ]
}

/// Points a "recent" reversal at a live money record of `state`, signed by
/// the owner of the account it debits when the signer says so.
fn resolve(op: &Op, state: &MemoryKv) -> Op {
    let Op::Reverse {
        signer,
        target,
        recent: true,
    } = *op
    else {
        return op.clone();
    };
    let live: Vec<Movement> = values::<Movement>(state, key::MOVEMENT)
        .into_iter()
        .filter(|m| !m.is_reversal && m.reversed_by.is_none())
        .collect();
    let Some(chosen) = live.iter().rev().nth(target as usize % live.len().max(1)) else {
        return op.clone();
    };
    let debited = chosen.legs[0].to_account_id.as_deref();
    let owner = ACCOUNTS
        .iter()
        .find(|a| Some(a.0) == debited)
        .map(|a| a.1)
        .unwrap_or(0);
    Op::Reverse {
        signer: if signer >= 3 { owner } else { signer },
        target: chosen.seq,
        recent: true,
    }
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
                quota_seq: None,
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
                quota_seq: None,
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
        Op::Reverse { signer, target, .. } => (
            signer % 3,
            Body::Reversal(Reversal {
                target_seq: target,
                document_no: "冲〔2026〕1号".into(),
                reason: "录入错误".into(),
            }),
        ),
        Op::Consolidate {
            signer,
            from,
            to,
            amount,
        } => (
            signer_for(signer, from),
            Body::Consolidation(Consolidation {
                from_account_id: ACCOUNTS[from].0.into(),
                pool_account_id: ACCOUNTS[to].0.into(),
                amount: Fen(amount),
                sources: Vec::new(),
                plan_document_no: "东政办〔2026〕9号".into(),
                memo: String::new(),
            }),
        ),
        Op::Allocate {
            signer,
            from,
            to,
            amount,
        } => (
            signer_for(signer, from),
            Body::Allocation(Allocation {
                pool_account_id: ACCOUNTS[from].0.into(),
                project_account_id: ACCOUNTS[to].0.into(),
                amount: Fen(amount),
                sources: Vec::new(),
                document_no: "东财农〔2026〕30号".into(),
                memo: String::new(),
                quota_seq: None,
            }),
        ),
        Op::Return {
            signer,
            from,
            to,
            amount,
            kind,
            with_reason,
        } => (
            signer_for(signer, from),
            Body::Return(Return {
                from_account_id: ACCOUNTS[from].0.into(),
                to_account_id: ACCOUNTS[to].0.into(),
                amount: Fen(amount),
                sources: Vec::new(),
                kind: [
                    ReturnKind::IdleRecovery,
                    ReturnKind::Clawback,
                    ReturnKind::Surplus,
                    ReturnKind::Clawback,
                ][usize::from(kind % 4)],
                document_no: "东财农〔2026〕40号".into(),
                reason: if with_reason {
                    "闲置资金收回".into()
                } else {
                    " ".into()
                },
                disbursement_seq: 0,
                bank_reference: String::new(),
            }),
        ),
        Op::SetStatus { signer, status } => (
            signer_for(signer, HOUSEHOLD),
            Body::SetHouseholdStatus(SetHouseholdStatus {
                account_id: ACCOUNTS[HOUSEHOLD].0.into(),
                status: [
                    HouseholdStatus::Registered,
                    HouseholdStatus::Exited,
                    HouseholdStatus::Ineligible,
                ][usize::from(status % 3)],
                document_no: "东乡核查〔2026〕1号".into(),
                reason: "入户核查".into(),
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
        let mut by_source: BTreeMap<u64, u128> = BTreeMap::new();
        for (lot, held_lot) in state.lots(&account.account_id, usize::MAX).expect("lots") {
            assert!(held_lot.amount.0 > 0, "empty lots are removed");
            *held.entry(lot.source_seq).or_default() += u128::from(held_lot.amount.0);
            *by_source.entry(lot.source_seq).or_default() += u128::from(held_lot.amount.0);
        }
        let balances: BTreeMap<u64, u128> = account
            .balances
            .iter()
            .map(|(&s, a)| (s, u128::from(a.0)))
            .collect();
        assert_eq!(
            balances, by_source,
            "account {}'s balances are the sum of its lots",
            account.account_id
        );
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

/// The forward totals, from the movement legs kept in state (what the
/// traces read): per source, the money that entered the ledger is the
/// appropriation and the money that left it is what was withdrawn; replaying
/// every leg in log order (a reversal leg returning money to the lot the
/// reversed leg took it from) never overdraws a lot and ends with exactly the
/// lots the accounts hold, each dated by the record that brought it. Money
/// never pays out on a day before it arrived.
fn check_movements(state: &MemoryKv) {
    let movements: Vec<Movement> = values(state, key::MOVEMENT);
    let by_seq: BTreeMap<u64, &Movement> = movements.iter().map(|m| (m.seq, m)).collect();
    let mut entered: BTreeMap<u64, u128> = BTreeMap::new();
    let mut left: BTreeMap<u64, u128> = BTreeMap::new();
    let mut lots: BTreeMap<(String, u64, u64), i128> = BTreeMap::new();
    for movement in &movements {
        assert!(
            !movement.legs.is_empty(),
            "record {} kept a movement without legs",
            movement.seq
        );
        // A reversal mirrors the reversed record's legs, last first.
        let original = movement.is_reversal.then(|| {
            let target = movement.legs[0]
                .from_arrival_seq
                .expect("a reversal leg names the reversed record");
            let original = by_seq[&target];
            assert_eq!(original.reversed_by, Some(movement.seq));
            assert_eq!(original.legs.len(), movement.legs.len());
            original
        });
        for (i, leg) in movement.legs.iter().enumerate() {
            assert!(
                leg.amount.0 > 0,
                "record {}: a leg of nothing",
                movement.seq
            );
            let amount = i128::from(leg.amount.0);
            match (&leg.from_account_id, leg.from_arrival_seq) {
                (None, _) => {
                    assert_eq!(movement.kind.name(), "Appropriation");
                    assert_eq!(
                        leg.source_seq, movement.seq,
                        "an appropriation is its own source"
                    );
                    *entered.entry(leg.source_seq).or_default() += u128::from(leg.amount.0);
                }
                (Some(from), Some(arrival)) => {
                    let lot = lots
                        .entry((from.clone(), leg.source_seq, arrival))
                        .or_default();
                    *lot -= amount;
                    assert!(
                        *lot >= 0,
                        "record {} took more out of lot {from}/{}/{arrival} than it held",
                        movement.seq,
                        leg.source_seq
                    );
                    if original.is_none() {
                        assert!(
                            by_seq[&arrival].value_day <= movement.value_day,
                            "record {} paid out on day {} money that arrived on day {}",
                            movement.seq,
                            movement.value_day,
                            by_seq[&arrival].value_day
                        );
                    }
                }
                (Some(from), None) => {
                    panic!("record {}: a leg out of {from} names no lot", movement.seq)
                }
            }
            let Some(to) = &leg.to_account_id else {
                *left.entry(leg.source_seq).or_default() += u128::from(leg.amount.0);
                continue;
            };
            let arrival = match original {
                None => movement.seq,
                Some(original) => {
                    let mirrored = &original.legs[original.legs.len() - 1 - i];
                    assert_eq!(
                        (
                            &mirrored.from_account_id,
                            &mirrored.to_account_id,
                            mirrored.source_seq,
                            mirrored.amount
                        ),
                        (
                            &leg.to_account_id,
                            &leg.from_account_id,
                            leg.source_seq,
                            leg.amount
                        ),
                        "reversal {} mirrors record {}",
                        movement.seq,
                        original.seq
                    );
                    mirrored
                        .from_arrival_seq
                        .expect("money that came from an account goes back to its lot")
                }
            };
            *lots
                .entry((to.clone(), leg.source_seq, arrival))
                .or_default() += amount;
        }
    }
    lots.retain(|_, amount| *amount != 0);
    let mut held: BTreeMap<(String, u64, u64), i128> = BTreeMap::new();
    for account in values::<Account>(state, key::ACCOUNT) {
        for (lot, held_lot) in state.lots(&account.account_id, usize::MAX).expect("lots") {
            let arrived = by_seq.get(&lot.arrival_seq).unwrap_or_else(|| {
                panic!(
                    "lot {}/{} of {} arrived with no movement",
                    lot.source_seq, lot.arrival_seq, account.account_id
                )
            });
            assert_eq!(
                held_lot.arrival_day, arrived.value_day,
                "a lot is dated by the record that brought it"
            );
            held.insert(
                (account.account_id.clone(), lot.source_seq, lot.arrival_seq),
                i128::from(held_lot.amount.0),
            );
        }
    }
    assert_eq!(
        lots, held,
        "the legs, replayed, give the lots the accounts hold"
    );
    let sources: Vec<Source> = values(state, key::SOURCE);
    assert_eq!(
        entered.keys().copied().collect::<Vec<_>>(),
        sources.iter().map(|s| s.source_seq).collect::<Vec<_>>(),
        "money enters the ledger only by appropriation"
    );
    for source in &sources {
        assert_eq!(
            entered[&source.source_seq],
            u128::from(source.amount.0),
            "source {} entered once, in full",
            source.source_seq
        );
        assert_eq!(
            left.get(&source.source_seq).copied().unwrap_or(0),
            u128::from(source.withdrawn.0),
            "source {}: what left the ledger is what was withdrawn",
            source.source_seq
        );
    }
    // The registry follows the movements: the project's allocations net of
    // reversals, within budget; the household's payments, reversed or not.
    let live_into = |kind: &str, account: &str| -> Vec<(u64, u64, Day, bool)> {
        movements
            .iter()
            .filter(|m| {
                m.kind.name() == kind && m.legs[0].to_account_id.as_deref() == Some(account)
            })
            .map(|m| {
                (
                    m.seq,
                    m.legs.iter().map(|l| l.amount.0).sum(),
                    m.value_day,
                    m.reversed_by.is_some(),
                )
            })
            .collect()
    };
    let project: Project = StateRead::project(state, ACCOUNTS[PROJECT].0)
        .unwrap()
        .expect("project");
    let allocated: u64 = live_into("Allocation", ACCOUNTS[PROJECT].0)
        .iter()
        .filter(|a| !a.3)
        .map(|a| a.1)
        .sum();
    assert_eq!(project.allocated.0, allocated);
    assert!(
        project.allocated.0 <= project.budget.0,
        "allocated beyond the budget"
    );
    let payments = StateRead::household_payments(state, ACCOUNTS[HOUSEHOLD].0, usize::MAX).unwrap();
    assert_eq!(
        payments
            .iter()
            .map(|p| (p.seq, p.amount.0, p.day, p.reversed))
            .collect::<Vec<_>>(),
        live_into("Disbursement", ACCOUNTS[HOUSEHOLD].0)
    );
}

/// Cases the property test runs.
const PROPERTY_CASES: u32 = 128;

/// Runs the ops of one case; returns how many accepted records moved money.
fn conservation_and_replay_case(ops: &[(Op, Dating)]) -> Result<u64, TestCaseError> {
    let mut ledger = genesis();
    let mut accepted_movements = 0;
    for (op, dating) in ops {
        let op = &resolve(op, &ledger.state);
        let (signer, body) = body(op);
        let before = ledger.state.clone();
        let amount = match &body {
            Body::Appropriation(a) => Some(a.amount),
            Body::Transfer(t) => Some(t.amount),
            Body::Disbursement(d) => Some(d.amount),
            Body::Consolidation(c) => Some(c.amount),
            Body::Allocation(a) => Some(a.amount),
            Body::Return(r) => Some(r.amount),
            _ => None,
        };
        let moves_money = body.moves_money();
        match ledger.post_dated(signer, body, *dating) {
            Ok(effects) => {
                // Every record's legs move exactly its amount.
                if let Some(amount) = amount {
                    let moved: u128 = effects.legs.iter().map(|l| u128::from(l.amount.0)).sum();
                    prop_assert_eq!(moved, u128::from(amount.0));
                }
                prop_assert!(moves_money || effects.legs.is_empty());
                if !effects.legs.is_empty() {
                    accepted_movements += 1;
                }
                // The business date: asked for, or the commit day; never
                // later, and earlier only when imported (or a status change).
                let day = commit_day() - dating.days_before.unwrap_or(0);
                prop_assert_eq!(effects.value_day, day);
                prop_assert!(day <= commit_day(), "a record dated after its commit day");
                prop_assert!(
                    day == commit_day() || dating.imported || matches!(op, Op::SetStatus { .. }),
                    "a record that is not imported dated in the past"
                );
            }
            Err(_) => prop_assert!(before == ledger.state, "a refused request changed state"),
        }
        check_conservation(&ledger.state);
        check_movements(&ledger.state);
    }
    // Invariant 3: replaying the accepted requests from genesis gives the
    // identical state, byte for byte.
    let mut replayed = MemoryKv::new();
    for (seq, key_id, payload, signature, request) in &ledger.log {
        let ctx = Context {
            seq: *seq,
            commit_time_ms: commit_ms(),
            key_id,
            payload,
            signature,
            verified_public_key: None,
            skew_ms_max: None,
        };
        match apply(&replayed, &ctx, request).expect("replay accepts what was accepted") {
            Outcome::Accepted { writes, .. } => {
                fundtrail_core::state::apply_writes(&mut replayed, writes)
            }
            Outcome::Duplicate { .. } => panic!("replay saw a duplicate"),
        }
    }
    prop_assert!(
        replayed == ledger.state,
        "replayed state differs from live state"
    );
    Ok(accepted_movements)
}

/// Conservation, no negative balance, no change on refusal, and replay =
/// live state, over random sequences of requests. The test also counts the
/// money movements the rules accepted: a generator whose requests are all
/// refused would prove nothing, so it fails if too few get through.
#[test]
fn conservation_and_replay_hold() {
    let mut runner = TestRunner::new(ProptestConfig {
        cases: PROPERTY_CASES,
        ..ProptestConfig::default()
    });
    let accepted = std::cell::Cell::new(0u64);
    let cases_with_movements = std::cell::Cell::new(0u64);
    runner
        .run(&proptest::collection::vec((op(), dating()), 1..80), |ops| {
            let movements = conservation_and_replay_case(&ops)?;
            accepted.set(accepted.get() + movements);
            cases_with_movements.set(cases_with_movements.get() + u64::from(movements > 0));
            Ok(())
        })
        .unwrap();
    let cases = u64::from(PROPERTY_CASES);
    assert!(
        accepted.get() >= 5 * cases,
        "only {} money movements were accepted over {cases} cases: the generator mostly makes refused requests",
        accepted.get()
    );
    assert!(
        cases_with_movements.get() * 2 >= cases,
        "only {} of {cases} cases moved any money",
        cases_with_movements.get()
    );
}

/// A reversal takes the money back out of the lot the reversed record made.
/// Dated before that record, it would take money out of an account before
/// the money arrived there, which every other movement is refused for.
#[test]
fn a_reversal_is_not_dated_before_the_record_it_reverses() {
    let mut ledger = genesis();
    let (signer, appropriation) = body(&Op::Appropriate {
        signer: 0,
        account: 1,
        amount: 1_000,
    });
    ledger
        .post_dated(
            signer,
            appropriation,
            Dating {
                days_before: Some(30),
                imported: true,
            },
        )
        .expect("appropriation");
    let transfer_seq = ledger.seq;
    let (signer, transfer) = body(&Op::Transfer {
        signer: 0,
        from: 1,
        to: 2,
        amount: 100,
        earmark_source: None,
    });
    ledger
        .post_dated(
            signer,
            transfer,
            Dating {
                days_before: Some(5),
                imported: true,
            },
        )
        .expect("transfer");
    let before = ledger.state.clone();
    let early = ledger.post_dated(
        1,
        Body::Reversal(Reversal {
            target_seq: transfer_seq,
            document_no: "甘财〔2026〕1号".into(),
            reason: "重复下达".into(),
        }),
        Dating {
            days_before: Some(20),
            imported: true,
        },
    );
    assert!(
        early.is_err(),
        "a reversal dated 15 days before the transfer it reverses was accepted: {early:?}"
    );
    assert!(before == ledger.state, "a refused request changed state");
    // Dated on or after the transfer, it is accepted.
    ledger
        .post_dated(
            1,
            Body::Reversal(Reversal {
                target_seq: transfer_seq,
                document_no: "甘财〔2026〕1号".into(),
                reason: "重复下达".into(),
            }),
            Dating {
                days_before: Some(5),
                imported: true,
            },
        )
        .expect("reversal on the transfer's day");
    check_conservation(&ledger.state);
    check_movements(&ledger.state);
}

/// Under rules 3 no account may hold more than u64::MAX fen in all. Reaching
/// that through the API takes 18,447 of the largest appropriations; here the
/// account is brought just below it directly in state, and one more fen of
/// appropriation is refused, changing nothing.
#[test]
fn rules_3_refuse_an_account_total_past_u64() {
    use fundtrail_core::state::{encode, key, StateRead};
    let mut ledger = genesis();
    let account_id = ACCOUNTS[0].0;
    let mut account = ledger.state.account(account_id).unwrap().unwrap();
    let held: u128 = account.balance();
    let top_up = u64::MAX - u64::try_from(held).unwrap();
    // A fictitious source holding the rest, as 18,447 appropriations would.
    account.balances.insert(u64::MAX, Fen(top_up));
    ledger
        .state
        .insert(key::named(key::ACCOUNT, account_id), encode(&account));
    let before = ledger.state.clone();
    let refused = ledger
        .post(
            0,
            Body::Appropriation(Appropriation {
                account_id: account_id.into(),
                amount: Fen(1),
                programme_code: "2130599".into(),
                fiscal_year: 2026,
                document_no: "财农〔2026〕9号".into(),
                purpose: String::new(),
                memo: String::new(),
            }),
        )
        .unwrap_err();
    assert_eq!(refused.code, fundtrail_core::Code::ResourceExhausted);
    assert!(
        refused.message.contains("more than the ledger can report"),
        "{}",
        refused.message
    );
    assert!(
        ledger.state == before,
        "a refused appropriation changed state"
    );
}
