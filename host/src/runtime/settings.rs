//! The `config` import: a call reads the settings and secrets of the array
//! it works for, and nothing while a component is being loaded (no array is
//! bound then).

use super::bindings::ferry::driver::config;
use super::call::CallState;

impl config::Host for CallState {
    fn setting(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self
            .scope
            .as_ref()
            .and_then(|s| s.array.setting(&name))
            .map(str::to_owned))
    }

    fn secret(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        let found = self
            .scope
            .as_ref()
            .and_then(|s| s.array.secrets().get(&name))
            .map(str::to_owned);
        if found.is_some() {
            tracing::debug!(driver = %self.driver, array = %self.array_name(), secret = %name, "driver read a secret");
        }
        Ok(found)
    }
}
