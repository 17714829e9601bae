//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the
//! code: paths from the handlers' `#[utoipa::path]` attributes (the same
//! ones the router is built from), schemas from the types the handlers
//! read and answer with, security and the common error answers from each
//! route's access rule (`routes.rs`, `error.rs`). Only what no handler
//! states is written here: the title, the description and the bearer
//! scheme.

use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::cinder::{CinderFault, X_AUTH_TOKEN};
use super::error::{BEARER, ErrorBody, ErrorCode};

/// What the handlers do not say: the API as a whole.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ferry",
        description = "Moves block volumes between storage arrays of different vendors while \
            they stay usable. Reads need any valid bearer token; every call that changes state \
            needs an admin token; `/metrics` is as the host's `[http] metrics` setting says (by \
            default any valid token). Every error is \
            `{\"error\": {\"code\": ..., \"message\": ...}}` with a stable `code`.\n\n\
            Beside it, under `/v3/{project_id}/` (tag `block-storage-v3`), a Block Storage v3 \
            compatible API for OpenStack's own clients: volumes, their actions, pools and \
            types, with microversions 3.0 to 3.66 (`OpenStack-API-Version: volume 3.N`), \
            `X-Auth-Token` (or no token with `[cinder] auth = \"none\"`), and Cinder's error \
            body `{\"itemNotFound\": {\"code\": 404, \"message\": ..., \"ferry_code\": ...}}`."
    ),
    security(("bearer" = [])),
    components(schemas(ErrorBody, ErrorCode, CinderFault)),
    modifiers(&BearerScheme)
)]
struct Base;

/// Adds the token schemes: the bearer token every protected route names,
/// and `X-Auth-Token`, which the Block Storage v3 routes take as well.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut Document) {
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "The admin token is in `DATA/admin.token`; read-only tokens in \
             `DATA/reader.token`."
                .to_owned(),
        );
        let mut header = ApiKeyValue::new("X-Auth-Token");
        header.description = Some(
            "A Ferry token, as OpenStack clients send it (`--os-auth-type admin_token \
             --os-token TOKEN`). With `[cinder] auth = \"none\"` the `/v3` routes take no \
             token (`--os-auth-type none` / `noauth`)."
                .to_owned(),
        );
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(BEARER, SecurityScheme::Http(http));
        components
            .add_security_scheme(X_AUTH_TOKEN, SecurityScheme::ApiKey(ApiKey::Header(header)));
    }
}

/// The whole document, built from the same route registrations as the
/// router.
pub fn document() -> Document {
    let routes = super::all_routes();
    let mut doc = Base::openapi();
    doc.merge(routes.protected.into_openapi());
    doc.merge(routes.public.into_openapi());
    doc.merge(routes.cinder.into_openapi());
    doc
}

/// The document as JSON text.
pub fn document_json() -> String {
    // Serializing plain data structures cannot fail; should it, the
    // client gets an error body rather than a panic.
    serde_json::to_value(document())
        .map(|mut doc| {
            camel_case_links(&mut doc);
            doc.to_string()
        })
        .unwrap_or_else(|e| {
            serde_json::json!({"error": {"code": "internal", "message": e.to_string()}}).to_string()
        })
}

/// Renames the fields of every response link to OpenAPI's spelling
/// (`operationId`, `operationRef`, `requestBody`): utoipa 5.5 writes them
/// in snake case, which clients that follow links reject.
fn camel_case_links(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let operations = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut());
    let responses = operations
        .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
        .flat_map(|r| r.values_mut());
    for response in responses {
        let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut()) else {
            continue;
        };
        for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
            for (snake, camel) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(v) = link.remove(snake) {
                    link.insert(camel.to_owned(), v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{Value, json};

    use super::*;
    use crate::api::routes::{Access, Family};

    fn doc() -> Value {
        serde_json::from_str(&document_json()).unwrap()
    }

    #[test]
    fn it_is_openapi_3_1_with_the_bearer_scheme() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "Ferry");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(doc["security"], json!([{"bearer": []}]));
        let scheme = &doc["components"]["securitySchemes"]["bearer"];
        assert_eq!(
            (&scheme["type"], &scheme["scheme"]),
            (&json!("http"), &json!("bearer"))
        );
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let doc = doc();
        let routes = crate::api::routes_table();
        let registered: BTreeSet<(String, String)> = routes
            .iter()
            .map(|r| (r.method.as_str().to_lowercase(), r.path.clone()))
            .collect();
        assert_eq!(
            registered.len(),
            routes.len(),
            "a route is registered twice"
        );
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        assert_eq!(registered, documented);
        assert!(registered.len() >= 19, "{registered:?}");
    }

    #[test]
    fn every_link_names_an_operation_that_exists() {
        let doc = doc();
        let mut ids = BTreeSet::new();
        let mut links = Vec::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                ids.insert(op["operationId"].as_str().unwrap().to_owned());
                for res in op["responses"].as_object().unwrap().values() {
                    if let Some(l) = res.get("links").and_then(|l| l.as_object()) {
                        links.extend(l.values().cloned());
                    }
                }
            }
        }
        assert!(links.len() >= 4, "{links:?}");
        for link in links {
            let target = link["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{link}"));
            assert!(ids.contains(target), "{link}");
            assert!(link.get("operation_id").is_none(), "{link}");
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = doc();
        let mut seen = BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                let id = op["operationId"].as_str().unwrap().to_owned();
                assert!(seen.insert(id.clone()), "operationId {id} twice");
            }
        }
    }

    #[test]
    fn documented_security_matches_each_routes_access() {
        let doc = doc();
        for r in crate::api::routes_table() {
            let op = &doc["paths"][&r.path][r.method.as_str().to_lowercase()];
            let responses = op["responses"].as_object().unwrap();
            match r.access {
                Access::Public => assert_eq!(op["security"], json!([]), "{}", r.path),
                Access::Configured => {
                    assert_eq!(op["security"], json!([{"bearer": []}, {}]), "{}", r.path);
                    assert!(responses.contains_key("401"), "{} {}", r.method, r.path);
                    assert!(responses.contains_key("404"), "{} {}", r.method, r.path);
                }
                Access::Read | Access::Admin if r.family == Family::Cinder => {
                    assert_eq!(
                        op["security"],
                        json!([{"x_auth_token": []}, {"bearer": []}, {}]),
                        "{}",
                        r.path
                    );
                    assert!(responses.contains_key("401"), "{} {}", r.method, r.path);
                    assert!(responses.contains_key("500"), "{} {}", r.method, r.path);
                }
                Access::Read | Access::Admin => {
                    assert!(op.get("security").is_none(), "{}", r.path);
                    assert!(responses.contains_key("401"), "{} {}", r.method, r.path);
                    assert!(responses.contains_key("500"), "{} {}", r.method, r.path);
                }
            }
            assert_eq!(
                responses.contains_key("403"),
                r.access == Access::Admin,
                "{} {}",
                r.method,
                r.path
            );
            // Every error answer carries the one error body of its API.
            let body = match r.family {
                Family::Native => "#/components/schemas/ErrorBody",
                Family::Cinder => "#/components/schemas/CinderFault",
            };
            for (status, res) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        res["content"]["application/json"]["schema"]["$ref"], body,
                        "{} {} {status}",
                        r.method, r.path
                    );
                }
            }
            let params: Vec<_> = op["parameters"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            let in_path: Vec<_> = r
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(params, in_path, "{}", r.path);
        }
    }

    #[test]
    fn json_bodies_and_ids_document_their_refusals() {
        let doc = doc();
        let create = &doc["paths"]["/v1/volumes"]["post"];
        assert_eq!(
            create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/CreateVolume"
        );
        for status in ["400", "413", "415"] {
            assert!(create["responses"][status].is_object(), "{status}");
        }
        let bad = create["responses"]["400"]["description"].as_str().unwrap();
        for code in ["`invalid_size`", "`invalid_json`", "`invalid_body`"] {
            assert!(bad.contains(code), "{bad}");
        }
        let show = &doc["paths"]["/v1/volumes/{id}"]["get"];
        assert_eq!(show["parameters"][0]["schema"]["format"], "uuid");
        let bad = show["responses"]["400"]["description"].as_str().unwrap();
        assert!(bad.contains("`invalid_id`"), "{bad}");
    }

    #[test]
    fn the_driver_registry_documents_its_refusals_and_retry_after() {
        let doc = doc();
        let del = &doc["paths"]["/v1/drivers/{name}/versions/{digest}"]["delete"];
        let conflict = del["responses"]["409"]["description"].as_str().unwrap();
        assert!(conflict.contains("`driver_version_active`"), "{conflict}");
        assert!(conflict.contains("`driver_version_in_use`"), "{conflict}");
        assert!(del["responses"].get("204").is_some());
        for path in ["/v1/drivers/{name}", "/v1/drivers/{name}/activate"] {
            let item = doc["paths"][path].as_object().unwrap();
            let op = item.values().next().unwrap();
            let busy = &op["responses"]["429"];
            assert!(
                busy["description"]
                    .as_str()
                    .unwrap()
                    .contains("`compile_busy`"),
                "{path}"
            );
            assert!(busy["headers"].get("Retry-After").is_some(), "{path}");
        }
    }

    #[test]
    fn enums_are_the_wire_names_of_the_rust_types() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        let names = |schema: &Value| -> BTreeSet<String> {
            schema["enum"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        let phases: BTreeSet<String> = crate::model::MigrationPhase::ALL
            .iter()
            .map(|p| {
                serde_json::to_value(p)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(names(&schemas["MigrationPhase"]), phases);
        assert!(names(&schemas["VolumeStatus"]).contains("in-use"));
        assert!(names(&schemas["MigrationStatus"]).contains("migrating_attachable"));
        assert!(names(&schemas["ErrorCode"]).contains("volume_not_found"));
        assert!(names(&schemas["MigrationPath"]).contains("target-driver-async"));
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = doc();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
    }
}
