"""Audit retention: whole months of audit rows older than AUDIT_RETENTION_MONTHS moved to a
compressed, checksummed archive, and read back by `crm audit export`.

A month (UTC) is archived once all of it is older than the retention period: the rows move,
in chain order, to `audit-YYYY-MM.jsonl.gz` (one canonical document per line, as the chain
hashed it, plus its `rowHash`) under AUDIT_ARCHIVE_DIR, with `audit-YYYY-MM.manifest.json`
beside it: the file's SHA-256, the row count, and the chain positions it holds with the
hashes at both ends of each run of positions. Rows sealed later with a timestamp in an
archived month (a late import) go to a further part, `audit-YYYY-MM.p2.jsonl.gz`.

One transaction per month: it sets `crm.audit_retention` (the append-only trigger's one
exception), locks the chain's state row (so no sealer links rows meanwhile), writes both
files (temporary names, fsync, rename), deletes exactly the rows written and commits. A
failure before the commit removes the files; a crash between the rename and the commit leaves
a part whose rows are still in the table, which the next run writes again under the same name.

`crm audit verify` crosses archived positions with the manifests' hashes (`ranges`), so the
chain stays verifiable after its oldest rows left the table.
"""

import gzip
import hashlib
import json
import logging
import os
import re
from datetime import datetime, timezone

import sqlalchemy as sa

from app.audit_chain import CONTENT_COLUMNS, LINK_COLUMNS, Range, digest, document, lock_state, seal, seal_app, start_periodic
from models.audit import AuditLog
from models.base import utcnow

_log = logging.getLogger(__name__)
FORMAT = 1
MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_PART = re.compile(r"^audit-(\d{4}-\d{2})(?:\.p(\d+))?\.manifest\.json$")
_T = AuditLog.__table__
CSV_HEADER = ("seq", "id", "timestamp", "userId", "action", "resourceType", "resourceId", "ipAddress", "changes",
              "prevHash", "rowHash")


class ArchiveError(Exception):
    """An archive that is missing, or does not match its manifest: nothing is read from it."""


def parse_month(text):
    """(year, month) of "YYYY-MM"; ValueError otherwise."""
    match = MONTH.match(text or "")
    if not match:
        raise ValueError(f"{text!r} is not a month written YYYY-MM")
    return int(match.group(1)), int(match.group(2))


def _add_months(year, month, n):
    index = year * 12 + (month - 1) + n
    return index // 12, index % 12 + 1


def month_start(year, month):
    """The first instant (UTC) of a month."""
    return datetime(year, month, 1, tzinfo=timezone.utc)


def boundary(now, months):
    """The first instant of the month holding `now` minus `months` months: every row before it is past retention."""
    year, month = _add_months(now.year, now.month, -months)
    return month_start(year, month)


def _names(month, part):
    base = f"audit-{month}" + ("" if part == 1 else f".p{part}")
    return base + ".jsonl.gz", base + ".manifest.json"


def manifests(directory, month=None):
    """The manifests under `directory` (of one month when given), oldest month and part first."""
    found = []
    if not os.path.isdir(directory):
        return found
    for name in os.listdir(directory):
        match = _PART.match(name)
        if not match or (month and match.group(1) != month):
            continue
        with open(os.path.join(directory, name), encoding="utf-8") as fh:
            doc = json.load(fh)
        doc["_path"] = os.path.join(directory, name)
        found.append(doc)
    return sorted(found, key=lambda d: (d["month"], d["part"]))


def ranges(directory):
    """The chain positions every archive part holds, for `audit_chain.verify`."""
    out = []
    for doc in manifests(directory):
        label = os.path.basename(doc["file"])
        out.extend(Range(first, last, first_prev, last_hash, label) for first, last, first_prev, last_hash in doc["ranges"])
    return out


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _part_for(conn, directory, month):
    """The part number this run writes for `month`: a part whose rows are still in the table is redone."""
    parts = manifests(directory, month)
    for doc in parts:
        first = doc["ranges"][0][0] if doc["ranges"] else None
        if first is not None and conn.execute(sa.select(_T.c.id).where(_T.c.seq == first)).first() is not None:
            return doc["part"]
    return max((d["part"] for d in parts), default=0) + 1


def _write_atomically(path, write):
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _archive_month(conn, directory, month, start, end, retention_months):
    """Write the sealed rows of [start, end) to a new part; return its manifest (None when there are none)."""
    part = _part_for(conn, directory, month)
    data_name, manifest_name = _names(month, part)
    data_path, manifest_path = os.path.join(directory, data_name), os.path.join(directory, manifest_name)
    in_month = sa.and_(_T.c.timestamp >= start, _T.c.timestamp < end, _T.c.seq.is_not(None))
    stats = {"rows": 0, "ranges": [], "first": None, "last": None}

    def write(fh):
        # mtime 0 and no file name: the same rows give the same bytes.
        with gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as gz:
            rows = conn.execute(
                sa.select(*CONTENT_COLUMNS, *LINK_COLUMNS).where(in_month).order_by(_T.c.seq)
                .execution_options(stream_results=True, yield_per=5000)
            ).mappings()
            runs = stats["ranges"]
            for row in rows:
                doc = document(row)
                doc["rowHash"] = row["row_hash"]
                gz.write(json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n")
                seq = doc["seq"]
                if runs and runs[-1][1] == seq - 1:
                    runs[-1][1], runs[-1][3] = seq, doc["rowHash"]
                else:
                    runs.append([seq, seq, doc["prevHash"], doc["rowHash"]])
                stats["rows"] += 1
                stats["first"] = stats["first"] or doc["timestamp"]
                stats["last"] = doc["timestamp"]

    os.makedirs(directory, exist_ok=True)
    _write_atomically(data_path, write)
    if not stats["rows"]:
        os.unlink(data_path)
        return None
    manifest = {
        "format": FORMAT,
        "month": month,
        "part": part,
        "file": data_name,
        "sha256": _sha256(data_path),
        "bytes": os.path.getsize(data_path),
        "rows": stats["rows"],
        "firstTimestamp": stats["first"],
        "lastTimestamp": stats["last"],
        "ranges": stats["ranges"],
        "retentionMonths": retention_months,
        "archivedAt": utcnow().isoformat(),
    }
    _write_atomically(manifest_path, lambda fh: fh.write(json.dumps(manifest, indent=2).encode("utf-8") + b"\n"))
    manifest["_path"] = manifest_path
    try:
        deleted = conn.execute(sa.delete(_T).where(in_month)).rowcount
        if deleted != stats["rows"]:
            raise ArchiveError(f"{month}: {stats['rows']} rows archived but {deleted} deleted")
    except BaseException:
        _remove(manifest)
        raise
    return manifest


def _remove(manifest):
    for path in (manifest["_path"], os.path.join(os.path.dirname(manifest["_path"]), manifest["file"])):
        if os.path.exists(path):
            os.unlink(path)


def retain(engine, directory, months, now=None):
    """Move every whole month of audit rows older than `months` months to the archive; return the manifests written."""
    seal(engine)
    before = boundary(now or utcnow(), months)
    written = []
    while True:
        manifest = None
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # The append-only trigger's one exception, for this transaction only.
                    conn.execute(sa.text("SET LOCAL crm.audit_retention = 'on'"))
                lock_state(conn)
                oldest = conn.execute(
                    sa.select(sa.func.min(_T.c.timestamp)).where(_T.c.timestamp < before, _T.c.seq.is_not(None))
                ).scalar()
                if oldest is None:
                    return written
                start = month_start(*_utc_month(oldest))
                end = min(month_start(*_add_months(start.year, start.month, 1)), before)
                month = f"{start.year:04d}-{start.month:02d}"
                manifest = _archive_month(conn, directory, month, start, end, months)
        except BaseException:
            if manifest is not None:
                _remove(manifest)
            raise
        if manifest is None:
            return written
        written.append(manifest)


def _utc_month(value):
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.year, value.month


def retain_app(app):
    """Run retention with `app`'s settings (the repeating job and the embedded thread); return the manifests written."""
    from app.extensions import db

    with app.app_context():
        config = app.config
        if not config["AUDIT_ARCHIVE_DIR"]:
            _log.warning("AUDIT_ARCHIVE_DIR is not set: audit retention keeps every row")
            return []
        return retain(db.engine, config["AUDIT_ARCHIVE_DIR"], int(config["AUDIT_RETENTION_MONTHS"]))


def check(manifest):
    """Refuse (ArchiveError) an archive part whose file is missing or whose SHA-256 is not its manifest's."""
    path = os.path.join(os.path.dirname(manifest["_path"]), manifest["file"])
    if not os.path.exists(path):
        raise ArchiveError(f"{manifest['file']} is missing")
    actual = _sha256(path)
    if actual != manifest["sha256"]:
        raise ArchiveError(f"{manifest['file']}: SHA-256 {actual} is not the manifest's {manifest['sha256']}")
    return path


def iter_part(manifest):
    """Yield the rows of one archive part, checking each row's hash and, at the end, the manifest's count and positions.

    Call `check` first: the checksum is what refuses a damaged file before anything is read.
    """
    path = os.path.join(os.path.dirname(manifest["_path"]), manifest["file"])
    count, runs = 0, []
    try:
        with gzip.open(path, "rb") as gz:
            for line in gz:
                doc = json.loads(line)
                if digest(doc) != doc.get("rowHash"):
                    raise ArchiveError(f"{manifest['file']}: row {doc.get('id')} does not give its hash")
                if runs and runs[-1][1] == doc["seq"] - 1:
                    if doc["prevHash"] != runs[-1][3]:
                        raise ArchiveError(f"{manifest['file']}: row {doc['id']} does not follow the row before it")
                    runs[-1][1], runs[-1][3] = doc["seq"], doc["rowHash"]
                else:
                    runs.append([doc["seq"], doc["seq"], doc["prevHash"], doc["rowHash"]])
                count += 1
                yield doc
    except (OSError, EOFError, ValueError, KeyError) as exc:
        raise ArchiveError(f"{manifest['file']}: unreadable ({exc})") from None
    if count != manifest["rows"] or runs != manifest["ranges"]:
        raise ArchiveError(f"{manifest['file']}: its rows do not match its manifest")


def read_month(directory, month):
    """The archived rows of `month`, as an iterator; every part's checksum is checked before it is returned."""
    parts = manifests(directory, month)
    if not parts:
        raise ArchiveError(f"no archive of {month} in {directory}")
    for part in parts:
        check(part)
    return (row for part in parts for row in iter_part(part))


def check_all(directory):
    """Read every archive part under `directory` through (checksum, row hashes, positions); return how many rows."""
    total = 0
    for part in manifests(directory):
        check(part)
        total += sum(1 for _ in iter_part(part))
    return total


def export_lines(rows, fmt):
    """Yield the archived rows as JSONL (each line as archived) or CSV (BOM, header, `changes` as JSON)."""
    if fmt == "jsonl":
        for r in rows:
            yield json.dumps(r, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"
        return
    from app.exports import BOM, csv_line

    yield BOM + csv_line(CSV_HEADER)
    for r in rows:
        changes = None if r["changes"] is None else json.dumps(r["changes"], ensure_ascii=False, sort_keys=True)
        yield csv_line([r["seq"], r["id"], r["timestamp"], r["userId"], r["action"], r["resourceType"],
                        r["resourceId"], r["ipAddress"], changes, r["prevHash"], r["rowHash"]])


def start_in_process(app):
    """The embedded default (no worker): seal and run retention from a thread of the web process (AUDIT_JOBS_IN_PROCESS)."""
    if not app.config["AUDIT_JOBS_IN_PROCESS"]:
        return None
    return start_periodic(app, [("AUDIT_SEAL_SECONDS", seal_app), ("AUDIT_RETENTION_SECONDS", retain_app)])
