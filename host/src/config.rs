//! Host configuration: arrays, pools, zoning, drivers and limits, from a TOML
//! file or the embedded default (design section 8).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The content is well-formed but inconsistent.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// One array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrayConfig {
    /// Array name.
    pub name: String,
    /// Driver that manages it.
    pub driver: String,
    /// Pool names.
    #[serde(default = "default_pools")]
    pub pools: Vec<String>,
    /// Capacity in bytes.
    #[serde(default = "default_capacity")]
    pub capacity_bytes: u64,
    /// Settings the array's driver reads (for example its management
    /// endpoint), by name.
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, String>,
    /// Secrets the array's driver reads (passwords, tokens), by name: each
    /// from a file, an environment variable or the text itself.
    #[serde(default)]
    pub secrets: std::collections::BTreeMap<String, crate::secrets::SecretSource>,
    /// The origins (`https://host[:port]`) the array's driver may reach over
    /// HTTP: its management endpoint. Empty: none.
    #[serde(default)]
    pub http_allow: Vec<String>,
    /// PEM CA certificates the driver's HTTPS trusts instead of the
    /// system's bundle.
    #[serde(default)]
    pub http_ca_file: Option<PathBuf>,
    /// The NBD servers (`nbd://host[:port]`) the array's driver may name in
    /// a connection: the array's own exports. Empty: none.
    #[serde(default)]
    pub nbd_allow: Vec<String>,
    /// Whether the array's LUNs are files in the host's data directory.
    /// False for an array whose driver answers its own NBD exports (its
    /// storage lives elsewhere): the host then checks no local file system
    /// space for it and counts what it provisioned from the volumes on it.
    #[serde(default = "default_lun_files")]
    pub lun_files: bool,
}

fn default_lun_files() -> bool {
    true
}

/// A driver component loaded from a file at start (in addition to the
/// built-in example drivers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverConfig {
    /// Name arrays refer to.
    pub name: String,
    /// Path of the component file.
    pub path: PathBuf,
}

/// Limits of one driver call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverLimits {
    /// Wall-clock deadline of one call, in milliseconds.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Largest linear memory a driver instance may grow to, in bytes.
    #[serde(default = "default_memory_bytes")]
    pub memory_bytes: u64,
}

impl Default for DriverLimits {
    fn default() -> Self {
        Self {
            deadline_ms: default_deadline_ms(),
            memory_bytes: default_memory_bytes(),
        }
    }
}

/// Limits of the HTTP API's connections (`[http]`): how many may be open
/// and how long each may take to send a request or sit idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Most connections open at once. When full, a new connection closes
    /// the one idle the longest; when every one is busy it is refused. The
    /// host lowers it when its descriptor limit leaves too few for NBD and
    /// LUN files.
    #[serde(default = "default_max_connections")]
    pub max_connections: u64,
    /// Time a client has to send a whole request head, from the opening of
    /// the connection or from the first byte of a later request.
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// Time a connection may stay open between a response and the next
    /// request.
    #[serde(default = "default_keep_alive_timeout_ms")]
    pub keep_alive_timeout_ms: u64,
    /// Who may read `/metrics`: it names drivers, their digests and
    /// counts of volumes and calls.
    #[serde(default)]
    pub metrics: MetricsAccess,
}

/// Who may read `/metrics` (`[http] metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    /// Anyone who reaches the API, without a token (a scraper on a
    /// trusted network).
    Public,
    /// Any valid bearer token, reader or admin.
    #[default]
    Reader,
    /// Nobody: `/metrics` answers 404.
    Off,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            header_read_timeout_ms: default_header_read_timeout_ms(),
            keep_alive_timeout_ms: default_keep_alive_timeout_ms(),
            metrics: MetricsAccess::default(),
        }
    }
}

/// The Block Storage v3 compatible API (`[cinder]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CinderConfig {
    /// How `/v3` authenticates.
    #[serde(default)]
    pub auth: CinderAuth,
    /// The host part of each pool's name, `HOST@ARRAY#POOL`, as
    /// `cinder get-pools` lists it and `os-migrate_volume` takes it.
    #[serde(default = "default_cinder_host")]
    pub host: String,
}

impl CinderConfig {
    /// Refuses `auth = "none"` on an API that listens beyond loopback:
    /// anyone who reaches it would act as admin on `/v3`.
    pub fn check_listen(&self, addr: std::net::SocketAddr) -> Result<(), String> {
        if self.auth == CinderAuth::None && !addr.ip().is_loopback() {
            return Err(format!(
                "[cinder] auth = \"none\" lets anyone who reaches the API act as admin on /v3; \
                 the API listens on {addr}, beyond this host: listen on loopback or use \
                 auth = \"token\""
            ));
        }
        Ok(())
    }
}

fn default_cinder_host() -> String {
    "ferry".into()
}

impl Default for CinderConfig {
    fn default() -> Self {
        Self {
            auth: CinderAuth::default(),
            host: default_cinder_host(),
        }
    }
}

/// How the Block Storage v3 API authenticates (`[cinder] auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CinderAuth {
    /// `X-Auth-Token` (or `Authorization: Bearer`) with a Ferry token, as
    /// on `/v1`.
    #[default]
    Token,
    /// No token: every request acts as admin, whatever `X-Auth-Token` says
    /// (clients' `--os-auth-type none` / `noauth`). Only for an API that
    /// listens on loopback: `ferry serve` refuses it on any other address.
    None,
}

/// Whether the NBD server speaks TLS (`[nbd] tls`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NbdTlsMode {
    /// Plaintext only; `NBD_OPT_STARTTLS` is not supported.
    #[default]
    Off,
    /// `NBD_OPT_STARTTLS` is offered; plaintext clients are still served.
    On,
    /// Nothing but `NBD_OPT_STARTTLS` and `NBD_OPT_ABORT` before TLS.
    Required,
}

/// Limits of the NBD server's connections (`[nbd]`): how many may be
/// open, how long a client may take over each step, how much memory
/// request buffers may hold together, and whether clients use TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NbdConfig {
    /// Most connections open at once, handshaking or attached. When full, a
    /// new connection closes the oldest handshake; when none is
    /// handshaking it is refused.
    #[serde(default = "default_nbd_max_connections")]
    pub max_connections: u64,
    /// Handshakes one client address may have open at once; a further one
    /// closes that address's oldest. Clients behind one address (every
    /// local client shares 127.0.0.1) so cannot lock each other out.
    #[serde(default = "default_nbd_max_handshakes_per_client")]
    pub max_handshakes_per_client: u64,
    /// Attached connections one export may have (multi-connection clients
    /// open several).
    #[serde(default = "default_nbd_max_connections_per_export")]
    pub max_connections_per_export: u64,
    /// Time a client has for the whole handshake, from the opening of the
    /// connection to the choice of an export.
    #[serde(default = "default_nbd_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// Time a client has to send a write's payload once its header arrived,
    /// and to take a reply once the server started sending it.
    #[serde(default = "default_nbd_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Time an attached connection may sit with no request in flight; 0
    /// (the default) keeps it open, since a server's idle disk is no fault.
    /// Dead peers are found by TCP keep-alive either way.
    #[serde(default)]
    pub idle_timeout_secs: u64,
    /// Memory all connections' request buffers may hold together, in MiB.
    /// A request that would exceed it waits for others to finish.
    #[serde(default = "default_nbd_buffer_budget_mib")]
    pub buffer_budget_mib: u64,
    /// TLS for NBD (`NBD_OPT_STARTTLS`): off (the default), on (offered)
    /// or required.
    #[serde(default)]
    pub tls: NbdTlsMode,
    /// The server's certificate chain (PEM, the server's certificate
    /// first); required unless `tls` is off.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM: PKCS#8, PKCS#1 or SEC1);
    /// required unless `tls` is off.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

impl Default for NbdConfig {
    fn default() -> Self {
        Self {
            max_connections: default_nbd_max_connections(),
            max_handshakes_per_client: default_nbd_max_handshakes_per_client(),
            max_connections_per_export: default_nbd_max_connections_per_export(),
            handshake_timeout_ms: default_nbd_handshake_timeout_ms(),
            request_timeout_ms: default_nbd_request_timeout_ms(),
            idle_timeout_secs: 0,
            buffer_budget_mib: default_nbd_buffer_budget_mib(),
            tls: NbdTlsMode::Off,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// Retention of the event log (`[events]`): the store drops the oldest
/// events beyond `max_count` and those older than `max_age_secs` whenever
/// it appends one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// How many of the newest events are kept.
    #[serde(default = "default_event_max_count")]
    pub max_count: u64,
    /// How old, in seconds, the oldest kept event may be.
    #[serde(default = "default_event_max_age_secs")]
    pub max_age_secs: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            max_count: default_event_max_count(),
            max_age_secs: default_event_max_age_secs(),
        }
    }
}

/// Limits of volumes (`[volumes]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumesConfig {
    /// Most attachments one volume may have at once: each is an NBD export
    /// and a driver connection, and the record holds them all.
    #[serde(default = "default_max_attachments_per_volume")]
    pub max_attachments_per_volume: u64,
}

impl Default for VolumesConfig {
    fn default() -> Self {
        Self {
            max_attachments_per_volume: default_max_attachments_per_volume(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Arrays.
    #[serde(default, rename = "array")]
    pub arrays: Vec<ArrayConfig>,
    /// Pairs of arrays connected over the fabric.
    #[serde(default)]
    pub zoning: Vec<[String; 2]>,
    /// Extra driver components.
    #[serde(default, rename = "driver")]
    pub drivers: Vec<DriverConfig>,
    /// Driver call limits.
    #[serde(default)]
    pub limits: DriverLimits,
    /// Limits of particular drivers (`[driver_limits.NAME]`), in place of
    /// `limits` for that driver's calls.
    #[serde(default)]
    pub driver_limits: std::collections::BTreeMap<String, DriverLimits>,
    /// Largest driver component accepted for installation, in bytes.
    #[serde(default = "default_max_component_bytes")]
    pub max_component_bytes: u64,
    /// Longest a driver component may take to compile, in milliseconds.
    #[serde(default = "default_max_compile_ms")]
    pub max_compile_ms: u64,
    /// Longest an upload waits for the host's one compile slot while
    /// another component compiles, in milliseconds; then it is refused as
    /// busy (429 with `Retry-After`).
    #[serde(default = "default_max_compile_wait_ms")]
    pub max_compile_wait_ms: u64,
    /// Versions of each driver kept: after an install the oldest inactive
    /// versions beyond this many are deleted (never the active one, the one
    /// just installed, or one a call runs on).
    #[serde(default = "default_driver_versions_kept")]
    pub driver_versions_kept: u64,
    /// Host copy bandwidth limit in bytes per second (none when absent).
    #[serde(default)]
    pub copy_bandwidth_bytes_per_sec: Option<u64>,
    /// Background hydration bandwidth limit in bytes per second read from
    /// the source; holes and regions already local cost nothing (none when
    /// absent).
    #[serde(default)]
    pub hydration_bandwidth_bytes_per_sec: Option<u64>,
    /// Limits of the HTTP API's connections.
    #[serde(default)]
    pub http: HttpConfig,
    /// The Block Storage v3 compatible API (`/v3`).
    #[serde(default)]
    pub cinder: CinderConfig,
    /// Event log retention.
    #[serde(default)]
    pub events: EventsConfig,
    /// NBD connection limits.
    #[serde(default)]
    pub nbd: NbdConfig,
    /// Limits of volumes.
    #[serde(default)]
    pub volumes: VolumesConfig,
}

/// Longest name of an array's setting or secret.
const MAX_SETTING_NAME_BYTES: usize = 128;
/// Longest value of an array's setting.
const MAX_SETTING_BYTES: usize = 64 << 10;

fn default_pools() -> Vec<String> {
    vec!["default".to_owned()]
}
fn default_capacity() -> u64 {
    256 << 30
}
fn default_deadline_ms() -> u64 {
    5_000
}
fn default_memory_bytes() -> u64 {
    64 << 20
}
fn default_max_component_bytes() -> u64 {
    64 << 20
}
fn default_max_compile_ms() -> u64 {
    60_000
}
fn default_max_compile_wait_ms() -> u64 {
    10_000
}
fn default_driver_versions_kept() -> u64 {
    5
}
fn default_max_connections() -> u64 {
    4096
}
fn default_header_read_timeout_ms() -> u64 {
    10_000
}
fn default_keep_alive_timeout_ms() -> u64 {
    30_000
}
fn default_nbd_max_connections() -> u64 {
    1024
}
fn default_nbd_max_handshakes_per_client() -> u64 {
    16
}
fn default_nbd_max_connections_per_export() -> u64 {
    16
}
fn default_nbd_handshake_timeout_ms() -> u64 {
    10_000
}
fn default_nbd_request_timeout_ms() -> u64 {
    30_000
}
fn default_nbd_buffer_budget_mib() -> u64 {
    256
}
/// Smallest `nbd.buffer_budget_mib`: one largest request (32 MiB) and
/// room for others beside it.
pub const MIN_NBD_BUFFER_BUDGET_MIB: u64 = 64;
/// Largest `nbd.max_connections`: each connection is a thread.
const MAX_NBD_CONNECTIONS: u64 = 1 << 16;
fn default_max_attachments_per_volume() -> u64 {
    16
}
/// Largest `volumes.max_attachments_per_volume` accepted: every attachment
/// is kept in the volume's one record.
const MAX_ATTACHMENTS_PER_VOLUME: u64 = 4096;
/// Largest `http.max_connections` accepted: a connection is a descriptor,
/// and no system gives a process more than a few million.
const MAX_HTTP_CONNECTIONS: u64 = 1 << 20;
/// Events the log keeps by default.
pub const DEFAULT_EVENT_MAX_COUNT: u64 = 10_000;
fn default_event_max_count() -> u64 {
    DEFAULT_EVENT_MAX_COUNT
}
/// Thirty days.
fn default_event_max_age_secs() -> u64 {
    30 * 24 * 3600
}

/// The embedded default: `t1` (takeover), `v1` and `v2` (vendor-copy), `p1`
/// (plain), each with a pool `default`; zoning `t1`-`p1` and `t1`-`v1`.
pub const DEFAULT_CONFIG: &str = r#"
zoning = [["t1", "p1"], ["t1", "v1"]]

[[array]]
name = "t1"
driver = "takeover"

[[array]]
name = "v1"
driver = "vendor-copy"

[[array]]
name = "v2"
driver = "vendor-copy"

[[array]]
name = "p1"
driver = "plain"
"#;

impl Config {
    /// The embedded default configuration.
    pub fn embedded_default() -> Self {
        // The default is a constant checked by a unit test.
        Self::parse(DEFAULT_CONFIG, Path::new("<embedded default>"))
            .unwrap_or_else(|e| panic!("embedded default config is broken: {e}"))
    }

    /// Reads and checks a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.arrays.is_empty() {
            return invalid("no arrays configured".into());
        }
        if let Err(e) = crate::model::check_name(&self.cinder.host) {
            return invalid(format!("[cinder] host {:?}: {e}", self.cinder.host));
        }
        let mut names = std::collections::BTreeSet::new();
        for a in &self.arrays {
            if let Err(e) = crate::model::check_name(&a.name) {
                return invalid(format!("array name {:?}: {e}", a.name));
            }
            if !names.insert(a.name.as_str()) {
                return invalid(format!("array {} is listed twice", a.name));
            }
            if a.pools.is_empty() {
                return invalid(format!("array {} has no pools", a.name));
            }
            for p in &a.pools {
                if let Err(e) = crate::model::check_name(p) {
                    return invalid(format!("pool {p:?} of array {}: {e}", a.name));
                }
            }
            if a.capacity_bytes == 0 {
                return invalid(format!("array {} has zero capacity", a.name));
            }
            for (n, v) in &a.settings {
                if n.is_empty() || n.len() > MAX_SETTING_NAME_BYTES || v.len() > MAX_SETTING_BYTES {
                    return invalid(format!(
                        "array {}: setting {n:?}: names are 1 to {MAX_SETTING_NAME_BYTES} bytes, \
                         values at most {MAX_SETTING_BYTES}",
                        a.name
                    ));
                }
            }
            for n in a.secrets.keys() {
                if n.is_empty() || n.len() > MAX_SETTING_NAME_BYTES {
                    return invalid(format!(
                        "array {}: secret {n:?}: names are 1 to {MAX_SETTING_NAME_BYTES} bytes",
                        a.name
                    ));
                }
            }
            if let Err(e) = crate::secrets::Secrets::read(&a.secrets) {
                return invalid(format!("array {}: {e}", a.name));
            }
            if let Err(e) =
                crate::outbound::OutboundPolicy::new(&a.http_allow, a.http_ca_file.as_deref())
            {
                return invalid(format!("array {}: http_allow: {e}", a.name));
            }
            if let Err(e) = crate::outbound::NbdAllow::new(&a.nbd_allow) {
                return invalid(format!("array {}: nbd_allow: {e}", a.name));
            }
        }
        for [a, b] in &self.zoning {
            for n in [a, b] {
                if !names.contains(n.as_str()) {
                    return invalid(format!("zoning names unknown array {n}"));
                }
            }
            if a == b {
                return invalid(format!("array {a} is zoned with itself"));
            }
        }
        let limits = std::iter::once(("limits".to_owned(), &self.limits)).chain(
            self.driver_limits
                .iter()
                .map(|(n, l)| (format!("driver_limits.{n}"), l)),
        );
        for (what, l) in limits {
            if l.deadline_ms == 0 || l.memory_bytes < (1 << 20) || l.memory_bytes > (4 << 30) {
                return invalid(format!(
                    "{what}: deadline_ms must be > 0 and memory_bytes between 1 MiB and 4 GiB"
                ));
            }
        }
        if self.max_component_bytes == 0 || self.max_compile_ms == 0 {
            return invalid("max_component_bytes and max_compile_ms must be > 0".into());
        }
        if self.driver_versions_kept == 0 {
            return invalid("driver_versions_kept must be > 0".into());
        }
        let http = &self.http;
        if http.max_connections == 0 || http.max_connections > MAX_HTTP_CONNECTIONS {
            return invalid(format!(
                "http.max_connections must be between 1 and {MAX_HTTP_CONNECTIONS}"
            ));
        }
        if http.header_read_timeout_ms == 0 || http.keep_alive_timeout_ms == 0 {
            return invalid(
                "http.header_read_timeout_ms and http.keep_alive_timeout_ms must be > 0".into(),
            );
        }
        let nbd = &self.nbd;
        if nbd.max_connections == 0 || nbd.max_connections > MAX_NBD_CONNECTIONS {
            return invalid(format!(
                "nbd.max_connections must be between 1 and {MAX_NBD_CONNECTIONS}"
            ));
        }
        if nbd.max_handshakes_per_client == 0 || nbd.max_connections_per_export == 0 {
            return invalid(
                "nbd.max_handshakes_per_client and nbd.max_connections_per_export must be > 0"
                    .into(),
            );
        }
        if nbd.handshake_timeout_ms == 0 || nbd.request_timeout_ms == 0 {
            return invalid(
                "nbd.handshake_timeout_ms and nbd.request_timeout_ms must be > 0".into(),
            );
        }
        if nbd.buffer_budget_mib < MIN_NBD_BUFFER_BUDGET_MIB || nbd.buffer_budget_mib > (1 << 20) {
            return invalid(format!(
                "nbd.buffer_budget_mib must be between {MIN_NBD_BUFFER_BUDGET_MIB} and {}",
                1u64 << 20
            ));
        }
        if nbd.tls != NbdTlsMode::Off {
            for (setting, path) in [
                ("nbd.tls_cert", &nbd.tls_cert),
                ("nbd.tls_key", &nbd.tls_key),
            ] {
                if path.is_none() {
                    return invalid(format!(
                        "{setting} is required when nbd.tls is \"on\" or \"required\""
                    ));
                }
            }
        }
        if self.events.max_count == 0 || self.events.max_age_secs == 0 {
            return invalid("events: max_count and max_age_secs must be > 0".into());
        }
        let attachments = self.volumes.max_attachments_per_volume;
        if attachments == 0 || attachments > MAX_ATTACHMENTS_PER_VOLUME {
            return invalid(format!(
                "volumes.max_attachments_per_volume must be between 1 and \
                 {MAX_ATTACHMENTS_PER_VOLUME}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_has_the_four_arrays() {
        let c = Config::embedded_default();
        let names: Vec<_> = c.arrays.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["t1", "v1", "v2", "p1"]);
        assert_eq!(c.zoning.len(), 2);
        assert_eq!(c.http, HttpConfig::default());
        assert_eq!(c.driver_versions_kept, 5);
        assert_eq!(c.max_compile_wait_ms, 10_000);
    }

    #[test]
    fn the_cinder_table_is_read_checked_and_no_auth_stays_on_loopback() {
        let c = Config::embedded_default();
        assert_eq!(
            (c.cinder.auth, c.cinder.host.as_str()),
            (CinderAuth::Token, "ferry")
        );
        let text = "[cinder]\nauth = 'none'\nhost = 'lab-7'\n[[array]]\nname='a'\ndriver='d'\n";
        let c = Config::parse(text, Path::new("x.toml")).unwrap();
        assert_eq!(
            (c.cinder.auth, c.cinder.host.as_str()),
            (CinderAuth::None, "lab-7")
        );
        assert!(
            c.cinder
                .check_listen("127.0.0.1:7070".parse().unwrap())
                .is_ok()
        );
        assert!(c.cinder.check_listen("[::1]:7070".parse().unwrap()).is_ok());
        let e = c
            .cinder
            .check_listen("0.0.0.0:7070".parse().unwrap())
            .unwrap_err();
        assert!(e.contains("beyond this host"), "{e}");
        assert!(
            Config::embedded_default()
                .cinder
                .check_listen("0.0.0.0:7070".parse().unwrap())
                .is_ok()
        );
        for bad in [
            "host = 'a@b'",
            "host = 'x#y'",
            "auth = 'keystone'",
            "colour = 'red'",
        ] {
            let text = format!("[cinder]\n{bad}\n[[array]]\nname='a'\ndriver='d'\n");
            assert!(Config::parse(&text, Path::new("x.toml")).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_limits_are_read_from_their_table() {
        let text = "[http]\nmax_connections = 10\nheader_read_timeout_ms = 500\n\
                    [[array]]\nname='a'\ndriver='d'\n";
        let c = Config::parse(text, Path::new("x.toml")).unwrap();
        assert_eq!(c.http.max_connections, 10);
        assert_eq!(c.http.header_read_timeout_ms, 500);
        assert_eq!(
            c.http.keep_alive_timeout_ms,
            HttpConfig::default().keep_alive_timeout_ms
        );
    }

    #[test]
    fn event_retention_has_defaults_and_can_be_set() {
        let p = Path::new("x.toml");
        let c = Config::parse("[[array]]\nname='a'\ndriver='d'\n", p).unwrap();
        assert_eq!(
            c.events,
            EventsConfig {
                max_count: 10_000,
                max_age_secs: 2_592_000
            }
        );
        let c = Config::parse(
            "[[array]]\nname='a'\ndriver='d'\n[events]\nmax_count = 50\nmax_age_secs = 60\n",
            p,
        )
        .unwrap();
        assert_eq!(
            c.events,
            EventsConfig {
                max_count: 50,
                max_age_secs: 60
            }
        );
    }

    #[test]
    fn metrics_access_and_the_attachment_cap_have_defaults_and_can_be_set() {
        let p = Path::new("x.toml");
        let c = Config::parse("[[array]]\nname='a'\ndriver='d'\n", p).unwrap();
        assert_eq!(c.http.metrics, MetricsAccess::Reader);
        assert_eq!(c.volumes.max_attachments_per_volume, 16);
        for (text, want) in [
            ("public", MetricsAccess::Public),
            ("reader", MetricsAccess::Reader),
            ("off", MetricsAccess::Off),
        ] {
            let c = Config::parse(
                &format!(
                    "[http]\nmetrics = '{text}'\n[volumes]\nmax_attachments_per_volume = 2\n\
                     [[array]]\nname='a'\ndriver='d'\n"
                ),
                p,
            )
            .unwrap();
            assert_eq!(c.http.metrics, want);
            assert_eq!(c.volumes.max_attachments_per_volume, 2);
        }
    }

    #[test]
    fn bad_configs_are_refused_with_reasons() {
        let p = Path::new("x.toml");
        let cases = [
            ("", "no arrays"),
            (
                "[[array]]\nname='a'\ndriver='d'\nbogus=1\n",
                "unknown field",
            ),
            ("[[array]]\nname='../a'\ndriver='d'\n", "array name"),
            (
                "[[array]]\nname='a'\ndriver='d'\n[[array]]\nname='a'\ndriver='d'\n",
                "twice",
            ),
            (
                "zoning=[['a','z']]\n[[array]]\nname='a'\ndriver='d'\n",
                "unknown array z",
            ),
            (
                "[[array]]\nname='a'\ndriver='d'\ncapacity_bytes=0\n",
                "zero capacity",
            ),
            (
                "[[array]]\nname='a'\ndriver='d'\n[driver_limits.d]\ndeadline_ms=0\n",
                "driver_limits.d: deadline_ms",
            ),
            (
                "[[array]]\nname='a'\ndriver='d'\n[driver_limits.d]\nfuel=3\n",
                "unknown field",
            ),
            (
                "[http]\nmax_connections=0\n[[array]]\nname='a'\ndriver='d'\n",
                "http.max_connections",
            ),
            (
                "[http]\nkeep_alive_timeout_ms=0\n[[array]]\nname='a'\ndriver='d'\n",
                "http.header_read_timeout_ms",
            ),
            (
                "[http]\nidle=1\n[[array]]\nname='a'\ndriver='d'\n",
                "unknown field",
            ),
            (
                "[[array]]\nname='a'\ndriver='d'\n[events]\nmax_count=0\n",
                "events: max_count",
            ),
            (
                "[[array]]\nname='a'\ndriver='d'\n[events]\nmax_age_secs=0\n",
                "events: max_count and max_age_secs",
            ),
            (
                "[[array]]\nname='a'\ndriver='d'\n[events]\nmax_bytes=9\n",
                "unknown field",
            ),
            (
                "driver_versions_kept=0\n[[array]]\nname='a'\ndriver='d'\n",
                "driver_versions_kept",
            ),
            (
                "[[array]]\nname='a'\ndriver='d'\n[volumes]\nmax_attachments_per_volume=0\n",
                "volumes.max_attachments_per_volume must be between 1 and 4096",
            ),
            (
                "[[array]]\nname='a'\ndriver='d'\n[volumes]\nmax_attachments_per_volume=5000\n",
                "volumes.max_attachments_per_volume",
            ),
            (
                "[[array]]\nname='a'\ndriver='d'\n[volumes]\nmax_attachments=3\n",
                "unknown field",
            ),
            (
                "[http]\nmetrics='everyone'\n[[array]]\nname='a'\ndriver='d'\n",
                "unknown variant `everyone`, expected one of `public`, `reader`, `off`",
            ),
            (
                "[nbd]\ntls='yes'\n[[array]]\nname='a'\ndriver='d'\n",
                "unknown variant `yes`, expected one of `off`, `on`, `required`",
            ),
            (
                "[nbd]\ntls='required'\ntls_key='k.pem'\n[[array]]\nname='a'\ndriver='d'\n",
                "nbd.tls_cert is required",
            ),
            (
                "[nbd]\ntls='on'\ntls_cert='c.pem'\n[[array]]\nname='a'\ndriver='d'\n",
                "nbd.tls_key is required",
            ),
        ];
        for (text, want) in cases {
            let err = Config::parse(text, p).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
