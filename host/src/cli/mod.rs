//! The `ferry` command line: `ferry serve` runs the server; `array`,
//! `volume` and `driver` talk to a running one over the API.
//!
//! Exit status: 0 success, 1 the server refused or failed the call, 2 bad
//! usage or local setup (no token), 3 the server could not be reached.
//! `ferry driver check`, which runs locally, exits 0 when every check
//! passes, 1 when one fails and 2 when the file is no usable component.

mod check;
mod client;
mod commands;
mod migrate;
mod serve;
mod size;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use uuid::Uuid;

pub use client::{Client, ClientError};
pub use size::parse_size;

use crate::api::auth;

/// The exit status for a refused or failed call.
const EXIT_API: u8 = 1;
/// The exit status for bad usage or local setup.
const EXIT_USAGE: u8 = 2;
/// The exit status when the server cannot be reached.
const EXIT_UNREACHABLE: u8 = 3;

/// Moves block volumes between storage arrays of different vendors while
/// they stay usable.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, max_term_width = 100)]
pub struct Cli {
    /// Print the server's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// URL of the Ferry server.
    #[arg(
        long,
        global = true,
        env = "FERRY_URL",
        default_value = "http://127.0.0.1:7070"
    )]
    url: String,
    /// Data directory: the server keeps its state there; clients read the
    /// admin token from DIR/admin.token unless FERRY_TOKEN is set.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "FERRY_DATA_DIR",
        default_value = "./ferry-data"
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: the HTTP API and the NBD exports.
    Serve(serve::ServeArgs),
    /// Storage arrays.
    #[command(subcommand)]
    Array(ArrayCmd),
    /// Volumes: create, list, show, delete, attach, detach, migrate,
    /// reset-status.
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Driver components.
    #[command(subcommand)]
    Driver(DriverCmd),
    /// Follow the event stream: one line per state change.
    Events {
        /// Replay the events after this sequence number first.
        #[arg(long)]
        after: Option<u64>,
    },
}

/// `ferry array ...`
#[derive(Debug, Subcommand)]
pub enum ArrayCmd {
    /// List the arrays with their pools, zoning and capacity.
    List,
}

/// `ferry driver ...`
#[derive(Debug, Subcommand)]
pub enum DriverCmd {
    /// List the drivers and their versions.
    List,
    /// Upload a driver component; it becomes the active version unless
    /// --no-activate.
    Install {
        /// The component (.wasm).
        file: PathBuf,
        /// Driver name to install it as.
        #[arg(long)]
        name: String,
        /// Keep the current version active.
        #[arg(long)]
        no_activate: bool,
    },
    /// Make an installed version the active one.
    Activate {
        /// Driver name.
        name: String,
        /// Digest of the version, as `driver list --json` shows it.
        digest: String,
    },
    /// Delete an installed version that is not active and that no call
    /// runs on: its component, compiled code and record.
    Delete {
        /// Driver name.
        name: String,
        /// Digest of the version, as `driver list --json` shows it.
        digest: String,
    },
    /// Run the conformance checks on a component locally, against scratch
    /// arrays; no server needed.
    Check {
        /// The component (.wasm).
        file: PathBuf,
        /// Per-call deadline in milliseconds (what `limits.deadline_ms` or
        /// `[driver_limits.NAME]` gives the driver in `ferry serve`).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        deadline_ms: Option<u64>,
        /// Largest linear memory of one call, in bytes, 1 MiB to 4 GiB.
        #[arg(long, value_parser = clap::value_parser!(u64).range((1 << 20)..=(4 << 30)))]
        memory_bytes: Option<u64>,
    },
}

/// Access mode of an attachment.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// Read and write.
    Rw,
    /// Read only.
    Ro,
}

/// A status an operator may set with `reset-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResetStatusArg {
    /// Ready and not attached.
    Available,
    /// Attached (the volume must have attachments).
    InUse,
    /// Failed; the volume can be deleted.
    Error,
}

/// What `reset-status` does to the last migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MigrationStatusArg {
    /// Record the last migration as failed.
    Error,
    /// Forget the last migration: the volume shows none.
    None,
}

/// `ferry volume ...`
#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// Create a volume.
    Create {
        /// Display name.
        name: String,
        /// Size: bytes, or with a unit (512, 1M, 10G, 1GiB, 1.5T).
        #[arg(long, value_parser = parse_size)]
        size: u64,
        /// Array to create it on.
        #[arg(long)]
        array: String,
        /// Pool on the array (its first pool when absent).
        #[arg(long)]
        pool: Option<String>,
    },
    /// Make a LUN that already lives on an array a volume, without copying
    /// (its size is the LUN's).
    Manage {
        /// Display name of the new volume.
        name: String,
        /// The array the LUN lives on.
        #[arg(long)]
        array: String,
        /// The LUN, in the array driver's terms (the example drivers take
        /// `<pool>/<lun name>` or `<lun name>`).
        #[arg(long)]
        reference: String,
        /// Pool on the array (its first pool when absent).
        #[arg(long)]
        pool: Option<String>,
    },
    /// Forget an available, detached volume; its LUN stays on the array
    /// with its data.
    Unmanage {
        /// Volume id.
        id: Uuid,
    },
    /// List the volumes.
    List,
    /// Show one volume.
    Show {
        /// Volume id.
        id: Uuid,
    },
    /// Delete a volume and its storage.
    Delete {
        /// Volume id.
        id: Uuid,
        /// Remove it in any state, migrating included: stop its migration,
        /// disconnect its NBD clients, and have the drivers of both sides of
        /// its last migration delete their LUN of it (best effort; what is
        /// left behind is printed as a warning). The record goes anyway.
        #[arg(long)]
        force: bool,
    },
    /// Set a volume's status by hand (the way out of a stuck migration).
    /// A running migration is stopped and recorded as failed; no data
    /// moves and no LUN is deleted (deleting the volume later removes a LUN
    /// the migration left on the other array).
    ResetStatus {
        /// Volume id.
        id: Uuid,
        /// The status to set.
        #[arg(long, value_enum)]
        status: ResetStatusArg,
        /// What to record of the last migration. Without it a running
        /// migration is recorded as error and a finished one kept.
        #[arg(long, value_enum)]
        migration_status: Option<MigrationStatusArg>,
        /// If the volume's LUN still fills from the migration's source,
        /// end the fill and keep only what arrived (the rest reads as
        /// zeros); without it such a reset is refused.
        #[arg(long)]
        discard_unhydrated: bool,
    },
    /// Attach a volume to a server; prints the NBD URI to connect to.
    Attach {
        /// Volume id.
        id: Uuid,
        /// The server's name.
        #[arg(long)]
        server: String,
        /// Access mode.
        #[arg(long, value_enum, default_value_t = ModeArg::Rw)]
        mode: ModeArg,
    },
    /// Detach a volume from a server.
    Detach {
        /// Volume id.
        id: Uuid,
        /// Attachment id, as `attach` printed it.
        attachment_id: Uuid,
    },
    /// Migrate a volume to another array (or pool). An attached (in-use)
    /// volume moves live: its servers keep their NBD connections.
    Migrate {
        /// Volume id.
        id: Uuid,
        /// Destination array.
        #[arg(long)]
        to: String,
        /// Destination pool (the array's first pool when absent).
        #[arg(long)]
        pool: Option<String>,
        /// Skip the drivers' own paths and copy in the host.
        #[arg(long)]
        force_host_copy: bool,
        /// Lock the volume while it migrates: attach and detach are refused
        /// (volume_locked) until the migration ends. Without it they are
        /// allowed (attach once the volume is attachable). reset-status and
        /// delete --force still stop the migration.
        #[arg(long)]
        lock_volume: bool,
        /// Show progress until the migration ends; exit non-zero unless it
        /// succeeds.
        #[arg(long)]
        wait: bool,
    },
    /// Show the last migration of a volume.
    Migration {
        /// Volume id.
        id: Uuid,
    },
    /// Abort a running migration; the volume goes back where it was.
    AbortMigration {
        /// Volume id.
        id: Uuid,
        /// Abort a migration started with `lock_volume` all the same.
        #[arg(long)]
        force: bool,
    },
}

/// Entry point of the `ferry` binary.
pub fn main() -> ExitCode {
    // Help and version exit 0; usage errors exit 2.
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args, cli.data_dir),
        Command::Array(cmd) => with_client(&cli.url, &cli.data_dir, cli.json, |c, out| {
            commands::array(c, out, cmd)
        }),
        Command::Volume(cmd) => with_client(&cli.url, &cli.data_dir, cli.json, |c, out| {
            commands::volume(c, out, cmd)
        }),
        Command::Events { after } => with_client(&cli.url, &cli.data_dir, cli.json, |c, out| {
            migrate::events(c, out, after)
        }),
        Command::Driver(DriverCmd::Check {
            file,
            deadline_ms,
            memory_bytes,
        }) => {
            let mut limits = crate::config::DriverLimits::default();
            limits.deadline_ms = deadline_ms.unwrap_or(limits.deadline_ms);
            limits.memory_bytes = memory_bytes.unwrap_or(limits.memory_bytes);
            check::run(&file, cli.json, limits)
        }
        Command::Driver(DriverCmd::List) => {
            with_client(&cli.url, &cli.data_dir, cli.json, commands::driver_list)
        }
        Command::Driver(DriverCmd::Install {
            file,
            name,
            no_activate,
        }) => {
            // A file that cannot be read is a local problem: no call made.
            let bytes = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!(
                        "error: cannot read {}: {e}",
                        table::sanitize(&file.display().to_string())
                    );
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            with_client(&cli.url, &cli.data_dir, cli.json, |c, out| {
                commands::driver_install(c, out, &name, &bytes, !no_activate)
            })
        }
        Command::Driver(DriverCmd::Activate { name, digest }) => {
            with_client(&cli.url, &cli.data_dir, cli.json, |c, out| {
                commands::driver_activate(c, out, &name, &digest)
            })
        }
        Command::Driver(DriverCmd::Delete { name, digest }) => {
            with_client(&cli.url, &cli.data_dir, cli.json, |c, out| {
                commands::driver_delete(c, out, &name, &digest)
            })
        }
    }
}

fn with_client(
    url: &str,
    data_dir: &std::path::Path,
    json: bool,
    run: impl FnOnce(&Client, commands::Output) -> Result<(), ClientError>,
) -> ExitCode {
    if !(url.starts_with("http://")) {
        eprintln!("error: the server URL must start with http:// (got {url:?})");
        return ExitCode::from(EXIT_USAGE);
    }
    let token = match token(data_dir) {
        Ok(t) => t,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let client = Client::new(url, token);
    match run(&client, commands::Output { json }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", table::sanitize(&e.to_string()));
            ExitCode::from(match e {
                ClientError::Unreachable { .. } => EXIT_UNREACHABLE,
                ClientError::Api { .. } | ClientError::Protocol { .. } => EXIT_API,
            })
        }
    }
}

/// The token: `FERRY_TOKEN`, else the first line of DIR/admin.token.
fn token(data_dir: &std::path::Path) -> Result<String, String> {
    let token = match std::env::var("FERRY_TOKEN") {
        Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
        _ => {
            let path = auth::admin_token_path(data_dir);
            auth::read_first_token(&path).map_err(|e| {
                format!("no token: {e}; set FERRY_TOKEN or point --data-dir at the server's data directory")
            })?
        }
    };
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token has characters a bearer token cannot hold".to_owned());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::Path;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn volume_create_parses_sizes_and_ids_must_be_uuids() {
        let cli = Cli::try_parse_from([
            "ferry", "volume", "create", "db", "--size", "1GiB", "--array", "t1",
        ])
        .unwrap();
        let Command::Volume(VolumeCmd::Create { size, pool, .. }) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!((size, pool), (1 << 30, None));

        let e = Cli::try_parse_from([
            "ferry", "volume", "create", "db", "--size", "1X", "--array", "a",
        ])
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = Cli::try_parse_from(["ferry", "volume", "show", "nope"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn driver_commands_parse() {
        let cli = Cli::try_parse_from([
            "ferry",
            "driver",
            "install",
            "acme.wasm",
            "--name",
            "acme",
            "--no-activate",
        ])
        .unwrap();
        let Command::Driver(DriverCmd::Install {
            file,
            name,
            no_activate,
        }) = cli.command
        else {
            panic!("wrong command");
        };
        assert_eq!(
            (file, name.as_str(), no_activate),
            (PathBuf::from("acme.wasm"), "acme", true)
        );
        let cli =
            Cli::try_parse_from(["ferry", "driver", "install", "a.wasm", "--name", "a"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Driver(DriverCmd::Install {
                no_activate: false,
                ..
            })
        ));
        // The name is required.
        let e = Cli::try_parse_from(["ferry", "driver", "install", "a.wasm"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);

        let cli = Cli::try_parse_from(["ferry", "driver", "activate", "acme", "abc123"]).unwrap();
        let Command::Driver(DriverCmd::Activate { name, digest }) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!((name.as_str(), digest.as_str()), ("acme", "abc123"));
        let e = Cli::try_parse_from(["ferry", "driver", "activate", "acme"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let cli = Cli::try_parse_from(["ferry", "driver", "delete", "acme", "abc123"]).unwrap();
        let Command::Driver(DriverCmd::Delete { name, digest }) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!((name.as_str(), digest.as_str()), ("acme", "abc123"));
        let e = Cli::try_parse_from(["ferry", "driver", "delete", "acme"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);

        let cli = Cli::try_parse_from(["ferry", "driver", "check", "d.wasm", "--json"]).unwrap();
        assert!(cli.json);
        assert!(matches!(
            cli.command,
            Command::Driver(DriverCmd::Check { file, deadline_ms: None, memory_bytes: None })
                if file == Path::new("d.wasm")
        ));
        let cli = Cli::try_parse_from([
            "ferry",
            "driver",
            "check",
            "d.wasm",
            "--deadline-ms",
            "250",
            "--memory-bytes",
            "8388608",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Driver(DriverCmd::Check {
                deadline_ms: Some(250),
                memory_bytes: Some(8388608),
                ..
            })
        ));
        for bad in [
            ["--deadline-ms", "0"],
            ["--memory-bytes", "1024"],
            ["--memory-bytes", "8589934592"],
            ["--deadline-ms", "soon"],
        ] {
            let e = Cli::try_parse_from(["ferry", "driver", "check", "d.wasm", bad[0], bad[1]])
                .unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?} accepted");
        }
    }

    #[test]
    fn operator_commands_parse() {
        let id = Uuid::new_v4().to_string();
        let cli = Cli::try_parse_from(["ferry", "volume", "delete", &id, "--force"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Volume(VolumeCmd::Delete { force: true, .. })
        ));
        let cli = Cli::try_parse_from(["ferry", "volume", "delete", &id]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Volume(VolumeCmd::Delete { force: false, .. })
        ));
        let cli = Cli::try_parse_from([
            "ferry",
            "volume",
            "reset-status",
            &id,
            "--status",
            "in-use",
            "--migration-status",
            "none",
        ])
        .unwrap();
        let Command::Volume(VolumeCmd::ResetStatus {
            status,
            migration_status,
            discard_unhydrated,
            ..
        }) = cli.command
        else {
            panic!("wrong command");
        };
        assert_eq!(
            (status, migration_status, discard_unhydrated),
            (ResetStatusArg::InUse, Some(MigrationStatusArg::None), false)
        );
        for bad in [
            vec!["ferry", "volume", "reset-status", &id],
            vec![
                "ferry",
                "volume",
                "reset-status",
                &id,
                "--status",
                "migrating",
            ],
            vec![
                "ferry",
                "volume",
                "reset-status",
                &id,
                "--status",
                "error",
                "--migration-status",
                "success",
            ],
        ] {
            let e = Cli::try_parse_from(bad.clone()).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn migrate_takes_lock_volume() {
        let id = Uuid::new_v4().to_string();
        let cli = Cli::try_parse_from([
            "ferry",
            "volume",
            "migrate",
            &id,
            "--to",
            "t1",
            "--lock-volume",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Volume(VolumeCmd::Migrate {
                lock_volume: true,
                ..
            })
        ));
        let cli = Cli::try_parse_from(["ferry", "volume", "migrate", &id, "--to", "t1"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Volume(VolumeCmd::Migrate {
                lock_volume: false,
                ..
            })
        ));
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "ferry",
            "volume",
            "list",
            "--json",
            "--url",
            "http://127.0.0.1:1",
            "--data-dir",
            "/d",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(cli.url, "http://127.0.0.1:1");
        assert_eq!(cli.data_dir, PathBuf::from("/d"));
    }
}
