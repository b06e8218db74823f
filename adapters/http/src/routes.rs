//! The operations of the REST API. Each one authenticates, converts the
//! request into the port's terms, calls the port and converts back; the
//! port decides what the principal may do.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use poem::{Body, Request};
use poem_openapi::auth::{ApiKey as ApiKeyCredential, Basic, Bearer};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Binary, Json, PlainText};
use poem_openapi::{ApiResponse, OpenApi, ResponseContent, SecurityScheme, Tags};
use tollgate_domain::session::Protocol;
use tollgate_ports::api::{
    AdminApi, AdminChanges, AdminRecord, EventQuery, GroupChanges, GroupRecord, ListParams,
    MountRecord, PolicyRecord, Principal, RedeliveryRequest, SubscriptionRecord, UserChanges,
    UserRecord, UserSpec, Versioned,
};
use tollgate_ports::inbound::ClientInfo;

use crate::dto;
use crate::problem::Problem;
use crate::request_session::client_info;

/// The groups of operations in the document.
#[derive(Tags)]
pub(crate) enum Tag {
    /// The calling user's files.
    Files,
    /// Tokens and the caller's identity.
    Auth,
    /// File-transfer users.
    Users,
    /// Groups of users.
    Groups,
    /// Permission policies.
    Policies,
    /// Storage mounts (virtual folders).
    Mounts,
    /// Administrators.
    Admins,
    /// API keys for automation.
    ApiKeys,
    /// The audit trail: queries, exports, verification.
    Audit,
    /// Transfers and live sessions.
    Activity,
    /// Webhook subscriptions and their deliveries.
    Subscriptions,
    /// Health, readiness and metrics.
    Operations,
}

/// HTTP basic credentials, accepted only to obtain a token.
#[derive(SecurityScheme)]
#[oai(ty = "basic")]
struct BasicAuth(Basic);

/// A bearer token from `POST /api/v1/token`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT")]
pub(crate) struct BearerAuth(pub(crate) Bearer);

/// An API key.
#[derive(SecurityScheme)]
#[oai(ty = "api_key", key_name = "X-Api-Key", key_in = "header")]
struct KeyAuth(ApiKeyCredential);

/// A bearer token or an API key.
#[derive(SecurityScheme)]
enum Auth {
    Bearer(BearerAuth),
    Key(KeyAuth),
}

macro_rules! tagged_response {
    ($name:ident, $ty:ty, $record:ty) => {
        /// The resource with its version as ETag.
        #[derive(ApiResponse)]
        enum $name {
            /// The resource.
            #[oai(status = 200)]
            Ok(Json<$ty>, #[oai(header = "ETag")] String),
            /// The resource was created.
            #[oai(status = 201)]
            Created(Json<$ty>, #[oai(header = "ETag")] String),
        }

        impl $name {
            fn ok(found: Versioned<$record>) -> Self {
                $name::Ok(
                    Json(<$ty>::new(found.value, found.version)),
                    etag(found.version),
                )
            }

            fn created(made: Versioned<$record>) -> Self {
                $name::Created(
                    Json(<$ty>::new(made.value, made.version)),
                    etag(made.version),
                )
            }
        }
    };
}

tagged_response!(UserResponse, dto::User, UserRecord);
tagged_response!(GroupResponse, dto::Group, GroupRecord);
tagged_response!(PolicyResponse, dto::Policy, PolicyRecord);
tagged_response!(AdminResponse, dto::Admin, AdminRecord);
tagged_response!(MountResponse, dto::Mount, MountRecord);

/// An answer without a body.
#[derive(ApiResponse)]
enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

/// A created API key.
#[derive(ApiResponse)]
enum ApiKeyCreated {
    /// The key; its value is shown only here.
    #[oai(status = 201)]
    Created(Json<dto::CreatedApiKey>),
}

/// A TOTP enrolment.
#[derive(ApiResponse)]
enum TotpEnrolled {
    /// The secret, its QR code and the recovery codes, shown only here.
    #[oai(status = 201)]
    Created(Json<dto::TotpEnrolment>),
}

/// A created subscription.
#[derive(ApiResponse)]
enum SubscriptionCreated {
    /// The subscription and its secret, shown only here.
    #[oai(status = 201)]
    Created(Json<dto::CreatedSubscription>),
}

/// An export's body.
#[derive(ResponseContent)]
enum ExportBody {
    /// Comma-separated values with a header line.
    #[oai(content_type = "text/csv")]
    Csv(Binary<Body>),
    /// One JSON record per line.
    #[oai(content_type = "application/x-ndjson")]
    Ndjson(Binary<Body>),
}

/// A streamed export.
#[derive(ApiResponse)]
enum Export {
    /// The records, streamed.
    #[oai(status = 200)]
    Ok(ExportBody, #[oai(header = "Content-Disposition")] String),
}

/// Prometheus text exposition.
#[derive(ApiResponse)]
enum MetricsText {
    /// The samples.
    #[oai(status = 200, content_type = "text/plain; version=0.0.4")]
    Ok(PlainText<String>),
}

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
enum Format {
    /// `text/csv`.
    Csv,
    /// `application/x-ndjson`.
    Ndjson,
}

/// A page of versioned records as the API's items and cursor.
fn versioned_page<R, D>(
    page: tollgate_ports::api::Page<Versioned<R>>,
    to: impl Fn(R, u64) -> D,
) -> (Vec<D>, Option<String>) {
    let items = page
        .items
        .into_iter()
        .map(|v| to(v.value, v.version))
        .collect();
    (items, page.next_cursor)
}

fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// Access conditions as a client sent them; a malformed one is a 400.
fn access_rules(access: dto::Access) -> Result<tollgate_domain::access::AccessRules, Problem> {
    access.try_into().map_err(Problem::bad_request)
}

/// The version an `If-Match` header names; `*` and absence mean any.
fn expected(if_match: Option<&str>) -> Result<Option<u64>, Problem> {
    let Some(text) = if_match.map(str::trim) else {
        return Ok(None);
    };
    if text == "*" {
        return Ok(None);
    }
    let bare = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    bare.parse::<u64>().map(Some).map_err(|_| {
        Problem::bad_request(format!(
            "If-Match {text:?} is not a version this API issued (an ETag such as \"3\")"
        ))
    })
}

fn list(cursor: Option<String>, limit: Option<u32>, prefix: Option<String>) -> ListParams {
    ListParams {
        after: cursor,
        limit: limit.unwrap_or(100) as usize,
        prefix,
    }
}

pub(crate) fn client(req: &Request) -> ClientInfo {
    client_info(req, Protocol::Http)
}

/// The REST API.
pub(crate) struct Api {
    pub(crate) port: Arc<dyn AdminApi>,
}

impl Api {
    async fn principal(&self, req: &Request, auth: &Auth) -> Result<Principal, Problem> {
        let client = client(req);
        let res = match auth {
            Auth::Bearer(bearer) => self.port.authenticate_token(&client, &bearer.0.token).await,
            Auth::Key(key) => self.port.authenticate_api_key(&client, &key.0.key).await,
        };
        res.map_err(Problem::from)
    }
}

/// Shared query parameters of an audit query.
struct EventFilters {
    since: Option<String>,
    until: Option<String>,
    user: Option<String>,
    action: Option<String>,
    outcome: Option<dto::Outcome>,
    protocol: Option<String>,
    path_prefix: Option<String>,
    remote_addr: Option<String>,
}

impl EventFilters {
    fn query(self, after: u64, limit: usize) -> EventQuery {
        EventQuery {
            since: self.since,
            until: self.until,
            user: self.user,
            action: self.action,
            outcome: self.outcome.map(|o| o.as_str().to_string()),
            protocol: self.protocol,
            path_prefix: self.path_prefix,
            remote_addr: self.remote_addr,
            after,
            limit,
        }
    }
}

const CSV_COLUMNS: [&str; 15] = [
    "position",
    "event_id",
    "time",
    "actor",
    "user",
    "event_type",
    "outcome",
    "protocol",
    "remote_addr",
    "session_id",
    "resource",
    "path",
    "target",
    "bytes",
    "sha256",
];

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn csv_line(e: &tollgate_ports::api::EventRecord) -> String {
    let opt = |v: &Option<String>| v.as_deref().map(csv_field).unwrap_or_default();
    let fields = [
        e.position.to_string(),
        csv_field(&e.event_id),
        csv_field(&e.time),
        csv_field(&e.actor),
        opt(&e.user),
        csv_field(&e.event_type),
        csv_field(&e.outcome),
        opt(&e.protocol),
        opt(&e.remote_addr),
        opt(&e.session_id),
        csv_field(&e.resource),
        opt(&e.path),
        opt(&e.target),
        e.bytes.map(|b| b.to_string()).unwrap_or_default(),
        opt(&e.sha256),
    ];
    let mut line = fields.join(",");
    line.push_str("\r\n");
    line
}

fn ndjson_line(e: tollgate_ports::api::EventRecord) -> String {
    let event = dto::Event::from(e);
    let mut line = poem_openapi::types::ToJSON::to_json_string(&event);
    line.push('\n');
    line
}

/// Pages through the log as the client reads, so that an export of any size
/// holds one page in memory.
fn export_stream(
    port: Arc<dyn AdminApi>,
    by: Principal,
    filters: EventQuery,
    format: Format,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    const EXPORT_PAGE: usize = 500;
    let header = match format {
        Format::Csv => Some(format!("{}\r\n", CSV_COLUMNS.join(","))),
        Format::Ndjson => None,
    };
    let start = futures::stream::iter(header.map(|h| Ok(Bytes::from(h))));
    let pages = futures::stream::unfold(Some(filters), move |state| {
        let port = port.clone();
        let by = by.clone();
        async move {
            let mut query = state?;
            query.limit = EXPORT_PAGE;
            match port.read_events(&by, query.clone()).await {
                Ok(page) => {
                    let mut chunk = String::new();
                    for e in page.items {
                        match format {
                            Format::Csv => chunk.push_str(&csv_line(&e)),
                            Format::Ndjson => chunk.push_str(&ndjson_line(e)),
                        }
                    }
                    let next = page.next_cursor.map(|after| EventQuery { after, ..query });
                    Some((Ok(Bytes::from(chunk)), next))
                }
                Err(err) => {
                    tracing::error!(error = %err, "an audit export stopped");
                    Some((Err(std::io::Error::other(err.to_string())), None))
                }
            }
        }
    });
    start.chain(pages).filter(|chunk| {
        let keep = chunk.as_ref().map(|b| !b.is_empty()).unwrap_or(true);
        async move { keep }
    })
}

#[OpenApi(prefix_path = "/api/v1")]
impl Api {
    /// Exchange basic credentials (an administrator's or a user's) for a
    /// short-lived bearer token. A user with a TOTP second factor gives
    /// the current code in `X-Tollgate-OTP` (or appended to the password);
    /// a recovery code goes in the header too.
    #[oai(
        path = "/token",
        method = "post",
        tag = "Tag::Auth",
        operation_id = "createToken"
    )]
    async fn token(
        &self,
        req: &Request,
        auth: BasicAuth,
        /// The user's TOTP or recovery code.
        #[oai(name = "X-Tollgate-OTP")]
        otp: Header<Option<String>>,
    ) -> Result<Json<dto::Token>, Problem> {
        let principal = self
            .port
            .login_password(
                &client(req),
                &auth.0.username,
                &auth.0.password,
                otp.0.as_deref(),
            )
            .await?;
        let token = self.port.issue_token(&principal).await?;
        Ok(Json(dto::Token {
            access_token: token.access_token,
            token_type: "Bearer".to_string(),
            expires_in: token.expires_in,
        }))
    }

    /// Who the credentials belong to.
    #[oai(
        path = "/whoami",
        method = "get",
        tag = "Tag::Auth",
        operation_id = "whoami"
    )]
    async fn whoami(&self, req: &Request, auth: Auth) -> Result<Json<dto::Whoami>, Problem> {
        let by = self.principal(req, &auth).await?;
        Ok(Json(match by {
            Principal::Admin { name, role } => dto::Whoami {
                name,
                kind: "admin".to_string(),
                role: Some(role.into()),
            },
            Principal::User { name } => dto::Whoami {
                name,
                kind: "user".to_string(),
                role: None,
            },
        }))
    }

    /// The calling user's own account.
    #[oai(
        path = "/user/profile",
        method = "get",
        tag = "Tag::Auth",
        operation_id = "getProfile"
    )]
    async fn profile(&self, req: &Request, auth: Auth) -> Result<UserResponse, Problem> {
        let by = self.principal(req, &auth).await?;
        let user = self.port.me(&by).await?;
        Ok(UserResponse::ok(user))
    }

    /// The calling user's own transfers, newest first.
    #[oai(
        path = "/user/transfers",
        method = "get",
        tag = "Tag::Activity",
        operation_id = "listMyTransfers"
    )]
    async fn my_transfers(
        &self,
        req: &Request,
        auth: Auth,
        cursor: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<u32>>,
    ) -> Result<Json<dto::TransferPage>, Problem> {
        let by = self.principal(req, &auth).await?;
        if !matches!(by, Principal::User { .. }) {
            return Err(tollgate_ports::api::ApiError::Forbidden(
                "this resource is for users".to_string(),
            )
            .into());
        }
        let page = self
            .port
            .list_transfers(&by, list(cursor.0, limit.0, None), None)
            .await?;
        Ok(Json(dto::TransferPage {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        }))
    }

    /// List users by name.
    #[oai(
        path = "/users",
        method = "get",
        tag = "Tag::Users",
        operation_id = "listUsers"
    )]
    async fn list_users(
        &self,
        req: &Request,
        auth: Auth,
        /// Resume after this name (`next_cursor` of the previous page).
        cursor: Query<Option<String>>,
        /// Page size, 1–1000 (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u32>>,
        /// Only names starting with this.
        prefix: Query<Option<String>>,
    ) -> Result<Json<dto::UserPage>, Problem> {
        let by = self.principal(req, &auth).await?;
        let page = self
            .port
            .list_users(&by, list(cursor.0, limit.0, prefix.0))
            .await?;
        let (items, next_cursor) = versioned_page(page, dto::User::new);
        Ok(Json(dto::UserPage { items, next_cursor }))
    }

    /// Create a user.
    #[oai(
        path = "/users",
        method = "post",
        tag = "Tag::Users",
        operation_id = "createUser"
    )]
    async fn create_user(
        &self,
        req: &Request,
        auth: Auth,
        body: Json<dto::NewUser>,
    ) -> Result<UserResponse, Problem> {
        let by = self.principal(req, &auth).await?;
        let new = body.0;
        let user = self
            .port
            .create_user(
                &by,
                UserSpec {
                    username: new.username,
                    password: new.password,
                    password_hash: new.password_hash,
                    public_keys: new.public_keys,
                    home: new.home,
                    groups: new.groups,
                    policies: new.policies,
                    ftp_require_tls: new.ftp_require_tls,
                    full_name: new.full_name,
                    email: new.email,
                    folders: dto::folder_records(new.folders),
                },
            )
            .await?;
        Ok(UserResponse::created(user))
    }

    /// One user.
    #[oai(
        path = "/users/:username",
        method = "get",
        tag = "Tag::Users",
        operation_id = "getUser"
    )]
    async fn get_user(
        &self,
        req: &Request,
        auth: Auth,
        username: Path<String>,
    ) -> Result<UserResponse, Problem> {
        let by = self.principal(req, &auth).await?;
        let user = self.port.get_user(&by, &username.0).await?;
        Ok(UserResponse::ok(user))
    }

    /// Change a user; send the version from the ETag in `If-Match` to
    /// refuse the change (412) when someone else changed the user first.
    #[oai(
        path = "/users/:username",
        method = "patch",
        tag = "Tag::Users",
        operation_id = "updateUser"
    )]
    async fn update_user(
        &self,
        req: &Request,
        auth: Auth,
        username: Path<String>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: Json<dto::UserUpdate>,
    ) -> Result<UserResponse, Problem> {
        let by = self.principal(req, &auth).await?;
        let expected = expected(if_match.0.as_deref())?;
        let changes = body.0;
        let access = changes.access.map(access_rules).transpose()?;
        let user = self
            .port
            .update_user(
                &by,
                &username.0,
                expected,
                UserChanges {
                    password: changes.password,
                    public_keys: changes.public_keys,
                    groups: changes.groups,
                    policies: changes.policies,
                    enabled: changes.enabled,
                    ftp_require_tls: changes.ftp_require_tls,
                    full_name: changes.full_name,
                    email: changes.email,
                    folders: changes.folders.map(dto::folder_records),
                    access,
                },
            )
            .await?;
        Ok(UserResponse::ok(user))
    }

    /// Delete a user (their files stay on storage).
    #[oai(
        path = "/users/:username",
        method = "delete",
        tag = "Tag::Users",
        operation_id = "deleteUser"
    )]
    async fn delete_user(
        &self,
        req: &Request,
        auth: Auth,
        username: Path<String>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
    ) -> Result<NoContent, Problem> {
        let by = self.principal(req, &auth).await?;
        let expected = expected(if_match.0.as_deref())?;
        self.port.delete_user(&by, &username.0, expected).await?;
        Ok(NoContent::Done)
    }

    /// Erase a user's personal data (GDPR): destroys the keys that sealed
    /// the user's name, email and connection addresses, deletes the
    /// account if it still exists, and records the erasure. Every audit
    /// record stays, and every proof still verifies; the erased values
    /// read as `[erased]` from now on.
    #[oai(
        path = "/users/:username/erasure",
        method = "post",
        tag = "Tag::Users",
        operation_id = "eraseUser"
    )]
    async fn erase_user(
        &self,
        req: &Request,
        auth: Auth,
        username: Path<String>,
    ) -> Result<Json<dto::Erasure>, Problem> {
        let by = self.principal(req, &auth).await?;
        let destroyed_keys = self.port.erase_user(&by, &username.0).await?;
        Ok(Json(dto::Erasure {
            username: username.0,
            destroyed_keys,
        }))
    }

    /// List groups by name.
    #[oai(
        path = "/groups",
        method = "get",
        tag = "Tag::Groups",
        operation_id = "listGroups"
    )]
    async fn list_groups(
        &self,
        req: &Request,
        auth: Auth,
        cursor: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<u32>>,
        prefix: Query<Option<String>>,
    ) -> Result<Json<dto::GroupPage>, Problem> {
        let by = self.principal(req, &auth).await?;
        let page = self
            .port
            .list_groups(&by, list(cursor.0, limit.0, prefix.0))
            .await?;
        let (items, next_cursor) = versioned_page(page, dto::Group::new);
        Ok(Json(dto::GroupPage { items, next_cursor }))
    }

    /// Create a group.
    #[oai(
        path = "/groups",
        method = "post",
        tag = "Tag::Groups",
        operation_id = "createGroup"
    )]
    async fn create_group(
        &self,
        req: &Request,
        auth: Auth,
        body: Json<dto::NewGroup>,
    ) -> Result<GroupResponse, Problem> {
        let by = self.principal(req, &auth).await?;
        let group = self
            .port
            .create_group(
                &by,
                GroupRecord {
                    name: body.0.name,
                    policies: body.0.policies,
                    folders: dto::folder_records(body.0.folders),
                    access: Default::default(),
                },
            )
            .await?;
        Ok(GroupResponse::created(group))
    }

    /// One group.
    #[oai(
        path = "/groups/:name",
        method = "get",
        tag = "Tag::Groups",
        operation_id = "getGroup"
    )]
    async fn get_group(
        &self,
        req: &Request,
        auth: Auth,
        name: Path<String>,
    ) -> Result<GroupResponse, Problem> {
        let by = self.principal(req, &auth).await?;
        let group = self.port.get_group(&by, &name.0).await?;
        Ok(GroupResponse::ok(group))
    }

    /// Change a group's policies or virtual folders.
    #[oai(
        path = "/groups/:name",
        method = "patch",
        tag = "Tag::Groups",
        operation_id = "updateGroup"
    )]
    async fn update_group(
        &self,
        req: &Request,
        auth: Auth,
        name: Path<String>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: Json<dto::GroupUpdate>,
    ) -> Result<GroupResponse, Problem> {
        let by = self.principal(req, &auth).await?;
        let expected = expected(if_match.0.as_deref())?;
        let changes = body.0;
        let group = self
            .port
            .update_group(
                &by,
                &name.0,
                expected,
                GroupChanges {
                    policies: changes.policies,
                    folders: changes.folders.map(dto::folder_records),
                    access: changes.access.map(access_rules).transpose()?,
                },
            )
            .await?;
        Ok(GroupResponse::ok(group))
    }

    /// Delete a group.
    #[oai(
        path = "/groups/:name",
        method = "delete",
        tag = "Tag::Groups",
        operation_id = "deleteGroup"
    )]
    async fn delete_group(
        &self,
        req: &Request,
        auth: Auth,
        name: Path<String>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
    ) -> Result<NoContent, Problem> {
        let by = self.principal(req, &auth).await?;
        let expected = expected(if_match.0.as_deref())?;
        self.port.delete_group(&by, &name.0, expected).await?;
        Ok(NoContent::Done)
    }

    /// List policies by name.
    #[oai(
        path = "/policies",
        method = "get",
        tag = "Tag::Policies",
        operation_id = "listPolicies"
    )]
    async fn list_policies(
        &self,
        req: &Request,
        auth: Auth,
        cursor: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<u32>>,
        prefix: Query<Option<String>>,
    ) -> Result<Json<dto::PolicyPage>, Problem> {
        let by = self.principal(req, &auth).await?;
        let page = self
            .port
            .list_policies(&by, list(cursor.0, limit.0, prefix.0))
            .await?;
        let (items, next_cursor) = versioned_page(page, dto::Policy::new);
        Ok(Json(dto::PolicyPage { items, next_cursor }))
    }

    /// Create a policy.
    #[oai(
        path = "/policies",
        method = "post",
        tag = "Tag::Policies",
        operation_id = "createPolicy"
    )]
    async fn create_policy(
        &self,
        req: &Request,
        auth: Auth,
        body: Json<dto::NewPolicy>,
    ) -> Result<PolicyResponse, Problem> {
        let by = self.principal(req, &auth).await?;
        let policy = self
            .port
            .create_policy(
                &by,
                PolicyRecord {
                    name: body.0.name,
                    rules: body.0.rules.into_iter().map(Into::into).collect(),
                },
            )
            .await?;
        Ok(PolicyResponse::created(policy))
    }

    /// One policy.
    #[oai(
        path = "/policies/:name",
        method = "get",
        tag = "Tag::Policies",
        operation_id = "getPolicy"
    )]
    async fn get_policy(
        &self,
        req: &Request,
        auth: Auth,
        name: Path<String>,
    ) -> Result<PolicyResponse, Problem> {
        let by = self.principal(req, &auth).await?;
        let policy = self.port.get_policy(&by, &name.0).await?;
        Ok(PolicyResponse::ok(policy))
    }

    /// Replace a policy's rules.
    #[oai(
        path = "/policies/:name",
        method = "patch",
        tag = "Tag::Policies",
        operation_id = "updatePolicy"
    )]
    async fn update_policy(
        &self,
        req: &Request,
        auth: Auth,
        name: Path<String>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: Json<dto::PolicyUpdate>,
    ) -> Result<PolicyResponse, Problem> {
        let by = self.principal(req, &auth).await?;
        let expected = expected(if_match.0.as_deref())?;
        let rules = body.0.rules.into_iter().map(Into::into).collect();
        let policy = self
            .port
            .update_policy(&by, &name.0, expected, rules)
            .await?;
        Ok(PolicyResponse::ok(policy))
    }

    /// Delete a policy.
    #[oai(
        path = "/policies/:name",
        method = "delete",
        tag = "Tag::Policies",
        operation_id = "deletePolicy"
    )]
    async fn delete_policy(
        &self,
        req: &Request,
        auth: Auth,
        name: Path<String>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
    ) -> Result<NoContent, Problem> {
        let by = self.principal(req, &auth).await?;
        let expected = expected(if_match.0.as_deref())?;
        self.port.delete_policy(&by, &name.0, expected).await?;
        Ok(NoContent::Done)
    }

    /// List mounts by name.
    #[oai(
        path = "/mounts",
        method = "get",
        tag = "Tag::Mounts",
        operation_id = "listMounts"
    )]
    async fn list_mounts(
        &self,
        req: &Request,
        auth: Auth,
        cursor: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<u32>>,
        prefix: Query<Option<String>>,
    ) -> Result<Json<dto::MountPage>, Problem> {
        let by = self.principal(req, &auth).await?;
        let page = self
            .port
            .list_mounts(&by, list(cursor.0, limit.0, prefix.0))
            .await?;
        let (items, next_cursor) = versioned_page(page, dto::Mount::new);
        Ok(Json(dto::MountPage { items, next_cursor }))
    }

    /// List webhook subscriptions.
    #[oai(
        path = "/subscriptions",
        method = "get",
        tag = "Tag::Subscriptions",
        operation_id = "listSubscriptions"
    )]
    async fn list_subscriptions(
        &self,
        req: &Request,
        auth: Auth,
    ) -> Result<Json<Vec<dto::Subscription>>, Problem> {
        let by = self.principal(req, &auth).await?;
        let subs = self.port.list_subscriptions(&by).await?;
        Ok(Json(subs.into_iter().map(Into::into).collect()))
    }

    /// Create a webhook subscription: from now on, every sealed event its
    /// filter selects is POSTed to the URL, in log order, signed per
    /// Standard Webhooks with the secret returned here (only here).
    #[oai(
        path = "/subscriptions",
        method = "post",
        tag = "Tag::Subscriptions",
        operation_id = "createSubscription"
    )]
    async fn create_subscription(
        &self,
        req: &Request,
        auth: Auth,
        body: Json<dto::NewSubscription>,
    ) -> Result<SubscriptionCreated, Problem> {
        let by = self.principal(req, &auth).await?;
        let new = body.0;
        let (record, secret) = self
            .port
            .create_subscription(
                &by,
                SubscriptionRecord {
                    name: new.name,
                    url: new.url.unwrap_or_default(),
                    kafka_topic: new.kafka_topic,
                    event_types: new.event_types,
                    users: new.users,
                    path_prefix: new.path_prefix,
                    outcome: new.outcome,
                    format: new.format.unwrap_or_default(),
                    ..SubscriptionRecord::default()
                },
            )
            .await?;
        Ok(SubscriptionCreated::Created(Json(
            dto::CreatedSubscription {
                subscription: record.into(),
                secret,
            },
        )))
    }

    /// One webhook subscription.
    #[oai(
        path = "/subscriptions/:name",
        method = "get",
        tag = "Tag::Subscriptions",
        operation_id = "getSubscription"
    )]
    async fn get_subscription(
        &self,
        req: &Request,
        auth: Auth,
        name: Path<String>,
    ) -> Result<Json<dto::Subscription>, Problem> {
        let by = self.principal(req, &auth).await?;
        Ok(Json(self.port.get_subscription(&by, &name.0).await?.into()))
    }

    /// Enable or disable a subscription (enabling resumes where it stopped).
    #[oai(
        path = "/subscriptions/:name",
        method = "patch",
        tag = "Tag::Subscriptions",
        operation_id = "updateSubscription"
    )]
    async fn update_subscription(
        &self,
        req: &Request,
        auth: Auth,
        name: Path<String>,
        body: Json<dto::SubscriptionChange>,
    ) -> Result<Json<dto::Subscription>, Problem> {
        let by = self.principal(req, &auth).await?;
        let sub = self
            .port
            .set_subscription_enabled(&by, &name.0, body.0.enabled)
            .await?;
        Ok(Json(sub.into()))
    }

    /// Delete a subscription.
    #[oai(
        path = "/subscriptions/:name",
        method = "delete",
        tag = "Tag::Subscriptions",
        operation_id = "deleteSubscription"
    )]
    async fn delete_subscription(
        &self,
        req: &Request,
        auth: Auth,
        name: Path<String>,
    ) -> Result<NoContent, Problem> {
        let by = self.principal(req, &auth).await?;
        self.port.delete_subscription(&by, &name.0).await?;
        Ok(NoContent::Done)
    }

    /// The newest delivery attempts of a subscription, newest first.
    #[oai(
        path = "/subscriptions/:name/deliveries",
        method = "get",
        tag = "Tag::Subscriptions",
        operation_id = "listDeliveries"
    )]
    async fn list_deliveries(
        &self,
        req: &Request,
        auth: Auth,
        name: Path<String>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<u32>>,
    ) -> Result<Json<Vec<dto::Delivery>>, Problem> {
        let by = self.principal(req, &auth).await?;
        let attempts = self
            .port
            .subscription_deliveries(&by, &name.0, limit.0.unwrap_or(100))
            .await?;
        Ok(Json(attempts.into_iter().map(Into::into).collect()))
    }

    /// Deliver one event (`event_id`) or a range of positions (`first`,
    /// `last`) again, once each, to the subscription's endpoint.
    #[oai(
        path = "/subscriptions/:name/redeliveries",
        method = "post",
        tag = "Tag::Subscriptions",
        operation_id = "redeliver"
    )]
    async fn redeliver(
        &self,
        req: &Request,
        auth: Auth,
        name: Path<String>,
        body: Json<dto::Redelivery>,
    ) -> Result<Json<dto::Redelivered>, Problem> {
        let by = self.principal(req, &auth).await?;
        let request = RedeliveryRequest {
            event_id: body.0.event_id,
            first: body.0.first,
            last: body.0.last,
        };
        let done = self.port.redeliver(&by, &name.0, request).await?;
        Ok(Json(dto::Redelivered {
            attempted: done.attempted,
            delivered: done.delivered,
        }))
    }

    /// Create a mount; its secrets are sealed before they are recorded.
    #[oai(
        path = "/mounts",
        method = "post",
        tag = "Tag::Mounts",
        operation_id = "createMount"
    )]
    async fn create_mount(
        &self,
        req: &Request,
        auth: Auth,
        body: Json<dto::NewMount>,
    ) -> Result<MountResponse, Problem> {
        let by = self.principal(req, &auth).await?;
        let new = body.0;
        let mount = self
            .port
            .create_mount(
                &by,
                MountRecord {
                    name: new.name,
                    description: new.description,
                    storage: new.storage.into(),
                    encrypted: new.encrypted,
                },
            )
            .await?;
        Ok(MountResponse::created(mount))
    }

    /// One mount (secrets redacted).
    #[oai(
        path = "/mounts/:name",
        method = "get",
        tag = "Tag::Mounts",
        operation_id = "getMount"
    )]
    async fn get_mount(
        &self,
        req: &Request,
        auth: Auth,
        name: Path<String>,
    ) -> Result<MountResponse, Problem> {
        let by = self.principal(req, &auth).await?;
        let mount = self.port.get_mount(&by, &name.0).await?;
        Ok(MountResponse::ok(mount))
    }

    /// Change a mount's description or storage.
    #[oai(
        path = "/mounts/:name",
        method = "patch",
        tag = "Tag::Mounts",
        operation_id = "updateMount"
    )]
    async fn update_mount(
        &self,
        req: &Request,
        auth: Auth,
        name: Path<String>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: Json<dto::MountUpdate>,
    ) -> Result<MountResponse, Problem> {
        let by = self.principal(req, &auth).await?;
        let expected = expected(if_match.0.as_deref())?;
        let mount = self
            .port
            .update_mount(
                &by,
                &name.0,
                expected,
                body.0.description,
                body.0.storage.map(Into::into),
            )
            .await?;
        Ok(MountResponse::ok(mount))
    }

    /// Delete a mount.
    #[oai(
        path = "/mounts/:name",
        method = "delete",
        tag = "Tag::Mounts",
        operation_id = "deleteMount"
    )]
    async fn delete_mount(
        &self,
        req: &Request,
        auth: Auth,
        name: Path<String>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
    ) -> Result<NoContent, Problem> {
        let by = self.principal(req, &auth).await?;
        let expected = expected(if_match.0.as_deref())?;
        self.port.delete_mount(&by, &name.0, expected).await?;
        Ok(NoContent::Done)
    }

    /// Enrol a TOTP second factor for a user (replacing one not yet
    /// confirmed). Logins need a code once the enrolment is confirmed.
    #[oai(
        path = "/users/:name/totp",
        method = "post",
        tag = "Tag::Users",
        operation_id = "enrollTotp"
    )]
    async fn enroll_totp(
        &self,
        req: &Request,
        auth: Auth,
        name: Path<String>,
    ) -> Result<TotpEnrolled, Problem> {
        let by = self.principal(req, &auth).await?;
        let enrolled = self.port.enroll_totp(&by, &name.0).await?;
        Ok(TotpEnrolled::Created(Json(enrolled.into())))
    }

    /// Confirm a user's TOTP enrolment with a current code.
    #[oai(
        path = "/users/:name/totp/confirm",
        method = "post",
        tag = "Tag::Users",
        operation_id = "confirmTotp"
    )]
    async fn confirm_totp(
        &self,
        req: &Request,
        auth: Auth,
        name: Path<String>,
        body: Json<dto::TotpCode>,
    ) -> Result<NoContent, Problem> {
        let by = self.principal(req, &auth).await?;
        self.port.confirm_totp(&by, &name.0, &body.0.code).await?;
        Ok(NoContent::Done)
    }

    /// Remove a user's second factor.
    #[oai(
        path = "/users/:name/totp",
        method = "delete",
        tag = "Tag::Users",
        operation_id = "disableTotp"
    )]
    async fn disable_totp(
        &self,
        req: &Request,
        auth: Auth,
        name: Path<String>,
    ) -> Result<NoContent, Problem> {
        let by = self.principal(req, &auth).await?;
        self.port.disable_totp(&by, &name.0).await?;
        Ok(NoContent::Done)
    }

    /// Reach a mount's storage now: credentials, bucket or container, host
    /// key and root are checked (the root is created if missing).
    #[oai(
        path = "/mounts/:name/check",
        method = "post",
        tag = "Tag::Mounts",
        operation_id = "checkMount"
    )]
    async fn check_mount(
        &self,
        req: &Request,
        auth: Auth,
        name: Path<String>,
    ) -> Result<Json<dto::MountCheck>, Problem> {
        let by = self.principal(req, &auth).await?;
        let outcome = self.port.check_mount(&by, &name.0).await?;
        Ok(Json(outcome.into()))
    }

    /// List administrators by name.
    #[oai(
        path = "/admins",
        method = "get",
        tag = "Tag::Admins",
        operation_id = "listAdmins"
    )]
    async fn list_admins(
        &self,
        req: &Request,
        auth: Auth,
        cursor: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<u32>>,
        prefix: Query<Option<String>>,
    ) -> Result<Json<dto::AdminPage>, Problem> {
        let by = self.principal(req, &auth).await?;
        let page = self
            .port
            .list_admins(&by, list(cursor.0, limit.0, prefix.0))
            .await?;
        let (items, next_cursor) = versioned_page(page, dto::Admin::new);
        Ok(Json(dto::AdminPage { items, next_cursor }))
    }

    /// Create an administrator.
    #[oai(
        path = "/admins",
        method = "post",
        tag = "Tag::Admins",
        operation_id = "createAdmin"
    )]
    async fn create_admin(
        &self,
        req: &Request,
        auth: Auth,
        body: Json<dto::NewAdmin>,
    ) -> Result<AdminResponse, Problem> {
        let by = self.principal(req, &auth).await?;
        let admin = self
            .port
            .create_admin(&by, &body.0.username, &body.0.password, body.0.role.into())
            .await?;
        Ok(AdminResponse::created(admin))
    }

    /// One administrator.
    #[oai(
        path = "/admins/:username",
        method = "get",
        tag = "Tag::Admins",
        operation_id = "getAdmin"
    )]
    async fn get_admin(
        &self,
        req: &Request,
        auth: Auth,
        username: Path<String>,
    ) -> Result<AdminResponse, Problem> {
        let by = self.principal(req, &auth).await?;
        let admin = self.port.get_admin(&by, &username.0).await?;
        Ok(AdminResponse::ok(admin))
    }

    /// Change an administrator (password, role, enabled).
    #[oai(
        path = "/admins/:username",
        method = "patch",
        tag = "Tag::Admins",
        operation_id = "updateAdmin"
    )]
    async fn update_admin(
        &self,
        req: &Request,
        auth: Auth,
        username: Path<String>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: Json<dto::AdminUpdate>,
    ) -> Result<AdminResponse, Problem> {
        let by = self.principal(req, &auth).await?;
        let expected = expected(if_match.0.as_deref())?;
        let changes = AdminChanges {
            password: body.0.password,
            role: body.0.role.map(Into::into),
            enabled: body.0.enabled,
        };
        let admin = self
            .port
            .update_admin(&by, &username.0, expected, changes)
            .await?;
        Ok(AdminResponse::ok(admin))
    }

    /// Delete an administrator.
    #[oai(
        path = "/admins/:username",
        method = "delete",
        tag = "Tag::Admins",
        operation_id = "deleteAdmin"
    )]
    async fn delete_admin(
        &self,
        req: &Request,
        auth: Auth,
        username: Path<String>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
    ) -> Result<NoContent, Problem> {
        let by = self.principal(req, &auth).await?;
        let expected = expected(if_match.0.as_deref())?;
        self.port.delete_admin(&by, &username.0, expected).await?;
        Ok(NoContent::Done)
    }

    /// List API keys.
    #[oai(
        path = "/api-keys",
        method = "get",
        tag = "Tag::ApiKeys",
        operation_id = "listApiKeys"
    )]
    async fn list_api_keys(
        &self,
        req: &Request,
        auth: Auth,
        cursor: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<u32>>,
    ) -> Result<Json<dto::ApiKeyPage>, Problem> {
        let by = self.principal(req, &auth).await?;
        let page = self
            .port
            .list_api_keys(&by, list(cursor.0, limit.0, None))
            .await?;
        Ok(Json(dto::ApiKeyPage {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        }))
    }

    /// Create an API key acting as the calling administrator.
    #[oai(
        path = "/api-keys",
        method = "post",
        tag = "Tag::ApiKeys",
        operation_id = "createApiKey"
    )]
    async fn create_api_key(
        &self,
        req: &Request,
        auth: Auth,
        body: Json<dto::NewApiKey>,
    ) -> Result<ApiKeyCreated, Problem> {
        let by = self.principal(req, &auth).await?;
        let created = self
            .port
            .create_api_key(
                &by,
                &body.0.name,
                body.0.role.map(Into::into),
                body.0.expires_at,
            )
            .await?;
        Ok(ApiKeyCreated::Created(Json(dto::CreatedApiKey {
            key: created.key,
            api_key: created.record.into(),
        })))
    }

    /// Revoke an API key; it stops working at once.
    #[oai(
        path = "/api-keys/:id",
        method = "delete",
        tag = "Tag::ApiKeys",
        operation_id = "revokeApiKey"
    )]
    async fn revoke_api_key(
        &self,
        req: &Request,
        auth: Auth,
        id: Path<String>,
    ) -> Result<NoContent, Problem> {
        let by = self.principal(req, &auth).await?;
        self.port.revoke_api_key(&by, &id.0).await?;
        Ok(NoContent::Done)
    }

    /// Query the audit trail. Every filter narrows the result; pages follow
    /// the global position. The query itself is recorded.
    #[oai(
        path = "/events",
        method = "get",
        tag = "Tag::Audit",
        operation_id = "listEvents"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list_events(
        &self,
        req: &Request,
        auth: Auth,
        /// Events at or after this RFC 3339 time.
        since: Query<Option<String>>,
        /// Events before this RFC 3339 time.
        until: Query<Option<String>>,
        /// The user concerned.
        user: Query<Option<String>>,
        /// The event type, such as `LoginFailed` or `TransferCompleted`.
        action: Query<Option<String>>,
        /// The outcome.
        outcome: Query<Option<dto::Outcome>>,
        /// The protocol (`sftp`, `scp`, `ftp`, `ftps`, `webdav`, `http`).
        protocol: Query<Option<String>>,
        /// Paths at or below this one.
        path_prefix: Query<Option<String>>,
        /// The client's address (`ip` or `ip:port`).
        remote_addr: Query<Option<String>>,
        /// Resume after this position (`next_cursor` of the previous page).
        cursor: Query<Option<u64>>,
        /// Page size, 1–1000 (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u32>>,
    ) -> Result<Json<dto::EventPage>, Problem> {
        let by = self.principal(req, &auth).await?;
        let filters = EventFilters {
            since: since.0,
            until: until.0,
            user: user.0,
            action: action.0,
            outcome: outcome.0,
            protocol: protocol.0,
            path_prefix: path_prefix.0,
            remote_addr: remote_addr.0,
        };
        let query = filters.query(cursor.0.unwrap_or(0), limit.0.unwrap_or(100) as usize);
        let page = self.port.query_events(&by, query).await?;
        Ok(Json(dto::EventPage {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        }))
    }

    /// Export the audit records a query selects, streamed as CSV or NDJSON.
    /// The export itself is recorded.
    #[oai(
        path = "/events/export",
        method = "get",
        tag = "Tag::Audit",
        operation_id = "exportEvents"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn export_events(
        &self,
        req: &Request,
        auth: Auth,
        /// `csv` or `ndjson`.
        format: Query<Format>,
        since: Query<Option<String>>,
        until: Query<Option<String>>,
        user: Query<Option<String>>,
        action: Query<Option<String>>,
        outcome: Query<Option<dto::Outcome>>,
        protocol: Query<Option<String>>,
        path_prefix: Query<Option<String>>,
        remote_addr: Query<Option<String>>,
    ) -> Result<Export, Problem> {
        let by = self.principal(req, &auth).await?;
        let filters = EventFilters {
            since: since.0,
            until: until.0,
            user: user.0,
            action: action.0,
            outcome: outcome.0,
            protocol: protocol.0,
            path_prefix: path_prefix.0,
            remote_addr: remote_addr.0,
        };
        let query = filters.query(0, 500);
        let name = match format.0 {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        };
        self.port.start_export(&by, &query, name).await?;
        let body = Body::from_bytes_stream(export_stream(self.port.clone(), by, query, format.0));
        let disposition = format!("attachment; filename=\"tollgate-events.{name}\"");
        Ok(match format.0 {
            Format::Csv => Export::Ok(ExportBody::Csv(Binary(body)), disposition),
            Format::Ndjson => Export::Ok(ExportBody::Ndjson(Binary(body)), disposition),
        })
    }

    /// Verify the whole audit trail, as `tollgate audit verify` does. The
    /// verification itself is recorded.
    #[oai(
        path = "/audit/verify",
        method = "get",
        tag = "Tag::Audit",
        operation_id = "verifyAudit"
    )]
    async fn verify_audit(
        &self,
        req: &Request,
        auth: Auth,
    ) -> Result<Json<dto::Verification>, Problem> {
        let by = self.principal(req, &auth).await?;
        let report = self.port.verify_audit(&by).await?;
        Ok(Json(dto::Verification {
            ok: report.finding.is_none(),
            sealed: report.sealed,
            unsealed: report.unsealed,
            pruned: report.pruned,
            checkpoints: report.checkpoints,
            checkpointed: report.checkpointed,
            finding: report.finding,
        }))
    }

    /// The latest signed checkpoint of the audit log (signing one first
    /// when records were added since), as `tollgate audit checkpoint`.
    #[oai(
        path = "/audit/checkpoint",
        method = "get",
        tag = "Tag::Audit",
        operation_id = "getAuditCheckpoint"
    )]
    async fn audit_checkpoint(
        &self,
        req: &Request,
        auth: Auth,
    ) -> Result<Json<dto::Checkpoint>, Problem> {
        let by = self.principal(req, &auth).await?;
        Ok(Json(self.port.audit_checkpoint(&by).await?.into()))
    }

    /// An event's inclusion proof in the latest checkpoint.
    #[oai(
        path = "/audit/proofs/inclusion",
        method = "get",
        tag = "Tag::Audit",
        operation_id = "getInclusionProof"
    )]
    async fn inclusion_proof(
        &self,
        req: &Request,
        auth: Auth,
        /// The event's id.
        #[oai(validator(max_length = 64))]
        event_id: Query<String>,
    ) -> Result<Json<dto::InclusionProof>, Problem> {
        let by = self.principal(req, &auth).await?;
        Ok(Json(
            self.port.inclusion_proof(&by, &event_id.0).await?.into(),
        ))
    }

    /// The consistency proof between the checkpoints of two tree sizes.
    #[oai(
        path = "/audit/proofs/consistency",
        method = "get",
        tag = "Tag::Audit",
        operation_id = "getConsistencyProof"
    )]
    async fn consistency_proof(
        &self,
        req: &Request,
        auth: Auth,
        /// The earlier checkpoint's size.
        first: Query<u64>,
        /// The later checkpoint's size.
        second: Query<u64>,
    ) -> Result<Json<dto::ConsistencyProof>, Problem> {
        let by = self.principal(req, &auth).await?;
        Ok(Json(
            self.port
                .consistency_proof(&by, first.0, second.0)
                .await?
                .into(),
        ))
    }

    /// List transfers, newest first.
    #[oai(
        path = "/transfers",
        method = "get",
        tag = "Tag::Activity",
        operation_id = "listTransfers"
    )]
    async fn list_transfers(
        &self,
        req: &Request,
        auth: Auth,
        cursor: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<u32>>,
        /// Only this user's transfers.
        user: Query<Option<String>>,
    ) -> Result<Json<dto::TransferPage>, Problem> {
        let by = self.principal(req, &auth).await?;
        if !matches!(by, Principal::Admin { .. }) {
            return Err(tollgate_ports::api::ApiError::Forbidden(
                "this resource is for administrators".to_string(),
            )
            .into());
        }
        let page = self
            .port
            .list_transfers(&by, list(cursor.0, limit.0, None), user.0)
            .await?;
        Ok(Json(dto::TransferPage {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        }))
    }

    /// The connections open on the answering node.
    #[oai(
        path = "/sessions",
        method = "get",
        tag = "Tag::Activity",
        operation_id = "listSessions"
    )]
    async fn list_sessions(
        &self,
        req: &Request,
        auth: Auth,
    ) -> Result<Json<Vec<dto::Session>>, Problem> {
        let by = self.principal(req, &auth).await?;
        let sessions = self.port.list_sessions(&by).await?;
        Ok(Json(sessions.into_iter().map(Into::into).collect()))
    }

    /// Disconnect a live session (recorded); its transfers are aborted.
    #[oai(
        path = "/sessions/:id",
        method = "delete",
        tag = "Tag::Activity",
        operation_id = "disconnectSession"
    )]
    async fn disconnect_session(
        &self,
        req: &Request,
        auth: Auth,
        id: Path<String>,
    ) -> Result<NoContent, Problem> {
        let by = self.principal(req, &auth).await?;
        self.port.disconnect_session(&by, &id.0).await?;
        Ok(NoContent::Done)
    }

    /// Client addresses banned now after failed logins (the defender).
    #[oai(
        path = "/bans",
        method = "get",
        tag = "Tag::Activity",
        operation_id = "listBans"
    )]
    async fn list_bans(&self, req: &Request, auth: Auth) -> Result<Json<Vec<dto::Ban>>, Problem> {
        let by = self.principal(req, &auth).await?;
        let bans = self.port.list_bans(&by).await?;
        Ok(Json(bans.into_iter().map(Into::into).collect()))
    }

    /// Lift the ban of an address (recorded as `AddressUnbanned`).
    #[oai(
        path = "/bans/:address",
        method = "delete",
        tag = "Tag::Activity",
        operation_id = "unban"
    )]
    async fn unban(
        &self,
        req: &Request,
        auth: Auth,
        address: Path<String>,
    ) -> Result<NoContent, Problem> {
        let by = self.principal(req, &auth).await?;
        self.port.unban(&by, &address.0).await?;
        Ok(NoContent::Done)
    }
}

/// Health, readiness and metrics, outside the versioned prefix.
pub(crate) struct Ops {
    pub(crate) port: Arc<dyn AdminApi>,
}

#[OpenApi]
impl Ops {
    /// The process is up.
    #[oai(
        path = "/healthz",
        method = "get",
        tag = "Tag::Operations",
        operation_id = "health"
    )]
    async fn health(&self) -> PlainText<&'static str> {
        PlainText("ok")
    }

    /// The process can serve requests (its store answers).
    #[oai(
        path = "/readyz",
        method = "get",
        tag = "Tag::Operations",
        operation_id = "ready"
    )]
    async fn ready(&self) -> Result<PlainText<&'static str>, Problem> {
        self.port.ready().await?;
        Ok(PlainText("ready"))
    }

    /// Prometheus metrics: connections, transfers, bytes, authentication
    /// failures, event log lag per subscriber.
    #[oai(
        path = "/metrics",
        method = "get",
        tag = "Tag::Operations",
        operation_id = "metrics"
    )]
    async fn metrics(&self) -> Result<MetricsText, Problem> {
        let samples = self.port.metrics().await?;
        Ok(MetricsText::Ok(PlainText(crate::metrics::render(&samples))))
    }
}
