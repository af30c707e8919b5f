//! An HTTP `ext_authz` service for `make bench`: the callout architecture most policy engines
//! use (OPA-Envoy, Authorino, custom services), answering the demo policy's header/path rules so
//! the Envoy configuration `envoy-config/bench/ext-authz.yaml` does the same job as RBAC, Lua and
//! Interlock in the comparison.
//!
//! Envoy's HTTP ext_authz forwards the original method, `path_prefix` + the original path, and
//! the headers named in `allowed_headers`; the agent arrives in `x-agent-id`, which `jwt_authn`
//! sets from the verified `azp` claim (`claim_to_headers`). 200 allows, 403/401 refuse.
//!
//! The service is deliberately cheap (one current-thread runtime, a `match` on the path) so the
//! benchmark measures what the callout costs Envoy, not this service.

use std::net::SocketAddr;

use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18081")]
    listen: SocketAddr,
}

/// The demo policy (`policies/examples/demo.json`) as far as headers and the path can express
/// it: a deny on `/api/admin/**` for everyone, then each agent's HTTP grants; `/mcp` is allowed to
/// both agents because its tool-level rules need the body, which this service does not read.
fn decide(method: &Method, path: &str, agent: Option<&str>) -> StatusCode {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if path == "/api/admin" || path.starts_with("/api/admin/") {
        return StatusCode::FORBIDDEN;
    }
    let Some(agent) = agent else { return StatusCode::UNAUTHORIZED };
    // `/api/customers/{id}`: exactly one non-empty segment after the prefix.
    let customer = path.strip_prefix("/api/customers/").is_some_and(|id| !id.is_empty() && !id.contains('/'));
    let allowed = match agent {
        "triage-bot" => {
            (method == Method::GET && customer)
                || (method == Method::POST && matches!(path, "/v1/chat/completions" | "/v1/messages" | "/mcp"))
        }
        "billing-agent" => (method == Method::GET && (customer || path == "/api/customers")) || (method == Method::POST && path == "/mcp"),
        _ => false,
    };
    if allowed { StatusCode::OK } else { StatusCode::FORBIDDEN }
}

async fn check(method: Method, uri: Uri, headers: HeaderMap) -> StatusCode {
    let agent = headers.get("x-agent-id").and_then(|v| v.to_str().ok());
    decide(&method, uri.path(), agent)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app = Router::new().fallback(check);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("bench-ext-authz: listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_the_demo_policy_header_rules() {
        let cases = [
            (Method::GET, "/api/customers/42?fields=name", Some("triage-bot"), StatusCode::OK),
            (Method::GET, "/api/customers", Some("triage-bot"), StatusCode::FORBIDDEN),
            (Method::GET, "/api/customers", Some("billing-agent"), StatusCode::OK),
            (Method::DELETE, "/api/customers/42", Some("billing-agent"), StatusCode::FORBIDDEN),
            (Method::GET, "/api/admin/users", Some("billing-agent"), StatusCode::FORBIDDEN),
            (Method::POST, "/mcp", Some("triage-bot"), StatusCode::OK),
            (Method::GET, "/api/customers/42", None, StatusCode::UNAUTHORIZED),
            (Method::GET, "/api/customers/42", Some("other"), StatusCode::FORBIDDEN),
        ];
        for (method, path, agent, want) in cases {
            assert_eq!(decide(&method, path, agent), want, "{method} {path} as {agent:?}");
        }
    }
}
