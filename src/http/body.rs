//! Reading a request body under a size cap, decompressing gzip as it streams.
//!
//! The cap applies to the bytes on the wire and again to the decompressed bytes; the read stops
//! at the first byte past it, so a gzip bomb costs at most `max` bytes of memory.

use std::io::{self, Write};

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
}

/// A writer into a Vec that refuses to grow past `max` bytes.
struct Capped {
    buf: Vec<u8>,
    max: usize,
}

impl Write for Capped {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.max {
            return Err(io::Error::other(CapExceeded));
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

fn is_cap(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<CapExceeded>())
}

enum Sink {
    Plain(Capped),
    Gzip(Box<flate2::write::MultiGzDecoder<Capped>>),
}

/// Reads `body` whole, decoding `encoding`, refusing more than `max` bytes either way.
///
/// # Errors
/// [`BodyError::TooLarge`] as soon as the cap is passed, [`BodyError::Gzip`] for a bad stream,
/// [`BodyError::Read`] when the connection fails.
pub async fn read<B>(body: B, encoding: Encoding, max: usize) -> Result<Vec<u8>, BodyError>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let initial = body
        .size_hint()
        .exact()
        .map_or(8 * 1024, |n| n.min(max as u64) as usize);
    let capped = Capped {
        buf: crate::pool::take(
            if encoding == Encoding::Gzip {
                initial * 4
            } else {
                initial
            }
            .min(max),
        ),
        max,
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
        Sink::Plain(c) => Ok(c.buf),
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
                d.finish().map(|c| c.buf).map_err(BodyError::Gzip)
            }
            Err(e) if is_cap(&e) => Err(BodyError::TooLarge { max }),
            Err(e) => Err(BodyError::Gzip(e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
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
        assert_eq!(
            run(read(body, Encoding::Identity, 100)).unwrap(),
            b"m f=1\n"
        );
        let body = Full::new(bytes::Bytes::from(gzip(b"m f=1\n")));
        assert_eq!(run(read(body, Encoding::Gzip, 100)).unwrap(), b"m f=1\n");
    }

    #[test]
    fn caps_wire_and_decompressed_size() {
        let body = Full::new(bytes::Bytes::from(vec![b'x'; 101]));
        assert!(matches!(
            run(read(body, Encoding::Identity, 100)),
            Err(BodyError::TooLarge { max: 100 })
        ));
        let bomb = gzip(&vec![b'a'; 10_000_000]);
        assert!(bomb.len() < 100_000);
        let body = Full::new(bytes::Bytes::from(bomb));
        assert!(matches!(
            run(read(body, Encoding::Gzip, 100_000)),
            Err(BodyError::TooLarge { .. })
        ));
    }

    #[test]
    fn corrupt_and_truncated_gzip() {
        let body = Full::new(bytes::Bytes::from_static(b"m f=1\n"));
        assert!(matches!(
            run(read(body, Encoding::Gzip, 100)),
            Err(BodyError::Gzip(_))
        ));
        let mut g = gzip(b"m f=1\nm f=2\n");
        g.truncate(g.len() - 4);
        let body = Full::new(bytes::Bytes::from(g));
        assert!(matches!(
            run(read(body, Encoding::Gzip, 100)),
            Err(BodyError::Gzip(_))
        ));
        let body = Full::new(bytes::Bytes::new());
        assert!(matches!(
            run(read(body, Encoding::Gzip, 100)),
            Err(BodyError::Gzip(_))
        ));
    }

    #[test]
    fn encodings() {
        assert_eq!(Encoding::from_header(None), Some(Encoding::Identity));
        assert_eq!(Encoding::from_header(Some("GZIP")), Some(Encoding::Gzip));
        assert_eq!(Encoding::from_header(Some("br")), None);
    }
}
