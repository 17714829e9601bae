//! The version documents OpenStack clients read before any call (`/`,
//! `/v3`, `/v3/`), and the microversion each v3 request asks for in its
//! `OpenStack-API-Version` header.

use std::fmt;

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use crate::api::error::ApiError;
use crate::api::routes::{Access, Routes};

pub(super) fn register(r: Routes) -> Routes {
    r.open(routes!(root), Access::Public)
        .open(routes!(v3), Access::Public)
        .open(routes!(v3_slash), Access::Public)
}

/// A microversion of the v3 API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Microversion {
    minor: u16,
}

impl fmt::Display for Microversion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "3.{}", self.minor)
    }
}

/// The oldest microversion served: the v3 API as it first was.
pub const MIN: Microversion = Microversion { minor: 0 };
/// The newest microversion served. 3.67 made the project id optional in
/// paths, which Ferry does not serve; every field a volume gained up to
/// 3.66 is in its view.
pub const MAX: Microversion = Microversion { minor: 66 };

const HEADER: &str = "openstack-api-version";

/// The microversion `headers` ask for: the `volume` entry of
/// `OpenStack-API-Version` (a comma-separated list of `SERVICE VERSION`),
/// `latest` for [`MAX`], [`MIN`] when there is none.
pub fn requested(headers: &HeaderMap) -> Result<Microversion, ApiError> {
    let mut asked = None;
    for value in headers.get_all(HEADER) {
        let text = value.to_str().map_err(|_| invalid("is not ASCII"))?;
        for entry in text.split(',') {
            let mut words = entry.split_whitespace();
            if let (Some(service), Some(version), None) = (words.next(), words.next(), words.next())
                && service.eq_ignore_ascii_case("volume")
            {
                asked = Some(version.to_owned());
            }
        }
    }
    let Some(asked) = asked else {
        return Ok(MIN);
    };
    if asked.eq_ignore_ascii_case("latest") {
        return Ok(MAX);
    }
    let minor = asked
        .strip_prefix("3.")
        .filter(|m| !m.is_empty() && m.len() <= 4 && m.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|m| m.parse::<u16>().ok());
    let shown = crate::api::clip::echo(&asked);
    match minor {
        Some(minor) if (MIN.minor..=MAX.minor).contains(&minor) => Ok(Microversion { minor }),
        // A version, just not one served.
        _ if minor.is_some() || is_version_number(&asked) => Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "unsupported_api_version",
            format!(
                "Version {shown} is not supported by the API. Minimum is {MIN} and maximum is {MAX}."
            ),
        )),
        _ => Err(invalid(&format!(
            "{shown:?} is not of the form 3.N or latest"
        ))),
    }
}

/// `MAJOR.MINOR` in digits: a version, if not one served.
fn is_version_number(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    text.split_once('.')
        .is_some_and(|(major, minor)| digits(major) && digits(minor))
}

fn invalid(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_api_version",
        format!("the OpenStack-API-Version header's volume version {why}"),
    )
}

/// Middleware: refuses a microversion outside [`MIN`]..=[`MAX`] as Cinder
/// does, and says on every answer which one it served.
pub async fn microversion(mut req: Request, next: Next) -> Result<Response, ApiError> {
    let version = requested(req.headers())?;
    req.extensions_mut().insert(version);
    let mut res = next.run(req).await;
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::try_from(format!("volume {version}")) {
        headers.insert(HEADER, v);
    }
    headers.insert(
        header::VARY,
        HeaderValue::from_static("OpenStack-API-Version"),
    );
    Ok(res)
}

/// One version of the API, as clients discover it.
#[derive(Serialize, ToSchema)]
pub(super) struct VersionInfo {
    /// `v3.0`.
    id: &'static str,
    /// `CURRENT`.
    status: &'static str,
    /// The newest microversion served.
    version: String,
    /// The oldest microversion served.
    min_version: String,
    /// When this version last changed.
    updated: &'static str,
    /// The version's own address.
    links: Vec<VersionLink>,
    /// The media type of its bodies.
    #[serde(rename = "media-types")]
    media_types: Vec<MediaType>,
}

/// A link of a version.
#[derive(Serialize, ToSchema)]
pub(super) struct VersionLink {
    /// `self`.
    rel: &'static str,
    /// Absolute address.
    href: String,
}

/// A media type of a version.
#[derive(Serialize, ToSchema)]
pub(super) struct MediaType {
    /// `application/json`.
    base: &'static str,
    /// The versioned media type.
    #[serde(rename = "type")]
    kind: &'static str,
}

/// The versions served.
#[derive(Serialize, ToSchema)]
pub(super) struct Versions {
    /// Only v3.
    versions: Vec<VersionInfo>,
}

fn versions(headers: &HeaderMap) -> Versions {
    // Clients follow `self` to the version's address; the host they
    // reached us by is the one that works for them.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    Versions {
        versions: vec![VersionInfo {
            id: "v3.0",
            status: "CURRENT",
            version: MAX.to_string(),
            min_version: MIN.to_string(),
            updated: "2026-12-01T00:00:00Z",
            links: vec![VersionLink {
                rel: "self",
                href: format!("http://{host}/v3/"),
            }],
            media_types: vec![MediaType {
                base: "application/json",
                kind: "application/vnd.openstack.volume+json;version=3",
            }],
        }],
    }
}

/// The API versions (Block Storage version discovery).
///
/// Answers 300 Multiple Choices, as Cinder's root does; clients read the
/// body either way.
#[utoipa::path(get, path = "/", operation_id = "cinderVersions", tag = "block-storage-v3", responses(
    (status = 300, description = "The versions: v3, from `min_version` to `version`.", body = Versions),
))]
async fn root(headers: HeaderMap) -> Response {
    (StatusCode::MULTIPLE_CHOICES, Json(versions(&headers))).into_response()
}

/// The v3 API's version document.
#[utoipa::path(get, path = "/v3", operation_id = "cinderVersionV3", tag = "block-storage-v3", responses(
    (status = 200, description = "v3, from `min_version` to `version`.", body = Versions),
))]
async fn v3(headers: HeaderMap) -> Json<Versions> {
    Json(versions(&headers))
}

/// The v3 API's version document (the address its `self` link names).
#[utoipa::path(get, path = "/v3/", operation_id = "cinderVersionV3Slash", tag = "block-storage-v3", responses(
    (status = 200, description = "v3, from `min_version` to `version`.", body = Versions),
))]
async fn v3_slash(headers: HeaderMap) -> Json<Versions> {
    Json(versions(&headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(value: &str) -> Result<Microversion, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_str(value).unwrap());
        requested(&h)
    }

    #[test]
    fn the_volume_entry_of_the_header_is_read() {
        assert_eq!(requested(&HeaderMap::new()).unwrap(), MIN);
        assert_eq!(ask("volume 3.27").unwrap(), Microversion { minor: 27 });
        assert_eq!(
            ask("compute 2.1, volume 3.5").unwrap(),
            Microversion { minor: 5 }
        );
        assert_eq!(ask("volume latest").unwrap(), MAX);
        assert_eq!(ask("compute 2.90").unwrap(), MIN);
    }

    #[test]
    fn versions_outside_the_range_are_refused_as_cinder_does() {
        for (value, status, code) in [
            ("volume 3.67", 406, "unsupported_api_version"),
            ("volume 2.0", 406, "unsupported_api_version"),
            ("volume 4.1", 406, "unsupported_api_version"),
            ("volume 3.x", 400, "invalid_api_version"),
            ("volume three", 400, "invalid_api_version"),
            ("volume 3.", 400, "invalid_api_version"),
        ] {
            let e = ask(value).unwrap_err();
            assert_eq!((e.status().as_u16(), e.code()), (status, code), "{value}");
        }
        let e = ask("volume 3.99").unwrap_err();
        assert!(
            e.message().contains("Minimum is 3.0 and maximum is 3.66"),
            "{}",
            e.message()
        );
    }
}
