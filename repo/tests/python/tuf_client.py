"""python-tuf's ngclient against a rota repository, for repo/tests/python_interop.rs.

Usage: tuf_client.py METADATA_URL TARGETS_URL TRUSTED_ROOT TARGET_NAME WORK_DIR

Trusts TRUSTED_ROOT, refreshes the metadata (root chain, timestamp, snapshot, targets),
downloads TARGET_NAME and prints one JSON line:
  {"ok": true, "root_version": N, "timestamp_version": N, "snapshot_version": N,
   "targets_version": N, "length": N, "sha256": HEX, "custom": {...}}
or, when python-tuf refuses something, {"ok": false, "error": "ExceptionName: message"}
with exit status 3.
"""

import hashlib
import inspect
import json
import os
import shutil
import sys

from tuf.api import exceptions
from tuf.ngclient import Updater


def main() -> int:
    metadata_url, targets_url, trusted_root, target_name, work_dir = sys.argv[1:6]
    metadata_dir = os.path.join(work_dir, "metadata")
    download_dir = os.path.join(work_dir, "download")
    os.makedirs(metadata_dir, exist_ok=True)
    os.makedirs(download_dir, exist_ok=True)
    with open(trusted_root, "rb") as f:
        root_bytes = f.read()

    kwargs = {}
    if "bootstrap" in inspect.signature(Updater.__init__).parameters:
        # python-tuf 6 and later: the trusted root is passed in, not read from the cache.
        kwargs["bootstrap"] = root_bytes
    else:
        shutil.copyfile(trusted_root, os.path.join(metadata_dir, "root.json"))
    updater = Updater(
        metadata_dir=metadata_dir,
        metadata_base_url=metadata_url,
        target_dir=download_dir,
        target_base_url=targets_url,
        **kwargs,
    )
    try:
        updater.refresh()
        info = updater.get_targetinfo(target_name)
        if info is None:
            raise exceptions.RepositoryError(f"target {target_name} is not listed")
        path = updater.download_target(info)
    except exceptions.RepositoryError as e:
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
        return 3
    except exceptions.DownloadError as e:
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
        return 3

    with open(path, "rb") as f:
        data = f.read()
    trusted = updater._trusted_set  # noqa: SLF001 (the versions the client ended on)
    print(
        json.dumps(
            {
                "ok": True,
                "root_version": trusted.root.version,
                "timestamp_version": trusted.timestamp.version,
                "snapshot_version": trusted.snapshot.version,
                "targets_version": trusted.targets.version,
                "length": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "custom": info.custom,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
