use serde_json::json;

use super::*;
use crate::json_doc::parse_doc;

/// A message as the cases write it (owned); `parse_messages` borrows from the body.
type Owned = (String, Option<Value>, Option<Value>);

fn msg(method: &str, id: Option<Value>, params: Option<Value>) -> Owned {
    (method.to_owned(), id, params)
}

fn owned(m: &RpcMessage<'_>) -> Owned {
    (m.method.to_owned(), m.id.clone(), m.params.map(Doc::to_value))
}

#[test]
fn accepted_messages() {
    let cases: &[(&str, Value, Vec<Owned>, bool)] = &[
        (
            "request with integer id",
            json!({"jsonrpc":"2.0","method":"tools/list","id":1}),
            vec![msg("tools/list", Some(json!(1)), None)],
            false,
        ),
        (
            "request with string id and params",
            json!({"jsonrpc":"2.0","method":"tools/call","id":"a-1","params":{"name":"x"}}),
            vec![msg("tools/call", Some(json!("a-1")), Some(json!({"name":"x"})))],
            false,
        ),
        ("negative integer id", json!({"jsonrpc":"2.0","method":"m","id":-5}), vec![msg("m", Some(json!(-5)), None)], false),
        ("u64 id", json!({"jsonrpc":"2.0","method":"m","id":u64::MAX}), vec![msg("m", Some(json!(u64::MAX)), None)], false),
        (
            "notification without id",
            json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            vec![msg("notifications/initialized", None, None)],
            false,
        ),
        ("array params", json!({"jsonrpc":"2.0","method":"m","params":[1,2]}), vec![msg("m", None, Some(json!([1, 2])))], false),
        ("batch of one is a batch", json!([{"jsonrpc":"2.0","method":"m","id":1}]), vec![msg("m", Some(json!(1)), None)], true),
        (
            "batch keeps order, mixes notifications",
            json!([{"jsonrpc":"2.0","method":"a","id":1},{"jsonrpc":"2.0","method":"b"}]),
            vec![msg("a", Some(json!(1)), None), msg("b", None, None)],
            true,
        ),
    ];
    for (name, body, want, batch) in cases {
        let got = parse_messages(&Doc::borrowing(body), 4).map(|(m, batch)| (m.iter().map(owned).collect::<Vec<_>>(), batch));
        assert_eq!(got, Ok((want.clone(), *batch)), "case {name}");
    }
}

#[test]
fn refused_messages() {
    use RpcError::*;
    let long = "m".repeat(MAX_METHOD_LEN + 1);
    let long_id = "i".repeat(MAX_ID_LEN + 1);
    let cases: &[(&str, Value, RpcError)] = &[
        ("string body", json!("x"), NotObjectOrArray),
        ("null body", json!(null), NotObjectOrArray),
        ("empty batch", json!([]), EmptyBatch),
        ("batch element not an object", json!([{"jsonrpc":"2.0","method":"m"}, 1]), NotAnObject { at: 1 }),
        ("nested batch", json!([[{"jsonrpc":"2.0","method":"m"}]]), NotAnObject { at: 0 }),
        ("missing jsonrpc", json!({"method":"m"}), MissingMember { at: 0, name: "jsonrpc" }),
        ("jsonrpc 1.0", json!({"jsonrpc":"1.0","method":"m"}), InvalidVersion { at: 0 }),
        ("jsonrpc number", json!({"jsonrpc":2.0,"method":"m"}), InvalidVersion { at: 0 }),
        ("jsonrpc with space", json!({"jsonrpc":"2.0 ","method":"m"}), InvalidVersion { at: 0 }),
        ("missing method", json!({"jsonrpc":"2.0","id":1}), MissingMember { at: 0, name: "method" }),
        ("method not a string", json!({"jsonrpc":"2.0","method":["tools/call"]}), InvalidMethod { at: 0, reason: "is not a string" }),
        ("empty method", json!({"jsonrpc":"2.0","method":""}), InvalidMethod { at: 0, reason: "is empty" }),
        ("method too long", json!({"jsonrpc":"2.0","method":long}), InvalidMethod { at: 0, reason: "is longer than 256 bytes" }),
        (
            "method with trailing space",
            json!({"jsonrpc":"2.0","method":"tools/call "}),
            InvalidMethod { at: 0, reason: "contains a character that is not printable ASCII" },
        ),
        (
            "method with zero-width space",
            json!({"jsonrpc":"2.0","method":"tools/\u{200b}call"}),
            InvalidMethod { at: 0, reason: "contains a character that is not printable ASCII" },
        ),
        (
            "method with NUL",
            json!({"jsonrpc":"2.0","method":"tools/call\u{0}"}),
            InvalidMethod { at: 0, reason: "contains a character that is not printable ASCII" },
        ),
        ("null id", json!({"jsonrpc":"2.0","method":"m","id":null}), InvalidId { at: 0 }),
        ("fractional id", json!({"jsonrpc":"2.0","method":"m","id":1.5}), InvalidId { at: 0 }),
        ("float-valued integer id", json!({"jsonrpc":"2.0","method":"m","id":1.0}), InvalidId { at: 0 }),
        ("boolean id", json!({"jsonrpc":"2.0","method":"m","id":true}), InvalidId { at: 0 }),
        ("object id", json!({"jsonrpc":"2.0","method":"m","id":{}}), InvalidId { at: 0 }),
        ("id too long", json!({"jsonrpc":"2.0","method":"m","id":long_id}), InvalidId { at: 0 }),
        ("string params", json!({"jsonrpc":"2.0","method":"m","params":"x"}), InvalidParams { at: 0 }),
        ("null params", json!({"jsonrpc":"2.0","method":"m","params":null}), InvalidParams { at: 0 }),
        ("wrong-case method member alone", json!({"jsonrpc":"2.0","Method":"tools/call"}), UnknownMember { at: 0, name: "Method".into() }),
        (
            "second upper-case method member",
            json!({"jsonrpc":"2.0","method":"tools/list","METHOD":"tools/call"}),
            UnknownMember { at: 0, name: "METHOD".into() },
        ),
        ("wrong-case params member", json!({"jsonrpc":"2.0","method":"m","Params":{}}), UnknownMember { at: 0, name: "Params".into() }),
        ("response with result", json!({"jsonrpc":"2.0","id":1,"result":{}}), UnknownMember { at: 0, name: "result".into() }),
        (
            "response with error",
            json!({"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}),
            UnknownMember { at: 0, name: "error".into() },
        ),
        ("extension member", json!({"jsonrpc":"2.0","method":"m","_meta":{}}), UnknownMember { at: 0, name: "_meta".into() }),
        (
            "bad element reported at its index",
            json!([{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","method":"b"},{"jsonrpc":"2.0","method":"c","id":null}]),
            InvalidId { at: 2 },
        ),
    ];
    for (name, body, want) in cases {
        assert_eq!(parse_messages(&Doc::borrowing(body), 4).as_ref(), Err(want), "case {name}");
    }
}

#[test]
fn batch_bound() {
    let element = json!({"jsonrpc":"2.0","method":"m"});
    let at_limit = Value::Array(vec![element.clone(); 4]);
    assert_eq!(parse_messages(&Doc::borrowing(&at_limit), 4).map(|(m, b)| (m.len(), b)), Ok((4, true)));
    let over = Value::Array(vec![element.clone(); 5]);
    assert_eq!(parse_messages(&Doc::borrowing(&over), 4), Err(RpcError::TooManyInBatch { len: 5, max: 4 }));
    // A zero limit forbids batches but not single requests.
    assert_eq!(parse_messages(&Doc::borrowing(&Value::Array(vec![element.clone()])), 0), Err(RpcError::TooManyInBatch { len: 1, max: 0 }));
    assert!(parse_messages(&Doc::borrowing(&element), 0).is_ok());
}

#[test]
fn method_and_id_length_bounds() {
    let at = |method: String, id: String| json!({"jsonrpc":"2.0","method":method,"id":id});
    assert!(parse_messages(&Doc::borrowing(&at("m".repeat(MAX_METHOD_LEN), "i".repeat(MAX_ID_LEN))), 1).is_ok());
    assert!(parse_messages(&Doc::borrowing(&at("m".repeat(MAX_METHOD_LEN + 1), "i".into())), 1).is_err());
    assert!(parse_messages(&Doc::borrowing(&at("m".into(), "i".repeat(MAX_ID_LEN + 1))), 1).is_err());
}

#[test]
fn strict_json_and_jsonrpc_together() {
    // The duplicate-member evasion is stopped one layer down; the escaped method decodes and is
    // then the plain method.
    assert!(parse_doc(br#"{"jsonrpc":"2.0","method":"tools/list","method":"tools/call"}"#, 8).is_err());
    let body = parse_doc(br#"{"jsonrpc":"2.0","method":"\u0074ools/call","id":1,"params":{"name":"x"}}"#, 8).unwrap();
    let (messages, _) = parse_messages(&body, 1).unwrap();
    assert_eq!(messages.first().map(|m| m.method), Some("tools/call"));
    // An id beyond u64 is a float after parsing and therefore refused, not rounded.
    let body = parse_doc(br#"{"jsonrpc":"2.0","method":"m","id":18446744073709551616}"#, 8).unwrap();
    assert_eq!(parse_messages(&body, 1), Err(RpcError::InvalidId { at: 0 }));
}

#[test]
fn tool_names() {
    let long_ok = "a".repeat(MAX_TOOL_NAME_LEN);
    let long_bad = "a".repeat(MAX_TOOL_NAME_LEN + 1);
    let cases: &[(&str, &str, bool)] = &[
        ("simple", "get_weather", true),
        ("spec examples", "DATA_EXPORT_v2", true),
        ("dots", "admin.tools.list", true),
        ("dash", "user-profile", true),
        ("one char", "x", true),
        ("at length limit", &long_ok, true),
        ("over length limit", &long_bad, false),
        ("empty", "", false),
        ("space inside", "get weather", false),
        ("trailing space", "delete_file ", false),
        ("leading space", " delete_file", false),
        ("slash", "files/delete", false),
        ("comma", "a,b", false),
        ("zero-width space", "delete\u{200b}_file", false),
        ("zero-width joiner", "delete_file\u{200d}", false),
        ("bidi override", "delete_file\u{202e}", false),
        ("tag character", "delete_file\u{e0041}", false),
        ("cyrillic homoglyph", "dеlete_file", false),
        ("fullwidth letters", "ｄｅｌｅｔｅ", false),
        ("non-breaking space", "delete\u{a0}file", false),
        ("newline", "delete_file\n", false),
        ("NUL", "delete_file\0", false),
    ];
    for (name, tool, ok) in cases {
        assert_eq!(is_valid_tool_name(tool), *ok, "case {name}");
        let params = json!({"name": tool, "arguments": {}});
        let params = Doc::borrowing(&params);
        let got = mcp_tool_name(Some(&params));
        if *ok {
            assert_eq!(got, Ok(*tool), "case {name}");
        } else {
            assert!(matches!(got, Err(RpcError::InvalidToolName { .. })), "case {name}: {got:?}");
        }
    }
}

#[test]
fn tool_call_params() {
    use RpcError::*;
    let cases: &[(&str, Option<Value>, Result<&str, RpcError>)] = &[
        ("name only", Some(json!({"name":"t"})), Ok("t")),
        ("name and arguments", Some(json!({"name":"t","arguments":{"a":1}})), Ok("t")),
        ("meta is allowed", Some(json!({"name":"t","_meta":{"progressToken":1}})), Ok("t")),
        ("no params", None, Err(MissingToolParams)),
        ("array params", Some(json!(["t"])), Err(InvalidToolParams)),
        ("no name", Some(json!({"arguments":{}})), Err(MissingToolName)),
        ("name not a string", Some(json!({"name":["t"]})), Err(InvalidToolName { name: "[\"t\"]".into() })),
        ("name null", Some(json!({"name":null})), Err(InvalidToolName { name: "null".into() })),
        ("arguments array", Some(json!({"name":"t","arguments":[1]})), Err(InvalidArguments)),
        ("arguments string", Some(json!({"name":"t","arguments":"{}"})), Err(InvalidArguments)),
        ("arguments null", Some(json!({"name":"t","arguments":null})), Err(InvalidArguments)),
        ("wrong-case Name beside name", Some(json!({"name":"safe","Name":"evil"})), Err(AmbiguousMember { name: "Name".into() })),
        ("wrong-case NAME alone", Some(json!({"NAME":"evil"})), Err(AmbiguousMember { name: "NAME".into() })),
        (
            "wrong-case Arguments",
            Some(json!({"name":"t","arguments":{},"Arguments":{"path":"/etc"}})),
            Err(AmbiguousMember { name: "Arguments".into() }),
        ),
    ];
    for (name, params, want) in cases {
        let params = params.as_ref().map(Doc::borrowing);
        assert_eq!(&mcp_tool_name(params.as_ref()), want, "case {name}");
    }
}

#[test]
fn quoted_client_text_is_bounded_and_escaped() {
    let params = json!({"name": format!("{}\u{202e}", "x".repeat(1000))});
    let err = mcp_tool_name(Some(&Doc::borrowing(&params))).unwrap_err();
    assert_eq!(err, RpcError::InvalidToolName { name: "x".repeat(64) });
    let params = json!({"name": "bad\u{202e}name"});
    let shown = mcp_tool_name(Some(&Doc::borrowing(&params))).unwrap_err().to_string();
    assert!(shown.contains(r"bad\u{202e}name"), "{shown}");
    let member = format!("{}\n", "k".repeat(10));
    let err = parse_messages(&Doc::borrowing(&json!({"jsonrpc":"2.0","method":"m", member: 1})), 1).unwrap_err();
    assert_eq!(err.to_string(), "JSON-RPC message 0 has member \"kkkkkkkkkk\\n\", which a request may not have");
}

#[test]
fn tool_arguments_lookup() {
    let cases: &[(&str, Option<Value>, Option<Value>)] = &[
        ("present", Some(json!({"name":"t","arguments":{"p":"x"}})), Some(json!({"p":"x"}))),
        ("absent", Some(json!({"name":"t"})), None),
        ("no params", None, None),
        ("params not an object", Some(json!([1])), None),
    ];
    for (name, params, want) in cases {
        let params = params.as_ref().map(Doc::borrowing);
        assert_eq!(tool_arguments(params.as_ref()).map(Doc::to_value).as_ref(), want.as_ref(), "case {name}");
    }
}

#[test]
fn a2a_methods_of_both_generations() {
    let cases: &[(&str, Option<&str>)] = &[
        ("message/send", Some("message/send")),
        ("SendMessage", Some("message/send")),
        ("message/stream", Some("message/stream")),
        ("SendStreamingMessage", Some("message/stream")),
        ("tasks/get", Some("tasks/get")),
        ("GetTask", Some("tasks/get")),
        ("tasks/list", Some("tasks/list")),
        ("ListTasks", Some("tasks/list")),
        ("tasks/cancel", Some("tasks/cancel")),
        ("CancelTask", Some("tasks/cancel")),
        ("tasks/resubscribe", Some("tasks/resubscribe")),
        ("SubscribeToTask", Some("tasks/resubscribe")),
        ("tasks/pushNotificationConfig/set", Some("tasks/pushNotificationConfig/set")),
        ("CreateTaskPushNotificationConfig", Some("tasks/pushNotificationConfig/set")),
        ("tasks/pushNotificationConfig/get", Some("tasks/pushNotificationConfig/get")),
        ("GetTaskPushNotificationConfig", Some("tasks/pushNotificationConfig/get")),
        ("tasks/pushNotificationConfig/list", Some("tasks/pushNotificationConfig/list")),
        ("ListTaskPushNotificationConfigs", Some("tasks/pushNotificationConfig/list")),
        ("ListTaskPushNotificationConfig", Some("tasks/pushNotificationConfig/list")),
        ("tasks/pushNotificationConfig/delete", Some("tasks/pushNotificationConfig/delete")),
        ("DeleteTaskPushNotificationConfig", Some("tasks/pushNotificationConfig/delete")),
        ("agent/getAuthenticatedExtendedCard", Some("agent/getAuthenticatedExtendedCard")),
        ("GetExtendedAgentCard", Some("agent/getAuthenticatedExtendedCard")),
        // Not methods of either generation.
        ("sendmessage", None),
        ("SENDMESSAGE", None),
        ("Message/Send", None),
        ("message/send ", None),
        ("message/send/", None),
        ("TaskSubscription", None),
        ("TaskResubscription", None),
        ("SetTaskPushNotificationConfig", None),
        ("GetAgentCard", None),
        ("ListTask", None),
        ("agent/authenticatedExtendedCard", None),
        ("tools/call", None),
        ("", None),
    ];
    for (method, want) in cases {
        assert_eq!(canonical_a2a_method(method), *want, "method {method:?}");
    }
}

#[test]
fn canonical_a2a_names_are_fixed_points() {
    for method in ["SendMessage", "GetTask", "ListTaskPushNotificationConfigs", "GetExtendedAgentCard"] {
        let canonical = canonical_a2a_method(method).unwrap();
        assert_eq!(canonical_a2a_method(canonical), Some(canonical), "{method}");
    }
}
