//! An array's outbound policy: the origins its driver may reach over HTTP
//! (its management endpoint), which addresses a name may resolve to, and the
//! CA its HTTPS trusts, enforced by the driver runtime on every request;
//! and the NBD servers a driver may send the host to (`nbd`).

mod nbd;

pub use nbd::{NBD_PORT, NbdAllow, NbdUri};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;

/// The system's CA bundle, trusted when an array names no CA file.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// One origin a driver may reach: scheme, host and port, matched exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// True for `https`.
    pub https: bool,
    /// Lowercase host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// The port, the scheme's default filled in.
    pub port: u16,
}

impl Origin {
    /// Parses `http://host[:port]` or `https://host[:port]` (a trailing `/`
    /// allowed, nothing else after the authority).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("origin {text:?}: {why}");
        let (https, rest) = if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("must start with http:// or https://"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(bad("must be scheme://host[:port] with no path or user"));
        }
        let (host, port) = split_authority(authority).ok_or_else(|| bad("bad host or port"))?;
        let port = match port {
            Some(p) => p,
            None if https => 443,
            None => 80,
        };
        Ok(Self {
            https,
            host: normalize_host(host),
            port,
        })
    }

    /// Whether `host` is an IP literal rather than a name.
    pub fn literal_ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// `host[:port]`, `[v6][:port]`.
fn split_authority(a: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = a.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        return Some((host, port));
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !h.contains(':') => Some((h, Some(p.parse().ok()?))),
        Some(_) => None,
        None => Some((a, None)),
    }
}

/// Lowercase, without brackets or a trailing dot: how hosts compare.
pub fn normalize_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Whether a driver may connect to `ip`, which a listed *name* resolved to:
/// only public unicast addresses. A private address is reached by listing
/// it literally, so a name can never be pointed at the host's own services
/// or a private network behind the configuration's back.
pub fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || a >= 240)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80)
}

/// What an array's driver may reach over HTTP.
#[derive(Clone)]
pub struct OutboundPolicy {
    origins: Vec<Origin>,
    /// `None` when nothing is allowed.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for OutboundPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundPolicy")
            .field("origins", &self.origins)
            .finish()
    }
}

impl OutboundPolicy {
    /// The policy of an array allowing `origins`, trusting `ca_file` (PEM)
    /// for HTTPS, or the system's bundle without one.
    pub fn new(origins: &[String], ca_file: Option<&Path>) -> Result<Self, String> {
        let origins = origins
            .iter()
            .map(|o| Origin::parse(o))
            .collect::<Result<Vec<_>, _>>()?;
        let roots = match ca_file {
            Some(path) => load_roots(path)?,
            None => load_roots(Path::new(SYSTEM_CA_BUNDLE)).unwrap_or_else(|e| {
                tracing::debug!(error = %e, "no system CA bundle; HTTPS to arrays needs http_ca_file");
                rustls::RootCertStore::empty()
            }),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            origins,
            tls: Some(Arc::new(tls)),
        })
    }

    /// Reaches nothing: an array with no `http_allow`.
    pub fn none() -> Self {
        Self {
            origins: Vec::new(),
            tls: None,
        }
    }

    /// The listed origin `https`, `host`, `port` match, if any.
    pub fn allowed(&self, https: bool, host: &str, port: u16) -> Option<&Origin> {
        let host = normalize_host(host);
        self.origins
            .iter()
            .find(|o| o.https == https && o.host == host && o.port == port)
    }

    /// The origins, as configured.
    pub fn origins(&self) -> &[Origin] {
        &self.origins
    }

    /// The TLS client configuration for HTTPS.
    pub fn tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.tls.clone()
    }
}

fn load_roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("CA file {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("CA file {}: {e}", path.display()))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "CA file {} holds no usable certificate",
            path.display()
        ));
    }
    Ok(roots)
}

/// The URI as it may be shown: scheme and authority, the export name
/// replaced by `…`.
pub fn redact_uri(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split('/').next().unwrap_or("");
            format!("{scheme}://{authority}/…")
        }
        None => "(not a URI)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_with_default_ports_and_compare_exactly() {
        let o = Origin::parse("https://Array.Example.").unwrap();
        assert_eq!(
            (o.https, o.host.as_str(), o.port),
            (true, "array.example", 443)
        );
        let o = Origin::parse("http://127.0.0.1:8787/").unwrap();
        assert_eq!(
            (o.https, o.host.as_str(), o.port),
            (false, "127.0.0.1", 8787)
        );
        let o = Origin::parse("http://[::1]:9").unwrap();
        assert_eq!(o.host, "::1");
        assert_eq!(o.to_string(), "http://[::1]:9");
        for bad in [
            "ftp://x",
            "http://",
            "http://x/path",
            "http://u@x",
            "http://x:notaport",
            "http://x:70000",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
        let p = OutboundPolicy::new(&["http://127.0.0.1:8787".into()], None).unwrap();
        assert!(p.allowed(false, "127.0.0.1", 8787).is_some());
        assert!(p.allowed(true, "127.0.0.1", 8787).is_none());
        assert!(p.allowed(false, "127.0.0.1", 8788).is_none());
        assert!(
            OutboundPolicy::none()
                .allowed(false, "127.0.0.1", 8787)
                .is_none()
        );
    }

    #[test]
    fn only_public_unicast_addresses_count_as_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!public(private.parse().unwrap()), "{private}");
        }
        for ok in ["8.8.8.8", "2001:4860:4860::8888"] {
            assert!(public(ok.parse().unwrap()), "{ok}");
        }
    }
}
