//! The HTTP API against a real service on a temporary data directory with
//! the embedded default configuration. Requests go through the router
//! without a socket, except the last test, which serves on loopback.

mod support;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use ferry::api::{self, Tokens};
use ferry::config::Config;
use ferry::service::{Service, ServiceOptions};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use support::array_named;
use tower::ServiceExt;

const READER: &str = "reader-token-for-tests-0123456789";

struct Harness {
    app: Router,
    service: Service,
    admin: String,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

/// The detail of an error body: the native `{"error": {...}}`, or on `/v3`
/// Cinder's `{"<faultName>": {"code", "message", "ferry_code"}}`.
fn error_detail(body: &Value) -> Option<(&str, &str)> {
    if let Some(e) = body.get("error") {
        return Some((e["code"].as_str()?, e["message"].as_str()?));
    }
    let fields = body.as_object()?;
    let (_, detail) = fields.iter().next().filter(|_| fields.len() == 1)?;
    Some((detail["ferry_code"].as_str()?, detail["message"].as_str()?))
}

impl Answer {
    fn code(&self) -> &str {
        error_detail(&self.body).map_or("<none>", |(code, _)| code)
    }
    fn message(&self) -> &str {
        error_detail(&self.body).map_or("", |(_, message)| message)
    }
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(Config::embedded_default()).await
    }

    async fn start_with(config: Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        std::fs::write(data_dir.join("reader.token"), format!("{READER}\n")).unwrap();
        let opts = ServiceOptions {
            data_dir: data_dir.clone(),
            config,
            nbd_listen: "127.0.0.1:0".parse().unwrap(),
        };
        let service = tokio::task::spawn_blocking(move || Service::start(opts))
            .await
            .unwrap()
            .unwrap();
        let tokens = Tokens::load_or_create(&data_dir).unwrap();
        let admin = api::auth::read_first_token(&api::auth::admin_token_path(&data_dir)).unwrap();
        Self {
            app: api::app(service.clone(), tokens),
            service,
            admin,
            _dir: dir,
        }
    }

    async fn send(&self, req: Request<Body>) -> Answer {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let is_json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let body = if bytes.is_empty() {
            Value::Null
        } else if !is_json && status.is_success() {
            // `/metrics` answers in the Prometheus text format.
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{status}: not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        if status.is_client_error() || status.is_server_error() {
            assert!(
                headers[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json"),
                "{status} without JSON"
            );
            assert!(error_detail(&body).is_some(), "{status}: {body}");
        }
        Answer {
            status,
            headers,
            body,
        }
    }

    /// A request with an optional token and an optional raw JSON body.
    async fn raw(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_owned())),
            None => req.body(Body::empty()),
        };
        self.send(req.unwrap()).await
    }

    async fn admin(&self, method: Method, uri: &str, body: Option<Value>) -> Answer {
        let text = body.map(|b| b.to_string());
        self.raw(method, uri, Some(&self.admin.clone()), text.as_deref())
            .await
    }

    async fn create(&self, name: &str, size: u64, array: &str) -> Value {
        let a = self
            .admin(
                Method::POST,
                "/v1/volumes",
                Some(json!({"name": name, "size_bytes": size, "array": array})),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body
    }
}

/// A bad request and what must come back: method, uri, token, body,
/// status, error code, words the message must hold.
type Case<'a> = (
    Method,
    String,
    Option<&'a str>,
    Option<String>,
    u16,
    &'a str,
    &'a str,
);

impl Drop for Harness {
    fn drop(&mut self) {
        self.service.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrays_and_drivers_of_the_embedded_default() {
    let h = Harness::start().await;
    let a = h.raw(Method::GET, "/v1/arrays", Some(READER), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let arrays = a.body["arrays"].as_array().unwrap();
    let mut pairs: Vec<(&str, &str)> = arrays
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["driver"].as_str().unwrap()))
        .collect();
    pairs.sort_unstable();
    assert_eq!(
        pairs,
        [
            ("p1", "plain"),
            ("t1", "takeover"),
            ("v1", "vendor-copy"),
            ("v2", "vendor-copy"),
        ]
    );
    for a in arrays {
        assert_eq!(a["pools"], json!(["default"]), "{a}");
        assert!(a["capacity_bytes"].as_u64().unwrap() > 0);
        assert_eq!(a["used_bytes"], 0);
        // File-backed, on the test's temporary file system.
        let free = a["filesystem_free_bytes"].as_u64().expect("free bytes");
        let total = a["filesystem_total_bytes"].as_u64().expect("total bytes");
        assert!(0 < free && free <= total, "{a}");
    }
    let zoned = |name: &str| {
        let a = arrays.iter().find(|a| a["name"] == name).unwrap();
        let mut z: Vec<String> = serde_json::from_value(a["zoned_with"].clone()).unwrap();
        z.sort();
        z
    };
    assert_eq!(zoned("t1"), ["p1", "v1"]);
    assert_eq!(zoned("p1"), ["t1"]);
    assert!(zoned("v2").is_empty());

    let d = h.raw(Method::GET, "/v1/drivers", Some(READER), None).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    let mut names: Vec<&str> = d.body["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["ferry-remote", "plain", "takeover", "vendor-copy"]);
    for d in d.body["drivers"].as_array().unwrap() {
        let digest = d["active_digest"].as_str().unwrap();
        assert_eq!(digest.len(), 64);
        assert!(
            digest
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        );
        assert!(
            d["versions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["digest"] == digest)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_show_delete() {
    let h = Harness::start().await;
    let size = 64 << 20;
    let res = h
        .admin(
            Method::POST,
            "/v1/volumes",
            Some(json!({"name": "db", "size_bytes": size, "array": "t1", "pool": "default"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let v = res.body;
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(res.headers[header::LOCATION], format!("/v1/volumes/{id}"));
    assert_eq!(v["name"], "db");
    assert_eq!(v["size_bytes"], size);
    assert_eq!(v["status"], "available");
    assert_eq!(v["migration_status"], Value::Null);
    assert_eq!(
        (v["array"].as_str(), v["pool"].as_str()),
        (Some("t1"), Some("default"))
    );
    assert_eq!(v["attachments"], json!([]));

    // Without a pool, the array's first pool.
    let other = h.create("logs", 1 << 20, "p1").await;
    assert_eq!(other["pool"], "default");

    let list = h.raw(Method::GET, "/v1/volumes", Some(READER), None).await;
    assert_eq!(list.status, StatusCode::OK);
    let ids: Vec<&str> = list.body["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&id.as_str()));

    let shown = h
        .raw(
            Method::GET,
            &format!("/v1/volumes/{id}"),
            Some(READER),
            None,
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body, v);

    let arrays = h.raw(Method::GET, "/v1/arrays", Some(READER), None).await;
    let t1 = array_named(&arrays.body, "t1");
    assert!(t1["used_bytes"].as_u64().unwrap() >= size, "{t1}");

    let del = h
        .admin(Method::DELETE, &format!("/v1/volumes/{id}"), None)
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.body);
    assert_eq!(del.body, Value::Null);
    let gone = h
        .raw(
            Method::GET,
            &format!("/v1/volumes/{id}"),
            Some(READER),
            None,
        )
        .await;
    assert_eq!(
        (gone.status, gone.code()),
        (StatusCode::NOT_FOUND, "volume_not_found")
    );
    let again = h
        .admin(Method::DELETE, &format!("/v1/volumes/{id}"), None)
        .await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::NOT_FOUND, "volume_not_found")
    );
    let list = h.raw(Method::GET, "/v1/volumes", Some(READER), None).await;
    assert_eq!(list.body["volumes"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_status_and_code() {
    let h = Harness::start().await;
    let admin = h.admin.clone();
    let missing = uuid::Uuid::new_v4();
    let existing = h.create("x", 1 << 20, "v1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let arrays = h.raw(Method::GET, "/v1/arrays", Some(READER), None).await;
    let too_big = array_named(&arrays.body, "t1")["capacity_bytes"]
        .as_u64()
        .unwrap()
        + 512;

    let a = Some(admin.as_str());
    let r = Some(READER);
    let vols = "/v1/volumes".to_owned();
    let one = |id: &dyn std::fmt::Display| format!("/v1/volumes/{id}");
    let atts = |id: &dyn std::fmt::Display| format!("/v1/volumes/{id}/attachments");
    let body = |b: &str| Some(b.to_owned());
    let create = |size: u64, array: &str, pool: &str| {
        body(&format!(
            r#"{{"name":"a","size_bytes":{size},"array":"{array}"{pool}}}"#
        ))
    };
    let huge = Some(format!("\"{}\"", "a".repeat(2 << 20)));
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        (Method::POST, vols.clone(), a, body(r#"{"name": "#), 400, "invalid_json", "JSON"),
        (Method::POST, vols.clone(), a, body(""), 400, "invalid_json", "JSON"),
        (Method::POST, vols.clone(), a, body(r#"{"name":"a","array":"t1"}"#), 400, "invalid_body", "size_bytes"),
        (Method::POST, vols.clone(), a, body(r#"{"name":"a","size_bytes":"big","array":"t1"}"#), 400, "invalid_body", "size_bytes"),
        (Method::POST, vols.clone(), a, create(512, "t1", r#","colour":"red""#), 400, "invalid_body", "colour"),
        (Method::POST, vols.clone(), a, body("[1,2]"), 400, "invalid_body", ""),
        (Method::POST, vols.clone(), a, create(0, "t1", ""), 400, "invalid_size", "0"),
        (Method::POST, vols.clone(), a, create(1000, "t1", ""), 400, "invalid_size", "1000"),
        (Method::POST, vols.clone(), a, create(too_big, "t1", ""), 422, "no_space", ""),
        (Method::POST, vols.clone(), a, body(r#"{"name":"","size_bytes":512,"array":"t1"}"#), 400, "invalid_name", ""),
        (Method::POST, vols.clone(), a, body(r#"{"name":"invoice\u202efdp.exe","size_bytes":512,"array":"t1"}"#), 400, "invalid_name", "(field \"name\") contains U+202E"),
        (Method::POST, vols.clone(), a, body(r#"{"name":"db\u200b1","size_bytes":512,"array":"t1"}"#), 400, "invalid_name", "U+200B (a zero-width character) at character 2"),
        (Method::POST, atts(&existing), a, body(r#"{"server":"web\u20661"}"#), 400, "invalid_name", "(field \"server\") contains U+2066"),
        (Method::POST, atts(&existing), a, body(r#"{"server":"web1\u0085"}"#), 400, "invalid_name", "U+0085"),
        (Method::POST, vols.clone(), a, create(512, "nope", ""), 404, "array_not_found", "nope"),
        (Method::POST, vols.clone(), a, create(512, "t1", r#","pool":"gold""#), 404, "pool_not_found", "gold"),
        (Method::GET, one(&missing), a, None, 404, "volume_not_found", ""),
        (Method::DELETE, one(&missing), a, None, 404, "volume_not_found", ""),
        (Method::GET, one(&"not-a-uuid"), a, None, 400, "invalid_id", "not-a-uuid"),
        (Method::DELETE, format!("{}/zzz", atts(&existing)), a, None, 400, "invalid_id", "zzz"),
        (Method::DELETE, format!("{}/{missing}", atts(&existing)), a, None, 404, "attachment_not_found", ""),
        (Method::POST, atts(&missing), a, body(r#"{"server":"web1"}"#), 404, "volume_not_found", ""),
        (Method::POST, atts(&existing), a, body(r#"{"server":"web1","mode":"rx"}"#), 400, "invalid_body", "mode"),
        (Method::GET, vols.clone(), None, None, 401, "unauthorized", "token"),
        (Method::GET, vols.clone(), Some("not-a-valid-token-at-all"), None, 401, "unauthorized", "not valid"),
        (Method::POST, vols.clone(), r, create(512, "t1", ""), 403, "forbidden", "admin"),
        (Method::DELETE, one(&existing), r, None, 403, "forbidden", "admin"),
        (Method::GET, "/v1/nothing-here".into(), a, None, 404, "not_found", "/v1/nothing-here"),
        (Method::GET, "/v2".into(), None, None, 404, "not_found", ""),
        (Method::PATCH, vols.clone(), a, None, 405, "method_not_allowed", "PATCH"),
        (Method::POST, "/healthz".into(), None, None, 405, "method_not_allowed", ""),
        (Method::POST, vols.clone(), a, huge, 413, "body_too_large", ""),
    ];
    for (method, uri, token, body, status, code, words) in cases {
        let status = StatusCode::from_u16(status).unwrap();
        let what = format!("{method} {uri} {:.60}", body.clone().unwrap_or_default());
        let ans = h.raw(method, &uri, token, body.as_deref()).await;
        assert_eq!(
            (ans.status, ans.code()),
            (status, code),
            "{what}: {}",
            ans.body
        );
        assert!(ans.message().contains(words), "{what}: {}", ans.body);
        if status == StatusCode::UNAUTHORIZED {
            let challenge = ans.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(ans.headers.contains_key(header::ALLOW), "{what}");
        }
    }

    // A body that is not declared as JSON.
    let req = Request::post("/v1/volumes")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(r#"{"name":"a","size_bytes":512,"array":"t1"}"#))
        .unwrap();
    let ans = h.send(req).await;
    assert_eq!(
        (ans.status, ans.code()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );

    // None of the refused creations left a volume behind.
    let list = h.raw(Method::GET, "/v1/volumes", Some(READER), None).await;
    assert_eq!(list.body["volumes"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_the_document_need_no_token_and_metrics_need_any_token() {
    let h = Harness::start().await;
    let health = h.raw(Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (health.status, health.body),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    // `[http] metrics` is "reader" by default: any valid token, no other.
    for token in [None, Some("not-a-valid-token-at-all")] {
        let refused = h.raw(Method::GET, "/metrics", token, None).await;
        assert_eq!(
            (refused.status, refused.code()),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{token:?}"
        );
        assert!(refused.headers.contains_key(header::WWW_AUTHENTICATE));
    }
    let admin = h.admin.clone();
    let by_admin = h.raw(Method::GET, "/metrics", Some(&admin), None).await;
    assert_eq!(by_admin.status, StatusCode::OK);
    let metrics = h.raw(Method::GET, "/metrics", Some(READER), None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
    );
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains("# TYPE ferry_driver_calls_total counter"),
        "{text}"
    );
    assert!(
        text.contains(
            "ferry_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"
        ),
        "{text}"
    );
    let doc = h.raw(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.body;
    assert_eq!(doc["openapi"], "3.1.0");
    // The document names exactly the routes the router serves: each
    // documented method answers with something other than "no route", and
    // every other method on a documented path is refused as not allowed.
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = 0;
    for (path, item) in paths {
        let uri = path
            .replace("{id}", &uuid::Uuid::nil().to_string())
            .replace("{attachment_id}", &uuid::Uuid::nil().to_string())
            .replace("{digest}", &"0".repeat(64));
        let item = item.as_object().expect("path item");
        for method in [
            Method::GET,
            Method::PUT,
            Method::POST,
            Method::DELETE,
            Method::PATCH,
        ] {
            let ans = h.raw(method.clone(), &uri, Some(READER), None).await;
            if item.contains_key(&method.as_str().to_lowercase()) {
                documented += 1;
                assert_ne!(ans.code(), "not_found", "{method} {path}");
                assert_ne!(ans.code(), "method_not_allowed", "{method} {path}");
            } else {
                assert_eq!(
                    ans.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is served but not documented"
                );
            }
        }
    }
    assert_eq!(documented, api::routes_table().len());
    // Schemas come from the types the handlers answer with: a volume, a
    // migration's status and the error body, with their enums.
    let schemas = &doc["components"]["schemas"];
    let volume = &schemas["VolumeView"];
    for field in ["id", "name", "size_bytes", "status", "attachments"] {
        assert!(volume["properties"][field].is_object(), "volume.{field}");
        assert!(
            volume["required"]
                .as_array()
                .unwrap()
                .contains(&json!(field)),
            "volume.{field} is required"
        );
    }
    assert_eq!(
        volume["properties"]["status"]["$ref"],
        "#/components/schemas/VolumeStatus"
    );
    let statuses = &schemas["MigrationStatus"]["enum"];
    for s in ["starting", "migrating_attachable", "aborting", "aborted"] {
        assert!(statuses.as_array().unwrap().contains(&json!(s)), "{s}");
    }
    assert!(schemas["MigrationView"]["properties"]["phase"].is_object());
    assert_eq!(
        schemas["ErrorBody"]["properties"]["error"]["$ref"],
        "#/components/schemas/ErrorDetail"
    );
    assert_eq!(
        schemas["ErrorDetail"]["properties"]["code"]["$ref"],
        "#/components/schemas/ErrorCode"
    );
    let codes = schemas["ErrorCode"]["enum"].as_array().unwrap();
    for code in [
        "unauthorized",
        "volume_not_found",
        "compile_busy",
        "invalid_id",
    ] {
        assert!(codes.contains(&json!(code)), "{code}");
    }
    // A real error body matches it: its code is one the document lists.
    let missing = h
        .raw(
            Method::GET,
            &format!("/v1/volumes/{}", uuid::Uuid::nil()),
            Some(READER),
            None,
        )
        .await;
    assert!(codes.contains(&json!(missing.code())), "{}", missing.body);
    let ops = &doc["paths"]["/v1/volumes/{id}"];
    assert_eq!(
        ops["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/VolumeView"
    );
    assert_eq!(
        doc["paths"]["/v1/volumes/{id}/migration"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/MigrationView"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_detach_and_delete_rules() {
    let h = Harness::start().await;
    let v = h.create("web-data", 8 << 20, "t1").await;
    let id = v["id"].as_str().unwrap().to_owned();

    let att = h
        .admin(
            Method::POST,
            &format!("/v1/volumes/{id}/attachments"),
            Some(json!({"server": "web1"})),
        )
        .await;
    assert_eq!(att.status, StatusCode::CREATED, "{}", att.body);
    let att_id = att.body["id"].as_str().unwrap().to_owned();
    assert_eq!(att.body["server"], "web1");
    assert_eq!(att.body["mode"], "rw");
    let nbd: SocketAddr = h.service.nbd_addr();
    let uri = att.body["uri"].as_str().unwrap();
    // The export name is a secret of its own, not the attachment id.
    let export = uri
        .strip_prefix(&format!("nbd://{nbd}/"))
        .unwrap_or_else(|| panic!("{}", att.body));
    assert_eq!(export.len(), 64, "{}", att.body);
    assert!(export.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(export, att_id);
    // The export's server is really there.
    std::net::TcpStream::connect(nbd).unwrap();

    let shown = h
        .raw(
            Method::GET,
            &format!("/v1/volumes/{id}"),
            Some(READER),
            None,
        )
        .await;
    assert_eq!(shown.body["status"], "in-use");
    assert_eq!(shown.body["attachments"][0]["id"], att_id.as_str());

    let ro = h
        .admin(
            Method::POST,
            &format!("/v1/volumes/{id}/attachments"),
            Some(json!({"server": "backup", "mode": "ro"})),
        )
        .await;
    assert_eq!(ro.status, StatusCode::CREATED, "{}", ro.body);
    assert_eq!(ro.body["mode"], "ro");
    let ro_id = ro.body["id"].as_str().unwrap().to_owned();

    let refused = h
        .admin(Method::DELETE, &format!("/v1/volumes/{id}"), None)
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::CONFLICT, "invalid_state")
    );

    for a in [&att_id, &ro_id] {
        let d = h
            .admin(
                Method::DELETE,
                &format!("/v1/volumes/{id}/attachments/{a}"),
                None,
            )
            .await;
        assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.body);
    }
    let twice = h
        .admin(
            Method::DELETE,
            &format!("/v1/volumes/{id}/attachments/{att_id}"),
            None,
        )
        .await;
    assert_eq!(
        (twice.status, twice.code()),
        (StatusCode::NOT_FOUND, "attachment_not_found")
    );
    let shown = h
        .raw(
            Method::GET,
            &format!("/v1/volumes/{id}"),
            Some(READER),
            None,
        )
        .await;
    assert_eq!(shown.body["status"], "available");

    let del = h
        .admin(Method::DELETE, &format!("/v1/volumes/{id}"), None)
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_loopback_for_the_cli_client_and_stops_gracefully() {
    let h = Harness::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, h.app.clone(), async move {
        let _ = stop_rx.await;
    }));

    let admin = h.admin.clone();
    tokio::task::spawn_blocking(move || {
        let c = ferry::cli::Client::new(&format!("http://{addr}"), admin);
        let arrays = c.get("/v1/arrays").unwrap();
        assert_eq!(arrays["arrays"].as_array().unwrap().len(), 4);
        let v = c
            .post(
                "/v1/volumes",
                &json!({"name": "cli", "size_bytes": 4096, "array": "v2"}),
            )
            .unwrap();
        let id = v["id"].as_str().unwrap();
        c.delete(&format!("/v1/volumes/{id}")).unwrap();
        let e = c.get(&format!("/v1/volumes/{id}")).unwrap_err();
        match e {
            ferry::cli::ClientError::Api { status, code, .. } => {
                assert_eq!((status, code.as_str()), (404, "volume_not_found"));
            }
            other => panic!("{other}"),
        }
        let bad =
            ferry::cli::Client::new(&format!("http://{addr}"), "wrong-token-0123456789".into());
        let e = bad.get("/v1/volumes").unwrap_err();
        assert!(e.to_string().ends_with("(unauthorized)"), "{e}");
    })
    .await
    .unwrap();

    stop_tx.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("server did not stop")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// A component upload larger than the limit is refused whether or not it
/// declares its length, and a streamed one is cut at the limit; either way
/// nothing is installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_driver_uploads_are_refused_with_or_without_a_length() {
    let h = Harness::start().await;
    let before = h.admin(Method::GET, "/v1/drivers", None).await.body;
    let limit = h.service.max_component_bytes();
    let upload = |declared: bool| {
        let mut req = Request::builder()
            .method(Method::PUT)
            .uri("/v1/drivers/plain")
            .header(header::AUTHORIZATION, format!("Bearer {}", h.admin));
        let body = vec![0u8; limit + 1];
        if declared {
            req = req.header(header::CONTENT_LENGTH, body.len().to_string());
            req.body(Body::from(body)).unwrap()
        } else {
            // A stream of chunks with no length: only reading tells.
            let chunks = body
                .chunks(1 << 20)
                .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                .collect::<Vec<_>>();
            req.body(Body::from_stream(futures_util::stream::iter(chunks)))
                .unwrap()
        }
    };
    for declared in [true, false] {
        let a = h.send(upload(declared)).await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.body);
        assert_eq!(a.code(), "component_too_large");
        assert!(a.message().contains(&limit.to_string()), "{}", a.message());
    }
    let a = h.raw(Method::PUT, "/v1/drivers/plain", None, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.admin(Method::GET, "/v1/drivers", None).await.body, before);
}

/// The `volume` events of one volume, oldest first.
async fn volume_events(h: &Harness, id: &str) -> Vec<Value> {
    let page = h
        .raw(
            Method::GET,
            "/v1/events?after=0&follow=false",
            Some(READER),
            None,
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["volume"] == id && e["kind"] == "volume")
        .cloned()
        .collect()
}

fn transitions(events: &[Value]) -> Vec<(Value, Value)> {
    events
        .iter()
        .map(|e| (e["from"].clone(), e["to"].clone()))
        .collect()
}

/// Create, attach, detach and delete are each an event at `GET /v1/events`;
/// attach and detach name the attachment and the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_attach_detach_and_delete_are_events() {
    let h = Harness::start().await;
    let id = h.create("evented", 1 << 20, "v1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let att = h
        .admin(
            Method::POST,
            &format!("/v1/volumes/{id}/attachments"),
            Some(json!({"server": "web7", "mode": "ro"})),
        )
        .await;
    assert_eq!(att.status, StatusCode::CREATED, "{}", att.body);
    let att_id = att.body["id"].as_str().unwrap().to_owned();
    let detached = h
        .admin(
            Method::DELETE,
            &format!("/v1/volumes/{id}/attachments/{att_id}"),
            None,
        )
        .await;
    assert_eq!(detached.status, StatusCode::NO_CONTENT);
    let deleted = h
        .admin(Method::DELETE, &format!("/v1/volumes/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);

    let events = volume_events(&h, &id).await;
    assert_eq!(
        transitions(&events),
        vec![
            (Value::Null, json!("creating")),
            (json!("creating"), json!("available")),
            (json!("available"), json!("in-use")),
            (json!("in-use"), json!("available")),
            (json!("available"), json!("deleting")),
            (json!("deleting"), json!("deleted")),
        ],
        "{events:#?}"
    );
    for e in &events[2..4] {
        assert_eq!(e["attachment"], att_id.as_str(), "{e}");
        assert_eq!(e["server"], "web7", "{e}");
        assert!(e["reason"].as_str().unwrap().contains("web7"), "{e}");
    }
    assert!(events[2]["reason"].as_str().unwrap().contains("ro"));
    for e in [&events[0], &events[1], &events[4], &events[5]] {
        assert!(e.get("attachment").is_none(), "{e}");
        assert!(e["at"].is_string() && e["reason"].is_string(), "{e}");
    }
}

/// `[events] max_count` and `max_age_secs` bound what the log keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_keeps_what_the_config_says() {
    let mut config = Config::embedded_default();
    config.events.max_count = 5;
    let h = Harness::start_with(config).await;
    for n in 0..4 {
        h.create(&format!("v{n}"), 1 << 20, "v1").await;
    }
    let page = h
        .raw(
            Method::GET,
            "/v1/events?after=0&follow=false",
            Some(READER),
            None,
        )
        .await;
    let seqs: Vec<u64> = page.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    // Two events per create: 8 in all, the newest 5 kept.
    assert_eq!(seqs, vec![4, 5, 6, 7, 8]);
    drop(h);

    let mut config = Config::embedded_default();
    config.events.max_age_secs = 1;
    let h = Harness::start_with(config).await;
    let old = h.create("old", 1 << 20, "v1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(volume_events(&h, &old).await.len(), 2);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let new = h.create("new", 1 << 20, "v1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(volume_events(&h, &old).await.is_empty());
    assert_eq!(volume_events(&h, &new).await.len(), 2);
}

/// Every refusal of reset-status and of the forced delete has its status
/// and code, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_status_and_forced_delete_refusals() {
    let h = Harness::start().await;
    let admin = h.admin.clone();
    let id = h.create("r", 1 << 20, "v1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let missing = uuid::Uuid::new_v4();
    let reset = |id: &dyn std::fmt::Display| format!("/v1/volumes/{id}/reset-status");
    let body = |b: &str| Some(b.to_owned());
    let a = Some(admin.as_str());
    let events_before = volume_events(&h, &id).await.len();
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        (Method::POST, reset(&id), a, body(r#"{"status":"migrating"}"#), 400, "invalid_status", "migrating"),
        (Method::POST, reset(&id), a, body(r#"{"status":"deleting"}"#), 400, "invalid_status", "deleting"),
        (Method::POST, reset(&id), a, body(r#"{"status":"gone"}"#), 400, "invalid_status", "gone"),
        (Method::POST, reset(&id), a, body(r#"{"status":"error","migration_status":"success"}"#), 400, "invalid_status", "migration_status"),
        (Method::POST, reset(&id), a, body(r#"{"status":"error","colour":1}"#), 400, "invalid_body", "colour"),
        (Method::POST, reset(&id), a, body(r#"{}"#), 400, "invalid_body", "status"),
        (Method::POST, reset(&id), a, body(r#"{"status":"in-use"}"#), 409, "inconsistent_status", "no attachments"),
        (Method::POST, reset(&id), a, body(r#"{"status":"error","migration_status":"error"}"#), 409, "inconsistent_status", "never migrated"),
        (Method::POST, reset(&missing), a, body(r#"{"status":"error"}"#), 404, "volume_not_found", ""),
        (Method::POST, reset(&"nope"), a, body(r#"{"status":"error"}"#), 400, "invalid_id", "nope"),
        (Method::POST, reset(&id), Some(READER), body(r#"{"status":"error"}"#), 403, "forbidden", "admin"),
        (Method::DELETE, format!("/v1/volumes/{id}?force=maybe"), a, None, 400, "invalid_query", "force"),
        (Method::DELETE, format!("/v1/volumes/{id}?force=true&all=1"), a, None, 400, "invalid_query", "all"),
        (Method::DELETE, format!("/v1/volumes/{missing}?force=true"), a, None, 404, "volume_not_found", ""),
        (Method::DELETE, format!("/v1/volumes/{id}?force=true"), Some(READER), None, 403, "forbidden", "admin"),
    ];
    for (method, uri, token, body, status, code, words) in cases {
        let status = StatusCode::from_u16(status).unwrap();
        let what = format!("{method} {uri} {}", body.clone().unwrap_or_default());
        let ans = h.raw(method, &uri, token, body.as_deref()).await;
        assert_eq!(
            (ans.status, ans.code()),
            (status, code),
            "{what}: {}",
            ans.body
        );
        assert!(ans.message().contains(words), "{what}: {}", ans.body);
    }
    let shown = h
        .raw(
            Method::GET,
            &format!("/v1/volumes/{id}"),
            Some(READER),
            None,
        )
        .await;
    assert_eq!(
        (&shown.body["status"], &shown.body["migration_status"]),
        (&json!("available"), &Value::Null)
    );
    assert_eq!(volume_events(&h, &id).await.len(), events_before);

    // Attached: `available` contradicts it, and a plain delete names the
    // forced one.
    let att = h
        .admin(
            Method::POST,
            &format!("/v1/volumes/{id}/attachments"),
            Some(json!({"server": "web1"})),
        )
        .await;
    assert_eq!(att.status, StatusCode::CREATED);
    let ans = h
        .admin(
            Method::POST,
            &reset(&id),
            Some(json!({"status": "available"})),
        )
        .await;
    assert_eq!(
        (ans.status, ans.code()),
        (StatusCode::CONFLICT, "inconsistent_status"),
        "{}",
        ans.body
    );
    assert!(ans.message().contains("detach"), "{}", ans.body);
    let ans = h
        .admin(Method::DELETE, &format!("/v1/volumes/{id}"), None)
        .await;
    assert_eq!(ans.code(), "invalid_state");
    assert!(ans.message().contains("force=true"), "{}", ans.body);
}

/// Outside migrations: a reset sets the status and says so in an event; a
/// forced delete withdraws the exports and removes the LUN and the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_and_forced_delete_of_a_volume_at_rest() {
    let h = Harness::start().await;
    let id = h.create("r", 1 << 20, "v1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ans = h
        .admin(
            Method::POST,
            &format!("/v1/volumes/{id}/reset-status"),
            Some(json!({"status": "error"})),
        )
        .await;
    assert_eq!(ans.status, StatusCode::OK, "{}", ans.body);
    assert_eq!(ans.body["volume"]["status"], "error");
    assert_eq!(ans.body["stopped_migration"], Value::Null);
    let last = volume_events(&h, &id).await.pop().unwrap();
    assert_eq!(
        (&last["from"], &last["to"]),
        (&json!("available"), &json!("error"))
    );
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("reset by an operator")
    );

    let att = h
        .admin(
            Method::POST,
            &format!("/v1/volumes/{id}/attachments"),
            Some(json!({"server": "web1"})),
        )
        .await;
    // An errored volume is not attachable; reset it back first.
    assert_eq!(att.code(), "invalid_state");
    let ans = h
        .admin(
            Method::POST,
            &format!("/v1/volumes/{id}/reset-status"),
            Some(json!({"status": "available"})),
        )
        .await;
    assert_eq!(ans.body["volume"]["status"], "available", "{}", ans.body);
    let att = h
        .admin(
            Method::POST,
            &format!("/v1/volumes/{id}/attachments"),
            Some(json!({"server": "web1"})),
        )
        .await;
    assert_eq!(att.status, StatusCode::CREATED, "{}", att.body);
    let att_id = att.body["id"].as_str().unwrap().to_owned();
    let lun = h
        ._dir
        .path()
        .join(format!("data/arrays/v1/default/volume-{id}"));
    assert!(lun.exists());

    let ans = h
        .admin(
            Method::DELETE,
            &format!("/v1/volumes/{id}?force=true"),
            None,
        )
        .await;
    assert_eq!(ans.status, StatusCode::OK, "{}", ans.body);
    assert_eq!(ans.body["deleted_on"], json!(["v1/default"]));
    assert_eq!(ans.body["warnings"], json!([]));
    assert!(!lun.exists());
    let gone = h
        .raw(
            Method::GET,
            &format!("/v1/volumes/{id}"),
            Some(READER),
            None,
        )
        .await;
    assert_eq!(gone.code(), "volume_not_found");
    let events = volume_events(&h, &id).await;
    let tail: Vec<_> = transitions(&events).into_iter().rev().take(3).collect();
    assert_eq!(
        tail,
        vec![
            (json!("deleting"), json!("deleted")),
            (json!("deleting"), json!("deleting")),
            (json!("in-use"), json!("deleting")),
        ]
    );
    let withdrawn = &events[events.len() - 2];
    assert_eq!(withdrawn["attachment"], att_id.as_str());
    assert_eq!(withdrawn["server"], "web1");
}

/// A `/v3` request with `X-Auth-Token` (when given) and a microversion
/// header (when given).
async fn v3(
    h: &Harness,
    method: Method,
    path: &str,
    token: Option<&str>,
    version: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("x-auth-token", t);
    }
    if let Some(v) = version {
        req = req.header("openstack-api-version", v);
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    };
    h.send(req.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_block_storage_api_answers_as_cinder_does() {
    let h = Harness::start().await;
    let a = Some(h.admin.clone());
    let a = a.as_deref();
    let vols = "/v3/demo/volumes";

    // Version discovery, without a token.
    let root = v3(&h, Method::GET, "/", None, None, None).await;
    assert_eq!(root.status, StatusCode::MULTIPLE_CHOICES);
    let v = &root.body["versions"][0];
    assert_eq!(
        (&v["id"], &v["version"], &v["min_version"]),
        (&json!("v3.0"), &json!("3.66"), &json!("3.0"))
    );
    let v3doc = v3(&h, Method::GET, "/v3", None, None, None).await;
    assert_eq!(v3doc.body["versions"][0]["status"], "CURRENT");

    // The microversion served is said on each answer; one outside the
    // range is refused with Cinder's words and fault body.
    let list = v3(&h, Method::GET, vols, a, None, None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.headers["openstack-api-version"], "volume 3.0");
    assert_eq!(list.headers[header::VARY], "OpenStack-API-Version");
    let list = v3(&h, Method::GET, vols, a, Some("volume 3.50"), None).await;
    assert_eq!(list.headers["openstack-api-version"], "volume 3.50");
    let refused = v3(&h, Method::GET, vols, a, Some("volume 3.67"), None).await;
    assert_eq!(refused.status, StatusCode::NOT_ACCEPTABLE);
    let fault = &refused.body["notAcceptable"];
    assert_eq!(fault["code"], 406, "{}", refused.body);
    assert_eq!(fault["ferry_code"], "unsupported_api_version");
    assert!(
        fault["message"]
            .as_str()
            .unwrap()
            .ends_with("Minimum is 3.0 and maximum is 3.66.")
    );

    // Authentication: X-Auth-Token with a Ferry token; a reader may only read.
    let none = v3(&h, Method::GET, vols, None, None, None).await;
    assert_eq!(
        (none.status, none.code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    assert!(
        none.body["unauthorized"]["message"]
            .as_str()
            .unwrap()
            .contains("X-Auth-Token")
    );
    let read = v3(&h, Method::GET, vols, Some(READER), None, None).await;
    assert_eq!(read.status, StatusCode::OK);
    let new = |body: Value| Some(json!({"volume": body}));
    let denied = v3(
        &h,
        Method::POST,
        vols,
        Some(READER),
        None,
        new(json!({"size": 1, "name": "r"})),
    )
    .await;
    assert_eq!(
        (denied.status, denied.code()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    assert!(denied.body.get("forbidden").is_some(), "{}", denied.body);

    // Bad input: each with its status, fault and code; nothing is created.
    type Case = (
        Method,
        String,
        Option<Value>,
        u16,
        &'static str,
        &'static str,
    );
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        (Method::POST, vols.into(), new(json!({"size": 1, "name": "s", "snapshot_id": "x"})), 400, "invalid_argument", "snapshot_id is not supported"),
        (Method::POST, vols.into(), new(json!({"size": 1, "name": "s", "availability_zone": "az9"})), 400, "invalid_argument", "nova"),
        (Method::POST, vols.into(), new(json!({"size": 1, "name": "s", "volume_type": "gold"})), 404, "volume_type_not_found", "gold"),
        (Method::POST, vols.into(), new(json!({"size": 1})), 400, "invalid_name", "required"),
        (Method::POST, vols.into(), new(json!({"size": 0, "name": "s"})), 400, "invalid_size", ""),
        (Method::POST, vols.into(), new(json!({"size": -1, "name": "s"})), 400, "invalid_body", "size"),
        (Method::POST, vols.into(), new(json!({"size": 1, "name": "s", "colour": "red"})), 400, "invalid_body", "colour"),
        (Method::GET, format!("{vols}/not-a-uuid"), None, 404, "volume_not_found", "not-a-uuid"),
        (Method::GET, format!("{vols}/{}", uuid::Uuid::new_v4()), None, 404, "volume_not_found", ""),
        (Method::GET, format!("{vols}?colour=red"), None, 400, "invalid_query", "colour"),
        (Method::GET, format!("{vols}/detail?sort=size:sideways"), None, 400, "invalid_query", "sideways"),
        (Method::GET, "/v3/demo/types/gold".into(), None, 404, "volume_type_not_found", "gold"),
        (Method::GET, "/v3/demo/nothing".into(), None, 404, "not_found", ""),
    ];
    for (method, uri, body, status, code, words) in cases {
        let what = format!("{method} {uri}");
        let ans = v3(&h, method, &uri, a, Some("volume 3.66"), body).await;
        assert_eq!(
            (ans.status.as_u16(), ans.code()),
            (status, code),
            "{what}: {}",
            ans.body
        );
        assert!(ans.message().contains(words), "{what}: {}", ans.body);
        let (name, detail) = ans.body.as_object().unwrap().iter().next().unwrap();
        assert_eq!(detail["code"], status, "{what}: {name}");
    }
    let (_, listed) = (0, v3(&h, Method::GET, vols, a, None, None).await);
    assert_eq!(listed.body["volumes"], json!([]));

    // A volume's life through the v3 API, checked against /v1.
    let mut ids = Vec::new();
    for name in ["b-vol", "a-vol", "c-vol"] {
        let made = v3(
            &h,
            Method::POST,
            vols,
            a,
            None,
            new(json!({"size": 1, "name": name, "volume_type": "v1"})),
        )
        .await;
        assert_eq!(made.status, StatusCode::ACCEPTED, "{}", made.body);
        assert_eq!(
            made.body["volume"]["os-vol-host-attr:host"],
            "ferry@v1#default"
        );
        ids.push(made.body["volume"]["id"].as_str().unwrap().to_owned());
    }
    let native = h
        .admin(Method::GET, &format!("/v1/volumes/{}", ids[0]), None)
        .await;
    assert_eq!(
        (
            native.body["size_bytes"].as_u64(),
            native.body["array"].as_str()
        ),
        (Some(1 << 30), Some("v1"))
    );
    let names = |ans: &Answer| -> Vec<String> {
        ans.body["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let sorted = v3(
        &h,
        Method::GET,
        &format!("{vols}/detail?sort=name:asc&limit=2"),
        a,
        None,
        None,
    )
    .await;
    assert_eq!(names(&sorted), ["a-vol", "b-vol"]);
    let after = sorted.body["volumes"][1]["id"].as_str().unwrap().to_owned();
    let next = v3(
        &h,
        Method::GET,
        &format!("{vols}?sort=name:asc&marker={after}"),
        a,
        None,
        None,
    )
    .await;
    assert_eq!(names(&next), ["c-vol"]);
    let named = v3(
        &h,
        Method::GET,
        &format!("{vols}/detail?name=c-vol"),
        a,
        None,
        None,
    )
    .await;
    assert_eq!(names(&named), ["c-vol"]);

    let one = format!("{vols}/{}", ids[0]);
    let renamed = v3(
        &h,
        Method::PUT,
        &one,
        a,
        None,
        new(json!({"name": "renamed", "description": "kept"})),
    )
    .await;
    assert_eq!(
        (renamed.status, &renamed.body["volume"]["description"]),
        (StatusCode::OK, &json!("kept"))
    );
    let native = h
        .admin(Method::GET, &format!("/v1/volumes/{}", ids[0]), None)
        .await;
    assert_eq!(
        (&native.body["name"], &native.body["description"]),
        (&json!("renamed"), &json!("kept"))
    );

    let action = format!("{one}/action");
    let act = |body: Value| Some(body);
    #[rustfmt::skip]
    let actions = [
        (json!({"os-migrate_volume": {"host": "elsewhere@t1#default"}}), 400, "invalid_host"),
        (json!({"os-migrate_volume": {"host": "ferry@v1#default"}}), 400, "same_location"),
        (json!({"os-migrate_volume": {"host": "ferry@nope#default"}}), 404, "array_not_found"),
        (json!({"os-migrate_volume": {"host": "ferry@t1", "force_host_copy": "perhaps"}}), 400, "invalid_argument"),
        (json!({"os-retype": {"new_type": "t1"}}), 400, "invalid_argument"),
        (json!({"os-retype": {"new_type": "t1", "migration_policy": "sometimes"}}), 400, "invalid_argument"),
        (json!({"os-reset_status": {"status": "creating"}}), 400, "invalid_status"),
        (json!({"os-reset_status": {"status": "available", "attach_status": "attached"}}), 400, "invalid_argument"),
        (json!({"os-migrate_volume_completion": {"new_volume": uuid::Uuid::new_v4()}}), 400, "invalid_argument"),
        (json!({"os-force_delete": {"now": true}}), 400, "invalid_argument"),
        (json!({"os-extend": {"new_size": 2}}), 400, "invalid_body"),
    ];
    for (body, status, code) in actions {
        let ans = v3(&h, Method::POST, &action, a, None, act(body.clone())).await;
        assert_eq!(
            (ans.status.as_u16(), ans.code()),
            (status, code),
            "{body}: {}",
            ans.body
        );
    }
    // Nothing above moved it.
    let native = h
        .admin(Method::GET, &format!("/v1/volumes/{}", ids[0]), None)
        .await;
    assert_eq!(
        (&native.body["array"], &native.body["migration_status"]),
        (&json!("v1"), &Value::Null)
    );

    // Attach and detach as Nova does; initializing again reuses the
    // attachment.
    let connector = json!({"connector": {"host": "web-1", "initiator": "iqn.x"}});
    let initialize = || {
        let body = act(json!({"os-initialize_connection": connector}));
        v3(&h, Method::POST, &action, a, None, body)
    };
    let first = initialize().await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let data = &first.body["connection_info"]["data"];
    assert_eq!(first.body["connection_info"]["driver_volume_type"], "nbd");
    let again = initialize().await;
    assert_eq!(
        again.body["connection_info"]["data"]["attachment_id"],
        data["attachment_id"]
    );
    let shown = v3(&h, Method::GET, &one, a, None, None).await;
    assert_eq!(shown.body["volume"]["status"], "in-use");
    assert_eq!(shown.body["volume"]["attachments"][0]["server_id"], "web-1");
    let done = v3(
        &h,
        Method::POST,
        &action,
        a,
        None,
        act(json!({"os-terminate_connection": connector})),
    )
    .await;
    assert_eq!(done.status, StatusCode::ACCEPTED);
    let shown = v3(&h, Method::GET, &one, a, None, None).await;
    assert_eq!(
        (
            &shown.body["volume"]["status"],
            &shown.body["volume"]["attachments"]
        ),
        (&json!("available"), &json!([]))
    );

    let gone = v3(&h, Method::DELETE, &one, a, None, None).await;
    assert_eq!(gone.status, StatusCode::ACCEPTED);
    let missing = v3(&h, Method::GET, &one, a, None, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(
        missing.body.get("itemNotFound").is_some(),
        "{}",
        missing.body
    );
}
