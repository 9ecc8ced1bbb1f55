//! Card action data: the `value` of an `adaptiveCard/action` invoke or an `Action.Submit` message,
//! which the client fills in. Any JSON decodes to a [`CardAction`] the turn can act on (positive
//! request numbers, trimmed non-empty text) or to an [`ActionError`] (the turn answers it with a
//! 400 invoke response or a usage message); nothing panics. The edge is fed the same payloads by
//! `fuzz::activity`.

use super::{apply_json, config, edit_anything, json_edits, weird_value};
use passkey::bot::actions::{ActionError, CardAction, from_execute, from_submit};
use proptest::prelude::*;
use serde_json::{Value, json};

fn valid_submits() -> Vec<Value> {
    vec![
        json!({"verb": "submitRequest", "record": "db-prod", "duration": "2h", "justification": "INC-1", "ticket": "INC-1"}),
        json!({"verb": "approve", "requestId": 42, "comment": "ok"}),
        json!({"verb": "deny", "requestId": "#7", "comment": "no"}),
        json!({"verb": "release", "requestId": "9"}),
        json!({"verb": "extend", "requestId": 9, "duration": "30m"}),
        json!({"verb": "refresh"}),
        json!({"action": "refresh", "requestId": 3, "view": "approver"}),
        json!({"verb": "reviewKeep", "reviewId": 4, "kind": "AUTHORITY", "itemId": 12}),
        json!({"verb": "reviewRemove", "reviewId": "4", "kind": "BREAK_GLASS", "itemId": 7}),
        json!({"verb": "reviewConfirm", "reviewId": 4, "shown": "AUTHORITY:12,BREAK_GLASS:7"}),
    ]
}

fn valid_executes() -> Vec<Value> {
    valid_submits()
        .into_iter()
        .map(|mut data| {
            let verb = data
                .as_object_mut()
                .and_then(|m| m.remove("verb").or_else(|| m.remove("action")))
                .unwrap();
            json!({"action": {"type": "Action.Execute", "verb": verb, "data": data}, "trigger": "manual"})
        })
        .collect()
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::String),
        proptest::sample::select(vec![
            "approve",
            "deny",
            "release",
            "extend",
            "refresh",
            "submitRequest",
            "Action.Execute",
            "requestId",
            "#1",
            " 1 ",
            "-1",
            "0",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                proptest::sample::select(vec![
                    "action",
                    "verb",
                    "type",
                    "data",
                    "requestId",
                    "record",
                    "duration",
                    "comment",
                    "justification",
                    "ticket",
                    "view",
                    "x",
                ])
                .prop_map(String::from),
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// What the turn relies on.
fn check(decoded: Result<CardAction, ActionError>) -> Result<(), TestCaseError> {
    let text_ok = |t: &Option<String>| t.as_deref().is_none_or(|t| !t.is_empty() && t.trim() == t);
    match decoded {
        Ok(CardAction::SubmitRequest {
            record,
            duration,
            justification,
            ticket,
        }) => {
            prop_assert!(text_ok(&Some(record)));
            prop_assert!(text_ok(&duration) && text_ok(&justification) && text_ok(&ticket));
        }
        Ok(
            CardAction::Approve {
                request_id,
                comment,
            }
            | CardAction::Deny {
                request_id,
                comment,
            },
        ) => {
            prop_assert!(request_id > 0);
            prop_assert!(text_ok(&comment));
        }
        Ok(CardAction::Release { request_id }) => prop_assert!(request_id > 0),
        Ok(CardAction::Extend {
            request_id,
            duration,
        }) => {
            prop_assert!(request_id > 0);
            prop_assert!(text_ok(&Some(duration)));
        }
        Ok(CardAction::Refresh { request_id, view }) => {
            prop_assert!(request_id.is_none_or(|id| id > 0));
            prop_assert!(text_ok(&view));
        }
        Ok(CardAction::ReviewDecide {
            review_id,
            kind,
            item_id,
            ..
        }) => {
            prop_assert!(review_id > 0 && item_id > 0);
            prop_assert!(kind == "AUTHORITY" || kind == "BREAK_GLASS");
        }
        Ok(CardAction::ReviewConfirm { review_id, shown }) => {
            prop_assert!(review_id > 0);
            prop_assert!(
                shown
                    .iter()
                    .all(|(k, id)| *id > 0 && (k == "AUTHORITY" || k == "BREAK_GLASS"))
            );
        }
        Err(e) => {
            let shown = e.to_string();
            prop_assert!(shown.chars().count() <= 120, "{shown}");
            if let ActionError::UnknownVerb(verb) = e {
                prop_assert!(verb.chars().count() <= 40);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_json_is_an_action_or_an_error(value in any_json()) {
        check(from_execute(&value))?;
        check(from_submit(&value))?;
        check(from_execute(&json!({"action": value.clone()})))?;
        check(from_execute(&json!({"action": {"type": "Action.Execute", "verb": "approve", "data": value}})))?;
    }

    #[test]
    fn any_bytes_that_are_json_are_an_action_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
            check(from_execute(&value))?;
            check(from_submit(&value))?;
        }
    }

    #[test]
    fn edited_submit_payloads_are_actions_or_errors(
        base in proptest::sample::select(valid_submits()),
        edits in json_edits(),
    ) {
        let value = apply_json(&base, &edits, &edit_anything);
        check(from_submit(&value))?;
    }

    #[test]
    fn edited_execute_payloads_are_actions_or_errors(
        base in proptest::sample::select(valid_executes()),
        edits in json_edits(),
    ) {
        let value = apply_json(&base, &edits, &edit_anything);
        check(from_execute(&value))?;
    }

    /// A request number of the wrong type is refused by name, never taken as another request.
    #[test]
    fn a_request_id_of_the_wrong_type_is_refused(
        verb in proptest::sample::select(vec!["approve", "deny", "release", "extend"]),
        id in weird_value(),
    ) {
        let value = json!({"verb": verb, "requestId": id, "duration": "1h"});
        let positive = match &id {
            Value::Number(n) => n.as_i64().is_some_and(|n| n > 0),
            Value::String(s) => s.trim().trim_start_matches('#').parse::<i64>().is_ok_and(|n| n > 0),
            _ => false,
        };
        match from_submit(&value) {
            Ok(action) => {
                prop_assert!(positive, "{id} was taken as a request number: {action:?}");
                check(Ok(action))?;
            }
            Err(e) => {
                prop_assert!(!positive, "{id} was refused: {e}");
                prop_assert_eq!(e, ActionError::BadRequestId("requestId"));
            }
        }
    }
}

#[test]
fn the_valid_payloads_decode() {
    for v in valid_submits() {
        assert!(from_submit(&v).is_ok(), "{v}");
    }
    for v in valid_executes() {
        assert!(from_execute(&v).is_ok(), "{v}");
    }
}
