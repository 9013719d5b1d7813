//! Newline-delimited frames: one JSON-RPC message per line, `\r\n` accepted, length capped.
//!
//! The reader never holds more than the cap in memory: an overlong line is skipped to its newline
//! and reported as [`Frame::Oversized`], so the connection keeps working after it.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One line, without its `\n` or `\r\n`.
    Line(Vec<u8>),
    /// A line longer than the cap, discarded; `bytes` is how long it was. Its first and last
    /// [`EDGE`] bytes are kept: enough to find the id of a response, so it can still be answered.
    Oversized {
        bytes: usize,
        head: Vec<u8>,
        tail: Vec<u8>,
    },
}

/// How much of each end of an oversized line is kept.
pub const EDGE: usize = 256;

pub struct FrameReader<R> {
    inner: R,
    max: usize,
}

impl<R: AsyncBufRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        FrameReader { inner, max }
    }

    /// The next non-blank line. `Ok(None)` on a clean end of stream; an error if the stream ends
    /// in the middle of a line.
    pub async fn read_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            let mut line = Vec::new();
            let mut oversized: Option<usize> = None;
            let (mut head, mut tail) = (Vec::new(), Vec::new());
            loop {
                let buf = self.inner.fill_buf().await?;
                if buf.is_empty() {
                    let pending = oversized.unwrap_or(line.len());
                    if pending == 0 {
                        return Ok(None);
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("stream ended inside a message ({pending} bytes without a trailing newline)"),
                    ));
                }
                let (chunk, used, done) = match memchr::memchr(b'\n', buf) {
                    Some(i) => (&buf[..i], i + 1, true),
                    None => (buf, buf.len(), false),
                };
                match &mut oversized {
                    Some(total) => {
                        *total += chunk.len();
                        let room = EDGE - head.len();
                        head.extend_from_slice(&chunk[..chunk.len().min(room)]);
                        keep_tail(&mut tail, chunk);
                    }
                    None if line.len() + chunk.len() > self.max => {
                        oversized = Some(line.len() + chunk.len());
                        keep_tail(&mut tail, &line);
                        keep_tail(&mut tail, chunk);
                        line.truncate(EDGE);
                        let room = EDGE - line.len();
                        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
                        head = std::mem::take(&mut line);
                    }
                    None => line.extend_from_slice(chunk),
                }
                self.inner.consume(used);
                if done {
                    break;
                }
            }
            if let Some(bytes) = oversized {
                if tail.last() == Some(&b'\r') {
                    tail.pop();
                }
                return Ok(Some(Frame::Oversized { bytes, head, tail }));
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            // Blank lines carry no message; skipping them is what every MCP SDK does.
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(Frame::Line(line)));
        }
    }
}

/// Appends `more` to `tail`, keeping only the last [`EDGE`] bytes.
fn keep_tail(tail: &mut Vec<u8>, more: &[u8]) {
    let more = &more[more.len().saturating_sub(EDGE)..];
    tail.extend_from_slice(more);
    let excess = tail.len().saturating_sub(EDGE);
    tail.drain(..excess);
}

/// Writes one frame (which must not contain a newline) followed by `\n`, and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(out: &mut W, frame: &[u8]) -> io::Result<()> {
    // A small frame goes out in one write (one wake-up for the reader); a big one is written as
    // it is, then the newline: copying a 16 MiB result only to append one byte would double the
    // memory it takes.
    if frame.len() <= SMALL_FRAME {
        let mut buf = Vec::with_capacity(frame.len() + 1);
        buf.extend_from_slice(frame);
        buf.push(b'\n');
        out.write_all(&buf).await?;
    } else {
        out.write_all(frame).await?;
        out.write_all(b"\n").await?;
    }
    out.flush().await
}

/// Frames up to this size are copied to append their newline.
const SMALL_FRAME: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], max: usize) -> Vec<io::Result<Option<Frame>>> {
        let mut reader = FrameReader::new(tokio::io::BufReader::with_capacity(4, input), max);
        let mut out = Vec::new();
        loop {
            let f = reader.read_frame().await;
            let stop = !matches!(f, Ok(Some(_)));
            out.push(f);
            if stop {
                return out;
            }
        }
    }

    fn line(s: &str) -> Frame {
        Frame::Line(s.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn splits_lines_and_accepts_crlf() {
        let got = frames(b"{\"a\":1}\r\n\n  \r\n{\"b\":2}\n", 100).await;
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap(), &Some(line("{\"a\":1}")));
        assert_eq!(got[1].as_ref().unwrap(), &Some(line("{\"b\":2}")));
        assert!(matches!(got[2], Ok(None)));
    }

    #[tokio::test]
    async fn overlong_lines_are_skipped_not_fatal() {
        let got = frames(b"0123456789abcdef\nok\n", 10).await;
        assert_eq!(
            got[0].as_ref().unwrap(),
            &Some(Frame::Oversized {
                bytes: 16,
                head: b"0123456789abcdef".to_vec(),
                tail: b"0123456789abcdef".to_vec(),
            })
        );
        assert_eq!(got[1].as_ref().unwrap(), &Some(line("ok")));
        // Long lines keep only their two ends.
        let mut long = vec![b'h'; 300];
        long.extend(vec![b'm'; 5000]);
        long.extend(vec![b't'; 300]);
        long.push(b'\n');
        let long_got = frames(&long, 1000).await;
        let Ok(Some(Frame::Oversized { bytes, head, tail })) = &long_got[0] else {
            panic!("{:?}", long_got[0])
        };
        assert_eq!(
            (*bytes, head.as_slice(), tail.as_slice()),
            (5600, &[b'h'; EDGE][..], &[b't'; EDGE][..])
        );
        // Exactly at the cap is fine.
        let got = frames(b"0123456789\n", 10).await;
        assert_eq!(got[0].as_ref().unwrap(), &Some(line("0123456789")));
    }

    #[tokio::test]
    async fn cut_off_line_is_an_error() {
        let got = frames(b"{\"a\":1}\n{\"b\"", 100).await;
        assert_eq!(got[0].as_ref().unwrap(), &Some(line("{\"a\":1}")));
        assert_eq!(
            got[1].as_ref().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[tokio::test]
    async fn empty_stream_is_clean_eof() {
        assert!(matches!(frames(b"", 10).await[0], Ok(None)));
    }

    #[tokio::test]
    async fn writes_lf_terminated() {
        let mut out = Vec::new();
        write_frame(&mut out, b"{}").await.unwrap();
        assert_eq!(out, b"{}\n");
    }
}
