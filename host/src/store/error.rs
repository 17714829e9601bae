//! Errors of the store, phrased for an operator reading a log line.

use std::path::PathBuf;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (or another handle in this one) holds the database file.
    #[error(
        "cannot open store {}: the database is in use by another Ferry process",
        path.display()
    )]
    InUse {
        /// The database file.
        path: PathBuf,
    },
    /// The file is not a Ferry database, or it is damaged.
    #[error("cannot open store {}: {reason}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The database was written by a newer Ferry whose schema this one does not know.
    #[error(
        "store schema version {found} is newer than this Ferry supports ({supported}); \
         run the newer Ferry that wrote it"
    )]
    SchemaTooNew {
        /// Version found in the file.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// The file could not be opened or created (permissions, missing directory...).
    #[error("cannot open store {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What the database engine said.
        #[source]
        source: redb::Error,
    },
    /// A record with this key already exists.
    #[error("{kind} {key} already exists")]
    Conflict {
        /// What kind of record.
        kind: &'static str,
        /// Its key.
        key: String,
    },
    /// A stored record does not decode: written by a foreign tool or damaged.
    #[error("stored {table} record {key:?} is unreadable: {source}")]
    Decode {
        /// Table of the record.
        table: &'static str,
        /// Its key.
        key: String,
        /// What the decoder said.
        #[source]
        source: serde_json::Error,
    },
    /// A record could not be encoded.
    #[error("cannot encode record: {0}")]
    Encode(#[source] serde_json::Error),
    /// The database engine failed while running a transaction.
    #[error("store: {0}")]
    Db(#[from] redb::Error),
}

// Each redb operation has its own error type; all of them fold into `redb::Error`.
macro_rules! from_redb {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        })*
    };
}

from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
);

/// Why [`Store::update_volume`](super::Store::update_volume) did not apply a change.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E> {
    /// No volume with that id.
    #[error("volume not found")]
    NotFound,
    /// The closure refused the change; nothing was written.
    #[error("update refused: {0}")]
    Refused(E),
    /// The store failed; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

// For `map_err` on redb calls, whose errors convert to `StoreError` but not
// directly to `UpdateError<E>`.
impl<E> UpdateError<E> {
    pub(super) fn store(e: impl Into<StoreError>) -> Self {
        UpdateError::Store(e.into())
    }
}
