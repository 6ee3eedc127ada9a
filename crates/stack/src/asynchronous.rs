//! The async face of the socket API (feature `tokio`): `accept().await`,
//! streams implementing tokio's `AsyncRead`/`AsyncWrite`, and UDP sockets
//! with `send_to().await`/`recv_from().await`, driven by the same stack
//! thread as the blocking API. A task that would block leaves its
//! waker; the stack thread wakes every waiting task after each round.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::blocking::{Inner, Runtime, Shared, StackId};
use crate::stack::SocketHandle;

/// Tries `op`; on WouldBlock parks the task until the stack thread makes progress.
fn poll_op<T>(
    inner: &Inner,
    stack: StackId,
    cx: &mut Context<'_>,
    op: impl FnOnce(&mut Shared) -> io::Result<T>,
) -> Poll<io::Result<T>> {
    let mut g = inner.lock();
    match op(&mut g) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            if let Some(gone) = g.failure(stack) {
                return Poll::Ready(Err(gone));
            }
            // No wake of the stack thread here: a try that would block
            // changed nothing, and waking it made the task and the thread
            // ping-pong (its round wakes the task, the task's next try woke
            // it) for as long as the task waited. Its own rounds (packets,
            // timers, other calls, its 100 ms tick) wake the task.
            // Once per task: one re-polled by something else (a select!)
            // would otherwise add a copy each time until the next round.
            if !g.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                g.wakers.push(cx.waker().clone());
            }
            Poll::Pending
        }
        other => {
            drop(g);
            inner.wake();
            Poll::Ready(other)
        }
    }
}

pub struct AsyncTcpListener {
    inner: Arc<Inner>,
    stack: StackId,
    handle: SocketHandle,
}

impl AsyncTcpListener {
    pub fn bind(
        rt: &Runtime,
        stack: StackId,
        addr: SocketAddr,
        backlog: usize,
    ) -> io::Result<Self> {
        let handle = rt.with_stack(stack, |s| s.tcp_listen(addr, backlog, Instant::now()))?;
        Ok(AsyncTcpListener {
            inner: rt.inner.clone(),
            stack,
            handle,
        })
    }

    pub async fn accept(&self) -> io::Result<(AsyncTcpStream, SocketAddr)> {
        let (h, from) = poll_fn(|cx| {
            poll_op(&self.inner, self.stack, cx, |g| {
                match g.stacks[self.stack.0].tcp_accept(self.handle)? {
                    Some(x) => Ok(x),
                    None => Err(io::Error::from(io::ErrorKind::WouldBlock)),
                }
            })
        })
        .await?;
        Ok((
            AsyncTcpStream {
                inner: self.inner.clone(),
                stack: self.stack,
                handle: h,
            },
            from,
        ))
    }
}

impl Drop for AsyncTcpListener {
    fn drop(&mut self) {
        self.inner.lock().stacks[self.stack.0].close(self.handle, Instant::now());
        self.inner.wake();
    }
}

pub struct AsyncTcpStream {
    inner: Arc<Inner>,
    stack: StackId,
    handle: SocketHandle,
}

impl AsyncTcpStream {
    pub async fn connect(rt: &Runtime, stack: StackId, addr: SocketAddr) -> io::Result<Self> {
        let handle = rt.with_stack(stack, |s| s.tcp_connect(addr, None, Instant::now()))?;
        let stream = AsyncTcpStream {
            inner: rt.inner.clone(),
            stack,
            handle,
        };
        poll_fn(|cx| {
            poll_op(&stream.inner, stack, cx, |g| {
                g.stacks[stack.0].tcp_connect_result(handle)
            })
        })
        .await?;
        Ok(stream)
    }
}

impl AsyncRead for AsyncTcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let space = buf.initialize_unfilled();
        match poll_op(&this.inner, this.stack, cx, |g| {
            g.stacks[this.stack.0].tcp_recv(this.handle, space)
        }) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for AsyncTcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        poll_op(&this.inner, this.stack, cx, |g| {
            match g.failure(this.stack) {
                Some(gone) => Err(gone),
                None => g.stacks[this.stack.0].tcp_send(this.handle, data),
            }
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Shuts down the write side: FIN after the buffered bytes.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r =
            this.inner.lock().stacks[this.stack.0].tcp_shutdown_write(this.handle, Instant::now());
        this.inner.wake();
        Poll::Ready(r)
    }
}

impl Drop for AsyncTcpStream {
    fn drop(&mut self) {
        self.inner.lock().stacks[self.stack.0].close(self.handle, Instant::now());
        self.inner.wake();
    }
}

/// A UDP socket shaped like `tokio::net::UdpSocket`: datagrams keep their
/// boundaries, a short buffer truncates, `connect` sets the default
/// destination and filters what is received to that peer (whose port
/// unreachable makes the next call ConnectionRefused). Dropping it
/// closes it (datagrams already sent still go out).
pub struct AsyncUdpSocket {
    inner: Arc<Inner>,
    stack: StackId,
    handle: SocketHandle,
}

impl AsyncUdpSocket {
    /// Binds to `addr` on `stack` (port 0: an ephemeral port). Errors as
    /// std gives them: `AddrInUse`, `AddrNotAvailable`.
    pub fn bind(rt: &Runtime, stack: StackId, addr: SocketAddr) -> io::Result<Self> {
        let handle = rt.with_stack(stack, |s| s.udp_bind(addr))?;
        Ok(AsyncUdpSocket {
            inner: rt.inner.clone(),
            stack,
            handle,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.lock().stacks[self.stack.0]
            .udp_local_addr(self.handle)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
    }

    /// The connected peer; `NotConnected` before [`connect`](Self::connect).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.lock().stacks[self.stack.0]
            .udp_peer_addr(self.handle)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    /// Sets the peer: [`send`](Self::send) goes to it and only its datagrams
    /// are received from now on. Nothing is sent (async only to match tokio).
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        self.inner.lock().stacks[self.stack.0].udp_connect(self.handle, addr)
    }

    /// Sends one datagram to `target`; waits only while the send queue is full.
    pub async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        poll_fn(|cx| self.poll_send_to(cx, buf, target)).await
    }

    /// Sends one datagram to the connected peer (`NotConnected` without one).
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| {
            poll_op(&self.inner, self.stack, cx, |g| {
                match g.failure(self.stack) {
                    Some(gone) => Err(gone),
                    None => g.stacks[self.stack.0].udp_send(self.handle, buf),
                }
            })
        })
        .await
    }

    /// Receives one datagram and who sent it. A `buf` shorter than the
    /// datagram gets its first `buf.len()` bytes; the rest is discarded.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| self.poll_recv_from(cx, buf)).await
    }

    /// [`recv_from`](Self::recv_from) without the sender.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(buf).await.map(|(n, _)| n)
    }

    /// The poll form of [`send_to`](Self::send_to), for hand-written futures.
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        poll_op(&self.inner, self.stack, cx, |g| {
            match g.failure(self.stack) {
                Some(gone) => Err(gone),
                None => g.stacks[self.stack.0].udp_send_to(self.handle, buf, target),
            }
        })
    }

    /// The poll form of [`recv_from`](Self::recv_from).
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        poll_op(&self.inner, self.stack, cx, |g| {
            g.stacks[self.stack.0].udp_recv_from(self.handle, buf)
        })
    }
}

impl Drop for AsyncUdpSocket {
    fn drop(&mut self) {
        self.inner.lock().stacks[self.stack.0].close(self.handle, Instant::now());
        self.inner.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{sim_link, Device, LinkConfig, Stack, StackConfig};
    use std::future::Future;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Instant;

    /// A pending task polled again and again (as inside a select!) waits
    /// with one waker, not one more per poll.
    #[test]
    fn a_task_polled_again_waits_once() {
        let rt = Runtime::start(|| {
            let (pa, _pb) = sim_link(LinkConfig::default(), 1);
            let cfg = StackConfig {
                ipv4: Some(Ipv4Addr::new(198, 18, 0, 1)),
                ..StackConfig::default()
            };
            vec![(
                Stack::new(cfg, Instant::now()),
                Box::new(pa) as Box<dyn Device>,
            )]
        })
        .unwrap();
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 7);
        let listener = AsyncTcpListener::bind(&rt, StackId(0), addr, 8).unwrap();
        let mut accept = std::pin::pin!(listener.accept());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for _ in 0..5 {
            assert!(accept.as_mut().poll(&mut cx).is_pending());
        }
        // The stack thread may have drained them in between; never more than one.
        assert!(rt.inner.lock().wakers.len() <= 1);
    }
}
