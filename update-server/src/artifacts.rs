//! Target files (firmware images, SUIT envelopes), content-addressed by SHA-256 in an
//! `object_store`: a local directory on embedded defaults, S3-compatible storage at scale.
//!
//! An upload streams into a temporary object while it is hashed, and is renamed to
//! `targets/<sha256>` only once its hash and length match what the client declared, so a
//! cut upload or a wrong byte never becomes a servable artifact.

use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, GetRange, ObjectStore};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone)]
pub struct Artifacts {
    store: Arc<dyn ObjectStore>,
}

/// Why an upload was refused; each is the client's fault (a 4xx).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the upload is {got} bytes but {expected} were declared")]
    Length { expected: u64, got: u64 },
    #[error("the upload's SHA-256 is {got}, not the declared {expected}")]
    Digest { expected: String, got: String },
    #[error("the upload is larger than the server's limit of {0} bytes")]
    TooLarge(u64),
    #[error("the upload was cut off: {0}")]
    Body(String),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl Artifacts {
    /// `s3://bucket/prefix` or a local directory path.
    pub fn open(location: &str) -> Result<Artifacts> {
        let store: Arc<dyn ObjectStore> = if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("the artifact URL {location} names no bucket");
            }
            // Credentials, region and endpoint (AWS_ENDPOINT_URL for S3-compatible
            // servers) come from the usual AWS_* environment variables.
            let s3 = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .with_context(|| format!("cannot configure S3 for {location}"))?;
            let prefix = prefix.trim_end_matches('/');
            if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            }
        } else {
            let dir = FsPath::new(location);
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the artifact directory {location}"))?;
            Arc::new(
                LocalFileSystem::new_with_prefix(dir)
                    .with_context(|| format!("cannot open the artifact directory {location}"))?,
            )
        };
        Ok(Artifacts { store })
    }

    fn object(sha256: &str) -> Path {
        Path::from(format!("targets/{sha256}"))
    }

    /// Streams `body` into the store; keeps it only if it has exactly `length` bytes
    /// hashing to `sha256`.
    pub async fn upload<S, E>(
        &self,
        sha256: &str,
        length: u64,
        limit: u64,
        mut body: S,
    ) -> Result<(), UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if length > limit {
            return Err(UploadError::TooLarge(limit));
        }
        let staging = Path::from(format!("uploads/{}", uuid::Uuid::new_v4()));
        let mut writer = BufWriter::new(self.store.clone(), staging.clone());
        let mut hasher = Sha256::new();
        let mut got = 0u64;
        let mut finished = false;
        let result: Result<(), UploadError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| UploadError::Body(e.to_string()))?;
                got += chunk.len() as u64;
                if got > length {
                    return Err(UploadError::Length {
                        expected: length,
                        got,
                    });
                }
                hasher.update(&chunk);
                writer
                    .write_all(&chunk)
                    .await
                    .context("cannot write to the artifact store")?;
            }
            finished = true;
            writer
                .shutdown()
                .await
                .context("cannot write to the artifact store")?;
            if got != length {
                return Err(UploadError::Length {
                    expected: length,
                    got,
                });
            }
            let digest = hex::encode(hasher.finalize());
            if digest != sha256 {
                return Err(UploadError::Digest {
                    expected: sha256.to_string(),
                    got: digest,
                });
            }
            self.store
                .rename(&staging, &Self::object(sha256))
                .await
                .context("cannot store the artifact")?;
            Ok(())
        }
        .await;
        if result.is_err() {
            // A writer that was shut down has nothing left to abort (and refuses to).
            if !finished {
                writer.abort().await.ok();
            }
            self.store.delete(&staging).await.ok();
        }
        result
    }

    /// Whether the artifact is stored, and its length.
    pub async fn len(&self, sha256: &str) -> Result<Option<u64>> {
        match self.store.head(&Self::object(sha256)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).context("cannot read the artifact store"),
        }
    }

    /// The bytes `range` of an artifact (all of it for `None`), as a stream.
    pub async fn get(
        &self,
        sha256: &str,
        range: Option<Range<u64>>,
    ) -> Result<impl Stream<Item = object_store::Result<Bytes>> + Send + 'static + use<>> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        let result = self
            .store
            .get_opts(&Self::object(sha256), options)
            .await
            .context("cannot read the artifact store")?;
        Ok(result.into_stream())
    }
}
