//! HTTP to the array's management endpoint, through the host's
//! `wasi:http/outgoing-handler`.
//!
//! The host lets a driver reach only the origins listed in its array's
//! `http_allow` (scheme, host and port); anything else fails with an error
//! that says so. Names must resolve to public addresses, redirects are
//! answered, never followed (following one is a new request, checked
//! again), everything ends at the call's deadline, request bodies are
//! capped at 4 MiB and responses at 16 MiB. A call is blocking: it returns
//! once the whole response body is read.
//!
//! ```no_run
//! use ferry_sdk::{config, http};
//!
//! # fn demo() -> Result<(), ferry_sdk::DriverError> {
//! let endpoint = config::required_setting("endpoint")?;
//! let token = config::required_secret("token")?;
//! let answer = http::Request::get(&format!("{endpoint}/api/luns"))
//!     .header("authorization", &format!("Bearer {token}"))
//!     .send()?;
//! if !answer.is_success() {
//!     return Err(answer.error("list LUNs"));
//! }
//! # Ok(())
//! # }
//! ```

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

use crate::DriverError;

/// Bytes read from a response body per host call.
const READ_CHUNK: u64 = 64 << 10;
/// Bytes written to a request body per host call (the host's write limit).
const WRITE_CHUNK: usize = 4096;

/// A request to build and send.
#[derive(Debug, Clone)]
pub struct Request {
    method: &'static str,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
}

/// A whole response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names in lowercase, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (any case), if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A `backend-error` for an unexpected answer to `what`: the status and
    /// the start of the body.
    pub fn error(&self, what: &str) -> DriverError {
        let text = self.text();
        let start: String = text.chars().take(200).collect();
        DriverError::BackendError(format!(
            "{what}: the array answered {}: {start}",
            self.status
        ))
    }
}

impl Request {
    /// A request with `method` (`GET`, `POST`, ...) to `url`.
    pub fn new(method: &'static str, url: &str) -> Self {
        Self {
            method,
            url: url.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// `GET url`.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// `POST url`.
    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    /// `DELETE url`.
    pub fn delete(url: &str) -> Self {
        Self::new("DELETE", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
        self
    }

    /// Sets the body (and its `content-length`).
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.headers
            .push(("content-length".into(), body.len().to_string().into_bytes()));
        self.body = Some(body);
        self
    }

    /// Sets a JSON body, given as text.
    pub fn json(self, body: &str) -> Self {
        self.header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, DriverError> {
        let what = format!("{} {}", self.method, self.url);
        let fail = |why: String| DriverError::BackendError(format!("{what}: {why}"));
        let url = Url::parse(&self.url)
            .map_err(|e| DriverError::InvalidArgument(format!("{what}: {e}")))?;
        let fields = Fields::new();
        for (name, value) in &self.headers {
            fields.append(name, value).map_err(|e| {
                DriverError::InvalidArgument(format!("{what}: header {name}: {e:?}"))
            })?;
        }
        let request = OutgoingRequest::new(fields);
        let method = match self.method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            other => Method::Other(other.to_owned()),
        };
        let scheme = if url.https {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let set = request.set_method(&method).is_ok()
            && request.set_scheme(Some(&scheme)).is_ok()
            && request.set_authority(Some(url.authority)).is_ok()
            && request.set_path_with_query(Some(&url.path)).is_ok();
        if !set {
            return Err(DriverError::InvalidArgument(format!(
                "{what}: the host refused the URL"
            )));
        }
        let body = request
            .body()
            .map_err(|()| fail("no request body".into()))?;
        let pending = outgoing_handler::handle(request, Some(RequestOptions::new()))
            .map_err(|e| fail(describe(&e)))?;
        // A body the host refuses (over its cap) ends the stream early; the
        // response then carries the host's reason, which says more.
        let written = write_body(body, self.body.as_deref());
        let pollable = pending.subscribe();
        pollable.block();
        let response = match (pending.get(), written) {
            (Some(Ok(Err(e))), _) => return Err(fail(describe(&e))),
            (_, Err(e)) => return Err(fail(e)),
            (Some(Ok(Ok(r))), Ok(())) => r,
            _ => return Err(fail("the host lost the response".into())),
        };
        let status = response.status();
        let headers = response.headers().entries();
        let incoming = response
            .consume()
            .map_err(|()| fail("no response body".into()))?;
        let stream = incoming
            .stream()
            .map_err(|()| fail("no response body".into()))?;
        let mut body = Vec::new();
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(fail(format!(
                        "the response body failed: {}",
                        e.to_debug_string()
                    )));
                }
            }
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

fn write_body(body: OutgoingBody, data: Option<&[u8]>) -> Result<(), String> {
    if let Some(data) = data {
        let stream = body
            .write()
            .map_err(|()| "no request body stream".to_owned())?;
        for chunk in data.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("writing the request body failed: {e:?}"))?;
        }
    }
    OutgoingBody::finish(body, None).map_err(|e| describe(&e))
}

/// What a host error means for a driver's author.
fn describe(e: &ErrorCode) -> String {
    match e {
        ErrorCode::HttpRequestDenied => {
            "denied by the host: the origin is not in the array's http_allow".into()
        }
        ErrorCode::DestinationIpProhibited => {
            "denied by the host: the name resolves to an address that is not public \
             (list a private address literally in http_allow)"
                .into()
        }
        ErrorCode::HttpRequestBodySize(_) => "the request body is over the host's limit".into(),
        ErrorCode::HttpResponseBodySize(_) => "the response body is over the host's limit".into(),
        ErrorCode::TlsProtocolError | ErrorCode::TlsCertificateError => {
            "TLS failed: is the array's certificate signed by a CA the host trusts for it \
             (its http_ca_file)?"
                .into()
        }
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout => {
            "timed out (requests end at the call's deadline)".into()
        }
        other => format!("{other:?}"),
    }
}

/// The parts of an `http[s]://authority/path?query` URL the request needs.
struct Url<'a> {
    https: bool,
    authority: &'a str,
    path: String,
}

impl<'a> Url<'a> {
    fn parse(url: &'a str) -> Result<Self, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err("the URL must start with http:// or https://".into());
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        if authority.is_empty() {
            return Err("the URL has no host".into());
        }
        Ok(Self {
            https,
            authority,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let u = Url::parse("https://array.example:8443/api/luns?pool=a").unwrap();
        assert!(u.https);
        assert_eq!(
            (u.authority, u.path.as_str()),
            ("array.example:8443", "/api/luns?pool=a")
        );
        let u = Url::parse("http://10.0.0.1").unwrap();
        assert_eq!(
            (u.https, u.authority, u.path.as_str()),
            (false, "10.0.0.1", "/")
        );
        assert_eq!(Url::parse("http://h?q=1").unwrap().path, "/?q=1");
        assert!(Url::parse("ftp://x").is_err());
        assert!(Url::parse("http:///path").is_err());
    }
}
