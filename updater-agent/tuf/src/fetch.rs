//! Getting bytes from the repository: a blocking trait (one linear update cycle, as in
//! python-tuf) and its HTTP implementation.

/// Downloads one file, never returning more than `max_len` bytes.
pub trait Fetch {
    fn fetch(&self, url: &str, max_len: u64) -> Result<Vec<u8>, FetchError>;
}

impl<T: Fetch + ?Sized> Fetch for &T {
    fn fetch(&self, url: &str, max_len: u64) -> Result<Vec<u8>, FetchError> {
        (**self).fetch(url, max_len)
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// HTTP 404. (For root N+1 the client also treats `Status(403)` as "no newer root",
    /// TUF 1.0.34 §5.3.3 as python-tuf reads it.)
    #[error("not found")]
    NotFound,
    /// Any other non-success HTTP status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body is longer than `max_len`.
    #[error("longer than the limit")]
    TooLarge,
    /// Connection, TLS, timeout or body read failure.
    #[error("{0}")]
    Io(String),
}

/// [`Fetch`] over HTTP(S) with a caller-configured blocking reqwest client.
#[cfg(feature = "http")]
pub struct HttpFetcher {
    client: reqwest::blocking::Client,
}

#[cfg(feature = "http")]
impl HttpFetcher {
    pub fn new(client: reqwest::blocking::Client) -> Self {
        HttpFetcher { client }
    }
}

#[cfg(feature = "http")]
impl Fetch for HttpFetcher {
    fn fetch(&self, url: &str, max_len: u64) -> Result<Vec<u8>, FetchError> {
        let response = self
            .client
            .get(url)
            .send()
            .map_err(|e| FetchError::Io(e.to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(FetchError::NotFound);
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        if response.content_length().is_some_and(|n| n > max_len) {
            return Err(FetchError::TooLarge);
        }
        // The limit holds while streaming: read one byte past it to detect an overlong body
        // whatever the headers claim.
        use std::io::Read as _;
        let mut body = Vec::new();
        response
            .take(max_len.saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|e| FetchError::Io(e.to_string()))?;
        if body.len() as u64 > max_len {
            return Err(FetchError::TooLarge);
        }
        Ok(body)
    }
}
