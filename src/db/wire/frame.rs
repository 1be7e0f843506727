//! MySQL packet framing over a byte stream: a 3-byte length and a
//! sequence number before each payload, payloads of 16 MiB − 1 bytes
//! continued in the next packet.
//!
//! Reads go through one buffer that is refilled in large reads and reused
//! for the life of the connection, so reading a result row costs no
//! allocation and no system call of its own.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest payload of one packet; a payload this long continues in
/// the next packet.
const MAX_PAYLOAD: usize = 0xFF_FFFF;
/// How much a read asks the socket for at least.
const READ_CHUNK: usize = 64 * 1024;

/// A framed connection.
pub struct Framed<S> {
    io: S,
    /// Bytes read and not yet consumed: `buf[pos..end]`.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// The sequence number the next packet (read or written) carries.
    seq: u8,
    /// The payload of the last packet read.
    payload: Vec<u8>,
    out: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    pub fn new(io: S) -> Self {
        Framed {
            io,
            buf: vec![0; READ_CHUNK],
            pos: 0,
            end: 0,
            seq: 0,
            payload: Vec::new(),
            out: Vec::new(),
        }
    }

    /// The payload of the last packet read.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Starts a command: its first packet has sequence number 0.
    pub fn reset_seq(&mut self) {
        self.seq = 0;
    }

    /// Reads the next packet (all its continuations) into
    /// [`Framed::payload`].
    pub async fn read(&mut self) -> io::Result<()> {
        self.payload.clear();
        loop {
            self.fill(4).await?;
            let h = &self.buf[self.pos..self.pos + 4];
            let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
            if h[3] != self.seq {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "packets out of order: expected sequence number {}, got {}",
                        self.seq, h[3]
                    ),
                ));
            }
            self.seq = self.seq.wrapping_add(1);
            self.pos += 4;
            self.fill(len).await?;
            self.payload
                .extend_from_slice(&self.buf[self.pos..self.pos + len]);
            self.pos += len;
            if len < MAX_PAYLOAD {
                return Ok(());
            }
        }
    }

    /// Makes at least `n` unread bytes available.
    async fn fill(&mut self, n: usize) -> io::Result<()> {
        while self.end - self.pos < n {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            }
            let want = (self.end + n).max(READ_CHUNK);
            if self.buf.len() < want {
                self.buf.resize(want, 0);
            }
            let got = self.io.read(&mut self.buf[self.end..]).await?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
            self.end += got;
        }
        Ok(())
    }

    /// Writes `payload` as one packet (continued as the protocol says when
    /// it is 16 MiB or longer) and flushes it.
    pub async fn write(&mut self, payload: &[u8]) -> io::Result<()> {
        self.out.clear();
        let mut rest = payload;
        loop {
            let n = rest.len().min(MAX_PAYLOAD);
            // n < 2^24: the three low bytes are the whole length
            let len = (n as u32).to_le_bytes();
            self.out
                .extend_from_slice(&[len[0], len[1], len[2], self.seq]);
            self.seq = self.seq.wrapping_add(1);
            self.out.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if n < MAX_PAYLOAD {
                break;
            }
        }
        self.io.write_all(&self.out).await?;
        self.io.flush().await
    }

    /// Writes the payload `fill` appends to an empty buffer as one packet
    /// (as [`Framed::write`] does), building it in place: no copy of the
    /// payload when it is shorter than 16 MiB.
    pub async fn write_with(&mut self, fill: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        self.out.clear();
        self.out.extend_from_slice(&[0; 4]);
        fill(&mut self.out);
        let n = self.out.len() - 4;
        if n >= MAX_PAYLOAD {
            let payload = self.out.split_off(4);
            return self.write(&payload).await;
        }
        // n < 2^24: the three low bytes are the whole length
        let len = (n as u32).to_le_bytes();
        self.out[..4].copy_from_slice(&[len[0], len[1], len[2], self.seq]);
        self.seq = self.seq.wrapping_add(1);
        self.io.write_all(&self.out).await?;
        self.io.flush().await
    }

    /// The stream, for closing it.
    pub fn into_inner(self) -> S {
        self.io
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload of exactly 16 MiB − 1 bytes is followed by an empty
    /// packet; reading joins them back.
    #[tokio::test]
    async fn a_payload_of_the_maximum_length_round_trips() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let payload = vec![7u8; MAX_PAYLOAD];
        let mut w = Framed::new(a);
        let mut r = Framed::new(b);
        let sent = payload.clone();
        let writer = tokio::spawn(async move { w.write(&sent).await.map(|_| w) });
        r.read().await.unwrap();
        assert_eq!(r.payload().len(), MAX_PAYLOAD);
        assert!(r.payload() == &payload[..]);
        writer.await.unwrap().unwrap();
    }

    /// Built in place or copied, a payload goes out the same, also at
    /// the maximum length (then followed by an empty packet).
    #[tokio::test]
    async fn a_payload_built_in_place_reads_back() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = Framed::new(a);
        let mut r = Framed::new(b);
        let writer = tokio::spawn(async move {
            w.write_with(|b| b.extend_from_slice(b"hello"))
                .await
                .unwrap();
            w.write_with(|b| b.resize(b.len() + MAX_PAYLOAD, 3))
                .await
                .unwrap();
            w.write_with(|_| {}).await.unwrap();
            w
        });
        r.read().await.unwrap();
        assert_eq!(r.payload(), b"hello");
        r.read().await.unwrap();
        assert_eq!(r.payload().len(), MAX_PAYLOAD);
        assert!(r.payload().iter().all(|&x| x == 3));
        r.read().await.unwrap();
        assert_eq!(r.payload(), b"");
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn small_packets_come_back_in_order() {
        let (a, b) = tokio::io::duplex(64);
        let mut w = Framed::new(a);
        let mut r = Framed::new(b);
        let writer = tokio::spawn(async move {
            for p in [&b"one"[..], b"", b"three"] {
                w.write(p).await.unwrap();
            }
            w
        });
        for want in [&b"one"[..], b"", b"three"] {
            r.read().await.unwrap();
            assert_eq!(r.payload(), want);
        }
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_packet_out_of_sequence_is_an_error() {
        let (a, b) = tokio::io::duplex(64);
        let mut w = Framed::new(a);
        let mut r = Framed::new(b);
        w.write(b"x").await.unwrap();
        w.reset_seq();
        w.write(b"y").await.unwrap();
        r.read().await.unwrap();
        let e = r.read().await.unwrap_err();
        assert!(e.to_string().contains("out of order"), "{e}");
    }
}
