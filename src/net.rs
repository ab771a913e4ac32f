//! Socket reads tuned for the relay.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, Interest};
use tokio::net::TcpStream;

/// Reads what is available into `buf`, returning the byte count (0 at end of
/// stream).
///
/// # Performance
/// When the read leaves room in the buffer, the socket was drained, so its
/// readiness is cleared right away: the next read waits for the next epoll
/// edge instead of first failing with `EAGAIN`. That saves one system call
/// per direction per query, a large share of a relayed point query's cost.
/// Data that arrives after the read raises a new edge, so nothing is missed.
///
/// # Cancel safety
/// Cancel-safe, like `read_buf`.
pub async fn read_available(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let room = buf.capacity() - buf.len();
    let n = stream.read_buf(buf).await?;
    if n > 0 && n < room {
        let _ = stream.try_io(Interest::READABLE, || {
            Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
        });
    }
    Ok(n)
}

thread_local! {
    /// Which worker runtime this thread runs (0 when silo runs on one runtime).
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as running worker runtime `id`.
pub fn set_worker(id: usize) {
    WORKER.with(|w| w.set(id));
}

/// The worker runtime of the current thread.
pub fn worker() -> usize {
    WORKER.with(std::cell::Cell::get)
}

/// Moves a socket's readiness registration to the current thread's runtime.
///
/// # Performance
/// A socket reports readiness through the runtime that registered it; used
/// from another worker, every event would cost a cross-thread wake-up. A
/// pooled backend connection leased by a session on another worker is moved
/// once (a dup, two epoll_ctl, a close) instead.
///
/// # Errors
/// The descriptor cannot be duplicated or registered.
pub fn rebind(stream: &mut TcpStream) -> io::Result<()> {
    use std::os::fd::AsFd;
    let fd = stream.as_fd().try_clone_to_owned()?;
    let std_stream = std::net::TcpStream::from(fd);
    std_stream.set_nonblocking(true)?;
    // Dropping the old handle deregisters and closes only its descriptor;
    // the socket lives on in the new one.
    *stream = TcpStream::from_std(std_stream)?;
    Ok(())
}
