//! The chunk file format: a sequence of gzip members ("blocks"), each holding sorted lines of
//! line protocol, so any gzip reader (`zcat`, a `MultiGzDecoder`) reads a chunk as one text.
//!
//! Every block carries, in an extra field of its gzip header (subfield `Hg`, 24 bytes, little
//! endian), its own size in bytes (header and trailer included) and the times of its first and
//! last line. Reading the headers alone gives a chunk's block index, so a merge copies the bytes
//! of a block whose time range overlaps no other input's block, and decodes and re-encodes only
//! where ranges overlap. Metrics mostly arrive in time order, so most blocks are copied.
//!
//! A block is either deflated (subfield `Hg`) or held in stored deflate blocks, uncompressed
//! (subfield `Hs`, same layout). The compactor writes a partition's newest chunks stored: most
//! of them are decoded again by their first merge (writers' timelines interleave, so
//! consecutive runs overlap in time), which then compresses them once; a merge never copies a
//! stored block. Either kind is plain gzip to any reader.
//!
//! A chunk without this field (or with a header that does not parse) has no index; it is then
//! treated as one block spanning all time, which is always decoded.

use std::fs::File;
use std::io::{self, BufReader, IoSlice, Read, Seek, SeekFrom, Write};
use std::path::Path;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use crate::pool::Pool;

/// Line protocol bytes per block before compression.
pub(crate) const BLOCK_BYTES: usize = 1 << 20;

const SUBFIELD: [u8; 2] = *b"Hg";
/// Block writers' buffers (the compactor's and the merger's), kept apart from the listener's
/// pool: a chunk written every few tens of milliseconds would fault its megabyte in afresh.
static BUFFERS: Pool = Pool::new(3 << 20);

/// Frees the block writers' idle buffers when no block was written since the last call;
/// returns whether one was.
pub(crate) fn clear_idle_buffers() -> bool {
    BUFFERS.clear_if_idle()
}

/// Bytes of the block writers' buffers taken so far.
pub(crate) fn buffer_traffic() -> u64 {
    BUFFERS.taken_bytes()
}
/// The most bytes one stored deflate block holds.
const STORED_MAX: usize = 65_535;
const SUBFIELD_STORED: [u8; 2] = *b"Hs";
const SUBFIELD_LEN: usize = 24;
/// Fixed header (10) + XLEN (2) + subfield header (4) + payload (24).
const HEADER_LEN: usize = 10 + 2 + 4 + SUBFIELD_LEN;
const TRAILER_LEN: usize = 8;

/// A block of a chunk file: where it is and the times of its first and last line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    pub offset: u64,
    pub size: u64,
    pub tmin: i64,
    pub tmax: i64,
    /// The block's text is stored, not compressed.
    pub stored: bool,
}

/// Reads the block index of a chunk from its gzip headers; `None` when the file was not written
/// in blocks (or a header does not parse): the caller then decodes the whole file.
///
/// # Errors
/// The file cannot be opened or read.
pub(crate) fn index(path: &Path) -> io::Result<Option<Vec<Block>>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut blocks = Vec::new();
    let mut offset = 0u64;
    while offset < len {
        let mut header = [0u8; HEADER_LEN];
        file.seek(SeekFrom::Start(offset))?;
        if file.read_exact(&mut header).is_err() {
            return Ok(None);
        }
        let Some(block) = parse_header(&header, offset) else {
            return Ok(None);
        };
        if block.size < (HEADER_LEN + TRAILER_LEN) as u64 || offset + block.size > len {
            return Ok(None);
        }
        offset += block.size;
        blocks.push(block);
    }
    Ok(Some(blocks))
}

fn parse_header(h: &[u8; HEADER_LEN], offset: u64) -> Option<Block> {
    let fixed = h[0] == 0x1f && h[1] == 0x8b && h[2] == 8 && h[3] == 0x04;
    let xlen = u16::from_le_bytes([h[10], h[11]]) as usize;
    let sub_len = u16::from_le_bytes([h[14], h[15]]) as usize;
    let stored = h[12..14] == SUBFIELD_STORED;
    if !fixed
        || xlen != 4 + SUBFIELD_LEN
        || (h[12..14] != SUBFIELD && !stored)
        || sub_len != SUBFIELD_LEN
    {
        return None;
    }
    let word = |i: usize| <[u8; 8]>::try_from(&h[16 + 8 * i..24 + 8 * i]).expect("8 bytes");
    Some(Block {
        offset,
        size: u64::from_le_bytes(word(0)),
        tmin: i64::from_le_bytes(word(1)),
        tmax: i64::from_le_bytes(word(2)),
        stored,
    })
}

/// Whether the first block of the chunk at `path` is stored (a chunk is written all stored or
/// all compressed); `false` for a chunk without an index.
///
/// # Errors
/// The file cannot be opened.
pub(crate) fn first_stored(path: &Path) -> io::Result<bool> {
    let mut header = [0u8; HEADER_LEN];
    let read = File::open(path)?.read_exact(&mut header);
    Ok(read.is_ok() && parse_header(&header, 0).is_some_and(|b| b.stored))
}

/// Copies `size` bytes of whole blocks from `offset` of the chunk at `path` to `out`.
///
/// # Errors
/// I/O errors; a file shorter than the range.
pub(crate) fn copy(path: &Path, offset: u64, size: u64, out: &mut impl Write) -> io::Result<()> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let copied = io::copy(&mut file.take(size), out)?;
    if copied != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{}: blocks at {offset} are cut short", path.display()),
        ));
    }
    Ok(())
}

/// A reader of the decompressed text of `size` bytes of whole blocks from `offset`.
///
/// # Errors
/// The file cannot be opened.
pub(crate) fn open_range(path: &Path, offset: u64, size: u64) -> io::Result<impl Read + Send> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    // 32 KiB reads: with the default 8 KiB, merges made four times the read calls.
    Ok(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
        32 << 10,
        file.take(size),
    )))
}

/// Writes sorted lines as blocks. Lines must come in (time, line) order.
pub(crate) struct BlockWriter<W: Write> {
    out: W,
    text: Vec<u8>,
    tmin: i64,
    tmax: i64,
    /// The compressor; none for a writer of stored blocks.
    deflate: Option<Compress>,
    compressed: Vec<u8>,
    block_bytes: usize,
}

impl<W: Write> BlockWriter<W> {
    /// A writer of compressed blocks.
    pub(crate) fn new(out: W) -> BlockWriter<W> {
        BlockWriter::with_block_bytes(out, BLOCK_BYTES, false)
    }

    /// A writer of stored (uncompressed) blocks.
    pub(crate) fn stored(out: W) -> BlockWriter<W> {
        BlockWriter::with_block_bytes(out, BLOCK_BYTES, true)
    }

    /// A writer that ends a block once it holds `block_bytes` of text.
    pub(crate) fn with_block_bytes(out: W, block_bytes: usize, stored: bool) -> BlockWriter<W> {
        BlockWriter {
            out,
            text: BUFFERS.take(block_bytes + (64 << 10)),
            tmin: 0,
            tmax: 0,
            deflate: (!stored).then(|| Compress::new(Compression::fast(), false)),
            compressed: Vec::new(),
            block_bytes,
        }
    }

    /// Adds one line (without its newline) whose time is `t`.
    pub(crate) fn line(&mut self, t: i64, line: &[u8]) -> io::Result<()> {
        if self.text.is_empty() {
            self.tmin = t;
        }
        self.tmax = t;
        self.text.extend_from_slice(line);
        self.text.push(b'\n');
        if self.text.len() >= self.block_bytes {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Copies encoded blocks (`size` bytes from `offset`) of another chunk, after the lines
    /// written so far.
    pub(crate) fn raw(&mut self, path: &Path, offset: u64, size: u64) -> io::Result<()> {
        self.flush_block()?;
        copy(path, offset, size, &mut self.out)
    }

    fn flush_block(&mut self) -> io::Result<()> {
        if self.text.is_empty() {
            return Ok(());
        }
        let stored = self.deflate.is_none();
        let body_len = match self.deflate.as_mut() {
            // Stored deflate blocks are framed here, the text written as it is (not copied
            // through the compressor first).
            None => self.text.len() + 5 * self.text.len().div_ceil(STORED_MAX),
            Some(deflate) => {
                compress(deflate, &self.text, &mut self.compressed)?;
                self.compressed.len()
            }
        };
        let mut crc = Crc::new();
        crc.update(&self.text);
        let size = (HEADER_LEN + body_len + TRAILER_LEN) as u64;
        let mut header = [0u8; HEADER_LEN];
        header[..10].copy_from_slice(&[0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 255]);
        header[10..12].copy_from_slice(&((4 + SUBFIELD_LEN) as u16).to_le_bytes());
        header[12..14].copy_from_slice(if stored { &SUBFIELD_STORED } else { &SUBFIELD });
        header[14..16].copy_from_slice(&(SUBFIELD_LEN as u16).to_le_bytes());
        header[16..24].copy_from_slice(&size.to_le_bytes());
        header[24..32].copy_from_slice(&self.tmin.to_le_bytes());
        header[32..40].copy_from_slice(&self.tmax.to_le_bytes());
        let mut trailer = [0u8; TRAILER_LEN];
        trailer[..4].copy_from_slice(&crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&(self.text.len() as u32).to_le_bytes());
        if stored {
            // One vectored write of the whole block, the text where it lies: written piece by
            // piece, each piece (64 KiB less one byte) fit in a `BufWriter`'s buffer and was
            // copied through it, a sixth of the compactor's time.
            let pieces = self.text.len().div_ceil(STORED_MAX);
            let frames: Vec<[u8; 5]> = self
                .text
                .chunks(STORED_MAX)
                .enumerate()
                .map(|(i, piece)| {
                    let len = piece.len() as u16;
                    let [l0, l1] = len.to_le_bytes();
                    let [n0, n1] = (!len).to_le_bytes();
                    [u8::from(i + 1 == pieces), l0, l1, n0, n1]
                })
                .collect();
            let mut slices = Vec::with_capacity(2 * pieces + 2);
            slices.push(IoSlice::new(&header));
            for (frame, piece) in frames.iter().zip(self.text.chunks(STORED_MAX)) {
                slices.push(IoSlice::new(frame));
                slices.push(IoSlice::new(piece));
            }
            slices.push(IoSlice::new(&trailer));
            crate::wal::write_all_vectored(&mut self.out, &mut slices)?;
        } else {
            self.out.write_all(&header)?;
            self.out.write_all(&self.compressed)?;
            self.out.write_all(&trailer)?;
        }
        self.text.clear();
        Ok(())
    }

    /// Writes the last block and returns the writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.flush_block()?;
        BUFFERS.give(std::mem::take(&mut self.text));
        BUFFERS.give(std::mem::take(&mut self.compressed));
        Ok(self.out)
    }
}

/// Deflates `text` into `out` (cleared first) as one complete deflate stream.
fn compress(deflate: &mut Compress, text: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    deflate.reset();
    out.clear();
    out.reserve(text.len() / 4 + 1024);
    let mut input = text;
    loop {
        let before = deflate.total_in();
        let status = deflate
            .compress_vec(input, out, FlushCompress::Finish)
            .map_err(io::Error::other)?;
        input = &input[(deflate.total_in() - before) as usize..];
        match status {
            Status::StreamEnd => return Ok(()),
            Status::Ok | Status::BufError => out.reserve(out.capacity().max(1 << 16)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    fn write(path: &Path, lines: &[(i64, String)]) {
        let mut w = BlockWriter::new(File::create(path).unwrap());
        for (t, l) in lines {
            w.line(*t, l.as_bytes()).unwrap();
        }
        w.finish().unwrap().sync_all().unwrap();
    }

    fn lines(n: usize, from: i64) -> Vec<(i64, String)> {
        (0..n)
            .map(|i| {
                let t = from + i as i64;
                (t, format!("cpu,host=h{} usage={}.5 {t}", i % 50, i % 97))
            })
            .collect()
    }

    #[test]
    fn a_chunk_reads_as_plain_gzip_and_its_index_gives_each_blocks_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.lp.gz");
        let all = lines(40_000, 1_000); // about 1.4 MB: two blocks
        write(&path, &all);
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(File::open(&path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        let expected: String = all.iter().map(|(_, l)| format!("{l}\n")).collect();
        assert_eq!(text, expected);

        let blocks = index(&path).unwrap().expect("an index");
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].offset, 0);
        assert_eq!(blocks[0].tmin, 1_000);
        assert_eq!(blocks[1].offset, blocks[0].size);
        assert_eq!(blocks[1].tmax, 1_000 + 39_999);
        assert_eq!(blocks[0].tmax + 1, blocks[1].tmin);
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(blocks[0].size + blocks[1].size, len);

        // Each block decodes alone to its own lines.
        let second: Vec<String> =
            BufReader::new(open_range(&path, blocks[1].offset, blocks[1].size).unwrap())
                .lines()
                .map(Result::unwrap)
                .collect();
        assert_eq!(
            second.first().unwrap(),
            &all[(blocks[1].tmin - 1_000) as usize].1
        );
        assert_eq!(second.last().unwrap(), &all.last().unwrap().1);
    }

    #[test]
    fn stored_blocks_read_as_plain_gzip_and_are_marked_in_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let (stored, packed) = (dir.path().join("s"), dir.path().join("p"));
        let all = lines(40_000, 1_000);
        let mut w = BlockWriter::stored(File::create(&stored).unwrap());
        for (t, l) in &all {
            w.line(*t, l.as_bytes()).unwrap();
        }
        w.finish().unwrap();
        write(&packed, &all);
        let expected: String = all.iter().map(|(_, l)| format!("{l}\n")).collect();
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(File::open(&stored).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, expected);
        let blocks = index(&stored).unwrap().expect("an index");
        assert_eq!(blocks.len(), 2);
        assert!(blocks.iter().all(|b| b.stored));
        assert!(first_stored(&stored).unwrap());
        assert!(index(&packed).unwrap().unwrap().iter().all(|b| !b.stored));
        assert!(!first_stored(&packed).unwrap());
        // Stored: the text and a few bytes of framing per block.
        let size = std::fs::metadata(&stored).unwrap().len() as usize;
        assert!(
            size >= expected.len() && size < expected.len() + 1024,
            "{size}"
        );
    }

    /// A writer that takes at most `max` bytes a call, of the first slice only (as
    /// `Write::write_vectored`'s default does).
    struct Trickle {
        out: Vec<u8>,
        max: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.max);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stored_block_is_written_whole_through_short_writes() {
        // About 400 KB in blocks of 300 KB: blocks of several stored pieces.
        let all = lines(12_000, 1_000);
        let expected: String = all.iter().map(|(_, l)| format!("{l}\n")).collect();
        for max in [1, 7_001, 65_540, usize::MAX] {
            let out = Trickle {
                out: Vec::new(),
                max,
            };
            let mut w = BlockWriter::with_block_bytes(out, 300_000, true);
            for (t, l) in &all {
                w.line(*t, l.as_bytes()).unwrap();
            }
            let written = w.finish().unwrap().out;
            let mut text = String::new();
            flate2::read::MultiGzDecoder::new(&written[..])
                .read_to_string(&mut text)
                .unwrap();
            assert_eq!(text, expected, "writes of at most {max} bytes");
        }
    }

    #[test]
    fn copied_blocks_make_a_valid_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        write(&a, &lines(100, 0));
        write(&b, &lines(100, 500));
        let mut w = BlockWriter::new(File::create(&c).unwrap());
        let ia = index(&a).unwrap().unwrap();
        w.raw(&a, ia[0].offset, ia[0].size).unwrap();
        w.line(200, b"mid v=1 200").unwrap();
        let ib = index(&b).unwrap().unwrap();
        w.raw(&b, ib[0].offset, ib[0].size).unwrap();
        w.finish().unwrap();
        let ic = index(&c).unwrap().unwrap();
        assert_eq!(
            ic.iter().map(|b| (b.tmin, b.tmax)).collect::<Vec<_>>(),
            [(0, 99), (200, 200), (500, 599)]
        );
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(File::open(&c).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text.lines().count(), 201);
        assert_eq!(text.lines().nth(100), Some("mid v=1 200"));
    }

    #[test]
    fn a_chunk_without_an_index_or_with_a_bad_header_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.lp.gz");
        let mut e =
            flate2::write::GzEncoder::new(File::create(&plain).unwrap(), Compression::fast());
        e.write_all(b"cpu v=1 1\n").unwrap();
        e.finish().unwrap();
        assert_eq!(index(&plain).unwrap(), None);

        let cut = dir.path().join("cut.lp.gz");
        write(&cut, &lines(10, 0));
        let bytes = std::fs::read(&cut).unwrap();
        std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(index(&cut).unwrap(), None);
    }
}
