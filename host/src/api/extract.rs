//! Request extractors whose rejections speak the API's error format.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;
use uuid::Uuid;

use super::error::ApiError;

/// A JSON request body; bad JSON, wrong fields, wrong content type and
/// oversized bodies are rejected as [`ApiError`]s.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// The UUIDs in a route's path parameters, in order (`/v1/volumes/{id}`
/// gives one, `.../attachments/{attachment_id}` two). A segment that is not
/// a UUID is answered with `invalid_id`.
#[derive(Debug, Clone, Copy)]
pub struct Ids<const N: usize>(pub [Uuid; N]);

impl<const N: usize, S> FromRequestParts<S> for Ids<N>
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let wiring =
            |detail: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail);
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| match e {
                axum::extract::rejection::RawPathParamsRejection::InvalidUtf8InPathParam(e) => {
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid_id", e.body_text())
                }
                other => wiring(other.body_text()),
            })?;
        let mut ids = [Uuid::nil(); N];
        let mut count = 0;
        for (name, raw) in &params {
            let slot = ids
                .get_mut(count)
                .ok_or_else(|| wiring(format!("route has more than {N} path parameters")))?;
            *slot = parse_id(name, raw)?;
            count += 1;
        }
        if count != N {
            return Err(wiring(format!(
                "route has {count} path parameters, not {N}"
            )));
        }
        Ok(Self(ids))
    }
}

/// The path of a volume's routes, as the document describes it: the
/// handlers read it through [`Ids`], which answers `invalid_id` itself.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only its parameters' description is used
pub struct VolumePath {
    /// The volume's id.
    id: Uuid,
}

/// The path of an attachment, as the document describes it.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only its parameters' description is used
pub struct AttachmentPath {
    /// The volume's id.
    id: Uuid,
    /// The attachment's id.
    attachment_id: Uuid,
}

/// Parses a UUID from a path segment; `what` names it in the error.
pub fn parse_id(what: &str, raw: &str) -> Result<Uuid, ApiError> {
    // Only the hyphenated form: it is the one the API hands out, and refusing
    // the others keeps one spelling per resource.
    if raw.len() != 36 {
        return Err(ApiError::invalid_id(what, raw));
    }
    Uuid::try_parse(raw).map_err(|_| ApiError::invalid_id(what, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_hyphenated_uuids() {
        let id = Uuid::new_v4();
        assert_eq!(parse_id("volume id", &id.to_string()).unwrap(), id);
        for bad in ["", "42", "not-a-uuid", &id.simple().to_string()] {
            let e = parse_id("volume id", bad).unwrap_err();
            assert_eq!(e.code(), "invalid_id", "{bad:?}");
        }
    }
}
