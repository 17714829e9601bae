//! The route table: every route is registered through [`Routes`] from a
//! handler's `#[utoipa::path]` (via `utoipa_axum::routes!`), so the router
//! serves exactly the paths and methods the OpenAPI document describes. The
//! access rule each route gets here is also what the document says of its
//! security and of its 401 and 403 answers.

use axum::http::Method;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

use super::AppState;
use super::error;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, the OpenAPI document).
    Public,
    /// As the host's configuration says: `/metrics` by `[http] metrics` is
    /// public, needs any valid token, or is not served.
    Configured,
    /// Any valid token.
    Read,
    /// An admin token.
    Admin,
}

impl Access {
    /// The role a protected route needs: reads need any token, everything
    /// that may change state needs admin.
    pub fn required_for(method: &Method) -> Access {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            Access::Read
        } else {
            Access::Admin
        }
    }
}

/// Which of the two APIs a route belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Ferry's own API: bearer tokens, `{"error": {"code", "message"}}`.
    Native,
    /// The Block Storage v3 compatible API: `X-Auth-Token` (or none, by
    /// `[cinder] auth`), microversions, Cinder's fault bodies.
    Cinder,
}

/// One registered route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// HTTP method.
    pub method: Method,
    /// Path template, in axum and OpenAPI syntax (`/v1/volumes/{id}`).
    pub path: String,
    /// Who may call it.
    pub access: Access,
    /// Which API it belongs to.
    pub family: Family,
}

/// Routes being registered: the public ones, the token-protected ones, the
/// Block Storage v3 ones, and the table of all. Each router carries the
/// document of its routes.
pub struct Routes {
    pub(super) public: OpenApiRouter<AppState>,
    pub(super) protected: OpenApiRouter<AppState>,
    pub(super) cinder: OpenApiRouter<AppState>,
    pub(super) table: Vec<RouteInfo>,
}

impl Routes {
    pub(super) fn new() -> Self {
        Self {
            public: OpenApiRouter::default(),
            protected: OpenApiRouter::default(),
            cinder: OpenApiRouter::default(),
            table: Vec::new(),
        }
    }

    /// Routes behind the token middleware: `GET` needs any valid token,
    /// every other method an admin token.
    pub fn protected(mut self, routes: UtoipaMethodRouter<AppState>) -> Self {
        let routes = self.record(routes, None);
        self.protected = self.protected.routes(routes);
        self
    }

    /// Block Storage v3 routes, behind its own authentication and
    /// microversion layers: `GET` needs any valid token, every other method
    /// an admin token (or, with `[cinder] auth = "none"`, nothing).
    pub fn cinder(mut self, routes: UtoipaMethodRouter<AppState>) -> Self {
        let (schemas, mut paths, router) = routes;
        for (path, item) in paths.paths.iter_mut() {
            for (method, op) in operations_mut(item) {
                let access = Access::required_for(&method);
                super::cinder::document_access(op, access);
                self.table.push(RouteInfo {
                    method,
                    path: path.clone(),
                    access,
                    family: Family::Cinder,
                });
            }
        }
        self.cinder = self.cinder.routes((schemas, paths, router));
        self
    }

    /// Routes outside the token middleware: anyone may call them
    /// ([`Access::Public`]), or their handler decides who from the
    /// configuration ([`Access::Configured`]).
    pub fn open(mut self, routes: UtoipaMethodRouter<AppState>, access: Access) -> Self {
        let routes = self.record(routes, Some(access));
        self.public = self.public.routes(routes);
        self
    }

    /// Adds the routes' methods to the table and documents each
    /// operation's access: its security and the errors the token check
    /// answers with.
    fn record(
        &mut self,
        (schemas, mut paths, router): UtoipaMethodRouter<AppState>,
        open: Option<Access>,
    ) -> UtoipaMethodRouter<AppState> {
        for (path, item) in paths.paths.iter_mut() {
            for (method, op) in operations_mut(item) {
                let access = open.unwrap_or_else(|| Access::required_for(&method));
                error::document_access(op, access);
                self.table.push(RouteInfo {
                    method,
                    path: path.clone(),
                    access,
                    family: Family::Native,
                });
            }
        }
        (schemas, paths, router)
    }

    /// The routes registered so far.
    pub fn table(&self) -> &[RouteInfo] {
        &self.table
    }
}

/// The operations of a path item, with their methods.
pub(super) fn operations_mut(item: &mut PathItem) -> Vec<(Method, &mut Operation)> {
    [
        (Method::GET, item.get.as_mut()),
        (Method::PUT, item.put.as_mut()),
        (Method::POST, item.post.as_mut()),
        (Method::DELETE, item.delete.as_mut()),
        (Method::OPTIONS, item.options.as_mut()),
        (Method::HEAD, item.head.as_mut()),
        (Method::PATCH, item.patch.as_mut()),
        (Method::TRACE, item.trace.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| Some((m, op?)))
    .collect()
}
