//! A byte-level MySQL client for tests that need what real drivers never
//! send: garbage, odd sequence ids, rarely used commands.
#![allow(dead_code)]

use std::net::SocketAddr;

use bytes::BytesMut;
use mysql_common::constants::CapabilityFlags;
use silo::protocol::{auth, handshake, packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::bounded;

pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
}

pub fn caps() -> CapabilityFlags {
    CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_MULTI_RESULTS
}

impl RawClient {
    /// Connects and returns the greeting's payload.
    pub async fn connect(addr: SocketAddr) -> (Self, Vec<u8>) {
        let stream = bounded("raw connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        let mut client = RawClient {
            stream,
            buf: BytesMut::new(),
        };
        let (_, greeting) = client.read_packet().await.expect("greeting");
        (client, greeting)
    }

    /// Logs in with mysql_native_password; `Err` carries the ERR payload.
    pub async fn login(addr: SocketAddr, user: &str, password: &str) -> Result<Self, Vec<u8>> {
        let (mut client, greeting) = Self::connect(addr).await;
        let greeting = handshake::parse_greeting(&greeting).expect("greeting parses");
        let token = auth::native_token(&greeting.scramble, password.as_bytes());
        let login = handshake::backend_login(caps(), 45, user.as_bytes(), &token, None, &[]);
        client.send(1, &login).await;
        let (_, reply) = client.read_packet().await.expect("login reply");
        if reply.first() == Some(&0) {
            Ok(client)
        } else {
            Err(reply)
        }
    }

    pub async fn send(&mut self, seq: u8, payload: &[u8]) {
        write_packet_to(&mut self.stream, seq, payload).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = bounded("raw write", self.stream.write_all(bytes)).await;
    }

    /// The next packet, or `None` when the server closed the connection.
    pub async fn read_packet(&mut self) -> Option<(u8, Vec<u8>)> {
        read_packet_from(&mut self.stream, &mut self.buf).await
    }

    /// Sends a command (seq 0) and returns the first response packet.
    pub async fn command(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        self.send(0, payload).await;
        self.read_packet().await.map(|(_, p)| p)
    }
}

/// Frames `payload` with `seq` and writes it (errors are the reader's to see).
pub async fn write_packet_to<S: AsyncWrite + Unpin>(stream: &mut S, seq: u8, payload: &[u8]) {
    let mut out = BytesMut::new();
    packet::write_packet(&mut out, seq, payload);
    let _ = bounded("write", stream.write_all(&out)).await;
    let _ = bounded("flush", stream.flush()).await;
}

/// The next packet from `stream` (bytes read ahead stay in `buf`), or
/// `None` when the server closed the connection.
pub async fn read_packet_from<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Option<(u8, Vec<u8>)> {
    loop {
        match packet::take_packet(buf, packet::MAX_PAYLOAD - 1) {
            Ok(Some((seq, payload))) => return Some((seq, payload.to_vec())),
            Ok(None) => {}
            Err(e) => panic!("server sent an oversized packet: {e}"),
        }
        buf.reserve(4096);
        match bounded("read", stream.read_buf(buf)).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// The error code of an ERR payload.
pub fn err_code(payload: &[u8]) -> Option<u16> {
    handshake::parse_err(payload).map(|(code, _, _)| code)
}
