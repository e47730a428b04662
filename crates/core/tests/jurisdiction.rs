//! Property: in any org tree, no call gives a reader a household in full —
//! directly or inside a record — unless the reader is in that household's
//! allowed set: the owning org, its ancestors, audit offices whose division
//! (nested in their ancestors') covers the owner's, and mirrors. The allowed
//! set is computed here from the org list alone, apart from `access`.

use fundtrail_core::access::{decide, Answer, Call, Data, Owner, Party, Reader, RecordScope};
use fundtrail_core::model::{Org, Role};
use proptest::prelude::*;

const DIVISIONS: [&str; 7] = [
    "000000", "510000", "513400", "513431", "530000", "533300", "533323",
];

/// An org list where org i's parent is an earlier org (org 0 is the root).
fn world() -> impl Strategy<Value = Vec<Org>> {
    prop::collection::vec((0usize..64, 0usize..5, 0usize..DIVISIONS.len()), 1..14).prop_map(
        |specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (parent, role, division))| Org {
                    org_id: format!("o{i}"),
                    name: format!("o{i}"),
                    role: if i == 0 {
                        Role::Administrator
                    } else {
                        [
                            Role::Administrator,
                            Role::Finance,
                            Role::Auditor,
                            Role::Witness,
                            Role::Mirror,
                        ][role]
                    },
                    division_code: if i == 0 {
                        "000000".into()
                    } else {
                        DIVISIONS[division].into()
                    },
                    parent_org_id: (i > 0).then(|| format!("o{}", parent % i)),
                    registered_seq: i as u64,
                    key_ids: vec![],
                })
                .collect()
        },
    )
}

fn ancestors(orgs: &[Org], i: usize) -> Vec<usize> {
    let mut out = vec![];
    let mut at = orgs[i].parent_org_id.clone();
    while let Some(id) = at {
        let p: usize = id[1..].parse().unwrap();
        out.push(p);
        at = orgs[p].parent_org_id.clone();
    }
    out
}

/// Whether division `code` is inside `scope`, by the levels spelt out.
fn inside(code: &str, scope: &str) -> bool {
    match scope {
        "000000" => true,
        s if s.ends_with("0000") => code[..2] == s[..2],
        s if s.ends_with("00") => code[..4] == s[..4],
        s => code == s,
    }
}

/// The household owned by `owner`: who may see it, from the spec.
fn allowed(orgs: &[Org], reader: usize, owner: usize) -> bool {
    let org = &orgs[reader];
    match org.role {
        Role::Mirror => true,
        Role::Witness => false,
        Role::Administrator | Role::Finance => {
            reader == owner || ancestors(orgs, owner).contains(&reader)
        }
        Role::Auditor => {
            let nested = ancestors(orgs, reader)
                .iter()
                .all(|&a| inside(&org.division_code, &orgs[a].division_code));
            nested && inside(&orgs[owner].division_code, &org.division_code)
        }
    }
}

fn owner_of(orgs: &[Org], i: usize) -> Owner {
    let chain: Vec<Org> = std::iter::once(i)
        .chain(ancestors(orgs, i))
        .map(|j| orgs[j].clone())
        .collect();
    Owner::of_chain(&chain)
}

fn reader_of(orgs: &[Org], i: usize) -> Reader {
    let chain: Vec<Org> = ancestors(orgs, i)
        .into_iter()
        .map(|j| orgs[j].clone())
        .collect();
    Reader::new(&orgs[i], &chain)
}

const CALLS: [Call; 12] = [
    Call::GetEntry,
    Call::GetAccount,
    Call::HouseholdStatement,
    Call::TraceBackward,
    Call::InclusionProofRecord,
    Call::ListEntries,
    Call::ListAccounts,
    Call::TraceForward,
    Call::IdleFunds,
    Call::Anomalies,
    Call::ExportLog,
    Call::AccessLog,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn households_reach_only_their_allowed_set(
        orgs in world(),
        picks in prop::collection::vec((0usize..64, 0usize..64, 0usize..64), 1..8),
    ) {
        let n = orgs.len();
        for (household_owner, payer, reader) in picks {
            let (household_owner, payer, reader) = (household_owner % n, payer % n, reader % n);
            let household = Party { owner: owner_of(&orgs, household_owner), household: true };
            let paying = Party { owner: owner_of(&orgs, payer), household: false };
            // A record paying the household from another org's account.
            let record = RecordScope::Accounts {
                signer: owner_of(&orgs, payer),
                parties: vec![paying, household.clone()],
            };
            let who = reader_of(&orgs, reader);
            let may = allowed(&orgs, reader, household_owner);
            for call in CALLS {
                for data in [Data::Account(&household), Data::Record(&record)] {
                    let answer = decide(&who, call, data);
                    prop_assert!(
                        may || answer != Answer::Full,
                        "{call:?} gave o{reader} ({:?} {}) household of o{household_owner} in full",
                        orgs[reader].role, orgs[reader].division_code
                    );
                }
            }
            // And those allowed do get it directly (auditors and the
            // administrator also from the access log).
            prop_assert_eq!(
                decide(&who, Call::HouseholdStatement, Data::Account(&household)) == Answer::Full,
                may
            );
        }
    }
}
