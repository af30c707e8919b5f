//! Interlock's policy engine.
//!
//! Pure: no proxy-wasm, no eBPF loader, no async runtime, no clock, no I/O. A policy document is
//! parsed strictly ([`schema`]), validated and compiled once into indexed tables ([`Engine`]); a
//! request view ([`request::HttpRequest`]) is then evaluated to a [`decision::Evaluation`].

pub mod decision;
pub mod engine;
pub mod error;
pub mod event;
pub mod request;
pub mod schema;

pub use decision::{Action, Decision, Evaluation, Facts};
pub use engine::Engine;
pub use error::PolicyError;
pub use event::DecisionEvent;
pub use request::{HttpRequest, VerifiedIdentity};
pub use schema::PolicyDocument;
