//! The people directory: who an EMAIL or GROUP approver is, and installing the Teams app for a
//! person the bot has never talked to, so it can open a 1:1 chat with them.
//!
//! One Graph client ([`GraphDirectory`], one token provider) answers these questions and the
//! group memberships of [`GroupDirectory`]. [`StaticDirectory`] is the in-memory stand-in: the
//! demo people in dev (`cargo run`), chosen people in tests.
//!
//! Graph calls (v1.0, application permissions):
//! - a person by address: `GET /users/{upn}` and, when that is 404, `GET /users?$filter=mail eq
//!   '…' or userPrincipalName eq '…'` (`User.Read.All`);
//! - a person by object id (their mail and UPN, #21.2): `GET /users/{id}` (`User.Read.All`);
//! - a group's people: `GET /groups/{id}/transitiveMembers/microsoft.graph.user`, every
//!   `@odata.nextLink` page (`GroupMember.Read.All`);
//! - a group's name, for the people told about it: `GET /groups/{id}?$select=displayName`
//!   (`GroupMember.Read.All` reads a group's basic properties);
//! - the app for a person: `POST /users/{id}/teamwork/installedApps` with
//!   `teamsApp@odata.bind` (`TeamsAppInstallation.ReadWriteForUser.All`); 409 means it already is.

use crate::channel::TokenProvider;
use crate::governance::permissions::{DirectoryError, Group, GroupDirectory};
use async_trait::async_trait;
use reqwest::{Method, StatusCode, Url};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The Graph scope for client-credentials tokens.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// The properties Passkey reads of a person.
const USER_SELECT: &str = "id,displayName,mail,userPrincipalName,mobilePhone";

/// A person as the directory knows them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DirectoryUser {
    /// The Entra object id (what Teams calls `aadObjectId`).
    pub id: String,
    #[serde(rename = "displayName", default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub mail: Option<String>,
    #[serde(rename = "userPrincipalName", default)]
    pub upn: Option<String>,
    /// Read for the second factor (SMS); not stored by the approver lookup.
    #[serde(rename = "mobilePhone", default)]
    pub mobile_phone: Option<String>,
}

impl DirectoryUser {
    pub fn new(id: &str, display_name: &str, mail: &str) -> Self {
        DirectoryUser {
            id: id.into(),
            display_name: Some(display_name.into()),
            mail: Some(mail.into()),
            upn: Some(mail.into()),
            mobile_phone: None,
        }
    }

    fn answers_to(&self, address: &str) -> bool {
        [self.mail.as_deref(), self.upn.as_deref()]
            .into_iter()
            .flatten()
            .any(|a| a.eq_ignore_ascii_case(address))
    }
}

/// What installing the app for a person did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppInstall {
    Installed,
    /// It was there already (Graph's 409): just as good.
    AlreadyInstalled,
}

/// People and groups, for reaching approvers named by address or group.
#[async_trait]
pub trait UserDirectory: Send + Sync {
    /// The person whose mail or user principal name is `address`; `None` when nobody is.
    async fn user_by_address(&self, address: &str)
    -> Result<Option<DirectoryUser>, DirectoryError>;
    /// The person with this Entra object id; `None` when nobody is.
    async fn user_by_object_id(
        &self,
        aad_object_id: &str,
    ) -> Result<Option<DirectoryUser>, DirectoryError>;
    /// Every person in the group, through nested groups; `None` when there is no such group.
    async fn group_members(
        &self,
        group_id: &str,
    ) -> Result<Option<Vec<DirectoryUser>>, DirectoryError>;
    /// The group's display name; `None` when there is no such group or it has no name.
    async fn group_name(&self, group_id: &str) -> Result<Option<String>, DirectoryError>;
    /// Installs the Teams app (by its catalog id) in the person's personal scope.
    async fn install_app(
        &self,
        user_id: &str,
        catalog_app_id: &str,
    ) -> Result<AppInstall, DirectoryError>;
}

/// People and groups from fixed tables: the demo people in dev, chosen people in tests. It
/// remembers installations, so a second install answers `AlreadyInstalled` as Graph does.
#[derive(Debug, Default)]
pub struct StaticDirectory {
    users: Vec<DirectoryUser>,
    /// Group id (lower case) → member object ids.
    groups: HashMap<String, Vec<String>>,
    /// Group id (lower case) → display name.
    group_names: HashMap<String, String>,
    installed: Mutex<BTreeSet<(String, String)>>,
}

impl StaticDirectory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_user(mut self, user: DirectoryUser) -> Self {
        self.users.push(user);
        self
    }

    pub fn with_group(mut self, group_id: &str, member_ids: &[&str]) -> Self {
        self.groups.insert(
            group_id.to_ascii_lowercase(),
            member_ids.iter().map(|m| m.to_string()).collect(),
        );
        self
    }

    pub fn with_group_name(mut self, group_id: &str, name: &str) -> Self {
        self.group_names
            .insert(group_id.to_ascii_lowercase(), name.to_string());
        self
    }
}

#[async_trait]
impl UserDirectory for StaticDirectory {
    async fn user_by_address(
        &self,
        address: &str,
    ) -> Result<Option<DirectoryUser>, DirectoryError> {
        Ok(self.users.iter().find(|u| u.answers_to(address)).cloned())
    }

    async fn user_by_object_id(
        &self,
        aad_object_id: &str,
    ) -> Result<Option<DirectoryUser>, DirectoryError> {
        Ok(self
            .users
            .iter()
            .find(|u| u.id.eq_ignore_ascii_case(aad_object_id))
            .cloned())
    }

    async fn group_members(
        &self,
        group_id: &str,
    ) -> Result<Option<Vec<DirectoryUser>>, DirectoryError> {
        Ok(self.groups.get(&group_id.to_ascii_lowercase()).map(|ids| {
            self.users
                .iter()
                .filter(|u| ids.iter().any(|id| id.eq_ignore_ascii_case(&u.id)))
                .cloned()
                .collect()
        }))
    }

    async fn group_name(&self, group_id: &str) -> Result<Option<String>, DirectoryError> {
        Ok(self
            .group_names
            .get(&group_id.to_ascii_lowercase())
            .cloned())
    }

    async fn install_app(
        &self,
        user_id: &str,
        catalog_app_id: &str,
    ) -> Result<AppInstall, DirectoryError> {
        if !self
            .users
            .iter()
            .any(|u| u.id.eq_ignore_ascii_case(user_id))
        {
            return Err(DirectoryError::Refused { status: 404 });
        }
        let fresh = self
            .installed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((user_id.to_ascii_lowercase(), catalog_app_id.to_string()));
        Ok(if fresh {
            AppInstall::Installed
        } else {
            AppInstall::AlreadyInstalled
        })
    }
}

/// Microsoft Graph with an app token (client credentials or managed identity) for
/// `https://graph.microsoft.com/.default`.
///
/// Status handling, for every call: a 401 drops the cached token and retries once; 429, 5xx,
/// network and token failures are `Unavailable`; other refusals are `Refused`. Page links are
/// followed only on the configured Graph host, so the bearer token never goes anywhere else.
pub struct GraphDirectory {
    http: reqwest::Client,
    base_url: Url,
    tokens: Arc<TokenProvider>,
}

#[derive(Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct GraphGroup {
    id: String,
    #[serde(rename = "displayName", default)]
    display_name: Option<String>,
}

#[derive(Deserialize)]
struct GraphGroupName {
    #[serde(rename = "displayName", default)]
    display_name: Option<String>,
}

/// Graph's answer to one call that did not fail.
enum Answer {
    Ok(Value),
    NotFound,
    Conflict,
}

impl GraphDirectory {
    /// A runaway `nextLink` chain stops here (999 a page would be ~200k entries).
    const MAX_PAGES: usize = 200;
    /// Short: this runs inside a bot turn, and an answer now beats a slow reply.
    const TIMEOUT: Duration = Duration::from_secs(5);

    /// `base_url` is `https://graph.microsoft.com` in the public cloud.
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        tokens: Arc<TokenProvider>,
    ) -> Result<Self, DirectoryError> {
        let base_url = Url::parse(base_url.trim_end_matches('/'))
            .ok()
            .filter(|u| !u.cannot_be_a_base() && matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                DirectoryError::Malformed(format!("invalid Graph base URL {base_url}"))
            })?;
        Ok(GraphDirectory {
            http,
            base_url,
            tokens,
        })
    }

    /// `{base}/v1.0/{segments…}?{query}`; each segment is one percent-encoded path segment, so an
    /// id cannot walk the URL somewhere else.
    fn url(&self, segments: &[&str], query: Option<String>) -> Result<Url, DirectoryError> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|_| DirectoryError::Malformed("invalid Graph base URL".into()))?
            .pop_if_empty()
            .push("v1.0")
            .extend(segments);
        url.set_query(query.as_deref());
        Ok(url)
    }

    fn same_origin(&self, next: &Url) -> bool {
        next.scheme() == self.base_url.scheme()
            && next.host_str() == self.base_url.host_str()
            && next.port_or_known_default() == self.base_url.port_or_known_default()
    }

    /// One call. `eventual` adds `ConsistencyLevel: eventual` (needed by the cast member lists).
    async fn call(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
        eventual: bool,
    ) -> Result<Answer, DirectoryError> {
        for attempt in 0..2 {
            let token = self
                .tokens
                .token()
                .await
                .map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.expose_secret())
                .timeout(Self::TIMEOUT);
            if eventual {
                request = request.header("ConsistencyLevel", "eventual");
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .map_err(|e| DirectoryError::Unavailable(transport_error(&e)))?;
            match response.status() {
                s if s.is_success() => {
                    let bytes = response
                        .bytes()
                        .await
                        .map_err(|e| DirectoryError::Unavailable(transport_error(&e)))?;
                    if bytes.is_empty() {
                        return Ok(Answer::Ok(Value::Null));
                    }
                    return serde_json::from_slice(&bytes)
                        .map(Answer::Ok)
                        .map_err(|_| DirectoryError::Malformed("unreadable Graph answer".into()));
                }
                StatusCode::UNAUTHORIZED if attempt == 0 => self.tokens.invalidate().await,
                StatusCode::NOT_FOUND => return Ok(Answer::NotFound),
                StatusCode::CONFLICT => return Ok(Answer::Conflict),
                s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                    if s == StatusCode::TOO_MANY_REQUESTS {
                        crate::metrics::get().throttled("graph");
                    }
                    return Err(DirectoryError::Unavailable(format!(
                        "Graph answered HTTP {}",
                        s.as_u16()
                    )));
                }
                s => return Err(DirectoryError::Refused { status: s.as_u16() }),
            }
        }
        Err(DirectoryError::Refused { status: 401 })
    }

    /// Every page of a collection; `None` when the first page is 404 (no such owner).
    async fn collect<T: DeserializeOwned>(
        &self,
        first: Url,
        eventual: bool,
    ) -> Result<Option<Vec<T>>, DirectoryError> {
        let mut url = first;
        let mut items = Vec::new();
        for _ in 0..Self::MAX_PAGES {
            let body = match self.call(Method::GET, &url, None, eventual).await? {
                Answer::Ok(body) => body,
                Answer::NotFound if items.is_empty() => return Ok(None),
                Answer::NotFound | Answer::Conflict => {
                    return Err(DirectoryError::Malformed("a page went missing".into()));
                }
            };
            let page: Page<T> = serde_json::from_value(body)
                .map_err(|_| DirectoryError::Malformed("unreadable Graph page".into()))?;
            items.extend(page.value);
            let Some(next) = page.next_link else {
                return Ok(Some(items));
            };
            url = Url::parse(&next)
                .ok()
                .filter(|u| self.same_origin(u))
                .ok_or_else(|| {
                    DirectoryError::Malformed("a page link points away from Graph".into())
                })?;
        }
        Err(DirectoryError::Malformed(format!(
            "more than {} pages",
            Self::MAX_PAGES
        )))
    }
}

/// An address worth asking about: what a mail or UPN can hold, nothing that could bend a query.
pub(crate) fn plausible_address(address: &str) -> bool {
    !address.is_empty()
        && address.len() <= 320
        && address.contains('@')
        && !address.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// An Entra object id: a GUID.
fn plausible_object_id(id: &str) -> bool {
    id.len() == 36
        && id.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// An OData string literal: single quotes around, a quote inside doubled.
pub fn odata_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Percent-encodes a query value completely (space as `%20`, never `+`): Graph reads `+` as a
/// plus sign, not a space.
fn encode_query_value(value: &str) -> String {
    crate::encoding::percent_encode(value, crate::encoding::UNRESERVED)
}

fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_query_value(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A reqwest error's kind, without its URL (which names the person looked up).
fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "Graph did not answer in time".into()
    } else if e.is_connect() {
        "Graph unreachable".into()
    } else {
        "Graph request failed".into()
    }
}

#[async_trait]
impl UserDirectory for GraphDirectory {
    async fn user_by_address(
        &self,
        address: &str,
    ) -> Result<Option<DirectoryUser>, DirectoryError> {
        let address = address.trim();
        if !plausible_address(address) {
            return Err(DirectoryError::Malformed("not an email address".into()));
        }
        // A UPN is the key Graph reads by; `$`-led ones need another URL form, so the filter
        // serves them (and every address that is a mail but not a UPN).
        if !address.starts_with('$') {
            let url = self.url(
                &["users", address],
                Some(query(&[("$select", USER_SELECT)])),
            )?;
            if let Answer::Ok(body) = self.call(Method::GET, &url, None, false).await? {
                let user: DirectoryUser = serde_json::from_value(body)
                    .map_err(|_| DirectoryError::Malformed("unreadable Graph user".into()))?;
                return Ok(Some(user));
            }
        }
        let literal = odata_string(address);
        let filter = format!("mail eq {literal} or userPrincipalName eq {literal}");
        let url = self.url(
            &["users"],
            Some(query(&[("$filter", &filter), ("$select", USER_SELECT)])),
        )?;
        let found: Vec<DirectoryUser> = self.collect(url, false).await?.unwrap_or_default();
        let mut ids: Vec<&str> = found.iter().map(|u| u.id.as_str()).collect();
        ids.dedup();
        if ids.len() > 1 {
            return Err(DirectoryError::Malformed(format!(
                "{} people answer to that address",
                ids.len()
            )));
        }
        Ok(found.into_iter().next())
    }

    /// `GET /users/{id}?$select=…`; 404 is nobody.
    async fn user_by_object_id(
        &self,
        aad_object_id: &str,
    ) -> Result<Option<DirectoryUser>, DirectoryError> {
        if !plausible_object_id(aad_object_id) {
            return Err(DirectoryError::Malformed(
                "a person is named by their Entra object id".into(),
            ));
        }
        let url = self.url(
            &["users", aad_object_id],
            Some(query(&[("$select", USER_SELECT)])),
        )?;
        match self.call(Method::GET, &url, None, false).await? {
            Answer::Ok(body) => serde_json::from_value(body)
                .map(Some)
                .map_err(|_| DirectoryError::Malformed("unreadable Graph user".into())),
            Answer::NotFound => Ok(None),
            Answer::Conflict => Err(DirectoryError::Refused { status: 409 }),
        }
    }

    async fn group_members(
        &self,
        group_id: &str,
    ) -> Result<Option<Vec<DirectoryUser>>, DirectoryError> {
        if !plausible_object_id(group_id) {
            return Err(DirectoryError::Malformed(
                "a group is named by its Entra object id".into(),
            ));
        }
        let url = self.url(
            &[
                "groups",
                group_id,
                "transitiveMembers",
                "microsoft.graph.user",
            ],
            Some(query(&[("$select", USER_SELECT), ("$count", "true")])),
        )?;
        self.collect(url, true).await
    }

    /// `GET /groups/{id}?$select=displayName`; 404 is no such group.
    async fn group_name(&self, group_id: &str) -> Result<Option<String>, DirectoryError> {
        if !plausible_object_id(group_id) {
            return Err(DirectoryError::Malformed(
                "a group is named by its Entra object id".into(),
            ));
        }
        let url = self.url(
            &["groups", group_id],
            Some(query(&[("$select", "displayName")])),
        )?;
        match self.call(Method::GET, &url, None, false).await? {
            Answer::Ok(body) => Ok(serde_json::from_value::<GraphGroupName>(body)
                .map_err(|_| DirectoryError::Malformed("unreadable Graph group".into()))?
                .display_name
                .filter(|n| !n.trim().is_empty())),
            Answer::NotFound => Ok(None),
            Answer::Conflict => Err(DirectoryError::Refused { status: 409 }),
        }
    }

    async fn install_app(
        &self,
        user_id: &str,
        catalog_app_id: &str,
    ) -> Result<AppInstall, DirectoryError> {
        let app = self.url(&["appCatalogs", "teamsApps", catalog_app_id], None)?;
        let url = self.url(&["users", user_id, "teamwork", "installedApps"], None)?;
        let body = json!({ "teamsApp@odata.bind": app.as_str() });
        match self.call(Method::POST, &url, Some(&body), false).await? {
            Answer::Ok(_) => Ok(AppInstall::Installed),
            Answer::Conflict => Ok(AppInstall::AlreadyInstalled),
            Answer::NotFound => Err(DirectoryError::Refused { status: 404 }),
        }
    }
}

#[async_trait]
impl GroupDirectory for GraphDirectory {
    /// `GET /users/{id}/transitiveMemberOf/microsoft.graph.group?$select=id,displayName`. 404 (the
    /// user is not in the directory) means no groups: that grants nothing, so it is the closed
    /// answer, not a degraded one.
    async fn groups_of(&self, aad_object_id: &str) -> Result<Vec<Group>, DirectoryError> {
        let mut url = self.url(
            &[
                "users",
                aad_object_id,
                "transitiveMemberOf",
                "microsoft.graph.group",
            ],
            None,
        )?;
        url.set_query(Some("$select=id,displayName"));
        let groups: Vec<GraphGroup> = self.collect(url, false).await?.unwrap_or_default();
        Ok(groups
            .into_iter()
            .map(|g| Group::new(g.id, g.display_name.unwrap_or_default()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odata_literals_double_their_quotes_and_queries_encode_everything() {
        assert_eq!(odata_string("o'brien@x.example"), "'o''brien@x.example'");
        assert_eq!(odata_string("''"), "''''''");
        assert_eq!(
            query(&[("$filter", "mail eq 'a+b@x' or x")]),
            "$filter=mail%20eq%20%27a%2Bb%40x%27%20or%20x"
        );
    }

    #[test]
    fn only_plausible_addresses_and_object_ids_are_asked_about() {
        assert!(plausible_address("dana@contoso.example"));
        assert!(!plausible_address("dana"));
        assert!(!plausible_address("da na@contoso.example"));
        assert!(!plausible_address("dana@contoso.example\n"));
        assert!(plausible_object_id("5e0c0000-0000-4000-8000-000000000001"));
        assert!(!plausible_object_id("sre-oncall"));
        assert!(!plausible_object_id("5e0c0000-0000-4000-8000-00000000000/"));
    }

    #[tokio::test]
    async fn the_static_directory_finds_by_mail_or_upn_and_remembers_installs() {
        let d = StaticDirectory::new()
            .with_user(DirectoryUser::new("id-1", "Dana", "dana@contoso.example"))
            .with_group("G-1", &["ID-1"])
            .with_group_name("G-1", "Platform SRE");
        assert_eq!(
            d.user_by_address("DANA@contoso.example")
                .await
                .unwrap()
                .map(|u| u.id),
            Some("id-1".into())
        );
        assert!(d.user_by_address("x@y").await.unwrap().is_none());
        assert_eq!(d.group_members("g-1").await.unwrap().unwrap().len(), 1);
        assert!(d.group_members("g-2").await.unwrap().is_none());
        assert_eq!(
            d.group_name("g-1").await.unwrap().as_deref(),
            Some("Platform SRE")
        );
        assert!(d.group_name("g-2").await.unwrap().is_none());
        assert_eq!(
            d.install_app("id-1", "cat").await.unwrap(),
            AppInstall::Installed
        );
        assert_eq!(
            d.install_app("id-1", "cat").await.unwrap(),
            AppInstall::AlreadyInstalled
        );
        assert!(d.install_app("nobody", "cat").await.is_err());
        // Dev's directory is the demo people.
        let demo = StaticDirectory::demo();
        let bob = demo
            .user_by_address("bob@contoso.example")
            .await
            .unwrap()
            .expect("a demo person");
        assert_eq!(bob.id, "b0b00000-0000-4000-8000-000000000002");
    }
}
