//! A small blocking client for the Ferry API.

use std::time::Duration;

use serde_json::Value;
use ureq::Agent;
use ureq::http::Response;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{message} ({code})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// No answer: refused, unreachable, timed out, or not HTTP.
    #[error("cannot reach Ferry at {url}: {source}")]
    Unreachable {
        /// The server URL.
        url: String,
        /// What the transport said.
        #[source]
        source: ureq::Error,
    },
    /// The server answered with something that is not the API's JSON.
    #[error("unexpected answer from {url}: {detail}")]
    Protocol {
        /// The server URL.
        url: String,
        /// What was wrong.
        detail: String,
    },
}

/// A client bound to one server and token.
pub struct Client {
    agent: Agent,
    base: String,
    token: String,
}

/// Longest error body echoed back when it is not the API's JSON.
const MAX_ECHO: usize = 200;

impl Client {
    /// A client for `base` (`http://host:port`), authenticating with `token`.
    pub fn new(base: &str, token: String) -> Self {
        let config = Agent::config_builder()
            // Error statuses carry the API's JSON error; read it ourselves.
            .http_status_as_error(false)
            // Ferry usually runs on loopback; an environment proxy would only
            // get in the way.
            .proxy(None)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(5)))
            // Driver calls (create, delete) can take a while.
            .timeout_global(Some(Duration::from_secs(300)))
            .build();
        Self {
            agent: config.new_agent(),
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// The server URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`; the JSON answer.
    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        let res = self
            .agent
            .get(self.url(path))
            .header("Authorization", self.bearer())
            .call();
        self.json(res)
    }

    /// `POST path` with a JSON body; the JSON answer.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let res = self
            .agent
            .post(self.url(path))
            .header("Authorization", self.bearer())
            .send_json(body);
        self.json(res)
    }

    /// `POST path` without a body, expecting no content.
    pub fn post_empty(&self, path: &str) -> Result<(), ClientError> {
        let res = self
            .agent
            .post(self.url(path))
            .header("Authorization", self.bearer())
            .send_empty();
        self.answer(res).map(|_| ())
    }

    /// `PUT path` with `body` sent as is (no JSON encoding) under
    /// `content_type`; the answer's status and JSON. The status tells a
    /// created resource (201) from one that was there already (200).
    pub fn put_bytes(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<(u16, Value), ClientError> {
        let res = self
            .agent
            .put(self.url(path))
            .header("Authorization", self.bearer())
            .header("Content-Type", content_type)
            .send(body);
        let status = res.as_ref().map_or(0, |r| r.status().as_u16());
        let value = self.json(res)?;
        Ok((status, value))
    }

    /// `DELETE path`, expecting no content.
    pub fn delete(&self, path: &str) -> Result<(), ClientError> {
        let res = self
            .agent
            .delete(self.url(path))
            .header("Authorization", self.bearer())
            .call();
        self.answer(res).map(|_| ())
    }

    /// `DELETE path`, expecting a JSON answer.
    pub fn delete_json(&self, path: &str) -> Result<Value, ClientError> {
        let res = self
            .agent
            .delete(self.url(path))
            .header("Authorization", self.bearer())
            .call();
        self.json(res)
    }

    /// `GET path` as a stream of lines (server-sent events), handing each
    /// line to `on_line` until it returns false or the stream ends.
    pub fn follow(
        &self,
        path: &str,
        mut on_line: impl FnMut(&str) -> bool,
    ) -> Result<(), ClientError> {
        use std::io::BufRead;
        // A stream has no end to wait for: no overall timeout here.
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_connect(Some(Duration::from_secs(5)))
            .build()
            .into();
        let res = agent
            .get(self.url(path))
            .header("Authorization", self.bearer())
            .header("Accept", "text/event-stream")
            .call();
        let mut res = res.map_err(|source| ClientError::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        if !res.status().is_success() {
            let status = res.status().as_u16();
            let body = res.body_mut().read_to_string().unwrap_or_default();
            return Err(api_error(status, &body));
        }
        let reader = std::io::BufReader::new(res.body_mut().as_reader());
        for line in reader.lines() {
            let line = line.map_err(|e| self.protocol(format!("event stream broke: {e}")))?;
            if !on_line(&line) {
                break;
            }
        }
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn json(&self, res: Result<Response<ureq::Body>, ureq::Error>) -> Result<Value, ClientError> {
        let body = self.answer(res)?;
        serde_json::from_str(&body).map_err(|e| self.protocol(format!("invalid JSON: {e}")))
    }

    /// The body of a successful answer, or the error it stands for.
    fn answer(
        &self,
        res: Result<Response<ureq::Body>, ureq::Error>,
    ) -> Result<String, ClientError> {
        let mut res = res.map_err(|source| ClientError::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        let status = res.status().as_u16();
        let body = res
            .body_mut()
            .read_to_string()
            .map_err(|e| self.protocol(format!("cannot read the body: {e}")))?;
        if res.status().is_success() {
            return Ok(body);
        }
        Err(api_error(status, &body))
    }

    fn protocol(&self, detail: String) -> ClientError {
        ClientError::Protocol {
            url: self.base.clone(),
            detail,
        }
    }
}

/// The error an error answer stands for: the API's envelope when it is one,
/// otherwise the status and the start of the body.
fn api_error(status: u16, body: &str) -> ClientError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v["error"][name].as_str())
            .map(str::to_owned)
    };
    match (field("code"), field("message")) {
        (Some(code), Some(message)) => ClientError::Api {
            status,
            code,
            message,
        },
        _ => {
            let mut message: String = body.trim().chars().take(MAX_ECHO).collect();
            if message.is_empty() {
                message = format!("HTTP status {status}");
            }
            ClientError::Api {
                status,
                code: format!("http_{status}"),
                message,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelopes_are_read() {
        let e = api_error(
            404,
            r#"{"error":{"code":"volume_not_found","message":"volume x not found"}}"#,
        );
        assert_eq!(e.to_string(), "volume x not found (volume_not_found)");
    }

    #[test]
    fn other_error_bodies_are_shown_briefly() {
        let e = api_error(502, &"x".repeat(1000));
        let ClientError::Api { code, message, .. } = e else {
            panic!("not an api error");
        };
        assert_eq!(code, "http_502");
        assert_eq!(message.len(), MAX_ECHO);
        let e = api_error(500, "");
        assert_eq!(e.to_string(), "HTTP status 500 (http_500)");
    }

    /// Answers one HTTP request with `status` and `body`; hands back the
    /// request's head and body as received.
    fn one_shot_server(
        status: &'static str,
        body: &'static str,
    ) -> (String, std::thread::JoinHandle<(String, Vec<u8>)>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut received = vec![0u8; length];
            reader.read_exact(&mut received).unwrap();
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            (head, received)
        });
        (url, handle)
    }

    #[test]
    fn put_bytes_sends_the_body_raw_and_reports_the_status() {
        let (url, server) = one_shot_server("201 Created", r#"{"name":"acme","active":true}"#);
        let c = Client::new(&url, "tok".into());
        let component = b"\0asm\x0d\0\x01\0 raw \xff bytes";
        let (status, v) = c
            .put_bytes(
                "/v1/drivers/acme?activate=false",
                "application/wasm",
                component,
            )
            .unwrap();
        assert_eq!(status, 201);
        assert_eq!(v["name"], "acme");
        let (head, body) = server.join().unwrap();
        assert_eq!(body, component);
        let head = head.to_ascii_lowercase();
        assert!(
            head.starts_with("put /v1/drivers/acme?activate=false http/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.contains("content-type: application/wasm\r\n"),
            "{head}"
        );
        assert!(head.contains("authorization: bearer tok\r\n"), "{head}");
    }

    #[test]
    fn put_bytes_errors_carry_the_servers_code() {
        let (url, server) = one_shot_server(
            "422 Unprocessable Entity",
            r#"{"error":{"code":"wrong_world","message":"component does not target the driver world"}}"#,
        );
        let c = Client::new(&url, "tok".into());
        let e = c
            .put_bytes("/v1/drivers/x", "application/wasm", b"x")
            .unwrap_err();
        let ClientError::Api { status, code, .. } = e else {
            panic!("not an api error: {e}");
        };
        assert_eq!((status, code.as_str()), (422, "wrong_world"));
        server.join().unwrap();
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        // Bind then drop to find a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(&format!("http://127.0.0.1:{port}/"), "t".into());
        let e = c.get("/v1/arrays").unwrap_err();
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("cannot reach Ferry at http://127.0.0.1:{port}:"))
        );
    }
}
