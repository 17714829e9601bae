//! Loading a driver version: the checks a component passes before it may
//! run (size, encoding, the driver world, a first `capabilities` call).

use wasmtime::component::Component;

use super::bindings::DriverWorldPre;
use super::error::{RuntimeError, chain};
use super::{Inner, Loaded};

/// Refuses what is not a component before it reaches the compiler, with a
/// specific reason.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), RuntimeError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(RuntimeError::NotAComponent(
            "the bytes are not WebAssembly (no \\0asm header)".into(),
        ));
    }
    match bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(RuntimeError::NotAComponent(
            "this is a core WebAssembly module; a driver must be a component \
             (build it for wasm32-wasip2, or wrap it with `wasm-tools component new`)"
                .into(),
        )),
        _ => Err(RuntimeError::NotAComponent(format!(
            "unknown WebAssembly version/layer {:02x?}",
            &bytes[4..8]
        ))),
    }
}

impl Inner {
    /// Compiles `bytes`, checks it against the driver world and makes a
    /// first `capabilities` call with no array bound.
    pub(crate) fn load(
        &self,
        name: &str,
        digest: String,
        bytes: &[u8],
    ) -> Result<Loaded, RuntimeError> {
        let component =
            Component::new(&self.engine, bytes).map_err(|e| RuntimeError::Compile(chain(&e)))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| RuntimeError::WrongWorld(chain(&e)))?;
        let pre = DriverWorldPre::new(pre).map_err(|e| RuntimeError::WrongWorld(chain(&e)))?;
        let caps = self
            .execute(&pre, name, None, |g, s| g.call_capabilities(s))
            .map_err(RuntimeError::SmokeFailed)?;
        Ok(Loaded {
            digest,
            pre,
            capabilities: caps.into(),
        })
    }
}
