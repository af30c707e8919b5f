//! The `interlock` command line: parses arguments, runs a command, prints. What the commands
//! actually do lives in the library.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use interlock_enforcer::api;
use interlock_enforcer::check::{CheckError, check_file};
use interlock_enforcer::client::{DEFAULT_ENFORCER_URL, Enforcer};
use interlock_enforcer::format::human_line;
use interlock_enforcer::store::{DEFAULT_RING_CAPACITY, EventStore};
use interlock_enforcer::token::{self, TokenRequest};

/// Interlock: runtime control of AI agents' API calls.
#[derive(Debug, Parser)]
#[command(name = "interlock", version, about)]
pub struct Cli {
    /// Base URL of the enforcer API, for commands that talk to it.
    #[arg(long, global = true, env = "INTERLOCK_ENFORCER", default_value = DEFAULT_ENFORCER_URL)]
    enforcer: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the enforcer daemon: receives decision events and serves the API.
    Serve {
        /// Address to listen on (port 0 picks a free one; the address is logged).
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
        /// Where the event log (events.jsonl) is kept.
        #[arg(long, default_value = ".interlock")]
        data_dir: PathBuf,
    },
    /// Prints a demo JWT (ES256) that the demo Envoy accepts. The demo key is TEST ONLY.
    Token {
        /// Agent id (`azp`).
        #[arg(long)]
        agent: String,
        /// End user (`sub`).
        #[arg(long, default_value = token::DEFAULT_USER)]
        user: String,
        /// Session id (`sid`); a random 16-hex-digit id when absent.
        #[arg(long)]
        session: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = token::DEFAULT_TTL_SECS, value_parser = clap::value_parser!(u64).range(1..))]
        ttl: u64,
        /// PEM file of an EC P-256 private key to sign with instead of the demo key.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Validates a policy file; errors name the JSON path. Exit status 1 when invalid.
    Check { file: PathBuf },
    /// Prints decision events from the enforcer, following new ones until Ctrl-C.
    Events {
        /// Print what is there and exit instead of following.
        #[arg(long)]
        no_follow: bool,
        /// Print each record as one JSON line, as the enforcer stores it.
        #[arg(long)]
        json: bool,
        /// Start after this seq (0: from the first event).
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve { listen, data_dir } => serve(listen, data_dir),
        Command::Token { agent, user, session, ttl, key } => {
            let key_pem = match &key {
                Some(path) => std::fs::read(path).with_context(|| format!("cannot read the key {}", path.display()))?,
                None => token::DEMO_KEY_PEM.as_bytes().to_vec(),
            };
            let session = match session {
                Some(s) => s,
                None => token::random_session_id()?,
            };
            let req = TokenRequest { agent, user, session, ttl_secs: ttl, now_unix: token::now_unix() };
            let jwt = token::sign(&req, &key_pem)?;
            println!("{jwt}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { file } => match check_file(&file) {
            Ok(report) => {
                println!("{}: ok (policy version {}, {} rules)", file.display(), report.version, report.rules);
                Ok(ExitCode::SUCCESS)
            }
            Err(e @ (CheckError::Invalid { .. } | CheckError::Read { .. })) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Events { no_follow, json, after } => {
            let enforcer = Enforcer::parse(&cli.enforcer)?;
            runtime()?.block_on(events(enforcer, !no_follow, json, after))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

fn serve(listen: SocketAddr, data_dir: PathBuf) -> Result<ExitCode> {
    let (store, recovery) = EventStore::open(&data_dir, DEFAULT_RING_CAPACITY)?;
    if let Some(torn) = &recovery.torn {
        eprintln!(
            "interlock enforcer: {}: ignored a torn last line (line {}, {} bytes at offset {}: {}); the file now ends at the last whole record",
            recovery.path.display(),
            torn.line,
            torn.len,
            torn.offset,
            torn.reason
        );
    }
    runtime()?.block_on(async move {
        let shutdown = shutdown_signal()?;
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        // Tests and scripts read the address from this line (with --listen 127.0.0.1:0).
        eprintln!(
            "interlock enforcer: listening on http://{addr} (event log {}: {} records, last seq {})",
            recovery.path.display(),
            recovery.records,
            recovery.last_seq
        );
        api::serve(listener, store, shutdown).await.context("serving the API")?;
        eprintln!("interlock enforcer: stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Completes on SIGINT or SIGTERM. The handlers are installed before this returns, so a signal
/// that arrives while the server starts is not lost (nor does it kill the process mid-write).
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        Ok(async move {
            let name = tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            };
            eprintln!("interlock enforcer: {name}, shutting down");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if tokio::signal::ctrl_c().await.is_err() {
                // Without a handler, waiting forever beats shutting down at once.
                std::future::pending::<()>().await;
            }
            eprintln!("interlock enforcer: Ctrl-C, shutting down");
        })
    }
}

/// Long-poll wait per request while following: below the API's maximum, so the server, not the
/// client's deadline, ends an idle poll.
const FOLLOW_WAIT_MS: u64 = 25_000;

async fn events(enforcer: Enforcer, follow: bool, json: bool, mut after: u64) -> Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let mut failing = false;
    loop {
        let wait_ms = if follow { FOLLOW_WAIT_MS } else { 0 };
        let page = match enforcer.events(after, api::DEFAULT_LIMIT, wait_ms).await {
            Ok(page) => page,
            Err(e) if follow => {
                // Following survives an enforcer restart: say so once, retry quietly.
                if !failing {
                    eprintln!("interlock events: {e}; retrying every second");
                    failing = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if failing {
            eprintln!("interlock events: reconnected to {}", enforcer.url());
            failing = false;
        }
        for record in &page.events {
            let line = if json { serde_json::to_string(record)? } else { human_line(record) };
            if let Err(e) = writeln!(stdout, "{line}") {
                // `interlock events | head` closes the pipe: that is the reader being done.
                return if e.kind() == std::io::ErrorKind::BrokenPipe { Ok(ExitCode::SUCCESS) } else { Err(e.into()) };
            }
        }
        if let Err(e) = stdout.flush() {
            return if e.kind() == std::io::ErrorKind::BrokenPipe { Ok(ExitCode::SUCCESS) } else { Err(e.into()) };
        }
        let full_page = page.events.len() >= api::DEFAULT_LIMIT;
        after = page.next.max(after);
        if !follow && !full_page {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn enforcer_flag_is_global() {
        let cli =
            Cli::try_parse_from(["interlock", "events", "--enforcer", "http://10.0.0.1:9090", "--no-follow"]).unwrap();
        assert_eq!(cli.enforcer, "http://10.0.0.1:9090");
        let cli = Cli::try_parse_from(["interlock", "--enforcer", "http://h:1", "events"]).unwrap();
        assert_eq!(cli.enforcer, "http://h:1");
    }

    #[test]
    fn ttl_zero_is_a_usage_error() {
        assert!(Cli::try_parse_from(["interlock", "token", "--agent", "a", "--ttl", "0"]).is_err());
    }
}
