//! The fixed newstyle handshake: greeting, client flags, and option haggling
//! until the client picks an export (`NBD_OPT_GO` or `NBD_OPT_EXPORT_NAME`),
//! aborts, or breaks the protocol. `NBD_OPT_STARTTLS` pauses haggling for
//! the TLS handshake (run by the caller); it then goes on over TLS in the
//! same [`Session`]. When TLS is required, every option but STARTTLS and
//! ABORT is refused with `NBD_REP_ERR_TLS_REQD` until then.

use std::io::{self, Read, Write};
use std::sync::Arc;

use super::export::{ExportSlot, ExportTable, Place};
use super::proto::*;
use super::watch::Activity;
use crate::config::NbdTlsMode;

/// Options accepted in one handshake; listing every export and asking for
/// information on each stays far below this.
const MAX_OPTIONS: usize = 16_384;

/// The export a client chose, with the transmission flags it was given.
pub(crate) struct Negotiated {
    pub(crate) slot: Arc<ExportSlot>,
    pub(crate) flags: u16,
    /// The connection's place among the export's, taken before the reply
    /// went out so that no other handshake can take it meanwhile.
    pub(crate) place: Place,
}

/// Why a handshake ended without an export.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// The socket failed or the client went away.
    #[error("connection I/O: {0}")]
    Io(#[from] io::Error),
    /// The client sent bytes that are not NBD.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The client set flags the server did not offer.
    #[error("client sent unknown flags {0:#x}")]
    ClientFlags(u32),
    /// An option payload over the limit; its bytes cannot be skipped safely.
    #[error("option {option} carries {length} bytes, more than the limit")]
    OptionTooLong { option: u32, length: u32 },
    /// `NBD_OPT_EXPORT_NAME` named an export that does not exist (this
    /// option has no way to report an error but closing).
    #[error("client asked for unknown export {0:?}")]
    UnknownExport(String),
    /// `NBD_OPT_EXPORT_NAME` chose an export that has as many connections
    /// as it may.
    #[error("export {0} has as many connections as it may")]
    ExportFull(String),
    /// The client kept sending options.
    #[error("client sent more than {MAX_OPTIONS} options")]
    TooManyOptions,
    /// `NBD_OPT_EXPORT_NAME` before TLS on a server that requires it.
    #[error("client chose an export without TLS, which this server requires")]
    TlsRequired,
    /// The client sent bytes behind `NBD_OPT_STARTTLS` before its reply:
    /// they would have been read as if they came over TLS.
    #[error("client sent data after NBD_OPT_STARTTLS before the reply")]
    StartTlsPipelined,
    /// The TLS handshake failed.
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
}

impl HandshakeError {
    /// Whether this is the client simply going away, not a protocol fault.
    pub(crate) fn is_disconnect(&self) -> bool {
        matches!(self, Self::Io(e) | Self::Tls(e) if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        ))
    }
}

/// Transmission flags of an export.
pub(crate) fn transmission_flags(read_only: bool) -> u16 {
    let base = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_CAN_MULTI_CONN;
    if read_only {
        base | TFLAG_READ_ONLY
    } else {
        base | TFLAG_SEND_FUA | TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES
    }
}

/// How option haggling ended.
pub(crate) enum Outcome {
    /// The client chose an export.
    Chosen(Negotiated),
    /// The client aborted politely.
    Aborted,
    /// `NBD_OPT_STARTTLS` was acknowledged: the TLS handshake comes next,
    /// then haggling goes on over TLS ([`haggle`] again, same session).
    StartTls,
}

/// What one handshake knows across the switch to TLS.
pub(crate) struct Session {
    /// Whether the server offers or requires TLS.
    tls: NbdTlsMode,
    /// An export with this many connections cannot be chosen.
    per_export: usize,
    /// The client asked for no zero padding.
    no_zeroes: bool,
    /// `NBD_OPT_STARTTLS` was acknowledged.
    tls_active: bool,
    /// Options read so far, before and after TLS.
    options: usize,
    /// The connection's activity, marked attached as soon as an export is
    /// chosen: from then on the server must not close it as a handshake.
    activity: Option<Arc<Activity>>,
}

impl Session {
    pub(crate) fn new(tls: NbdTlsMode, per_export: usize) -> Self {
        Self {
            tls,
            per_export,
            no_zeroes: false,
            tls_active: false,
            options: 0,
            activity: None,
        }
    }

    /// The same, marking `activity` attached once an export is chosen.
    pub(crate) fn watched(tls: NbdTlsMode, per_export: usize, activity: Arc<Activity>) -> Self {
        Self {
            activity: Some(activity),
            ..Self::new(tls, per_export)
        }
    }

    /// An export was chosen; its reply goes out next.
    fn chose(&self) {
        if let Some(a) = &self.activity {
            a.attached();
        }
    }

    /// Whether options other than STARTTLS and ABORT must wait for TLS.
    fn tls_missing(&self) -> bool {
        self.tls == NbdTlsMode::Required && !self.tls_active
    }
}

/// Sends the greeting and reads the client's flags.
pub(crate) fn greet<R: Read, W: Write>(
    r: &mut R,
    w: &mut W,
    session: &mut Session,
) -> Result<(), HandshakeError> {
    w.write_all(&greeting())?;
    w.flush()?;
    let mut word = [0u8; 4];
    r.read_exact(&mut word)?;
    let client_flags = u32::from_be_bytes(word);
    if client_flags & !(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES) != 0 {
        return Err(HandshakeError::ClientFlags(client_flags));
    }
    session.no_zeroes = client_flags & CLIENT_NO_ZEROES != 0;
    Ok(())
}

/// Greets and haggles: the whole handshake of a plaintext connection, or
/// its part up to `NBD_OPT_STARTTLS`.
pub(crate) fn negotiate<R: Read, W: Write>(
    r: &mut R,
    w: &mut W,
    table: &ExportTable,
    session: &mut Session,
) -> Result<Outcome, HandshakeError> {
    greet(r, w, session)?;
    haggle(r, w, table, session)
}

/// Option haggling until the client picks an export, aborts, switches to
/// TLS or breaks the protocol.
pub(crate) fn haggle<R: Read, W: Write>(
    r: &mut R,
    w: &mut W,
    table: &ExportTable,
    session: &mut Session,
) -> Result<Outcome, HandshakeError> {
    let mut data = Vec::new();
    let mut out = Vec::new();
    while session.options < MAX_OPTIONS {
        session.options += 1;
        let mut header = [0u8; OPTION_HEADER_LEN];
        r.read_exact(&mut header)?;
        let opt = OptionHeader::parse(&header)?;
        out.clear();
        if opt.length > MAX_OPTION_LEN {
            push_option_reply(
                &mut out,
                opt.option,
                REP_ERR_TOO_BIG,
                b"option payload too large",
            );
            // The session ends either way; the reply is a courtesy.
            let _ = w.write_all(&out).and_then(|()| w.flush());
            return Err(HandshakeError::OptionTooLong {
                option: opt.option,
                length: opt.length,
            });
        }
        data.clear();
        data.resize(opt.length as usize, 0);
        r.read_exact(&mut data)?;

        match opt.option {
            OPT_STARTTLS => {
                if starttls(session, &data, &mut out) {
                    w.write_all(&out)?;
                    w.flush()?;
                    return Ok(Outcome::StartTls);
                }
            }
            OPT_ABORT => {
                push_option_reply(&mut out, OPT_ABORT, REP_ACK, &[]);
                // The client may already have closed; it owes us nothing.
                let _ = w.write_all(&out).and_then(|()| w.flush());
                return Ok(Outcome::Aborted);
            }
            // This option has no error reply: closing is the answer.
            OPT_EXPORT_NAME if session.tls_missing() => return Err(HandshakeError::TlsRequired),
            other if session.tls_missing() => {
                push_option_reply(
                    &mut out,
                    other,
                    REP_ERR_TLS_REQD,
                    b"this server requires TLS: send NBD_OPT_STARTTLS first",
                );
            }
            OPT_EXPORT_NAME => {
                let name = parse_name(&data)?;
                let Some(slot) = table.lookup(name) else {
                    return Err(HandshakeError::UnknownExport(name.to_owned()));
                };
                let Some(place) = slot.reserve(session.per_export) else {
                    return Err(HandshakeError::ExportFull(slot.label()));
                };
                session.chose();
                let flags = transmission_flags(slot.read_only());
                w.write_all(&export_name_reply(slot.size(), flags, session.no_zeroes))?;
                w.flush()?;
                return Ok(Outcome::Chosen(Negotiated { slot, flags, place }));
            }
            OPT_LIST if !data.is_empty() => {
                push_option_reply(&mut out, OPT_LIST, REP_ERR_INVALID, b"LIST takes no data");
            }
            OPT_LIST => {
                // An export name is the credential that opens it: listing
                // them would hand every volume to anyone who connects. The
                // list is always empty.
                push_option_reply(&mut out, OPT_LIST, REP_ACK, &[]);
            }
            OPT_INFO | OPT_GO => {
                let per_export = session.per_export;
                if let Some(chosen) = info_or_go(opt.option, &data, table, per_export, &mut out) {
                    session.chose();
                    w.write_all(&out)?;
                    w.flush()?;
                    return Ok(Outcome::Chosen(chosen));
                }
            }
            _ => {
                push_option_reply(&mut out, opt.option, REP_ERR_UNSUP, b"option not supported");
            }
        }
        w.write_all(&out)?;
        w.flush()?;
    }
    Err(HandshakeError::TooManyOptions)
}

/// Answers `NBD_OPT_STARTTLS` into `out`; true when it was acknowledged
/// and the TLS handshake must follow.
fn starttls(session: &mut Session, data: &[u8], out: &mut Vec<u8>) -> bool {
    let (reply, message): (u32, &[u8]) = if session.tls == NbdTlsMode::Off {
        (REP_ERR_UNSUP, b"TLS is not enabled on this server")
    } else if session.tls_active {
        (REP_ERR_INVALID, b"TLS is already on")
    } else if !data.is_empty() {
        (REP_ERR_INVALID, b"STARTTLS takes no data")
    } else {
        session.tls_active = true;
        (REP_ACK, b"")
    };
    push_option_reply(out, OPT_STARTTLS, reply, message);
    reply == REP_ACK
}

/// Answers `NBD_OPT_INFO` or `NBD_OPT_GO` into `out`; returns the export
/// when a GO succeeded.
fn info_or_go(
    option: u32,
    data: &[u8],
    table: &ExportTable,
    per_export: usize,
    out: &mut Vec<u8>,
) -> Option<Negotiated> {
    let req = match InfoRequest::parse(data) {
        Ok(req) => req,
        Err(e) => {
            tracing::warn!(error = %e, "malformed NBD INFO/GO option");
            push_option_reply(out, option, REP_ERR_INVALID, e.to_string().as_bytes());
            return None;
        }
    };
    let Some(slot) = table.lookup(req.name) else {
        push_option_reply(out, option, REP_ERR_UNKNOWN, b"no such export");
        return None;
    };
    let place = if option == OPT_GO {
        let Some(place) = slot.reserve(per_export) else {
            push_option_reply(
                out,
                option,
                REP_ERR_POLICY,
                b"the export has as many connections as it may",
            );
            return None;
        };
        Some(place)
    } else {
        None
    };
    let flags = transmission_flags(slot.read_only());
    push_option_reply(out, option, REP_INFO, &info_export(slot.size(), flags));
    push_option_reply(out, option, REP_INFO, &info_block_size());
    if req.infos.contains(&INFO_NAME) {
        let mut name = INFO_NAME.to_be_bytes().to_vec();
        name.extend_from_slice(slot.name().as_bytes());
        push_option_reply(out, option, REP_INFO, &name);
    }
    push_option_reply(out, option, REP_ACK, &[]);
    place.map(|place| Negotiated { slot, flags, place })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nbd::export::Export;
    use crate::nbd::testdev::MemDevice;
    use std::io::Cursor;

    fn table() -> ExportTable {
        let t = ExportTable::new();
        t.add(
            "rw",
            Export {
                device: Arc::new(MemDevice::new(1 << 20)),
                read_only: false,
            },
        );
        t.add(
            "ro",
            Export {
                device: Arc::new(MemDevice::new(4096)),
                read_only: true,
            },
        );
        t
    }

    fn option(code: u32, data: &[u8]) -> Vec<u8> {
        let mut b = b"IHAVEOPT".to_vec();
        b.extend_from_slice(&code.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
        b
    }

    fn go_data(name: &str, infos: &[u16]) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
        for i in infos {
            d.extend_from_slice(&i.to_be_bytes());
        }
        d
    }

    /// Option replies as (option, type, data).
    type Replies = Vec<(u32, u32, Vec<u8>)>;

    impl Outcome {
        /// The export, `None` for an abort; STARTTLS fails the test.
        fn chosen(self) -> Option<Negotiated> {
            match self {
                Outcome::Chosen(n) => Some(n),
                Outcome::Aborted => None,
                Outcome::StartTls => panic!("unexpected STARTTLS"),
            }
        }
    }

    /// Splits what the server wrote into option replies and whatever
    /// followed them.
    fn replies(mut rest: &[u8]) -> (Replies, Vec<u8>) {
        let mut replies = Vec::new();
        while rest.len() >= 20 && rest[..8] == OPT_REPLY_MAGIC.to_be_bytes() {
            let opt = u32::from_be_bytes(rest[8..12].try_into().unwrap());
            let ty = u32::from_be_bytes(rest[12..16].try_into().unwrap());
            let len = u32::from_be_bytes(rest[16..20].try_into().unwrap()) as usize;
            replies.push((opt, ty, rest[20..20 + len].to_vec()));
            rest = &rest[20 + len..];
        }
        (replies, rest.to_vec())
    }

    /// Runs a handshake on scripted client bytes, TLS as `tls` says;
    /// returns the outcome, the option replies after the greeting, and
    /// whatever followed them.
    fn run_tls(
        tls: NbdTlsMode,
        client_flags: u32,
        options: &[Vec<u8>],
    ) -> (Result<Outcome, HandshakeError>, Replies, Vec<u8>, Session) {
        let mut input = client_flags.to_be_bytes().to_vec();
        for o in options {
            input.extend_from_slice(o);
        }
        let mut r = Cursor::new(input);
        let mut w = Vec::new();
        let mut session = Session::new(tls, 16);
        let res = negotiate(&mut r, &mut w, &table(), &mut session);
        assert_eq!(&w[..18], &greeting());
        let (replies, rest) = replies(&w[18..]);
        (res, replies, rest, session)
    }

    /// Haggling resumed in `session` (as after the TLS handshake).
    fn resume(
        session: &mut Session,
        options: &[Vec<u8>],
    ) -> (Result<Outcome, HandshakeError>, Replies) {
        let mut r = Cursor::new(options.concat());
        let mut w = Vec::new();
        let res = haggle(&mut r, &mut w, &table(), session);
        let (replies, rest) = replies(&w);
        assert!(rest.is_empty() || res.is_ok());
        (res, replies)
    }

    /// A plaintext handshake: the outcome as an optional export.
    fn run(
        client_flags: u32,
        options: &[Vec<u8>],
    ) -> (Result<Option<Negotiated>, HandshakeError>, Replies, Vec<u8>) {
        let (res, replies, rest, _) = run_tls(NbdTlsMode::Off, client_flags, options);
        (res.map(Outcome::chosen), replies, rest)
    }

    #[test]
    fn go_reports_export_and_block_size() {
        let (res, replies, rest) = run(
            3,
            &[option(
                OPT_GO,
                &go_data("ro", &[INFO_NAME, INFO_BLOCK_SIZE]),
            )],
        );
        let n = res.unwrap().unwrap();
        assert_eq!(n.slot.name(), "ro");
        assert_ne!(n.flags & TFLAG_READ_ONLY, 0);
        assert!(rest.is_empty());
        let types: Vec<u32> = replies.iter().map(|r| r.1).collect();
        assert_eq!(types, vec![REP_INFO, REP_INFO, REP_INFO, REP_ACK]);
        assert_eq!(replies[0].2, info_export(4096, n.flags).to_vec());
        assert_eq!(replies[1].2, info_block_size().to_vec());
        assert_eq!(&replies[2].2[..2], &INFO_NAME.to_be_bytes());
        assert_eq!(&replies[2].2[2..], b"ro");
        assert!(replies.iter().all(|r| r.0 == OPT_GO));
    }

    #[test]
    fn info_list_unsupported_then_go() {
        let (res, replies, _) = run(
            1,
            &[
                option(OPT_INFO, &go_data("rw", &[])),
                option(8, &[]),
                option(OPT_LIST, &[]),
                option(OPT_LIST, b"x"),
                option(OPT_GO, &go_data("nope", &[])),
                option(OPT_GO, &go_data("rw", &[])),
            ],
        );
        let n = res.unwrap().unwrap();
        assert_eq!(n.slot.name(), "rw");
        assert_eq!(n.flags & TFLAG_READ_ONLY, 0);
        assert_ne!(n.flags & TFLAG_SEND_WRITE_ZEROES, 0);
        let kinds: Vec<(u32, u32)> = replies.iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(
            kinds,
            vec![
                (OPT_INFO, REP_INFO),
                (OPT_INFO, REP_INFO),
                (OPT_INFO, REP_ACK),
                (8, REP_ERR_UNSUP),
                (OPT_LIST, REP_ACK),
                (OPT_LIST, REP_ERR_INVALID),
                (OPT_GO, REP_ERR_UNKNOWN),
                (OPT_GO, REP_INFO),
                (OPT_GO, REP_INFO),
                (OPT_GO, REP_ACK),
            ]
        );
        // The list names nothing: an export name is a credential.
        assert!(replies[4].2.is_empty());
    }

    #[test]
    fn export_name_with_and_without_zeroes() {
        let (res, replies, rest) = run(3, &[option(OPT_EXPORT_NAME, b"rw")]);
        let n = res.unwrap().unwrap();
        assert!(replies.is_empty());
        assert_eq!(rest, export_name_reply(1 << 20, n.flags, true));
        let (res, _, rest) = run(1, &[option(OPT_EXPORT_NAME, b"rw")]);
        assert!(res.unwrap().is_some());
        assert_eq!(rest.len(), 134);
        let (res, _, rest) = run(3, &[option(OPT_EXPORT_NAME, b"nope")]);
        assert!(matches!(res, Err(HandshakeError::UnknownExport(_))));
        assert!(rest.is_empty());
    }

    #[test]
    fn abort_acks_and_ends() {
        let (res, replies, _) = run(3, &[option(OPT_ABORT, &[])]);
        assert!(res.unwrap().is_none());
        assert_eq!(replies, vec![(OPT_ABORT, REP_ACK, vec![])]);
    }

    #[test]
    fn protocol_violations_end_the_handshake() {
        let (res, _, _) = run(4, &[]);
        assert!(matches!(res, Err(HandshakeError::ClientFlags(4))));
        let mut bad = option(OPT_GO, &go_data("rw", &[]));
        bad[0] = b'X';
        let (res, _, _) = run(3, &[bad]);
        assert!(matches!(res, Err(HandshakeError::Wire(_))));
        let mut huge = b"IHAVEOPT".to_vec();
        huge.extend_from_slice(&OPT_GO.to_be_bytes());
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        let (res, replies, _) = run(3, &[huge]);
        assert!(matches!(res, Err(HandshakeError::OptionTooLong { .. })));
        assert_eq!(replies[0].1, REP_ERR_TOO_BIG);
        let mut cut = option(OPT_GO, &go_data("rw", &[]));
        cut.truncate(cut.len() - 3);
        let (res, _, _) = run(3, &[cut]);
        assert!(res.as_ref().is_err_and(|e| e.is_disconnect()));
    }

    #[test]
    fn malformed_go_payload_is_an_error_reply_not_a_close() {
        let (res, replies, _) = run(
            3,
            &[
                option(OPT_GO, &[0, 0, 0, 9, b'r']),
                option(OPT_GO, &go_data("rw", &[])),
            ],
        );
        assert!(res.unwrap().is_some());
        assert_eq!(replies[0].1, REP_ERR_INVALID);
    }

    #[test]
    fn starttls_is_unsupported_when_tls_is_off() {
        let (res, replies, _) = run(
            3,
            &[
                option(OPT_STARTTLS, &[]),
                option(OPT_GO, &go_data("rw", &[])),
            ],
        );
        assert!(res.unwrap().is_some());
        assert_eq!(replies[0].0, OPT_STARTTLS);
        assert_eq!(replies[0].1, REP_ERR_UNSUP);
    }

    #[test]
    fn starttls_is_acknowledged_then_haggling_restarts_over_tls() {
        let (res, replies, rest, mut session) = run_tls(
            NbdTlsMode::Required,
            3,
            &[
                option(OPT_STARTTLS, &[]),
                option(OPT_GO, &go_data("rw", &[])),
            ],
        );
        assert!(matches!(res, Ok(Outcome::StartTls)));
        assert_eq!(replies, vec![(OPT_STARTTLS, REP_ACK, vec![])]);
        assert!(rest.is_empty(), "nothing after the ACK: TLS comes next");
        // After the TLS handshake: the options start over, and a second
        // STARTTLS is refused without ending the session.
        let (res, replies) = resume(
            &mut session,
            &[
                option(OPT_STARTTLS, &[]),
                option(OPT_GO, &go_data("rw", &[])),
            ],
        );
        assert_eq!(res.unwrap().chosen().unwrap().slot.name(), "rw");
        let kinds: Vec<(u32, u32)> = replies.iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(
            kinds,
            vec![
                (OPT_STARTTLS, REP_ERR_INVALID),
                (OPT_GO, REP_INFO),
                (OPT_GO, REP_INFO),
                (OPT_GO, REP_ACK),
            ]
        );
    }

    #[test]
    fn required_tls_refuses_every_other_option_before_starttls() {
        let (res, replies, _, _) = run_tls(
            NbdTlsMode::Required,
            3,
            &[
                option(OPT_GO, &go_data("rw", &[])),
                option(OPT_INFO, &go_data("rw", &[])),
                option(OPT_LIST, &[]),
                option(8, &[]),
                option(OPT_STARTTLS, b"x"),
                option(OPT_ABORT, &[]),
            ],
        );
        assert!(matches!(res, Ok(Outcome::Aborted)));
        let kinds: Vec<(u32, u32)> = replies.iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(
            kinds,
            vec![
                (OPT_GO, REP_ERR_TLS_REQD),
                (OPT_INFO, REP_ERR_TLS_REQD),
                (OPT_LIST, REP_ERR_TLS_REQD),
                (8, REP_ERR_TLS_REQD),
                (OPT_STARTTLS, REP_ERR_INVALID),
                (OPT_ABORT, REP_ACK),
            ]
        );
        // EXPORT_NAME cannot be refused with a reply: the session ends,
        // and nothing about the export was sent.
        let (res, replies, rest, _) =
            run_tls(NbdTlsMode::Required, 3, &[option(OPT_EXPORT_NAME, b"rw")]);
        assert!(matches!(res, Err(HandshakeError::TlsRequired)));
        assert!(replies.is_empty() && rest.is_empty());
    }

    #[test]
    fn tls_on_serves_plaintext_and_offers_starttls() {
        let (res, _, rest, _) = run_tls(NbdTlsMode::On, 3, &[option(OPT_EXPORT_NAME, b"rw")]);
        let n = res.unwrap().chosen().unwrap();
        assert_eq!(rest, export_name_reply(1 << 20, n.flags, true));
        let (res, replies, _, _) = run_tls(NbdTlsMode::On, 3, &[option(OPT_STARTTLS, &[])]);
        assert!(matches!(res, Ok(Outcome::StartTls)));
        assert_eq!(replies, vec![(OPT_STARTTLS, REP_ACK, vec![])]);
    }
}
