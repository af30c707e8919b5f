//! The discover-and-govern commands: `inventory`, `suggest`, `replay`, `report`. What they do
//! lives in the library (inventory, findings, suggest, replay, report); this is arguments and
//! printing.
//!
//! Each reads the enforcer API by default, or with `--data-dir DIR` the enforcer's data
//! directory directly (no enforcer running needed: the inventory is rebuilt from events.jsonl).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use interlock_enforcer::findings::{ApiSpec, Findings, findings};
use interlock_enforcer::inventory::{Inventory, Limits, iso8601};
use interlock_enforcer::replay::{Change, Replay, ReplayReport, parse_since};
use interlock_enforcer::report::Report;
use interlock_enforcer::state::{LiveState, now_unix_ms};
use interlock_enforcer::suggest::{SuggestOptions, suggest};
use interlock_enforcer::{client, live_client};
use interlock_policies::{Engine, PolicyDocument};

/// Where the data comes from.
#[derive(Debug, Args)]
pub struct Source {
    /// Read the enforcer's data directory (events.jsonl, audit.jsonl) instead of its API.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DiscoverCommand {
    /// What agents really do: agents, REST APIs (method + route template), MCP servers and tools,
    /// LLM providers, A2A agents; with --openapi, shadow and zombie APIs; with a policy, grants
    /// never used and refused calls per agent.
    Inventory {
        /// Print {"inventory":…,"findings":…} as JSON.
        #[arg(long)]
        json: bool,
        /// OpenAPI 3 documents (JSON or YAML) declaring the APIs.
        #[arg(long, num_args = 1..)]
        openapi: Vec<PathBuf>,
        /// The policy to judge grants against (default: the one installed at the enforcer).
        #[arg(long)]
        policy: Option<PathBuf>,
        #[command(flatten)]
        source: Source,
    },
    /// Drafts a least-privilege policy section for an agent from what it was seen doing, as a
    /// policy document that passes `interlock check`, for a person to review.
    Suggest {
        #[arg(long)]
        agent: String,
        /// Also grant calls that were refused only because nothing granted them (flagged).
        #[arg(long)]
        include_denied: bool,
        /// Print the draft with what was left out and the notes, as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        source: Source,
    },
    /// Re-evaluates recorded decisions with a candidate policy and reports what would change,
    /// per agent and rule (newly denied, newly allowed). Exit status 0 either way.
    Replay {
        /// The candidate policy.
        #[arg(long)]
        policy: PathBuf,
        /// Only decisions at or after this time: ms since the epoch, 2026-11-21T18:00:00Z, or
        /// a duration back from now (15m, 2h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only this agent's decisions.
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        source: Source,
    },
    /// Writes the evidence report: DIR/report.html (self-contained) and DIR/report.json.
    Report {
        #[arg(long)]
        out: PathBuf,
        /// OpenAPI 3 documents, for the shadow and zombie API findings.
        #[arg(long, num_args = 1..)]
        openapi: Vec<PathBuf>,
        /// The policy to judge grants against (default: the one installed at the enforcer).
        #[arg(long)]
        policy: Option<PathBuf>,
        #[command(flatten)]
        source: Source,
    },
}

pub fn run(command: DiscoverCommand, target: &crate::cli::Target, runtime: fn() -> Result<tokio::runtime::Runtime>) -> Result<ExitCode> {
    match command {
        DiscoverCommand::Inventory { json, openapi, policy, source } => {
            let specs = read_specs(&openapi)?;
            let inv = load_inventory(&source, target, runtime)?;
            let policy = load_policy(policy.as_deref(), &source, target, runtime)?;
            let f = findings(&inv, &specs, policy.as_ref());
            if json {
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "inventory": inv, "findings": f }))?);
            } else {
                print!("{}", human_inventory(&inv, &f));
            }
            Ok(ExitCode::SUCCESS)
        }
        DiscoverCommand::Suggest { agent, include_denied, json, source } => {
            let inv = load_inventory(&source, target, runtime)?;
            let s = suggest(&inv, &agent, &SuggestOptions { include_denied })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("{}", serde_json::to_string_pretty(&s.policy)?);
                for l in &s.left_out {
                    eprintln!("interlock suggest: left out {} (refused {}x by {}): {}", l.call, l.denied, l.rules.keys().cloned().collect::<Vec<_>>().join(", "), l.why);
                }
                for n in &s.notes {
                    eprintln!("interlock suggest: note: {n}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DiscoverCommand::Replay { policy, since, agent, json, source } => {
            let text = std::fs::read_to_string(&policy).with_context(|| format!("cannot read the candidate {}", policy.display()))?;
            let doc = interlock_policies::engine::parse_document(&text).map_err(|e| anyhow::anyhow!("{}: invalid policy: {e}", policy.display()))?;
            let engine = Engine::from_json(&text).map_err(|e| anyhow::anyhow!("{}: invalid policy: {e}", policy.display()))?;
            let since = since.map(|s| parse_since(&s, now_unix_ms())).transpose().map_err(anyhow::Error::msg)?;
            let mut replay = Replay::new(&doc, engine, since, agent);
            match &source.data_dir {
                Some(dir) => {
                    interlock_enforcer::inventory::scan_log(dir, 0, 0, |rec| replay.feed(&rec))?;
                }
                None => {
                    let enforcer = target.client()?;
                    runtime()?.block_on(async {
                        let mut after = 0;
                        loop {
                            let page = enforcer.events(after, 5_000, 0).await?;
                            if page.events.is_empty() {
                                break;
                            }
                            for rec in &page.events {
                                replay.feed(rec);
                            }
                            after = page.next;
                        }
                        Ok::<_, client::ClientError>(())
                    })?;
                }
            }
            let report = replay.finish();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", human_replay(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        DiscoverCommand::Report { out, openapi, policy, source } => {
            let specs = read_specs(&openapi)?;
            let policy = load_policy(policy.as_deref(), &source, target, runtime)?;
            let mut report: Report = match &source.data_dir {
                Some(dir) => {
                    let (live, _) = LiveState::open(dir)?;
                    let revocations = live.snapshot().revocations.iter().cloned().collect();
                    interlock_enforcer::report::build(dir, revocations, policy.as_ref(), now_unix_ms())?
                }
                None => {
                    let enforcer = target.client()?;
                    let mut r: Report = runtime()?.block_on(async { client::ok_json(enforcer.request("GET", "/v1/report", None).await?) })?;
                    // The enforcer judged shadow rules by its installed policy; a --policy given
                    // here is the one to report against.
                    if let Some(p) = &policy {
                        let fresh = interlock_enforcer::report::assemble(r.inventory.clone(), r.receipts.clone(), r.audit.clone(), r.revocations.clone(), Some(p), r.generated_unix_ms);
                        r.shadow_rules = fresh.shadow_rules;
                        r.policy_version = fresh.policy_version;
                    }
                    r
                }
            };
            report.findings = Some(findings(&report.inventory, &specs, policy.as_ref()));
            interlock_enforcer::report::write(&out, &report).with_context(|| format!("cannot write the report to {}", out.display()))?;
            println!(
                "wrote {} and {} ({} decisions, {} agents, {:.1}% of governed calls inspected, audit chain: {})",
                out.join("report.html").display(),
                out.join("report.json").display(),
                report.inventory.events,
                report.inventory.agents.len(),
                report.coverage.inspected_percent,
                report.audit.status
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read_specs(files: &[PathBuf]) -> Result<Vec<ApiSpec>> {
    files.iter().map(|f| ApiSpec::read(f).map_err(anyhow::Error::from)).collect()
}

fn load_inventory(source: &Source, target: &crate::cli::Target, runtime: fn() -> Result<tokio::runtime::Runtime>) -> Result<Inventory> {
    match &source.data_dir {
        // Rebuilt from the log, not the persisted inventory: the enforcer may be running and
        // owns that file.
        Some(dir) => Ok(interlock_enforcer::inventory::from_log(dir, &Limits::default())?),
        None => {
            let enforcer = target.client()?;
            Ok(runtime()?.block_on(async { client::ok_json(enforcer.request("GET", "/v1/inventory", None).await?) })?)
        }
    }
}

/// `--policy FILE`, else the data directory's installed policy, else the enforcer's; `None`
/// when there is none (findings then say so).
fn load_policy(file: Option<&Path>, source: &Source, target: &crate::cli::Target, runtime: fn() -> Result<tokio::runtime::Runtime>) -> Result<Option<PolicyDocument>> {
    let text = match (file, &source.data_dir) {
        (Some(f), _) => std::fs::read_to_string(f).with_context(|| format!("cannot read the policy {}", f.display()))?,
        (None, Some(dir)) => {
            let (live, _) = LiveState::open(dir)?;
            match live.snapshot().policy.as_ref() {
                Some(p) => p.json.to_string(),
                None => return Ok(None),
            }
        }
        (None, None) => {
            let enforcer = target.client()?;
            match runtime()?.block_on(live_client::current_policy(&enforcer))? {
                Some(p) => p.policy.to_string(),
                None => return Ok(None),
            }
        }
    };
    let doc = interlock_policies::engine::parse_document(&text).map_err(|e| anyhow::anyhow!("invalid policy: {e}"))?;
    Ok(Some(doc))
}

fn counts(c: &interlock_enforcer::inventory::Counts) -> String {
    format!("{} calls ({} allowed, {} refused{})", c.calls, c.allowed, c.denied, if c.shadow > 0 { format!(", {} shadow", c.shadow) } else { String::new() })
}

fn names(m: &std::collections::BTreeMap<String, u64>) -> String {
    m.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

/// The inventory and findings for people.
pub fn human_inventory(inv: &Inventory, f: &Findings) -> String {
    let mut s = String::new();
    let window = match (inv.first_unix_ms, inv.last_unix_ms) {
        (Some(a), Some(b)) => format!("{} to {}", iso8601(a), iso8601(b)),
        _ => "no decisions yet".to_owned(),
    };
    let _ = writeln!(s, "Inventory of {} decisions, {window}\n", inv.events);
    let _ = writeln!(s, "AGENTS");
    for a in inv.agents.values() {
        let _ = writeln!(s, "  {:<20} {}; first {} last {}; users: {}", a.agent, counts(&a.counts), iso8601(a.first_unix_ms), iso8601(a.last_unix_ms), names(&a.users));
    }
    let _ = writeln!(s, "\nREST APIS (method, route template)");
    for a in inv.apis.values() {
        let _ = writeln!(s, "  {:<16} {:<7} {:<36} {}; agents: {}; decisions: {}", a.authority, a.method, a.template, counts(&a.usage.counts), names(&a.usage.agents), names(&a.usage.decisions));
    }
    let _ = writeln!(s, "\nMCP SERVERS");
    for m in inv.mcp_servers.values() {
        let _ = writeln!(s, "  {}{} ({}): {}", m.authority, m.route, m.governed, counts(&m.usage.counts));
        for (name, u) in &m.methods {
            let _ = writeln!(s, "    method {name:<28} {}; agents: {}", counts(&u.counts), names(&u.agents));
        }
        for (name, u) in &m.tools {
            let _ = writeln!(s, "    tool   {name:<28} {}; agents: {}", counts(&u.counts), names(&u.agents));
        }
    }
    let _ = writeln!(s, "\nLLM PROVIDERS");
    for p in inv.llm_providers.values() {
        let _ = writeln!(s, "  {}{} ({}): {}; agents: {}; data classes: {}", p.authority, p.route, p.protocol, counts(&p.usage.counts), names(&p.usage.agents), names(&p.usage.data_classes));
    }
    let _ = writeln!(s, "\nA2A AGENTS");
    for a in inv.a2a_agents.values() {
        let _ = writeln!(s, "  {}{}: {}", a.authority, a.route, counts(&a.usage.counts));
        for (name, u) in &a.methods {
            let _ = writeln!(s, "    method {name:<28} {}; agents: {}", counts(&u.counts), names(&u.agents));
        }
    }
    let _ = writeln!(s, "\nFINDINGS");
    for n in &f.notes {
        let _ = writeln!(s, "  note: {n}");
    }
    for a in &f.shadow_apis {
        let _ = writeln!(s, "  SHADOW API  {} {}{}: {} calls ({} reached the upstream); agents: {}", a.method, a.authority, a.template, a.calls, a.allowed, names(&a.agents));
    }
    for a in &f.zombie_apis {
        let _ = writeln!(s, "  ZOMBIE API  {} {}{}: {} calls; deprecated: {}", a.method, a.authority, a.template, a.calls, a.declared_as.as_deref().unwrap_or_default());
    }
    for a in &f.agents {
        for g in &a.grants {
            let _ = writeln!(s, "  GRANT       {} {}: {}", a.agent, g.grant, g.suggestion);
        }
        for d in &a.denied_calls {
            let _ = writeln!(s, "  REFUSED     {}{}: {} x{} ({})", a.agent, if a.in_policy { "" } else { " (not in the policy)" }, d.call, d.denied, names(&d.rules));
        }
    }
    if !inv.overflow.is_empty() {
        let _ = writeln!(s, "\nnot kept (caps reached): {}", names(&inv.overflow));
    }
    s
}

/// The replay for people.
pub fn human_replay(r: &ReplayReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Replayed {} of {} decisions through {:?}: {} newly denied, {} newly allowed, {} decided by another rule, {} unchanged ({} inexact)",
        r.replayed, r.events, r.candidate_version, r.newly_denied, r.newly_allowed, r.rule_changed, r.unchanged, r.inexact
    );
    for g in &r.changes {
        let what = match g.change {
            Change::NewlyDenied => "NEWLY DENIED ",
            Change::NewlyAllowed => "NEWLY ALLOWED",
            Change::RuleChanged => "RULE CHANGED ",
        };
        let _ = writeln!(s, "  {what} {:<16} {} -> {}: {}{}", g.agent, g.from_rule, g.to_rule, g.count, if g.inexact > 0 { format!(" ({} inexact)", g.inexact) } else { String::new() });
        for e in &g.examples {
            let _ = writeln!(s, "      {} {} {} ({} -> {}){}", e.time, e.decision_id, e.call, e.status_before, e.status_after, if e.inexact { " inexact" } else { "" });
        }
    }
    for sh in &r.shadow {
        let _ = writeln!(s, "  SHADOW       {:<16} {} would deny {}", sh.agent, sh.rule, sh.count);
    }
    for (why, n) in &r.skipped {
        let _ = writeln!(s, "  skipped {n}: {why}");
    }
    for n in &r.notes {
        let _ = writeln!(s, "  note: {n}");
    }
    s
}
