//! A hostile driver for the host's isolation tests. It behaves like the
//! `plain` example driver, except that `create-volume` misbehaves on purpose
//! when the volume's name asks for it:
//!
//! | name      | what `create-volume` does                                      |
//! | --------- | -------------------------------------------------------------- |
//! | `loop`    | spins forever                                                  |
//! | `grow`    | allocates memory until allocation fails, which traps           |
//! | `recurse` | recurses without bound until the stack overflows               |
//! | `panic`   | panics                                                         |
//! | `escape`  | tries to reach LUNs of other arrays; answers `Ok("ESCAPED")` if any attempt succeeded, else `backend-error` starting `escape blocked: ` with the host's refusals |
//! | `state`   | writes the state key `misbehave/state`, then traps             |
//! | `outside:PORT` | tries host files, the environment and the network (loopback `PORT`); answers `Ok("REACHED ...")` if anything worked, else `backend-error` starting `outside blocked: ` |
//! | `settings` | fails with `settings: endpoint=..., token=present\|absent, missing: ...`: what the array's configuration offers |
//! | `leak`    | logs the secrets `token` and `password`, prints them, then fails with them in its message |
//! | `leak-update` | the same, then answers a model update that holds the token |
//! | `leak-panic` | the same, then panics with the password |
//! | `http-get:URL` | `GET URL` through the host; fails with `http report: ...` (status and body, or the error) |
//! | `http-follow:URL` | the same, following one redirect by hand |
//! | `http-post-big:URL` | `POST URL` with a 5 MiB body, over the host's cap |
//!
//! Any other name creates a normal volume.
//!
//! When the array's settings hold `nbd_uri`, `initialize-connection` answers
//! that NBD export for every volume instead of its LUN: a stand-in for an
//! array's own export (an `nbdkit` with fault filters, a URI off the
//! array's `nbd_allow`).

mod hostile;
mod outbound;
mod secrets;

use ferry_sdk::{
    Capabilities, ConnectionInfo, Connector, DataPath, Driver, DriverError, NbdExport, Volume,
    block, config, layout,
};

/// The driver.
pub struct Misbehave;

impl Driver for Misbehave {
    fn capabilities() -> Capabilities {
        Capabilities {
            sparse: true,
            ..Capabilities::NONE
        }
    }

    fn create_volume(volume: Volume) -> Result<Option<String>, DriverError> {
        match volume.name.as_str() {
            "loop" => hostile::spin(),
            "grow" => hostile::bloat(),
            "recurse" => hostile::overflow_stack(),
            "panic" => panic!("volume {} asked for a panic", volume.id),
            "escape" => hostile::escape(&volume),
            "state" => hostile::write_state_then_trap(),
            "remember" => Ok(Some(hostile::remember())),
            "settings" => secrets::report(),
            "leak" | "leak-update" | "leak-panic" => secrets::leak(&volume.name),
            name if name.starts_with("http-get:")
                || name.starts_with("http-follow:")
                || name.starts_with("http-post-big:") =>
            {
                let (mode, url) = name.split_once(':').unwrap_or_default();
                outbound::fetch(mode, url)
            }
            name if name.starts_with("outside:") => {
                let port = name["outside:".len()..].parse().unwrap_or(9);
                hostile::reach_outside(port)
            }
            _ => {
                let address = layout::new_volume_lun(&volume)?;
                block::ensure_lun(&address, volume.size_bytes)?;
                Ok(Some(layout::provider_location(&address)))
            }
        }
    }

    fn delete_volume(volume: Volume) -> Result<(), DriverError> {
        block::delete_lun_if_present(&layout::volume_lun(&volume)?)
    }

    fn initialize_connection(
        volume: Volume,
        _connector: Connector,
    ) -> Result<ConnectionInfo, DriverError> {
        let data = match config::setting("nbd_uri") {
            Some(uri) => DataPath::Nbd(NbdExport { uri }),
            None => DataPath::Lun(layout::volume_lun(&volume)?),
        };
        Ok(ConnectionInfo {
            data,
            read_only: false,
        })
    }
}

ferry_sdk::export_driver!(Misbehave);
