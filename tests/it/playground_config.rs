//! The Microsoft 365 Agents Playground setups in the repository root (docs/PLAYGROUND.md) start the
//! Playground and name Passkey's demo people. The Playground (0.2.28) refuses a file whose `users`
//! are not exactly five — the first version of `.m365agentsplayground.yml` had four and the
//! Playground exited at once — and each person must carry exactly its seven fields. The people
//! must be the demo data set's, so the chat's user is someone the bot knows.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const PERSON_FIELDS: [&str; 7] = [
    "id",
    "name",
    "userPrincipleName",
    "aadObjectId",
    "givenName",
    "surname",
    "email",
];

type Person = BTreeMap<String, String>;

/// The parts of a Playground setup these tests look at.
#[derive(Debug, Default)]
struct Setup {
    tenant_id: String,
    current_user: Person,
    users: Vec<Person>,
}

/// Reads the YAML subset the setups use: top-level scalars, the `currentUser` mapping and the
/// `users` list of mappings. Anything else it meets in those blocks is an error, not a guess.
fn read_setup(text: &str) -> Setup {
    let mut setup = Setup::default();
    let mut block = String::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let (key, value) = line
            .trim()
            .trim_start_matches("- ")
            .split_once(':')
            .unwrap_or_else(|| panic!("line {n}: expected `key: value`: {line}"));
        let (key, value) = (key.trim().to_string(), value.trim().to_string());
        if indent == 0 {
            block = key.clone();
            if key == "tenantId" {
                setup.tenant_id = value;
            }
            continue;
        }
        match block.as_str() {
            "currentUser" => {
                assert_eq!(
                    indent, 2,
                    "line {n}: currentUser fields are indented by two"
                );
                assert!(
                    setup.current_user.insert(key, value).is_none(),
                    "line {n}: repeated"
                );
            }
            "users" => {
                if line.trim_start().starts_with("- ") {
                    assert_eq!(indent, 2, "line {n}: a user starts with `  - `");
                    setup.users.push(Person::new());
                } else {
                    assert_eq!(indent, 4, "line {n}: user fields are indented by four");
                }
                let user = setup
                    .users
                    .last_mut()
                    .unwrap_or_else(|| panic!("line {n}: a field before the first user"));
                assert!(user.insert(key, value).is_none(), "line {n}: repeated");
            }
            _ => {}
        }
    }
    setup
}

fn dataset() -> Value {
    serde_json::from_str(include_str!("../../src/demo/dataset.json")).expect("dataset is JSON")
}

fn demo_user(key: &str) -> Value {
    dataset()["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["key"] == key)
        .unwrap_or_else(|| panic!("no demo user {key}"))
        .clone()
}

/// Checks what the Playground itself requires, and that every demo person is there as the data
/// set describes them.
fn assert_starts_with_the_demo_people(name: &str, setup: &Setup) {
    assert_eq!(
        setup.users.len(),
        5,
        "{name}: the Playground wants exactly five users"
    );
    let people: Vec<&Person> = std::iter::once(&setup.current_user)
        .chain(&setup.users)
        .collect();
    for person in &people {
        let fields: BTreeSet<&str> = person.keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            PERSON_FIELDS.into_iter().collect(),
            "{name}: {person:?}"
        );
    }
    for field in ["id", "aadObjectId", "email"] {
        let distinct: BTreeSet<&String> = people.iter().map(|p| &p[field]).collect();
        assert_eq!(distinct.len(), people.len(), "{name}: `{field}` repeats");
    }
    let dataset = dataset();
    assert_eq!(
        setup.tenant_id,
        dataset["tenant_id"].as_str().unwrap(),
        "{name}"
    );
    for demo in dataset["users"].as_array().unwrap() {
        let aad = demo["aad_object_id"].as_str().unwrap();
        let person = people
            .iter()
            .find(|p| p["aadObjectId"] == aad)
            .unwrap_or_else(|| panic!("{name}: demo user {} is missing", demo["key"]));
        assert_eq!(person["name"], demo["display_name"].as_str().unwrap());
        assert_eq!(person["email"], demo["email"].as_str().unwrap());
        assert_eq!(person["userPrincipleName"], demo["email"].as_str().unwrap());
    }
}

#[test]
fn the_default_setup_starts_the_playground_as_the_demo_requester() {
    let setup = read_setup(include_str!("../../.m365agentsplayground.yml"));
    assert_starts_with_the_demo_people(".m365agentsplayground.yml", &setup);
    let alice = demo_user("alice");
    assert_eq!(setup.current_user["aadObjectId"], alice["aad_object_id"]);
    assert_eq!(alice["role"], "REQUESTER");
}

#[test]
fn the_approver_setup_starts_the_playground_as_the_approver_of_db_prod() {
    let setup = read_setup(include_str!("../../.m365agentsplayground.approver.yml"));
    assert_starts_with_the_demo_people(".m365agentsplayground.approver.yml", &setup);
    let bob = demo_user("bob");
    assert_eq!(setup.current_user["aadObjectId"], bob["aad_object_id"]);
    // docs/PLAYGROUND.md: Alice asks for db-prod and Bob, its approver, gets the card.
    let records = dataset()["records"].as_array().unwrap().clone();
    let db_prod = records.iter().find(|r| r["title"] == "db-prod").unwrap();
    assert_eq!(db_prod["approvers"], serde_json::json!([["USER", "bob"]]));
}

#[test]
fn a_setup_with_four_users_is_what_the_playground_refused() {
    let four = include_str!("../../.m365agentsplayground.yml")
        .split("  - id: user-id-frank")
        .next()
        .unwrap()
        .to_string();
    let setup = read_setup(&four);
    assert_eq!(setup.users.len(), 4);
    let refused = std::panic::catch_unwind(|| {
        assert_starts_with_the_demo_people("four users", &setup);
    });
    assert!(refused.is_err(), "four users must be refused");
}
