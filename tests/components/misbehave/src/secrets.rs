//! Ways a driver could leak its array's secrets, for the host's redaction
//! tests, and a report of what the configuration handed it.

use ferry_sdk::{DriverError, config};

/// `settings`: fails with what the array's configuration offers, without
/// any secret's text: `settings: endpoint=..., token=present|absent`.
pub fn report() -> Result<Option<String>, DriverError> {
    let endpoint = config::setting("endpoint").unwrap_or_else(|| "absent".into());
    let token = if config::secret("token").is_some() {
        "present"
    } else {
        "absent"
    };
    let missing = match config::required_secret("nothing-by-this-name") {
        Ok(_) => "found".to_owned(),
        Err(e) => e.message().to_owned(),
    };
    Err(DriverError::BackendError(format!(
        "settings: endpoint={endpoint}, token={token}, missing: {missing}"
    )))
}

/// `leak`, `leak-update`, `leak-panic`: puts the secrets in a log line, the
/// console, and then in the error, the model update or a panic.
pub fn leak(how: &str) -> Result<Option<String>, DriverError> {
    let token = config::secret("token").unwrap_or_default();
    let password = config::secret("password").unwrap_or_default();
    ferry_sdk::error!("logging in with token {token} and password {password}");
    eprintln!("console: token {token}, password {password}");
    match how {
        "leak-update" => Ok(Some(format!("default/lun-{token}"))),
        "leak-panic" => panic!("cannot log in with {password}"),
        _ => Err(DriverError::BackendError(format!(
            "the array refused token {token} and password {password}"
        ))),
    }
}
