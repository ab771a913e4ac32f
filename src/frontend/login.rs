//! From accept to an authenticated client: greeting, optional in-band TLS
//! upgrade, HandshakeResponse, caching_sha2_password for clients that name
//! it (see [`super::caching_sha2`]) or mysql_native_password (other plugins
//! are switched to it), tenant identification, password check, tenant
//! status, OK.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::Guard;
use mysql_common::constants::CapabilityFlags;
use tracing::info;

use super::Context;
use super::caching_sha2;
use super::error::{LoginError, LoginRefusal};
use super::stream::{ClientConn, ClientStream, PacketError, read_packet_exact};
use crate::backend::connection::Profile;
use crate::config::TenantStatus;
use crate::limits::ClientSlot;
use crate::protocol::ServerError;
use crate::protocol::auth::{self, NATIVE_PLUGIN, NativeHash, SCRAMBLE_LEN};
use crate::protocol::error_code::sanitize;
use crate::protocol::handshake::{self, FirstResponse};
use crate::routing::identify::{self, LoginFacts};
use crate::routing::{RouteTable, TenantRoute};

/// Login packets are small; a larger one is garbage or an attack.
pub const MAX_LOGIN_PACKET: usize = 64 * 1024;
/// utf8mb4_general_ci, offered in the greeting like MariaDB does.
const DEFAULT_COLLATION: u8 = 45;

/// An authenticated client, ready for commands.
pub struct LoggedIn {
    pub tenant: Arc<TenantRoute>,
    pub username: String,
    pub capabilities: CapabilityFlags,
    pub profile: Profile,
    /// The database the client asked for, if any (else the tenant's).
    pub database: Option<String>,
    pub attributes: HashMap<String, String>,
    pub sni: Option<String>,
    /// The nonce of the greeting, kept to verify a later COM_CHANGE_USER.
    pub scramble: [u8; SCRAMBLE_LEN],
    /// Counts against the tenant's `max_client_connections` while it lives.
    pub client_slot: ClientSlot,
}

/// Takes one of the tenant's client connections (`max_client_connections`).
///
/// # Errors
/// The limit is reached: ERR 1226 naming it.
pub fn admit_client(
    ctx: &Context,
    tenant: &Arc<TenantRoute>,
    user: &str,
) -> Result<ClientSlot, LoginError> {
    let live = ctx.tenants.of(&tenant.id);
    live.admit_client(&tenant.limits).map_err(|refusal| {
        let limits = &tenant.limits;
        let max = crate::limits::finite(limits.max_client_connections).unwrap_or_default();
        info!(user = %sanitize(user.as_bytes()), tenant = %tenant.id, limit = refusal.name(), max, "login refused: limit reached");
        LoginError::refused(
            LoginRefusal::Limit,
            ServerError::limit_reached(tenant.slug(), &limits.plan, refusal.name(), max, ""),
            "max_client_connections",
        )
        .of_tenant(tenant)
    })
}

/// The client's credentials for one tenant, checked against the table.
pub struct Credentials<'a> {
    pub user: &'a str,
    pub database: Option<&'a str>,
    pub attributes: &'a HashMap<String, String>,
    pub sni: Option<&'a str>,
    pub scramble: &'a [u8],
    pub token: &'a [u8],
}

/// Who a client says it is, before any password is checked.
pub struct Who<'a> {
    pub user: &'a str,
    pub database: Option<&'a str>,
    pub attributes: &'a HashMap<String, String>,
    pub sni: Option<&'a str>,
}

/// An identified tenant and user, whose password is still to be checked
/// against the table snapshot it was found in.
pub struct Claim {
    pub table: Arc<RouteTable>,
    pub tenant: Arc<TenantRoute>,
    pub username: String,
    /// The login name as it may be shown in messages and logs.
    pub shown_user: String,
}

impl Claim {
    /// The stored password hash: `None` for an unknown user, `Some(None)` for
    /// a user with an empty password.
    pub fn stored_hash(&self) -> Option<Option<&NativeHash>> {
        self.table.user(&self.tenant.id, &self.username)
    }
}

/// Identifies the tenant of a login.
///
/// # Errors
/// No method names a known tenant.
pub fn identify(ctx: &Context, who: &Who<'_>) -> Result<Claim, LoginError> {
    let table = Guard::into_inner(ctx.router.load());
    let facts = LoginFacts {
        user: who.user,
        attributes: who.attributes,
        sni: who.sni,
        database: who.database,
    };
    let shown_user = sanitize(who.user.as_bytes());
    let found = identify::identify(&table, facts).map_err(|unknown| {
        let candidate = unknown.candidate.as_deref().map(|c| sanitize(c.as_bytes()));
        info!(user = %shown_user, candidate = candidate.as_deref().unwrap_or("-"), "login refused: unknown tenant");
        LoginError::refused(
            LoginRefusal::UnknownTenant,
            ServerError::unknown_tenant(&shown_user, candidate.as_deref()),
            "unknown tenant",
        )
    })?;
    Ok(Claim {
        tenant: found.tenant,
        username: found.username,
        table,
        shown_user,
    })
}

/// The one place that decides a login once the password was checked
/// (`verified`), whatever the plugin: wrong password, tenant status, or in.
///
/// # Errors
/// The ERR to send and a log reason; the message leaks no secret, and the
/// tenant's status is only revealed to a client that knew the password.
pub fn decide(claim: &Claim, verified: bool) -> Result<(Arc<TenantRoute>, String), LoginError> {
    let tenant = &claim.tenant;
    if !verified {
        info!(user = %claim.shown_user, tenant = %tenant.id, "login refused: wrong password or unknown user");
        return Err(LoginError::refused(
            LoginRefusal::BadPassword,
            ServerError::access_denied(&claim.shown_user),
            "wrong password or unknown user",
        )
        .of_tenant(tenant));
    }
    // A paused tenant's clients may log in; their commands wait.
    if !matches!(tenant.status, TenantStatus::Active | TenantStatus::Paused) {
        info!(user = %claim.shown_user, tenant = %tenant.id, status = %tenant.status, "login refused: tenant not active");
        return Err(LoginError::refused(
            LoginRefusal::NotActive(tenant.status),
            ServerError::tenant_not_active(tenant.slug(), &tenant.status.to_string()),
            "tenant not active",
        )
        .of_tenant(tenant));
    }
    Ok((tenant.clone(), claim.username.clone()))
}

/// Identifies the tenant and checks a mysql_native_password token and the
/// tenant's status. Returns the tenant and the username within it.
///
/// # Errors
/// See [`identify`] and [`decide`].
pub fn authenticate(
    ctx: &Context,
    creds: &Credentials<'_>,
) -> Result<(Arc<TenantRoute>, String), LoginError> {
    let claim = identify(
        ctx,
        &Who {
            user: creds.user,
            database: creds.database,
            attributes: creds.attributes,
            sni: creds.sni,
        },
    )?;
    let verified = match claim.stored_hash() {
        Some(hash) => auth::verify_native(hash, creds.scramble, creds.token),
        None => false,
    };
    decide(&claim, verified)
}

/// Runs the login conversation on `client` (plain TCP, upgraded in place
/// to TLS on an SSLRequest). On error the caller sends the ERR, if any, with
/// sequence id `*seq`, and closes.
///
/// # Errors
/// See [`LoginError`].
pub async fn login(
    ctx: &Context,
    client: &mut ClientConn,
    connection_id: u32,
    seq: &mut u8,
) -> Result<LoggedIn, LoginError> {
    let scramble = auth::new_scramble().map_err(|_| LoginError::Random)?;
    let offered = handshake::server_capabilities(ctx.tls.is_some());
    let greeting = handshake::greeting(
        connection_id,
        &ctx.server_version,
        &scramble,
        offered,
        DEFAULT_COLLATION,
    );
    client.queue_packet(0, &greeting);
    client.flush().await.map_err(PacketError::from)?;

    let ClientStream::Plain(tcp) = &mut client.stream else {
        return Err(LoginError::Packet(PacketError::Closed));
    };
    // Exact-size read: a TLS ClientHello may already follow the SSLRequest.
    let (got, first) = read_packet_exact(tcp, MAX_LOGIN_PACKET).await?;
    *seq = got.wrapping_add(1);
    let (login, sni) = match handshake::parse_first_response(&first).map_err(PacketError::from)? {
        FirstResponse::SslRequest { .. } => {
            let Some(acceptor) = &ctx.tls else {
                return Err(LoginError::refused(
                    LoginRefusal::BadHandshake,
                    ServerError::bad_handshake(),
                    "SSLRequest but TLS is not configured",
                ));
            };
            let ClientStream::Plain(tcp) =
                std::mem::replace(&mut client.stream, ClientStream::Detached)
            else {
                return Err(LoginError::Packet(PacketError::Closed));
            };
            let tls = acceptor.accept(tcp).await.map_err(LoginError::Tls)?;
            let sni = tls.get_ref().1.server_name().map(str::to_string);
            client.stream = ClientStream::Tls(Box::new(tls));
            let (got, payload) = client.read_packet(MAX_LOGIN_PACKET).await?;
            *seq = got.wrapping_add(1);
            (
                handshake::parse_login(&payload).map_err(PacketError::from)?,
                sni,
            )
        }
        FirstResponse::Login(login) => {
            if ctx.tls_required {
                return Err(LoginError::refused(
                    LoginRefusal::TlsRequired,
                    ServerError::tls_required(),
                    "plain-text login while TLS is required",
                ));
            }
            (login, None)
        }
    };

    let capabilities = login.capabilities & offered;
    let user = String::from_utf8_lossy(&login.user).into_owned();
    let database = login
        .database
        .as_deref()
        .map(|d| String::from_utf8_lossy(d).into_owned());
    let plugin = login.auth_plugin.as_deref();
    let (tenant, username) = if capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH)
        && caching_sha2::wants_caching_sha2(plugin)
    {
        let who = Who {
            user: &user,
            database: database.as_deref(),
            attributes: &login.attributes,
            sni: sni.as_deref(),
        };
        // An empty first response is either an empty password or a client
        // that prepared its data for the greeting's plugin and waits to be
        // asked (libmysqlclient, Connector/C): asking again with the same
        // nonce serves both.
        let first = Some(login.auth_response.clone()).filter(|r| !r.is_empty());
        caching_sha2::authenticate(ctx, client, &scramble, seq, first, &who).await?
    } else {
        let token = native_token(
            client,
            plugin,
            capabilities,
            &login.auth_response,
            &scramble,
            seq,
        )
        .await?;
        authenticate(
            ctx,
            &Credentials {
                user: &user,
                database: database.as_deref(),
                attributes: &login.attributes,
                sni: sni.as_deref(),
                scramble: &scramble,
                token: &token,
            },
        )?
    };
    let client_slot = admit_client(ctx, &tenant, &user)?;
    client.queue_packet(*seq, &ok_payload());
    client.flush().await.map_err(PacketError::from)?;
    Ok(LoggedIn {
        client_slot,
        tenant,
        username,
        capabilities,
        profile: Profile::new(capabilities, login.collation),
        database,
        attributes: login.attributes,
        sni,
        scramble,
    })
}

/// The mysql_native_password token of a login: the client's first
/// response, or, for a client that named another plugin (one silo does not
/// speak), its reply to an AuthSwitchRequest; `seq` is advanced past it.
///
/// # Errors
/// As [`switch_to_native`].
pub async fn native_token(
    client: &mut ClientConn,
    plugin: Option<&[u8]>,
    capabilities: CapabilityFlags,
    first_response: &[u8],
    scramble: &[u8; SCRAMBLE_LEN],
    seq: &mut u8,
) -> Result<Vec<u8>, LoginError> {
    if wants_switch(plugin, capabilities) {
        switch_to_native(client, scramble, seq).await
    } else {
        Ok(first_response.to_vec())
    }
}

/// Sends an AuthSwitchRequest to mysql_native_password with `scramble` and
/// returns the client's token; `seq` is advanced past the exchange.
///
/// # Errors
/// The client went away or sent an oversized reply.
pub async fn switch_to_native(
    client: &mut ClientConn,
    scramble: &[u8; SCRAMBLE_LEN],
    seq: &mut u8,
) -> Result<Vec<u8>, LoginError> {
    client.queue_packet(*seq, &handshake::auth_switch_request(scramble));
    client.flush().await.map_err(PacketError::from)?;
    let (got, reply) = client.read_packet(MAX_LOGIN_PACKET).await?;
    *seq = got.wrapping_add(1);
    Ok(reply.to_vec())
}

/// Whether a client that named `plugin` must be switched to mysql_native_password.
pub fn wants_switch(plugin: Option<&[u8]>, capabilities: CapabilityFlags) -> bool {
    capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH)
        && plugin.is_some_and(|p| p != NATIVE_PLUGIN.as_bytes())
}

/// An OK packet: no rows affected, autocommit on.
pub fn ok_payload() -> [u8; 7] {
    [0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]
}
