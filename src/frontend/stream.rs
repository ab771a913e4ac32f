//! A client's byte stream, plain TCP or TLS after an in-band upgrade, and the
//! packet-level reads and writes of the login phase.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::protocol::packet::{self, HEADER_LEN};
use crate::protocol::{ProtocolError, ServerError};

pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only during a TLS upgrade, while rustls owns the socket.
    Detached,
}

fn detached() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "stream detached for TLS upgrade",
    )
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            ClientStream::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            ClientStream::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            ClientStream::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            ClientStream::Detached => Poll::Ready(Ok(())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("client closed the connection")]
    Closed,
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// The client connection with its reused read buffer.
pub struct ClientConn {
    pub stream: ClientStream,
    pub rbuf: BytesMut,
    wbuf: BytesMut,
}

impl ClientConn {
    pub fn new(stream: ClientStream) -> Self {
        Self {
            stream,
            // Small: an idle client costs little; grows with use.
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
        }
    }

    /// Reads more bytes into the read buffer.
    ///
    /// # Cancel safety
    /// Cancel-safe: bytes read are in `rbuf`, nothing is lost.
    pub async fn fill(&mut self) -> Result<(), PacketError> {
        // Starts small (most clients are idle most of the time, each with
        // its own buffer) and grows geometrically up to 64 KiB steps for
        // clients that send more.
        if self.rbuf.capacity() - self.rbuf.len() < 256 {
            self.rbuf
                .reserve(self.rbuf.capacity().clamp(1024, 64 * 1024));
        }
        let n = match &mut self.stream {
            ClientStream::Plain(tcp) => crate::net::read_available(tcp, &mut self.rbuf).await?,
            other => other.read_buf(&mut self.rbuf).await?,
        };
        match n {
            0 => Err(PacketError::Closed),
            _ => Ok(()),
        }
    }

    /// Reads one whole logical packet of at most `max` bytes (login-phase
    /// and control packets), returning its sequence id and payload.
    pub async fn read_packet(&mut self, max: usize) -> Result<(u8, BytesMut), PacketError> {
        loop {
            if let Some(packet) = packet::take_packet(&mut self.rbuf, max)? {
                return Ok(packet);
            }
            self.fill().await?;
        }
    }

    pub fn queue_packet(&mut self, seq: u8, payload: &[u8]) {
        packet::write_packet(&mut self.wbuf, seq, payload);
    }

    /// Queues bytes that are already framed packets.
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// The write queue, for callers that frame packets themselves.
    pub fn wbuf(&mut self) -> &mut BytesMut {
        &mut self.wbuf
    }

    pub fn queue_error(&mut self, seq: u8, error: &ServerError) {
        error.encode(seq, &mut self.wbuf);
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        self.stream.flush().await
    }

    /// Sends an error and flushes, ignoring a client that is already gone.
    pub async fn send_error(&mut self, seq: u8, error: &ServerError) {
        self.queue_error(seq, error);
        let _ = self.flush().await;
    }

    /// Writes bytes straight through (the relay's path).
    pub async fn write_through(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        if matches!(self.stream, ClientStream::Tls(_)) {
            self.stream.flush().await?;
        }
        Ok(())
    }
}

/// Reads exactly one packet from a raw socket without reading past it: before
/// a TLS upgrade the ClientHello follows the SSLRequest at once and must be
/// left in the socket for rustls.
pub async fn read_packet_exact(
    stream: &mut TcpStream,
    max: usize,
) -> Result<(u8, Vec<u8>), PacketError> {
    let mut header = [0u8; HEADER_LEN];
    read_exact(stream, &mut header).await?;
    let (len, seq) = packet::header(&header).ok_or(ProtocolError::malformed("header"))?;
    if len > max {
        return Err(ProtocolError::TooLarge { len, max }.into());
    }
    let mut payload = vec![0u8; len];
    read_exact(stream, &mut payload).await?;
    Ok((seq, payload))
}

async fn read_exact(stream: &mut TcpStream, buf: &mut [u8]) -> Result<(), PacketError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(PacketError::Closed),
        Err(e) => Err(e.into()),
    }
}
