//! `wasi:http/outgoing-handler` for drivers: every request is checked
//! against the array's outbound policy and sent by the host itself (its own
//! connect, so the address a name resolves to is checked before any byte
//! leaves), with timeouts ending at the call's deadline and both bodies
//! capped. Redirects are never followed here.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use super::call::CallState;
use crate::array::Array;
use crate::outbound::{OutboundPolicy, public};

/// Largest request body a driver may send.
pub const MAX_REQUEST_BODY_BYTES: u64 = 4 << 20;
/// Largest response body a driver may receive.
pub const MAX_RESPONSE_BODY_BYTES: u64 = 16 << 20;

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type Sent = Result<(http::Response<WasiBody>, IoFuture), HttpError>;

/// The policy a call's requests go by: its array's, read only when a
/// request is made, so a call that makes none pays nothing for it.
pub(crate) struct OutboundHooks {
    /// `None` while loading: nothing is reachable.
    array: Option<Arc<Array>>,
    deadline: Instant,
    driver: String,
}

impl OutboundHooks {
    /// The hooks of a call for `array` (none while loading).
    pub(crate) fn new(array: Option<Arc<Array>>, deadline: Instant, driver: &str) -> Self {
        Self {
            array,
            deadline,
            driver: driver.to_owned(),
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let uri = request.uri().clone();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let policy: Option<&OutboundPolicy> = self.array.as_deref().map(Array::outbound);
        let checked = policy.and_then(|p| {
            p.allowed(https, &host, port)
                .map(|o| (o.literal_ip(), p.tls()))
        });
        let driver = self.driver.clone();
        let array = self
            .array
            .as_deref()
            .map_or_else(String::new, |a| a.name().to_owned());
        // A URL may carry a secret (a token in its query): logged redacted.
        let shown = match self.array.as_deref() {
            Some(a) => a.secrets().redact(&uri.to_string()),
            None => uri.to_string(),
        };
        let Some((literal, tls)) = checked else {
            tracing::warn!(driver = %driver, array = %array, uri = %shown, "driver HTTP request denied: not in the array's http_allow");
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        };
        let deadline = tokio::time::Instant::from_std(self.deadline);
        Box::new(async move {
            let sent = tokio::time::timeout_at(
                deadline,
                send(request, options, https, host, port, literal, tls, deadline),
            )
            .await
            .unwrap_or(Err(HttpError::ConnectionTimeout));
            if let Err(e) = &sent {
                tracing::debug!(driver = %driver, array = %array, uri = %shown, error = ?e, "driver HTTP request failed");
            }
            sent
        })
    }
}

#[allow(clippy::too_many_arguments)]
async fn send(
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    https: bool,
    host: String,
    port: u16,
    literal: Option<std::net::IpAddr>,
    tls: Option<Arc<rustls::ClientConfig>>,
    deadline: tokio::time::Instant,
) -> Sent {
    if let Some(len) = request.headers().get(http::header::CONTENT_LENGTH)
        && len
            .to_str()
            .ok()
            .and_then(|l| l.parse::<u64>().ok())
            .is_none_or(|l| l > MAX_REQUEST_BODY_BYTES)
    {
        return Err(HttpError::HttpRequestBodySize(None));
    }
    let addr = resolve(&host, port, literal).await?;
    let connect = async {
        let connected = tokio::net::TcpStream::connect(addr).await;
        connected.map_err(HttpError::Connect)
    };
    let tcp = match options.and_then(|o| o.connect_timeout) {
        Some(t) => tokio::time::timeout(t, connect)
            .await
            .map_err(|_| HttpError::ConnectionTimeout)??,
        None => connect.await?,
    };
    let (mut parts, body) = request.into_parts();
    // hyper's client speaks origin-form on the wire.
    parts.uri = http::Uri::builder()
        .path_and_query(uri_path(&parts.uri))
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let body = Capped::new(body, MAX_REQUEST_BODY_BYTES, deadline, Side::Request).boxed_unsync();
    let request = http::Request::from_parts(parts, body);
    let response = if https {
        let tls = tls.ok_or(HttpError::HttpRequestDenied)?;
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(HttpError::Tls)?;
        exchange(stream, request, deadline).await?
    } else {
        exchange(tcp, request, deadline).await?
    };
    let response = response.map(|b| {
        Capped::new(
            b.map_err(HttpError::from),
            MAX_RESPONSE_BODY_BYTES,
            deadline,
            Side::Response,
        )
        .boxed_unsync()
    });
    Ok((response, Box::new(async { Ok(()) }) as IoFuture))
}

fn uri_path(uri: &http::Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// The address to connect to: a listed IP literal as is; a listed name
/// only to public addresses, so DNS cannot point it at the host itself or
/// a private network.
async fn resolve(
    host: &str,
    port: u16,
    literal: Option<std::net::IpAddr>,
) -> Result<SocketAddr, HttpError> {
    if let Some(ip) = literal {
        return Ok(SocketAddr::new(ip, port));
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| HttpError::DnsError {
            rcode: None,
            info_code: None,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(HttpError::DnsError {
            rcode: None,
            info_code: None,
        });
    }
    // Every address must be public: a name that resolves to a mix is not
    // trusted with any of them.
    if addrs.iter().any(|a| !public(a.ip())) {
        return Err(HttpError::DestinationIpProhibited);
    }
    Ok(addrs[0])
}

/// One request on a fresh HTTP/1 connection; the connection is driven by a
/// task that ends at the deadline at the latest.
async fn exchange<S>(
    stream: S,
    request: http::Request<WasiBody>,
    deadline: tokio::time::Instant,
) -> Result<http::Response<hyper::body::Incoming>, HttpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(stream)).await?;
    tokio::spawn(tokio::time::timeout_at(deadline, conn));
    Ok(sender.send_request(request).await?)
}

#[derive(Clone, Copy)]
enum Side {
    Request,
    Response,
}

/// A body that fails once it carries more than its cap, or at the deadline.
struct Capped<B> {
    inner: B,
    left: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
    side: Side,
}

impl<B> Capped<B> {
    fn new(inner: B, cap: u64, deadline: tokio::time::Instant, side: Side) -> Self {
        Self {
            inner,
            left: cap,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            side,
        }
    }
}

impl<B> Body for Capped<B>
where
    B: Body<Data = Bytes, Error = HttpError> + Unpin,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)));
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => f,
            other => return other,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > self.left {
                return Poll::Ready(Some(Err(match self.side {
                    Side::Request => HttpError::HttpRequestBodySize(None),
                    Side::Response => HttpError::HttpResponseBodySize(None),
                })));
            }
            self.left -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}
