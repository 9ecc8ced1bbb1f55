//! Card actions: what a tap on an Adaptive Card button means. `Action.Execute` arrives as an
//! `invoke` named `adaptiveCard/action` with `value.action = {type, verb, data}`; `Action.Submit`
//! arrives as a `message` whose `value` is the data itself (our cards put the verb in it). Both
//! decode to the same [`CardAction`], so the rest of the bot handles one vocabulary.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardAction {
    SubmitRequest {
        record: String,
        duration: Option<String>,
        justification: Option<String>,
        ticket: Option<String>,
    },
    Approve {
        request_id: i64,
        comment: Option<String>,
    },
    Deny {
        request_id: i64,
        comment: Option<String>,
    },
    Release {
        request_id: i64,
    },
    Extend {
        request_id: i64,
        duration: String,
    },
    /// Keep (`keep`) or remove one row of an access review.
    ReviewDecide {
        review_id: i64,
        kind: String,
        item_id: i64,
        keep: bool,
    },
    /// "Confirm the rest": keep the undecided rows the card showed (`shown`).
    ReviewConfirm {
        review_id: i64,
        shown: Vec<(String, i64)>,
    },
    /// A card asking for its current, per-user view (automatic refresh or a Refresh button).
    Refresh {
        request_id: Option<i64>,
        view: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("the card action has no verb")]
    MissingVerb,
    #[error("unknown card action `{0}`")]
    UnknownVerb(String),
    #[error("the card action is missing `{0}`")]
    MissingField(&'static str),
    #[error("`{0}` must be a request number")]
    BadRequestId(&'static str),
    #[error("`{0}` must be a positive number")]
    BadNumber(&'static str),
    #[error("`kind` must be AUTHORITY or BREAK_GLASS")]
    BadRowKind,
    #[error("the card action is not an Action.Execute payload")]
    NotExecute,
}

/// Decodes an `adaptiveCard/action` invoke value.
pub fn from_execute(value: &Value) -> Result<CardAction, ActionError> {
    let action = value.get("action").ok_or(ActionError::NotExecute)?;
    if action
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t != "Action.Execute")
    {
        return Err(ActionError::NotExecute);
    }
    let verb = action
        .get("verb")
        .and_then(Value::as_str)
        .ok_or(ActionError::MissingVerb)?;
    let empty = Value::Object(Default::default());
    decode(verb, action.get("data").unwrap_or(&empty))
}

/// Decodes an `Action.Submit` message value (`{"verb": …, …data}`; `action` is accepted for the verb too).
pub fn from_submit(value: &Value) -> Result<CardAction, ActionError> {
    let verb = value
        .get("verb")
        .or_else(|| value.get("action"))
        .and_then(Value::as_str)
        .ok_or(ActionError::MissingVerb)?;
    decode(verb, value)
}

fn decode(verb: &str, data: &Value) -> Result<CardAction, ActionError> {
    let text = |key: &str| {
        data.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let id = || request_id(data);
    Ok(match verb {
        "submitRequest" => CardAction::SubmitRequest {
            record: text("record").ok_or(ActionError::MissingField("record"))?,
            duration: text("duration"),
            justification: text("justification"),
            ticket: text("ticket"),
        },
        "approve" => CardAction::Approve {
            request_id: id()?,
            comment: text("comment"),
        },
        "deny" => CardAction::Deny {
            request_id: id()?,
            comment: text("comment"),
        },
        "release" => CardAction::Release { request_id: id()? },
        "extend" => CardAction::Extend {
            request_id: id()?,
            duration: text("duration").ok_or(ActionError::MissingField("duration"))?,
        },
        "reviewKeep" | "reviewRemove" => CardAction::ReviewDecide {
            review_id: positive(data, "reviewId")?,
            kind: review_row_kind(text("kind"))?,
            item_id: positive(data, "itemId")?,
            keep: verb == "reviewKeep",
        },
        "reviewConfirm" => CardAction::ReviewConfirm {
            review_id: positive(data, "reviewId")?,
            shown: text("shown")
                .unwrap_or_default()
                .split(',')
                .filter_map(|row| {
                    let (kind, id) = row.split_once(':')?;
                    let kind = review_row_kind(Some(kind.to_string())).ok()?;
                    Some((kind, id.trim().parse().ok().filter(|id: &i64| *id > 0)?))
                })
                .collect(),
        },
        "refresh" => CardAction::Refresh {
            request_id: if data.get("requestId").is_some() {
                Some(id()?)
            } else {
                None
            },
            view: text("view"),
        },
        other => return Err(ActionError::UnknownVerb(other.chars().take(40).collect())),
    })
}

/// An access review row kind, exactly as the card names it.
fn review_row_kind(kind: Option<String>) -> Result<String, ActionError> {
    match kind.as_deref() {
        Some(k @ ("AUTHORITY" | "BREAK_GLASS")) => Ok(k.to_string()),
        Some(_) => Err(ActionError::BadRowKind),
        None => Err(ActionError::MissingField("kind")),
    }
}

/// `requestId` as a number or a numeric string; positive.
fn request_id(data: &Value) -> Result<i64, ActionError> {
    positive(data, "requestId").map_err(|e| match e {
        ActionError::BadNumber(key) => ActionError::BadRequestId(key),
        other => other,
    })
}

/// `key` as a number or a numeric string; positive.
fn positive(data: &Value, key: &'static str) -> Result<i64, ActionError> {
    let raw = data.get(key).ok_or(ActionError::MissingField(key))?;
    let id = match raw {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().trim_start_matches('#').parse().ok(),
        _ => None,
    };
    id.filter(|id| *id > 0).ok_or(ActionError::BadNumber(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn execute_and_submit_decode_to_the_same_action() {
        let execute = json!({"action": {"type": "Action.Execute", "verb": "approve", "data": {"requestId": 42, "comment": " ok "}}, "trigger": "manual"});
        let submit = json!({"verb": "approve", "requestId": "42", "comment": "ok"});
        let expected = CardAction::Approve {
            request_id: 42,
            comment: Some("ok".into()),
        };
        assert_eq!(from_execute(&execute).unwrap(), expected);
        assert_eq!(from_submit(&submit).unwrap(), expected);
    }

    #[test]
    fn every_verb_decodes() {
        let cases = [
            (
                json!({"verb": "submitRequest", "record": "db-prod", "duration": "2h", "justification": "INC-1"}),
                CardAction::SubmitRequest {
                    record: "db-prod".into(),
                    duration: Some("2h".into()),
                    justification: Some("INC-1".into()),
                    ticket: None,
                },
            ),
            (
                json!({"verb": "deny", "requestId": 7}),
                CardAction::Deny {
                    request_id: 7,
                    comment: None,
                },
            ),
            (
                json!({"verb": "release", "requestId": "#9"}),
                CardAction::Release { request_id: 9 },
            ),
            (
                json!({"verb": "extend", "requestId": 9, "duration": "30m"}),
                CardAction::Extend {
                    request_id: 9,
                    duration: "30m".into(),
                },
            ),
            (
                json!({"verb": "refresh"}),
                CardAction::Refresh {
                    request_id: None,
                    view: None,
                },
            ),
            (
                json!({"action": "refresh", "requestId": 3, "view": "approver"}),
                CardAction::Refresh {
                    request_id: Some(3),
                    view: Some("approver".into()),
                },
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(from_submit(&value).unwrap(), expected, "{value}");
        }
    }

    #[test]
    fn review_verbs_decode_and_bad_rows_are_named() {
        assert_eq!(
            from_submit(
                &json!({"verb": "reviewRemove", "reviewId": "3", "kind": "AUTHORITY", "itemId": 12})
            ),
            Ok(CardAction::ReviewDecide {
                review_id: 3,
                kind: "AUTHORITY".into(),
                item_id: 12,
                keep: false,
            })
        );
        assert_eq!(
            from_submit(
                &json!({"verb": "reviewConfirm", "reviewId": 3, "shown": "AUTHORITY:12,OWNER:4,BREAK_GLASS:x,BREAK_GLASS:7"})
            ),
            Ok(CardAction::ReviewConfirm {
                review_id: 3,
                shown: vec![("AUTHORITY".into(), 12), ("BREAK_GLASS".into(), 7)],
            })
        );
        assert_eq!(
            from_submit(
                &json!({"verb": "reviewKeep", "reviewId": 3, "kind": "OWNER", "itemId": 1})
            ),
            Err(ActionError::BadRowKind)
        );
        assert_eq!(
            from_submit(
                &json!({"verb": "reviewKeep", "reviewId": 0, "kind": "AUTHORITY", "itemId": 1})
            ),
            Err(ActionError::BadNumber("reviewId"))
        );
        assert_eq!(
            from_submit(&json!({"verb": "reviewKeep", "reviewId": 2, "kind": "AUTHORITY"})),
            Err(ActionError::MissingField("itemId"))
        );
    }

    #[test]
    fn malformed_actions_are_named_not_guessed() {
        assert_eq!(
            from_submit(&json!({"requestId": 1})),
            Err(ActionError::MissingVerb)
        );
        assert_eq!(
            from_submit(&json!({"verb": "approve"})),
            Err(ActionError::MissingField("requestId"))
        );
        assert_eq!(
            from_submit(&json!({"verb": "approve", "requestId": "abc"})),
            Err(ActionError::BadRequestId("requestId"))
        );
        assert_eq!(
            from_submit(&json!({"verb": "approve", "requestId": -4})),
            Err(ActionError::BadRequestId("requestId"))
        );
        assert_eq!(
            from_submit(&json!({"verb": "approve", "requestId": 1.5})),
            Err(ActionError::BadRequestId("requestId"))
        );
        assert_eq!(
            from_submit(&json!({"verb": "extend", "requestId": 1})),
            Err(ActionError::MissingField("duration"))
        );
        assert_eq!(
            from_submit(&json!({"verb": "submitRequest", "record": "  "})),
            Err(ActionError::MissingField("record"))
        );
        assert_eq!(
            from_submit(&json!({"verb": "rm -rf"})),
            Err(ActionError::UnknownVerb("rm -rf".into()))
        );
        assert_eq!(
            from_execute(&json!({"action": {"type": "Action.Submit", "verb": "approve"}})),
            Err(ActionError::NotExecute)
        );
        assert_eq!(
            from_execute(&json!({"verb": "approve"})),
            Err(ActionError::NotExecute)
        );
    }
}
