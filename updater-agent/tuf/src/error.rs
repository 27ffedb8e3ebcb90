//! Every way a TUF update can fail, each naming the file and the rule it broke.

use crate::fetch::FetchError;

/// A failed step of the TUF client workflow (TUF 1.0.34 §5).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// §5.2, §5.3.3, §5.4.1, §5.5.1, §5.6.1: metadata that is not valid TUF metadata of
    /// its role (strict JSON, field shapes as python-tuf's `Metadata.from_dict`).
    #[error("{role} metadata is malformed: {reason}")]
    Parse { role: String, reason: String },

    /// §5.2, §5.3.4, §5.4.2, §5.5.3, §5.6.3: fewer distinct key ids of the role than its
    /// threshold have valid signatures.
    #[error(
        "{role} metadata has {valid} valid signature(s) from the {signer} keys, {threshold} required"
    )]
    Signature {
        role: String,
        /// Whose keys were counted: "trusted root", "new root", or the delegator's name.
        signer: String,
        valid: u64,
        threshold: u64,
    },

    /// §5.3.5: root version N+1 must follow trusted version N exactly.
    #[error("root metadata version {got} does not follow trusted root version {trusted}")]
    RootVersion { trusted: u64, got: u64 },

    /// §5.4.3 and §5.5.5: a version lower than the trusted one (rollback attack).
    #[error("{role} version {new} is lower than the trusted version {trusted} (rollback)")]
    Rollback {
        role: String,
        trusted: u64,
        new: u64,
    },

    /// §5.5.5: a file listed in the trusted snapshot is missing from the new one;
    /// §5.6.1: a delegated role that snapshot does not list.
    #[error("{file} is not listed in {listing} metadata")]
    MissingMeta { file: String, listing: String },

    /// §5.5.4 and §5.6.4: the version differs from the one the timestamp (for snapshot)
    /// or the snapshot (for targets roles) lists.
    #[error("{role} metadata has version {got}, but {listing} lists version {expected}")]
    VersionMismatch {
        role: String,
        listing: String,
        expected: u64,
        got: u64,
    },

    /// §5.3.10, §5.4.4, §5.5.6, §5.6.5: metadata expired before the update start time
    /// (freeze attack).
    #[error("{role} metadata expired at {expires}, before the update started")]
    Expired { role: String, expires: String },

    /// §5.5.2, §5.6.2, §5.7.3: bytes whose length or hash differs from the trusted listing.
    #[error("{file} does not match its trusted length and hashes: {reason}")]
    LengthOrHash { file: String, reason: String },

    /// §5.7.2: no role on the delegation search path lists the target.
    #[error("target {name} is not listed by any trusted targets role on its delegation path")]
    TargetNotFound { name: String },

    /// §5.7.3: a target path that cannot be stored under a single file name.
    #[error("target path {name:?} cannot be stored as a local file")]
    InvalidTargetPath { name: String },

    /// Size limits (python-tuf `UpdaterConfig`): more bytes than the limit for the file.
    #[error("{url} is longer than its limit of {limit} bytes")]
    TooLarge { url: String, limit: u64 },

    /// A file the workflow requires was not on the server (HTTP 404).
    #[error("{url} was not found on the server")]
    NotFound { url: String },

    /// A non-success HTTP status.
    #[error("{url} answered with HTTP status {status}")]
    Http { url: String, status: u16 },

    /// The request itself failed (connection, TLS, timeout, truncated body).
    #[error("fetching {url} failed: {reason}")]
    Network { url: String, reason: String },

    /// Reading or writing the local metadata or target directory failed.
    #[error("{path}: {reason}")]
    Storage { path: String, reason: String },

    /// §5.1: one update cycle per client, with one start time for every expiry check.
    #[error("this client has already run its update cycle; make a new client for the next one")]
    AlreadyRefreshed,
}

impl Error {
    /// Whether retrying later may succeed: network failures and server-side (5xx, 408,
    /// 429) statuses. Verification failures and missing files are not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Network { .. } => true,
            Error::Http { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            _ => false,
        }
    }

    pub(crate) fn from_fetch(url: &str, limit: u64, e: FetchError) -> Self {
        let url = url.to_owned();
        match e {
            FetchError::NotFound => Error::NotFound { url },
            FetchError::Status(status) => Error::Http { url, status },
            FetchError::TooLarge => Error::TooLarge { url, limit },
            FetchError::Io(reason) => Error::Network { url, reason },
        }
    }

    pub(crate) fn storage(path: &std::path::Path, e: std::io::Error) -> Self {
        Error::Storage {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    }

    pub(crate) fn parse(role: &str, reason: impl Into<String>) -> Self {
        Error::Parse {
            role: role.to_owned(),
            reason: reason.into(),
        }
    }
}
