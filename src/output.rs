//! How the CLI prints answers: text for people (amounts as ¥1,234.56), JSON
//! for scripts (amounts in integer fen, never floats).

use fundtrail_api::pb;
use fundtrail_core::money::Fen;
use serde_json::{json, Value};

/// An amount in fen as people read it: ¥1,234.56.
pub fn yuan(fen: u64) -> String {
    Fen(fen).to_string()
}

/// The exact sum of amounts in fen (u128: no sum of u64 amounts overflows it).
pub fn total_fen(amounts: impl IntoIterator<Item = u64>) -> u128 {
    amounts.into_iter().map(u128::from).sum()
}

/// Adds fen to a u64 total the way the API carries it, refusing to wrap.
pub fn add_fen(total: &mut u64, amount_fen: u64) -> anyhow::Result<()> {
    *total = total
        .checked_add(amount_fen)
        .ok_or_else(|| anyhow::anyhow!("a total passed the largest amount an answer carries"))?;
    Ok(())
}

/// Unix milliseconds as an ISO 8601 UTC time.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = fundtrail_core::dates::civil_from_days(secs.div_euclid(86_400));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An enum value's name without its type prefix: "PROGRAMME", "FINANCE".
fn short(name: &str) -> &str {
    name.trim_start_matches("ACCOUNT_KIND_")
        .trim_start_matches("ORG_ROLE_")
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn sources_json(sources: &[pb::SourceAmount]) -> Value {
    sources
        .iter()
        .map(|s| json!({"source_seq": s.source_seq, "amount_fen": s.amount_fen}))
        .collect()
}

fn effects_json(effects: &Option<pb::Effects>) -> Value {
    let Some(effects) = effects else {
        return Value::Null;
    };
    json!({
        "signer_org_id": effects.signer_org_id,
        "registered_key_id": effects.registered_key_id,
        "legs": effects.legs.iter().map(|l| json!({
            "from_account_id": l.from_account_id,
            "to_account_id": l.to_account_id,
            "source_seq": l.source_seq,
            "amount_fen": l.amount_fen,
            "from_arrival_seq": l.from_arrival_seq,
        })).collect::<Value>(),
    })
}

fn body_json(body: &Option<pb::request::Body>) -> Value {
    use pb::request::Body as B;
    match body {
        None => Value::Null,
        Some(B::Genesis(g)) => {
            json!({"root_org_id": g.root_org_id, "root_org_name": g.root_org_name, "division_code": g.division_code,
            "root_public_key": hex::encode(&g.root_public_key), "log_public_key": hex::encode(&g.log_public_key),
            "rules_version": g.rules_version.max(1)})
        }
        Some(B::RegisterOrg(r)) => {
            json!({"org_id": r.org_id, "name": r.name, "role": r.role().as_str_name(),
            "division_code": r.division_code, "public_key": hex::encode(&r.public_key)})
        }
        Some(B::AddKey(a)) => {
            json!({"org_id": a.org_id, "public_key": hex::encode(&a.public_key), "read_only": a.read_only})
        }
        Some(B::RevokeKey(r)) => json!({"key_id": r.key_id, "reason": r.reason}),
        Some(B::OpenAccount(o)) => {
            json!({"account_id": o.account_id, "kind": o.kind().as_str_name(), "name": o.name,
            "programme_code": o.programme_code, "household_ref": o.household_ref})
        }
        Some(B::Appropriation(a)) => {
            json!({"account_id": a.account_id, "amount_fen": a.amount_fen, "programme_code": a.programme_code,
            "fiscal_year": a.fiscal_year, "document_no": a.document_no, "purpose": a.purpose, "memo": a.memo})
        }
        Some(B::Transfer(t)) => {
            json!({"from_account_id": t.from_account_id, "to_account_id": t.to_account_id, "amount_fen": t.amount_fen,
            "sources": sources_json(&t.sources), "document_no": t.document_no, "purpose": t.purpose, "memo": t.memo})
        }
        Some(B::Disbursement(d)) => {
            json!({"from_account_id": d.from_account_id, "household_account_id": d.household_account_id,
            "amount_fen": d.amount_fen, "sources": sources_json(&d.sources), "programme_code": d.programme_code,
            "period": d.period, "document_no": d.document_no, "memo": d.memo})
        }
        Some(B::Reversal(r)) => {
            json!({"target_seq": r.target_seq, "document_no": r.document_no, "reason": r.reason})
        }
        Some(B::Consolidation(c)) => {
            json!({"from_account_id": c.from_account_id, "pool_account_id": c.pool_account_id,
            "amount_fen": c.amount_fen, "sources": sources_json(&c.sources), "plan_document_no": c.plan_document_no, "memo": c.memo})
        }
        Some(B::RegisterProject(r)) => {
            json!({"account_id": r.account_id, "name": r.name, "category": r.category,
            "location_code": r.location_code, "budget_fen": r.budget_fen, "performance_targets": r.performance_targets,
            "responsible_unit": r.responsible_unit, "fiscal_year": r.fiscal_year})
        }
        Some(B::AnnounceProject(a)) => {
            json!({"account_id": a.account_id, "document_no": a.document_no, "memo": a.memo})
        }
        Some(B::Allocation(a)) => {
            json!({"pool_account_id": a.pool_account_id, "project_account_id": a.project_account_id,
            "amount_fen": a.amount_fen, "sources": sources_json(&a.sources), "document_no": a.document_no, "memo": a.memo})
        }
        Some(B::RegisterHousehold(r)) => {
            json!({"account_id": r.account_id, "household_ref": r.household_ref,
            "village_code": r.village_code, "basis": r.basis().as_str_name(), "members": r.members})
        }
        Some(B::SetHouseholdStatus(h)) => {
            json!({"account_id": h.account_id, "status": h.status().as_str_name(),
            "document_no": h.document_no, "reason": h.reason})
        }
        Some(B::SetMonitoring(m)) => {
            json!({"account_id": m.account_id, "category": m.category().as_str_name(),
            "document_no": m.document_no, "reason": m.reason})
        }
        Some(B::Return(r)) => {
            json!({"from_account_id": r.from_account_id, "to_account_id": r.to_account_id,
            "amount_fen": r.amount_fen, "sources": sources_json(&r.sources), "kind": r.kind().as_str_name(),
            "document_no": r.document_no, "reason": r.reason,
            "disbursement_seq": r.disbursement_seq, "bank_reference": r.bank_reference})
        }
        Some(B::UpgradeRules(u)) => {
            json!({"rules_version": u.rules_version, "document_no": u.document_no})
        }
        Some(B::ConfirmCredit(c)) => {
            json!({"disbursement_seq": c.disbursement_seq, "household_account_id": c.household_account_id,
            "bank_reference": c.bank_reference, "document_no": c.document_no})
        }
        Some(B::SetProgrammeRules(r)) => {
            json!({"programme_code": r.programme_code, "document_no": r.document_no,
            "household_max_fen": r.household_max_fen, "person_max_fen": r.person_max_fen,
            "county_share_min_percent": r.county_share_min_percent, "idle_days_max": r.idle_days_max,
            "announcement_required": r.announcement_required})
        }
        Some(B::EvaluateProject(e)) => {
            json!({"account_id": e.account_id, "document_no": e.document_no, "score": e.score,
            "targets_met": e.targets_met})
        }
        Some(B::DeclareImportWindow(w)) => {
            json!({"org_id": w.org_id, "until_date": w.until_date, "document_no": w.document_no})
        }
        Some(B::DeclarePairing(p)) => {
            json!({"from_org_id": p.from_org_id, "to_org_id": p.to_org_id, "document_no": p.document_no})
        }
        Some(B::IssueQuota(q)) => {
            json!({"to_org_id": q.to_org_id, "from_quota_seq": q.from_quota_seq, "amount_fen": q.amount_fen,
            "programme_code": q.programme_code, "fiscal_year": q.fiscal_year, "document_no": q.document_no,
            "direct": q.direct, "project_code": q.project_code})
        }
    }
}

fn entry_json(entry: &pb::Entry) -> Value {
    let request = entry.request.clone().unwrap_or_default();
    let body = entry.body.clone().unwrap_or_default();
    json!({
        "seq": entry.seq,
        "commit_time_ms": entry.commit_time_ms,
        "commit_time": utc(entry.commit_time_ms),
        "kind": fundtrail_api::body_kind(&body.body),
        "key_id": request.key_id,
        "signature": hex::encode(&request.signature),
        "payload": hex::encode(&request.payload),
        "ledger_id": body.ledger_id,
        "idempotency_key": body.idempotency_key,
        "signed_at_ms": body.signed_at_ms,
        "body": body_json(&body.body),
        "effects": effects_json(&entry.effects),
        "value_date": entry.effects.as_ref().map(|e| fundtrail_core::dates::format_date(e.value_day)),
        "imported": body.imported,
        "reversed_by_seq": entry.reversed_by_seq,
    })
}

fn entry_text(entry: &pb::Entry) -> String {
    let request = entry.request.clone().unwrap_or_default();
    let body = entry.body.clone().unwrap_or_default();
    let effects = entry.effects.clone().unwrap_or_default();
    let mut out = format!(
        "#{:<6} {}  {:<13} signed by {} (key {})",
        entry.seq,
        utc(entry.commit_time_ms),
        fundtrail_api::body_kind(&body.body),
        effects.signer_org_id,
        request.key_id
    );
    if body.body.as_ref().is_some_and(|_| !effects.legs.is_empty()) {
        let imported = if body.imported { ", imported" } else { "" };
        out.push_str(&format!(
            "  (value date {}{imported})",
            fundtrail_core::dates::format_date(effects.value_day)
        ));
    }
    if let Some(by) = entry.reversed_by_seq {
        out.push_str(&format!("  [REVERSED by #{by}]"));
    }
    use pb::request::Body as B;
    let detail = match &body.body {
        Some(B::Genesis(g)) => format!(
            "ledger {} root org {} {}",
            body.ledger_id, g.root_org_id, g.root_org_name
        ),
        Some(B::RegisterOrg(r)) => format!(
            "org {} {} ({}, {})",
            r.org_id,
            r.name,
            short(r.role().as_str_name()),
            r.division_code
        ),
        Some(B::AddKey(a)) => format!(
            "{} {} for org {}",
            if a.read_only { "read key" } else { "key" },
            effects.registered_key_id,
            a.org_id
        ),
        Some(B::RevokeKey(r)) => format!("key {} revoked: {}", r.key_id, r.reason),
        Some(B::OpenAccount(o)) => format!(
            "account {} {} ({})",
            o.account_id,
            o.name,
            o.kind().as_str_name()
        ),
        Some(B::Appropriation(a)) => format!(
            "{} into {}  programme {} FY{}  文号 {}  {}",
            yuan(a.amount_fen),
            a.account_id,
            a.programme_code,
            a.fiscal_year,
            a.document_no,
            a.purpose
        ),
        Some(B::Transfer(t)) => format!(
            "{} {} → {}  文号 {}  {}",
            yuan(t.amount_fen),
            t.from_account_id,
            t.to_account_id,
            t.document_no,
            t.purpose
        ),
        Some(B::Disbursement(d)) => format!(
            "{} {} → household {}  programme {} period {}  文号 {}",
            yuan(d.amount_fen),
            d.from_account_id,
            d.household_account_id,
            d.programme_code,
            d.period,
            d.document_no
        ),
        Some(B::Reversal(r)) => format!(
            "reverses #{}  文号 {}  {}",
            r.target_seq, r.document_no, r.reason
        ),
        Some(B::Consolidation(c)) => format!(
            "{} {} → pool {}  整合方案 {}",
            yuan(c.amount_fen),
            c.from_account_id,
            c.pool_account_id,
            c.plan_document_no
        ),
        Some(B::RegisterProject(r)) => format!(
            "project {} {} ({}, {}) budget {}  绩效目标: {}",
            r.account_id,
            r.name,
            r.category,
            r.location_code,
            yuan(r.budget_fen),
            r.performance_targets.join("; ")
        ),
        Some(B::AnnounceProject(a)) => {
            format!("project {} announced  文号 {}", a.account_id, a.document_no)
        }
        Some(B::Allocation(a)) => format!(
            "{} pool {} → project {}  文号 {}",
            yuan(a.amount_fen),
            a.pool_account_id,
            a.project_account_id,
            a.document_no
        ),
        Some(B::RegisterHousehold(r)) => format!(
            "household {} (registry {}, village {}, {} members)",
            r.account_id, r.household_ref, r.village_code, r.members
        ),
        Some(B::SetHouseholdStatus(h)) => format!(
            "household {} → {}  文号 {}  {}",
            h.account_id,
            h.status()
                .as_str_name()
                .trim_start_matches("HOUSEHOLD_STATUS_"),
            h.document_no,
            h.reason
        ),
        Some(B::SetMonitoring(m)) => format!(
            "household {} monitored as {}  文号 {}  {}",
            m.account_id,
            m.category()
                .as_str_name()
                .trim_start_matches("MONITORING_CATEGORY_"),
            m.document_no,
            m.reason
        ),
        Some(B::Return(r)) => format!(
            "{} {} → {} returned ({})  文号 {}  {}",
            yuan(r.amount_fen),
            r.from_account_id,
            r.to_account_id,
            r.kind().as_str_name().trim_start_matches("RETURN_KIND_"),
            r.document_no,
            r.reason
        ),
        Some(B::UpgradeRules(u)) => format!(
            "the ledger runs rules version {} from the next record on  文号 {}",
            u.rules_version, u.document_no
        ),
        Some(B::ConfirmCredit(c)) => format!(
            "the bank credited payment #{} to {}  银行流水号 {}  文号 {}",
            c.disbursement_seq, c.household_account_id, c.bank_reference, c.document_no
        ),
        Some(B::SetProgrammeRules(r)) => format!(
            "rules of programme {}: per household {}, per person {}, county share ≥ {}%, idle ≤ {} days, announcement {}  文号 {}",
            r.programme_code,
            yuan(r.household_max_fen),
            yuan(r.person_max_fen),
            r.county_share_min_percent,
            r.idle_days_max,
            if r.announcement_required { "required" } else { "not required" },
            r.document_no
        ),
        Some(B::EvaluateProject(e)) => format!(
            "project {} evaluated: score {}, targets met {}/{}  文号 {}",
            e.account_id,
            e.score,
            e.targets_met.iter().filter(|m| **m).count(),
            e.targets_met.len(),
            e.document_no
        ),
        Some(B::DeclareImportWindow(w)) => format!(
            "{} may post imported records (past value dates) until {}  文号 {}",
            w.org_id, w.until_date, w.document_no
        ),
        Some(B::DeclarePairing(p)) => format!(
            "{} may send money to {} (对口帮扶)  文号 {}",
            p.from_org_id, p.to_org_id, p.document_no
        ),
        Some(B::IssueQuota(q)) => format!(
            "quota {} to {}{}  programme {} FY{}{}{}  文号 {}",
            yuan(q.amount_fen),
            q.to_org_id,
            q.from_quota_seq
                .map(|s| format!(" from quota {s}"))
                .unwrap_or_default(),
            q.programme_code,
            q.fiscal_year,
            if q.direct { "  直达资金" } else { "" },
            if q.project_code.is_empty() {
                String::new()
            } else {
                format!("  项目代码 {}", q.project_code)
            },
            q.document_no
        ),
        None => String::new(),
    };
    out.push_str(&format!("\n        {detail}"));
    for leg in &effects.legs {
        out.push_str(&format!("\n      {}", leg_line(leg)));
    }
    out
}

/// One leg: amount, source, from → to.
fn leg_line(leg: &pb::Leg) -> String {
    let from = if leg.from_account_id.is_empty() {
        "(appropriated)"
    } else {
        &leg.from_account_id
    };
    let to = if leg.to_account_id.is_empty() {
        "(withdrawn)"
    } else {
        &leg.to_account_id
    };
    format!(
        "{:>18}  source #{:<5} {from} → {to}",
        yuan(leg.amount_fen),
        leg.source_seq
    )
}

pub fn entry(entry: &pb::Entry, json: bool) {
    if json {
        print_json(&entry_json(entry));
    } else {
        println!("{}", entry_text(entry));
    }
}

/// `fundtrail tail`: prints each event of Query.Watch as it comes, one line
/// each (JSON Lines with --json), and resumes after a disconnect from the
/// seq after the last entry printed. `from_seq` u64::MAX means "from now".
pub async fn tail(
    server: &crate::remote::Server,
    mut request: pb::WatchRequest,
) -> anyhow::Result<()> {
    let mut client = crate::remote::connect(server).await?;
    if request.from_seq == u64::MAX {
        request.from_seq = client
            .query
            .get_ledger(pb::GetLedgerRequest {})
            .await
            .map_err(crate::remote::status)?
            .into_inner()
            .record_count;
    }
    loop {
        let mut stream = match client.query.watch(request.clone()).await {
            Ok(response) => response.into_inner(),
            Err(status) => return Err(crate::remote::status(status)),
        };
        loop {
            let event = match stream.message().await {
                Ok(Some(event)) => event,
                Ok(None) => return Ok(()),
                // Fell behind, or the connection broke: resume where it was.
                Err(status)
                    if status.code() == tonic::Code::ResourceExhausted
                        || status.code() == tonic::Code::Unavailable =>
                {
                    eprintln!(
                        "tail: {}; resuming from record {}",
                        status.message(),
                        request.from_seq
                    );
                    break;
                }
                Err(status) => return Err(crate::remote::status(status)),
            };
            match event.event {
                Some(pb::watch_event::Event::Entry(entry)) => {
                    request.from_seq = entry.seq + 1;
                    if server.json {
                        println!("{}", json!({"entry": entry_json(&entry)}));
                    } else {
                        println!("{}", entry_text(&entry));
                    }
                }
                Some(pb::watch_event::Event::Checkpoint(checkpoint)) => {
                    if server.json {
                        println!(
                            "{}",
                            json!({"checkpoint": {"tree_size": checkpoint.tree_size, "note": checkpoint.note}})
                        );
                    } else {
                        println!("checkpoint: {} records signed", checkpoint.tree_size);
                    }
                }
                None => {}
            }
        }
    }
}

pub fn entries(page: &pb::ListEntriesResponse, json: bool) {
    if json {
        print_json(&json!({
            "entries": page.entries.iter().map(entry_json).collect::<Value>(),
            "next_page_token": page.next_page_token,
        }));
        return;
    }
    for entry in &page.entries {
        println!("{}", entry_text(entry));
    }
    if !page.next_page_token.is_empty() {
        println!("(more: --page-token {})", page.next_page_token);
    }
}

fn account_json(account: &pb::Account) -> Value {
    json!({
        "account_id": account.account_id,
        "owner_org_id": account.owner_org_id,
        "kind": account.kind().as_str_name(),
        "name": account.name,
        "programme_code": account.programme_code,
        "household_ref": account.household_ref,
        "division_code": account.division_code,
        "opened_seq": account.opened_seq,
        "balance_fen": account.balance_fen,
        "balances": account.balances.iter().map(|b| json!({
            "source_seq": b.source_seq, "amount_fen": b.amount_fen, "programme_code": b.programme_code,
            "document_no": b.document_no, "fiscal_year": b.fiscal_year,
        })).collect::<Value>(),
    })
}

pub fn account(account: &pb::Account, json: bool) {
    if json {
        print_json(&account_json(account));
        return;
    }
    println!(
        "{}  {}  ({}, owner {}, division {})",
        account.account_id,
        account.name,
        short(account.kind().as_str_name()),
        account.owner_org_id,
        account.division_code
    );
    println!("balance {}", yuan(account.balance_fen));
    for b in &account.balances {
        println!(
            "  {:>18}  source #{:<5} {} FY{} 文号 {}",
            yuan(b.amount_fen),
            b.source_seq,
            b.programme_code,
            b.fiscal_year,
            b.document_no
        );
    }
}

pub fn accounts(page: &pb::ListAccountsResponse, json: bool) {
    if json {
        print_json(&json!({
            "accounts": page.accounts.iter().map(account_json).collect::<Value>(),
            "next_page_token": page.next_page_token,
        }));
        return;
    }
    for a in &page.accounts {
        println!(
            "{:<32} {:>20}  {:<24} {} ({})",
            a.account_id,
            yuan(a.balance_fen),
            short(a.kind().as_str_name()),
            a.name,
            a.owner_org_id
        );
    }
    if !page.next_page_token.is_empty() {
        println!("(more: --page-token {})", page.next_page_token);
    }
}

pub fn org(org: &pb::Org, json: bool) {
    if json {
        print_json(&json!({
            "org_id": org.org_id, "name": org.name, "role": org.role().as_str_name(), "division_code": org.division_code,
            "parent_org_id": org.parent_org_id, "registered_seq": org.registered_seq,
            "keys": org.keys.iter().map(|k| json!({"key_id": k.key_id, "public_key": hex::encode(&k.public_key),
                "added_seq": k.added_seq, "revoked_seq": k.revoked_seq})).collect::<Value>(),
        }));
        return;
    }
    println!(
        "{}  {}  ({}, division {}, parent {}, registered #{})",
        org.org_id,
        org.name,
        short(org.role().as_str_name()),
        org.division_code,
        org.parent_org_id,
        org.registered_seq
    );
    for k in &org.keys {
        let state = match k.revoked_seq {
            Some(seq) => format!("revoked at #{seq}"),
            None => "active".into(),
        };
        println!("  key {}  added #{}  {state}", k.key_id, k.added_seq);
    }
}

fn quota_json(q: &pb::Quota) -> Value {
    json!({"seq": q.seq, "holder_org_id": q.holder_org_id, "parent_seq": q.parent_seq, "root_seq": q.root_seq,
        "programme_code": q.programme_code, "fiscal_year": q.fiscal_year, "document_no": q.document_no,
        "direct": q.direct, "project_code": q.project_code, "amount_fen": q.amount_fen,
        "issued_down_fen": q.issued_down_fen, "held_fen": q.held_fen,
        "cash_received_fen": q.cash_received_fen, "paid_fen": q.paid_fen,
        "issued_date": fundtrail_core::dates::format_date(q.issued_day)})
}

fn quota_line(q: &pb::Quota) -> String {
    format!(
        "#{}  {}  {}  programme {} FY{}{}  issued down {}  held {}  文号 {}",
        q.seq,
        q.holder_org_id,
        yuan(q.amount_fen),
        q.programme_code,
        q.fiscal_year,
        if q.direct { "  直达资金" } else { "" },
        yuan(q.issued_down_fen),
        yuan(q.held_fen),
        q.document_no
    )
}

/// A quota, then each quota above it up to the top.
pub fn quota_lineage(lineage: &pb::QuotaLineage, json: bool) {
    let quota = lineage.quota.clone().unwrap_or_default();
    if json {
        print_json(&json!({
            "quota": quota_json(&quota),
            "ancestors": lineage.ancestors.iter().map(quota_json).collect::<Value>(),
        }));
        return;
    }
    println!("{}", quota_line(&quota));
    if !quota.project_code.is_empty() {
        println!("  项目代码 {}", quota.project_code);
    }
    for (depth, q) in lineage.ancestors.iter().enumerate() {
        println!("{}↑ {}", "  ".repeat(depth + 1), quota_line(q));
    }
}

pub fn quotas(page: &pb::ListQuotasResponse, json: bool) {
    if json {
        print_json(&json!({
            "quotas": page.quotas.iter().map(quota_json).collect::<Value>(),
            "next_page_token": page.next_page_token,
        }));
        return;
    }
    for q in &page.quotas {
        println!("{}", quota_line(q));
    }
    if !page.next_page_token.is_empty() {
        println!("(more: --page-token {})", page.next_page_token);
    }
}

pub fn progress(progress: &pb::SpendingProgressResponse, json: bool) {
    if json {
        print_json(&json!({"rows": progress.rows.iter().map(|r| json!({
            "programme_code": r.programme_code, "month": r.month,
            "quota_received_fen": r.quota_received_fen, "quota_issued_down_fen": r.quota_issued_down_fen,
            "cash_received_fen": r.cash_received_fen, "paid_fen": r.paid_fen,
            "paid_basis_points": r.paid_basis_points,
        })).collect::<Value>()}));
        return;
    }
    println!("programme  month    quota received  issued down  cash received  paid  progress");
    for r in &progress.rows {
        println!(
            "{}  {}  {}  {}  {}  {}  {}.{:02}%",
            r.programme_code,
            r.month,
            yuan(r.quota_received_fen),
            yuan(r.quota_issued_down_fen),
            yuan(r.cash_received_fen),
            yuan(r.paid_fen),
            r.paid_basis_points / 100,
            r.paid_basis_points % 100
        );
    }
}

pub fn ledger(info: &pb::LedgerInfo, json: bool) {
    if json {
        print_json(&json!({
            "ledger_id": info.ledger_id, "root_org_id": info.root_org_id, "record_count": info.record_count,
            "writable": info.writable, "read_only_reason": info.read_only_reason,
            "log_public_key": hex::encode(&info.log_public_key), "rules_version": info.rules_version,
            "replica": info.replica.as_ref().map(|r| json!({
                "upstream": r.upstream, "upstream_checkpoint_size": r.upstream_checkpoint_size,
                "lag_records": r.upstream_checkpoint_size.saturating_sub(info.record_count),
                "stopped": r.stopped,
            })),
        }));
        return;
    }
    println!(
        "ledger {}  root org {}  {} records  rules version {}",
        info.ledger_id, info.root_org_id, info.record_count, info.rules_version
    );
    if let Some(replica) = &info.replica {
        println!(
            "replica of {}  {}  upstream checkpoint of {} records (lag {})",
            replica.upstream,
            if replica.stopped {
                "STOPPED following"
            } else {
                "following"
            },
            replica.upstream_checkpoint_size,
            replica
                .upstream_checkpoint_size
                .saturating_sub(info.record_count)
        );
    }
    if !info.writable {
        println!("READ-ONLY: {}", info.read_only_reason);
    }
}

pub fn posted(posted: &pb::PostResponse, idempotency_key: &str, json: bool) {
    if json {
        print_json(&json!({
            "seq": posted.seq, "commit_time_ms": posted.commit_time_ms, "duplicate": posted.duplicate,
            "idempotency_key": idempotency_key, "effects": effects_json(&posted.effects),
        }));
        return;
    }
    let again = if posted.duplicate {
        " (already recorded: this was a retry)"
    } else {
        ""
    };
    println!(
        "recorded as #{} at {}{again}  (idempotency key {idempotency_key})",
        posted.seq,
        utc(posted.commit_time_ms)
    );
    let effects = posted.effects.clone().unwrap_or_default();
    if !effects.registered_key_id.is_empty() {
        println!("  registered key {}", effects.registered_key_id);
    }
    for leg in &effects.legs {
        println!("  {}", leg_line(leg));
    }
}

/// One answered line of a bulk load.
pub fn streamed_ok(line: usize, posted: &pb::PostResponse, json: bool) {
    if json {
        print_json(&json!({
            "line": line, "seq": posted.seq, "commit_time_ms": posted.commit_time_ms,
            "duplicate": posted.duplicate,
        }));
        return;
    }
    let again = if posted.duplicate {
        " (already recorded)"
    } else {
        ""
    };
    println!("line {line}: recorded as #{}{again}", posted.seq);
}

/// One refused line of a bulk load.
pub fn streamed_error(line: usize, error: &pb::PostError, json: bool) {
    let code = tonic::Code::from_i32(error.code);
    if json {
        print_json(&json!({
            "line": line, "code": format!("{code:?}"), "field": error.field, "message": error.message,
        }));
        return;
    }
    let field = if error.field.is_empty() {
        String::new()
    } else {
        format!(" ({})", error.field)
    };
    println!("line {line}: refused, {code:?}{field}: {}", error.message);
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(1_709_210_096_000), "2024-02-29T12:34:56Z");
    }
}
