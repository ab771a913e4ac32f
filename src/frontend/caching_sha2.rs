//! caching_sha2_password for clients that name it in their HandshakeResponse
//! (MySQL 8+ connectors): fast path from a known SHA256(SHA256(pw)), else
//! full authentication (clear text over TLS, RSA-OAEP over plain TCP), after
//! which the digest is cached so the next login takes the fast path.

use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;
use tokio::sync::OnceCell;
use tracing::{debug, error, info};

use super::Context;
use super::error::{LoginError, LoginRefusal};
use super::login::{self, Claim, MAX_LOGIN_PACKET, Who};
use super::stream::{ClientConn, ClientStream};
use crate::protocol::ServerError;
use crate::protocol::auth::{self, NativeHash, SCRAMBLE_LEN};
use crate::protocol::caching_sha2::{
    self as sha2, CACHING_SHA2_PLUGIN, FAST_AUTH_SUCCESS, PERFORM_FULL_AUTHENTICATION,
    REQUEST_PUBLIC_KEY, RsaKey, Sha2Digest,
};
use crate::protocol::handshake;
use crate::routing::{TenantId, TenantRoute};

/// Where the RSA key for plain-TCP full authentication comes from.
pub enum RsaKeys {
    /// Generated on first need, once per process (a 2048-bit key costs
    /// roughly 0.2-1 s of one core in a debug build, less in release), off
    /// the event loop.
    Generate,
    /// A key loaded by the caller, e.g. from a PEM file.
    Loaded(Arc<RsaKey>),
    /// No key: plain-TCP full authentication is refused; TLS still works.
    Disabled,
}

impl RsaKeys {
    /// The keys `[auth]` asks for; a configured key file is read and parsed
    /// here, so a bad one stops silo at start.
    ///
    /// # Errors
    /// The key file cannot be read or is not an RSA private key (the message
    /// names the file, never its content).
    pub fn from_config(auth: &crate::config::AuthConfig) -> Result<Self, String> {
        if !auth.rsa_key_exchange {
            return Ok(RsaKeys::Disabled);
        }
        let Some(path) = &auth.rsa_private_key else {
            return Ok(RsaKeys::Generate);
        };
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        RsaKey::from_pem(&pem)
            .map(|key| RsaKeys::Loaded(Arc::new(key)))
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

static GENERATED: OnceCell<Option<Arc<RsaKey>>> = OnceCell::const_new();

/// The caching_sha2_password state shared by every session.
pub struct Sha2Auth {
    keys: RsaKeys,
    /// (tenant, user) → the native hash the password was verified against
    /// and its SHA256(SHA256(pw)). An entry whose native hash no longer is the
    /// user's (password changed) is ignored and replaced.
    cache: DashMap<(TenantId, String), (NativeHash, Sha2Digest)>,
}

impl Sha2Auth {
    pub fn new(keys: RsaKeys) -> Self {
        Self {
            keys,
            cache: DashMap::new(),
        }
    }

    /// The RSA key, generating the process's key on first need.
    pub async fn rsa_key(&self) -> Option<Arc<RsaKey>> {
        match &self.keys {
            RsaKeys::Loaded(key) => Some(key.clone()),
            RsaKeys::Disabled => None,
            RsaKeys::Generate => GENERATED.get_or_init(generate).await.clone(),
        }
    }

    /// The fast-path digest for a user whose stored hash is `native`.
    fn cached(&self, tenant: &TenantId, user: &str, native: &NativeHash) -> Option<Sha2Digest> {
        let entry = self.cache.get(&(tenant.clone(), user.to_string()))?;
        let (verified_against, digest) = entry.value();
        (verified_against == native).then(|| digest.clone())
    }

    fn remember(&self, tenant: &TenantId, user: &str, native: NativeHash, digest: Sha2Digest) {
        self.cache
            .insert((tenant.clone(), user.to_string()), (native, digest));
    }
}

async fn generate() -> Option<Arc<RsaKey>> {
    let started = Instant::now();
    match tokio::task::spawn_blocking(RsaKey::generate).await {
        Ok(Ok(key)) => {
            info!(
                bits = sha2::RSA_BITS,
                ms = started.elapsed().as_millis() as u64,
                "generated the RSA key for caching_sha2_password"
            );
            Some(Arc::new(key))
        }
        Ok(Err(e)) => {
            error!(error = %e, "no RSA key: plain-TCP caching_sha2_password full authentication will be refused");
            None
        }
        Err(e) => {
            error!(error = %e, "RSA key generation did not finish");
            None
        }
    }
}

/// Whether a client asked for caching_sha2_password in its HandshakeResponse.
pub fn wants_caching_sha2(plugin: Option<&[u8]>) -> bool {
    plugin == Some(CACHING_SHA2_PLUGIN.as_bytes())
}

/// Runs caching_sha2_password with a client that named it and sent `first`
/// over `nonce` (`None`: it is asked for with an AuthSwitchRequest carrying
/// `nonce`); `seq` is left at the sequence id of the packet that ends the
/// exchange (OK or ERR). The verdict is [`login::decide`]'s.
///
/// # Errors
/// See [`LoginError`]; a wrong password is the same refusal as on the
/// mysql_native_password path.
pub async fn authenticate(
    ctx: &Context,
    client: &mut ClientConn,
    nonce: &[u8; SCRAMBLE_LEN],
    seq: &mut u8,
    first: Option<Vec<u8>>,
    who: &Who<'_>,
) -> Result<(Arc<TenantRoute>, String), LoginError> {
    let first = match first {
        Some(first) => first,
        None => {
            ask(
                client,
                seq,
                &handshake::auth_switch_request_to(CACHING_SHA2_PLUGIN, nonce),
            )
            .await?
        }
    };
    let claim = login::identify(ctx, who)?;
    let stored = claim.stored_hash();
    if sha2::is_empty_response(&first) {
        return login::decide(&claim, matches!(stored, Some(None)));
    }
    if let Some(digest) = fast_digest(ctx, &claim)
        && sha2::verify_scramble(&digest, nonce, &first)
    {
        debug!(user = %claim.shown_user, tenant = %claim.tenant.id, "caching_sha2_password fast path");
        queue(client, seq, &sha2::more_data(FAST_AUTH_SUCCESS));
        return login::decide(&claim, true);
    }

    // Full authentication: the client sends its password itself.
    let reply = ask(client, seq, &sha2::more_data(PERFORM_FULL_AUTHENTICATION)).await?;
    let (decrypted, password) = if matches!(client.stream, ClientStream::Tls(_)) {
        let Some(password) = sha2::cleartext_password(&reply) else {
            return Err(LoginError::refused(
                LoginRefusal::BadHandshake,
                ServerError::bad_handshake(),
                "caching_sha2_password: clear-text password without its NUL",
            )
            .of_tenant(&claim.tenant));
        };
        (subtle::Choice::from(1), password)
    } else {
        let Some(key) = ctx.sha2.rsa_key().await else {
            return Err(LoginError::refused(
                LoginRefusal::TlsRequired,
                ServerError::full_auth_needs_tls(),
                "caching_sha2_password full authentication on plain TCP without an RSA key",
            )
            .of_tenant(&claim.tenant));
        };
        // A client that already has the key (configured with it) sends the
        // encrypted password at once.
        let encrypted = if reply == [REQUEST_PUBLIC_KEY] {
            ask(client, seq, &sha2::public_key_packet(&key)).await?
        } else {
            reply
        };
        if key.looks_unencrypted(&encrypted) {
            // Connector/C built without RSA support (Debian's GnuTLS build)
            // sends the password in clear here; MySQL refuses it too. It is
            // never checked, so plain TCP never accepts a clear password.
            info!(user = %claim.shown_user, tenant = %claim.tenant.id, "login refused: clear-text password on plain TCP");
            return Err(LoginError::refused(
                LoginRefusal::TlsRequired,
                ServerError::password_sent_unencrypted(),
                "caching_sha2_password: clear-text password on plain TCP",
            )
            .of_tenant(&claim.tenant));
        }
        key.decrypt_password(nonce, &encrypted)
    };
    let native = stored.flatten();
    let verified = bool::from(decrypted) && sha2::verify_password(native, password.expose());
    if !bool::from(decrypted) {
        debug!(user = %claim.shown_user, tenant = %claim.tenant.id, "caching_sha2_password: RSA-encrypted password did not decrypt");
    }
    if verified && let Some(native) = native {
        ctx.sha2.remember(
            &claim.tenant.id,
            &claim.username,
            native.clone(),
            Sha2Digest::from_password(password.expose()),
        );
    }
    debug!(user = %claim.shown_user, tenant = %claim.tenant.id, "caching_sha2_password full authentication");
    login::decide(&claim, verified)
}

/// COM_CHANGE_USER from a client that names caching_sha2_password, answered
/// as MySQL 8+ does: an AuthSwitchRequest to caching_sha2_password with a
/// fresh nonce, then the login's exchange over it. Whatever the
/// COM_CHANGE_USER carried is not used: libmysqlclient sends nothing there
/// and waits for a nonce, and connectors that send a scramble over the
/// greeting's nonce follow the switch, since MySQL always sends it.
///
/// # Errors
/// See [`authenticate`].
pub async fn change_user(
    ctx: &Context,
    client: &mut ClientConn,
    seq: &mut u8,
    who: &Who<'_>,
) -> Result<(Arc<TenantRoute>, String), LoginError> {
    let nonce = auth::new_scramble().map_err(|_| LoginError::Random)?;
    authenticate(ctx, client, &nonce, seq, None, who).await
}

/// The digest the fast path checks against: from the configuration's clear
/// text password, else from an earlier full authentication.
fn fast_digest(ctx: &Context, claim: &Claim) -> Option<Sha2Digest> {
    let native = claim.stored_hash().flatten()?;
    if let Some(digest) = claim.table.user_sha2(&claim.tenant.id, &claim.username) {
        return Some(digest.clone());
    }
    ctx.sha2.cached(&claim.tenant.id, &claim.username, native)
}

fn queue(client: &mut ClientConn, seq: &mut u8, payload: &[u8]) {
    client.queue_packet(*seq, payload);
    *seq = seq.wrapping_add(1);
}

/// Sends `payload` and returns the client's next packet.
async fn ask(client: &mut ClientConn, seq: &mut u8, payload: &[u8]) -> Result<Vec<u8>, LoginError> {
    queue(client, seq, payload);
    client
        .flush()
        .await
        .map_err(|e| LoginError::Packet(e.into()))?;
    let (got, reply) = client.read_packet(MAX_LOGIN_PACKET).await?;
    *seq = got.wrapping_add(1);
    Ok(reply.to_vec())
}
