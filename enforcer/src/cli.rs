//! The `interlock` command line: parses arguments, runs a command, prints. What the commands
//! actually do lives in the library.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use interlock_enforcer::{api, auth};
use interlock_enforcer::check::{CheckError, check_file};
use interlock_enforcer::client::{DEFAULT_ENFORCER_URL, Enforcer};
use interlock_enforcer::kernel::EventPriority;
use interlock_enforcer::format::human_line;
use interlock_enforcer::live_client;
use interlock_enforcer::revocations::{MAX_TTL_SECS, RevocationKind, RevokeRequest};
use interlock_enforcer::state::{LiveState, StateError, now_unix_ms};
use interlock_enforcer::store::{DEFAULT_RING_CAPACITY, EventStore};
use interlock_enforcer::token::{self, TokenRequest};

/// Interlock: runtime control of AI agents' API calls.
#[derive(Debug, Parser)]
#[command(name = "interlock", version, about)]
pub struct Cli {
    /// Base URL of the enforcer API, for commands that talk to it.
    #[arg(long, global = true, env = "INTERLOCK_ENFORCER", default_value = DEFAULT_ENFORCER_URL)]
    enforcer: String,

    /// For commands that talk to the enforcer: the file holding its admin token. Default: the
    /// first readable of .interlock/admin.token and /var/lib/interlock/admin.token, for an
    /// enforcer on loopback only. `serve`: where the token is, created (mode 0600) when absent;
    /// default <data-dir>/admin.token.
    #[arg(long, global = true, env = "INTERLOCK_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,

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
        /// Where the event log (events.jsonl), the installed policy and the revocations are kept.
        #[arg(long, default_value = ".interlock")]
        data_dir: PathBuf,
        /// Policy to install at start when the data directory holds none yet (a stored policy,
        /// pushed since, wins). Refuses to start when it is invalid.
        #[arg(long)]
        policy: Option<PathBuf>,
        #[command(flatten)]
        kernel: crate::cli_kernel::KernelArgs,
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
    /// Installs or shows the policy the filters run.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Revokes a user, session, trace or agent, fleet-wide: every filter refuses it (403).
    Revoke {
        #[command(flatten)]
        principal: PrincipalArg,
        /// Lift it by itself after this many seconds (1 to 31536000); until lifted when absent.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_TTL_SECS))]
        ttl: Option<u64>,
        /// Why, for the record.
        #[arg(long)]
        reason: Option<String>,
        /// Print the revocation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lifts a revocation. Exit status 1 when the principal is not revoked.
    Unrevoke {
        #[command(flatten)]
        principal: PrincipalArg,
    },
    /// Lists the active revocations.
    Revocations {
        /// Print the enforcer's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Kernel(crate::cli_kernel::KernelCommand),
    #[command(flatten)]
    Discover(crate::cli_discover::DiscoverCommand),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Checks FILE with the filter's engine, then installs it at the enforcer; filters pick it up
    /// live. An invalid FILE is not sent.
    Push { file: PathBuf },
    /// Prints the installed policy document.
    Show,
}

/// The enforcer the operator commands talk to, and how they authenticate.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub token_file: Option<PathBuf>,
}

impl Target {
    /// The API client, with the admin token when one is found ([`interlock_enforcer::auth`]).
    pub fn client(&self) -> Result<Enforcer> {
        Ok(Enforcer::for_operator(&self.url, self.token_file.as_deref())?)
    }
}

/// Exactly one principal.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct PrincipalArg {
    /// An end user (JWT `sub`).
    #[arg(long)]
    user: Option<String>,
    /// A session (JWT `sid`).
    #[arg(long)]
    session: Option<String>,
    /// A W3C trace id.
    #[arg(long)]
    trace: Option<String>,
    /// An agent (JWT `azp`).
    #[arg(long)]
    agent: Option<String>,
}

impl PrincipalArg {
    fn into_parts(self) -> Result<(RevocationKind, String)> {
        match (self.user, self.session, self.trace, self.agent) {
            (Some(v), None, None, None) => Ok((RevocationKind::User, v)),
            (None, Some(v), None, None) => Ok((RevocationKind::Session, v)),
            (None, None, Some(v), None) => Ok((RevocationKind::Trace, v)),
            (None, None, None, Some(v)) => Ok((RevocationKind::Agent, v)),
            _ => anyhow::bail!("name exactly one of --user, --session, --trace, --agent"),
        }
    }
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let target = Target { url: cli.enforcer.clone(), token_file: cli.admin_token_file.clone() };
    match cli.command {
        Command::Serve { listen, data_dir, policy, kernel } => {
            serve(listen, data_dir, policy, cli.admin_token_file.as_deref(), &kernel)
        }
        Command::Kernel(command) => crate::cli_kernel::run(command, &target, runtime),
        Command::Discover(command) => crate::cli_discover::run(command, &target, runtime),
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
            let enforcer = target.client()?;
            runtime()?.block_on(events(enforcer, !no_follow, json, after))
        }
        Command::Policy { command } => {
            let enforcer = target.client()?;
            match command {
                PolicyCommand::Push { file } => policy_push(&enforcer, &file),
                PolicyCommand::Show => policy_show(&enforcer),
            }
        }
        Command::Revoke { principal, ttl, reason, json } => {
            let enforcer = target.client()?;
            let (kind, value) = principal.into_parts()?;
            let req = RevokeRequest::new(kind, value, ttl, reason)?;
            let revocation = runtime()?.block_on(live_client::revoke(&enforcer, &req))?;
            if json {
                println!("{}", serde_json::to_string(&revocation)?);
            } else {
                println!("{}", live_client::human_revocation(&revocation, now_unix_ms()));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Unrevoke { principal } => {
            let enforcer = target.client()?;
            let (kind, value) = principal.into_parts()?;
            match runtime()?.block_on(live_client::unrevoke(&enforcer, kind, &value))? {
                Some(removed) => {
                    println!("lifted the revocation of {kind} {value:?} ({})", removed.id);
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("interlock: {kind} {value:?} is not revoked");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Revocations { json } => {
            let enforcer = target.client()?;
            let list = runtime()?.block_on(live_client::revocations(&enforcer))?;
            if json {
                println!("{}", serde_json::json!({ "revocations": list }));
            } else if list.is_empty() {
                println!("no active revocations");
            } else {
                print!("{}", live_client::revocations_table(&list, now_unix_ms()));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `interlock policy push FILE`: checked here first with the filter's engine, so an invalid
/// file never reaches the enforcer.
fn policy_push(enforcer: &Enforcer, file: &std::path::Path) -> Result<ExitCode> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(source) => {
            eprintln!("{}", CheckError::Read { path: file.to_owned(), source });
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Err(source) = interlock_enforcer::policy_store::validate(&text) {
        eprintln!("{}", CheckError::Invalid { path: file.to_owned(), source });
        return Ok(ExitCode::FAILURE);
    }
    let pushed = runtime()?.block_on(live_client::push_policy(enforcer, text.as_bytes()))?;
    println!(
        "installed policy {:?} as generation {} ({} rules)",
        pushed.policy_version, pushed.generation, pushed.rules
    );
    Ok(ExitCode::SUCCESS)
}

/// `interlock policy show`: the installed document, pretty-printed.
fn policy_show(enforcer: &Enforcer) -> Result<ExitCode> {
    match runtime()?.block_on(live_client::current_policy(enforcer))? {
        Some(current) => {
            println!("{}", serde_json::to_string_pretty(&current.policy)?);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("interlock: no policy installed at {}", enforcer.url());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

fn serve(
    listen: SocketAddr,
    data_dir: PathBuf,
    seed: Option<PathBuf>,
    token_file: Option<&std::path::Path>,
    kernel_args: &crate::cli_kernel::KernelArgs,
) -> Result<ExitCode> {
    let (store, recovery) = EventStore::open(&data_dir, DEFAULT_RING_CAPACITY)?;
    let token_path = token_file.map_or_else(|| data_dir.join(auth::ADMIN_TOKEN_FILE), std::path::Path::to_path_buf);
    let (admin, created) = auth::AdminToken::load_or_create(&token_path)?;
    eprintln!(
        "interlock enforcer: admin token {} {} (operator routes need it; `interlock` reads it from there)",
        if created { "created in" } else { "read from" },
        token_path.display()
    );
    let live = open_live_state(&data_dir, seed.as_deref())?;
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
    // Before listening: once the API answers, the kernel side is in place (or said why not).
    let kernel = crate::cli_kernel::start(kernel_args, &data_dir)?;
    let priority = kernel_args.event_priority();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if priority != EventPriority::Off {
        // Every thread of the runtime starts fair and ahead of ordinary work; the blocking
        // threads (the event log's fsync, reports, discovery) stay so.
        builder.on_thread_start(interlock_enforcer::kernel::sys::prioritize_blocking_thread);
        // The workers, which read every request and hand kernel-bound decisions to the kernel
        // worker, as asked: once each, the first time they park (tokio runs this hook on its
        // workers only, and a worker parks as soon as it is idle).
        builder.on_thread_park(move || {
            thread_local! { static ASKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) }; }
            if !ASKED.replace(true) {
                interlock_enforcer::kernel::sys::prioritize_event_thread(priority);
            }
        });
    }
    let runtime = builder.enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                // The kernel side is already set up: undo it as --cleanup-on-exit says.
                crate::cli_kernel::stop(&kernel, kernel_args).await;
                return Err(e).with_context(|| format!("cannot listen on {listen}"));
            }
        };
        let addr = listener.local_addr()?;
        // A task run on a worker: that worker has started, and asks for its scheduling when it
        // next parks.
        let _ = tokio::spawn(async {}).await;
        for _ in 0..100 {
            if priority == EventPriority::Off || interlock_enforcer::kernel::sys::event_threads_scheduling().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        eprintln!(
            "interlock enforcer: event threads scheduled {} (--event-priority {})",
            interlock_enforcer::kernel::sys::event_threads_scheduling().unwrap_or("as started"),
            match priority {
                EventPriority::Deadline => "deadline",
                EventPriority::Fair => "fair",
                EventPriority::Realtime => "realtime",
                EventPriority::Off => "off",
            }
        );
        // Tests and scripts read the address from this line (with --listen 127.0.0.1:0).
        eprintln!(
            "interlock enforcer: listening on http://{addr} (event log {}: {} records, last seq {})",
            recovery.path.display(),
            recovery.records,
            recovery.last_seq
        );
        let served = api::serve_with_kernel(listener, store, live, Some(kernel.clone()), data_dir.clone(), admin, shutdown).await;
        crate::cli_kernel::stop(&kernel, kernel_args).await;
        served.context("serving the API")?;
        eprintln!("interlock enforcer: stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Loads the policy and revocations, seeds the policy from `seed` when none is stored, and logs
/// which policy is active.
fn open_live_state(data_dir: &std::path::Path, seed: Option<&std::path::Path>) -> Result<LiveState> {
    let (live, recovered) = LiveState::open(data_dir)?;
    if let Some(path) = seed {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the policy {}", path.display()))?;
        match live.seed_policy(&text) {
            Ok(Some(seeded)) => eprintln!(
                "interlock enforcer: installed {} as the first policy (generation {})",
                path.display(),
                seeded.generation
            ),
            Ok(None) => eprintln!(
                "interlock enforcer: --policy {} not installed: the data directory already holds a policy (push it to replace that one)",
                path.display()
            ),
            Err(StateError::InvalidPolicy(e)) => anyhow::bail!("{}: invalid policy: {e}", path.display()),
            Err(e) => return Err(e).with_context(|| format!("installing the policy {}", path.display())),
        }
    }
    let snapshot = live.snapshot();
    match &snapshot.policy {
        Some(p) => eprintln!(
            "interlock enforcer: active policy {:?}, generation {} ({} rules); state version {}, {} revocations active ({})",
            p.label,
            p.generation,
            p.rules,
            snapshot.version,
            snapshot.active_revocations(now_unix_ms()).count(),
            recovered.revocations_file.display()
        ),
        None => eprintln!(
            "interlock enforcer: no policy installed (interlock policy push FILE, or serve --policy FILE); state version {}, {} revocations active",
            snapshot.version,
            snapshot.active_revocations(now_unix_ms()).count()
        ),
    }
    Ok(live)
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
            // A refused token will not start working by retrying: say so and stop.
            Err(e) if follow && !matches!(e, interlock_enforcer::client::ClientError::Unauthorized { .. }) => {
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
