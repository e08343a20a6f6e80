"""File storage behind one small interface: put, get, delete, exists.

`LocalStorage` keeps files under a folder (instance/attachments by default); `S3Storage`
in an S3-compatible bucket through boto3, chosen when S3_BUCKET is set (`from_config`).
Keys are relative paths made by the caller (app/services/attachments.py); every failure
of the backend is a `StorageError`, a missing key a `Missing`.
"""

import os
import shutil
import tempfile

CHUNK = 1024 * 1024
#: Size of one part of an S3 multipart upload (S3's minimum is 5 MiB, the last part aside).
PART = 8 * CHUNK


class StorageError(Exception):
    """The storage could not do what was asked (unreachable, refused, disk full)."""


class Missing(StorageError):
    """No object is stored under this key."""


def _check_key(key):
    """Refuse keys that could leave the storage's root (absolute, `..`, empty parts)."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key or "\x00" in key:
        raise ValueError(f"bad storage key {key!r}")
    return parts


class LocalStorage:
    """Files under `root`, one per key; written to a temporary file first, so a reader never sees half a file."""

    def __init__(self, root):
        self.root = os.path.abspath(root)

    def _path(self, key):
        return os.path.join(self.root, *_check_key(key))

    def put(self, key, stream):
        """Store the bytes read from the binary file object `stream` under `key`."""
        path = self._path(key)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".upload-")
            try:
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(stream, out, CHUNK)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            raise StorageError(f"could not write {key}: {exc}") from exc

    def get(self, key):
        """A binary file object reading the bytes stored under `key` (the caller closes it)."""
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise Missing(key) from None
        except OSError as exc:
            raise StorageError(f"could not read {key}: {exc}") from exc

    def delete(self, key):
        """Remove the object under `key` (nothing happens when there is none)."""
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"could not delete {key}: {exc}") from exc

    def exists(self, key):
        """True when an object is stored under `key`."""
        return os.path.isfile(self._path(key))


class S3Storage:
    """Objects in one bucket of an S3-compatible service, keys under `prefix`."""

    def __init__(self, client, bucket, prefix=""):
        self.client, self.bucket, self.prefix = client, bucket, prefix

    def _key(self, key):
        _check_key(key)
        return f"{self.prefix}{key}"

    def _errors(self):
        from botocore.exceptions import BotoCoreError, ClientError

        return (BotoCoreError, ClientError, OSError)

    def put(self, key, stream):
        """Store the bytes read from the binary file object `stream` under `key`: one PUT, or parts of PART bytes.

        Parts are sent one after the other, so at most two are held in memory (boto3's
        managed transfer reads ten ahead: a 20 MiB upload grew the web process by ~60 MB,
        bench/attachments.py). A failed multipart upload is aborted, leaving no parts behind.
        """
        target = self._key(key)
        try:
            chunk = stream.read(PART)
            following = stream.read(PART) if len(chunk) == PART else b""
            if not following:
                self.client.put_object(Bucket=self.bucket, Key=target, Body=chunk)
                return
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=target)["UploadId"]
            try:
                parts = []
                while chunk:
                    number = len(parts) + 1
                    sent = self.client.upload_part(Bucket=self.bucket, Key=target, PartNumber=number, UploadId=upload_id, Body=chunk)
                    parts.append({"ETag": sent["ETag"], "PartNumber": number})
                    chunk, following = following, (stream.read(PART) if following else b"")
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=target, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
            except BaseException:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=target, UploadId=upload_id)
                raise
        except self._errors() as exc:
            raise StorageError(f"could not write {key}: {exc}") from exc

    def get(self, key):
        """A binary file object (botocore's streaming body) reading the object under `key`."""
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise Missing(key) from None
            raise StorageError(f"could not read {key}: {exc}") from exc
        except self._errors() as exc:
            raise StorageError(f"could not read {key}: {exc}") from exc

    def delete(self, key):
        """Remove the object under `key` (S3 answers the same when there is none)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except self._errors() as exc:
            raise StorageError(f"could not delete {key}: {exc}") from exc

    def exists(self, key):
        """True when an object is stored under `key`."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StorageError(f"could not look up {key}: {exc}") from exc
        except self._errors() as exc:
            raise StorageError(f"could not look up {key}: {exc}") from exc


def s3_client(config):
    """A boto3 S3 client from the S3_* and AWS_* settings (empty ones left to boto3's own defaults)."""
    import boto3
    from botocore.config import Config as BotoConfig

    options = {
        "endpoint_url": config.get("S3_ENDPOINT_URL") or None,
        "region_name": config.get("S3_REGION") or None,
        "config": BotoConfig(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30),
    }
    if config.get("AWS_ACCESS_KEY_ID"):
        options["aws_access_key_id"] = config["AWS_ACCESS_KEY_ID"]
        options["aws_secret_access_key"] = config.get("AWS_SECRET_ACCESS_KEY") or None
    return boto3.client("s3", **options)


def from_config(config):
    """The storage the settings name: S3 when S3_BUCKET is set, else the folder ATTACHMENT_DIR."""
    if config.get("S3_BUCKET"):
        return S3Storage(s3_client(config), config["S3_BUCKET"], config.get("S3_PREFIX") or "")
    return LocalStorage(config["ATTACHMENT_DIR"])
