//! Wire format of the NBD protocol (fixed newstyle handshake, simple
//! replies, STARTTLS): constants, header encoding and decoding, option payloads.
//! Everything here is pure byte handling so it can be tested without sockets.

use std::io;

/// First word of the server greeting ("NBDMAGIC").
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// Second word of the greeting and magic of every option request ("IHAVEOPT").
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic of every option reply.
pub const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of every transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

/// Handshake flags the server offers.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flags the server understands; any other bit ends the session.
pub const CLIENT_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const CLIENT_NO_ZEROES: u32 = 1 << 1;

/// Transmission flags.
pub const TFLAG_HAS_FLAGS: u16 = 1 << 0;
pub const TFLAG_READ_ONLY: u16 = 1 << 1;
pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
pub const TFLAG_SEND_FUA: u16 = 1 << 3;
pub const TFLAG_SEND_TRIM: u16 = 1 << 5;
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;

/// Option codes.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;

/// Option reply types.
pub const REP_ACK: u32 = 1;
pub const REP_INFO: u32 = 3;
pub const REP_ERR_UNSUP: u32 = (1 << 31) | 1;
pub const REP_ERR_POLICY: u32 = (1 << 31) | 2;
pub const REP_ERR_INVALID: u32 = (1 << 31) | 3;
pub const REP_ERR_TLS_REQD: u32 = (1 << 31) | 5;
pub const REP_ERR_UNKNOWN: u32 = (1 << 31) | 6;
pub const REP_ERR_TOO_BIG: u32 = (1 << 31) | 9;

/// Information types of `NBD_REP_INFO`.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Command types.
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_WRITE_ZEROES: u16 = 6;

/// Command flags.
pub const CMD_FLAG_FUA: u16 = 1 << 0;
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;

/// Error values of simple replies (Linux errno numbers, as the protocol says).
pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const ENOMEM: u32 = 12;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const ESHUTDOWN: u32 = 108;

/// Largest READ or WRITE payload; also the advertised maximum block size.
pub const MAX_PAYLOAD: u32 = 32 << 20;
/// Smallest and preferred block sizes advertised with `NBD_INFO_BLOCK_SIZE`.
pub const MIN_BLOCK: u32 = 1;
pub const PREFERRED_BLOCK: u32 = 4096;
/// Largest option payload accepted during the handshake.
pub const MAX_OPTION_LEN: u32 = 64 << 10;
/// Longest export name the protocol allows.
pub const MAX_NAME_LEN: usize = 4096;

/// Size of a transmission request header.
pub const REQUEST_LEN: usize = 28;
/// Size of a simple reply header.
pub const REPLY_LEN: usize = 16;
/// Size of an option request header.
pub const OPTION_HEADER_LEN: usize = 16;

/// Bytes that were not what the protocol requires at that point.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A header started with the wrong magic number.
    #[error("bad magic {0:#x}")]
    BadMagic(u64),
    /// An option payload is shorter or longer than its fields say.
    #[error("malformed option payload: {0}")]
    Malformed(&'static str),
}

/// Big-endian fields of the wire format at byte `at`.
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(w)
}

/// One transmission request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Command flags (`CMD_FLAG_*`).
    pub flags: u16,
    /// Command type (`CMD_*`).
    pub kind: u16,
    /// Opaque handle echoed in the reply.
    pub handle: u64,
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub length: u32,
}

impl Request {
    /// Decodes a request header.
    pub fn parse(b: &[u8; REQUEST_LEN]) -> Result<Self, WireError> {
        let magic = be32(b, 0);
        if magic != REQUEST_MAGIC {
            return Err(WireError::BadMagic(u64::from(magic)));
        }
        Ok(Self {
            flags: be16(b, 4),
            kind: be16(b, 6),
            handle: be64(b, 8),
            offset: be64(b, 16),
            length: be32(b, 24),
        })
    }

    /// Encodes a request header (the host's own client sends these).
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.kind.to_be_bytes());
        b[8..16].copy_from_slice(&self.handle.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.length.to_be_bytes());
        b
    }
}

/// Writes a simple reply header into `out`.
pub fn encode_reply(out: &mut [u8], error: u32, handle: u64) {
    out[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.to_be_bytes());
    out[8..16].copy_from_slice(&handle.to_be_bytes());
}

/// Whether `[offset, offset + length)` fits in a device of `size` bytes,
/// without overflowing.
pub fn in_range(offset: u64, length: u64, size: u64) -> bool {
    matches!(offset.checked_add(length), Some(end) if end <= size)
}

/// The error value a failed device call is reported with.
pub fn errno_of(err: &io::Error) -> u32 {
    match err.raw_os_error() {
        Some(libc::ENOSPC) => ENOSPC,
        Some(libc::ENOMEM) => ENOMEM,
        Some(libc::EPERM) | Some(libc::EROFS) => EPERM,
        _ if err.kind() == io::ErrorKind::InvalidInput => EINVAL,
        _ => EIO,
    }
}

/// An option request header: which option and how many payload bytes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    /// Option code (`OPT_*`).
    pub option: u32,
    /// Payload length.
    pub length: u32,
}

impl OptionHeader {
    /// Decodes an option request header.
    pub fn parse(b: &[u8; OPTION_HEADER_LEN]) -> Result<Self, WireError> {
        let magic = be64(b, 0);
        if magic != IHAVEOPT {
            return Err(WireError::BadMagic(magic));
        }
        Ok(Self {
            option: be32(b, 8),
            length: be32(b, 12),
        })
    }
}

/// The server greeting: magic, option magic, handshake flags.
pub fn greeting() -> [u8; 18] {
    let mut b = [0u8; 18];
    b[0..8].copy_from_slice(&NBD_MAGIC.to_be_bytes());
    b[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    b[16..18].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    b
}

/// Appends one option reply to `out`.
pub fn push_option_reply(out: &mut Vec<u8>, option: u32, reply: u32, data: &[u8]) {
    out.extend_from_slice(&OPT_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply.to_be_bytes());
    // Option replies built here are bounded by MAX_NAME_LEN plus a few fields.
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

/// Payload of `NBD_INFO_EXPORT`.
pub fn info_export(size: u64, flags: u16) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0..2].copy_from_slice(&INFO_EXPORT.to_be_bytes());
    b[2..10].copy_from_slice(&size.to_be_bytes());
    b[10..12].copy_from_slice(&flags.to_be_bytes());
    b
}

/// Payload of `NBD_INFO_BLOCK_SIZE`.
pub fn info_block_size() -> [u8; 14] {
    let mut b = [0u8; 14];
    b[0..2].copy_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    b[2..6].copy_from_slice(&MIN_BLOCK.to_be_bytes());
    b[6..10].copy_from_slice(&PREFERRED_BLOCK.to_be_bytes());
    b[10..14].copy_from_slice(&MAX_PAYLOAD.to_be_bytes());
    b
}

/// The reply to `NBD_OPT_EXPORT_NAME`: size, flags, and the legacy zero
/// padding unless the client negotiated `NO_ZEROES`.
pub fn export_name_reply(size: u64, flags: u16, no_zeroes: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(134);
    b.extend_from_slice(&size.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    if !no_zeroes {
        b.resize(b.len() + 124, 0);
    }
    b
}

/// Checks an export name: valid UTF-8, no NUL, at most `MAX_NAME_LEN` bytes.
pub fn parse_name(raw: &[u8]) -> Result<&str, WireError> {
    if raw.len() > MAX_NAME_LEN {
        return Err(WireError::Malformed("export name too long"));
    }
    let name = std::str::from_utf8(raw).map_err(|_| WireError::Malformed("name not UTF-8"))?;
    if name.contains('\0') {
        return Err(WireError::Malformed("name contains NUL"));
    }
    Ok(name)
}

/// The payload of `NBD_OPT_INFO` and `NBD_OPT_GO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest<'a> {
    /// Export asked for.
    pub name: &'a str,
    /// Information types asked for.
    pub infos: Vec<u16>,
}

impl<'a> InfoRequest<'a> {
    /// Decodes the payload; every length must match exactly.
    pub fn parse(data: &'a [u8]) -> Result<Self, WireError> {
        if data.len() < 6 {
            return Err(WireError::Malformed("INFO/GO payload shorter than 6 bytes"));
        }
        let name_len = be32(data, 0) as usize;
        let rest = data.len() - 4;
        if name_len > rest.saturating_sub(2) {
            return Err(WireError::Malformed("name length exceeds payload"));
        }
        let name = parse_name(&data[4..4 + name_len])?;
        let count_at = 4 + name_len;
        let count = usize::from(be16(data, count_at));
        let list = &data[count_at + 2..];
        if list.len() != count * 2 {
            return Err(WireError::Malformed(
                "information count does not match payload",
            ));
        }
        let infos = list
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        Ok(Self { name, infos })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_and_rejects_bad_magic() {
        let r = Request {
            flags: CMD_FLAG_FUA,
            kind: CMD_WRITE,
            handle: 0x0102_0304_0506_0708,
            offset: u64::MAX - 5,
            length: 4096,
        };
        let b = r.encode();
        assert_eq!(&b[0..4], &[0x25, 0x60, 0x95, 0x13]);
        assert_eq!(Request::parse(&b), Ok(r));
        let mut bad = b;
        bad[0] ^= 0xff;
        assert!(matches!(Request::parse(&bad), Err(WireError::BadMagic(_))));
    }

    #[test]
    fn reply_header_layout() {
        let mut b = [0u8; REPLY_LEN];
        encode_reply(&mut b, EINVAL, 7);
        assert_eq!(
            b,
            [0x67, 0x44, 0x66, 0x98, 0, 0, 0, 22, 0, 0, 0, 0, 0, 0, 0, 7]
        );
    }

    #[test]
    fn ranges_never_overflow() {
        assert!(in_range(0, 0, 0));
        assert!(in_range(0, 512, 512));
        assert!(in_range(512, 0, 512));
        assert!(!in_range(512, 1, 512));
        assert!(!in_range(u64::MAX, 1, u64::MAX));
        assert!(!in_range(u64::MAX - 1, 4096, 1 << 20));
        assert!(!in_range(1 << 20, u64::MAX, u64::MAX));
    }

    #[test]
    fn option_header_and_greeting() {
        let mut b = [0u8; OPTION_HEADER_LEN];
        b[0..8].copy_from_slice(b"IHAVEOPT");
        b[8..12].copy_from_slice(&OPT_GO.to_be_bytes());
        b[12..16].copy_from_slice(&77u32.to_be_bytes());
        assert_eq!(
            OptionHeader::parse(&b),
            Ok(OptionHeader {
                option: OPT_GO,
                length: 77
            })
        );
        b[3] = b'x';
        assert!(OptionHeader::parse(&b).is_err());
        let g = greeting();
        assert_eq!(&g[0..8], b"NBDMAGIC");
        assert_eq!(&g[8..16], b"IHAVEOPT");
        assert_eq!(&g[16..18], &[0, 3]);
    }

    fn info_payload(name: &[u8], infos: &[u16]) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name);
        d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
        for i in infos {
            d.extend_from_slice(&i.to_be_bytes());
        }
        d
    }

    #[test]
    fn info_request_parses_exactly() {
        let d = info_payload(b"vol-1", &[INFO_NAME, INFO_BLOCK_SIZE]);
        let r = InfoRequest::parse(&d).unwrap();
        assert_eq!(r.name, "vol-1");
        assert_eq!(r.infos, vec![INFO_NAME, INFO_BLOCK_SIZE]);
        let empty = info_payload(b"", &[]);
        assert_eq!(InfoRequest::parse(&empty).unwrap().name, "");
    }

    #[test]
    fn info_request_rejects_inconsistent_lengths() {
        let good = info_payload(b"abc", &[1, 3]);
        for cut in 0..good.len() {
            assert!(InfoRequest::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(InfoRequest::parse(&long).is_err());
        let mut huge_name = good.clone();
        huge_name[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(InfoRequest::parse(&huge_name).is_err());
        let mut huge_count = good;
        huge_count[7..9].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(InfoRequest::parse(&huge_count).is_err());
        assert!(InfoRequest::parse(&info_payload(b"a\0b", &[])).is_err());
        assert!(InfoRequest::parse(&info_payload(&[0xff, 0xfe], &[])).is_err());
        assert!(InfoRequest::parse(&info_payload(&[b'x'; MAX_NAME_LEN + 1], &[])).is_err());
    }

    #[test]
    fn info_and_export_name_payloads() {
        let e = info_export(1 << 30, TFLAG_HAS_FLAGS | TFLAG_READ_ONLY);
        assert_eq!(&e[0..2], &[0, 0]);
        assert_eq!(u64::from_be_bytes(e[2..10].try_into().unwrap()), 1 << 30);
        assert_eq!(&e[10..12], &[0, 3]);
        let bs = info_block_size();
        assert_eq!(&bs[0..2], &[0, 3]);
        assert_eq!(&bs[2..6], &1u32.to_be_bytes());
        assert_eq!(&bs[6..10], &4096u32.to_be_bytes());
        assert_eq!(&bs[10..14], &(32u32 << 20).to_be_bytes());
        assert_eq!(export_name_reply(512, 1, true).len(), 10);
        let padded = export_name_reply(512, 1, false);
        assert_eq!(padded.len(), 134);
        assert!(padded[10..].iter().all(|b| *b == 0));
        let mut out = Vec::new();
        push_option_reply(&mut out, OPT_LIST, REP_ACK, &[]);
        assert_eq!(out.len(), 20);
        assert_eq!(&out[0..8], &OPT_REPLY_MAGIC.to_be_bytes());
        assert_eq!(&out[12..16], &REP_ACK.to_be_bytes());
    }

    #[test]
    fn device_errors_map_to_protocol_errors() {
        assert_eq!(
            errno_of(&io::Error::from_raw_os_error(libc::ENOSPC)),
            ENOSPC
        );
        assert_eq!(errno_of(&io::Error::from_raw_os_error(libc::EIO)), EIO);
        assert_eq!(errno_of(&io::Error::other("boom")), EIO);
        assert_eq!(
            errno_of(&io::Error::new(io::ErrorKind::InvalidInput, "range")),
            EINVAL
        );
    }
}
