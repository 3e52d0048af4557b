//! A byte stream that refuses replies no Redis server sends to failprobe: a line (simple string,
//! error, length header) over 64 KiB, a bulk string over 16 MiB, one reply over 64 MiB,
//! aggregates nested deeper than 32. The client library buffers a reply until it is complete;
//! without these bounds a broken or hostile server (a 4 GiB bulk length followed by data, an
//! endless line) would make failprobe's memory grow for as long as it sends. failprobe's own
//! replies are small: the largest is a trial's write log (LRANGE), a few bytes per write.
//!
//! The guard follows only the RESP framing (type byte, length, CRLF), never the values.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const MAX_LINE: usize = 64 * 1024;
const MAX_BULK: u64 = 16 << 20;
const MAX_REPLY: u64 = 64 << 20;
const MAX_DEPTH: usize = 32;

#[derive(Debug)]
enum Frame {
    /// Reading a type byte and the rest of its line (`line` bytes so far).
    Header { line: Vec<u8> },
    /// Skipping a bulk body and its CRLF.
    Body { left: u64 },
}

/// Tracks where the reply stream is; refuses what is over the bounds.
#[derive(Debug)]
pub(crate) struct Framing {
    frame: Frame,
    /// Elements still expected by each open aggregate.
    open: Vec<u64>,
    /// Bytes of the reply under way.
    reply_bytes: u64,
}

impl Default for Framing {
    fn default() -> Self {
        Self { frame: Frame::Header { line: Vec::new() }, open: Vec::new(), reply_bytes: 0 }
    }
}

fn refuse(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("server reply refused: {what}"))
}

impl Framing {
    /// Feeds bytes as they arrive; an error ends the connection.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        self.reply_bytes += bytes.len() as u64;
        if self.reply_bytes > MAX_REPLY {
            return Err(refuse(format!("one reply over {MAX_REPLY} bytes")));
        }
        while !bytes.is_empty() {
            match &mut self.frame {
                Frame::Body { left } => {
                    let take = (*left).min(bytes.len() as u64);
                    *left -= take;
                    bytes = &bytes[take as usize..];
                    if *left == 0 {
                        self.frame = Frame::Header { line: Vec::new() };
                        self.element_done();
                    }
                }
                Frame::Header { line } => {
                    let end = bytes.iter().position(|b| *b == b'\n');
                    let take = end.map(|i| i + 1).unwrap_or(bytes.len());
                    if line.len() + take > MAX_LINE {
                        return Err(refuse(format!("a line over {MAX_LINE} bytes")));
                    }
                    line.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if end.is_some() {
                        let header = std::mem::take(line);
                        self.header(&header)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn header(&mut self, line: &[u8]) -> io::Result<()> {
        let Some((&kind, rest)) = line.split_first() else { return Ok(()) };
        let number = || -> io::Result<i64> {
            std::str::from_utf8(rest)
                .ok()
                .and_then(|t| t.trim_end().parse().ok())
                .ok_or_else(|| refuse(format!("a malformed length after `{}`", kind as char)))
        };
        match kind {
            b'$' | b'!' | b'=' => {
                let n = number()?;
                if n < 0 {
                    self.element_done();
                } else if n as u64 > MAX_BULK {
                    return Err(refuse(format!("a {n}-byte bulk string (over {MAX_BULK})")));
                } else {
                    self.frame = Frame::Body { left: n as u64 + 2 };
                }
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = number()?;
                let elements = if matches!(kind, b'%' | b'|') { n.saturating_mul(2) } else { n };
                if elements <= 0 {
                    self.element_done();
                } else if self.open.len() >= MAX_DEPTH {
                    return Err(refuse(format!("aggregates nested deeper than {MAX_DEPTH}")));
                } else {
                    self.open.push(elements as u64);
                }
            }
            _ => self.element_done(),
        }
        Ok(())
    }

    /// One element complete: close every aggregate it completes; a top-level reply resets the
    /// per-reply count.
    fn element_done(&mut self) {
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return;
            }
            self.open.pop();
        }
        self.reply_bytes = 0;
    }
}

/// `S` with every byte read checked by `Framing`.
pub(crate) struct Guarded<S> {
    inner: S,
    framing: Framing,
}

impl<S> Guarded<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner, framing: Framing::default() }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = &buf.filled()[before..];
                Poll::Ready(this.framing.feed(fresh))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_replies_pass_in_any_split() {
        let replies: &[u8] = b"+OK\r\n:12\r\n$5\r\nhello\r\n$-1\r\n*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n\
            *2\r\n*2\r\n:1\r\n:2\r\n$3\r\nabc\r\n%1\r\n+k\r\n+v\r\n_\r\n";
        for split in 1..replies.len() {
            let mut f = Framing::default();
            f.feed(&replies[..split]).unwrap();
            f.feed(&replies[split..]).unwrap();
            assert!(f.open.is_empty() && matches!(&f.frame, Frame::Header { line } if line.is_empty()), "{split}");
            assert_eq!(f.reply_bytes, 0);
        }
    }

    #[test]
    fn hostile_replies_are_refused() {
        assert!(Framing::default().feed(b"$4294967296\r\n").is_err(), "4 GiB bulk");
        let mut endless = Framing::default();
        let chunk = vec![b'a'; 8192];
        let mut refused = false;
        endless.feed(b"+").unwrap();
        for _ in 0..16 {
            if endless.feed(&chunk).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "an endless line");
        assert!(Framing::default().feed(&b"*1\r\n".repeat(40)).is_err(), "nesting");
        assert!(Framing::default().feed(b"*x\r\n").is_err(), "a malformed length");
        let mut many = Framing::default();
        many.feed(b"*100000000\r\n").unwrap();
        let element = b"$1000\r\n".iter().chain(&[b'x'; 1000]).chain(b"\r\n").copied().collect::<Vec<u8>>();
        let refused = (0..100_000).any(|_| many.feed(&element).is_err());
        assert!(refused, "an endless array");
    }
}
