//! A byte-level caching_sha2_password client, as MySQL 8+ connectors speak
//! it: names the plugin in its HandshakeResponse, then follows the server
//! through the fast path or full authentication (clear text over TLS, RSA
//! over plain TCP). Client-side crypto is mysql_common's, independent of
//! silo's server side.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use mysql_common::auth::plugins::caching_sha2_password::scramble_sha256;
use mysql_common::constants::CapabilityFlags;
use mysql_common::packets::{AuthPlugin, HandshakeResponse, SslRequest};
use mysql_common::proto::MySerialize;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use silo::protocol::handshake;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use super::bounded;

pub const PLUGIN: &str = "caching_sha2_password";

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How the client behaves.
#[derive(Default, Clone)]
pub struct Sha2Opts {
    /// Upgrade to TLS, trusting this self-signed certificate.
    pub tls_cert: Option<std::path::PathBuf>,
    /// Send an empty first response, as libmysqlclient does when the
    /// greeting named another plugin.
    pub empty_first: bool,
    /// On plain TCP, send the RSA-encrypted password with this key instead
    /// of asking the server for its key.
    pub pinned_key: Option<String>,
}

/// What the server did during the login.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Trace {
    /// AuthSwitchRequests received (plugin names).
    pub switches: Vec<String>,
    /// AuthMoreData status bytes received: 3 fast_auth_success, 4 full auth.
    pub statuses: Vec<u8>,
    /// The server's public key, when it was asked for.
    pub public_key: Option<String>,
}

pub struct Sha2Client {
    stream: Box<dyn Stream>,
    buf: BytesMut,
    /// The greeting's nonce, which a COM_CHANGE_USER's scramble is over.
    nonce: Vec<u8>,
    tls: bool,
    /// What the server did during the login, or the last change of user.
    pub trace: Trace,
}

/// The ERR payload of a refused login, with the trace up to it.
pub struct Refused {
    pub err: Vec<u8>,
    pub trace: Trace,
}

impl Refused {
    pub fn code(&self) -> Option<u16> {
        handshake::parse_err(&self.err).map(|(code, _, _)| code)
    }

    pub fn message(&self) -> String {
        handshake::parse_err(&self.err)
            .map(|(_, _, m)| m)
            .unwrap_or_default()
    }
}

fn caps() -> CapabilityFlags {
    CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_LONG_PASSWORD
}

fn tls_connector(cert: &Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cert).expect("certificate PEM"))
        .expect("self-signed certificate as a root");
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// `password || NUL`, XORed with the nonce repeated, RSA-OAEP encrypted.
fn rsa_password(password: &str, nonce: &[u8], pem: &str) -> Vec<u8> {
    let mut pass = password.as_bytes().to_vec();
    pass.push(0);
    for (i, b) in pass.iter_mut().enumerate() {
        *b ^= nonce[i % nonce.len()];
    }
    mysql_common::crypto::encrypt(&pass, pem.as_bytes()).expect("RSA encryption")
}

fn scramble(nonce: &[u8], password: &str) -> Vec<u8> {
    let nonce: &[u8; 20] = nonce.try_into().expect("20-byte nonce");
    scramble_sha256(nonce, password.as_bytes())
        .map(|s| s.to_vec())
        .unwrap_or_default()
}

impl Sha2Client {
    /// Connects and reads the greeting.
    async fn connect(addr: SocketAddr, tls: bool) -> (Self, handshake::ServerGreeting) {
        let tcp = bounded("connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        let mut client = Sha2Client {
            stream: Box::new(tcp),
            buf: BytesMut::new(),
            nonce: Vec::new(),
            tls,
            trace: Trace::default(),
        };
        let (_, greeting) = client.read_packet().await.expect("greeting");
        let greeting = handshake::parse_greeting(&greeting).expect("greeting parses");
        (client, greeting)
    }

    /// Logs in as `user`; `Err` carries the server's ERR.
    pub async fn login(
        addr: SocketAddr,
        user: &str,
        password: &str,
        opts: &Sha2Opts,
    ) -> Result<Self, Refused> {
        let (mut client, greeting) = Self::connect(addr, opts.tls_cert.is_some()).await;
        client.nonce = greeting.scramble.clone();
        let mut seq = 1u8;
        let mut caps = caps();
        if let Some(cert) = &opts.tls_cert {
            caps |= CapabilityFlags::CLIENT_SSL;
            let mut request = Vec::new();
            SslRequest::new(caps, 1 << 24, 45).serialize(&mut request);
            client.send(seq, &request).await;
            seq += 1;
            let plain = std::mem::replace(&mut client.stream, Box::new(tokio::io::empty()));
            let name = ServerName::try_from("localhost").expect("server name");
            let tls = bounded("TLS handshake", tls_connector(cert).connect(name, plain))
                .await
                .expect("TLS handshake");
            client.stream = Box::new(tls);
        }
        let first = client.first_response(password, opts);
        let mut response = Vec::new();
        HandshakeResponse::new(
            Some(&first[..]),
            (8, 4, 0),
            Some(user.as_bytes()),
            None::<&[u8]>,
            Some(AuthPlugin::CachingSha2Password),
            caps,
            None,
            1 << 24,
        )
        .serialize(&mut response);
        client.send(seq, &response).await;
        match client.follow(password, opts).await {
            Ok(()) => Ok(client),
            Err(err) => Err(Refused {
                err,
                trace: client.trace,
            }),
        }
    }

    /// Sends COM_CHANGE_USER naming caching_sha2_password, with a scramble
    /// over the greeting's nonce (as mysql_async or Connector/Python do) or,
    /// with `empty_first`, nothing (as libmysqlclient does), then follows
    /// the server. `Err` carries its ERR; the trace is this change's.
    pub async fn change_user(
        &mut self,
        user: &str,
        password: &str,
        opts: &Sha2Opts,
    ) -> Result<(), Refused> {
        self.trace = Trace::default();
        let first = self.first_response(password, opts);
        let mut command = vec![0x11];
        command.extend_from_slice(user.as_bytes());
        command.push(0);
        command.push(u8::try_from(first.len()).expect("short response"));
        command.extend_from_slice(&first);
        command.push(0); // no database: the tenant's
        command.extend_from_slice(&45u16.to_le_bytes());
        command.extend_from_slice(PLUGIN.as_bytes());
        command.push(0);
        self.send(0, &command).await;
        self.follow(password, opts).await.map_err(|err| Refused {
            err,
            trace: self.trace.clone(),
        })
    }

    fn first_response(&self, password: &str, opts: &Sha2Opts) -> Vec<u8> {
        if opts.empty_first {
            Vec::new()
        } else {
            scramble(&self.nonce, password)
        }
    }

    /// Follows the server through the exchange to its OK (`Ok`) or ERR.
    async fn follow(&mut self, password: &str, opts: &Sha2Opts) -> Result<(), Vec<u8>> {
        let mut nonce = self.nonce.clone();
        loop {
            let (got, reply) = self.read_packet().await.expect("login reply");
            let mut seq = got.wrapping_add(1);
            match reply.first() {
                Some(0x00) => return Ok(()),
                Some(0xFF) => return Err(reply),
                Some(0xFE) => {
                    let (plugin, data) = handshake::parse_auth_switch(&reply).expect("switch");
                    self.trace
                        .switches
                        .push(String::from_utf8_lossy(plugin).into_owned());
                    assert_eq!(plugin, PLUGIN.as_bytes(), "switched to another plugin");
                    nonce = data.to_vec();
                    let answer = scramble(&nonce, password);
                    self.send(seq, &answer).await;
                }
                Some(0x01) if reply.len() == 2 => {
                    self.trace.statuses.push(reply[1]);
                    match reply[1] {
                        0x03 => {}
                        0x04 if self.tls => {
                            let mut clear = password.as_bytes().to_vec();
                            clear.push(0);
                            self.send(seq, &clear).await;
                        }
                        0x04 => {
                            let pem = match &opts.pinned_key {
                                Some(pem) => pem.clone(),
                                None => {
                                    self.send(seq, &[0x02]).await;
                                    let (got, key) = self.read_packet().await.expect("public key");
                                    if key.first() == Some(&0xFF) {
                                        return Err(key);
                                    }
                                    assert_eq!(key.first(), Some(&0x01), "public key packet");
                                    seq = got.wrapping_add(1);
                                    let pem = String::from_utf8(key[1..].to_vec()).expect("PEM");
                                    self.trace.public_key = Some(pem.clone());
                                    pem
                                }
                            };
                            let encrypted = rsa_password(password, &nonce, &pem);
                            self.send(seq, &encrypted).await;
                        }
                        other => panic!("unexpected AuthMoreData status {other}"),
                    }
                }
                _ => panic!("unexpected login packet {reply:?}"),
            }
        }
    }

    /// Connects, sends the HandshakeResponse naming caching_sha2_password
    /// with `first`, and returns the client positioned after it (plain TCP),
    /// for tests that send what no connector would.
    pub async fn start(addr: SocketAddr, user: &str, first: &[u8]) -> (Self, Vec<u8>) {
        let (mut client, greeting) = Self::connect(addr, false).await;
        let nonce = greeting.scramble;
        client.nonce = nonce.clone();
        let mut response = Vec::new();
        HandshakeResponse::new(
            Some(first),
            (8, 4, 0),
            Some(user.as_bytes()),
            None::<&[u8]>,
            Some(AuthPlugin::CachingSha2Password),
            caps(),
            None,
            1 << 24,
        )
        .serialize(&mut response);
        client.send(1, &response).await;
        (client, nonce)
    }

    /// The fast-path scramble a client computes, for [`Self::start`].
    pub fn scramble(nonce: &[u8], password: &str) -> Vec<u8> {
        scramble(nonce, password)
    }

    pub async fn send(&mut self, seq: u8, payload: &[u8]) {
        super::raw::write_packet_to(&mut self.stream, seq, payload).await;
    }

    /// The next packet, or `None` when the server closed the connection.
    pub async fn read_packet(&mut self) -> Option<(u8, Vec<u8>)> {
        super::raw::read_packet_from(&mut self.stream, &mut self.buf).await
    }

    /// Runs a query that returns one row of one column and returns it as
    /// text (text protocol, EOF-terminated metadata and rows).
    pub async fn query_one(&mut self, sql: &str) -> String {
        let mut command = vec![0x03];
        command.extend_from_slice(sql.as_bytes());
        self.send(0, &command).await;
        let (_, count) = self.read_packet().await.expect("column count");
        assert_eq!(count, [1], "one column expected, got {count:?}");
        let _column = self.read_packet().await.expect("column definition");
        let (_, eof) = self.read_packet().await.expect("EOF after columns");
        assert_eq!(eof.first(), Some(&0xFE));
        let (_, row) = self.read_packet().await.expect("row");
        let len = usize::from(row[0]);
        let value = String::from_utf8(row[1..1 + len].to_vec()).expect("text value");
        let (_, eof) = self.read_packet().await.expect("EOF after rows");
        assert_eq!(eof.first(), Some(&0xFE));
        value
    }
}
