//! The `ferry-remote` example driver, the reference for a driver of a real
//! array: the array is another Ferry host. The driver manages its volumes
//! through that host's HTTP API (outbound HTTP to the array's management
//! endpoint, a bearer token from the array's secrets) and hands the host the
//! NBD exports that host serves, so the data never passes through the
//! driver: this host connects to the export itself.
//!
//! Configuration of an array it manages:
//!
//! ```toml
//! [[arrays]]
//! name = "far"
//! driver = "ferry-remote"
//! http_allow = ["http://192.0.2.10:8080"]
//! nbd_allow = ["nbd://192.0.2.10:10809"]
//! [arrays.settings]
//! endpoint = "http://192.0.2.10:8080"   # the other host's API
//! array = "p1"                           # the array there that holds the volumes
//! [arrays.secrets]
//! token = { file = "/etc/ferry/far.token" }  # an admin token of the other host
//! ```
//!
//! Every call is idempotent without driver state: a volume is found on the
//! remote by a name derived from its id, an exposure by a server name
//! derived from the connector, so a call repeated after a crash finds what
//! the first one made.

use ferry_sdk::{
    Capabilities, ConnectionInfo, Connector, DataPath, Driver, DriverError, Managed, NbdExport,
    Volume, config, http,
};
use serde::Deserialize;

/// The driver. It declines every migration call: the host copies to and
/// from the remote array through the exports.
pub struct FerryRemote;

/// A volume as the remote API answers it (the fields this driver reads).
#[derive(Debug, Deserialize)]
struct RemoteVolume {
    id: String,
    name: String,
    size_bytes: u64,
    status: String,
    #[serde(default)]
    attachments: Vec<RemoteAttachment>,
}

#[derive(Debug, Deserialize)]
struct RemoteAttachment {
    id: String,
    server: String,
    uri: Option<String>,
}

#[derive(Debug, Deserialize)]
struct VolumeList {
    volumes: Vec<RemoteVolume>,
}

/// The remote API: its base URL, token and the array there.
struct Remote {
    endpoint: String,
    token: String,
    array: String,
}

impl Remote {
    fn from_config() -> Result<Self, DriverError> {
        let endpoint = config::required_setting("endpoint")?;
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token: config::required_secret("token")?,
            array: config::required_setting("array")?,
        })
    }

    fn send(&self, req: http::Request) -> Result<http::Response, DriverError> {
        req.header("authorization", &format!("Bearer {}", self.token))
            .header("accept", "application/json")
            .send()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    /// The remote volume named `name`, if any.
    fn find(&self, name: &str) -> Result<Option<RemoteVolume>, DriverError> {
        let answer = self.send(http::Request::get(&self.url("/v1/volumes")))?;
        if !answer.is_success() {
            return Err(answer.error("list volumes"));
        }
        let list: VolumeList = parse(&answer, "list volumes")?;
        Ok(list.volumes.into_iter().find(|v| v.name == name))
    }

    /// The remote volume `id`; `None` when the remote has none.
    fn get(&self, id: &str) -> Result<Option<RemoteVolume>, DriverError> {
        let answer = self.send(http::Request::get(&self.url(&format!("/v1/volumes/{id}"))))?;
        match answer.status {
            404 => Ok(None),
            _ if answer.is_success() => parse(&answer, "get volume").map(Some),
            _ => Err(answer.error("get volume")),
        }
    }

    /// The remote volume that holds `volume`: the one its model update
    /// names, else the one with its derived name.
    fn volume_of(&self, volume: &Volume) -> Result<Option<RemoteVolume>, DriverError> {
        match volume.provider_location.as_deref() {
            Some(id) if !id.is_empty() => self.get(id),
            _ => self.find(&remote_name(&volume.id)),
        }
    }

    /// Ends every exposure this driver made of `volume` on the remote (they
    /// would keep it in use); answers the remote volume, if there is one.
    fn release(&self, volume: &Volume) -> Result<Option<RemoteVolume>, DriverError> {
        let Some(found) = self.volume_of(volume)? else {
            return Ok(None);
        };
        for a in found
            .attachments
            .iter()
            .filter(|a| a.server.starts_with(EXPOSURE_PREFIX))
        {
            self.detach(&found, &a.id)?;
        }
        Ok(Some(found))
    }

    fn detach(&self, volume: &RemoteVolume, attachment: &str) -> Result<(), DriverError> {
        let url = self.url(&format!(
            "/v1/volumes/{}/attachments/{attachment}",
            volume.id
        ));
        let answer = self.send(http::Request::delete(&url))?;
        if answer.is_success() || answer.status == 404 {
            Ok(())
        } else {
            Err(answer.error("detach"))
        }
    }
}

/// How the server names of this driver's exposures on the remote start.
const EXPOSURE_PREFIX: &str = "ferry-remote:";

/// The name of the remote volume that holds volume `id`.
fn remote_name(id: &str) -> String {
    format!("ferry-{id}")
}

/// The server name the remote records for an exposure to `connector`.
fn exposure_name(connector: &Connector) -> String {
    match connector {
        Connector::Server(s) => format!("{EXPOSURE_PREFIX}{s}"),
        Connector::Array(a) => format!("{EXPOSURE_PREFIX}array:{a}"),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(
    answer: &http::Response,
    what: &str,
) -> Result<T, DriverError> {
    serde_json::from_slice(&answer.body)
        .map_err(|e| DriverError::BackendError(format!("{what}: unexpected answer: {e}")))
}

/// A JSON string literal.
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Maps a refusal of the remote to the error class the host expects.
fn refused(answer: &http::Response, what: &str) -> DriverError {
    let text: String = answer.text().chars().take(200).collect();
    let message = format!("{what}: the remote answered {}: {text}", answer.status);
    match answer.status {
        404 => DriverError::NotFound(message),
        422 | 507 => DriverError::NoSpace(message),
        400 => DriverError::InvalidArgument(message),
        _ => DriverError::BackendError(message),
    }
}

impl Driver for FerryRemote {
    fn capabilities() -> Capabilities {
        Capabilities {
            sparse: true,
            ..Capabilities::NONE
        }
    }

    fn create_volume(volume: Volume) -> Result<Option<String>, DriverError> {
        let remote = Remote::from_config()?;
        let name = remote_name(&volume.id);
        if let Some(found) = remote.find(&name)? {
            if found.size_bytes != volume.size_bytes {
                return Err(DriverError::BackendError(format!(
                    "the remote already holds {name} with {} bytes, not {}",
                    found.size_bytes, volume.size_bytes
                )));
            }
            return Ok(Some(found.id));
        }
        let body = format!(
            "{{\"name\":{},\"size_bytes\":{},\"array\":{},\"pool\":{}}}",
            quoted(&name),
            volume.size_bytes,
            quoted(&remote.array),
            quoted(&config::setting("pool").unwrap_or_else(|| volume.pool.clone()))
        );
        let answer = remote.send(http::Request::post(&remote.url("/v1/volumes")).json(&body))?;
        if !answer.is_success() {
            return Err(refused(&answer, "create volume"));
        }
        let made: RemoteVolume = parse(&answer, "create volume")?;
        ferry_sdk::info!(
            "created remote volume {} ({} bytes)",
            made.id,
            made.size_bytes
        );
        Ok(Some(made.id))
    }

    fn delete_volume(volume: Volume) -> Result<(), DriverError> {
        let remote = Remote::from_config()?;
        let Some(found) = remote.release(&volume)? else {
            return Ok(());
        };
        let url = remote.url(&format!("/v1/volumes/{}", found.id));
        let answer = remote.send(http::Request::delete(&url))?;
        if answer.is_success() || answer.status == 404 {
            Ok(())
        } else {
            Err(answer.error("delete volume"))
        }
    }

    fn initialize_connection(
        volume: Volume,
        connector: Connector,
    ) -> Result<ConnectionInfo, DriverError> {
        let remote = Remote::from_config()?;
        let found = remote.volume_of(&volume)?.ok_or_else(|| {
            DriverError::NotFound(format!("no remote volume holds {}", volume.id))
        })?;
        let server = exposure_name(&connector);
        let reused = found
            .attachments
            .iter()
            .find(|a| a.server == server)
            .and_then(|a| a.uri.clone());
        let uri = match reused {
            Some(uri) => uri,
            None => {
                let url = remote.url(&format!("/v1/volumes/{}/attachments", found.id));
                let body = format!("{{\"server\":{}}}", quoted(&server));
                let answer = remote.send(http::Request::post(&url).json(&body))?;
                if !answer.is_success() {
                    return Err(refused(&answer, "attach"));
                }
                let made: RemoteAttachment = parse(&answer, "attach")?;
                made.uri.ok_or_else(|| {
                    DriverError::BackendError(
                        "the remote answered no export URI: the token must be an admin token"
                            .into(),
                    )
                })?
            }
        };
        Ok(ConnectionInfo {
            data: DataPath::Nbd(NbdExport { uri }),
            read_only: false,
        })
    }

    fn terminate_connection(volume: Volume, connector: Connector) -> Result<(), DriverError> {
        let remote = Remote::from_config()?;
        let Some(found) = remote.volume_of(&volume)? else {
            return Ok(());
        };
        let server = exposure_name(&connector);
        for a in found.attachments.iter().filter(|a| a.server == server) {
            remote.detach(&found, &a.id)?;
        }
        Ok(())
    }

    /// `reference` is the remote volume's id or name: it becomes this
    /// host's volume as it is.
    fn manage_existing(_volume: Volume, reference: String) -> Result<Managed, DriverError> {
        let remote = Remote::from_config()?;
        let found = match remote.get(&reference) {
            Ok(Some(v)) => Some(v),
            // Not an id the remote knows: try it as a name.
            Ok(None) | Err(_) => remote.find(&reference)?,
        }
        .ok_or_else(|| DriverError::NotFound(format!("the remote has no volume {reference:?}")))?;
        if found.status != "available" {
            return Err(DriverError::InvalidArgument(format!(
                "remote volume {} is {}, not available",
                found.id, found.status
            )));
        }
        Ok(Managed {
            size_bytes: found.size_bytes,
            model_update: Some(found.id),
        })
    }

    /// The remote volume stays as it is; only this host's exposures go.
    fn unmanage(volume: Volume) -> Result<(), DriverError> {
        Remote::from_config()?.release(&volume).map(|_| ())
    }
}

ferry_sdk::export_driver!(FerryRemote);
