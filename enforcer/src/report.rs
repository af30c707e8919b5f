//! `interlock report --out DIR`: the evidence report, `DIR/report.json` and a self-contained
//! `DIR/report.html` (inline CSS, an inline SVG chart, no script, no external resource).
//!
//! What it holds: the inventory; decisions over time; the enforcement receipts of the audit log
//! with their measured delays (decision to kernel action) and whether the hash chain verifies;
//! the revocations; what each shadow-mode rule would have done; coverage (governed calls whose
//! body was fully inspected versus refused as uninspectable); and, when OpenAPI documents and
//! a policy are at hand, the findings (shadow and zombie APIs, unused grants, refused calls).
//!
//! [`build`] gathers the data where the enforcer's data directory is (the API's `GET /v1/report`
//! or `interlock report --data-dir`); findings are added by the caller, which has the OpenAPI
//! files; [`render_html`] is pure.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::path::Path;

use interlock_policies::PolicyDocument;
use interlock_policies::schema::Mode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::{AUDIT_FILE, verify};
use crate::findings::Findings;
use crate::inventory::{Inventory, InventoryError, Limits, Timeline, iso8601};
use crate::revocations::Revocation;

/// Receipts listed (the most recent); the delay figures cover all of them.
pub const MAX_RECEIPTS: usize = 200;
/// Bars in the chart.
pub const CHART_BUCKETS: usize = 48;

const TEMPLATE: &str = include_str!("report_template.html");

/// One enforcement receipt of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub audit_seq: u64,
    pub decision_id: String,
    pub rule: String,
    pub agent: Option<String>,
    /// `enforce` or `observe-only`, as the kernel side ran.
    pub mode: Option<String>,
    /// `enforced`, `partially enforced`, `observe-only: nothing done in the kernel`, ...
    pub outcome: String,
    pub decision_unix_ms: Option<u64>,
    /// Measured delay from the proxy's decision to the kernel action.
    pub decision_to_kernel_ms: Option<f64>,
    /// Measured delay from the enforcer receiving the decision to the kernel action.
    pub received_to_kernel_us: Option<u64>,
    pub sockets_destroyed: Option<u64>,
    pub quarantined: bool,
    pub errors: Vec<String>,
}

/// Delay statistics over every receipt that measured one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delays {
    pub measured: u64,
    pub min_ms: Option<f64>,
    pub median_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// The receipts section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Receipts {
    /// Receipts in the log.
    pub total: u64,
    /// The most recent ones, oldest first.
    pub recent: Vec<Receipt>,
    pub delays: Delays,
}

/// The audit chain's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditStatus {
    /// Whether there is an audit log at all.
    pub present: bool,
    pub records: u64,
    /// Hash of the last record.
    pub head: Option<String>,
    /// `verified`, `broken`, `no receipts` or `unreadable`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken_line: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What one shadow-mode rule would have done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowRule {
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Times it would have denied (the calls went through).
    pub would_deny: u64,
    pub agents: BTreeMap<String, u64>,
    pub last_unix_ms: Option<u64>,
}

/// The coverage figure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CoverageView {
    pub governed: u64,
    pub inspected: u64,
    pub uninspectable: u64,
    pub inspected_percent: f64,
    pub uninspectable_by_rule: BTreeMap<String, u64>,
    pub by_route: BTreeMap<String, crate::inventory::RouteCoverage>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub generated_unix_ms: u64,
    /// The installed policy's version, when known.
    pub policy_version: Option<String>,
    pub inventory: Inventory,
    /// Decisions over time, in at most [`CHART_BUCKETS`] buckets.
    pub timeline: Timeline,
    pub receipts: Receipts,
    pub audit: AuditStatus,
    pub revocations: Vec<Revocation>,
    pub shadow_rules: Vec<ShadowRule>,
    pub coverage: CoverageView,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<Findings>,
}

/// Gathers the report from the data directory `dir` (event log, audit log), with the
/// revocations and the policy the caller knows. Blocking (file I/O).
pub fn build(dir: &Path, revocations: Vec<Revocation>, policy: Option<&PolicyDocument>, now_ms: u64) -> Result<Report, InventoryError> {
    let inventory = crate::inventory::refresh(dir, &Limits::default())?;
    let (receipts, audit) = receipts(&dir.join(AUDIT_FILE));
    Ok(assemble(inventory, receipts, audit, revocations, policy, now_ms))
}

/// The report from its parts (pure).
pub fn assemble(
    inventory: Inventory,
    receipts: Receipts,
    audit: AuditStatus,
    revocations: Vec<Revocation>,
    policy: Option<&PolicyDocument>,
    now_ms: u64,
) -> Report {
    let c = &inventory.coverage;
    let coverage = CoverageView {
        governed: c.governed,
        inspected: c.inspected(),
        uninspectable: c.uninspectable,
        inspected_percent: (c.inspected_percent() * 10.0).round() / 10.0,
        uninspectable_by_rule: c.uninspectable_by_rule.clone(),
        by_route: c.by_route.clone(),
    };
    // Every shadow rule of the policy (also those that never fired), then any other rule that
    // fired in shadow mode under an earlier policy.
    let mut shadow_rules = Vec::new();
    let shadow_stats = |id: &str| inventory.rules.get(id).map(|r| (r.shadow_would_deny, r.agents.clone(), r.last_unix_ms));
    if let Some(p) = policy {
        let declared = p.rules.iter().filter(|r| r.mode == Mode::Shadow).map(|r| (r.id.clone(), r.description.clone()));
        let grants = p.agents.values().flat_map(|a| a.grants.iter()).filter(|g| g.mode == Mode::Shadow).map(|g| (g.id.clone(), g.description.clone()));
        for (id, description) in declared.chain(grants) {
            let (would_deny, agents, last) = shadow_stats(&id).unwrap_or_default();
            shadow_rules.push(ShadowRule { rule: id, description, would_deny, agents, last_unix_ms: (last > 0).then_some(last) });
        }
    }
    for (id, r) in &inventory.rules {
        if r.shadow_would_deny > 0 && !shadow_rules.iter().any(|s| &s.rule == id) {
            shadow_rules.push(ShadowRule {
                rule: id.clone(),
                description: None,
                would_deny: r.shadow_would_deny,
                agents: r.agents.clone(),
                last_unix_ms: Some(r.last_unix_ms),
            });
        }
    }
    Report {
        generated_unix_ms: now_ms,
        policy_version: policy.map(|p| p.version.clone()),
        timeline: inventory.timeline.coarsened(CHART_BUCKETS),
        inventory,
        receipts,
        audit,
        revocations,
        shadow_rules,
        coverage,
        findings: None,
    }
}

/// Reads the audit log: its verification and its receipts.
pub fn receipts(path: &Path) -> (Receipts, AuditStatus) {
    use std::io::BufRead;
    let mut out = Receipts::default();
    let audit = match verify(path) {
        Ok(v) if v.records == 0 => AuditStatus { present: path.exists(), records: 0, head: None, status: "no receipts".to_owned(), ..AuditStatus::default() },
        Ok(v) => AuditStatus {
            present: true,
            records: v.records,
            head: Some(v.head),
            status: if v.broken.is_some() { "broken" } else { "verified" }.to_owned(),
            broken_line: v.broken.as_ref().map(|b| b.line),
            reason: v.broken.map(|b| b.reason),
        },
        Err(e) => AuditStatus { present: true, status: "unreadable".to_owned(), reason: Some(e.to_string()), ..AuditStatus::default() },
    };
    let Ok(file) = std::fs::File::open(path) else { return (out, audit) };
    let mut recent: VecDeque<Receipt> = VecDeque::new();
    let mut delays: Vec<f64> = Vec::new();
    for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
        let Some(r) = v.get("record").filter(|r| r.get("kind").and_then(Value::as_str) == Some("receipt")) else { continue };
        let s = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
        let receipt = Receipt {
            audit_seq: v.get("seq").and_then(Value::as_u64).unwrap_or(0),
            decision_id: s("decision_id").unwrap_or_default(),
            rule: s("rule").unwrap_or_default(),
            agent: s("agent"),
            mode: s("mode"),
            outcome: s("outcome").unwrap_or_default(),
            decision_unix_ms: r.get("decision_unix_ms").and_then(Value::as_u64),
            decision_to_kernel_ms: r.get("decision_to_kernel_ms").and_then(Value::as_f64),
            received_to_kernel_us: r.get("received_to_kernel_us").and_then(Value::as_u64),
            sockets_destroyed: r.get("sockets_destroyed").and_then(Value::as_u64),
            quarantined: r.get("quarantine").is_some_and(|q| !q.is_null()),
            errors: r.get("errors").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect()).unwrap_or_default(),
        };
        out.total = out.total.saturating_add(1);
        if let Some(d) = receipt.decision_to_kernel_ms {
            delays.push(d);
        }
        if recent.len() >= MAX_RECEIPTS {
            recent.pop_front();
        }
        recent.push_back(receipt);
    }
    delays.sort_by(f64::total_cmp);
    out.delays = Delays {
        measured: u64::try_from(delays.len()).unwrap_or(u64::MAX),
        min_ms: delays.first().copied(),
        median_ms: delays.get(delays.len() / 2).copied(),
        max_ms: delays.last().copied(),
    };
    out.recent = recent.into();
    (out, audit)
}

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn map_text(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "<span class=\"empty\">none</span>".to_owned();
    }
    m.iter().map(|(k, n)| format!("<code>{}</code>&nbsp;{n}", esc(k))).collect::<Vec<_>>().join(", ")
}

fn time_text(ms: u64) -> String {
    if ms == 0 { "-".to_owned() } else { esc(&iso8601(ms)) }
}

/// A table, or a line saying it is empty.
fn table(id: &str, head: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\" id=\"{id}-empty\">{}</p>\n", esc(empty));
    }
    let mut s = format!("<table id=\"{id}\"><thead><tr>");
    for h in head {
        let (class, h) = h.strip_prefix('#').map_or(("", *h), |h| (" class=\"num\"", h));
        let _ = write!(s, "<th{class}>{}</th>", esc(h));
    }
    s.push_str("</tr></thead><tbody>\n");
    for row in rows {
        s.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let num = head.get(i).is_some_and(|h| h.starts_with('#'));
            let _ = write!(s, "<td{}>{cell}</td>", if num { " class=\"num\"" } else { "" });
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table>\n");
    s
}

fn card(id: &str, n: &str, label: &str, class: &str) -> String {
    format!("<div class=\"card\" id=\"{id}\"><div class=\"n {class}\">{}</div><div class=\"l\">{}</div></div>", esc(n), esc(label))
}

/// The decisions-over-time chart: stacked bars (allowed, denied) per bucket, shadow denials as
/// a marker on top, axis labels with the first and last bucket's time.
pub fn chart_svg(t: &Timeline) -> String {
    const W: u64 = 960;
    const H: u64 = 220;
    const LEFT: u64 = 48;
    const BOTTOM: u64 = 28;
    const TOP: u64 = 12;
    let buckets: Vec<(u64, crate::inventory::Bucket)> = t.buckets.iter().map(|(k, v)| (*k, *v)).collect();
    let max = buckets.iter().map(|(_, b)| b.total()).max().unwrap_or(0).max(1);
    let plot_w = W - LEFT - 8;
    let plot_h = H - TOP - BOTTOM;
    let n = u64::try_from(buckets.len()).unwrap_or(1).max(1);
    let slot = (plot_w / n).max(2);
    // A few buckets (a short window) stay bars, not walls.
    let slot = slot.min(48);
    let bar_w = slot.saturating_sub(slot / 5).max(1);
    let y = |v: u64| TOP + plot_h - v.saturating_mul(plot_h) / max;
    let mut s = format!(
        "<svg id=\"decisions-chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"100%\" role=\"img\" aria-label=\"Decisions over time: allowed, denied and shadow per {} ms\">\n",
        t.bucket_ms
    );
    let _ = writeln!(s, "<line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#9aa3b2\"/>", TOP + plot_h, W - 8, TOP + plot_h);
    let _ = writeln!(s, "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{}\" stroke=\"#9aa3b2\"/>", TOP + plot_h);
    let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"#5b6475\">{max}</text>", LEFT - 6, TOP + 4);
    let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"#5b6475\">0</text>", LEFT - 6, TOP + plot_h);
    for (i, (start, b)) in buckets.iter().enumerate() {
        let x = LEFT + 4 + u64::try_from(i).unwrap_or(0) * slot;
        let allowed_top = y(b.allowed);
        let total_top = y(b.total());
        let tip = format!("{}: {} allowed, {} denied, {} shadow", iso8601(*start), b.allowed, b.denied, b.shadow);
        if b.allowed > 0 {
            let _ = writeln!(
                s,
                "<rect class=\"allowed\" x=\"{x}\" y=\"{allowed_top}\" width=\"{bar_w}\" height=\"{}\" fill=\"#2e8b57\"><title>{}</title></rect>",
                TOP + plot_h - allowed_top,
                esc(&tip)
            );
        }
        if b.denied > 0 {
            let _ = writeln!(
                s,
                "<rect class=\"denied\" x=\"{x}\" y=\"{total_top}\" width=\"{bar_w}\" height=\"{}\" fill=\"#c0392b\"><title>{}</title></rect>",
                allowed_top - total_top,
                esc(&tip)
            );
        }
        if b.shadow > 0 {
            let _ = writeln!(
                s,
                "<rect class=\"shadow\" x=\"{x}\" y=\"{}\" width=\"{bar_w}\" height=\"4\" fill=\"#e0a100\"><title>{}</title></rect>",
                total_top.saturating_sub(6),
                esc(&tip)
            );
        }
    }
    if let (Some((first, _)), Some((last, _))) = (buckets.first(), buckets.last()) {
        let _ = writeln!(s, "<text x=\"{LEFT}\" y=\"{}\" font-size=\"11\" fill=\"#5b6475\">{}</text>", H - 8, esc(&iso8601(*first)));
        let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"#5b6475\">{}</text>", W - 8, H - 8, esc(&iso8601(*last)));
    } else {
        let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" font-size=\"13\" text-anchor=\"middle\" fill=\"#5b6475\">no decisions yet</text>", W / 2, H / 2);
    }
    s.push_str("</svg>\n");
    s
}

/// The HTML page.
pub fn render_html(r: &Report) -> String {
    let inv = &r.inventory;
    let mut b = String::new();

    // Summary.
    let window = match (inv.first_unix_ms, inv.last_unix_ms) {
        (Some(f), Some(l)) => format!("{} to {}", iso8601(f), iso8601(l)),
        _ => "no decisions yet".to_owned(),
    };
    let tools: usize = inv.mcp_servers.values().map(|s| s.tools.len()).sum();
    let denied: u64 = inv.agents.values().map(|a| a.counts.denied).sum();
    let audit_class = match r.audit.status.as_str() {
        "verified" => "ok",
        "no receipts" => "",
        _ => "bad",
    };
    b.push_str("<section id=\"summary\"><h2>Summary</h2><div class=\"cards\">");
    b.push_str(&card("card-decisions", &inv.events.to_string(), "decisions", ""));
    b.push_str(&card("card-denied", &denied.to_string(), "refused", "bad"));
    b.push_str(&card("card-agents", &inv.agents.len().to_string(), "agents", ""));
    b.push_str(&card("card-apis", &inv.apis.len().to_string(), "REST operations", ""));
    b.push_str(&card("card-tools", &tools.to_string(), "MCP tools", ""));
    b.push_str(&card("coverage-figure", &format!("{:.1}%", r.coverage.inspected_percent), "governed calls fully inspected", if r.coverage.uninspectable > 0 { "warn" } else { "ok" }));
    b.push_str(&card("card-audit", &r.audit.status, "audit chain", audit_class));
    b.push_str(&card("card-receipts", &r.receipts.total.to_string(), "enforcement receipts", ""));
    b.push_str("</div></section>\n");

    // Chart.
    let _ = write!(
        b,
        "<section id=\"chart\"><h2>Decisions over time</h2><p class=\"legend\"><span><i class=\"sw\" style=\"background:#2e8b57\"></i>allowed</span><span><i class=\"sw\" style=\"background:#c0392b\"></i>refused</span><span><i class=\"sw\" style=\"background:#e0a100\"></i>shadow rule would have denied</span> &middot; one bar per {} s</p>\n{}</section>\n",
        r.timeline.bucket_ms / 1000,
        chart_svg(&r.timeline)
    );

    // Inventory.
    b.push_str("<section id=\"inventory\"><h2>Inventory</h2>\n<h3>Agents</h3>\n");
    let rows: Vec<Vec<String>> = inv
        .agents
        .values()
        .map(|a| {
            vec![
                format!("<code>{}</code>", esc(&a.agent)),
                time_text(a.first_unix_ms),
                time_text(a.last_unix_ms),
                a.counts.calls.to_string(),
                a.counts.allowed.to_string(),
                a.counts.denied.to_string(),
                a.counts.shadow.to_string(),
                map_text(&a.users),
                map_text(&a.rules),
            ]
        })
        .collect();
    b.push_str(&table("agents", &["agent", "first seen", "last seen", "#calls", "#allowed", "#refused", "#shadow", "users", "decided by"], &rows, "no agent seen"));
    b.push_str("<h3>REST APIs (method and route template)</h3>\n");
    let rows: Vec<Vec<String>> = inv
        .apis
        .values()
        .map(|a| {
            vec![
                esc(&a.authority),
                esc(&a.method),
                format!("<code>{}</code>{}", esc(&a.template), if a.inferred { " <span class=\"empty\">(inferred)</span>" } else { "" }),
                a.usage.counts.calls.to_string(),
                a.usage.counts.allowed.to_string(),
                a.usage.counts.denied.to_string(),
                map_text(&a.usage.agents),
                map_text(&a.usage.data_classes),
                map_text(&a.usage.decisions),
            ]
        })
        .collect();
    b.push_str(&table("apis", &["authority", "method", "route", "#calls", "#allowed", "#refused", "agents", "data classes", "decisions"], &rows, "no REST call seen"));
    b.push_str("<h3>MCP servers and tools</h3>\n");
    let mut rows = Vec::new();
    for s in inv.mcp_servers.values() {
        let server = format!("{}<code>{}</code>", esc(&s.authority), esc(&s.route));
        for (kind, map) in [("method", &s.methods), ("tool", &s.tools)] {
            for (name, u) in map {
                rows.push(vec![
                    server.clone(),
                    kind.to_owned(),
                    format!("<code>{}</code>", esc(name)),
                    u.counts.calls.to_string(),
                    u.counts.allowed.to_string(),
                    u.counts.denied.to_string(),
                    u.counts.shadow.to_string(),
                    map_text(&u.agents),
                    map_text(&u.data_classes),
                    map_text(&u.decisions),
                ]);
            }
        }
    }
    b.push_str(&table("mcp", &["server", "kind", "name", "#calls", "#allowed", "#refused", "#shadow", "agents", "data classes", "decisions"], &rows, "no MCP server seen"));
    b.push_str("<h3>LLM providers</h3>\n");
    let rows: Vec<Vec<String>> = inv
        .llm_providers
        .values()
        .map(|p| {
            vec![
                format!("{}<code>{}</code>", esc(&p.authority), esc(&p.route)),
                esc(&p.protocol),
                p.usage.counts.calls.to_string(),
                p.usage.counts.allowed.to_string(),
                p.usage.counts.denied.to_string(),
                map_text(&p.usage.agents),
                map_text(&p.usage.data_classes),
                map_text(&p.usage.decisions),
            ]
        })
        .collect();
    b.push_str(&table("llm", &["endpoint", "protocol", "#calls", "#allowed", "#refused", "agents", "data classes", "decisions"], &rows, "no LLM provider seen"));
    b.push_str("<h3>A2A agents</h3>\n");
    let mut rows = Vec::new();
    for a in inv.a2a_agents.values() {
        for (m, u) in &a.methods {
            rows.push(vec![
                format!("{}<code>{}</code>", esc(&a.authority), esc(&a.route)),
                format!("<code>{}</code>", esc(m)),
                u.counts.calls.to_string(),
                u.counts.allowed.to_string(),
                u.counts.denied.to_string(),
                map_text(&u.agents),
                map_text(&u.decisions),
            ]);
        }
    }
    b.push_str(&table("a2a", &["endpoint", "method", "#calls", "#allowed", "#refused", "agents", "decisions"], &rows, "no A2A agent seen"));
    if !inv.overflow.is_empty() {
        let _ = writeln!(b, "<p class=\"warn\">Caps reached, not kept: {}</p>", map_text(&inv.overflow));
    }
    b.push_str("</section>\n");

    // Findings.
    b.push_str("<section id=\"findings\"><h2>Findings</h2>\n");
    match &r.findings {
        None => b.push_str("<p class=\"empty\">No findings computed (run <code>interlock report --openapi FILE</code> with a policy installed or given).</p>\n"),
        Some(f) => {
            for note in &f.notes {
                let _ = writeln!(b, "<p class=\"empty\">{}</p>", esc(note));
            }
            let api_rows = |list: &[crate::findings::ApiFinding]| -> Vec<Vec<String>> {
                list.iter()
                    .map(|a| {
                        vec![
                            esc(&a.authority),
                            esc(&a.method),
                            format!("<code>{}</code>", esc(&a.template)),
                            a.calls.to_string(),
                            a.allowed.to_string(),
                            a.denied.to_string(),
                            map_text(&a.agents),
                            a.declared_as.as_deref().map(esc).unwrap_or_default(),
                        ]
                    })
                    .collect()
            };
            let head = ["authority", "method", "route", "#calls", "#allowed", "#refused", "agents", "declared as"];
            b.push_str("<h3>Shadow APIs (called, never declared)</h3>\n");
            b.push_str(&table("shadow-apis", &head, &api_rows(&f.shadow_apis), "none"));
            b.push_str("<h3>Zombie APIs (declared deprecated, still called)</h3>\n");
            b.push_str(&table("zombie-apis", &head, &api_rows(&f.zombie_apis), "none"));
            b.push_str("<h3>Least privilege: grants not used over the window</h3>\n");
            let rows: Vec<Vec<String>> = f
                .agents
                .iter()
                .flat_map(|a| a.grants.iter().map(move |g| vec![format!("<code>{}</code>", esc(&a.agent)), format!("<code>{}</code>", esc(&g.grant)), g.used.to_string(), esc(&g.suggestion)]))
                .collect();
            b.push_str(&table("unused-grants", &["agent", "grant", "#used", "suggestion"], &rows, "every grant was used"));
            b.push_str("<h3>Refused calls per agent</h3>\n");
            let rows: Vec<Vec<String>> = f
                .agents
                .iter()
                .flat_map(|a| a.denied_calls.iter().map(move |d| vec![format!("<code>{}</code>{}", esc(&a.agent), if a.in_policy { "" } else { " <span class=\"bad\">(not in the policy)</span>" }), esc(&d.call), d.denied.to_string(), map_text(&d.rules)]))
                .collect();
            b.push_str(&table("denied-calls", &["agent", "call", "#refused", "rules"], &rows, "no call was refused"));
        }
    }
    b.push_str("</section>\n");

    // Receipts and the audit chain.
    b.push_str("<section id=\"receipts\"><h2>Enforcement receipts</h2>\n");
    let chain = match r.audit.status.as_str() {
        "verified" => format!("<p class=\"ok\" id=\"audit-status\">Audit chain verified: {} records, head <code>{}</code>.</p>", r.audit.records, esc(r.audit.head.as_deref().unwrap_or_default())),
        "no receipts" => "<p class=\"empty\" id=\"audit-status\">no receipts: the audit log holds no record yet.</p>".to_owned(),
        other => format!(
            "<p class=\"bad\" id=\"audit-status\">Audit chain {}{}: {}</p>",
            esc(other),
            r.audit.broken_line.map(|l| format!(" at line {l}")).unwrap_or_default(),
            esc(r.audit.reason.as_deref().unwrap_or_default())
        ),
    };
    b.push_str(&chain);
    let d = &r.receipts.delays;
    if d.measured > 0 {
        let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3} ms"));
        let _ = writeln!(b, "<p id=\"delays\">Decision to kernel action, over {} measured receipts: min {}, median {}, max {}.</p>", d.measured, f(d.min_ms), f(d.median_ms), f(d.max_ms));
    }
    let rows: Vec<Vec<String>> = r
        .receipts
        .recent
        .iter()
        .rev()
        .map(|x| {
            vec![
                format!("<code>{}</code>", esc(&x.decision_id)),
                esc(&x.rule),
                esc(x.agent.as_deref().unwrap_or("-")),
                x.decision_unix_ms.map_or("-".to_owned(), time_text),
                esc(&x.outcome),
                x.decision_to_kernel_ms.map_or("-".to_owned(), |v| format!("{v:.3}")),
                x.sockets_destroyed.map_or("-".to_owned(), |v| v.to_string()),
                if x.quarantined { "yes" } else { "no" }.to_owned(),
                esc(&x.errors.join("; ")),
            ]
        })
        .collect();
    b.push_str(&table("receipts-table", &["decision", "rule", "agent", "decided", "outcome", "#decision to kernel (ms)", "#sockets destroyed", "quarantine", "errors"], &rows, "no receipts"));
    b.push_str("</section>\n");

    // Revocations.
    b.push_str("<section id=\"revocations\"><h2>Revocations</h2>\n");
    let rows: Vec<Vec<String>> = r
        .revocations
        .iter()
        .map(|v| {
            vec![
                esc(v.kind.as_str()),
                format!("<code>{}</code>", esc(&v.value)),
                time_text(v.created_unix_ms),
                v.expires_unix_ms.map_or("until lifted".to_owned(), time_text),
                esc(&v.source),
                esc(v.reason.as_deref().unwrap_or_default()),
            ]
        })
        .collect();
    b.push_str(&table("revocations-table", &["kind", "value", "created", "expires", "source", "reason"], &rows, "no revocation"));
    b.push_str("</section>\n");

    // Shadow mode.
    b.push_str("<section id=\"shadow\"><h2>Shadow-mode rules: what they would have done</h2>\n");
    let rows: Vec<Vec<String>> = r
        .shadow_rules
        .iter()
        .map(|s| vec![format!("<code>{}</code>", esc(&s.rule)), esc(s.description.as_deref().unwrap_or_default()), s.would_deny.to_string(), map_text(&s.agents), s.last_unix_ms.map_or("-".to_owned(), time_text)])
        .collect();
    b.push_str(&table("shadow-table", &["rule", "description", "#would have denied", "agents", "last"], &rows, "no shadow-mode rule"));
    b.push_str("</section>\n");

    // Coverage.
    let c = &r.coverage;
    let _ = writeln!(
        b,
        "<section id=\"coverage\"><h2>Coverage</h2><p><span class=\"bar\"><i style=\"width:{:.1}%\"></i></span> <strong id=\"coverage-percent\">{:.1}%</strong> of {} governed calls fully inspected; {} refused as uninspectable (body too large, unsupported encoding or content type, malformed body).</p>",
        c.inspected_percent, c.inspected_percent, c.governed, c.uninspectable
    );
    let rows: Vec<Vec<String>> = c.by_route.iter().map(|(id, rc)| vec![format!("<code>{}</code>", esc(id)), rc.governed.to_string(), rc.governed.saturating_sub(rc.uninspectable).to_string(), rc.uninspectable.to_string()]).collect();
    b.push_str(&table("coverage-table", &["governed route", "#calls", "#inspected", "#uninspectable"], &rows, "no governed call seen"));
    if !c.uninspectable_by_rule.is_empty() {
        let _ = writeln!(b, "<p>Uninspectable, by rule: {}</p>", map_text(&c.uninspectable_by_rule));
    }
    b.push_str("</section>\n");

    let subtitle = format!(
        "Window {window}{}",
        r.policy_version.as_deref().map(|v| format!(" · policy {v}")).unwrap_or_default()
    );
    TEMPLATE
        .replace("{{title}}", "Interlock evidence report")
        .replace("{{subtitle}}", &esc(&subtitle))
        .replace("{{generated}}", &esc(&iso8601(r.generated_unix_ms)))
        .replace("{{body}}", &b)
}

/// Writes `dir/report.json` and `dir/report.html`.
pub fn write(dir: &Path, r: &Report) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("report.json"), json)?;
    std::fs::write(dir.join("report.html"), render_html(r))
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
