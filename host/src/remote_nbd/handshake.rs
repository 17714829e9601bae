//! The client side of the fixed newstyle handshake: read the greeting,
//! choose an export with `NBD_OPT_GO`, learn its size and flags.

use std::io::{Read, Write};

use super::RemoteError;
use crate::nbd::proto::*;

/// What the server said of the chosen export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExportInfo {
    pub(crate) size: u64,
    pub(crate) flags: u16,
}

/// Longest option reply the client reads; servers send a few dozen bytes.
const MAX_REPLY: u32 = 64 << 10;

/// Runs the handshake on a fresh connection and opens `export`.
pub(crate) fn open<S: Read + Write>(s: &mut S, export: &str) -> Result<ExportInfo, RemoteError> {
    let protocol = |m: &str| RemoteError::Protocol(m.to_owned());
    let mut greeting = [0u8; 18];
    s.read_exact(&mut greeting)?;
    if be64(&greeting, 0) != NBD_MAGIC || be64(&greeting, 8) != IHAVEOPT {
        return Err(protocol("not a newstyle NBD server"));
    }
    let server_flags = be16(&greeting, 16);
    if server_flags & FLAG_FIXED_NEWSTYLE == 0 {
        return Err(protocol("the server does not speak fixed newstyle"));
    }
    let mut client_flags = CLIENT_FIXED_NEWSTYLE;
    if server_flags & FLAG_NO_ZEROES != 0 {
        client_flags |= CLIENT_NO_ZEROES;
    }
    if export.len() > MAX_NAME_LEN {
        return Err(RemoteError::BadExportName);
    }
    let mut out = client_flags.to_be_bytes().to_vec();
    out.extend_from_slice(&IHAVEOPT.to_be_bytes());
    out.extend_from_slice(&OPT_GO.to_be_bytes());
    // name length, name, one information request: the block sizes.
    out.extend_from_slice(&(4 + export.len() as u32 + 2 + 2).to_be_bytes());
    out.extend_from_slice(&(export.len() as u32).to_be_bytes());
    out.extend_from_slice(export.as_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    s.write_all(&out)?;
    s.flush()?;

    let mut info = None;
    loop {
        let mut header = [0u8; 20];
        s.read_exact(&mut header)?;
        if be64(&header, 0) != OPT_REPLY_MAGIC || be32(&header, 8) != OPT_GO {
            return Err(protocol("an option reply that does not answer NBD_OPT_GO"));
        }
        let kind = be32(&header, 12);
        let len = be32(&header, 16);
        if len > MAX_REPLY {
            return Err(protocol("an option reply over 64 KiB"));
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data)?;
        match kind {
            REP_ACK => break,
            REP_INFO if data.len() >= 12 && be16(&data, 0) == INFO_EXPORT => {
                info = Some(ExportInfo {
                    size: be64(&data, 2),
                    flags: be16(&data, 10),
                });
            }
            REP_INFO => {}
            error if error & (1 << 31) != 0 => {
                return Err(RemoteError::Refused {
                    code: error,
                    message: String::from_utf8_lossy(&data).into_owned(),
                });
            }
            other => {
                return Err(RemoteError::Protocol(format!(
                    "option reply type {other:#x}"
                )));
            }
        }
    }
    info.ok_or_else(|| protocol("NBD_OPT_GO succeeded without the export's size"))
}
