//! Lingering close: a connection the server is done with stays open for
//! reading until the client closes it, so the client reads everything sent.
//!
//! When the server ends a connection (a graceful stop sends GOAWAY, lets the
//! running streams finish, then drops the connection), the client may still
//! have the tail of a stream in flight and keep sending flow-control frames
//! (WINDOW_UPDATE) as it reads. Closing the socket with such frames unread,
//! or receiving them after the close, makes the kernel answer with a reset,
//! and a reset makes the client's kernel discard what it had not read yet:
//! a slow reader would lose the stream's last batches and its status. So
//! each accepted socket is wrapped: when the transport drops it, writing is
//! shut down (the client sees the end) and a task reads and discards until
//! the client closes, up to a time limit. [`Lingering::settled`] tells the
//! server when every such socket is closed, so the process outlives them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The sockets being closed, and how long each may linger.
#[derive(Clone)]
pub struct Lingering {
    open: watch::Sender<usize>,
    limit: Duration,
}

impl Lingering {
    /// Sockets linger up to `limit` for their client to close them.
    pub fn new(limit: Duration) -> Lingering {
        Lingering { open: watch::Sender::new(0), limit }
    }

    /// Wraps an accepted socket.
    pub fn wrap(&self, io: TcpStream) -> LingeringStream {
        LingeringStream { io: Some(io), lingering: self.clone() }
    }

    /// Resolves once no socket is lingering.
    pub async fn settled(&self) {
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|n| *n == 0).await;
    }

    /// Shuts down writing, then reads and discards until the client closes
    /// (or errs, or the limit passes); the socket closes when this ends.
    async fn linger(&self, mut io: TcpStream) {
        let _ = io.shutdown().await;
        let drain = async {
            let mut sink = [0u8; 16 * 1024];
            while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
        };
        let _ = tokio::time::timeout(self.limit, drain).await;
    }
}

/// An accepted socket that lingers when dropped (see the module's doc).
pub struct LingeringStream {
    io: Option<TcpStream>,
    lingering: Lingering,
}

impl LingeringStream {
    fn io(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.io.as_mut().expect("a socket is only taken when its stream is dropped"))
    }
}

impl Drop for LingeringStream {
    fn drop(&mut self) {
        let Some(io) = self.io.take() else { return };
        // Counted at once: the server must not finish before the task runs.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let lingering = self.lingering.clone();
        lingering.open.send_modify(|n| *n += 1);
        runtime.spawn(async move {
            lingering.linger(io).await; // drops (closes) the socket
            lingering.open.send_modify(|n| *n -= 1);
        });
    }
}

impl Connected for LingeringStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.as_ref().map(Connected::connect_info).unwrap_or(TcpConnectInfo { local_addr: None, remote_addr: None })
    }
}

impl AsyncRead for LingeringStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.io().poll_read(cx, buf)
    }
}

impl AsyncWrite for LingeringStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.io().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.io().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(TcpStream::is_write_vectored)
    }
}
