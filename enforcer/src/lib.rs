//! Interlock's node daemon, the enforcer, and what the `interlock` command does.
//!
//! One module per concern, so kernel enforcement, revocations and the audit chain can each be
//! added as their own module next to these:
//! - [`store`]: the durable decision-event log and its in-memory ring;
//! - [`batch`]: validation of event batches as the filter sends them;
//! - [`api`]: the HTTP API (axum) over the store;
//! - [`client`]: the operator commands' client for that API;
//! - [`token`]: demo identity tokens;
//! - [`check`]: policy validation with the filter's own engine;
//! - [`format`](mod@format): how events are shown to people.

pub mod api;
pub mod batch;
pub mod check;
pub mod client;
pub mod format;
pub mod store;
pub mod token;
