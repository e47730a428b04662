//! Who may read what (docs/design.md §10). [`sees`] decides whether a reader may
//! see data owned by one org; [`decide`] applies it to every call and kind
//! of data. The server only gathers the facts (the reader's org, the owner's
//! org chain and division) and does what the answer says.
//!
//! The rules, in a finance clerk's words:
//! - a finance org (and the administrator) reads its own data and that of its
//!   descendant orgs: for household data that is "the owning county and its
//!   ancestors";
//! - an audit office reads data whose owner lies within its division
//!   (`000000` reads everything), capped by its ancestors' divisions;
//! - a mirror reads the whole log; a witness reads only what is public;
//! - orgs and keys (the registry) are readable by every registered reader:
//!   they are what signatures are checked against.
//!
//! A call that names one resource the reader may not see in full is denied.
//! A call that returns many items leaves out what the reader may not see at
//! all, and shows a household it may not see under a pseudonym (and without
//! the signed bytes that would reveal it).

use crate::model::{Org, Role};

/// A known reader: the org behind a registered, unrevoked key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    pub org_id: String,
    pub role: Role,
    /// An audit office's jurisdiction: its division code, if every ancestor's
    /// division contains it; `None` for other roles or a misplaced office.
    pub jurisdiction: Option<String>,
    /// The reader's org is the root org (it has no parent).
    pub root: bool,
}

impl Reader {
    /// The reader for the first org of `chain` (an org, then its ancestors).
    pub fn of_chain(chain: &[Org]) -> Reader {
        let (org, ancestors) = chain
            .split_first()
            .expect("an org chain holds the org itself");
        Reader::new(org, ancestors)
    }

    /// The reader for `org`, whose ancestors are `ancestors` (parent first).
    pub fn new(org: &Org, ancestors: &[Org]) -> Reader {
        let nested = ancestors
            .iter()
            .all(|a| division_within(&org.division_code, &a.division_code));
        Reader {
            org_id: org.org_id.clone(),
            role: org.role,
            jurisdiction: (org.role == Role::Auditor && nested).then(|| org.division_code.clone()),
            root: ancestors.is_empty(),
        }
    }

    /// Whether the reader sees every org's data: only then may it learn
    /// that something does not exist (to anyone else, "absent" and "not
    /// yours" look the same, so guesses of household ids cannot be tested).
    pub fn sees_everything(&self) -> bool {
        match self.role {
            Role::Mirror => true,
            Role::Administrator | Role::Finance => self.root,
            Role::Auditor => self
                .jurisdiction
                .as_deref()
                .is_some_and(|scope| division_prefix(scope).is_empty()),
            Role::Witness => false,
        }
    }
}

/// Who owns a piece of data: the owning org first, then its ancestors up to
/// the root, and the owner's division code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub chain: Vec<String>,
    pub division_code: String,
}

impl Owner {
    /// The owner for the first org of `chain` (an org, then its ancestors).
    pub fn of_chain(chain: &[Org]) -> Owner {
        let org = chain.first().expect("an org chain holds the org itself");
        Owner {
            chain: chain.iter().map(|o| o.org_id.clone()).collect(),
            division_code: org.division_code.clone(),
        }
    }
}

/// One account a record or answer touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub owner: Owner,
    /// A household account: its id and ref are household-level data.
    pub household: bool,
}

/// What a record is about, for deciding who may read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordScope {
    /// Genesis, orgs, keys, rules: readable by every registered reader.
    Registry,
    /// Everything else: the signing org and the accounts it names.
    Accounts { signer: Owner, parties: Vec<Party> },
}

/// The significant digits of a division code: a 6-digit GB/T 2260 code
/// loses its trailing `00` levels (`510000` → `51`, `000000` → ``), a 9- or
/// 12-digit township/village code its trailing `000` levels.
pub fn division_prefix(code: &str) -> &str {
    let mut prefix = code;
    while prefix.len() > 6 && prefix.ends_with("000") {
        prefix = &prefix[..prefix.len() - 3];
    }
    if prefix.len() <= 6 {
        while !prefix.is_empty() && prefix.ends_with("00") {
            prefix = &prefix[..prefix.len() - 2];
        }
    }
    prefix
}

/// Whether division `code` lies within division `scope` (`000000` contains
/// every division; `510000` contains `513431` and `513431100`).
pub fn division_within(code: &str, scope: &str) -> bool {
    code.starts_with(division_prefix(scope))
}

/// Whether `reader` may see data owned as `owner`.
pub fn sees(reader: &Reader, owner: &Owner) -> bool {
    match reader.role {
        Role::Mirror => true,
        Role::Administrator | Role::Finance => owner.chain.contains(&reader.org_id),
        Role::Auditor => reader
            .jurisdiction
            .as_deref()
            .is_some_and(|scope| division_within(&owner.division_code, scope)),
        Role::Witness => false,
    }
}

/// Whether `reader` may learn of a read that an audit office of division
/// `auditor_division` made: the root org and audit offices whose
/// jurisdiction covers that office may; nobody else, least of all the
/// audited (separation of duties).
pub fn sees_audit_read(reader: &Reader, auditor_division: &str) -> bool {
    reader.root
        || (reader.role == Role::Auditor
            && reader
                .jurisdiction
                .as_deref()
                .is_some_and(|scope| division_within(auditor_division, scope)))
}

/// How a reader sees one record: in full, with the households it may not
/// see pseudonymised, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Full,
    Pseudonymised,
    Hidden,
}

/// How `reader` sees a record about `scope`: visible when it sees the signer
/// or any account named; pseudonymised when some household named is not its.
pub fn record_view(reader: &Reader, scope: &RecordScope) -> View {
    let (signer, parties) = match scope {
        RecordScope::Registry => return View::Full,
        RecordScope::Accounts { signer, parties } => (signer, parties),
    };
    let visible = sees(reader, signer) || parties.iter().any(|p| sees(reader, &p.owner));
    if !visible {
        return View::Hidden;
    }
    if parties
        .iter()
        .all(|p| !p.household || sees(reader, &p.owner))
    {
        View::Full
    } else {
        View::Pseudonymised
    }
}

/// The key of household pseudonyms, derived from the log's secret key: an
/// outsider cannot test guesses of household ids against pseudonyms, and
/// one household keeps one pseudonym across calls and restarts.
pub fn pseudonym_key(log_secret_key: &[u8; 32]) -> [u8; 32] {
    derived_key(log_secret_key, "household-pseudonym-key")
}

/// A key for one purpose (`purpose`), derived from the log's secret key.
pub fn derived_key(log_secret_key: &[u8; 32], purpose: &str) -> [u8; 32] {
    let mut input = format!("fundtrail/v1/{purpose}\n").into_bytes();
    input.extend_from_slice(log_secret_key);
    crate::signing::sha256(&input)
}

/// A household account's pseudonym: `hh~` and 24 hex digits.
pub fn pseudonym(key: &[u8; 32], account_id: &str) -> String {
    let mut input = key.to_vec();
    input.extend_from_slice(account_id.as_bytes());
    let digest = crate::signing::sha256(&input);
    format!("hh~{}", hex::encode(&digest[..12]))
}

/// Every call that reads data the jurisdiction rules govern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    // Calls naming one resource.
    GetEntry,
    GetAccount,
    HouseholdStatement,
    TraceBackward,
    /// The record bytes that go with an inclusion proof (the proof's hashes
    /// are public).
    InclusionProofRecord,
    // Calls returning many items.
    ListEntries,
    ListAccounts,
    TraceForward,
    IdleFunds,
    Anomalies,
    ExportLog,
    // The registry.
    GetOrg,
    // Administration, and who read a household's data.
    Scrub,
    AccessLog,
}

impl Call {
    /// Calls that name one resource: anything short of full is a denial.
    fn is_direct(self) -> bool {
        matches!(
            self,
            Call::GetEntry
                | Call::GetAccount
                | Call::HouseholdStatement
                | Call::TraceBackward
                | Call::InclusionProofRecord
                | Call::AccessLog
        )
    }
}

/// The data a call is about.
#[derive(Debug, Clone, Copy)]
pub enum Data<'a> {
    /// The ledger as a whole (Scrub).
    Ledger,
    /// One org of the registry.
    Org,
    Account(&'a Party),
    Record(&'a RecordScope),
}

/// What the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The data as stored, signed bytes included.
    Full,
    /// The item, with every household the reader may not see replaced by its
    /// pseudonym and without the signed bytes.
    Pseudonymised,
    /// A listing leaves the item out (an export sends its leaf hash only).
    Omitted,
    /// The call is refused: PERMISSION_DENIED.
    Denied,
}

/// The one decision: what `reader` gets from `call` about `data`.
pub fn decide(reader: &Reader, call: Call, data: Data<'_>) -> Answer {
    let view = match (call, data) {
        (Call::Scrub, _) => {
            return if reader.role == Role::Administrator {
                Answer::Full
            } else {
                Answer::Denied
            }
        }
        // Who read a household's payments is for auditors and the
        // administrator, within what they may read themselves.
        (Call::AccessLog, _) if !matches!(reader.role, Role::Administrator | Role::Auditor) => {
            return Answer::Denied
        }
        (_, Data::Org) => View::Full,
        (_, Data::Ledger) => View::Hidden,
        (_, Data::Account(party)) => {
            if sees(reader, &party.owner) {
                View::Full
            } else {
                View::Hidden
            }
        }
        (_, Data::Record(scope)) => record_view(reader, scope),
    };
    match (view, call.is_direct(), call) {
        (View::Full, _, _) => Answer::Full,
        (_, true, _) => Answer::Denied,
        (View::Pseudonymised, false, Call::ExportLog) => Answer::Omitted,
        (View::Pseudonymised, false, _) => Answer::Pseudonymised,
        (View::Hidden, false, _) => Answer::Omitted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(id: &str, role: Role, division: &str, parent: Option<&str>) -> Org {
        Org {
            org_id: id.into(),
            name: id.into(),
            role,
            division_code: division.into(),
            parent_org_id: parent.map(Into::into),
            registered_seq: 0,
            key_ids: vec![],
        }
    }

    /// mof (000000) → sichuan (510000) → liangshan (513400) → zhaojue (513431);
    /// mof → yunnan (530000). Audit offices hang under the finance org of
    /// their level.
    struct World {
        orgs: Vec<Org>,
    }

    impl World {
        fn new() -> World {
            use Role::*;
            World {
                orgs: vec![
                    org("mof", Administrator, "000000", None),
                    org("sichuan", Finance, "510000", Some("mof")),
                    org("liangshan", Finance, "513400", Some("sichuan")),
                    org("zhaojue", Finance, "513431", Some("liangshan")),
                    org("zhaojue-agri", Finance, "513431", Some("zhaojue")),
                    org("yunnan", Finance, "530000", Some("mof")),
                    org("cnao", Auditor, "000000", Some("mof")),
                    org("sc-audit", Auditor, "510000", Some("sichuan")),
                    org("zj-audit", Auditor, "513431", Some("zhaojue")),
                    org("yn-audit", Auditor, "530000", Some("yunnan")),
                    // Registered before rules 4 with a division outside its parent's.
                    org("rogue-audit", Auditor, "000000", Some("zhaojue")),
                    org("witness", Witness, "000000", Some("mof")),
                    org("mirror", Mirror, "000000", Some("mof")),
                ],
            }
        }
        fn get(&self, id: &str) -> &Org {
            self.orgs.iter().find(|o| o.org_id == id).unwrap()
        }
        fn ancestors(&self, id: &str) -> Vec<Org> {
            let mut out = vec![];
            let mut at = self.get(id).parent_org_id.clone();
            while let Some(p) = at {
                let parent = self.get(&p).clone();
                at = parent.parent_org_id.clone();
                out.push(parent);
            }
            out
        }
        fn reader(&self, id: &str) -> Reader {
            Reader::new(self.get(id), &self.ancestors(id))
        }
        fn owner(&self, id: &str) -> Owner {
            let mut chain = vec![id.to_string()];
            chain.extend(self.ancestors(id).into_iter().map(|o| o.org_id));
            Owner {
                chain,
                division_code: self.get(id).division_code.clone(),
            }
        }
        fn party(&self, id: &str, household: bool) -> Party {
            Party {
                owner: self.owner(id),
                household,
            }
        }
    }

    #[test]
    fn only_readers_of_everything_learn_what_does_not_exist() {
        let w = World::new();
        let everything: Vec<&str> = ["mof", "cnao", "mirror"].to_vec();
        for org in &w.orgs {
            assert_eq!(
                w.reader(&org.org_id).sees_everything(),
                everything.contains(&org.org_id.as_str()),
                "{}",
                org.org_id
            );
        }
    }

    #[test]
    fn division_prefixes() {
        assert_eq!(division_prefix("000000"), "");
        assert_eq!(division_prefix("510000"), "51");
        assert_eq!(division_prefix("513400"), "5134");
        assert_eq!(division_prefix("513431"), "513431");
        assert_eq!(division_prefix("513431100"), "513431100");
        assert_eq!(division_prefix("513431000000"), "513431");
        assert_eq!(division_prefix("513431100000"), "513431100");
        assert!(division_within("513431", "510000"));
        assert!(division_within("513431100200", "513431"));
        assert!(division_within("530000", "000000"));
        assert!(!division_within("530000", "510000"));
        assert!(!division_within("510000", "513431"));
    }

    const READERS: [&str; 11] = [
        "mof",
        "sichuan",
        "liangshan",
        "zhaojue",
        "zhaojue-agri",
        "yunnan",
        "cnao",
        "sc-audit",
        "zj-audit",
        "yn-audit",
        "rogue-audit",
    ];

    /// The table: every role × call × resource. Rows are readers; each
    /// column is one (call, data) pair; F = Full, P = Pseudonymised,
    /// O = Omitted, D = Denied.
    #[test]
    fn jurisdiction_table() {
        let w = World::new();
        let zj_treasury = w.party("zhaojue", false);
        let zj_household = w.party("zhaojue", true);
        // A transfer from the agriculture bureau's project to a zhaojue household.
        let paid = RecordScope::Accounts {
            signer: w.owner("zhaojue-agri"),
            parties: vec![w.party("zhaojue-agri", false), zj_household.clone()],
        };
        // Sichuan → Yunnan east–west cooperation transfer.
        let cross = RecordScope::Accounts {
            signer: w.owner("sichuan"),
            parties: vec![w.party("sichuan", false), w.party("yunnan", false)],
        };
        let columns: Vec<(Call, Data)> = vec![
            (Call::GetAccount, Data::Account(&zj_treasury)),
            (Call::GetAccount, Data::Account(&zj_household)),
            (Call::HouseholdStatement, Data::Account(&zj_household)),
            (Call::ListAccounts, Data::Account(&zj_household)),
            (Call::GetEntry, Data::Record(&paid)),
            (Call::ListEntries, Data::Record(&paid)),
            (Call::ExportLog, Data::Record(&paid)),
            (Call::TraceForward, Data::Record(&cross)),
            (Call::InclusionProofRecord, Data::Record(&cross)),
            (Call::GetOrg, Data::Org),
            (Call::GetEntry, Data::Record(&RecordScope::Registry)),
            (Call::Scrub, Data::Ledger),
            (Call::AccessLog, Data::Account(&zj_household)),
        ];
        #[rustfmt::skip]
        let expected: [(&str, &str); 13] = [
            ("mof",          "F F F F F F F F F F F F F"),
            ("sichuan",      "F F F F F F F F F F F D D"),
            ("liangshan",    "F F F F F F F O D F F D D"),
            ("zhaojue",      "F F F F F F F O D F F D D"),
            // Its own project paid the household: it sees the payment, not who.
            ("zhaojue-agri", "D D D O D P O O D F F D D"),
            ("yunnan",       "D D D O D O O F F F F D D"),
            ("cnao",         "F F F F F F F F F F F D F"),
            ("sc-audit",     "F F F F F F F F F F F D F"),
            ("zj-audit",     "F F F F F F F O D F F D F"),
            ("yn-audit",     "D D D O D O O F F F F D D"),
            // No jurisdiction at all: its claimed 000000 lies outside its parent's.
            ("rogue-audit",  "D D D O D O O O D F F D D"),
            ("witness",      "D D D O D O O O D F F D D"),
            ("mirror",       "F F F F F F F F F F F D D"),
        ];
        let all: Vec<&str> = READERS
            .iter()
            .copied()
            .chain(["witness", "mirror"])
            .collect();
        assert_eq!(all.len(), expected.len());
        for (id, row) in expected {
            let reader = w.reader(id);
            let got: Vec<&str> = columns
                .iter()
                .map(|(call, data)| match decide(&reader, *call, *data) {
                    Answer::Full => "F",
                    Answer::Pseudonymised => "P",
                    Answer::Omitted => "O",
                    Answer::Denied => "D",
                })
                .collect();
            assert_eq!(got.join(" "), row, "reader {id}");
        }
    }

    /// Household data reaches exactly the owning county, its ancestors,
    /// auditors whose jurisdiction covers it, and mirrors: no listing or
    /// direct call gives anyone else the household in full.
    #[test]
    fn household_reaches_only_its_allowed_set() {
        let w = World::new();
        let household = w.party("zhaojue", true);
        let allowed = [
            "mof",
            "sichuan",
            "liangshan",
            "zhaojue",
            "cnao",
            "sc-audit",
            "zj-audit",
            "mirror",
        ];
        for org in &w.orgs {
            let reader = w.reader(&org.org_id);
            let full = decide(&reader, Call::GetAccount, Data::Account(&household)) == Answer::Full;
            assert_eq!(
                full,
                allowed.contains(&org.org_id.as_str()),
                "{}",
                org.org_id
            );
        }
    }
}
