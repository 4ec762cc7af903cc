//! The HTTP server plumbing: binding, the accept loop with a connection limit, keep-alive and
//! header timeouts, graceful shutdown; and capped body reading ([`body`]).
//!
//! Connection slots: at most `max_connections` connections are served at once. When every slot
//! is taken and another client connects, the connection that has been waiting longest outside
//! a request (an idle keep-alive, a client still sending its headers, a TLS handshake) is
//! closed to make room, so a new writer is served at once instead of after a timeout; a
//! connection whose request is in a handler is never closed for this. Each request carries
//! [`RequestStart`]: when its first byte arrived, so a handler can bound headers and body
//! together.
//!
//! Handlers are plain async functions from a request to a response, so tests can call them
//! without a socket. What the endpoints mean lives with the plugin that serves them
//! (`plugins/inputs/influxdb_listener`).

pub mod body;
pub mod client;

pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A response with its whole body in memory (our responses are small).
pub type HttpResponse = Response<Full<Bytes>>;

/// Limits of the accept loop, and TLS.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Connections served at once; further ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time allowed to receive a request's headers, a TLS handshake, and between requests on
    /// a kept-alive connection.
    pub header_timeout: Duration,
    /// Serve TLS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Listening sockets by configured address, kept across a reload so a listener whose address
/// did not change keeps its socket: connections that arrive while the agent reloads wait in
/// the socket's backlog instead of being refused.
#[derive(Debug, Clone, Default)]
pub struct Sockets {
    inner: Arc<std::sync::Mutex<SocketsInner>>,
}

#[derive(Debug, Default)]
struct SocketsInner {
    open: std::collections::HashMap<String, std::net::TcpListener>,
    claimed: std::collections::HashSet<String>,
}

impl Sockets {
    fn lock(&self) -> std::sync::MutexGuard<'_, SocketsInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a generation: sockets not bound again before [`Sockets::end_generation`] close.
    pub fn begin_generation(&self) {
        self.lock().claimed.clear();
    }

    /// Closes the sockets no listener of this generation bound.
    pub fn end_generation(&self) {
        let mut inner = self.lock();
        let SocketsInner { open, claimed } = &mut *inner;
        open.retain(|address, _| claimed.contains(address));
    }

    /// A listener on `address` (`":8186"` is every IPv4 interface): the socket kept from before
    /// a reload when there is one, else a new one.
    ///
    /// # Errors
    /// The bind failed (address in use, not permitted, not an address).
    pub fn bind(&self, address: &str) -> io::Result<TcpListener> {
        let mut inner = self.lock();
        // Two listeners may name the same address (`127.0.0.1:0`, a port of the system's
        // choosing): the second is the address's second socket, not the first one shared.
        let mut key = address.to_owned();
        let mut n = 1;
        while inner.claimed.contains(&key) {
            n += 1;
            key = format!("{address}#{n}");
        }
        let std_listener = match inner.open.get(&key) {
            Some(kept) => kept.try_clone()?,
            None => {
                let full = if address.starts_with(':') {
                    format!("0.0.0.0{address}")
                } else {
                    address.to_owned()
                };
                let fresh = listen(full.as_str())?;
                let ours = fresh.try_clone()?;
                inner.open.insert(key.clone(), fresh);
                ours
            }
        };
        inner.claimed.insert(key);
        TcpListener::from_std(std_listener)
    }
}

/// Connections the kernel queues for `accept`. The standard library's 128 overflowed when a
/// burst of connections arrived while every slot was taken (each beyond the slots waits for
/// an idle one to be closed): connects then waited for a SYN retransmit, a second. The kernel
/// caps it at `net.core.somaxconn` (4096 on current kernels).
const LISTEN_BACKLOG: u32 = 4096;

/// A non-blocking listening socket on `address` (`host:port`), with [`LISTEN_BACKLOG`].
fn listen(address: &str) -> io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs as _;
    let mut last = None;
    for addr in address.to_socket_addrs()? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As the standard library does on Unix: a restart binds while old connections linger.
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG)?.into_std(),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

/// Binds a listener on `address` outside any reload (tools and tests).
///
/// # Errors
/// The bind failed (address in use, not permitted, not an address).
pub async fn bind(address: &str) -> io::Result<TcpListener> {
    let address = if address.starts_with(':') {
        format!("0.0.0.0{address}")
    } else {
        address.to_owned()
    };
    TcpListener::bind(address.as_str()).await
}

/// Serves connections from `listener` with `handler` until `shutdown`, on `tracker`.
///
/// On shutdown the accept loop stops and each connection finishes the request in flight, then
/// closes.
pub fn serve<H, F>(
    listener: TcpListener,
    options: ServerOptions,
    handler: H,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    let open = Arc::new(OpenConnections::new(options.max_connections));
    let conns = tracker.clone();
    let acceptor = options.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    tracker.spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            // When every slot is taken, make room by closing whoever waits longest outside a
            // request, again every 100 ms while none frees up.
            let slot = loop {
                if let Some(slot) = open.try_take() {
                    break slot;
                }
                open.evict_one();
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = open.freed.notified() => {}
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            let shutdown = shutdown.clone();
            let acceptor = acceptor.clone();
            let header_timeout = options.header_timeout;
            let state = Arc::clone(&slot.state);
            conns.spawn(async move {
                let _slot = slot;
                let stream = Clocked {
                    inner: stream,
                    state: Arc::clone(&state),
                };
                let serve = async {
                    match acceptor {
                        None => {
                            connection(stream, peer, handler, shutdown, header_timeout, &state)
                                .await;
                        }
                        Some(acceptor) => {
                            // The handshake is bounded like the headers: a silent client cannot
                            // hold a connection slot.
                            match tokio::time::timeout(header_timeout, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(tls)) => {
                                    connection(tls, peer, handler, shutdown, header_timeout, &state)
                                        .await;
                                }
                                Ok(Err(error)) => {
                                    tracing::debug!(%peer, %error, "TLS handshake failed");
                                }
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        }
                    }
                };
                tokio::select! {
                    () = serve => {}
                    () = state.evicted() => {
                        tracing::debug!(%peer, "closed a connection waiting outside a request: every slot was taken");
                    }
                }
            });
        }
    });
}

/// When the first byte of a request arrived (a request extension set by [`serve`]): a handler
/// bounds the whole request, headers and body, from here.
#[derive(Debug, Clone, Copy)]
pub struct RequestStart(pub Instant);

/// The process's reference instant for the connections' clocks.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn since_epoch() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// One served connection, as the slot keeper sees it.
#[derive(Debug)]
struct ConnState {
    /// A request is in the handler: never closed to make room.
    busy: AtomicBool,
    /// Waiting for the first byte of a request (after the accept, or a response).
    idle: AtomicBool,
    /// When the current request's first byte arrived (ns since [`epoch`]).
    started: AtomicU64,
    /// When the connection last finished a request, or was accepted (ns since [`epoch`]).
    last_active: AtomicU64,
    evict: Notify,
}

impl ConnState {
    /// Resolves once asked to close while no request is in a handler.
    async fn evicted(&self) {
        loop {
            self.evict.notified().await;
            if !self.busy.load(Ordering::Acquire) {
                return;
            }
        }
    }

    fn request_start(&self) -> Instant {
        epoch() + Duration::from_nanos(self.started.load(Ordering::Acquire))
    }
}

/// The connections being served: at most `max` (the slots), and which one to close when
/// every slot is taken.
#[derive(Debug)]
struct OpenConnections {
    all: Mutex<Vec<Arc<ConnState>>>,
    max: usize,
    /// A slot was freed.
    freed: Notify,
}

/// A connection's slot, given back when dropped (however its task ends).
struct Slot {
    open: Arc<OpenConnections>,
    state: Arc<ConnState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut all = self.open.lock();
        if let Some(i) = all.iter().position(|s| Arc::ptr_eq(s, &self.state)) {
            all.swap_remove(i);
        }
        drop(all);
        self.open.freed.notify_one();
    }
}

impl OpenConnections {
    fn new(max: usize) -> Self {
        OpenConnections {
            all: Mutex::new(Vec::new()),
            max: max.max(1),
            freed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<ConnState>>> {
        self.all.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection, if one is free.
    fn try_take(self: &Arc<Self>) -> Option<Slot> {
        let mut all = self.lock();
        if all.len() >= self.max {
            return None;
        }
        let now = since_epoch();
        let state = Arc::new(ConnState {
            busy: AtomicBool::new(false),
            idle: AtomicBool::new(true),
            started: AtomicU64::new(now),
            last_active: AtomicU64::new(now),
            evict: Notify::new(),
        });
        all.push(Arc::clone(&state));
        Some(Slot {
            open: Arc::clone(self),
            state,
        })
    }

    /// Asks the connection that has waited longest outside a request to close.
    fn evict_one(&self) {
        let all = self.lock();
        let victim = all
            .iter()
            .filter(|s| !s.busy.load(Ordering::Acquire))
            .min_by_key(|s| s.last_active.load(Ordering::Acquire));
        if let Some(v) = victim {
            v.evict.notify_one();
        }
    }
}

/// A connection's stream that notes when each request's first byte arrives.
struct Clocked<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Clocked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(())))
            && buf.filled().len() > before
            && self.state.idle.swap(false, Ordering::AcqRel)
        {
            self.state.started.store(since_epoch(), Ordering::Release);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Clocked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves one connection until it closes, or finishes its request in flight at shutdown.
async fn connection<S, H, F>(
    stream: S,
    peer: SocketAddr,
    handler: H,
    shutdown: CancellationToken,
    header_timeout: Duration,
    state: &Arc<ConnState>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    let state = Arc::clone(state);
    let service = service_fn(move |mut req: Request<Incoming>| {
        let handler = handler.clone();
        let state = Arc::clone(&state);
        state.busy.store(true, Ordering::Release);
        req.extensions_mut()
            .insert(RequestStart(state.request_start()));
        async move {
            let response = handler(req, peer).await;
            state.last_active.store(since_epoch(), Ordering::Release);
            state.idle.store(true, Ordering::Release);
            state.busy.store(false, Ordering::Release);
            Ok::<_, Infallible>(response)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sockets_are_kept_across_generations_and_never_shared_within_one() {
        let sockets = Sockets::default();
        let a = sockets.bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let b = sockets.bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert_ne!(a.port(), b.port(), "two listeners, two sockets");
        // The next generation binds the same addresses again: the same sockets, in order.
        sockets.begin_generation();
        let a2 = sockets.bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert_eq!(a2, a);
        sockets.end_generation();
        // The second was not bound again: closed, so its port can be taken by anyone.
        assert!(std::net::TcpListener::bind(b).is_ok());
        // A kept socket queues connections while no listener accepts.
        let kept = std::net::TcpStream::connect(a);
        assert!(kept.is_ok());
    }
}
