//! Broad classes of failure, shared by the layers that fail (runtime,
//! service) and the one that answers clients (api), so that neither of the
//! first two depends on the other for it.

/// Broad classes of failure, independent of HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed.
    BadRequest,
    /// What it names does not exist.
    NotFound,
    /// The current state forbids it.
    Conflict,
    /// Well-formed but cannot be done (no space).
    Unprocessable,
    /// The storage beneath cannot hold it (the file system under a
    /// file-backed array has too little free space).
    InsufficientStorage,
    /// The request body is larger than allowed.
    TooLarge,
    /// A shared resource (the compile slot) is taken; retry later.
    TooManyRequests,
    /// A dependency (a driver) is not available.
    Unavailable,
    /// A driver failed (trap, timeout, backend error).
    BadGateway,
    /// The host failed.
    Internal,
}
