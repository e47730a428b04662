//! Record kinds that change the registry: genesis, orgs, keys, accounts,
//! library projects, households and the rules version.

use std::collections::BTreeMap;

use super::{Act, Context};
use crate::limits::{
    EVALUATIONS_PER_PROJECT_MAX, HOUSEHOLD_STATUS_CHANGES_MAX, IMPORT_WINDOW_DAYS_MAX,
    ORG_KEYS_MAX, PROGRAMME_RULES_MAX,
};
use crate::model::*;
use crate::money::Fen;
use crate::rules::Rules;
use crate::state::{key, Kv, StateRead, Txn};
use crate::{signing, Code, Error, Fault, Rejection};

pub(super) fn genesis<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    ctx: &Context,
    request: &Request,
    genesis: &Genesis,
) -> Result<Effects, Error> {
    if ctx.seq != 0 || txn.ledger()?.is_some() {
        return Err(Rejection::precondition(
            "genesis",
            "this ledger already has its genesis record",
        )
        .into());
    }
    let root_key = signing::parse_public_key("genesis.root_public_key", &genesis.root_public_key)?;
    signing::parse_public_key("genesis.log_public_key", &genesis.log_public_key)?;
    let key_id = signing::key_id(&root_key);
    if ctx.key_id != key_id {
        return Err(Rejection::unauthenticated(
            "key_id",
            "genesis must be signed by the root org's key",
        )
        .into());
    }
    signing::verify(&root_key, ctx.payload, ctx.signature)?;
    txn.put(
        key::LEDGER.to_vec(),
        &LedgerMeta {
            ledger_id: request.ledger_id.clone(),
            root_org_id: genesis.root_org_id.clone(),
            log_public_key: genesis.log_public_key,
            rules_version: genesis.rules_version,
        },
    );
    txn.put(
        key::named(key::ORG, &genesis.root_org_id),
        &Org {
            org_id: genesis.root_org_id.clone(),
            name: genesis.root_org_name.clone(),
            role: Role::Administrator,
            division_code: genesis.division_code.clone(),
            parent_org_id: None,
            registered_seq: ctx.seq,
            key_ids: vec![key_id.clone()],
        },
    );
    txn.put(
        key::named(key::KEY, &key_id),
        &Key {
            key_id: key_id.clone(),
            org_id: genesis.root_org_id.clone(),
            public_key: root_key,
            added_seq: ctx.seq,
            revoked_seq: None,
            read_only: false,
        },
    );
    Ok(Effects {
        value_day: crate::dates::day_of_ms(ctx.commit_time_ms),
        signer_org_id: genesis.root_org_id.clone(),
        legs: Vec::new(),
        registered_key_id: Some(key_id),
    })
}

/// Registers `public_key` for `org` (a read key when `read_only`),
/// refusing a key already in the ledger.
fn register_key<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    seq: u64,
    org: &mut Org,
    field: &str,
    public_key: &[u8; 32],
    read_only: bool,
) -> Result<String, Error> {
    let public_key = signing::parse_public_key(field, public_key)?;
    let key_id = signing::key_id(&public_key);
    if txn.key(&key_id)?.is_some() {
        return Err(Rejection::exists(
            field,
            format!("this public key is already registered (key {key_id}); generate a new key"),
        )
        .into());
    }
    if org.key_ids.len() >= ORG_KEYS_MAX {
        return Err(Rejection::new(
            Code::ResourceExhausted,
            field,
            format!(
                "org {} already has {ORG_KEYS_MAX} keys, the most one org may register",
                org.org_id
            ),
        )
        .into());
    }
    org.key_ids.push(key_id.clone());
    txn.put(
        key::named(key::KEY, &key_id),
        &Key {
            key_id: key_id.clone(),
            org_id: org.org_id.clone(),
            public_key,
            added_seq: seq,
            revoked_seq: None,
            read_only,
        },
    );
    Ok(key_id)
}

pub(super) fn register_org<K: Kv + ?Sized>(act: &mut Act<K>, r: &RegisterOrg) -> Result<(), Error> {
    let (txn, signer_org, root_org_id) = (&mut *act.txn, &act.org, act.root_org_id);
    if act.rules >= Rules::V6 {
        if !may_register(root_org_id, signer_org, r.role) {
            return Err(Rejection::denied(
                "register_org.role",
                format!(
                    "{} ({}) may not register an org of role {}: {}",
                    signer_org.org_id,
                    signer_org.role.name(),
                    r.role.name(),
                    registrar_rule(root_org_id, signer_org)
                ),
            )
            .into());
        }
    } else if !signer_org.role.handles_money() {
        return Err(Rejection::denied(
            "key_id",
            format!(
                "{} is an {:?} org and may not register orgs",
                signer_org.org_id, signer_org.role
            ),
        )
        .into());
    }
    if act.rules >= Rules::V4 || r.role == Role::Mirror {
        check_new_org_scope(act.rules, root_org_id, signer_org, r)?;
    }
    if txn.org(&r.org_id)?.is_some() {
        return Err(Rejection::exists(
            "register_org.org_id",
            format!("org id {:?} is already registered", r.org_id),
        )
        .into());
    }
    let mut org = Org {
        org_id: r.org_id.clone(),
        name: r.name.clone(),
        role: r.role,
        division_code: r.division_code.clone(),
        parent_org_id: Some(signer_org.org_id.clone()),
        registered_seq: act.seq,
        key_ids: Vec::new(),
    };
    let key_id = register_key(
        txn,
        act.seq,
        &mut org,
        "register_org.public_key",
        &r.public_key,
        false,
    )?;
    txn.put(key::named(key::ORG, &org.org_id), &org);
    act.effects.registered_key_id = Some(key_id);
    Ok(())
}

/// Rules 4: a MIRROR reads the whole log, so only the root org registers
/// one; and a child's division code lies within its parent's, so an org can
/// never give a child (an audit office above all) more jurisdiction than it
/// has itself. Before rules 4 there is no MIRROR role.
fn check_new_org_scope(
    rules: Rules,
    root_org_id: &str,
    parent: &Org,
    r: &RegisterOrg,
) -> Result<(), Rejection> {
    if rules < Rules::V4 {
        if r.role == Role::Mirror {
            return Err(Rejection::invalid(
                "register_org.role",
                "the MIRROR role exists from rules version 4; this ledger runs an older version (upgrade its rules first)",
            ));
        }
        return Ok(());
    }
    if r.role == Role::Mirror && parent.org_id != root_org_id {
        return Err(Rejection::denied(
            "register_org.role",
            format!("only the root org {root_org_id} may register a MIRROR org"),
        ));
    }
    if !crate::access::division_within(&r.division_code, &parent.division_code) {
        return Err(Rejection::denied(
            "register_org.division_code",
            format!(
                "division {} lies outside division {} of the registering org {}",
                r.division_code, parent.division_code, parent.org_id
            ),
        ));
    }
    Ok(())
}

/// Rules 6, separation of duties: whether `registrar` may register an org
/// of `role`. The root org (the ledger's operator) registers any role, so
/// administrators, witnesses, mirrors and the top audit office come from it
/// alone; an audit office registers audit offices (审计署 → 省审计厅 →
/// 县审计局); every other org registers finance orgs. So no finance bureau
/// can make an audit office, which would read who audited it.
pub fn may_register(root_org_id: &str, registrar: &Org, role: Role) -> bool {
    if registrar.org_id == root_org_id {
        return true;
    }
    match registrar.role {
        Role::Auditor => role == Role::Auditor,
        Role::Administrator | Role::Finance => role == Role::Finance,
        Role::Witness | Role::Mirror => false,
    }
}

/// [`may_register`] in words, for `registrar`.
fn registrar_rule(root_org_id: &str, registrar: &Org) -> String {
    match registrar.role {
        Role::Auditor => "an audit office registers audit offices only".into(),
        Role::Administrator | Role::Finance => format!(
            "only the root org {root_org_id} registers ADMINISTRATOR, AUDITOR, WITNESS and MIRROR orgs (an audit office registers audit offices); other orgs register FINANCE orgs"
        ),
        Role::Witness | Role::Mirror => "witnesses and mirrors register no orgs".into(),
    }
}

/// Whether `signer_org` may manage the keys of `target`: its own, or a
/// child's; from rules 6 only a child of a role it may register now (a
/// county keeps no hold on an audit office it registered before).
fn manages<K: Kv + ?Sized>(act: &Act<K>, target: &Org) -> bool {
    let signer_org = &act.org;
    if signer_org.org_id == target.org_id {
        return true;
    }
    if target.parent_org_id.as_deref() != Some(signer_org.org_id.as_str()) {
        return false;
    }
    act.rules < Rules::V6 || may_register(act.root_org_id, signer_org, target.role)
}

pub(super) fn add_key<K: Kv + ?Sized>(act: &mut Act<K>, a: &AddKey) -> Result<(), Error> {
    let mut target = act.txn.org(&a.org_id)?.ok_or_else(|| {
        Rejection::not_found(
            "add_key.org_id",
            format!("org {:?} is not registered", a.org_id),
        )
    })?;
    let managed = manages(act, &target);
    let (txn, signer_org) = (&mut *act.txn, &act.org);
    if !managed {
        return Err(Rejection::denied(
            "add_key.org_id",
            format!(
                "{} may only add keys to itself or to orgs it registered, not to {}",
                signer_org.org_id, target.org_id
            ),
        )
        .into());
    }
    let key_id = register_key(
        txn,
        act.seq,
        &mut target,
        "add_key.public_key",
        &a.public_key,
        // Before rules 6 the field did not exist: old servers ignored it.
        a.read_only && act.rules >= Rules::V6,
    )?;
    txn.put(key::named(key::ORG, &target.org_id), &target);
    act.effects.registered_key_id = Some(key_id);
    Ok(())
}

pub(super) fn revoke_key<K: Kv + ?Sized>(act: &mut Act<K>, r: &RevokeKey) -> Result<(), Error> {
    let mut key = act.txn.key(&r.key_id)?.ok_or_else(|| {
        Rejection::not_found(
            "revoke_key.key_id",
            format!("key {:?} is not registered", r.key_id),
        )
    })?;
    let owner = act
        .txn
        .org(&key.org_id)?
        .ok_or_else(|| Fault::corrupt(format!("derived state lacks org {}", key.org_id)))?;
    let managed = manages(act, &owner);
    let (txn, signer_org) = (&mut *act.txn, &act.org);
    if !managed {
        return Err(Rejection::denied(
            "revoke_key.key_id",
            format!("{} may only revoke its own keys or those of orgs it registered; key {} belongs to {}", signer_org.org_id, key.key_id, owner.org_id),
        ).into());
    }
    if let Some(revoked_seq) = key.revoked_seq {
        return Err(Rejection::precondition(
            "revoke_key.key_id",
            format!(
                "key {} was already revoked by record {revoked_seq}",
                key.key_id
            ),
        )
        .into());
    }
    key.revoked_seq = Some(act.seq);
    txn.put(key::named(key::KEY, &key.key_id), &key);
    Ok(())
}

/// Checks that `org` may hold accounts and that `account_id` is free.
fn new_account<K: Kv + ?Sized>(
    act: &Act<K>,
    field: &str,
    account_id: &str,
    kind: AccountKind,
    name: &str,
) -> Result<Account, Error> {
    let (txn, org) = (&*act.txn, &act.org);
    if !org.role.handles_money() {
        return Err(Rejection::denied(
            "key_id",
            format!(
                "{} is an {:?} org and may not hold accounts",
                org.org_id, org.role
            ),
        )
        .into());
    }
    if txn.account(account_id)?.is_some() {
        return Err(Rejection::exists(
            field,
            format!("account id {account_id:?} is already taken"),
        )
        .into());
    }
    Ok(Account {
        account_id: account_id.to_string(),
        owner_org_id: org.org_id.clone(),
        kind,
        name: name.to_string(),
        programme_code: String::new(),
        household_ref: String::new(),
        division_code: org.division_code.clone(),
        opened_seq: act.seq,
        balances: BTreeMap::new(),
    })
}

pub(super) fn open_account<K: Kv + ?Sized>(act: &mut Act<K>, o: &OpenAccount) -> Result<(), Error> {
    // validate::request refused project and household kinds: those accounts
    // open with their registry entries.
    let mut account = new_account(
        act,
        "open_account.account_id",
        &o.account_id,
        o.kind,
        &o.name,
    )?;
    account.programme_code = o.programme_code.clone();
    act.txn
        .put(key::named(key::ACCOUNT, &account.account_id), &account);
    Ok(())
}

pub(super) fn register_project<K: Kv + ?Sized>(
    act: &mut Act<K>,
    r: &RegisterProject,
) -> Result<(), Error> {
    let account = new_account(
        act,
        "register_project.account_id",
        &r.account_id,
        AccountKind::Project,
        &r.name,
    )?;
    let project = Project {
        account_id: r.account_id.clone(),
        owner_org_id: act.org.org_id.clone(),
        name: r.name.clone(),
        category: r.category.clone(),
        location_code: r.location_code.clone(),
        budget: r.budget,
        performance_targets: r.performance_targets.clone(),
        responsible_unit: r.responsible_unit.clone(),
        fiscal_year: r.fiscal_year,
        registered_seq: act.seq,
        allocated: Fen::ZERO,
        announced_seq: None,
        announcement_document_no: String::new(),
    };
    act.txn
        .put(key::named(key::ACCOUNT, &account.account_id), &account);
    act.txn
        .put(key::named(key::PROJECT, &project.account_id), &project);
    Ok(())
}

pub(super) fn announce_project<K: Kv + ?Sized>(
    act: &mut Act<K>,
    a: &AnnounceProject,
) -> Result<(), Error> {
    let field = "announce_project.account_id";
    let mut project = library_project(act, field, &a.account_id)?;
    if project.owner_org_id != act.org.org_id {
        return Err(act
            .refuse_as_reader(field, &project.owner_org_id, || {
                Rejection::denied(
                    field,
                    format!(
                        "project {} belongs to {}",
                        project.account_id, project.owner_org_id
                    ),
                )
            })?
            .into());
    }
    let txn = &mut *act.txn;
    if let Some(seq) = project.announced_seq {
        return Err(Rejection::precondition(
            field,
            format!(
                "project {} was already announced by record {seq}",
                project.account_id
            ),
        )
        .into());
    }
    project.announced_seq = Some(act.seq);
    project.announcement_document_no = a.document_no.clone();
    txn.put(key::named(key::PROJECT, &project.account_id), &project);
    Ok(())
}

pub(super) fn register_household<K: Kv + ?Sized>(
    act: &mut Act<K>,
    r: &RegisterHousehold,
) -> Result<(), Error> {
    let mut account = new_account(
        act,
        "register_household.account_id",
        &r.account_id,
        AccountKind::Household,
        "建档立卡户",
    )?;
    account.household_ref = r.household_ref.clone();
    let household = Household {
        account_id: r.account_id.clone(),
        owner_org_id: act.org.org_id.clone(),
        household_ref: r.household_ref.clone(),
        village_code: r.village_code.clone(),
        basis: r.basis,
        members: r.members,
        registered_seq: act.seq,
        statuses: Vec::new(),
        monitoring: Vec::new(),
    };
    act.txn
        .put(key::named(key::ACCOUNT, &account.account_id), &account);
    act.txn.put(
        key::named(key::HOUSEHOLD, &household.account_id),
        &household,
    );
    Ok(())
}

/// A household's status from the record's value date on. Signed by the
/// county that registered it; another org is answered as a reader would be.
pub(super) fn set_household_status<K: Kv + ?Sized>(
    act: &mut Act<K>,
    s: &SetHouseholdStatus,
) -> Result<(), Error> {
    let (day, seq) = (act.day, act.seq);
    change_household(
        act,
        "set_household_status.account_id",
        &s.account_id,
        |h| &mut h.statuses,
        (day, s.status, seq),
    )
}

/// Rules 10: a household's monitoring category (防止返贫动态监测) from the
/// record's value date on, by the same county, under the same bound. The
/// day a household was identified may be recorded after it; the day its
/// risk was cleared may not (unless imported from an earlier system):
/// clearing it after the fact would clear a MONITORED_UNPAID finding.
pub(super) fn set_monitoring<K: Kv + ?Sized>(
    act: &mut Act<K>,
    m: &SetMonitoring,
) -> Result<(), Error> {
    let backdated = act.day < act.commit_day && !act.imported;
    if backdated && m.category == MonitoringCategory::NotMonitored {
        return Err(Rejection::invalid(
            "value_date",
            "a household's risk is cleared on the day it is recorded: only the day it came under monitoring may be recorded after it",
        )
        .into());
    }
    let (day, seq) = (act.day, act.seq);
    change_household(
        act,
        "set_monitoring.account_id",
        &m.account_id,
        |h| &mut h.monitoring,
        (day, m.category, seq),
    )
}

/// Appends `change` to the history `history` picks out of household
/// `account_id`, which the signer must have registered (another org is
/// answered as a reader would be); a history holds at most
/// [`HOUSEHOLD_STATUS_CHANGES_MAX`] changes.
fn change_household<K: Kv + ?Sized, T>(
    act: &mut Act<K>,
    field: &str,
    account_id: &str,
    history: impl FnOnce(&mut Household) -> &mut Vec<T>,
    change: T,
) -> Result<(), Error> {
    let Some(mut household) = act.txn.household(account_id)? else {
        let why = format!("{account_id:?} is not a registered household");
        return Err(act.absent(field, why)?.into());
    };
    if household.owner_org_id != act.org.org_id {
        return Err(act
            .refuse_as_reader(field, &household.owner_org_id, || {
                Rejection::denied(
                    field,
                    format!(
                        "household {} is registered with {}; only that county may change its status",
                        household.account_id, household.owner_org_id
                    ),
                )
            })?
            .into());
    }
    let changes = history(&mut household);
    if changes.len() >= HOUSEHOLD_STATUS_CHANGES_MAX {
        return Err(Rejection::new(
            Code::ResourceExhausted,
            field,
            format!(
                "household {account_id} already has {HOUSEHOLD_STATUS_CHANGES_MAX} changes of this kind"
            ),
        )
        .into());
    }
    changes.push(change);
    act.txn.put(
        key::named(key::HOUSEHOLD, &household.account_id),
        &household,
    );
    Ok(())
}

/// Moves the ledger to a newer rules version from the next record on. Only
/// the root org, which governs the ledger, may; versions never go back.
pub(super) fn upgrade_rules<K: Kv + ?Sized>(
    act: &mut Act<K>,
    u: &UpgradeRules,
) -> Result<(), Error> {
    let field = "upgrade_rules.rules_version";
    let mut ledger = act
        .txn
        .ledger()?
        .ok_or_else(|| Fault::corrupt("this ledger has no genesis record yet"))?;
    if act.org.org_id != ledger.root_org_id || act.org.role != Role::Administrator {
        return Err(Rejection::denied(
            "key_id",
            format!(
                "only the root org {} may change the ledger's rules; {} may not",
                ledger.root_org_id, act.org.org_id
            ),
        )
        .into());
    }
    let current = Rules::of_ledger(&ledger)?;
    let wanted = Rules::of_version(u.rules_version).ok_or_else(|| {
        Rejection::invalid(
            field,
            format!(
                "rules version {} is not known to this server (it knows 1 to {})",
                u.rules_version,
                Rules::NEWEST.version()
            ),
        )
    })?;
    if wanted <= current {
        return Err(Rejection::precondition(
            field,
            format!(
                "the ledger already runs rules version {}; rules only move forward",
                current.version()
            ),
        )
        .into());
    }
    ledger.rules_version = wanted.version();
    act.txn.put(key::LEDGER.to_vec(), &ledger);
    Ok(())
}

/// A programme's standards from the record's value date on, set by an
/// administrator. Checked by reports only: no posting is refused for them.
pub(super) fn set_programme_rules<K: Kv + ?Sized>(
    act: &mut Act<K>,
    r: &SetProgrammeRules,
) -> Result<(), Error> {
    let field = "set_programme_rules.programme_code";
    if act.org.role != Role::Administrator {
        return Err(Rejection::denied(
            "key_id",
            format!(
                "programme rules are set by an ADMINISTRATOR org; {} is {:?}",
                act.org.org_id, act.org.role
            ),
        )
        .into());
    }
    if !count_one_more(
        act.txn,
        key::PROGRAMME_RULES,
        &r.programme_code,
        PROGRAMME_RULES_MAX,
    )? {
        return Err(Rejection::new(
            Code::ResourceExhausted,
            field,
            format!(
                "programme {} already has {PROGRAMME_RULES_MAX} rule records, the most one may have",
                r.programme_code
            ),
        )
        .into());
    }
    let rules = ProgrammeRules {
        seq: act.seq,
        effective_day: act.day,
        programme_code: r.programme_code.clone(),
        household_max: r.household_max,
        person_max: r.person_max,
        county_share_min_percent: r.county_share_min_percent,
        idle_days_max: r.idle_days_max,
        announcement_required: r.announcement_required,
        quota_issue_days_max: r.quota_issue_days_max,
        cash_follow_days_max: r.cash_follow_days_max,
        monitored_only: r.monitored_only,
    };
    act.txn.put(
        key::named_seq(key::PROGRAMME_RULES, &r.programme_code, act.seq),
        &rules,
    );
    Ok(())
}

/// A project's performance evaluation, by a finance or administrator org
/// (from rules 6 also an audit office) whose division contains the project
/// owner's. One the owner signs is a self-evaluation (自评), kept as such.
pub(super) fn evaluate_project<K: Kv + ?Sized>(
    act: &mut Act<K>,
    e: &EvaluateProject,
) -> Result<(), Error> {
    let field = "evaluate_project.account_id";
    let project = library_project(act, field, &e.account_id)?;
    let owner = act.txn.org(&project.owner_org_id)?.ok_or_else(|| {
        Fault::corrupt(format!(
            "derived state lacks org {}, which owns project {}",
            project.owner_org_id, project.account_id
        ))
    })?;
    let evaluator = &act.org;
    // From rules 6 an audit office evaluates within its jurisdiction too.
    let evaluates = match evaluator.role {
        Role::Finance | Role::Administrator => true,
        Role::Auditor => act.rules >= Rules::V6 && act.reader()?.jurisdiction.is_some(),
        Role::Witness | Role::Mirror => false,
    };
    // From rules 6 the evaluator must also read the project: a division
    // that contains it is not enough for a finance org outside its chain.
    let reads = act.rules < Rules::V6 || act.reads(&owner.org_id)?;
    let evaluator = &act.org;
    if !evaluates
        || !reads
        || !crate::access::division_within(&owner.division_code, &evaluator.division_code)
    {
        return Err(act
            .refuse_as_reader(field, &owner.org_id, || {
                Rejection::denied(
                    field,
                    format!(
                        "project {} of {} is evaluated by a FINANCE or ADMINISTRATOR org (from rules 6 also an audit office) whose division contains {}; {} may not",
                        project.account_id, owner.org_id, owner.division_code, evaluator.org_id
                    ),
                )
            })?
            .into());
    }
    if e.targets_met.len() != project.performance_targets.len() {
        return Err(Rejection::invalid(
            "evaluate_project.targets_met",
            format!(
                "project {} has {} performance targets; say of each whether it was met",
                project.account_id,
                project.performance_targets.len()
            ),
        )
        .into());
    }
    if !count_one_more(
        act.txn,
        key::EVALUATION,
        &e.account_id,
        EVALUATIONS_PER_PROJECT_MAX,
    )? {
        return Err(Rejection::new(
            Code::ResourceExhausted,
            field,
            format!(
                "project {} already has {EVALUATIONS_PER_PROJECT_MAX} evaluations, the most one may have",
                project.account_id
            ),
        )
        .into());
    }
    let evaluation = Evaluation {
        seq: act.seq,
        day: act.day,
        score: e.score,
        targets_met: e.targets_met.clone(),
        by_owner: project.owner_org_id == act.org.org_id,
    };
    act.txn.put(
        key::named_seq(key::EVALUATION, &e.account_id, act.seq),
        &evaluation,
    );
    Ok(())
}

/// Opens, moves or closes an org's import window. The root org declares
/// one for any org, a parent for its children; never an org for itself
/// (unless it is the root), so no bureau can let itself back-date.
pub(super) fn declare_import_window<K: Kv + ?Sized>(
    act: &mut Act<K>,
    w: &DeclareImportWindow,
) -> Result<(), Error> {
    let field = "declare_import_window.org_id";
    let target = act.txn.org(&w.org_id)?.ok_or_else(|| {
        Rejection::not_found(field, format!("org {:?} is not registered", w.org_id))
    })?;
    let root_org_id = act.root_org_id;
    let parent = target.parent_org_id.as_deref() == Some(act.org.org_id.as_str());
    if act.org.org_id != root_org_id && !parent {
        return Err(Rejection::denied(
            field,
            format!(
                "an import window for {} is declared by the root org {root_org_id} or by {}'s parent; {} may not",
                target.org_id, target.org_id, act.org.org_id
            ),
        )
        .into());
    }
    let last_day = act.commit_day.saturating_add(IMPORT_WINDOW_DAYS_MAX);
    if w.until_day > last_day {
        return Err(Rejection::invalid(
            "declare_import_window.until_date",
            format!(
                "an import window reaches at most {IMPORT_WINDOW_DAYS_MAX} days ahead, to {}",
                crate::dates::format_date(last_day)
            ),
        )
        .into());
    }
    let window = ImportWindow {
        seq: act.seq,
        until_day: w.until_day,
    };
    act.txn
        .put(key::named(key::IMPORT_WINDOW, &target.org_id), &window);
    Ok(())
}

/// Pairs two orgs for money sent sideways. Signed by an ancestor of both
/// (the root org is one of every org), so neither side pairs itself.
pub(super) fn declare_pairing<K: Kv + ?Sized>(
    act: &mut Act<K>,
    p: &DeclarePairing,
) -> Result<(), Error> {
    let mut chains = Vec::with_capacity(2);
    for (field, org_id) in [
        ("declare_pairing.from_org_id", &p.from_org_id),
        ("declare_pairing.to_org_id", &p.to_org_id),
    ] {
        if act.txn.org(org_id)?.is_none() {
            return Err(
                Rejection::not_found(field, format!("org {org_id:?} is not registered")).into(),
            );
        }
        chains.push(act.txn.org_chain(org_id)?);
    }
    let signer = &act.org.org_id;
    let above = |chain: &Vec<Org>| chain.iter().skip(1).any(|o| &o.org_id == signer);
    if !chains.iter().all(above) {
        return Err(Rejection::denied(
            "key_id",
            format!(
                "a pairing of {} and {} is declared by an org above both (their common superior, or the root org); {signer} is not",
                p.from_org_id, p.to_org_id
            ),
        )
        .into());
    }
    act.txn
        .put(key::pairing(&p.from_org_id, &p.to_org_id), &act.seq);
    Ok(())
}

/// The library project `account_id` a record names: absent is refused as
/// [`Act::absent`] says.
fn library_project<K: Kv + ?Sized>(
    act: &Act<K>,
    field: &str,
    account_id: &str,
) -> Result<Project, Error> {
    match act.txn.project(account_id)? {
        Some(project) => Ok(project),
        None => {
            let why = format!("project {account_id:?} is not in any project library");
            Err(act.absent(field, why)?.into())
        }
    }
}

/// Counts one more record under `prefix` ‖ `name`, unless `max` are there
/// already (then false, and nothing is written).
fn count_one_more<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    prefix: u8,
    name: &str,
    max: usize,
) -> Result<bool, Fault> {
    let count_key = key::count(prefix, name);
    let count: u32 = txn.read(&count_key)?.unwrap_or(0);
    if count as usize >= max {
        return Ok(false);
    }
    txn.put(count_key, &(count + 1));
    Ok(true)
}
