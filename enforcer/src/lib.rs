//! Interlock's node daemon, the enforcer, and what the `interlock` command does.
//!
//! One module per concern, so kernel enforcement, revocations and the audit chain can each be
//! added as their own module next to these:
//! - [`store`]: the durable decision-event log and its in-memory ring;
//! - [`batch`]: validation of event batches as the filter sends them;
//! - [`api`]: the HTTP API (axum) over the store; [`auth`] (the operators' admin token) and
//!   [`event_auth`] (what an event may make the kernel do, by who posted it) guard it;
//! - [`client`]: the operator commands' client for that API;
//! - [`token`]: demo identity tokens;
//! - [`check`]: policy validation with the filter's own engine;
//! - [`format`](mod@format): how events are shown to people;
//! - [`state`]: the live state filters long-poll (policy and revocations under one version),
//!   with [`policy_store`] (the installed policy on disk) and [`revocations`] (the pure part);
//!   [`live_api`] serves it and [`live_client`] is what the operator commands do with it;
//! - [`kernel`]: the one module that touches BPF and sockets (quarantine, termination), with
//!   [`enforce`] (decision to kernel, one worker), [`audit`] (hash-chained receipts) and
//!   [`workload`] (the managed cgroup root, `interlock exec`);
//! - discover and govern: [`inventory`] (what agents really do, folded from the event log),
//!   [`findings`] (shadow and zombie APIs against OpenAPI, unused grants), [`suggest`]
//!   (least-privilege grants from behaviour), [`replay`] (a candidate policy over recorded
//!   decisions), [`report`] (the evidence report); [`discover_api`] serves them.

pub mod api;
pub mod audit;
pub mod auth;
pub mod batch;
pub mod check;
pub mod client;
pub mod discover_api;
pub mod enforce;
pub mod event_auth;
pub mod findings;
pub mod format;
pub mod inventory;
pub mod kernel;
pub mod kernel_api;
pub mod live_api;
pub mod live_client;
pub mod policy_store;
pub mod replay;
pub mod report;
pub mod revocations;
pub mod state;
pub mod store;
pub mod suggest;
pub mod token;
pub mod workload;
