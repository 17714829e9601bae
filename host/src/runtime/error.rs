//! The errors of the runtime: why a call failed ([`CallError`]) and why a
//! component was refused ([`RuntimeError`]), each with a stable code; and
//! the checks that turn a driver's answer into one.

use super::bindings::ferry::driver::types as wit;
use super::call::{MAX_MESSAGE_BYTES, truncate};
use super::types::{self, DriverErrorKind};
use crate::error_kind::ErrorKind;

/// Longest provider location (model update) a driver may return, in bytes.
pub const MAX_MODEL_UPDATE_BYTES: usize = 4096;

/// Why a driver call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The driver answered with an error.
    #[error("{kind}: {message}")]
    Driver {
        /// Its class.
        kind: DriverErrorKind,
        /// The driver's message.
        message: String,
    },
    /// The driver trapped (crashed); its instance was dropped.
    #[error("driver {driver} crashed: {message}")]
    Trap {
        /// Driver name.
        driver: String,
        /// What happened.
        message: String,
    },
    /// The driver ran past its deadline and was stopped.
    #[error("driver {driver} did not finish within its {deadline_ms} ms deadline and was stopped")]
    Timeout {
        /// Driver name.
        driver: String,
        /// The deadline.
        deadline_ms: u64,
    },
    /// The driver tried to use more memory than allowed.
    #[error(
        "driver {driver} ran out of memory: it tried to grow past its limit of {limit_bytes} bytes"
    )]
    OutOfMemory {
        /// Driver name.
        driver: String,
        /// The limit.
        limit_bytes: u64,
    },
    /// No version of the driver is loaded.
    #[error("driver {0:?} is not loaded")]
    NotLoaded(String),
}

impl CallError {
    /// The error with the text of every secret in `secrets` replaced.
    pub(crate) fn redacted(self, secrets: &crate::secrets::Secrets) -> Self {
        match self {
            Self::Driver { kind, message } => Self::Driver {
                kind,
                message: secrets.redact(&message),
            },
            Self::Trap { driver, message } => Self::Trap {
                driver,
                message: secrets.redact(&message),
            },
            other => other,
        }
    }

    /// A stable snake_case code for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Driver { kind, .. } => kind.code(),
            Self::Trap { .. } => "driver_trap",
            Self::Timeout { .. } => "driver_timeout",
            Self::OutOfMemory { .. } => "driver_out_of_memory",
            Self::NotLoaded(_) => "driver_not_loaded",
        }
    }

    /// The kind of failure, which the API maps to an HTTP status.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Driver { kind, .. } => match kind {
                DriverErrorKind::Unsupported | DriverErrorKind::NoSpace => ErrorKind::Unprocessable,
                DriverErrorKind::InvalidArgument => ErrorKind::BadRequest,
                DriverErrorKind::NotFound => ErrorKind::NotFound,
                DriverErrorKind::BackendError => ErrorKind::BadGateway,
            },
            Self::Trap { .. } | Self::Timeout { .. } | Self::OutOfMemory { .. } => {
                ErrorKind::BadGateway
            }
            Self::NotLoaded(_) => ErrorKind::Unavailable,
        }
    }

    pub(crate) fn contract(message: String) -> Self {
        Self::Driver {
            kind: DriverErrorKind::BackendError,
            message,
        }
    }
}

/// Why a component was refused or the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The component is larger than allowed.
    #[error("component is {size} bytes, more than the limit of {max} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not WebAssembly at all.
    #[error("not WebAssembly: {0}")]
    NotWasm(String),
    /// The bytes are a core WebAssembly module, not a component.
    #[error(
        "this is a core WebAssembly module; a driver must be a component \
         (build it for wasm32-wasip2, or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    /// The bytes are WebAssembly of an unknown version or layer.
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// The component does not target the driver world.
    #[error("component does not target a ferry:driver driver-world (0.1.x or 0.2.x): {0}")]
    WrongWorld(String),
    /// The component exports the driver interface at a version this host
    /// does not implement.
    #[error(
        "component targets ferry:driver@{found}, which this host does not implement \
         (it implements {supported})"
    )]
    IncompatibleVersion {
        /// The version the component was built against.
        found: String,
        /// What this host accepts.
        supported: String,
    },
    /// The component is malformed.
    #[error("component failed to compile: {0}")]
    Compile(String),
    /// Compiling took longer than allowed.
    #[error("component took longer than {limit_ms} ms to compile and was refused")]
    CompileTimeout {
        /// The limit.
        limit_ms: u64,
    },
    /// Another component held the host's one compile slot for longer than
    /// this one may wait.
    #[error(
        "another driver component is compiling (one compile at a time); \
         retry in {retry_after_secs} s"
    )]
    CompileBusy {
        /// When the slot is likely free again, in seconds.
        retry_after_secs: u64,
    },
    /// The component failed its first `capabilities` call.
    #[error("component failed its first capabilities call: {0}")]
    SmokeFailed(CallError),
    /// No version with this digest has been installed in this host.
    #[error("no installed version has digest {0}")]
    NotPrepared(String),
    /// The engine could not be set up.
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
}

impl RuntimeError {
    /// A stable snake_case code for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "component_too_large",
            Self::NotWasm(_) => "not_wasm",
            Self::CoreModule => "core_module",
            Self::NotAComponent(_) => "not_a_component",
            Self::IncompatibleVersion { .. } => "incompatible_world_version",
            Self::CompileTimeout { .. } => "compile_timeout",
            Self::CompileBusy { .. } => "compile_busy",
            Self::WrongWorld(_) => "wrong_world",
            Self::Compile(_) => "compile_failed",
            Self::SmokeFailed(_) => "smoke_call_failed",
            Self::NotPrepared(_) => "driver_version_not_found",
            Self::Engine(_) => "engine_error",
        }
    }
}

/// The full cause chain of an engine error, on one line.
pub(crate) fn chain(e: &wasmtime::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Turns the driver's WIT answer into ours, capping its message.
pub(crate) fn answer<T>(r: Result<T, wit::DriverError>) -> Result<T, CallError> {
    r.map_err(|e| {
        let (kind, message) = types::split_driver_error(e);
        CallError::Driver {
            kind,
            message: truncate(&message, MAX_MESSAGE_BYTES),
        }
    })
}

pub(crate) fn check_model_update(
    update: Option<String>,
    secrets: &crate::secrets::Secrets,
) -> Result<Option<String>, CallError> {
    match update {
        // Stored with the volume and shown in every answer about it.
        Some(u) if secrets.found_in(&u) => Err(CallError::contract(
            "the driver returned a model update that holds one of its array's secrets; \
             it was not stored"
                .to_owned(),
        )),
        Some(u) if u.len() > MAX_MODEL_UPDATE_BYTES => Err(CallError::contract(format!(
            "the driver returned a model update of {} bytes; the limit is {MAX_MODEL_UPDATE_BYTES}",
            u.len()
        ))),
        other => Ok(other),
    }
}
