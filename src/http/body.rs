//! Reading a request body under a size cap, decompressing gzip as it streams.
//!
//! The cap applies to the bytes on the wire and again to the decompressed bytes; the read stops
//! at the first byte past it, so a gzip bomb costs at most `max` bytes of memory. The buffer
//! grows with the bytes actually received (a `Content-Length` is a claim, not a reason to
//! allocate), and every growth is taken from a [`Budget`] shared by all requests of a listener:
//! the memory of all bodies in flight together is bounded, and a request that would pass it is
//! refused ([`BodyError::Busy`], a 503) instead.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Buf;
use http_body_util::BodyExt;
use hyper::body::Body;

/// How the body is encoded (`Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// No encoding.
    Identity,
    /// gzip, possibly several members.
    Gzip,
}

impl Encoding {
    /// Reads a `Content-Encoding` header value; `None` for encodings we cannot decode.
    pub fn from_header(value: Option<&str>) -> Option<Encoding> {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            None => Some(Encoding::Identity),
            Some(v) if v.is_empty() || v == "identity" => Some(Encoding::Identity),
            Some(v) if v == "gzip" || v == "x-gzip" => Some(Encoding::Gzip),
            Some(_) => None,
        }
    }
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// More than the cap, on the wire or decompressed.
    #[error("request body is larger than {max} bytes")]
    TooLarge {
        /// The cap.
        max: usize,
    },
    /// The gzip stream is corrupt or truncated.
    #[error("invalid gzip body")]
    Gzip(#[source] io::Error),
    /// The connection failed while reading.
    #[error("reading request body")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The bodies in flight hold all the memory the listener gives them.
    #[error("the request bodies in flight hold max_inflight_body_bytes ({limit} bytes)")]
    Busy {
        /// The budget.
        limit: usize,
    },
}

/// The bytes that the bodies in flight of one listener may hold together.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes`, or `None` when that would pass the limit.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        let mut r = Reservation {
            budget: Arc::clone(self),
            bytes: 0,
        };
        r.grow(bytes).then_some(r)
    }
}

/// Bytes taken from a [`Budget`], given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Reservation {
    /// Takes `more` bytes; false (taking nothing) when that would pass the limit.
    pub fn grow(&mut self, more: usize) -> bool {
        let b = &self.budget;
        let taken = b
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more).filter(|n| *n <= b.limit)
            })
            .is_ok();
        if taken {
            self.bytes += more;
        }
        taken
    }

    /// Takes `more` bytes whatever the limit (memory that exists already, such as a pooled
    /// buffer larger than asked for).
    fn grow_anyway(&mut self, more: usize) {
        self.budget.used.fetch_add(more, Ordering::AcqRel);
        self.bytes += more;
    }

    /// Gives `less` bytes back (a buffer replaced by a bigger one).
    fn shrink(&mut self, less: usize) {
        let less = less.min(self.bytes);
        self.budget.used.fetch_sub(less, Ordering::AcqRel);
        self.bytes -= less;
    }

    /// The bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The first allocation for a body: what it claims, up to this. The rest grows with the bytes
/// that arrive: a connection that claims 32 MiB and sends 6 KB holds 8 KiB.
const FIRST_ALLOCATION: usize = 8 << 10;

/// A writer into a Vec that refuses to grow past `max` bytes, and grows only with budget.
struct Capped {
    buf: Vec<u8>,
    max: usize,
    /// The size the client declared (decoded bodies: none): the growth target once half of it
    /// has arrived.
    declared: Option<usize>,
    held: Reservation,
}

impl Write for Capped {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let need = self.buf.len() + data.len();
        if need > self.max {
            return Err(io::Error::other(CapExceeded));
        }
        if need > self.buf.capacity() {
            // Doubling with what arrives; the declared size once half of it is here.
            let target = match self.declared {
                Some(d) if need <= d && need.saturating_mul(2) >= d => d,
                _ => need.max(self.buf.capacity().saturating_mul(2)),
            }
            .min(self.max);
            // The new buffer is held beside the old one while the bytes are copied over.
            if !self.held.grow(target) {
                return Err(io::Error::other(OverBudget));
            }
            // From the pool where it has one: the old buffer goes back to it.
            let mut bigger = crate::pool::take(target);
            self.held
                .grow_anyway(bigger.capacity().saturating_sub(target));
            bigger.extend_from_slice(&self.buf);
            let old = std::mem::replace(&mut self.buf, bigger);
            let freed = old.capacity();
            crate::pool::give(old);
            self.held.shrink(freed);
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("decompressed body exceeds the limit")]
struct CapExceeded;

#[derive(Debug, thiserror::Error)]
#[error("request bodies in flight exceed the listener's budget")]
struct OverBudget;

fn is_cap(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<CapExceeded>())
}

fn is_over_budget(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<OverBudget>())
}

enum Sink {
    Plain(Capped),
    Gzip(Box<flate2::write::MultiGzDecoder<Capped>>),
}

/// Reads `body` whole, decoding `encoding`, refusing more than `max` bytes either way; the
/// buffer's memory is held in `budget` until the returned [`Reservation`] is dropped.
///
/// # Errors
/// [`BodyError::TooLarge`] as soon as the cap is passed, [`BodyError::Gzip`] for a bad stream,
/// [`BodyError::Read`] when the connection fails, [`BodyError::Busy`] when the budget cannot
/// hold the body (before reading anything when it cannot hold its first bytes).
pub async fn read<B>(
    body: B,
    encoding: Encoding,
    max: usize,
    budget: &Arc<Budget>,
) -> Result<(Vec<u8>, Reservation), BodyError>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = body
        .size_hint()
        .exact()
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX).min(max));
    let declared = declared.filter(|_| encoding == Encoding::Identity);
    // The buffer is what the budget counts: a gzip decoder's state (tens of KiB, fixed) is
    // the connection's, as hyper's read buffer is.
    let first = declared
        .unwrap_or(FIRST_ALLOCATION)
        .min(FIRST_ALLOCATION)
        .min(max);
    let Some(mut held) = budget.reserve(first) else {
        return Err(BodyError::Busy {
            limit: budget.limit,
        });
    };
    let buf = crate::pool::take(first);
    held.grow_anyway(buf.capacity().saturating_sub(first));
    let capped = Capped {
        buf,
        max,
        declared,
        held,
    };
    let mut sink = match encoding {
        Encoding::Identity => Sink::Plain(capped),
        Encoding::Gzip => Sink::Gzip(Box::new(flate2::write::MultiGzDecoder::new(capped))),
    };
    let mut wire = 0usize;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.into()))?;
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers
        };
        wire += data.remaining();
        if wire > max {
            return Err(BodyError::TooLarge { max });
        }
        while data.has_remaining() {
            let chunk = data.chunk();
            let n = chunk.len();
            let result = match &mut sink {
                Sink::Plain(c) => c.write_all(chunk),
                Sink::Gzip(d) => d.write_all(chunk),
            };
            match result {
                Ok(()) => {}
                Err(e) => {
                    let error = if is_cap(&e) {
                        BodyError::TooLarge { max }
                    } else if is_over_budget(&e) {
                        BodyError::Busy {
                            limit: budget.limit,
                        }
                    } else {
                        BodyError::Gzip(e)
                    };
                    // Read (and discard) the rest of what the client is sending, up to the wire
                    // limit, so it reads our answer instead of failing on a closed socket.
                    while wire <= max {
                        match body.frame().await {
                            Some(Ok(frame)) => {
                                wire += frame.data_ref().map_or(0, |d| d.remaining())
                            }
                            _ => break,
                        }
                    }
                    return Err(error);
                }
            }
            data.advance(n);
        }
    }
    match sink {
        Sink::Plain(c) => Ok((c.buf, c.held)),
        Sink::Gzip(mut d) => match d.try_finish() {
            Ok(()) => {
                // An empty or truncated stream decodes to nothing without an error: a gzip body
                // must hold at least a complete header and trailer (18 bytes).
                if wire < 18 {
                    return Err(BodyError::Gzip(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "gzip stream is truncated",
                    )));
                }
                d.finish().map(|c| (c.buf, c.held)).map_err(BodyError::Gzip)
            }
            Err(e) if is_cap(&e) => Err(BodyError::TooLarge { max }),
            Err(e) if is_over_budget(&e) => Err(BodyError::Busy {
                limit: budget.limit,
            }),
            Err(e) => Err(BodyError::Gzip(e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use std::convert::Infallible;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Reads with a budget that never refuses.
    async fn rd<B>(body: B, encoding: Encoding, max: usize) -> Result<Vec<u8>, BodyError>
    where
        B: Body + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        read(body, encoding, max, &Budget::new(usize::MAX))
            .await
            .map(|(b, _)| b)
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn plain_and_gzip() {
        let body = Full::new(bytes::Bytes::from_static(b"m f=1\n"));
        assert_eq!(run(rd(body, Encoding::Identity, 100)).unwrap(), b"m f=1\n");
        let body = Full::new(bytes::Bytes::from(gzip(b"m f=1\n")));
        assert_eq!(run(rd(body, Encoding::Gzip, 100)).unwrap(), b"m f=1\n");
    }

    #[test]
    fn caps_wire_and_decompressed_size() {
        let body = Full::new(bytes::Bytes::from(vec![b'x'; 101]));
        assert!(matches!(
            run(rd(body, Encoding::Identity, 100)),
            Err(BodyError::TooLarge { max: 100 })
        ));
        let bomb = gzip(&vec![b'a'; 10_000_000]);
        assert!(bomb.len() < 100_000);
        let body = Full::new(bytes::Bytes::from(bomb));
        assert!(matches!(
            run(rd(body, Encoding::Gzip, 100_000)),
            Err(BodyError::TooLarge { .. })
        ));
    }

    #[test]
    fn corrupt_and_truncated_gzip() {
        let body = Full::new(bytes::Bytes::from_static(b"m f=1\n"));
        assert!(matches!(
            run(rd(body, Encoding::Gzip, 100)),
            Err(BodyError::Gzip(_))
        ));
        let mut g = gzip(b"m f=1\nm f=2\n");
        g.truncate(g.len() - 4);
        let body = Full::new(bytes::Bytes::from(g));
        assert!(matches!(
            run(rd(body, Encoding::Gzip, 100)),
            Err(BodyError::Gzip(_))
        ));
        let body = Full::new(bytes::Bytes::new());
        assert!(matches!(
            run(rd(body, Encoding::Gzip, 100)),
            Err(BodyError::Gzip(_))
        ));
    }

    #[test]
    fn bodies_in_flight_share_a_budget() {
        let budget = Budget::new(40 << 10);
        let body = |n: usize| Full::new(bytes::Bytes::from(vec![b'x'; n]));
        // More than the budget could ever hold: refused before a byte is read.
        assert!(matches!(
            run(read(body(50 << 10), Encoding::Identity, 1 << 20, &budget)),
            Err(BodyError::Busy { limit }) if limit == 40 << 10
        ));
        assert_eq!(budget.used(), 0);
        let (first, held) =
            run(read(body(30 << 10), Encoding::Identity, 1 << 20, &budget)).unwrap();
        assert_eq!(first.len(), 30 << 10);
        assert!(held.bytes() >= 30 << 10 && budget.used() == held.bytes());
        // While the first is held, a second does not fit.
        assert!(matches!(
            run(read(body(30 << 10), Encoding::Identity, 1 << 20, &budget)),
            Err(BodyError::Busy { .. })
        ));
        drop(held);
        assert_eq!(budget.used(), 0);
        assert!(run(read(body(30 << 10), Encoding::Identity, 1 << 20, &budget)).is_ok());
        assert_eq!(budget.used(), 0, "a dropped read gives its bytes back");
    }

    #[test]
    fn a_bomb_stops_at_the_budget_and_gives_it_back() {
        let budget = Budget::new(1 << 20);
        let bomb = gzip(&vec![b'a'; 8 << 20]);
        let body = Full::new(bytes::Bytes::from(bomb));
        assert!(matches!(
            run(read(body, Encoding::Gzip, 16 << 20, &budget)),
            Err(BodyError::Busy { .. })
        ));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn the_buffer_grows_with_what_arrives_not_with_what_is_claimed() {
        // A body that claims 32 MiB and sends 6 bytes: its buffer is sized for what came
        // (the first allocation, or an idle pooled buffer: at most 8 MiB).
        let claimed = LyingBody {
            sent: Some(bytes::Bytes::from_static(b"m f=1\n")),
            claimed: 32 << 20,
        };
        let budget = Budget::new(usize::MAX);
        let (buf, held) = run(read(claimed, Encoding::Identity, 64 << 20, &budget)).unwrap();
        assert_eq!(buf, b"m f=1\n");
        assert!(
            buf.capacity() <= FIRST_ALLOCATION.max(8 << 20),
            "{}",
            buf.capacity()
        );
        assert!(held.bytes() <= 8 << 20, "{}", held.bytes());
    }

    /// A body whose size hint claims more than it sends.
    struct LyingBody {
        sent: Option<bytes::Bytes>,
        claimed: u64,
    }

    impl Body for LyingBody {
        type Data = bytes::Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
            std::task::Poll::Ready(self.sent.take().map(|b| Ok(hyper::body::Frame::data(b))))
        }
        fn size_hint(&self) -> hyper::body::SizeHint {
            hyper::body::SizeHint::with_exact(self.claimed)
        }
    }

    #[test]
    fn encodings() {
        assert_eq!(Encoding::from_header(None), Some(Encoding::Identity));
        assert_eq!(Encoding::from_header(Some("GZIP")), Some(Encoding::Gzip));
        assert_eq!(Encoding::from_header(Some("br")), None);
    }
}
