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
use futures::TryStreamExt;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

/// Read size for artifacts on the local file system.
const LOCAL_READ_CHUNK: usize = 256 * 1024;

/// Size of the slices a download from memory is written in.
const HOT_CHUNK: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Artifacts {
    store: Arc<dyn ObjectStore>,
    hot: Arc<HotSet>,
}

/// The artifacts devices download most, kept whole in memory within a byte budget,
/// least recently used out first. A rollout sends the same few images to every device:
/// from memory a download costs no store read and no copy (hyper writes slices of the
/// one buffer), on a local disk and on S3 alike. Artifacts are content-addressed, so a
/// kept copy is never stale.
#[derive(Debug, Default)]
struct HotSet {
    limit: u64,
    inner: std::sync::Mutex<HotInner>,
}

#[derive(Debug, Default)]
struct HotInner {
    /// SHA-256 → (the artifact, when it was last served).
    entries: std::collections::HashMap<String, (Bytes, u64)>,
    used: u64,
    clock: u64,
}

impl HotSet {
    /// Whether an artifact of `len` bytes is worth keeping: at most a quarter of the
    /// budget, so that a few images always fit together.
    fn keeps(&self, len: u64) -> bool {
        len > 0 && len <= self.limit / 4
    }

    fn get(&self, sha256: &str) -> Option<Bytes> {
        let mut inner = self.inner.lock().unwrap();
        inner.clock += 1;
        let now = inner.clock;
        let (bytes, used) = inner.entries.get_mut(sha256)?;
        *used = now;
        Some(bytes.clone())
    }

    fn forget(&self, sha256: &str) {
        let mut inner = self.inner.lock().unwrap();
        if let Some((gone, _)) = inner.entries.remove(sha256) {
            inner.used -= gone.len() as u64;
        }
    }

    fn put(&self, sha256: &str, bytes: Bytes) {
        let len = bytes.len() as u64;
        if !self.keeps(len) {
            return;
        }
        let mut inner = self.inner.lock().unwrap();
        if inner.entries.contains_key(sha256) {
            return;
        }
        while inner.used + len > self.limit {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((gone, _)) = inner.entries.remove(&oldest) {
                inner.used -= gone.len() as u64;
            }
        }
        inner.clock += 1;
        let now = inner.clock;
        inner.used += len;
        inner.entries.insert(sha256.to_owned(), (bytes, now));
    }
}

/// `range` of `whole` (all of it without one), as a stream of slices of the one buffer.
fn slices(
    whole: Bytes,
    range: Option<Range<u64>>,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    let range = range.unwrap_or(0..whole.len() as u64);
    let (start, end) = (range.start as usize, (range.end as usize).min(whole.len()));
    let body = whole.slice(start.min(end)..end);
    let len = body.len();
    futures::stream::iter(
        (0..len)
            .step_by(HOT_CHUNK)
            .map(move |at| Ok(body.slice(at..(at + HOT_CHUNK).min(len)))),
    )
    .boxed()
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
    /// `s3://bucket/prefix` or a local directory path; `hot_bytes` of memory keep the
    /// most downloaded artifacts whole (0: none).
    pub fn open(location: &str, hot_bytes: u64) -> Result<Artifacts> {
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
        Ok(Artifacts {
            store,
            hot: Arc::new(HotSet {
                limit: hot_bytes,
                ..Default::default()
            }),
        })
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

    /// Deletes staging objects older than `age`: uploads a crash cut off. (They are never
    /// served; this only returns their space.) The age is generous so that an upload still
    /// streaming into another replica is never touched.
    pub async fn sweep_stale_uploads(&self, age: std::time::Duration) -> Result<usize> {
        let cutoff = std::time::SystemTime::now() - age;
        let mut stale = Vec::new();
        let mut listing = self.store.list(Some(&Path::from("uploads")));
        while let Some(meta) = listing.next().await {
            let meta = meta.context("cannot list the artifact store")?;
            if std::time::SystemTime::from(meta.last_modified) < cutoff {
                stale.push(meta.location);
            }
        }
        for location in &stale {
            self.store
                .delete(location)
                .await
                .context("cannot delete a stale upload")?;
        }
        Ok(stale.len())
    }

    /// The SHA-256 of every artifact stored before `cutoff` (for the sweep of unlisted
    /// artifacts, `Repository::sweep_unlisted`).
    pub async fn stored_before(&self, cutoff: std::time::SystemTime) -> Result<Vec<String>> {
        let mut old = Vec::new();
        let mut listing = self.store.list(Some(&Path::from("targets")));
        while let Some(meta) = listing.next().await {
            let meta = meta.context("cannot list the artifact store")?;
            if let Some(sha256) = meta.location.filename()
                && std::time::SystemTime::from(meta.last_modified) < cutoff
            {
                old.push(sha256.to_string());
            }
        }
        Ok(old)
    }

    /// Deletes an artifact (gone already is fine: another replica's sweep).
    pub async fn delete(&self, sha256: &str) -> Result<()> {
        self.hot.forget(sha256);
        match self.store.delete(&Self::object(sha256)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).context("cannot delete an artifact"),
        }
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
    ) -> Result<BoxStream<'static, object_store::Result<Bytes>>> {
        if let Some(whole) = self.hot.get(sha256) {
            return Ok(slices(whole, range));
        }
        let options = GetOptions {
            range: range.clone().map(GetRange::Bounded),
            ..Default::default()
        };
        let result = self
            .store
            .get_opts(&Self::object(sha256), options)
            .await
            .context("cannot read the artifact store")?;
        if self.hot.keeps(result.meta.size) {
            // Read once, whole, then served from memory (this download included).
            drop(result);
            let whole = self
                .store
                .get(&Self::object(sha256))
                .await
                .context("cannot read the artifact store")?
                .bytes()
                .await
                .context("cannot read the artifact store")?;
            // Kept only if it is what its name says: a file damaged or altered in the
            // store is served as it is (devices check the signed hash) but never kept.
            let (name, bytes) = (sha256.to_owned(), whole.clone());
            let intact =
                tokio::task::spawn_blocking(move || hex::encode(Sha256::digest(&bytes)) == name)
                    .await
                    .unwrap_or(false);
            if intact {
                self.hot.put(sha256, whole.clone());
            }
            return Ok(slices(whole, range));
        }
        let range = result.range.clone();
        Ok(match result.payload {
            // object_store reads local files in 8 KiB blocking reads, one thread hop
            // each, which caps a download far below the disk and the network; read the
            // file asynchronously in large chunks instead.
            GetResultPayload::File(file, path) => {
                let mut file = tokio::fs::File::from_std(file);
                file.seek(std::io::SeekFrom::Start(range.start))
                    .await
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let body = file.take(range.end - range.start);
                ReaderStream::with_capacity(body, LOCAL_READ_CHUNK)
                    .map_err(|e| object_store::Error::Generic {
                        store: "local",
                        source: Box::new(e),
                    })
                    .boxed()
            }
            GetResultPayload::Stream(stream) => stream,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cut_upload_is_never_served_and_is_swept_later() {
        let dir = tempfile::tempdir().unwrap();
        let artifacts = Artifacts::open(dir.path().to_str().unwrap(), 0).unwrap();
        let good = b"complete".to_vec();
        let sha = hex::encode(Sha256::digest(&good));
        let body = futures::stream::iter([Ok::<_, String>(Bytes::from(good.clone()))]);
        artifacts
            .upload(&sha, good.len() as u64, 1 << 20, body)
            .await
            .unwrap();
        // A body that breaks off midway: refused, nothing stored under its name.
        let cut =
            futures::stream::iter([Ok(Bytes::from_static(b"half")), Err("reset".to_string())]);
        let err = artifacts
            .upload(&"b".repeat(64), 8, 1 << 20, cut)
            .await
            .unwrap_err();
        assert!(matches!(err, UploadError::Body(_)), "{err}");
        assert_eq!(artifacts.len(&"b".repeat(64)).await.unwrap(), None);
        // What a crash leaves: a staging file nobody finished.
        std::fs::create_dir_all(dir.path().join("uploads")).unwrap();
        std::fs::write(dir.path().join("uploads/crashed"), b"partial").unwrap();
        let young = artifacts
            .sweep_stale_uploads(std::time::Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(young, 0, "recent uploads may still be streaming");
        let swept = artifacts
            .sweep_stale_uploads(std::time::Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(swept, 1);
        assert!(!dir.path().join("uploads/crashed").exists());
        assert_eq!(artifacts.len(&sha).await.unwrap(), Some(good.len() as u64));
    }

    async fn read(artifacts: &Artifacts, sha: &str, range: Option<Range<u64>>) -> Vec<u8> {
        let chunks: Vec<Bytes> = artifacts
            .get(sha, range)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        chunks.concat()
    }

    #[tokio::test]
    async fn hot_artifacts_are_served_from_memory_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        // A 64-byte budget keeps artifacts of at most 16 bytes.
        let artifacts = Artifacts::open(dir.path().to_str().unwrap(), 64).unwrap();
        let mut shas = Vec::new();
        for n in 0..6u8 {
            let bytes = vec![b'a' + n; 16];
            let sha = hex::encode(Sha256::digest(&bytes));
            let body = futures::stream::iter([Ok::<_, String>(Bytes::from(bytes.clone()))]);
            artifacts.upload(&sha, 16, 1 << 20, body).await.unwrap();
            assert_eq!(read(&artifacts, &sha, None).await, bytes);
            assert_eq!(read(&artifacts, &sha, Some(2..5)).await, &bytes[2..5]);
            shas.push(sha);
        }
        // Within budget: the four most recently served are kept, the oldest went.
        assert_eq!(artifacts.hot.inner.lock().unwrap().used, 64);
        assert!(artifacts.hot.get(&shas[0]).is_none());
        assert!(artifacts.hot.get(&shas[5]).is_some());
        // Served from memory: the store's copy is not read again.
        std::fs::remove_file(dir.path().join("targets").join(&shas[5])).unwrap();
        assert_eq!(read(&artifacts, &shas[5], None).await, vec![b'f'; 16]);
        // Altered in the store: served as it is, never kept.
        let sha = &shas[4];
        artifacts.hot.forget(sha);
        std::fs::write(dir.path().join("targets").join(sha), vec![b'x'; 16]).unwrap();
        assert_eq!(read(&artifacts, sha, None).await, vec![b'x'; 16]);
        assert!(artifacts.hot.get(sha).is_none());
        // Deleted: forgotten too.
        artifacts.delete(&shas[5]).await.unwrap();
        assert!(artifacts.get(&shas[5], None).await.is_err());
        // Larger than a quarter of the budget: streamed, never kept.
        let big = vec![b'z'; 17];
        let sha = hex::encode(Sha256::digest(&big));
        let body = futures::stream::iter([Ok::<_, String>(Bytes::from(big.clone()))]);
        artifacts.upload(&sha, 17, 1 << 20, body).await.unwrap();
        assert_eq!(read(&artifacts, &sha, Some(1..17)).await, &big[1..]);
        assert!(artifacts.hot.get(&sha).is_none());
    }

    #[tokio::test]
    async fn artifacts_are_found_by_age_and_deleted_once() {
        let dir = tempfile::tempdir().unwrap();
        let artifacts = Artifacts::open(dir.path().to_str().unwrap(), 0).unwrap();
        let bytes = b"an upload";
        let sha = hex::encode(Sha256::digest(bytes));
        let body = futures::stream::iter([Ok::<_, String>(Bytes::from_static(bytes))]);
        artifacts
            .upload(&sha, bytes.len() as u64, 1 << 20, body)
            .await
            .unwrap();
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let in_an_hour = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        assert!(
            artifacts
                .stored_before(an_hour_ago)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            artifacts.stored_before(in_an_hour).await.unwrap(),
            std::slice::from_ref(&sha)
        );
        artifacts.delete(&sha).await.unwrap();
        artifacts.delete(&sha).await.unwrap();
        assert_eq!(artifacts.len(&sha).await.unwrap(), None);
    }
}
