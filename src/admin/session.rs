//! One operator's connection: the login (mysql_native_password against the
//! `[admin]` account; other plugins are switched to it) and the command
//! loop. Bad commands get an ERR and the session goes on; a malformed packet
//! ends it with a log line.

use std::net::SocketAddr;
use std::sync::Arc;

use mysql_common::constants::CapabilityFlags;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info};

use super::commands::{self, Reply};
use super::parse;
use super::resultset::write_ok;
use super::{AdminAuth, COLLATION, MAX_COMMAND, Operator};
use crate::frontend::Context;
use crate::frontend::error::{LoginError, LoginRefusal};
use crate::frontend::listener::LOGIN_TIMEOUT;
use crate::frontend::login::{MAX_LOGIN_PACKET, native_token, ok_payload};
use crate::frontend::stream::{ClientConn, ClientStream, PacketError};
use crate::protocol::auth;
use crate::protocol::command::{
    COM_INIT_DB, COM_PING, COM_QUERY, COM_QUIT, COM_RESET_CONNECTION, COM_SET_OPTION,
};
use crate::protocol::error_code::sanitize;
use crate::protocol::handshake::{self, FirstResponse};
use crate::protocol::{ProtocolError, ServerError};

/// What the admin port offers. No TLS, compression or session tracking, and
/// no multi-statements: one command per query.
fn capabilities() -> CapabilityFlags {
    CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
}

/// A logged-in operator.
struct Admitted {
    operator: Operator,
    deprecate_eof: bool,
}

pub(super) async fn run(
    ctx: Arc<Context>,
    auth: Arc<AdminAuth>,
    tcp: TcpStream,
    peer: SocketAddr,
    id: u32,
    mut stop: watch::Receiver<()>,
) {
    let _ = tcp.set_nodelay(true);
    let local_port = tcp.local_addr().map_or(0, |a| a.port());
    let mut client = ClientConn::new(ClientStream::Plain(tcp));
    let mut seq = 1u8;
    let login = tokio::select! {
        _ = stop.changed() => return,
        login = tokio::time::timeout(LOGIN_TIMEOUT, login(&ctx, &auth, &mut client, peer, local_port, id, &mut seq)) => {
            login.unwrap_or(Err(LoginError::Timeout))
        }
    };
    let mut admitted = match login {
        Ok(admitted) => admitted,
        Err(e) => {
            // A refusal was logged with its user by `login`.
            if !matches!(e, LoginError::Refused { .. }) {
                info!(admin_conn = id, peer = %peer, error = %e, "admin login failed");
            }
            if let Some(error) = e.to_server_error() {
                client.send_error(seq, &error).await;
            }
            return;
        }
    };
    info!(admin_conn = id, user = %admitted.operator.user, peer = %peer, "admin login");
    loop {
        let read = tokio::select! {
            biased;
            _ = stop.changed() => break,
            read = client.read_packet(MAX_COMMAND) => read,
        };
        let outcome = match read {
            Ok((seq, payload)) => command(&ctx, &mut client, &mut admitted, seq, &payload).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => break,
            Err(PacketError::Protocol(e)) => {
                info!(admin_conn = id, peer = %peer, error = %e, "admin port: bad packet; closing");
                let error = ServerError::for_bad_packet(&e);
                client.send_error(1, &error).await;
                break;
            }
            Err(e) => {
                debug!(admin_conn = id, error = %e, "admin connection ended");
                break;
            }
        }
    }
    debug!(admin_conn = id, "admin session ended");
}

/// Greeting, HandshakeResponse, optional switch to mysql_native_password,
/// password check, OK.
async fn login(
    ctx: &Context,
    auth: &AdminAuth,
    client: &mut ClientConn,
    peer: SocketAddr,
    local_port: u16,
    id: u32,
    seq: &mut u8,
) -> Result<Admitted, LoginError> {
    let scramble = auth::new_scramble().map_err(|_| LoginError::Random)?;
    let offered = capabilities();
    let greeting = handshake::greeting(id, &ctx.server_version, &scramble, offered, COLLATION);
    client.queue_packet(0, &greeting);
    client.flush().await.map_err(PacketError::from)?;
    let (got, payload) = client.read_packet(MAX_LOGIN_PACKET).await?;
    *seq = got.wrapping_add(1);
    let login = match handshake::parse_first_response(&payload).map_err(PacketError::from)? {
        FirstResponse::Login(login) => login,
        FirstResponse::SslRequest { .. } => {
            return Err(LoginError::refused(
                LoginRefusal::BadHandshake,
                ServerError::bad_handshake(),
                "SSLRequest but the admin port has no TLS",
            ));
        }
    };
    let capabilities = login.capabilities & offered;
    let token = native_token(
        client,
        login.auth_plugin.as_deref(),
        capabilities,
        &login.auth_response,
        &scramble,
        seq,
    )
    .await?;
    // Both checked every time, so a wrong user takes as long as a wrong
    // password; the password check is constant-time.
    let user_matches = login.user == auth.user.as_bytes();
    let password_matches = auth::verify_native(Some(&auth.hash), &scramble, &token);
    let shown_user = sanitize(&login.user);
    if !(user_matches && password_matches) {
        info!(user = %shown_user, peer = %peer, "admin login refused: wrong user or password");
        return Err(LoginError::refused(
            LoginRefusal::BadPassword,
            ServerError::access_denied(&shown_user),
            "wrong admin user or password",
        ));
    }
    client.queue_packet(*seq, &ok_payload());
    client.flush().await.map_err(PacketError::from)?;
    Ok(Admitted {
        operator: Operator {
            user: auth.user.clone(),
            peer,
            local_port,
            connection_id: id,
            server_version: ctx.server_version.clone(),
            database: login
                .database
                .map(|d| String::from_utf8_lossy(&d).into_owned()),
        },
        deprecate_eof: capabilities.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF),
    })
}

/// Answers one command packet; `Ok(false)` ends the session.
async fn command(
    ctx: &Arc<Context>,
    client: &mut ClientConn,
    admitted: &mut Admitted,
    seq: u8,
    payload: &[u8],
) -> Result<bool, PacketError> {
    if seq != 0 {
        return Err(ProtocolError::Sequence {
            expected: 0,
            got: seq,
        }
        .into());
    }
    let Some((&cmd, body)) = payload.split_first() else {
        return Err(ProtocolError::EmptyCommand.into());
    };
    let reply = match cmd {
        COM_QUIT => return Ok(false),
        COM_PING | COM_RESET_CONNECTION | COM_SET_OPTION => Reply::ok(),
        COM_INIT_DB => {
            admitted.operator.database = Some(String::from_utf8_lossy(body).into_owned());
            Reply::ok()
        }
        COM_QUERY => query(ctx, &admitted.operator, body).await,
        other => Reply::Error(ServerError::new(
            1047,
            b"08S01",
            format!(
                "command 0x{other:02x} is not supported on the admin port: send text queries; accepted: {}",
                parse::ACCEPTED
            ),
        )),
    };
    let out = client.wbuf();
    match &reply {
        Reply::Rows(rows) => {
            rows.write(out, admitted.deprecate_eof);
        }
        Reply::Ok { affected, info } => write_ok(out, *affected, info),
        Reply::Error(error) => error.encode(1, out),
    }
    client.flush().await?;
    Ok(true)
}

async fn query(ctx: &Arc<Context>, operator: &Operator, body: &[u8]) -> Reply {
    let Ok(text) = std::str::from_utf8(body) else {
        return Reply::Error(commands::syntax_error(&parse::ParseError(format!(
            "commands must be UTF-8 text; accepted: {}",
            parse::ACCEPTED
        ))));
    };
    debug!(admin_conn = operator.connection_id, command = %sanitize(body), "admin command");
    match parse::parse(text) {
        Ok(statement) => commands::execute(ctx, operator, statement).await,
        Err(e) => Reply::Error(commands::syntax_error(&e)),
    }
}
