//! `nbd://` URIs that drivers name, and the array's `nbd_allow` list that
//! decides which of them the host may connect to. An export name is often
//! the credential that opens it, so it is never shown: logs and messages
//! print the URI with the name elided.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use super::{normalize_host, public, redact_uri};

/// The port an `nbd://` URI without one means.
pub const NBD_PORT: u16 = 10809;

/// A parsed `nbd://host[:port]/export-name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdUri {
    /// Lowercase host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The export name, percent-decoded.
    pub export: String,
}

impl NbdUri {
    /// Parses a URI; the error says what is wrong without quoting the
    /// export name.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("nbds://") || text.starts_with("nbd+unix://") {
            return Err(format!(
                "{}: only nbd:// (TCP without TLS) is supported",
                redact_uri(text)
            ));
        }
        let rest = text
            .strip_prefix("nbd://")
            .ok_or_else(|| "an NBD URI must start with nbd://".to_owned())?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) =
            endpoint(authority).ok_or_else(|| format!("{}: bad host or port", redact_uri(text)))?;
        if path.contains(['?', '#']) {
            return Err(format!(
                "{}: query and fragment are not supported",
                redact_uri(text)
            ));
        }
        let export = percent_decode(path)
            .ok_or_else(|| format!("{}: bad percent-encoding", redact_uri(text)))?;
        if export.len() > 4096 {
            return Err("the export name is longer than 4096 bytes".into());
        }
        Ok(Self { host, port, export })
    }
}

/// `host[:port]` or `[v6][:port]`, the port defaulting to 10809.
fn endpoint(authority: &str) -> Option<(String, u16)> {
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p.parse().ok()?)),
            Some(_) => return None,
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((normalize_host(host), port.unwrap_or(NBD_PORT)))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The NBD servers an array's driver may send the host to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NbdAllow {
    endpoints: Vec<(String, u16)>,
}

impl NbdAllow {
    /// Parses `nbd://host[:port]` entries.
    pub fn new(entries: &[String]) -> Result<Self, String> {
        let endpoints = entries
            .iter()
            .map(|e| {
                let rest = e
                    .strip_prefix("nbd://")
                    .ok_or_else(|| format!("{e:?}: must be nbd://host[:port]"))?;
                let rest = rest.strip_suffix('/').unwrap_or(rest);
                endpoint(rest).ok_or_else(|| format!("{e:?}: must be nbd://host[:port]"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { endpoints })
    }

    /// The entries, as `nbd://host:port`.
    pub fn entries(&self) -> Vec<String> {
        self.endpoints
            .iter()
            .map(|(h, p)| {
                if h.contains(':') {
                    format!("nbd://[{h}]:{p}")
                } else {
                    format!("nbd://{h}:{p}")
                }
            })
            .collect()
    }

    /// Refuses `uri` unless its server is listed.
    pub fn check(&self, uri: &NbdUri) -> Result<(), String> {
        if self
            .endpoints
            .iter()
            .any(|(h, p)| *h == uri.host && *p == uri.port)
        {
            Ok(())
        } else {
            Err(format!(
                "nbd://{}:{} is not in the array's nbd_allow",
                uri.host, uri.port
            ))
        }
    }

    /// The address to connect to for `uri`: it must be listed; a listed
    /// name must resolve to public addresses only (list a private address
    /// literally to reach it), so DNS can never point the host at its own
    /// services.
    pub fn resolve(&self, uri: &NbdUri) -> Result<SocketAddr, String> {
        self.check(uri)?;
        if let Ok(ip) = uri.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, uri.port));
        }
        let addrs: Vec<SocketAddr> = (uri.host.as_str(), uri.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", uri.host))?
            .collect();
        if let Some(bad) = addrs.iter().find(|a| !public(a.ip())) {
            return Err(format!(
                "{} resolves to {}, which is not public; list the address itself",
                uri.host,
                bad.ip()
            ));
        }
        addrs
            .first()
            .copied()
            .ok_or_else(|| format!("{} resolves to no address", uri.host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_with_defaults_and_decoding() {
        let u = NbdUri::parse("nbd://127.0.0.1:10900/a%2Fb").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.export.as_str()),
            ("127.0.0.1", 10900, "a/b")
        );
        let u = NbdUri::parse("nbd://[::1]/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", NBD_PORT));
        let u = NbdUri::parse("nbd://Array.Example/").unwrap();
        assert_eq!((u.host.as_str(), u.export.as_str()), ("array.example", ""));
        for bad in [
            "http://h/x",
            "nbds://h/x",
            "nbd://",
            "nbd://h:99999/x",
            "nbd://u@h/x",
            "nbd://h/x?tls=1",
            "nbd://h/%zz",
        ] {
            assert!(NbdUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_and_redaction_never_show_the_export_name() {
        assert_eq!(redact_uri("nbd://h:1/secret-name"), "nbd://h:1/…");
        let e = NbdUri::parse("nbd://h:1/secret-name?x").unwrap_err();
        assert!(!e.contains("secret-name"), "{e}");
        let allow = NbdAllow::new(&["nbd://h:1".into()]).unwrap();
        let e = allow
            .resolve(&NbdUri::parse("nbd://h:2/secret-name").unwrap())
            .unwrap_err();
        assert!(!e.contains("secret-name"), "{e}");
    }

    #[test]
    fn only_listed_servers_resolve_and_names_must_be_public() {
        let allow =
            NbdAllow::new(&["nbd://127.0.0.1:10900".into(), "nbd://localhost".into()]).unwrap();
        let ok = allow
            .resolve(&NbdUri::parse("nbd://127.0.0.1:10900/x").unwrap())
            .unwrap();
        assert_eq!(ok, "127.0.0.1:10900".parse().unwrap());
        assert!(
            allow
                .resolve(&NbdUri::parse("nbd://127.0.0.1:10901/x").unwrap())
                .is_err()
        );
        // A listed name that resolves to loopback is refused.
        let e = allow
            .resolve(&NbdUri::parse("nbd://localhost/x").unwrap())
            .unwrap_err();
        assert!(e.contains("not public"), "{e}");
        assert!(NbdAllow::new(&["http://h".into()]).is_err());
        assert_eq!(allow.entries()[1], "nbd://localhost:10809");
    }
}
