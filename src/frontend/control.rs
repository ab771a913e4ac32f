//! Commands a session answers with silo's own logic rather than relaying
//! them: COM_CHANGE_USER (authenticate again, maybe another tenant) and
//! `KILL` on silo connection ids.

use mysql_common::constants::CapabilityFlags;
use tracing::{info, warn};

use super::login::{self, Credentials};
use super::registry::BackendTarget;
use super::session::{Flow, Session};
use super::session_state::SessionState;
use super::stream::PacketError;
use crate::backend::connection::Profile;
use crate::backend::{BackendConn, BackendError};
use crate::metrics::LoginResult;
use crate::protocol::ServerError;
use crate::protocol::auth;
use crate::protocol::command::Kill;
use crate::protocol::error_code::sanitize;
use crate::protocol::handshake;

impl Session {
    /// COM_CHANGE_USER: authenticate again (caching_sha2_password for clients
    /// that name it, else mysql_native_password) and route to the (possibly
    /// new) tenant; the old backend connection is released and reset first.
    pub(super) async fn change_user(&mut self, payload: &[u8]) -> Result<Flow, PacketError> {
        let parsed = match handshake::parse_change_user(
            payload.get(1..).unwrap_or_default(),
            self.capabilities,
        ) {
            Ok(p) => p,
            Err(_) => {
                self.client
                    .send_error(1, &ServerError::malformed_packet())
                    .await;
                return Ok(Flow::End);
            }
        };
        let mut seq = 1u8;
        let user = String::from_utf8_lossy(&parsed.user).into_owned();
        let database = parsed
            .database
            .as_deref()
            .map(|d| String::from_utf8_lossy(d).into_owned());
        let attributes = if parsed.attributes.is_empty() {
            self.attributes.clone()
        } else {
            parsed.attributes.clone()
        };
        let sha2 = self
            .capabilities
            .contains(CapabilityFlags::CLIENT_PLUGIN_AUTH)
            && super::caching_sha2::wants_caching_sha2(parsed.auth_plugin.as_deref());
        let result = if sha2 {
            let who = login::Who {
                user: &user,
                database: database.as_deref(),
                attributes: &attributes,
                sni: self.sni.as_deref(),
            };
            super::caching_sha2::change_user(&self.ctx, &mut self.client, &mut seq, &who).await
        } else {
            let mut scramble = self.scramble;
            let token = if login::wants_switch(parsed.auth_plugin.as_deref(), self.capabilities) {
                scramble = match auth::new_scramble() {
                    Ok(s) => s,
                    Err(_) => {
                        self.client
                            .send_error(1, &ServerError::internal(u64::from(self.handle.id)))
                            .await;
                        return Ok(Flow::End);
                    }
                };
                match login::switch_to_native(&mut self.client, &scramble, &mut seq).await {
                    Ok(token) => token,
                    Err(_) => return Ok(Flow::End),
                }
            } else {
                parsed.auth_response.clone()
            };
            login::authenticate(
                &self.ctx,
                &Credentials {
                    user: &user,
                    database: database.as_deref(),
                    attributes: &attributes,
                    sni: self.sni.as_deref(),
                    scramble: &scramble,
                    token: &token,
                },
            )
        };
        // Another tenant's client connection is counted against its limit;
        // the same tenant's is kept.
        let result = result.and_then(|(tenant, username)| {
            let slot = if tenant.id == self.tenant.id {
                None
            } else {
                Some(login::admit_client(&self.ctx, &tenant, &user)?)
            };
            Ok((tenant, username, slot))
        });
        match result {
            Ok((tenant, username, slot)) => {
                self.end_lease();
                self.flush_relayed();
                self.series = self.ctx.metrics.tenant(&tenant);
                self.series.logins.count(LoginResult::Ok);
                info!(conn = self.handle.id, from = %self.tenant.id, to = %tenant.id, "COM_CHANGE_USER");
                self.handle.set_tenant(Some(tenant.id.clone()));
                self.handle.set_user(&username);
                if let Some(slot) = slot {
                    self.client_slot = slot;
                    self.live = self.ctx.tenants.of(&tenant.id);
                }
                self.table_version = self.ctx.router.load().version;
                self.state =
                    SessionState::new(database.unwrap_or_else(|| tenant.identity.database.clone()));
                self.tenant = tenant;
                self.apply_plan_vars();
                self.username = username;
                self.attributes = attributes;
                if let Some(c) = parsed.collation.and_then(|c| u8::try_from(c).ok()) {
                    self.profile = Profile::new(self.capabilities, c);
                }
                self.client.queue_packet(seq, &login::ok_payload());
                self.client.flush().await?;
                Ok(Flow::Continue)
            }
            Err(e) => {
                self.ctx.metrics.count_failed_login(&e);
                info!(conn = self.handle.id, user = %sanitize(user.as_bytes()), error = %e, "COM_CHANGE_USER refused; closing");
                if let Some(error) = e.to_server_error() {
                    self.client.send_error(seq, &error).await;
                }
                Ok(Flow::End)
            }
        }
    }

    /// `KILL [QUERY] <id>` and COM_PROCESS_KILL on silo connection ids. A
    /// client may only reach sessions of its own tenant; the running
    /// statement is stopped on the backend through a side connection.
    pub(super) async fn kill(&mut self, kill: Kill) -> Result<Flow, PacketError> {
        let (target_id, query) = match kill {
            Kill::Connection(id) => (id, false),
            Kill::Query(id) => (id, true),
            Kill::Unsupported(what) => {
                return self.reply_error(&ServerError::kill_unsupported(what)).await;
            }
        };
        let target = u32::try_from(target_id)
            .ok()
            .and_then(|id| self.ctx.registry.get(id))
            .filter(|t| t.tenant().as_ref() == Some(&self.tenant.id));
        let Some(target) = target else {
            return self
                .reply_error(&ServerError::no_such_thread(target_id))
                .await;
        };
        if target.id == self.handle.id && !query {
            return self.reply_error(&ServerError::connection_killed()).await;
        }
        if let Some(backend) = target.backend()
            && let Err(e) = self.kill_backend_query(&backend).await
        {
            warn!(conn = self.handle.id, target = target.id, error = %e, "could not stop the backend statement");
            return self.reply_error(&self.backend_error(&e)).await;
        }
        if !query {
            target.kill();
        }
        info!(conn = self.handle.id, target = target.id, query, "KILL");
        self.reply_ok().await
    }

    async fn kill_backend_query(&self, target: &BackendTarget) -> Result<(), BackendError> {
        let pool = self
            .ctx
            .pools
            .get(target.backend_id)
            .ok_or(BackendError::UnknownBackend(target.backend_id))?;
        let profile = Profile::new(CapabilityFlags::empty(), self.profile.collation);
        let mut side = BackendConn::connect(pool.backend(), &self.tenant.identity, profile).await?;
        match side
            .execute(&format!("KILL QUERY {}", target.thread_id))
            .await
        {
            // The statement already finished: nothing left to stop.
            Err(BackendError::Refused { code: 1094, .. }) => Ok(()),
            other => other,
        }
    }
}
