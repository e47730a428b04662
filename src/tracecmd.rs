//! `fundtrail trace forward | back`, `statement`, `idle`, `anomalies`: the
//! auditor's questions, printed as readable trees and tables (or JSON).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use fundtrail_api::pb;
use fundtrail_core::dates::format_date;
use serde_json::{json, Value};

use crate::output::{add_fen, total_fen, yuan};
use crate::remote::{connect, status, Server};
use fundtrail_core::money::format_fen;

#[derive(Subcommand)]
pub enum TraceCommand {
    /// Where an appropriation (or any money record) went, level by level.
    Forward {
        #[command(flatten)]
        server: Server,
        /// The appropriation's (or record's) sequence number.
        seq: u64,
    },
    /// Every yuan a household (or account, or record) received, back to
    /// each appropriation, with every signed record on the way.
    Back {
        #[command(flatten)]
        server: Server,
        #[arg(long, conflicts_with = "seq")]
        household: Option<String>,
        #[arg(long, conflicts_with_all = ["household", "seq"])]
        account: Option<String>,
        #[arg(long)]
        seq: Option<u64>,
    },
}

#[derive(Args)]
pub struct IdleArgs {
    #[command(flatten)]
    server: Server,
    /// Only money older than this: 30d, 90d, 365d, 730d or any number of days.
    #[arg(long, default_value = "90d")]
    older_than: String,
    /// central, province, prefecture or county.
    #[arg(long, default_value = "")]
    level: String,
    /// Division code prefix, e.g. 5134 for 凉山州.
    #[arg(long, default_value = "")]
    division: String,
    #[arg(long, default_value = "")]
    programme: String,
}

fn date(day: i32) -> String {
    if day == 0 {
        "-".into()
    } else {
        format_date(day)
    }
}

fn print_json(value: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn kind_name(kind: i32) -> &'static str {
    pb::AccountKind::try_from(kind)
        .map(|k| k.as_str_name().trim_start_matches("ACCOUNT_KIND_"))
        .unwrap_or("?")
}

pub async fn trace(command: TraceCommand) -> Result<()> {
    match command {
        TraceCommand::Forward { server, seq } => forward(&server, seq).await,
        TraceCommand::Back {
            server,
            household,
            account,
            seq,
        } => {
            let target = match (household.or(account), seq) {
                (Some(account), None) => pb::trace_backward_request::Target::AccountId(account),
                (None, Some(seq)) => pb::trace_backward_request::Target::Seq(seq),
                _ => bail!("name one of --household, --account or --seq"),
            };
            back(&server, target).await
        }
    }
}

/// Fetches every page of a forward trace and merges them.
async fn forward(server: &Server, seq: u64) -> Result<()> {
    let mut client = connect(server).await?;
    let mut page_token = String::new();
    let mut graph = pb::FlowGraph::default();
    let mut edges: BTreeMap<(String, String), pb::FlowEdge> = BTreeMap::new();
    let mut nodes: BTreeMap<String, pb::FlowNode> = BTreeMap::new();
    loop {
        let page = client
            .query
            .trace_forward(pb::TraceForwardRequest {
                seq,
                page_size: 0,
                page_token,
            })
            .await
            .map_err(status)?
            .into_inner();
        // Pages cover disjoint records: amounts add up, holdings are current.
        for edge in page.edges {
            match edges.entry((edge.from_account_id.clone(), edge.to_account_id.clone())) {
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(edge);
                }
                std::collections::btree_map::Entry::Occupied(mut slot) => {
                    let merged = slot.get_mut();
                    add_fen(&mut merged.amount_fen, edge.amount_fen)?;
                    merged.records = merged
                        .records
                        .checked_add(edge.records)
                        .ok_or_else(|| anyhow::anyhow!("an edge counts more records than a u32"))?;
                    merged.last_seq = edge.last_seq;
                    for kind in edge.kinds {
                        if !merged.kinds.contains(&kind) {
                            merged.kinds.push(kind);
                        }
                    }
                    for document in edge.document_nos {
                        if !merged.document_nos.contains(&document) {
                            merged.document_nos.push(document);
                        }
                    }
                }
            }
        }
        for node in page.nodes {
            match nodes.entry(node.account_id.clone()) {
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(node);
                }
                std::collections::btree_map::Entry::Occupied(mut slot) => {
                    add_fen(&mut slot.get_mut().received_fen, node.received_fen)?
                }
            }
        }
        graph.source_seq = page.source_seq;
        graph.traced_fen = page.traced_fen;
        // Each page reports what its own records withdrew.
        add_fen(&mut graph.withdrawn_fen, page.withdrawn_fen)?;
        graph.source_document_no = page.source_document_no.clone();
        graph.programme_code = page.programme_code.clone();
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    // Holdings are current, so households' totals come from the merged nodes.
    graph.reached_households_fen = 0;
    for node in nodes
        .values()
        .filter(|n| n.kind == pb::AccountKind::Household as i32)
    {
        add_fen(&mut graph.reached_households_fen, node.held_fen)?;
    }
    if server.json {
        return print_json(&json!({
            "source_seq": graph.source_seq, "traced_fen": graph.traced_fen,
            "reached_households_fen": graph.reached_households_fen, "withdrawn_fen": graph.withdrawn_fen,
            "source_document_no": graph.source_document_no, "programme_code": graph.programme_code,
            "nodes": nodes.values().map(|n| json!({"account_id": n.account_id, "owner_org_id": n.owner_org_id,
                "kind": kind_name(n.kind), "name": n.name, "division_code": n.division_code,
                "received_fen": n.received_fen, "held_fen": n.held_fen,
                "held_since": if n.held_since_day == 0 { Value::Null } else { json!(format_date(n.held_since_day)) }})).collect::<Value>(),
            "edges": edges.values().map(|e| json!({"from_account_id": e.from_account_id, "to_account_id": e.to_account_id,
                "amount_fen": e.amount_fen, "records": e.records, "first_seq": e.first_seq, "last_seq": e.last_seq,
                "kinds": e.kinds, "document_nos": e.document_nos})).collect::<Value>(),
        }));
    }
    println!(
        "source #{} ({} 文号 {}): {} traced, {} reached households, {} withdrawn",
        graph.source_seq,
        graph.programme_code,
        graph.source_document_no,
        yuan(graph.traced_fen),
        yuan(graph.reached_households_fen),
        yuan(graph.withdrawn_fen)
    );
    let mut children: BTreeMap<&str, Vec<&pb::FlowEdge>> = BTreeMap::new();
    for edge in edges.values() {
        children
            .entry(edge.from_account_id.as_str())
            .or_default()
            .push(edge);
    }
    let incoming: std::collections::BTreeSet<&str> =
        edges.values().map(|e| e.to_account_id.as_str()).collect();
    let roots: Vec<&pb::FlowNode> = nodes
        .values()
        .filter(|n| !incoming.contains(n.account_id.as_str()))
        .collect();
    for root in roots {
        print_node(
            root,
            None,
            &nodes,
            &children,
            0,
            &mut std::collections::BTreeSet::new(),
        );
    }
    Ok(())
}

fn print_node(
    node: &pb::FlowNode,
    edge: Option<&pb::FlowEdge>,
    nodes: &BTreeMap<String, pb::FlowNode>,
    children: &BTreeMap<&str, Vec<&pb::FlowEdge>>,
    depth: usize,
    seen: &mut std::collections::BTreeSet<String>,
) {
    let indent = "  ".repeat(depth);
    let via = edge
        .map(|e| {
            format!(
                "{} via {} ({})  ",
                yuan(e.amount_fen),
                e.kinds.join("/"),
                e.document_nos.first().cloned().unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let held = if node.held_fen > 0 {
        format!(
            "  holds {} since {}",
            yuan(node.held_fen),
            date(node.held_since_day)
        )
    } else {
        String::new()
    };
    println!(
        "{indent}{via}{} {} [{}]{held}",
        node.account_id, node.name, node.owner_org_id
    );
    if !seen.insert(node.account_id.clone()) {
        return;
    }
    let Some(edges) = children.get(node.account_id.as_str()) else {
        return;
    };
    // Households are summarised per payer: there may be thousands.
    let (households, others): (Vec<&&pb::FlowEdge>, Vec<&&pb::FlowEdge>) =
        edges.iter().partition(|e| {
            nodes
                .get(&e.to_account_id)
                .is_some_and(|n| n.kind == pb::AccountKind::Household as i32)
        });
    for edge in others {
        if let Some(child) = nodes.get(&edge.to_account_id) {
            print_node(child, Some(edge), nodes, children, depth + 1, seen);
        }
    }
    if !households.is_empty() {
        let paid = total_fen(households.iter().map(|e| e.amount_fen));
        let payments: u64 = households.iter().map(|e| u64::from(e.records)).sum();
        let held = total_fen(
            households
                .iter()
                .filter_map(|e| nodes.get(&e.to_account_id))
                .map(|n| n.held_fen),
        );
        println!(
            "{indent}  {} to {} households in {payments} payments (they hold {})",
            format_fen(paid),
            households.len(),
            format_fen(held)
        );
    }
}

async fn back(server: &Server, target: pb::trace_backward_request::Target) -> Result<()> {
    let mut client = connect(server).await?;
    let answer = client
        .query
        .trace_backward(pb::TraceBackwardRequest {
            target: Some(target),
        })
        .await
        .map_err(status)?
        .into_inner();
    if server.json {
        return print_json(&json!({
            "truncated": answer.truncated,
            "lineages": answer.lineages.iter().map(|l| json!({"source_seq": l.source_seq, "amount_fen": l.amount_fen,
                "source_document_no": l.source_document_no, "programme_code": l.programme_code,
                "appropriating_org_id": l.appropriating_org_id,
                "hops": l.hops.iter().map(|h| json!({"seq": h.seq, "kind": h.kind, "from_account_id": h.from_account_id,
                    "to_account_id": h.to_account_id, "amount_fen": h.amount_fen, "document_no": h.document_no,
                    "signer_org_id": h.signer_org_id, "key_id": h.key_id, "value_date": format_date(h.value_day)})).collect::<Value>(),
            })).collect::<Value>(),
        }));
    }
    let total = total_fen(answer.lineages.iter().map(|l| l.amount_fen));
    println!(
        "{} in {} lineages",
        format_fen(total),
        answer.lineages.len()
    );
    for lineage in &answer.lineages {
        println!(
            "{} of source #{} ({} 文号 {}, appropriated by {})",
            yuan(lineage.amount_fen),
            lineage.source_seq,
            lineage.programme_code,
            lineage.source_document_no,
            lineage.appropriating_org_id
        );
        for hop in &lineage.hops {
            let from = if hop.from_account_id.is_empty() {
                "(appropriated)"
            } else {
                &hop.from_account_id
            };
            println!(
                "  #{:<7} {}  {:<13} {from} → {}  {}  文号 {}  signed by {} (key {})",
                hop.seq,
                format_date(hop.value_day),
                hop.kind,
                hop.to_account_id,
                yuan(hop.amount_fen),
                hop.document_no,
                hop.signer_org_id,
                hop.key_id
            );
        }
    }
    if answer.truncated {
        println!("(cut at the hop limit)");
    }
    Ok(())
}

pub async fn statement(server: &Server, household: String) -> Result<()> {
    let mut client = connect(server).await?;
    let s = client
        .query
        .household_statement(pb::HouseholdStatementRequest {
            account_id: household,
        })
        .await
        .map_err(status)?
        .into_inner();
    let status_name = |v: i32| {
        pb::HouseholdStatus::try_from(v)
            .map(|s| s.as_str_name().trim_start_matches("HOUSEHOLD_STATUS_"))
            .unwrap_or("?")
    };
    let category_name = |v: i32| {
        pb::MonitoringCategory::try_from(v)
            .map(|c| c.as_str_name().trim_start_matches("MONITORING_CATEGORY_"))
            .unwrap_or("?")
    };
    if server.json {
        return print_json(&json!({
            "account_id": s.account_id, "owner_org_id": s.owner_org_id, "household_ref": s.household_ref,
            "village_code": s.village_code, "members": s.members, "status_today": status_name(s.status_today),
            "statuses": s.statuses.iter().map(|c| json!({"effective": format_date(c.effective_day), "status": status_name(c.status), "seq": c.seq})).collect::<Value>(),
            "monitoring_today": category_name(s.monitoring_today),
            "monitoring": s.monitoring.iter().map(|c| json!({"effective": format_date(c.effective_day), "category": category_name(c.category), "seq": c.seq})).collect::<Value>(),
            "payments": s.payments.iter().map(|p| json!({"seq": p.seq, "value_date": format_date(p.value_day), "amount_fen": p.amount_fen,
                "programme_code": p.programme_code, "period": p.period, "document_no": p.document_no,
                "from_account_id": p.from_account_id, "reversed": p.reversed,
                "bank_status": bank_status(p), "bank_result_seq": p.bank_result_seq,
                "bank_reference": p.bank_reference,
                "sources": p.sources.iter().map(|x| json!({"source_seq": x.source_seq, "amount_fen": x.amount_fen})).collect::<Value>()})).collect::<Value>(),
            "received_fen": s.received_fen, "balance_fen": s.balance_fen,
        }));
    }
    println!(
        "household {} (registry {}, village {}, {} members) of {}: {}",
        s.account_id,
        s.household_ref,
        s.village_code,
        s.members,
        s.owner_org_id,
        status_name(s.status_today)
    );
    for change in &s.statuses {
        println!(
            "  status {} from {} (#{})",
            status_name(change.status),
            format_date(change.effective_day),
            change.seq
        );
    }
    for change in &s.monitoring {
        println!(
            "  monitoring {} from {} (#{})",
            category_name(change.category),
            format_date(change.effective_day),
            change.seq
        );
    }
    for p in &s.payments {
        let sources: Vec<String> = p
            .sources
            .iter()
            .map(|x| format!("#{}", x.source_seq))
            .collect();
        println!(
            "  #{:<7} {}  {:>12}  {} {}  from {}  文号 {}  sources {}{}  bank: {}{}",
            p.seq,
            format_date(p.value_day),
            yuan(p.amount_fen),
            p.programme_code,
            p.period,
            p.from_account_id,
            p.document_no,
            sources.join(","),
            if p.reversed { "  [REVERSED]" } else { "" },
            bank_status(p),
            if p.bank_result_seq == 0 {
                String::new()
            } else {
                format!(
                    " {} (#{}, {})",
                    p.bank_reference,
                    p.bank_result_seq,
                    format_date(p.bank_day)
                )
            }
        );
    }
    println!(
        "received {}  holds {}",
        yuan(s.received_fen),
        yuan(s.balance_fen)
    );
    Ok(())
}

fn days(text: &str) -> Result<u32> {
    text.trim_end_matches('d')
        .parse()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a number of days like 90d"))
}

pub async fn idle(args: IdleArgs) -> Result<()> {
    let mut client = connect(&args.server).await?;
    let mut rows = Vec::new();
    let mut page_token = String::new();
    let as_of_day = loop {
        let page = client
            .query
            .idle_funds(pb::IdleFundsRequest {
                older_than_days: days(&args.older_than)?,
                level: args.level.clone(),
                division_prefix: args.division.clone(),
                programme_code: args.programme.clone(),
                page_size: 1_000,
                page_token,
            })
            .await
            .map_err(status)?
            .into_inner();
        rows.extend(page.rows);
        if page.next_page_token.is_empty() {
            break page.as_of_day;
        }
        page_token = page.next_page_token;
    };
    rows.sort_by_key(|r| (r.oldest_day, std::cmp::Reverse(r.idle_fen)));
    if args.server.json {
        return print_json(&json!({
            "as_of": format_date(as_of_day),
            "rows": rows.iter().map(|r| json!({"account_id": r.account_id, "owner_org_id": r.owner_org_id,
                "division_code": r.division_code, "level": r.level, "kind": kind_name(r.kind), "name": r.name,
                "balance_fen": r.balance_fen, "idle_fen": r.idle_fen, "age_0_30_fen": r.age_0_30_fen,
                "age_30_90_fen": r.age_30_90_fen, "age_90_365_fen": r.age_90_365_fen,
                "age_365_730_fen": r.age_365_730_fen, "age_730_plus_fen": r.age_730_plus_fen,
                "oldest": format_date(r.oldest_day)})).collect::<Value>(),
        }));
    }
    let total = total_fen(rows.iter().map(|r| r.idle_fen));
    println!(
        "idle funds older than {} as of {}: {} in {} accounts",
        args.older_than,
        format_date(as_of_day),
        format_fen(total),
        rows.len()
    );
    println!(
        "{:<16} {:<10} {:>18} {:>16} {:>16} {:>16}  {:<10} account",
        "owner", "level", "idle", "90-365d", "365-730d", ">730d", "since"
    );
    for r in &rows {
        println!(
            "{:<16} {:<10} {:>18} {:>16} {:>16} {:>16}  {:<10} {} {}",
            r.owner_org_id,
            r.level,
            yuan(r.idle_fen),
            yuan(r.age_90_365_fen),
            yuan(r.age_365_730_fen),
            yuan(r.age_730_plus_fen),
            format_date(r.oldest_day),
            r.account_id,
            r.name
        );
    }
    Ok(())
}

/// `fundtrail compliance`: every page of Query.Compliance, then the
/// breaches as a table (or JSON).
pub async fn compliance(server: &Server, mut request: pb::ComplianceRequest) -> Result<()> {
    let mut client = connect(server).await?;
    let mut breaches = Vec::new();
    request.page_size = 1_000;
    let as_of_day = loop {
        let page = client
            .query
            .compliance(request.clone())
            .await
            .map_err(status)?
            .into_inner();
        breaches.extend(page.breaches);
        if page.next_page_token.is_empty() {
            break page.as_of_day;
        }
        request.page_token = page.next_page_token;
    };
    if server.json {
        return print_json(&json!({
            "as_of": format_date(as_of_day),
            "breaches": breaches.iter().map(|b| json!({"kind": b.kind, "programme_code": b.programme_code,
                "account_id": b.account_id, "seqs": b.seqs, "rule_seq": b.rule_seq,
                "amount_fen": b.amount_fen, "detail": b.detail})).collect::<Value>(),
        }));
    }
    println!(
        "{} breaches as of {}",
        breaches.len(),
        format_date(as_of_day)
    );
    for b in &breaches {
        let seqs: Vec<String> = b.seqs.iter().map(|s| format!("#{s}")).collect();
        println!(
            "{:<26} {:<9} {:>16}  {}  rule #{}  records {}",
            b.kind,
            b.programme_code,
            yuan(b.amount_fen),
            b.detail,
            b.rule_seq,
            seqs.join(",")
        );
    }
    Ok(())
}

/// The bank's result for a payment, as the statement names it.
fn bank_status(p: &pb::HouseholdPaymentLine) -> &'static str {
    p.bank_status()
        .as_str_name()
        .trim_start_matches("BANK_STATUS_")
}

pub async fn anomalies(server: &Server, idle_days: u32, unconfirmed_days: u32) -> Result<()> {
    let mut client = connect(server).await?;
    let mut findings = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .query
            .anomalies(pb::AnomaliesRequest {
                idle_older_than_days: idle_days,
                page_size: 1_000,
                page_token,
                unconfirmed_after_days: unconfirmed_days,
            })
            .await
            .map_err(status)?
            .into_inner();
        findings.extend(page.findings);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if server.json {
        return print_json(&json!(findings
            .iter()
            .map(|f| json!({"kind": f.kind, "account_id": f.account_id, "seqs": f.seqs, "amount_fen": f.amount_fen, "detail": f.detail}))
            .collect::<Vec<_>>()));
    }
    println!("{} findings", findings.len());
    for f in &findings {
        let seqs: Vec<String> = f.seqs.iter().map(|s| format!("#{s}")).collect();
        println!(
            "{:<24} {:>16}  {}  records {}",
            f.kind,
            yuan(f.amount_fen),
            f.detail,
            seqs.join(" ")
        );
    }
    Ok(())
}
