//! The two halves of an NBD connection's byte stream, plaintext or TLS.
//!
//! Transmission is multi-threaded: one thread at a time holds the read
//! side and blocks on the socket for the next request, while others send
//! replies under the connection's writer mutex. A rustls
//! `ServerConnection` needs `&mut` both to decrypt and to encrypt, so the
//! TLS halves share it behind a mutex that is never held across a blocking
//! socket call:
//!
//! - [`TlsReader`] reads ciphertext from the socket *without* the lock into
//!   a buffer of its own, then locks, feeds the records to rustls and takes
//!   out plaintext. A reader waiting for the next request thus never stalls
//!   a reply.
//! - [`TlsWriter`] (already serialised by the connection's writer mutex)
//!   locks, encrypts at most [`SEAL_CHUNK`] of plaintext into a vector,
//!   unlocks, and sends the vector; large read replies go out in several
//!   such rounds so the reader is never locked out for long.
//!
//! Both block only on the raw TCP socket, so the reaper's `shutdown(2)` of
//! that socket wakes them exactly as it wakes plaintext connections. The
//! plaintext halves are the buffered socket and the socket itself, as
//! before, so plaintext pays one `match` per call for TLS's existence.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::ServerConnection;

/// Ciphertext read from the socket in one call at most (four full TLS
/// records).
const CIPHER_READ: usize = 64 << 10;
/// Plaintext encrypted under one hold of the TLS lock at most; the
/// writer keeps a vector of about this size, so a TLS connection holds
/// some 150 KiB beside the buffer budget (this, `CIPHER_READ`, rustls'
/// own buffers).
const SEAL_CHUNK: usize = 64 << 10;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes any rustls failure an I/O error of the connection.
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The read side of a connection.
pub(crate) enum ReadHalf {
    Plain(BufReader<TcpStream>),
    Tls(TlsReader),
}

/// The write side of a connection.
pub(crate) enum WriteHalf {
    Plain(TcpStream),
    Tls(TlsWriter),
}

impl Read for ReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(r) => r.read(buf),
            Self::Tls(r) => r.read(buf),
        }
    }
}

impl Write for WriteHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(w) => w.write(buf),
            Self::Tls(w) => w.write_all(buf).map(|()| buf.len()),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(w) => w.write_all(buf),
            Self::Tls(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(w) => w.flush(),
            // Every write is sent before it returns.
            Self::Tls(_) => Ok(()),
        }
    }
}

impl ReadHalf {
    /// Fills `buf` exactly, for a payload: plaintext takes what the
    /// stream's buffer already holds and reads the rest straight from the
    /// socket, never through the buffer, so a payload's bytes are copied
    /// once (by the kernel) and the next request's header stays unread.
    pub(crate) fn read_payload_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        match self {
            Self::Plain(r) => {
                let buffered = r.buffer();
                let n = buffered.len().min(buf.len());
                buf[..n].copy_from_slice(&buffered[..n]);
                r.consume(n);
                r.get_mut().read_exact(&mut buf[n..])
            }
            Self::Tls(r) => r.read_exact(buf),
        }
    }
}

impl WriteHalf {
    /// Ends the connection politely where the protocol has a way: TLS
    /// sends its `close_notify`. Never blocks: the client may have stopped
    /// reading, and then it simply does not get the alert.
    pub(crate) fn finish(&mut self) {
        if let Self::Tls(w) = self {
            w.close_notify();
        }
    }
}

/// Runs the server side of a TLS handshake on `stream` (nothing of the
/// client's may be buffered elsewhere) and returns the TLS halves. The
/// handshake deadline is the reaper's: it shuts `stream` when it passes.
pub(crate) fn accept(
    stream: TcpStream,
    config: &Arc<rustls::ServerConfig>,
) -> io::Result<(ReadHalf, WriteHalf)> {
    let mut conn = ServerConnection::new(Arc::clone(config)).map_err(tls_error)?;
    // What is written is drained at once (in SEAL_CHUNK rounds), so the
    // send buffer never holds more than one round; rustls' default limit
    // would make a larger `write_all` fail instead.
    conn.set_buffer_limit(None);
    let mut sock = &stream;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    while conn.wants_write() {
        conn.write_tls(&mut sock)?;
    }
    let conn = Arc::new(Mutex::new(conn));
    let writer = TlsWriter {
        sock: stream.try_clone()?,
        conn: Arc::clone(&conn),
        cipher: Vec::new(),
    };
    let reader = TlsReader {
        sock: stream,
        conn,
        cipher: vec![0; CIPHER_READ].into_boxed_slice(),
        start: 0,
        end: 0,
    };
    Ok((ReadHalf::Tls(reader), WriteHalf::Tls(writer)))
}

/// The read side of a TLS connection.
pub(crate) struct TlsReader {
    sock: TcpStream,
    conn: Arc<Mutex<ServerConnection>>,
    /// Ciphertext read but not yet given to rustls: `cipher[start..end]`.
    cipher: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Read for TlsReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            {
                let mut conn = lock(&self.conn);
                match conn.reader().read(out) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if self.start < self.end {
                    // rustls takes about a record per call; the rest
                    // waits here until its plaintext has been read.
                    let fed = conn.read_tls(&mut &self.cipher[self.start..self.end])?;
                    if fed == 0 {
                        return Ok(0);
                    }
                    self.start += fed;
                    conn.process_new_packets().map_err(tls_error)?;
                    continue;
                }
            }
            // Nothing left to decrypt: wait for the client, unlocked, so
            // replies keep going out meanwhile.
            let n = self.sock.read(&mut self.cipher)?;
            if n == 0 {
                return Ok(0);
            }
            self.start = 0;
            self.end = n;
        }
    }
}

/// The write side of a TLS connection; the connection's writer mutex
/// keeps its records in order.
pub(crate) struct TlsWriter {
    sock: TcpStream,
    conn: Arc<Mutex<ServerConnection>>,
    /// Ciphertext of the round being sent; kept for reuse.
    cipher: Vec<u8>,
}

impl TlsWriter {
    fn write_all(&mut self, plain: &[u8]) -> io::Result<()> {
        for chunk in plain.chunks(SEAL_CHUNK) {
            self.seal(|conn| conn.writer().write_all(chunk))?;
            self.sock.write_all(&self.cipher)?;
        }
        Ok(())
    }

    /// Lets `produce` queue records, then moves them into `self.cipher`,
    /// all under one hold of the lock.
    fn seal(
        &mut self,
        produce: impl FnOnce(&mut ServerConnection) -> io::Result<()>,
    ) -> io::Result<()> {
        self.cipher.clear();
        let mut conn = lock(&self.conn);
        produce(&mut conn)?;
        // Also carries anything the reader's side queued (a key update's
        // answer), in the order rustls made it.
        while conn.wants_write() {
            conn.write_tls(&mut self.cipher)?;
        }
        Ok(())
    }

    fn close_notify(&mut self) {
        let sealed = self.seal(|conn| {
            conn.send_close_notify();
            Ok(())
        });
        if sealed.is_ok() && self.sock.set_nonblocking(true).is_ok() {
            let _ = self.sock.write_all(&self.cipher);
        }
    }
}
