//! Interlock's policy engine.
//!
//! Pure: no proxy-wasm, no eBPF loader, no async runtime, no clock, no I/O. A policy document is
//! parsed strictly ([`schema`]), validated and compiled once into indexed tables ([`Engine`]); a
//! request view ([`request::HttpRequest`]) is then evaluated to a [`decision::Evaluation`], in two
//! phases when the body must be inspected ([`eval::HeadersVerdict`]).

pub mod builtin;
pub mod corpus;
pub mod decision;
pub mod detect;
pub mod engine;
pub mod error;
pub mod eval;
pub mod event;
pub mod glob;
mod index;
pub mod inspect;
pub mod json;
pub mod json_doc;
pub mod json_schema;
pub mod jsonrpc;
pub mod llm;
pub mod path;
pub mod prepared;
pub mod ratelimit;
pub mod request;
pub mod revocation;
pub mod schema;
pub mod sse;
pub mod template;
pub mod text;
pub mod tools;
pub mod traceparent;

pub use decision::{Action, Decision, Evaluation, Facts};
pub use engine::Engine;
pub use error::PolicyError;
pub use eval::{HeadersVerdict, LimitCheck, PendingBody};
pub use event::DecisionEvent;
pub use prepared::{PolicySummary, PreparedPolicy, ValidatedPolicy};
pub use request::{HttpRequest, VerifiedIdentity};
pub use schema::PolicyDocument;
pub use text::Text;
