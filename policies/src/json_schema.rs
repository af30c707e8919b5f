//! The published JSON Schema of the policy document (`policies/schema.json`).
//!
//! Generated from the types in [`crate::schema`], so the doc comments there are the field
//! descriptions editors show, and `#[serde(deny_unknown_fields)]` becomes
//! `"additionalProperties": false`. The checked-in file is compared with this function's output by
//! `policies/tests/schema.rs`, which fails when the file is stale and rewrites it under
//! `INTERLOCK_BLESS=1` (agentgateway keeps `schema/config.json` honest the same way).

use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::schema::PolicyDocument;

/// The schema's `$id`: where the published file lives. Versioned with the document format.
pub const SCHEMA_ID: &str = "https://interlock.dev/schema/policy-v1.json";

/// The schema's title.
pub const SCHEMA_TITLE: &str = "Interlock policy v1";

/// The JSON Schema (draft 2020-12) of [`PolicyDocument`], as the deserializer accepts it: fields
/// with defaults are optional and say their default, unknown fields are refused.
pub fn json_schema() -> Value {
    // Draft 2020-12 with the deserialize contract: the schema describes what an operator may
    // write (the input), not what serializing an engine's document would print.
    let mut schema = SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<PolicyDocument>();
    schema.insert("$id".to_owned(), Value::from(SCHEMA_ID));
    // schemars titles the root after the Rust type (`PolicyDocument`); people see this one.
    schema.insert("title".to_owned(), Value::from(SCHEMA_TITLE));
    schema.to_value()
}
