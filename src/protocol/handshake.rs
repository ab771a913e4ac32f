//! Login packets in both directions: the greeting silo sends, the client's
//! SSLRequest / HandshakeResponse41 / COM_CHANGE_USER, and the packets silo
//! exchanges when it logs in to a backend. Built on `mysql_common`'s packet
//! types where they expose what is needed.
//!
//! See <https://mariadb.com/kb/en/connection/>.

use std::collections::HashMap;

use bytes::{BufMut, BytesMut};
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{HandshakePacket, HandshakeResponse};
use mysql_common::proto::{MyDeserialize, MySerialize};

use super::ProtocolError;
use super::auth::NATIVE_PLUGIN;
use super::packet::{lenenc_int, null_terminated, put_lenenc_bytes, put_lenenc_int};

/// Capabilities that change what the conversation after login looks like.
/// A client may only be relayed to a backend connection negotiated with the
/// same set (and the same collation): the relay is byte-exact. The one
/// exception, CLIENT_SESSION_TRACK, is always on towards backends (silo
/// reads the session state) and stripped from OK packets for clients
/// without it, so it does not split the pool.
pub const PROFILE_FLAGS: CapabilityFlags = CapabilityFlags::from_bits_truncate(
    CapabilityFlags::CLIENT_FOUND_ROWS.bits()
        | CapabilityFlags::CLIENT_LONG_FLAG.bits()
        | CapabilityFlags::CLIENT_NO_SCHEMA.bits()
        | CapabilityFlags::CLIENT_ODBC.bits()
        | CapabilityFlags::CLIENT_LOCAL_FILES.bits()
        | CapabilityFlags::CLIENT_IGNORE_SPACE.bits()
        | CapabilityFlags::CLIENT_INTERACTIVE.bits()
        | CapabilityFlags::CLIENT_TRANSACTIONS.bits()
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS.bits()
        | CapabilityFlags::CLIENT_MULTI_RESULTS.bits()
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS.bits()
        | CapabilityFlags::CLIENT_DEPRECATE_EOF.bits(),
);

/// What silo offers clients. Not offered: compression, MariaDB progress
/// reports and extended (MARIADB_CLIENT_*) capabilities, query attributes and
/// optional metadata, none of which the raw response scanner handles. Setting
/// CLIENT_LONG_PASSWORD (bit 0, "CLIENT_MYSQL" to MariaDB clients) tells
/// MariaDB connectors not to expect extended capabilities.
pub fn server_capabilities(tls: bool) -> CapabilityFlags {
    let mut caps = PROFILE_FLAGS
        | CapabilityFlags::CLIENT_SESSION_TRACK
        | CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;
    if tls {
        caps |= CapabilityFlags::CLIENT_SSL;
    }
    caps
}

/// The HandshakeV10 payload silo sends to a new client.
pub fn greeting(
    connection_id: u32,
    server_version: &str,
    scramble: &[u8; 20],
    capabilities: CapabilityFlags,
    collation: u8,
) -> Vec<u8> {
    let (part1, part2) = scramble.split_at(8);
    let mut scramble_1 = [0u8; 8];
    scramble_1.copy_from_slice(part1);
    // The second part is sent NUL-terminated (13 bytes), as MariaDB does.
    let mut scramble_2 = part2.to_vec();
    scramble_2.push(0);
    let packet = HandshakePacket::new(
        10,
        server_version.as_bytes(),
        connection_id,
        scramble_1,
        Some(scramble_2),
        capabilities,
        collation,
        StatusFlags::SERVER_STATUS_AUTOCOMMIT,
        Some(NATIVE_PLUGIN.as_bytes()),
    );
    let mut out = Vec::with_capacity(96);
    packet.serialize(&mut out);
    out
}

/// A parsed HandshakeResponse41, owned so it outlives the read buffer.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientLogin {
    pub capabilities: CapabilityFlags,
    pub collation: u8,
    pub user: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Option<Vec<u8>>,
    pub auth_plugin: Option<Vec<u8>>,
    pub attributes: HashMap<String, String>,
}

impl std::fmt::Debug for ClientLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The auth response is derived from the password: never printed.
        f.debug_struct("ClientLogin")
            .field("capabilities", &self.capabilities)
            .field("user", &String::from_utf8_lossy(&self.user))
            .field(
                "database",
                &self.database.as_deref().map(String::from_utf8_lossy),
            )
            .finish_non_exhaustive()
    }
}

/// The first packet a client sends after the greeting.
#[derive(Debug)]
pub enum FirstResponse {
    /// The client wants TLS; the ClientHello follows at once.
    SslRequest {
        capabilities: CapabilityFlags,
    },
    Login(ClientLogin),
}

pub const SSL_REQUEST_LEN: usize = 32;

pub fn parse_first_response(payload: &[u8]) -> Result<FirstResponse, ProtocolError> {
    let caps = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(ProtocolError::malformed("handshake response"))?;
    let caps = CapabilityFlags::from_bits_truncate(caps);
    if !caps.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
        return Err(ProtocolError::Pre41Client);
    }
    if payload.len() == SSL_REQUEST_LEN && caps.contains(CapabilityFlags::CLIENT_SSL) {
        return Ok(FirstResponse::SslRequest { capabilities: caps });
    }
    parse_login(payload).map(FirstResponse::Login)
}

pub fn parse_login(payload: &[u8]) -> Result<ClientLogin, ProtocolError> {
    let malformed = || ProtocolError::malformed("handshake response");
    let response =
        HandshakeResponse::deserialize((), &mut ParseBuf(payload)).map_err(|_| malformed())?;
    if !response
        .capabilities()
        .contains(CapabilityFlags::CLIENT_PROTOCOL_41)
    {
        return Err(ProtocolError::Pre41Client);
    }
    Ok(ClientLogin {
        capabilities: response.capabilities(),
        collation: response.collation(),
        user: response.user().to_vec(),
        auth_response: response.scramble_buf().to_vec(),
        database: response
            .db_name()
            .filter(|d| !d.is_empty())
            .map(<[u8]>::to_vec),
        auth_plugin: response.auth_plugin().map(|p| p.as_bytes().to_vec()),
        attributes: response.connect_attributes().unwrap_or_default(),
    })
}

/// A parsed COM_CHANGE_USER (payload after the command byte).
/// See <https://mariadb.com/kb/en/com_change_user/>.
#[derive(Clone, PartialEq, Eq)]
pub struct ChangeUser {
    pub user: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Option<Vec<u8>>,
    pub collation: Option<u16>,
    pub auth_plugin: Option<Vec<u8>>,
    pub attributes: HashMap<String, String>,
}

impl std::fmt::Debug for ChangeUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeUser")
            .field("user", &String::from_utf8_lossy(&self.user))
            .finish_non_exhaustive()
    }
}

pub fn parse_change_user(
    body: &[u8],
    capabilities: CapabilityFlags,
) -> Result<ChangeUser, ProtocolError> {
    let malformed = || ProtocolError::malformed("COM_CHANGE_USER");
    let (user, rest) = null_terminated(body).ok_or_else(malformed)?;
    let (auth, rest) = if capabilities.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
        let (&len, rest) = rest.split_first().ok_or_else(malformed)?;
        let len = usize::from(len);
        (
            rest.get(..len).ok_or_else(malformed)?,
            rest.get(len..).ok_or_else(malformed)?,
        )
    } else {
        null_terminated(rest).ok_or_else(malformed)?
    };
    let (database, mut rest) = match null_terminated(rest) {
        Some(split) => split,
        None if rest.is_empty() => (&[][..], &[][..]),
        None => return Err(malformed()),
    };
    let mut collation = None;
    let mut auth_plugin = None;
    let mut attributes = HashMap::new();
    if let Some(cs) = rest.get(..2).and_then(|b| <[u8; 2]>::try_from(b).ok()) {
        collation = Some(u16::from_le_bytes(cs));
        rest = rest.get(2..).unwrap_or_default();
        if capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) && !rest.is_empty() {
            let (plugin, after) = match null_terminated(rest) {
                Some(split) => split,
                None => (rest, &[][..]),
            };
            auth_plugin = Some(plugin.to_vec());
            rest = after;
        }
        if capabilities.contains(CapabilityFlags::CLIENT_CONNECT_ATTRS) && !rest.is_empty() {
            attributes = parse_attributes(rest).ok_or_else(malformed)?;
        }
    }
    Ok(ChangeUser {
        user: user.to_vec(),
        auth_response: auth.to_vec(),
        database: (!database.is_empty()).then(|| database.to_vec()),
        collation,
        auth_plugin,
        attributes,
    })
}

fn parse_attributes(buf: &[u8]) -> Option<HashMap<String, String>> {
    let (total, used) = lenenc_int(buf)?;
    let mut data = buf.get(used..used.checked_add(usize::try_from(total).ok()?)?)?;
    let mut attrs = HashMap::new();
    while !data.is_empty() {
        let (key, rest) = lenenc_str(data)?;
        let (value, rest) = lenenc_str(rest)?;
        attrs.insert(
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        );
        data = rest;
    }
    Some(attrs)
}

fn lenenc_str(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, used) = lenenc_int(buf)?;
    let end = used.checked_add(usize::try_from(len).ok()?)?;
    Some((buf.get(used..end)?, buf.get(end..)?))
}

/// What silo needs from a backend's greeting.
#[derive(Debug, Clone)]
pub struct ServerGreeting {
    pub connection_id: u32,
    pub version: String,
    pub capabilities: CapabilityFlags,
    pub scramble: Vec<u8>,
}

pub fn parse_greeting(payload: &[u8]) -> Result<ServerGreeting, ProtocolError> {
    // mysql_common 0.38 computes `auth_plugin_data_len as i8 - 8`, which
    // overflows (a panic with overflow checks) for lengths of 0x80-0x87.
    // Real servers send 21; refuse anything that is not a sane length.
    let (_, after_version) = payload
        .get(1..)
        .and_then(null_terminated)
        .ok_or(ProtocolError::malformed("server greeting"))?;
    if after_version.get(20).is_some_and(|&len| len > 0x7F) {
        return Err(ProtocolError::malformed("server greeting"));
    }
    let packet = HandshakePacket::deserialize((), &mut ParseBuf(payload))
        .map_err(|_| ProtocolError::malformed("server greeting"))?;
    let mut scramble = packet.scramble_1_ref().to_vec();
    if let Some(rest) = packet.scramble_2_ref() {
        // The second part is NUL-terminated on the wire.
        scramble.extend(rest.iter().take(12));
    }
    Ok(ServerGreeting {
        connection_id: packet.connection_id(),
        version: String::from_utf8_lossy(packet.server_version_ref()).into_owned(),
        capabilities: packet.capabilities(),
        scramble,
    })
}

/// The capabilities silo asks of a backend for a client profile: the
/// profile's flags plus what silo's own login needs.
pub fn backend_capabilities(profile: CapabilityFlags, with_db: bool) -> CapabilityFlags {
    let mut caps = (profile & PROFILE_FLAGS)
        | CapabilityFlags::CLIENT_SESSION_TRACK
        | CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_CONNECT_ATTRS;
    if with_db {
        caps |= CapabilityFlags::CLIENT_CONNECT_WITH_DB;
    }
    caps
}

/// HandshakeResponse41 for a backend login with mysql_native_password.
pub fn backend_login(
    capabilities: CapabilityFlags,
    collation: u8,
    user: &[u8],
    token: &[u8],
    database: Option<&[u8]>,
    attributes: &[(&str, &str)],
) -> BytesMut {
    let mut out = BytesMut::with_capacity(128);
    out.put_u32_le(capabilities.bits());
    out.put_u32_le(super::packet::MAX_PAYLOAD as u32);
    out.put_u8(collation);
    out.put_slice(&[0u8; 23]);
    out.put_slice(user);
    out.put_u8(0);
    put_lenenc_bytes(&mut out, token);
    if let Some(db) = database {
        out.put_slice(db);
        out.put_u8(0);
    }
    out.put_slice(NATIVE_PLUGIN.as_bytes());
    out.put_u8(0);
    put_attributes(&mut out, attributes);
    out
}

fn put_attributes(out: &mut BytesMut, attributes: &[(&str, &str)]) {
    let mut attrs = BytesMut::new();
    for (k, v) in attributes {
        put_lenenc_bytes(&mut attrs, k.as_bytes());
        put_lenenc_bytes(&mut attrs, v.as_bytes());
    }
    put_lenenc_int(out, attrs.len() as u64);
    out.put_slice(&attrs);
}

/// COM_CHANGE_USER sent by silo to re-authenticate a pooled backend connection.
pub fn change_user(
    user: &[u8],
    token: &[u8],
    database: Option<&[u8]>,
    collation: u8,
    attributes: &[(&str, &str)],
) -> BytesMut {
    let mut out = BytesMut::with_capacity(128);
    out.put_u8(super::command::COM_CHANGE_USER);
    out.put_slice(user);
    out.put_u8(0);
    out.put_u8(token.len() as u8);
    out.put_slice(token);
    out.put_slice(database.unwrap_or_default());
    out.put_u8(0);
    out.put_u16_le(u16::from(collation));
    out.put_slice(NATIVE_PLUGIN.as_bytes());
    out.put_u8(0);
    put_attributes(&mut out, attributes);
    out
}

/// An AuthSwitchRequest (0xFE, plugin name, plugin data).
pub fn parse_auth_switch(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = payload.strip_prefix(&[0xFE])?;
    let (plugin, data) = null_terminated(rest)?;
    // The nonce is sent NUL-terminated.
    let data = data.strip_suffix(&[0]).unwrap_or(data);
    Some((plugin, data))
}

/// AuthSwitchRequest payload asking the client for mysql_native_password.
pub fn auth_switch_request(scramble: &[u8; 20]) -> BytesMut {
    auth_switch_request_to(NATIVE_PLUGIN, scramble)
}

/// AuthSwitchRequest payload asking the client for `plugin` with `scramble`.
pub fn auth_switch_request_to(plugin: &str, scramble: &[u8; 20]) -> BytesMut {
    let mut out = BytesMut::with_capacity(48);
    out.put_u8(0xFE);
    out.put_slice(plugin.as_bytes());
    out.put_u8(0);
    out.put_slice(scramble);
    out.put_u8(0);
    out
}

/// The fields of an ERR packet from a backend: code, SQLSTATE, message.
pub fn parse_err(payload: &[u8]) -> Option<(u16, [u8; 5], String)> {
    let rest = payload.strip_prefix(&[0xFF])?;
    let code = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]);
    let mut msg = rest.get(2..)?;
    let mut sqlstate = *b"HY000";
    if let Some(after) = msg.strip_prefix(b"#") {
        if let Some(state) = after.get(..5) {
            sqlstate.copy_from_slice(state);
        }
        msg = after.get(5..).unwrap_or_default();
    }
    Some((code, sqlstate, String::from_utf8_lossy(msg).into_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use mysql_common::packets::AuthPlugin;

    fn client_caps() -> CapabilityFlags {
        CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH
            | CapabilityFlags::CLIENT_DEPRECATE_EOF
    }

    #[test]
    fn greeting_parses_back() {
        let scramble = *b"abcdefghijklmnopqrst";
        let payload = greeting(
            42,
            "5.5.5-10.11.6-MariaDB-silo",
            &scramble,
            server_capabilities(true),
            45,
        );
        let g = parse_greeting(&payload).unwrap();
        assert_eq!(g.connection_id, 42);
        assert_eq!(g.version, "5.5.5-10.11.6-MariaDB-silo");
        assert_eq!(g.scramble, scramble);
        assert!(g.capabilities.contains(CapabilityFlags::CLIENT_SSL));
        assert!(
            g.capabilities
                .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF)
        );
        assert!(!g.capabilities.contains(CapabilityFlags::CLIENT_COMPRESS));
    }

    #[test]
    fn login_parses_user_db_plugin_and_attributes() {
        let mut attrs = HashMap::new();
        attrs.insert("tenant".to_string(), "acme".to_string());
        let response = HandshakeResponse::new(
            Some(&[1u8; 20][..]),
            (10, 11, 6),
            Some(&b"app"[..]),
            Some(&b"tenant_acme"[..]),
            Some(AuthPlugin::MysqlNativePassword),
            client_caps(),
            Some(attrs),
            1 << 24,
        );
        let mut payload = Vec::new();
        response.serialize(&mut payload);
        let FirstResponse::Login(login) = parse_first_response(&payload).unwrap() else {
            panic!("expected a login");
        };
        assert_eq!(login.user, b"app");
        assert_eq!(login.database.as_deref(), Some(&b"tenant_acme"[..]));
        assert_eq!(login.auth_response, [1u8; 20]);
        assert_eq!(login.auth_plugin.as_deref(), Some(NATIVE_PLUGIN.as_bytes()));
        assert_eq!(
            login.attributes.get("tenant").map(String::as_str),
            Some("acme")
        );
        assert!(!format!("{login:?}").contains("\u{1}"));
    }

    #[test]
    fn ssl_request_is_recognised_by_its_size() {
        let mut payload = Vec::new();
        mysql_common::packets::SslRequest::new(
            client_caps() | CapabilityFlags::CLIENT_SSL,
            1 << 24,
            45,
        )
        .serialize(&mut payload);
        assert_eq!(payload.len(), SSL_REQUEST_LEN);
        assert!(matches!(
            parse_first_response(&payload).unwrap(),
            FirstResponse::SslRequest { .. }
        ));
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..80 {
            for fill in [0u8, 0xFF, 0x0A, 0x80] {
                let mut payload = vec![fill; len];
                if len >= 4 {
                    payload[1] = 0x02; // CLIENT_PROTOCOL_41
                }
                let _ = parse_first_response(&payload);
                let _ = parse_change_user(
                    &payload,
                    client_caps() | CapabilityFlags::CLIENT_CONNECT_ATTRS,
                );
                let _ = parse_greeting(&payload);
                let _ = parse_err(&payload);
                let _ = parse_auth_switch(&payload);
            }
        }
        assert_eq!(
            parse_first_response(&[0, 0, 0, 0, 1]).unwrap_err(),
            ProtocolError::Pre41Client
        );
    }

    #[test]
    fn greeting_with_a_hostile_scramble_length_is_refused() {
        // Found by fuzzing: an auth-plugin-data length of 0x81 overflowed
        // inside mysql_common.
        let crash = [
            0x00, 0x05, 0x41, 0xb0, 0x00, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81,
            0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81,
            0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x05,
        ];
        assert!(parse_greeting(&crash).is_err());
        let mut version_then_len = vec![10u8];
        version_then_len.extend_from_slice(b"5.5.5-x\0");
        version_then_len.extend_from_slice(&[0x85; 40]);
        assert!(parse_greeting(&version_then_len).is_err());
    }

    #[test]
    fn change_user_round_trip() {
        let packet = change_user(b"u", &[7u8; 20], Some(b"db"), 45, &[("tenant", "acme")]);
        let caps = client_caps() | CapabilityFlags::CLIENT_CONNECT_ATTRS;
        let parsed = parse_change_user(&packet[1..], caps).unwrap();
        assert_eq!(parsed.user, b"u");
        assert_eq!(parsed.auth_response, [7u8; 20]);
        assert_eq!(parsed.database.as_deref(), Some(&b"db"[..]));
        assert_eq!(parsed.collation, Some(45));
        assert_eq!(
            parsed.auth_plugin.as_deref(),
            Some(NATIVE_PLUGIN.as_bytes())
        );
        assert_eq!(
            parsed.attributes.get("tenant").map(String::as_str),
            Some("acme")
        );
    }

    #[test]
    fn auth_switch_and_err_parse() {
        let req = auth_switch_request(b"abcdefghijklmnopqrst");
        let (plugin, data) = parse_auth_switch(&req).unwrap();
        assert_eq!(plugin, NATIVE_PLUGIN.as_bytes());
        assert_eq!(data, b"abcdefghijklmnopqrst");
        let mut err = BytesMut::new();
        crate::protocol::ServerError::access_denied("x").encode(0, &mut err);
        let (code, state, msg) = parse_err(&err[4..]).unwrap();
        assert_eq!((code, &state), (1045, b"28000"));
        assert!(msg.starts_with("Access denied"));
    }
}
