//! HTTP from a driver, for the host's outbound policy tests: each mode
//! fails with a report of what happened, so the test reads it from the
//! create's error message.

use ferry_sdk::{DriverError, http};

/// `http-get:URL`: `GET URL`; reports `status <code>: <body>` or the error.
/// `http-follow:URL`: the same, following one redirect by hand.
/// `http-post-big:URL`: `POST URL` with a 5 MiB body.
pub fn fetch(mode: &str, url: &str) -> Result<Option<String>, DriverError> {
    let first = if mode == "http-post-big" {
        http::Request::post(url).body(vec![0x42; 5 << 20]).send()
    } else {
        http::Request::get(url).send()
    };
    let report = match (mode, first) {
        ("http-follow", Ok(r)) if (300..400).contains(&r.status) => {
            let location = r.header("location").unwrap_or_default().to_owned();
            match http::Request::get(&location).send() {
                Ok(r) => format!("followed to {location}: status {}: {}", r.status, r.text()),
                Err(e) => format!("followed to {location}: {}", e.message()),
            }
        }
        (_, Ok(r)) => format!(
            "status {}: {} ({} bytes)",
            r.status,
            r.text().chars().take(64).collect::<String>(),
            r.body.len()
        ),
        (_, Err(e)) => format!("failed: {}", e.message()),
    };
    Err(DriverError::BackendError(format!("http report: {report}")))
}
