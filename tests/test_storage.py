"""app/storage.py: the same checks on the local folder and on S3 (moto's server mode, a real local process)."""

import io
import os

import pytest

from app.storage import LocalStorage, Missing, S3Storage, StorageError, from_config, s3_client


def test_put_get_exists_delete_round_trip(attachment_storage):
    data = "提案書\n".encode() * 1000 + bytes(range(256))
    key = "customer/abc/round-trip"
    assert not attachment_storage.exists(key)
    attachment_storage.put(key, io.BytesIO(data))
    assert attachment_storage.exists(key)
    with attachment_storage.get(key) as body:
        assert body.read() == data
    attachment_storage.delete(key)
    assert not attachment_storage.exists(key)
    attachment_storage.delete(key)  # deleting what is gone is not an error


def test_a_large_object_goes_in_parts_and_comes_back_whole(attachment_storage):
    """9 MiB: above boto3's 8 MiB multipart threshold, so S3 receives a multipart upload."""
    data = os.urandom(9 * 1024 * 1024)
    attachment_storage.put("meeting/m1/large", io.BytesIO(data))
    with attachment_storage.get("meeting/m1/large") as body:
        assert body.read() == data


def test_a_missing_key_is_missing(attachment_storage):
    with pytest.raises(Missing):
        attachment_storage.get("customer/nobody/nothing")


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../outside", "a/../../b", "a//b", "a\\b", "a/./b", "nul\x00"])
def test_keys_that_could_leave_the_root_are_refused(attachment_storage, key):
    with pytest.raises(ValueError):
        attachment_storage.put(key, io.BytesIO(b"x"))


def test_the_settings_choose_the_backend(tmp_path, s3_server):
    from tests.conftest import s3_settings

    assert isinstance(from_config({"S3_BUCKET": "", "ATTACHMENT_DIR": str(tmp_path)}), LocalStorage)
    s3 = from_config({**s3_settings(s3_server, "some-bucket"), "ATTACHMENT_DIR": str(tmp_path)})
    assert isinstance(s3, S3Storage) and s3.bucket == "some-bucket" and s3.prefix == "crm/"


def test_s3_keys_sit_under_the_prefix(s3_server):
    from tests.conftest import s3_settings

    settings = s3_settings(s3_server, "prefix-bucket")
    client = s3_client(settings)
    client.create_bucket(Bucket="prefix-bucket")
    S3Storage(client, "prefix-bucket", "crm/").put("customer/c/x", io.BytesIO(b"hello"))
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="prefix-bucket")["Contents"]]
    assert keys == ["crm/customer/c/x"]


def test_an_unwritable_folder_is_a_storage_error(tmp_path):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    store = LocalStorage(str(blocker))
    with pytest.raises(StorageError):
        store.put("customer/c/x", io.BytesIO(b"data"))
    assert list(tmp_path.iterdir()) == [blocker], "no temporary file is left behind"


def test_a_missing_bucket_is_a_storage_error(s3_server):
    from tests.conftest import s3_settings

    settings = s3_settings(s3_server, "no-such-bucket-here")
    store = S3Storage(s3_client(settings), "no-such-bucket-here")
    with pytest.raises(StorageError):
        store.put("customer/c/x", io.BytesIO(b"data"))
    with pytest.raises(StorageError) as raised:
        store.get("customer/c/x")
    assert not isinstance(raised.value, Missing), "a missing bucket is a failure, not a missing file"


def test_an_unreachable_s3_server_is_a_storage_error():
    from tests.services import free_port
    from tests.conftest import s3_settings

    settings = s3_settings(f"http://127.0.0.1:{free_port()}", "b")
    store = S3Storage(s3_client(settings), "b")
    with pytest.raises(StorageError):
        store.put("customer/c/x", io.BytesIO(b"data"))
    with pytest.raises(StorageError):
        store.get("customer/c/x")


class BreaksAfter(io.RawIOBase):
    """A stream giving `n` bytes, then failing as a disk read would."""

    def __init__(self, n):
        self.left = n

    def readable(self):
        return True

    def readinto(self, buf):
        if self.left <= 0:
            raise OSError("read error")
        n = min(len(buf), self.left)
        buf[:n] = b"x" * n
        self.left -= n
        return n


def test_a_failed_multipart_upload_leaves_no_parts(attachment_storage):
    """The stream fails after the first parts: a StorageError, no object, and (S3) no open multipart upload."""
    from app.storage import PART

    with pytest.raises(StorageError):
        attachment_storage.put("customer/c/broken", io.BufferedReader(BreaksAfter(2 * PART + 10)))
    assert not attachment_storage.exists("customer/c/broken")
    if isinstance(attachment_storage, S3Storage):
        open_uploads = attachment_storage.client.list_multipart_uploads(Bucket=attachment_storage.bucket)
        assert open_uploads.get("Uploads", []) == []
    else:
        assert stored_files(attachment_storage.root) == []


def stored_files(root):
    found = []
    for base, _dirs, files in os.walk(root):
        found += files
    return found
