//! Effective permissions: Microsoft Graph group lookups against a loopback fake that speaks the
//! real wire format, and the resolver (ACL matching, caching, failing closed) on both databases.

use crate::common;

use async_trait::async_trait;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::tokens::HttpsTokens;
use common::{Db, t0};
use passkey::domain::*;
use passkey::governance::permissions::*;
use passkey::store::*;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const GRAPH_TOKEN: &str = "graph-access-token-for-tests";

#[derive(Default)]
struct GraphState {
    base: Mutex<String>,
    /// Every group request: (path, raw query).
    calls: Mutex<Vec<(String, String)>>,
    token_forms: Mutex<Vec<String>>,
}

/// Entra's token endpoint and Graph's `transitiveMemberOf`, on one loopback port.
async fn fake_graph() -> (String, Arc<GraphState>) {
    let state = Arc::new(GraphState::default());
    let app = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route(
            "/v1.0/users/{id}/transitiveMemberOf/microsoft.graph.group",
            get(groups),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    *state.base.lock().unwrap() = base.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, state)
}

async fn token(State(s): State<Arc<GraphState>>, body: String) -> Response {
    s.token_forms.lock().unwrap().push(body);
    Json(json!({"token_type": "Bearer", "expires_in": 3599, "access_token": GRAPH_TOKEN}))
        .into_response()
}

async fn groups(
    State(s): State<Arc<GraphState>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let path = uri.path().to_string();
    s.calls.lock().unwrap().push((path.clone(), query.clone()));
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok());
    if bearer != Some(&format!("Bearer {GRAPH_TOKEN}")) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if !query.split('&').any(|p| p == "$select=id,displayName") {
        return (StatusCode::BAD_REQUEST, "missing $select").into_response();
    }
    let base = s.base.lock().unwrap().clone();
    match id.as_str() {
        "user-unknown" => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "Request_ResourceNotFound"}})),
        )
            .into_response(),
        "user-throttled" => (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response(),
        "user-failing" => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        "user-forbidden" => StatusCode::FORBIDDEN.into_response(),
        "user-elsewhere" => Json(json!({
            "value": [],
            "@odata.nextLink": "http://127.0.0.2:9/v1.0/users/x/transitiveMemberOf/microsoft.graph.group?$skiptoken=a",
        }))
        .into_response(),
        _ if query.contains("$skiptoken=page2") => Json(json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects",
            "value": [{"@odata.type": "#microsoft.graph.group", "id": "g-3", "displayName": "SRE-Oncall"}],
        }))
        .into_response(),
        _ => Json(json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects",
            "@odata.nextLink": format!("{base}{path}?$select=id,displayName&$skiptoken=page2"),
            "value": [
                {"@odata.type": "#microsoft.graph.group", "id": "g-1", "displayName": "All Engineering"},
                {"@odata.type": "#microsoft.graph.group", "id": "g-2", "displayName": null},
            ],
        }))
        .into_response(),
    }
}

/// The Graph client for the fake at `base`, with the real client-secret credential asking the
/// fake's token endpoint over TLS.
async fn graph_directory(base: &str) -> GraphGroupDirectory {
    let https = HttpsTokens::front(base).await;
    let tokens = https.provider("app-id", "app-secret", Some("tenant-1"), GRAPH_SCOPE);
    GraphGroupDirectory::new(reqwest::Client::new(), base, Arc::new(tokens)).unwrap()
}

#[tokio::test]
async fn graph_groups_follow_next_links_with_an_app_token_for_the_graph_scope() {
    let (base, state) = fake_graph().await;
    let directory = graph_directory(&base).await;
    let groups = directory
        .groups_of("0a1b2c3d-0000-4000-8000-000000000001")
        .await
        .unwrap();
    assert_eq!(
        groups,
        [
            Group::new("g-1", "All Engineering"),
            Group::new("g-2", ""),
            Group::new("g-3", "SRE-Oncall"),
        ]
    );
    let calls = state.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "two pages: {calls:?}");
    assert_eq!(
        calls[0],
        (
            "/v1.0/users/0a1b2c3d-0000-4000-8000-000000000001/transitiveMemberOf/microsoft.graph.group"
                .to_string(),
            "$select=id,displayName".to_string()
        )
    );
    assert!(calls[1].1.contains("$skiptoken=page2"), "{calls:?}");
    let forms = state.token_forms.lock().unwrap().clone();
    assert_eq!(forms.len(), 1, "one token for both pages");
    assert!(
        forms[0].contains("scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"),
        "{}",
        forms[0]
    );
    assert!(forms[0].contains("grant_type=client_credentials"));
}

#[tokio::test]
async fn graph_errors_are_unavailable_refused_or_an_unknown_user_with_no_groups() {
    let (base, state) = fake_graph().await;
    let directory = graph_directory(&base).await;
    // Not in the directory: no groups, which grants nothing.
    assert_eq!(directory.groups_of("user-unknown").await.unwrap(), []);
    for id in ["user-throttled", "user-failing"] {
        let err = directory.groups_of(id).await.unwrap_err();
        assert!(matches!(err, DirectoryError::Unavailable(_)), "{id}: {err}");
    }
    let err = directory.groups_of("user-forbidden").await.unwrap_err();
    assert!(
        matches!(err, DirectoryError::Refused { status: 403 }),
        "{err}"
    );
    // A page link to another host is not followed: the token stays with Graph.
    let before = state.calls.lock().unwrap().len();
    let err = directory.groups_of("user-elsewhere").await.unwrap_err();
    assert!(matches!(err, DirectoryError::Malformed(_)), "{err}");
    assert_eq!(state.calls.lock().unwrap().len(), before + 1);
    // Path segments are encoded: an id cannot walk the URL somewhere else.
    directory.groups_of("../../me").await.unwrap();
    let last = state.calls.lock().unwrap().last().unwrap().0.clone();
    assert_eq!(
        last,
        "/v1.0/users/..%2F..%2Fme/transitiveMemberOf/microsoft.graph.group"
    );
}

#[tokio::test]
async fn graph_unreachable_is_unavailable() {
    let directory = graph_directory("http://127.0.0.1:9").await;
    let err = directory.groups_of("anyone").await.unwrap_err();
    assert!(matches!(err, DirectoryError::Unavailable(_)), "{err}");
}

/// Counts lookups; fails every one while `down`.
struct CountingDirectory {
    inner: StaticGroupDirectory,
    lookups: AtomicUsize,
    down: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl GroupDirectory for CountingDirectory {
    async fn groups_of(&self, aad_object_id: &str) -> Result<Vec<Group>, DirectoryError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(DirectoryError::Unavailable("down for the test".into()));
        }
        self.inner.groups_of(aad_object_id).await
    }
}

on_both_databases!(
    permissions_combine_acls_and_groups_and_are_cached_for_five_minutes,
    an_unavailable_directory_fails_closed_and_is_retried_soon,
);

struct World {
    alice: User,
    carol: User,
    folders: Vec<VaultFolder>,
}

async fn world(s: &dyn Store) -> World {
    let user = |aad: &str, mail: &str, role| NewUser {
        aad_object_id: aad.into(),
        tenant_id: None,
        teams_user_id: None,
        upn: Some(mail.into()),
        email: Some(mail.into()),
        display_name: aad.into(),
        initial_role: role,
    };
    let alice = s
        .upsert_user(
            &user("aad-alice", "Alice@Contoso.example", Role::Requester),
            t0(),
        )
        .await
        .unwrap();
    let carol = s
        .upsert_user(
            &user("aad-carol", "carol@contoso.example", Role::Admin),
            t0(),
        )
        .await
        .unwrap();
    let acls: [(&str, VaultPrincipalType, &str, FolderPermission); 5] = [
        (
            "Databases",
            VaultPrincipalType::User,
            "alice@contoso.example",
            FolderPermission::Viewer,
        ),
        (
            "DBA",
            VaultPrincipalType::Group,
            "g-dba",
            FolderPermission::Manager,
        ),
        (
            "Platform",
            VaultPrincipalType::Team,
            "sre-oncall",
            FolderPermission::Editor,
        ),
        (
            "Break-glass",
            VaultPrincipalType::User,
            "carol@contoso.example",
            FolderPermission::Owner,
        ),
        (
            "Finance",
            VaultPrincipalType::Group,
            "Finance Team",
            FolderPermission::Owner,
        ),
    ];
    let mut folders = Vec::new();
    for (i, (name, t, p, l)) in acls.into_iter().enumerate() {
        let folder = s
            .upsert_folder(&format!("FOLDER{i}"), name, t0())
            .await
            .unwrap();
        s.replace_folder_permissions(
            folder.id,
            &[NewFolderPermission {
                principal_type: t,
                principal: p.into(),
                permission: l,
            }],
            t0(),
        )
        .await
        .unwrap();
        folders.push(folder);
    }
    World {
        alice,
        carol,
        folders,
    }
}

fn directory() -> Arc<CountingDirectory> {
    Arc::new(CountingDirectory {
        inner: StaticGroupDirectory::new()
            .with_member("aad-alice", Group::new("G-DBA", "Database Admins"))
            .with_member("aad-alice", Group::new("g-sre", "SRE-Oncall")),
        lookups: AtomicUsize::new(0),
        down: Default::default(),
    })
}

async fn permissions_combine_acls_and_groups_and_are_cached_for_five_minutes(db: Db) {
    let s = db.store.as_ref();
    let w = world(s).await;
    let ids: Vec<i64> = w.folders.iter().map(|f| f.id).collect();
    let dir = directory();
    let clock = Arc::new(ManualClock::new(t0()));
    let resolver = PermissionResolver::new(db.store.clone(), dir.clone(), clock.clone());

    let p = resolver.effective(&w.alice).await.unwrap();
    // Her own entry (email, any case), her group by id, her Keeper team by group name.
    assert_eq!(p.requestable_folders, ids[..3]);
    assert_eq!(p.approvable_folders, [ids[1]], "MANAGER may approve");
    assert_eq!(p.groups, ["G-DBA", "g-sre"]);
    assert!(!p.degraded);
    assert_eq!(p.resolved_at, t0());
    assert_eq!(dir.lookups.load(Ordering::SeqCst), 1);

    // Within five minutes the cached answer is used: no directory call.
    clock.advance(time::Duration::minutes(4));
    assert_eq!(resolver.effective(&w.alice).await.unwrap(), p);
    assert_eq!(dir.lookups.load(Ordering::SeqCst), 1);
    clock.advance(time::Duration::minutes(1));
    let again = resolver.effective(&w.alice).await.unwrap();
    assert_eq!(
        dir.lookups.load(Ordering::SeqCst),
        2,
        "expired after 5 minutes"
    );
    assert_eq!(again.requestable_folders, p.requestable_folders);

    // A sync that takes her out of a folder is seen at once, not after the TTL.
    s.replace_folder_permissions(ids[0], &[], clock.now())
        .await
        .unwrap();
    let after_sync = resolver.effective(&w.alice).await.unwrap();
    assert_eq!(after_sync.requestable_folders, ids[1..3]);
    assert_eq!(dir.lookups.load(Ordering::SeqCst), 3);

    // Admins may request from every folder but approve only where an ACL names them.
    let c = resolver.effective(&w.carol).await.unwrap();
    assert_eq!(c.requestable_folders, ids);
    assert_eq!(c.approvable_folders, [ids[3]]);

    // Reading permissions writes no audit event.
    assert!(s.audit_events_after(0, 10).await.unwrap().is_empty());
}

async fn an_unavailable_directory_fails_closed_and_is_retried_soon(db: Db) {
    let s = db.store.as_ref();
    let w = world(s).await;
    let ids: Vec<i64> = w.folders.iter().map(|f| f.id).collect();
    let dir = directory();
    dir.down.store(true, Ordering::SeqCst);
    let clock = Arc::new(ManualClock::new(t0()));
    let resolver = PermissionResolver::new(db.store.clone(), dir.clone(), clock.clone());

    let p = resolver.effective(&w.alice).await.unwrap();
    assert!(p.degraded);
    assert_eq!(
        p.requestable_folders,
        [ids[0]],
        "only her own entry: nothing group-derived"
    );
    assert!(p.approvable_folders.is_empty());
    assert!(p.groups.is_empty());

    // Degraded answers are kept for 30 seconds, not five minutes.
    clock.advance(time::Duration::seconds(29));
    assert!(resolver.effective(&w.alice).await.unwrap().degraded);
    assert_eq!(dir.lookups.load(Ordering::SeqCst), 1);
    dir.down.store(false, Ordering::SeqCst);
    clock.advance(time::Duration::seconds(1));
    let recovered = resolver.effective(&w.alice).await.unwrap();
    assert!(!recovered.degraded);
    assert_eq!(recovered.requestable_folders, ids[..3]);
    assert_eq!(dir.lookups.load(Ordering::SeqCst), 2);
}

#[test]
fn the_cache_body_round_trips() {
    let p = EffectivePermissions {
        requestable_folders: vec![1, 2],
        approvable_folders: vec![2],
        folder_levels: [
            (1, passkey::domain::FolderPermission::Viewer),
            (2, passkey::domain::FolderPermission::Owner),
        ]
        .into(),
        groups: vec!["g".into()],
        resolved_at: t0(),
        degraded: false,
    };
    let body: Value = serde_json::to_value(&p).unwrap();
    assert_eq!(body["resolved_at"], "2026-11-23T09:00:00.000000Z");
    assert_eq!(
        serde_json::from_value::<EffectivePermissions>(body).unwrap(),
        p
    );
}
