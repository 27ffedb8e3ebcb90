//! Artifacts in S3-compatible object storage (moto's server standing in for S3): uploads
//! on both the single-PUT and the multipart path, served through `/tuf/targets/` with and
//! without Range, stored under the configured prefix, and nothing kept of a corrupt upload.
//!
//! The AWS_* variables the S3 client reads are process-wide, so this test lives alone in
//! its own test binary and sets them before it starts any thread of its own.

mod support;

use std::collections::BTreeMap;

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use support::process::{Moto, random_bytes};
use support::server::{CLASS, Keys, TestServer, put_created};

const BUCKET: &str = "rota-test";
const PREFIX: &str = "prefix";
/// The artifact store buffers 10 MiB before it switches to a multipart upload: larger
/// than that takes the multipart path, smaller a single PUT.
const MULTIPART: usize = 12 * 1024 * 1024 + 4321;
const SINGLE_PUT: usize = 5 * 1024 * 1024;

#[test]
#[allow(unsafe_code)] // std::env::set_var and remove_var are unsafe in edition 2024.
fn artifacts_live_in_s3_compatible_storage() {
    let Some(moto) = Moto::start() else {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "moto is not installed; `pip install 'moto[server]'` (required when CI=true)"
        );
        eprintln!(
            "notice: moto is not installed (`pip install 'moto[server]'`); \
             artifacts_live_in_s3_compatible_storage did not run"
        );
        return;
    };
    let stale: Vec<_> = std::env::vars_os()
        .filter(|(k, _)| k.to_str().is_some_and(|k| k.starts_with("AWS_")))
        .map(|(k, _)| k)
        .collect();
    // SAFETY: no other thread of this process reads the environment now: the test
    // harness waits for this test, and the runtime below does not exist yet.
    unsafe {
        for key in stale {
            std::env::remove_var(key);
        }
        std::env::set_var("AWS_ENDPOINT_URL", &moto.endpoint);
        std::env::set_var("AWS_ENDPOINT", &moto.endpoint);
        std::env::set_var("AWS_ALLOW_HTTP", "true");
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_REGION", "us-east-1");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(artifacts_in_s3(&moto));
}

async fn artifacts_in_s3(moto: &Moto) {
    let endpoint = &moto.endpoint;
    let http = reqwest::Client::new();
    let created = http
        .put(format!("{endpoint}/{BUCKET}"))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "creating the bucket");

    let keys = Keys::new();
    let temp = tempfile::tempdir().unwrap();
    let location = format!("s3://{BUCKET}/{PREFIX}");
    let server = TestServer::start_in(&keys, temp.path(), None, |s| {
        s.artifacts = Some(location.clone())
    })
    .await;
    server.init_repo(&keys).await;

    // A release whose image takes the multipart path (its envelope a single PUT), and a
    // plain 5 MiB artifact.
    let image = random_bytes(MULTIPART);
    let image_sha = sha256(&image);
    server.publish(&keys, CLASS, 2, &image).await;
    // moto logs each request: the image went up in parts, under the prefix.
    let log = moto.log();
    let staging = format!("/{BUCKET}/{PREFIX}/uploads/");
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("\"POST {staging}")) && l.contains("?uploads")),
        "a multipart upload was started: {log}"
    );
    assert!(log.contains("partNumber=2"), "{log}");
    let plain = random_bytes(SINGLE_PUT);
    let plain_sha = sha256(&plain);
    put_created(
        &server.http,
        server.url(&format!("/api/v1/artifacts/{plain_sha}")),
        &server.admin,
        plain.clone(),
    )
    .await;

    // Only listed files are served: sign the plain one into the targets.
    let current = server.current_targets().await;
    let plain_target =
        rota_repo::TargetFile::from_bytes("plain.bin", &plain, serde_json::json!({}));
    let signed = rota_repo::sign_targets(
        Some(&current),
        &[plain_target],
        &[&keys.targets],
        support::server::far_future(),
    )
    .unwrap();
    server.put_targets(&signed.bytes).await;

    // Served whole and in ranges, from S3.
    let image_name = format!("fw-{CLASS}-2.bin");
    for (sha, bytes, name) in [
        (&image_sha, &image, image_name.as_str()),
        (&plain_sha, &plain, "plain.bin"),
    ] {
        let path = format!("/tuf/targets/{sha}.{name}");
        let resp = server.http.get(server.url(&path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()["content-length"],
            bytes.len().to_string().as_str()
        );
        let served = resp.bytes().await.unwrap();
        assert!(served[..] == bytes[..], "{path} served whole");
        let len = bytes.len();
        // Across the multipart upload's first part boundary, or the middle.
        let boundary = if len > 10 * 1024 * 1024 {
            10 * 1024 * 1024
        } else {
            len / 2
        };
        let ranges = [
            (0, 99),
            (boundary - 50, boundary + 49),
            (len - 1000, len - 1),
        ];
        for (first, last) in ranges {
            let resp = server
                .http
                .get(server.url(&path))
                .header("range", format!("bytes={first}-{last}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
            assert_eq!(
                resp.headers()["content-range"],
                format!("bytes {first}-{last}/{len}").as_str()
            );
            let served = resp.bytes().await.unwrap();
            assert!(served[..] == bytes[first..=last], "{path} {first}-{last}");
        }
        let resp = server
            .http
            .get(server.url(&path))
            .header("range", "bytes=-1000")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
        assert!(resp.bytes().await.unwrap()[..] == bytes[len - 1000..]);
        let resp = server
            .http
            .get(server.url(&path))
            .header("range", format!("bytes={len}-"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    }

    // The objects really are in the bucket, under the prefix, and nothing else is.
    let bucket = AmazonS3Builder::from_env()
        .with_bucket_name(BUCKET)
        .build()
        .unwrap();
    let objects = list(&bucket).await;
    for (sha, len) in [(&image_sha, image.len()), (&plain_sha, plain.len())] {
        assert_eq!(
            objects.get(&format!("{PREFIX}/targets/{sha}")),
            Some(&(len as u64)),
            "{objects:?}"
        );
    }
    assert!(
        objects
            .keys()
            .all(|k| k.starts_with(&format!("{PREFIX}/targets/"))),
        "only finished artifacts, under the prefix: {objects:?}"
    );
    assert_eq!(objects.len(), 3, "image, envelope, plain: {objects:?}");

    for line in moto.log().lines().filter(|l| l.contains("\" 20")) {
        let path = line.split('"').nth(1).unwrap().split(' ').nth(1).unwrap();
        assert!(
            path == format!("/{BUCKET}")
                || path.starts_with(&format!("/{BUCKET}?"))
                || path.starts_with(&format!("/{BUCKET}/{PREFIX}/")),
            "the server touched {path} outside {location}"
        );
    }

    // Corrupt uploads (bytes that do not hash to the name), on both paths, are refused
    // and leave nothing behind: no target, no staging object, no open multipart upload.
    for size in [1000, MULTIPART] {
        let declared = sha256(&random_bytes(size));
        let resp = server
            .http
            .put(server.url(&format!("/api/v1/artifacts/{declared}")))
            .bearer_auth(&server.admin)
            .body(random_bytes(size))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{size} bytes");
        let resp = server
            .http
            .get(server.url(&format!("/tuf/targets/{declared}.x")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert!(!list(&bucket).await.keys().any(|k| k.contains(&declared)));
    }
    assert_eq!(
        list(&bucket).await,
        objects,
        "nothing kept of the corrupt uploads"
    );
    let pending = http
        .get(format!("{endpoint}/{BUCKET}?uploads"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !pending.contains("<Upload>"),
        "no multipart upload left open: {pending}"
    );
    server.stop().await;
}

/// Every object in the bucket and its size.
async fn list(bucket: &impl ObjectStore) -> BTreeMap<String, u64> {
    bucket
        .list(None)
        .map_ok(|meta| (meta.location.to_string(), meta.size))
        .try_collect()
        .await
        .unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
