//! interlock-demo-upstream: the service Interlock's demo and end-to-end tests run behind Envoy.
//! One listener serves an MCP server, a CRM REST API, a mock LLM and an A2A agent, and reports at
//! `GET /__demo/stats` what it executed, so a test can prove a denied call never reached it.

mod a2a;
mod app;
mod crm;
mod data;
mod jsonrpc;
mod llm;
mod mcp;
mod stats;

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;

/// How long open connections get to finish once a stop signal arrives.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Demo upstream for Interlock: MCP server, CRM API, mock LLM, A2A agent"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!(
        "demo-upstream: listening on http://{}",
        listener.local_addr()?
    );

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = app::router(app::AppState::default());
    let mut server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                // A dropped sender also means stop.
                let _ = stop_rx.await;
            })
            .into_future(),
    );

    tokio::select! {
        ended = &mut server => {
            // The server only ends by itself on an error.
            ended.context("server task failed")?.context("server failed")?;
            return Ok(());
        }
        signal = stop_signal() => {
            let name = signal?;
            eprintln!("demo-upstream: {name}, stopping");
        }
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(ended) => ended
            .context("server task failed")?
            .context("server failed")?,
        // A client holding a connection open must not keep the demo from stopping.
        Err(_) => {
            eprintln!("demo-upstream: connections still open after {DRAIN_TIMEOUT:?}, exiting")
        }
    }
    eprintln!("demo-upstream: stopped");
    Ok(())
}

/// Resolves with the signal's name on SIGINT or SIGTERM.
async fn stop_signal() -> anyhow::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT").context("cannot watch SIGINT"),
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("cannot watch Ctrl-C")?;
        Ok("Ctrl-C")
    }
}
