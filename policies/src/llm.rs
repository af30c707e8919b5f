//! LLM traffic: the tools a request declares or forces, the texts it carries, and the tool calls a
//! model proposes, plain or streamed.
//!
//! Providers and forms:
//!
//! - OpenAI Chat Completions (`messages`, `tools[].function.name`, legacy `functions`,
//!   `tool_choice`, legacy `function_call`; streamed `chat.completion.chunk`s with
//!   `delta.tool_calls[]` fragments keyed by `index`, then `data: [DONE]`).
//! - OpenAI Responses (`input`, `tools[].name`, `output[]` items of type `function_call`), plain
//!   and streamed (`response.output_item.added` naming a call, `response.function_call_arguments.
//!   delta` fragments keyed by `output_index`, `response.output_text.delta`, and the `*.done` and
//!   `response.completed` events that repeat the whole output).
//! - Anthropic Messages (`tools[].name`, `tool_choice`, `system`, `content[]` blocks; streamed
//!   `content_block_start` / `input_json_delta` / `content_block_stop` / `message_stop`).
//!
//! Everything is strict where the provider requires a type: a wrong type is an [`LlmError`] naming
//! the JSON path (`tools[2].function.name: expected a string`), and a form this module does not
//! understand (an unknown tool type, a forced-choice shape it cannot read, an unknown content block
//! that may carry a tool use) is refused, never skipped: a tool the engine did not see must not
//! reach a model or an agent. Tool names must be 1 to 128 bytes of `[A-Za-z0-9_.-]` (OpenAI allows
//! `[a-zA-Z0-9_-]{1,64}`; Anthropic the same shape), so homoglyphs, zero-width and bidi characters
//! in a name are refused rather than compared.
//!
//! Bounds: at most [`MAX_TOOL_CALLS`] calls per response, [`MAX_DECLARED_TOOLS`] declared tools,
//! names of at most [`MAX_TOOL_NAME_LEN`] bytes, [`MAX_ARGUMENTS_BYTES`] of arguments per call, and
//! every JSON text (stream chunks, arguments) is read with [`parse_strict`] (no duplicate keys,
//! depth at most [`MAX_JSON_DEPTH`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use crate::json::{JsonError, parse_strict};
use crate::jsonrpc::is_valid_tool_name;
use crate::sse::SseEvent;

pub use crate::jsonrpc::MAX_TOOL_NAME_LEN;

/// Most tool calls one response (all choices together) may propose.
pub const MAX_TOOL_CALLS: usize = 128;
/// Most tools one request may declare (OpenAI documents 128; Anthropic no limit).
pub const MAX_DECLARED_TOOLS: usize = 1024;
/// Longest arguments of one tool call, in bytes of JSON text.
pub const MAX_ARGUMENTS_BYTES: usize = 1 << 20;
/// Deepest nesting of a stream chunk or of a call's arguments.
pub const MAX_JSON_DEPTH: usize = 64;
/// Longest client- or upstream-supplied text quoted back in an error (it ends up in logs).
const MAX_QUOTED: usize = 64;

/// Which API the traffic speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// OpenAI Chat Completions and the Responses API (told apart by the body or first event).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

/// What a request asks of the model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LlmRequest<'v> {
    pub model: Option<String>,
    pub stream: bool,
    /// Every tool name the request declares, in order.
    pub declared_tools: Vec<String>,
    /// The tool the request forces the model to call (`tool_choice` naming one tool).
    pub forced_tool: Option<String>,
    /// Every text the request carries, for secret scanning: message contents of every role, the
    /// system prompt, tool results, and the arguments of earlier tool calls. Borrowed from the
    /// body (a model's context can be most of a large body).
    pub texts: Vec<Cow<'v, str>>,
}

/// One tool call a model proposes.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposedToolCall {
    /// OpenAI: the choice's `index` (several choices when `n` > 1). Anthropic: always 0.
    pub choice: usize,
    /// OpenAI: position in `tool_calls` (the stream's `tool_calls[].index`); Responses: position
    /// in `output`; Anthropic: the content block index.
    pub index: usize,
    pub id: Option<String>,
    pub name: String,
    /// The arguments, when `raw_arguments` is strict JSON (Anthropic's non-streamed `input` is
    /// already JSON and always present).
    pub arguments: Option<Value>,
    /// The arguments as the upstream sent them (OpenAI's `arguments` string, Anthropic's
    /// concatenated `partial_json`, or the serialized `input`).
    pub raw_arguments: String,
}

/// What a non-streamed response proposes and says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlmResponse<'v> {
    pub tool_calls: Vec<ProposedToolCall>,
    /// Text contents (and refusals), for secret scanning, borrowed from the body.
    pub texts: Vec<Cow<'v, str>>,
}

/// Why a body or stream event cannot be read as the provider's API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error("{path}: expected {expected}")]
    WrongType { path: String, expected: &'static str },
    #[error("{path}: missing")]
    Missing { path: String },
    #[error("{path}: tool name {name:?} is not 1 to {MAX_TOOL_NAME_LEN} characters of [A-Za-z0-9_.-]")]
    InvalidToolName { path: String, name: String },
    /// A form this module does not read (a tool type, a `tool_choice`, a content block type): refused
    /// because it could carry a tool the engine would not see.
    #[error("{path}: unsupported value {value:?}")]
    Unsupported { path: String, value: String },
    /// Two members that mean the same thing to different readers (`messages` and `input`;
    /// `tool_choice` and `function_call`).
    #[error("{first} and {second} are both present")]
    Ambiguous { first: &'static str, second: &'static str },
    #[error("{what} exceeds the limit of {limit}")]
    TooLarge { what: &'static str, limit: usize },
    #[error("{path}: {source}")]
    Json {
        path: String,
        #[source]
        source: JsonError,
    },
    /// A name fragment for a tool call whose name was already judged complete (OpenAI streams).
    #[error("choice {choice} tool call {index}: name fragment after the name was complete")]
    LateNameFragment { choice: usize, index: usize },
    /// An SSE `event:` name that disagrees with the `type` inside its data (Anthropic): SDKs
    /// dispatch on the first, line readers on the second.
    #[error("SSE event {event:?} carries data of type {data_type:?}")]
    EventTypeMismatch { event: String, data_type: String },
    /// Any other violation of the stream's protocol (a delta for a block never started, a call
    /// after its choice finished, an event after the end).
    #[error("{path}: {reason}")]
    InvalidStream { path: String, reason: &'static str },
}

// ---------------------------------------------------------------------------------------------
// JSON paths and typed access

/// A JSON path built on the stack and rendered only when an error needs it.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root(&'static str),
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    fn key(&'a self, key: &'a str) -> Path<'a> {
        Path::Key(self, key)
    }

    fn index(&'a self, index: usize) -> Path<'a> {
        Path::Index(self, index)
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root(name) => f.write_str(name),
            Path::Key(Path::Root(""), key) => f.write_str(key),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

fn quote(text: &str) -> String {
    text.chars().take(MAX_QUOTED).collect()
}

fn wrong(path: &Path<'_>, expected: &'static str) -> LlmError {
    LlmError::WrongType { path: path.to_string(), expected }
}

fn unsupported(path: &Path<'_>, value: &str) -> LlmError {
    LlmError::Unsupported { path: path.to_string(), value: quote(value) }
}

fn object<'v>(value: &'v Value, path: &Path<'_>) -> Result<&'v Map<String, Value>, LlmError> {
    value.as_object().ok_or_else(|| wrong(path, "an object"))
}

fn string<'v>(value: &'v Value, path: &Path<'_>) -> Result<&'v str, LlmError> {
    value.as_str().ok_or_else(|| wrong(path, "a string"))
}

/// A member that is absent or `null` is `None` (every provider treats an explicit `null` on an
/// optional member as absent).
fn member<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn required<'v>(map: &'v Map<String, Value>, key: &str, path: &Path<'_>) -> Result<&'v Value, LlmError> {
    member(map, key).ok_or_else(|| LlmError::Missing { path: path.key(key).to_string() })
}

fn opt_str<'v>(map: &'v Map<String, Value>, key: &str, path: &Path<'_>) -> Result<Option<&'v str>, LlmError> {
    member(map, key).map(|v| string(v, &path.key(key))).transpose()
}

fn req_str<'v>(map: &'v Map<String, Value>, key: &str, path: &Path<'_>) -> Result<&'v str, LlmError> {
    string(required(map, key, path)?, &path.key(key))
}

fn opt_array<'v>(map: &'v Map<String, Value>, key: &str, path: &Path<'_>) -> Result<&'v [Value], LlmError> {
    match member(map, key) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(wrong(&path.key(key), "an array")),
    }
}

fn opt_bool(map: &Map<String, Value>, key: &str, path: &Path<'_>) -> Result<Option<bool>, LlmError> {
    member(map, key).map(|v| v.as_bool().ok_or_else(|| wrong(&path.key(key), "a boolean"))).transpose()
}

fn req_index(map: &Map<String, Value>, key: &str, path: &Path<'_>) -> Result<usize, LlmError> {
    required(map, key, path)?
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| wrong(&path.key(key), "a non-negative integer"))
}

/// A tool name: a string of 1 to 128 bytes of `[A-Za-z0-9_.-]`.
fn tool_name(value: &Value, path: &Path<'_>) -> Result<String, LlmError> {
    let name = string(value, path)?;
    if !is_valid_tool_name(name) {
        return Err(LlmError::InvalidToolName { path: path.to_string(), name: quote(name) });
    }
    Ok(name.to_owned())
}

fn req_tool_name(map: &Map<String, Value>, key: &str, path: &Path<'_>) -> Result<String, LlmError> {
    tool_name(required(map, key, path)?, &path.key(key))
}

fn parse_arguments(raw: &str) -> Option<Value> {
    if raw.trim().is_empty() {
        return None;
    }
    parse_strict(raw.as_bytes(), MAX_JSON_DEPTH).ok()
}

fn check_arguments_len(raw: &str) -> Result<(), LlmError> {
    if raw.len() > MAX_ARGUMENTS_BYTES {
        return Err(LlmError::TooLarge { what: "tool call arguments", limit: MAX_ARGUMENTS_BYTES });
    }
    Ok(())
}

fn push_call(calls: &mut Vec<ProposedToolCall>, call: ProposedToolCall) -> Result<(), LlmError> {
    if calls.len() >= MAX_TOOL_CALLS {
        return Err(LlmError::TooLarge { what: "tool calls", limit: MAX_TOOL_CALLS });
    }
    check_arguments_len(&call.raw_arguments)?;
    calls.push(call);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Requests

/// Reads what a request declares, forces and says.
pub fn parse_request(provider: Provider, body: &Value) -> Result<LlmRequest<'_>, LlmError> {
    let root = Path::Root("");
    let map = object(body, &Path::Root("body"))?;
    let mut request = LlmRequest {
        model: opt_str(map, "model", &root)?.map(str::to_owned),
        stream: opt_bool(map, "stream", &root)?.unwrap_or(false),
        ..LlmRequest::default()
    };
    match provider {
        Provider::OpenAi => {
            if member(map, "messages").is_some() && member(map, "input").is_some() {
                return Err(LlmError::Ambiguous { first: "messages", second: "input" });
            }
            if member(map, "input").is_some() {
                openai_responses_request(map, &root, &mut request)?;
            } else {
                openai_chat_request(map, &root, &mut request)?;
            }
        }
        Provider::Anthropic => anthropic_request(map, &root, &mut request)?,
    }
    if request.declared_tools.len() > MAX_DECLARED_TOOLS {
        return Err(LlmError::TooLarge { what: "declared tools", limit: MAX_DECLARED_TOOLS });
    }
    Ok(request)
}

fn openai_chat_request<'v>(map: &'v Map<String, Value>, root: &Path<'_>, request: &mut LlmRequest<'v>) -> Result<(), LlmError> {
    let tools_path = root.key("tools");
    for (i, tool) in opt_array(map, "tools", root)?.iter().enumerate() {
        let path = tools_path.index(i);
        let tool = object(tool, &path)?;
        // `type` is required by the API; a missing one is read as "function", the only type that
        // has a `function` member.
        let kind = opt_str(tool, "type", &path)?.unwrap_or("function");
        let name = match kind {
            "function" | "custom" => {
                let inner_path = path.key(kind);
                let inner = object(required(tool, kind, &path)?, &inner_path)?;
                req_tool_name(inner, "name", &inner_path)?
            }
            other => return Err(unsupported(&path.key("type"), other)),
        };
        request.declared_tools.push(name);
    }
    let functions_path = root.key("functions");
    for (i, function) in opt_array(map, "functions", root)?.iter().enumerate() {
        let path = functions_path.index(i);
        request.declared_tools.push(req_tool_name(object(function, &path)?, "name", &path)?);
    }
    if member(map, "tool_choice").is_some() && member(map, "function_call").is_some() {
        return Err(LlmError::Ambiguous { first: "tool_choice", second: "function_call" });
    }
    if let Some(choice) = member(map, "tool_choice") {
        let path = root.key("tool_choice");
        request.forced_tool = match choice {
            Value::String(mode) if matches!(mode.as_str(), "none" | "auto" | "required") => None,
            Value::String(mode) => return Err(unsupported(&path, mode)),
            Value::Object(choice) => match req_str(choice, "type", &path)? {
                kind @ ("function" | "custom") => {
                    let inner_path = path.key(kind);
                    let inner = object(required(choice, kind, &path)?, &inner_path)?;
                    Some(req_tool_name(inner, "name", &inner_path)?)
                }
                // `allowed_tools` and the built-in tool choices name no function tool.
                other => return Err(unsupported(&path.key("type"), other)),
            },
            _ => return Err(wrong(&path, "a string or an object")),
        };
    }
    if let Some(call) = member(map, "function_call") {
        let path = root.key("function_call");
        request.forced_tool = match call {
            Value::String(mode) if matches!(mode.as_str(), "none" | "auto") => None,
            Value::String(mode) => return Err(unsupported(&path, mode)),
            Value::Object(call) => Some(req_tool_name(call, "name", &path)?),
            _ => return Err(wrong(&path, "a string or an object")),
        };
    }
    let messages_path = root.key("messages");
    let messages = match required(map, "messages", root)? {
        Value::Array(messages) => messages,
        _ => return Err(wrong(&messages_path, "an array")),
    };
    for (i, message) in messages.iter().enumerate() {
        let path = messages_path.index(i);
        let message = object(message, &path)?;
        openai_content(member(message, "content"), &path.key("content"), &mut request.texts)?;
        if let Some(refusal) = opt_str(message, "refusal", &path)? {
            request.texts.push(Cow::Borrowed(refusal));
        }
        // Arguments of earlier calls go back to the model with the history.
        let calls_path = path.key("tool_calls");
        for (j, call) in opt_array(message, "tool_calls", &path)?.iter().enumerate() {
            let call_path = calls_path.index(j);
            let call = object(call, &call_path)?;
            if let Some(function) = member(call, "function") {
                let function_path = call_path.key("function");
                let function = object(function, &function_path)?;
                if let Some(arguments) = opt_str(function, "arguments", &function_path)? {
                    request.texts.push(Cow::Borrowed(arguments));
                }
            }
        }
        if let Some(call) = member(message, "function_call") {
            let call_path = path.key("function_call");
            if let Some(arguments) = opt_str(object(call, &call_path)?, "arguments", &call_path)? {
                request.texts.push(Cow::Borrowed(arguments));
            }
        }
    }
    Ok(())
}

/// Chat Completions content: a string, or parts of which `text` and `refusal` carry text (images,
/// audio and files are not text).
fn openai_content<'v>(content: Option<&'v Value>, path: &Path<'_>, texts: &mut Vec<Cow<'v, str>>) -> Result<(), LlmError> {
    match content {
        None => Ok(()),
        Some(Value::String(text)) => {
            texts.push(Cow::Borrowed(text.as_str()));
            Ok(())
        }
        Some(Value::Array(parts)) => {
            for (i, part) in parts.iter().enumerate() {
                let part_path = path.index(i);
                let part = object(part, &part_path)?;
                if let kind @ ("text" | "input_text" | "output_text" | "refusal") = req_str(part, "type", &part_path)? {
                    let key = if kind == "refusal" { "refusal" } else { "text" };
                    texts.push(Cow::Borrowed(req_str(part, key, &part_path)?));
                }
            }
            Ok(())
        }
        Some(_) => Err(wrong(path, "a string or an array")),
    }
}

fn openai_responses_request<'v>(
    map: &'v Map<String, Value>,
    root: &Path<'_>,
    request: &mut LlmRequest<'v>,
) -> Result<(), LlmError> {
    let tools_path = root.key("tools");
    for (i, tool) in opt_array(map, "tools", root)?.iter().enumerate() {
        let path = tools_path.index(i);
        let tool = object(tool, &path)?;
        match req_str(tool, "type", &path)? {
            "function" | "custom" => request.declared_tools.push(req_tool_name(tool, "name", &path)?),
            // Built-in tools (web_search, file_search, mcp, computer_use, local_shell, ...) have no
            // name the policy table knows; refused until a policy can name them.
            other => return Err(unsupported(&path.key("type"), other)),
        }
    }
    if let Some(choice) = member(map, "tool_choice") {
        let path = root.key("tool_choice");
        request.forced_tool = match choice {
            Value::String(mode) if matches!(mode.as_str(), "none" | "auto" | "required") => None,
            Value::String(mode) => return Err(unsupported(&path, mode)),
            Value::Object(choice) => match req_str(choice, "type", &path)? {
                "function" | "custom" => Some(req_tool_name(choice, "name", &path)?),
                other => return Err(unsupported(&path.key("type"), other)),
            },
            _ => return Err(wrong(&path, "a string or an object")),
        };
    }
    if let Some(instructions) = opt_str(map, "instructions", root)? {
        request.texts.push(Cow::Borrowed(instructions));
    }
    let input_path = root.key("input");
    match required(map, "input", root)? {
        Value::String(text) => request.texts.push(Cow::Borrowed(text.as_str())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = input_path.index(i);
                let item = object(item, &path)?;
                match opt_str(item, "type", &path)?.unwrap_or("message") {
                    "message" => openai_content(member(item, "content"), &path.key("content"), &mut request.texts)?,
                    "function_call" => {
                        if let Some(arguments) = opt_str(item, "arguments", &path)? {
                            request.texts.push(Cow::Borrowed(arguments));
                        }
                    }
                    "custom_tool_call" => {
                        if let Some(input) = opt_str(item, "input", &path)? {
                            request.texts.push(Cow::Borrowed(input));
                        }
                    }
                    "function_call_output" | "custom_tool_call_output" => {
                        openai_content(member(item, "output"), &path.key("output"), &mut request.texts)?;
                    }
                    _ => {}
                }
            }
        }
        _ => return Err(wrong(&input_path, "a string or an array")),
    }
    Ok(())
}

fn anthropic_request<'v>(map: &'v Map<String, Value>, root: &Path<'_>, request: &mut LlmRequest<'v>) -> Result<(), LlmError> {
    // Every Anthropic tool, custom or versioned built-in (`bash_20250124`, `web_search_...`), has
    // a `name`, and that is what the model calls.
    let tools_path = root.key("tools");
    for (i, tool) in opt_array(map, "tools", root)?.iter().enumerate() {
        let path = tools_path.index(i);
        request.declared_tools.push(req_tool_name(object(tool, &path)?, "name", &path)?);
    }
    if let Some(choice) = member(map, "tool_choice") {
        let path = root.key("tool_choice");
        let choice = object(choice, &path)?;
        request.forced_tool = match req_str(choice, "type", &path)? {
            "auto" | "any" | "none" => None,
            "tool" => Some(req_tool_name(choice, "name", &path)?),
            other => return Err(unsupported(&path.key("type"), other)),
        };
    }
    match member(map, "system") {
        None => {}
        Some(Value::String(text)) => request.texts.push(Cow::Borrowed(text.as_str())),
        Some(Value::Array(blocks)) => anthropic_blocks(blocks, &root.key("system"), &mut request.texts)?,
        Some(_) => return Err(wrong(&root.key("system"), "a string or an array")),
    }
    let messages_path = root.key("messages");
    let messages = match required(map, "messages", root)? {
        Value::Array(messages) => messages,
        _ => return Err(wrong(&messages_path, "an array")),
    };
    for (i, message) in messages.iter().enumerate() {
        let path = messages_path.index(i);
        let message = object(message, &path)?;
        anthropic_content(member(message, "content"), &path.key("content"), &mut request.texts)?;
    }
    Ok(())
}

fn anthropic_content<'v>(content: Option<&'v Value>, path: &Path<'_>, texts: &mut Vec<Cow<'v, str>>) -> Result<(), LlmError> {
    match content {
        None => Ok(()),
        Some(Value::String(text)) => {
            texts.push(Cow::Borrowed(text.as_str()));
            Ok(())
        }
        Some(Value::Array(blocks)) => anthropic_blocks(blocks, path, texts),
        Some(_) => Err(wrong(path, "a string or an array")),
    }
}

/// Text in request content blocks: `text`, `thinking`, plain-text documents, tool results (their
/// own content), and the input of earlier tool uses.
fn anthropic_blocks<'v>(blocks: &'v [Value], path: &Path<'_>, texts: &mut Vec<Cow<'v, str>>) -> Result<(), LlmError> {
    for (i, block) in blocks.iter().enumerate() {
        let block_path = path.index(i);
        let block = object(block, &block_path)?;
        match req_str(block, "type", &block_path)? {
            "text" => texts.push(Cow::Borrowed(req_str(block, "text", &block_path)?)),
            "thinking" => texts.push(Cow::Borrowed(req_str(block, "thinking", &block_path)?)),
            "tool_result" => anthropic_content(member(block, "content"), &block_path.key("content"), texts)?,
            "tool_use" | "server_tool_use" | "mcp_tool_use" => {
                if let Some(input) = member(block, "input") {
                    texts.push(Cow::Owned(input.to_string()));
                }
            }
            "document" => {
                if let Some(source) = member(block, "source") {
                    let source_path = block_path.key("source");
                    let source = object(source, &source_path)?;
                    if opt_str(source, "type", &source_path)? == Some("text")
                        && let Some(data) = opt_str(source, "data", &source_path)?
                    {
                        texts.push(Cow::Borrowed(data));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Non-streamed responses

/// Reads the tool calls a non-streamed response proposes and the texts it carries.
pub fn parse_response(provider: Provider, body: &Value) -> Result<LlmResponse<'_>, LlmError> {
    let root = Path::Root("");
    let map = object(body, &Path::Root("body"))?;
    let mut response = LlmResponse::default();
    match provider {
        Provider::OpenAi if member(map, "choices").is_none() && member(map, "output").is_some() => {
            openai_responses_response(map, &root, &mut response)?;
        }
        Provider::OpenAi => openai_chat_response(map, &root, &mut response)?,
        Provider::Anthropic => anthropic_response(map, &root, &mut response)?,
    }
    Ok(response)
}

fn openai_chat_response<'v>(map: &'v Map<String, Value>, root: &Path<'_>, response: &mut LlmResponse<'v>) -> Result<(), LlmError> {
    let choices_path = root.key("choices");
    let choices = match required(map, "choices", root)? {
        Value::Array(choices) => choices,
        _ => return Err(wrong(&choices_path, "an array")),
    };
    for (position, choice) in choices.iter().enumerate() {
        let path = choices_path.index(position);
        let choice = object(choice, &path)?;
        let choice_index = match member(choice, "index") {
            None => position,
            Some(_) => req_index(choice, "index", &path)?,
        };
        let message_path = path.key("message");
        let message = object(required(choice, "message", &path)?, &message_path)?;
        openai_content(member(message, "content"), &message_path.key("content"), &mut response.texts)?;
        if let Some(refusal) = opt_str(message, "refusal", &message_path)? {
            response.texts.push(Cow::Borrowed(refusal));
        }
        let calls_path = message_path.key("tool_calls");
        for (index, call) in opt_array(message, "tool_calls", &message_path)?.iter().enumerate() {
            let call_path = calls_path.index(index);
            let call = object(call, &call_path)?;
            let id = opt_str(call, "id", &call_path)?.map(str::to_owned);
            let kind = opt_str(call, "type", &call_path)?.unwrap_or("function");
            let (name, raw) = match kind {
                "function" => {
                    let function_path = call_path.key("function");
                    let function = object(required(call, "function", &call_path)?, &function_path)?;
                    let name = req_tool_name(function, "name", &function_path)?;
                    (name, opt_str(function, "arguments", &function_path)?.unwrap_or_default())
                }
                "custom" => {
                    let custom_path = call_path.key("custom");
                    let custom = object(required(call, "custom", &call_path)?, &custom_path)?;
                    let name = req_tool_name(custom, "name", &custom_path)?;
                    (name, opt_str(custom, "input", &custom_path)?.unwrap_or_default())
                }
                other => return Err(unsupported(&call_path.key("type"), other)),
            };
            check_arguments_len(raw)?;
            let call = ProposedToolCall {
                choice: choice_index,
                index,
                id,
                name,
                arguments: parse_arguments(raw),
                raw_arguments: raw.to_owned(),
            };
            push_call(&mut response.tool_calls, call)?;
        }
        if let Some(call) = member(message, "function_call") {
            let call_path = message_path.key("function_call");
            let call = object(call, &call_path)?;
            let name = req_tool_name(call, "name", &call_path)?;
            let raw = opt_str(call, "arguments", &call_path)?.unwrap_or_default();
            check_arguments_len(raw)?;
            let call = ProposedToolCall {
                choice: choice_index,
                index: 0,
                id: None,
                name,
                arguments: parse_arguments(raw),
                raw_arguments: raw.to_owned(),
            };
            push_call(&mut response.tool_calls, call)?;
        }
    }
    Ok(())
}

fn openai_responses_response<'v>(
    map: &'v Map<String, Value>,
    root: &Path<'_>,
    response: &mut LlmResponse<'v>,
) -> Result<(), LlmError> {
    let output_path = root.key("output");
    for (index, item) in opt_array(map, "output", root)?.iter().enumerate() {
        let path = output_path.index(index);
        let item = object(item, &path)?;
        if req_str(item, "type", &path)? == "message" {
            openai_content(member(item, "content"), &path.key("content"), &mut response.texts)?;
        } else if let Some(call) = responses_item_call(item, &path, index)? {
            push_call(&mut response.tool_calls, call)?;
        }
    }
    Ok(())
}

/// The tool call a Responses API output item proposes, if it is one (`function_call`,
/// `custom_tool_call`). Messages, reasoning, and built-in tool calls the provider already ran
/// (web_search_call, mcp_call, ...) give nothing for the agent to execute.
fn responses_item_call(item: &Map<String, Value>, path: &Path<'_>, index: usize) -> Result<Option<ProposedToolCall>, LlmError> {
    let key = match req_str(item, "type", path)? {
        "function_call" => "arguments",
        "custom_tool_call" => "input",
        _ => return Ok(None),
    };
    let name = req_tool_name(item, "name", path)?;
    let raw = opt_str(item, key, path)?.unwrap_or_default();
    check_arguments_len(raw)?;
    Ok(Some(ProposedToolCall {
        choice: 0,
        index,
        id: opt_str(item, "call_id", path)?.map(str::to_owned),
        name,
        arguments: parse_arguments(raw),
        raw_arguments: raw.to_owned(),
    }))
}

/// Anthropic content block types that propose a tool call.
fn is_anthropic_tool_block(kind: &str) -> bool {
    matches!(kind, "tool_use" | "server_tool_use" | "mcp_tool_use")
}

/// Anthropic content block types known to carry no tool call.
fn is_anthropic_inert_block(kind: &str) -> bool {
    matches!(kind, "text" | "thinking" | "redacted_thinking") || kind.ends_with("_tool_result")
}

fn anthropic_response<'v>(map: &'v Map<String, Value>, root: &Path<'_>, response: &mut LlmResponse<'v>) -> Result<(), LlmError> {
    let content_path = root.key("content");
    let blocks = match required(map, "content", root)? {
        Value::Array(blocks) => blocks,
        _ => return Err(wrong(&content_path, "an array")),
    };
    for (index, block) in blocks.iter().enumerate() {
        let path = content_path.index(index);
        let block = object(block, &path)?;
        let kind = req_str(block, "type", &path)?;
        if is_anthropic_tool_block(kind) {
            let name = req_tool_name(block, "name", &path)?;
            let input = required(block, "input", &path)?;
            let call = ProposedToolCall {
                choice: 0,
                index,
                id: opt_str(block, "id", &path)?.map(str::to_owned),
                name,
                arguments: Some(input.clone()),
                raw_arguments: input.to_string(),
            };
            push_call(&mut response.tool_calls, call)?;
        } else if kind == "text" {
            response.texts.push(Cow::Borrowed(req_str(block, "text", &path)?));
        } else if kind == "thinking" {
            response.texts.push(Cow::Borrowed(req_str(block, "thinking", &path)?));
        } else if !is_anthropic_inert_block(kind) {
            return Err(unsupported(&path.key("type"), kind));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Streamed responses

/// What the assembler learned from one event.
#[derive(Debug, Clone, PartialEq)]
pub enum AssemblerNote {
    /// The call's name is complete and will not change: judge it now. Emitted once per call, at
    /// the earliest event after which the name is known to be whole.
    ToolNameComplete { choice: usize, index: usize, name: String },
    /// The call's arguments are complete (its block stopped, its choice finished, or the stream
    /// ended).
    ToolCallComplete(ProposedToolCall),
    /// A string the event carries, for scanning (a content or refusal delta, a fragment of a
    /// call's arguments), and where it sits in the event's data, so a value in it can be redacted
    /// within the frame.
    Text(TextSpan),
    /// The event repeats or sums up content rather than adding to it (the Responses API's
    /// `*.done` events and `response.completed`): its data is to be scanned as a whole, on its
    /// own, and not appended to the stream's text.
    Snapshot,
    /// The provider's end-of-stream marker (`data: [DONE]`, `message_stop`). Any event after it is
    /// an error.
    Done,
}

/// A string value inside one event's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextSpan {
    /// The decoded string.
    pub text: String,
    /// RFC 6901 pointer to the string in the event's data JSON.
    pub pointer: String,
    pub kind: TextKind,
}

/// What a [`TextSpan`] holds, which decides how a value in it can be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// Text shown as is (a content, refusal or free-form tool input delta): any part of it can be
    /// replaced.
    Content,
    /// A fragment of the JSON text of a call's arguments (keyed like the call): a part can be
    /// replaced by text only inside a JSON string literal of the arguments.
    Arguments { choice: usize, index: usize },
    /// An event's whole data, read as one JSON text (a stream that is not a model's answer, such
    /// as an MCP server's): a part can be replaced only inside one of its string literals.
    Json,
}

fn span(text: &str, pointer: String, kind: TextKind) -> AssemblerNote {
    AssemblerNote::Text(TextSpan { text: text.to_owned(), pointer, kind })
}

#[derive(Debug, Default)]
struct CallState {
    id: Option<String>,
    name: String,
    name_complete: bool,
    arguments: String,
    /// Anthropic: the `input` given in `content_block_start`, used when no `input_json_delta`
    /// follows.
    start_input: Option<Value>,
    complete: bool,
}

impl CallState {
    /// Marks the call complete and returns it, arguments parsed.
    fn close(&mut self, choice: usize, index: usize) -> ProposedToolCall {
        self.complete = true;
        let raw_arguments = std::mem::take(&mut self.arguments);
        let (arguments, raw_arguments) = match (raw_arguments.is_empty(), self.start_input.take()) {
            (true, Some(input)) => {
                let raw = input.to_string();
                (Some(input), raw)
            }
            _ => (parse_arguments(&raw_arguments), raw_arguments),
        };
        ProposedToolCall { choice, index, id: self.id.clone(), name: self.name.clone(), arguments, raw_arguments }
    }
}

/// Reassembles tool calls from a streamed response, one SSE event at a time.
///
/// Name completion, the point the filter must judge at:
///
/// - Anthropic gives the name whole in `content_block_start`, so it is complete there.
/// - OpenAI may split a name across chunks for the same `tool_calls[].index` (the demo upstream
///   does: `"read"`, then `"_file"`). A pending name is complete at the first later chunk, or
///   later entry of the same chunk, that does not extend it: a chunk for that call with only
///   arguments, any entry for another call, a chunk with no tool calls, a `finish_reason`, or
///   `[DONE]`. A name fragment arriving after that is [`LlmError::LateNameFragment`], so the name
///   judged is the name a client assembles, or the stream stops.
///
/// While [`ToolCallAssembler::pending_tool_call`] is true the filter holds frames back, so no
/// fragment of a name is delivered before the whole name is judged.
#[derive(Debug)]
pub struct ToolCallAssembler {
    provider: Provider,
    /// Keyed by (choice, index); at most [`MAX_TOOL_CALLS`] entries. A BTreeMap keeps completion
    /// notes in a stable order.
    calls: BTreeMap<(usize, usize), CallState>,
    /// OpenAI choices that sent a `finish_reason`.
    finished_choices: BTreeSet<usize>,
    done: bool,
    /// OpenAI: whether the stream is the Responses API's (`response.*` events), set by the first
    /// event; the two forms never mix in one stream.
    responses: Option<bool>,
}

impl ToolCallAssembler {
    pub fn new(provider: Provider) -> Self {
        ToolCallAssembler { provider, calls: BTreeMap::new(), finished_choices: BTreeSet::new(), done: false, responses: None }
    }

    /// True while a tool call has started whose name is not yet complete.
    pub fn pending_tool_call(&self) -> bool {
        self.calls.values().any(|call| !call.name_complete)
    }

    /// True once the provider's end-of-stream marker was seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Reads one event; returns what it completes, in order.
    pub fn feed(&mut self, event: &SseEvent) -> Result<Vec<AssemblerNote>, LlmError> {
        if self.done {
            // Some servers end a Responses stream with the Chat Completions marker as well.
            if self.responses == Some(true) && event.data.starts_with("[DONE]") {
                return Ok(Vec::new());
            }
            return Err(LlmError::InvalidStream {
                path: "event".to_owned(),
                reason: "event after the end of the stream",
            });
        }
        let mut notes = Vec::new();
        match self.provider {
            Provider::OpenAi => self.feed_openai(event, &mut notes)?,
            Provider::Anthropic => self.feed_anthropic(event, &mut notes)?,
        }
        Ok(notes)
    }

    /// The stream ended (with or without its end marker): every call still open is complete.
    /// Emits no [`AssemblerNote::Done`]; without one earlier, the stream was cut short.
    pub fn finish(&mut self) -> Result<Vec<AssemblerNote>, LlmError> {
        let mut notes = Vec::new();
        self.complete_calls(None, &mut notes)?;
        Ok(notes)
    }

    fn parse_data(event: &SseEvent) -> Result<Option<Value>, LlmError> {
        // An event with empty data is a keep-alive to every client.
        if event.data.trim().is_empty() {
            return Ok(None);
        }
        parse_strict(event.data.as_bytes(), MAX_JSON_DEPTH)
            .map(Some)
            .map_err(|source| LlmError::Json { path: "event data".to_owned(), source })
    }

    /// Starts a call, within the bound on calls.
    fn start_call(&mut self, key: (usize, usize)) -> Result<&mut CallState, LlmError> {
        if !self.calls.contains_key(&key) && self.calls.len() >= MAX_TOOL_CALLS {
            return Err(LlmError::TooLarge { what: "tool calls", limit: MAX_TOOL_CALLS });
        }
        Ok(self.calls.entry(key).or_default())
    }

    /// Completes the names of all pending calls except those in `skip` (names the current event
    /// is still extending).
    fn complete_names(&mut self, skip: &[(usize, usize)], notes: &mut Vec<AssemblerNote>) -> Result<(), LlmError> {
        for (&(choice, index), call) in &mut self.calls {
            if call.name_complete || skip.contains(&(choice, index)) {
                continue;
            }
            call.name_complete = true;
            if !is_valid_tool_name(&call.name) {
                return Err(LlmError::InvalidToolName {
                    path: format!("choices[index {choice}].delta.tool_calls[index {index}].function.name"),
                    name: quote(&call.name),
                });
            }
            notes.push(AssemblerNote::ToolNameComplete { choice, index, name: call.name.clone() });
        }
        Ok(())
    }

    /// Completes every open call of `choice` (of all choices when `None`), names first.
    fn complete_calls(&mut self, choice: Option<usize>, notes: &mut Vec<AssemblerNote>) -> Result<(), LlmError> {
        // An event that ends one choice extends no name, whatever its choice.
        self.complete_names(&[], notes)?;
        for (&(c, index), call) in &mut self.calls {
            if !call.complete && choice.is_none_or(|x| x == c) {
                notes.push(AssemblerNote::ToolCallComplete(call.close(c, index)));
            }
        }
        Ok(())
    }

    fn feed_openai(&mut self, event: &SseEvent, notes: &mut Vec<AssemblerNote>) -> Result<(), LlmError> {
        // The event name is ignored: line readers ignore it too, so every event's data is read as
        // a chunk. The OpenAI SDKs stop at a data starting with "[DONE]".
        if event.data.starts_with("[DONE]") {
            self.complete_calls(None, notes)?;
            notes.push(AssemblerNote::Done);
            self.done = true;
            return Ok(());
        }
        let Some(chunk) = Self::parse_data(event)? else { return Ok(()) };
        let root = Path::Root("");
        let chunk = object(&chunk, &Path::Root("chunk"))?;
        let responses = member(chunk, "choices").is_none()
            && opt_str(chunk, "type", &root).ok().flatten().is_some_and(|t| t.starts_with("response.") || t == "error");
        match (self.responses, responses) {
            (None, r) => self.responses = Some(r),
            (Some(a), b) if a != b => {
                return Err(LlmError::InvalidStream { path: "type".to_owned(), reason: "Chat Completions chunks and Responses events mixed" });
            }
            _ => {}
        }
        if responses {
            return self.feed_responses(event, chunk, notes);
        }
        let Some(choices) = member(chunk, "choices") else {
            if member(chunk, "error").is_some() {
                // An error object in the stream: no tool call in it; the client raises.
                self.complete_names(&[], notes)?;
                return Ok(());
            }
            // Not a chat completion chunk (a Responses API event, say): refused, not skipped.
            let kind = opt_str(chunk, "type", &root).ok().flatten().unwrap_or("chunk without choices");
            return Err(unsupported(&root.key("type"), kind));
        };
        let choices_path = root.key("choices");
        let Value::Array(choices) = choices else { return Err(wrong(&choices_path, "an array")) };
        // Calls whose name this chunk extended; every other pending name is complete after it.
        let mut extended: Vec<(usize, usize)> = Vec::new();
        for (position, choice) in choices.iter().enumerate() {
            let path = choices_path.index(position);
            let choice = object(choice, &path)?;
            let choice_index = req_index(choice, "index", &path)?;
            if let Some(delta) = member(choice, "delta") {
                let delta_path = path.key("delta");
                let delta = object(delta, &delta_path)?;
                for key in ["content", "refusal"] {
                    if let Some(text) = opt_str(delta, key, &delta_path)?
                        && !text.is_empty()
                    {
                        notes.push(span(text, format!("/choices/{position}/delta/{key}"), TextKind::Content));
                    }
                }
                let calls_path = delta_path.key("tool_calls");
                for (j, entry) in opt_array(delta, "tool_calls", &delta_path)?.iter().enumerate() {
                    let entry_path = calls_path.index(j);
                    let entry = object(entry, &entry_path)?;
                    let index = req_index(entry, "index", &entry_path)?;
                    if let Some(kind) = opt_str(entry, "type", &entry_path)?
                        && kind != "function"
                    {
                        return Err(unsupported(&entry_path.key("type"), kind));
                    }
                    let function = match member(entry, "function") {
                        Some(function) => Some(object(function, &entry_path.key("function"))?),
                        None => None,
                    };
                    let id = opt_str(entry, "id", &entry_path)?;
                    let pointer = format!("/choices/{position}/delta/tool_calls/{j}/function/arguments");
                    self.openai_fragment((choice_index, index), (id, function), &entry_path.key("function"), &pointer, &mut extended, notes)?;
                }
                // The legacy single function call streams like tool call 0.
                if let Some(call) = member(delta, "function_call") {
                    let call_path = delta_path.key("function_call");
                    let call = object(call, &call_path)?;
                    let pointer = format!("/choices/{position}/delta/function_call/arguments");
                    self.openai_fragment((choice_index, 0), (None, Some(call)), &call_path, &pointer, &mut extended, notes)?;
                }
            }
            if opt_str(choice, "finish_reason", &path)?.is_some() {
                self.finished_choices.insert(choice_index);
                self.complete_calls(Some(choice_index), notes)?;
            }
        }
        // The chunk is over: a pending name it did not extend is complete.
        self.complete_names(&extended, notes)
    }

    /// One `tool_calls[]` entry (or legacy `function_call`) for the call `key`.
    fn openai_fragment(
        &mut self,
        key: (usize, usize),
        (id, function): (Option<&str>, Option<&Map<String, Value>>),
        function_path: &Path<'_>,
        arguments_pointer: &str,
        extended: &mut Vec<(usize, usize)>,
        notes: &mut Vec<AssemblerNote>,
    ) -> Result<(), LlmError> {
        let (choice, index) = key;
        if self.finished_choices.contains(&choice) {
            return Err(LlmError::InvalidStream {
                path: format!("choices[index {choice}].delta.tool_calls"),
                reason: "tool call after the choice finished",
            });
        }
        // An entry for this call means every other pending name is complete (calls stream one
        // after another; a hostile interleaving then fails as a late fragment).
        self.complete_names(&[key], notes)?;
        let name_fragment = match function {
            Some(function) => opt_str(function, "name", function_path)?,
            None => None,
        };
        let arguments = match function {
            Some(function) => opt_str(function, "arguments", function_path)?,
            None => None,
        };
        let call = self.start_call(key)?;
        if call.complete {
            return Err(LlmError::InvalidStream {
                path: format!("choices[index {choice}].delta.tool_calls[index {index}]"),
                reason: "fragment for a completed tool call",
            });
        }
        if let Some(id) = id
            && call.id.is_none()
        {
            call.id = Some(id.to_owned());
        }
        match name_fragment {
            Some(fragment) => {
                if call.name_complete {
                    return Err(LlmError::LateNameFragment { choice, index });
                }
                let too_long = call.name.len().saturating_add(fragment.len()) > MAX_TOOL_NAME_LEN;
                if too_long {
                    return Err(LlmError::TooLarge { what: "tool name", limit: MAX_TOOL_NAME_LEN });
                }
                // Refuse a bad character as soon as it arrives; the length is checked at completion.
                if !fragment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
                    return Err(LlmError::InvalidToolName {
                        path: function_path.key("name").to_string(),
                        name: quote(&format!("{}{fragment}", call.name)),
                    });
                }
                call.name.push_str(fragment);
                if !extended.contains(&key) {
                    extended.push(key);
                }
            }
            None => {
                // This entry does not extend the name: it is complete (or, with no name at all yet,
                // invalid).
                if !call.name_complete {
                    call.name_complete = true;
                    if !is_valid_tool_name(&call.name) {
                        return Err(LlmError::InvalidToolName {
                            path: function_path.key("name").to_string(),
                            name: quote(&call.name),
                        });
                    }
                    notes.push(AssemblerNote::ToolNameComplete { choice, index, name: call.name.clone() });
                }
                extended.retain(|k| *k != key);
            }
        }
        if let Some(arguments) = arguments {
            if call.arguments.len().saturating_add(arguments.len()) > MAX_ARGUMENTS_BYTES {
                return Err(LlmError::TooLarge { what: "tool call arguments", limit: MAX_ARGUMENTS_BYTES });
            }
            call.arguments.push_str(arguments);
            if !arguments.is_empty() {
                notes.push(span(arguments, arguments_pointer.to_owned(), TextKind::Arguments { choice, index }));
            }
        }
        Ok(())
    }

    /// One event of a streamed OpenAI Responses API answer. Function calls are output items: the
    /// name arrives whole in `response.output_item.added`, the arguments in
    /// `response.function_call_arguments.delta` fragments, and the whole call again in
    /// `response.function_call_arguments.done`, `response.output_item.done` and the final
    /// `response.completed`; every copy is judged, and each name must be the one first announced.
    /// A delta whose `delta` is a string is text to scan; any other event is a snapshot, scanned on
    /// its own.
    fn feed_responses(&mut self, event: &SseEvent, data: &Map<String, Value>, notes: &mut Vec<AssemblerNote>) -> Result<(), LlmError> {
        let root = Path::Root("");
        let kind = req_str(data, "type", &root)?;
        // The SDKs dispatch on the data's type; a line reader may go by the event name: they agree.
        if let Some(name) = event.event.as_deref()
            && name != kind
        {
            return Err(LlmError::EventTypeMismatch { event: quote(name), data_type: quote(kind) });
        }
        if kind.ends_with(".delta")
            && let Some(Value::String(delta)) = member(data, "delta")
        {
            let index = req_index(data, "output_index", &root)?;
            let text_kind = match kind {
                "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta" => {
                    let Some(call) = self.calls.get_mut(&(0, index)).filter(|call| !call.complete) else {
                        return Err(LlmError::InvalidStream { path: "output_index".to_owned(), reason: "arguments for an output item that is not an open tool call" });
                    };
                    if call.arguments.len().saturating_add(delta.len()) > MAX_ARGUMENTS_BYTES {
                        return Err(LlmError::TooLarge { what: "tool call arguments", limit: MAX_ARGUMENTS_BYTES });
                    }
                    call.arguments.push_str(delta);
                    // A custom tool's input is free text, not JSON.
                    if kind == "response.custom_tool_call_input.delta" { TextKind::Content } else { TextKind::Arguments { choice: 0, index } }
                }
                _ => TextKind::Content,
            };
            if !delta.is_empty() {
                notes.push(span(delta, "/delta".to_owned(), text_kind));
            }
            return Ok(());
        }
        notes.push(AssemblerNote::Snapshot);
        match kind {
            "response.output_item.added" | "response.output_item.done" => {
                let index = req_index(data, "output_index", &root)?;
                let item_path = root.key("item");
                let item = object(required(data, "item", &root)?, &item_path)?;
                if let Some(call) = responses_item_call(item, &item_path, index)? {
                    self.responses_call(call, kind == "response.output_item.added", notes)?;
                }
            }
            "response.function_call_arguments.done" | "response.custom_tool_call_input.done" => {
                let index = req_index(data, "output_index", &root)?;
                let key = if kind == "response.custom_tool_call_input.done" { "input" } else { "arguments" };
                let raw = req_str(data, key, &root)?;
                check_arguments_len(raw)?;
                let Some(call) = self.calls.get(&(0, index)) else {
                    return Err(LlmError::InvalidStream { path: "output_index".to_owned(), reason: "arguments done for an output item that is not a tool call" });
                };
                if let Some(name) = opt_str(data, "name", &root)?
                    && name != call.name
                {
                    return Err(LlmError::InvalidStream { path: "name".to_owned(), reason: "tool name differs from the one announced" });
                }
                let call = ProposedToolCall { choice: 0, index, id: call.id.clone(), name: call.name.clone(), arguments: parse_arguments(raw), raw_arguments: raw.to_owned() };
                self.responses_call(call, false, notes)?;
            }
            _ => {
                if let Some(response) = member(data, "response") {
                    let response_path = root.key("response");
                    let response = object(response, &response_path)?;
                    let output_path = response_path.key("output");
                    for (index, item) in opt_array(response, "output", &response_path)?.iter().enumerate() {
                        let path = output_path.index(index);
                        if let Some(call) = responses_item_call(object(item, &path)?, &path, index)? {
                            self.responses_call(call, false, notes)?;
                        }
                    }
                }
                if matches!(kind, "response.completed" | "response.incomplete" | "response.failed") {
                    self.complete_calls(None, notes)?;
                    notes.push(AssemblerNote::Done);
                    self.done = true;
                }
            }
        }
        Ok(())
    }

    /// A function call seen whole in a Responses event: announced (`start`, the name judged now)
    /// or repeated (judged with its arguments, and checked against the announced name).
    fn responses_call(&mut self, call: ProposedToolCall, start: bool, notes: &mut Vec<AssemblerNote>) -> Result<(), LlmError> {
        let key = (0, call.index);
        let known = self.calls.contains_key(&key);
        let state = self.start_call(key)?;
        if known && state.name != call.name {
            return Err(LlmError::InvalidStream { path: format!("output[{}].name", call.index), reason: "tool name differs from the one announced" });
        }
        if !known {
            *state = CallState { id: call.id.clone(), name: call.name.clone(), name_complete: true, ..CallState::default() };
            notes.push(AssemblerNote::ToolNameComplete { choice: 0, index: call.index, name: call.name.clone() });
        } else if start {
            return Err(LlmError::InvalidStream { path: "output_index".to_owned(), reason: "output item added twice" });
        }
        if start {
            state.arguments.push_str(&call.raw_arguments);
        } else {
            state.complete = true;
            notes.push(AssemblerNote::ToolCallComplete(call));
        }
        Ok(())
    }

    fn feed_anthropic(&mut self, event: &SseEvent, notes: &mut Vec<AssemblerNote>) -> Result<(), LlmError> {
        let Some(data) = Self::parse_data(event)? else { return Ok(()) };
        let root = Path::Root("");
        let data = object(&data, &Path::Root("event data"))?;
        let kind = req_str(data, "type", &root)?;
        // The SDKs dispatch on the SSE event name, line readers on the data's type: they must agree.
        if let Some(name) = event.event.as_deref()
            && name != kind
        {
            return Err(LlmError::EventTypeMismatch { event: quote(name), data_type: quote(kind) });
        }
        match kind {
            "message_start" => {
                let message_path = root.key("message");
                let message = object(required(data, "message", &root)?, &message_path)?;
                // The SDKs start the message snapshot from this content: a block in it would be a
                // tool use no delta announced.
                if !opt_array(message, "content", &message_path)?.is_empty() {
                    return Err(LlmError::InvalidStream {
                        path: message_path.key("content").to_string(),
                        reason: "message_start with content",
                    });
                }
            }
            "content_block_start" => {
                let index = req_index(data, "index", &root)?;
                let block_path = root.key("content_block");
                let block = object(required(data, "content_block", &root)?, &block_path)?;
                let block_kind = req_str(block, "type", &block_path)?;
                if self.calls.contains_key(&(0, index)) {
                    return Err(LlmError::InvalidStream { path: "index".to_owned(), reason: "content block started twice" });
                }
                if is_anthropic_tool_block(block_kind) {
                    let name = req_tool_name(block, "name", &block_path)?;
                    let id = opt_str(block, "id", &block_path)?.map(str::to_owned);
                    let start_input = member(block, "input").cloned();
                    let call = self.start_call((0, index))?;
                    *call = CallState { id, name: name.clone(), name_complete: true, start_input, ..CallState::default() };
                    notes.push(AssemblerNote::ToolNameComplete { choice: 0, index, name });
                } else if block_kind == "text" {
                    if let Some(text) = opt_str(block, "text", &block_path)?
                        && !text.is_empty()
                    {
                        notes.push(span(text, "/content_block/text".to_owned(), TextKind::Content));
                    }
                } else if !is_anthropic_inert_block(block_kind) {
                    return Err(unsupported(&block_path.key("type"), block_kind));
                }
            }
            "content_block_delta" => {
                let index = req_index(data, "index", &root)?;
                let delta_path = root.key("delta");
                let delta = object(required(data, "delta", &root)?, &delta_path)?;
                match req_str(delta, "type", &delta_path)? {
                    "text_delta" => {
                        let text = req_str(delta, "text", &delta_path)?;
                        if !text.is_empty() {
                            notes.push(span(text, "/delta/text".to_owned(), TextKind::Content));
                        }
                    }
                    "input_json_delta" => {
                        let partial = req_str(delta, "partial_json", &delta_path)?;
                        let Some(call) = self.calls.get_mut(&(0, index)).filter(|call| !call.complete) else {
                            return Err(LlmError::InvalidStream {
                                path: "index".to_owned(),
                                reason: "input_json_delta for a block that is not an open tool use",
                            });
                        };
                        if call.arguments.len().saturating_add(partial.len()) > MAX_ARGUMENTS_BYTES {
                            return Err(LlmError::TooLarge { what: "tool call arguments", limit: MAX_ARGUMENTS_BYTES });
                        }
                        call.arguments.push_str(partial);
                        if !partial.is_empty() {
                            notes.push(span(partial, "/delta/partial_json".to_owned(), TextKind::Arguments { choice: 0, index }));
                        }
                    }
                    // thinking_delta, signature_delta, citations_delta and future deltas carry no
                    // tool call.
                    _ => {}
                }
            }
            "content_block_stop" => {
                let index = req_index(data, "index", &root)?;
                if let Some(call) = self.calls.get_mut(&(0, index)).filter(|call| !call.complete) {
                    notes.push(AssemblerNote::ToolCallComplete(call.close(0, index)));
                }
            }
            "message_stop" => {
                self.complete_calls(None, notes)?;
                notes.push(AssemblerNote::Done);
                self.done = true;
            }
            // ping, message_delta, error, and event types added later (Anthropic's versioning
            // policy says clients must tolerate them) carry no tool call.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "llm_tests.rs"]
pub(crate) mod tests;
