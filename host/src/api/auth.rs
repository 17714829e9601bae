//! Bearer tokens: loading (and creating on first start), checking in constant
//! time, and the middleware that enforces roles. Tokens are never logged.

use std::io::{ErrorKind as IoKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::routes::Access;

/// File in the data directory holding the admin token(s).
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// Optional file in the data directory holding read-only token(s).
pub const READER_TOKEN_FILE: &str = "reader.token";

/// Shortest token accepted from a file: anything shorter is guessable.
const MIN_TOKEN_LEN: usize = 16;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Reads only.
    Reader,
}

/// Why tokens could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A file or directory could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A token file holds something that is not a usable token.
    #[error(
        "{path}, line {line}: a token must be at least {MIN_TOKEN_LEN} printable ASCII \
         characters without spaces"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// The admin token file exists but holds no token.
    #[error("{0} holds no token; delete it to have a new one generated")]
    Empty(PathBuf),
}

/// The accepted bearer tokens, by role.
#[derive(Clone)]
pub struct Tokens {
    admin: Vec<String>,
    reader: Vec<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("admin", &self.admin.len())
            .field("reader", &self.reader.len())
            .finish()
    }
}

impl Tokens {
    /// Tokens given directly (embedding, tests).
    pub fn new(admin: Vec<String>, reader: Vec<String>) -> Self {
        Self { admin, reader }
    }

    /// Reads `DIR/admin.token`, generating it (32 random bytes, hex, mode
    /// 0600) on first start, and `DIR/reader.token` when present. Each file
    /// holds one token per line; blank lines and `#` comments are skipped.
    pub fn load_or_create(data_dir: &Path) -> Result<Tokens, TokenError> {
        crate::private_fs::create_dir_all(data_dir).map_err(|source| TokenError::Io {
            action: "cannot create",
            path: data_dir.to_owned(),
            source,
        })?;
        let admin_path = data_dir.join(ADMIN_TOKEN_FILE);
        let admin = match read_token_file(&admin_path)? {
            Some(tokens) if tokens.is_empty() => return Err(TokenError::Empty(admin_path)),
            Some(tokens) => tokens,
            None => vec![create_admin_token(data_dir, &admin_path)?],
        };
        let reader = read_token_file(&data_dir.join(READER_TOKEN_FILE))?.unwrap_or_default();
        Ok(Self { admin, reader })
    }

    /// The role a presented token grants, if any. Every known token is
    /// compared in constant time, so timing tells nothing about which
    /// prefix matched.
    pub fn role_of(&self, presented: &str) -> Option<Role> {
        let matches = |set: &[String]| {
            set.iter().fold(subtle::Choice::from(0), |acc, t| {
                acc | t.as_bytes().ct_eq(presented.as_bytes())
            })
        };
        let admin = bool::from(matches(&self.admin));
        let reader = bool::from(matches(&self.reader));
        if admin {
            Some(Role::Admin)
        } else if reader {
            Some(Role::Reader)
        } else {
            None
        }
    }
}

/// The admin token file of a data directory.
pub fn admin_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(ADMIN_TOKEN_FILE)
}

/// Reads the first token of a token file (what a client sends).
pub fn read_first_token(path: &Path) -> Result<String, TokenError> {
    match read_token_file(path)? {
        Some(tokens) => tokens
            .into_iter()
            .next()
            .ok_or_else(|| TokenError::Empty(path.to_owned())),
        None => Err(TokenError::Io {
            action: "cannot read",
            path: path.to_owned(),
            source: std::io::Error::new(IoKind::NotFound, "no such file"),
        }),
    }
}

/// The tokens of a file, or `None` if it does not exist.
fn read_token_file(path: &Path) -> Result<Option<Vec<String>>, TokenError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(TokenError::Io {
                action: "cannot read",
                path: path.to_owned(),
                source,
            });
        }
    };
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(file = %path.display(), "token file is readable by other users; chmod 600 it");
    }
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.len() < MIN_TOKEN_LEN || !line.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Malformed {
                path: path.to_owned(),
                line: i + 1,
            });
        }
        tokens.push(line.to_owned());
    }
    Ok(Some(tokens))
}

/// Writes a fresh admin token. The file appears whole or not at all (written
/// aside, then hard-linked into place), and if another process created it
/// first, its token wins.
fn create_admin_token(dir: &Path, path: &Path) -> Result<String, TokenError> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let tmp = dir.join(format!(".{ADMIN_TOKEN_FILE}.{}.tmp", std::process::id()));
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| TokenError::Io {
            action,
            path,
            source,
        }
    };
    let _ = std::fs::remove_file(&tmp);
    let mut file = crate::private_fs::file_options()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io("cannot create", &tmp))?;
    let written = file
        .write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all());
    drop(file);
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(file = %path.display(), "generated a new admin token");
            Ok(token)
        }
        Err(e) if e.kind() == IoKind::AlreadyExists => read_first_token(path),
        Err(e) => Err(io("cannot write", path)(e)),
    }
}

/// The `WWW-Authenticate` challenge sent with every 401.
const CHALLENGE: &str = "Bearer realm=\"ferry\"";
const CHALLENGE_INVALID: &str = "Bearer realm=\"ferry\", error=\"invalid_token\"";

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The role of the request's bearer token: 401 without one, or with one
/// that matches no role.
pub fn authenticate(tokens: &Tokens, headers: &HeaderMap) -> Result<Role, ApiError> {
    let Some(presented) = bearer(headers) else {
        return Err(ApiError::unauthorized(
            "this call needs a bearer token (Authorization: Bearer <token>)",
            CHALLENGE,
        ));
    };
    tokens
        .role_of(presented)
        .ok_or_else(|| ApiError::unauthorized("the bearer token is not valid", CHALLENGE_INVALID))
}

/// Whether `role` may call `method`: reads need any role, everything that
/// may change state needs admin.
pub fn authorize(method: &axum::http::Method, role: Role) -> Result<(), ApiError> {
    if Access::required_for(method) == Access::Admin && role != Role::Admin {
        return Err(ApiError::forbidden(format!(
            "{} needs an admin token; this token may only read",
            super::clip::echo(method.as_str())
        )));
    }
    Ok(())
}

/// Middleware: the request must carry a token whose role allows its method.
pub async fn require_token(
    State(tokens): State<Arc<Tokens>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let role = authenticate(&tokens, req.headers())?;
    authorize(req.method(), role)?;
    // Handlers that answer differently per role (a reader never sees an
    // attachment's URI) read it from here.
    let mut req = req;
    req.extensions_mut().insert(role);
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_creates_a_private_token_and_later_starts_reuse_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = Tokens::load_or_create(&data).unwrap();
        let path = admin_token_path(&data);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let token = read_first_token(&path).unwrap();
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(first.admin, vec![token.clone()]);

        let second = Tokens::load_or_create(&data).unwrap();
        assert_eq!(second.admin, vec![token.clone()]);
        assert_eq!(second.role_of(&token), Some(Role::Admin));
        // No stray temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [ADMIN_TOKEN_FILE]);
    }

    #[test]
    fn reader_tokens_come_from_their_own_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(READER_TOKEN_FILE),
            "# dashboards\nreader-token-0123456789\n\nsecond-reader-token-abcdef\n",
        )
        .unwrap();
        let t = Tokens::load_or_create(dir.path()).unwrap();
        assert_eq!(t.role_of("reader-token-0123456789"), Some(Role::Reader));
        assert_eq!(t.role_of("second-reader-token-abcdef"), Some(Role::Reader));
        assert_eq!(t.role_of("reader-token-012345678"), None);
        assert_eq!(t.role_of(""), None);
    }

    #[test]
    fn weak_or_empty_token_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(READER_TOKEN_FILE), "short\n").unwrap();
        let e = Tokens::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(e, TokenError::Malformed { line: 1, .. }), "{e}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ADMIN_TOKEN_FILE), "\n# none\n").unwrap();
        let e = Tokens::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(e, TokenError::Empty(_)), "{e}");
    }

    #[test]
    fn debug_output_hides_the_tokens() {
        let t = Tokens::new(vec!["secret-admin-token-123".into()], vec![]);
        let shown = format!("{t:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn bearer_parsing_accepts_any_scheme_case_only() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
