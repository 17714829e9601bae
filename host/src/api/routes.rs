//! The route table: every route is registered through [`Routes`], which
//! records its method, path and access rule, so the OpenAPI document and the
//! router can be checked against one another.

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};

use super::AppState;

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

/// One registered route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// HTTP method.
    pub method: Method,
    /// Path template, in axum and OpenAPI syntax (`/v1/volumes/{id}`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
}

/// Routes being registered: the public ones, the token-protected ones, and
/// the table of both.
pub struct Routes {
    pub(super) public: Router<AppState>,
    pub(super) protected: Router<AppState>,
    pub(super) table: Vec<RouteInfo>,
}

impl Routes {
    pub(super) fn new() -> Self {
        Self {
            public: Router::new(),
            protected: Router::new(),
            table: Vec::new(),
        }
    }

    /// A `GET` route that needs any valid token.
    pub fn get<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::GET, MethodFilter::GET, path, handler, None)
    }

    /// A `POST` route that needs an admin token.
    pub fn post<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::POST, MethodFilter::POST, path, handler, None)
    }

    /// A `PUT` route that needs an admin token.
    pub fn put<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::PUT, MethodFilter::PUT, path, handler, None)
    }

    /// A `DELETE` route that needs an admin token.
    pub fn delete<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::DELETE, MethodFilter::DELETE, path, handler, None)
    }

    /// A `GET` route outside the token middleware: anyone may call it
    /// ([`Access::Public`]), or its handler decides who from the
    /// configuration ([`Access::Configured`]).
    pub fn open_get<H, T>(self, path: &'static str, handler: H, access: Access) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::GET, MethodFilter::GET, path, handler, Some(access))
    }

    /// Registers a route: behind the token middleware when `open` is
    /// `None`, else outside it with that access rule.
    fn add<H, T>(
        mut self,
        method: Method,
        filter: MethodFilter,
        path: &'static str,
        handler: H,
        open: Option<Access>,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let access = match open {
            Some(access) => {
                self.public = self.public.route(path, on(filter, handler));
                access
            }
            None => {
                self.protected = self.protected.route(path, on(filter, handler));
                Access::required_for(&method)
            }
        };
        self.table.push(RouteInfo {
            method,
            path,
            access,
        });
        self
    }

    /// The routes registered so far.
    pub fn table(&self) -> &[RouteInfo] {
        &self.table
    }
}
