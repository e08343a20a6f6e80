"""Imports of customers, meetings and tasks from CSV or Excel: the rules every entry point shares.

The screen (views/imports.py), /api/imports and the job (an RQ job, or a thread of the web
process in the embedded default) all go through this module:

- `read_table` decodes an upload: CSV in UTF-8 (with or without BOM) or Shift_JIS/CP932
  (detected with charset-normalizer), or .xlsx through openpyxl's read-only mode. A file
  that is too large, too long, in another encoding, a zip that unpacks to far more than it
  weighs, a sheet declaring more rows than allowed or holding formulas is refused (4xx)
  before anything is written. Text that merely looks like a formula is stored as text: no
  cell is ever evaluated, and the exports neutralise it on the way out (app/exports.py).
- `suggest_mapping` maps headers (Japanese or English) to fields; `preview` checks the
  first rows as the job would, with each error named by its column.
- `run` writes the rows through the same services as a screen (app/services/records.py:
  scope, validation, owner rules; the audit listener and outbox events follow from the
  flush, so an imported customer gets its first-contact task). Rows are committed in
  batches together with their `ImportRow` outcomes and the progress counter, under a lock
  of the import's row: a killed job started again resumes after the last committed batch,
  and no row is written twice.
- `undo` soft-deletes what an import created (customers; meetings and tasks are
  cancelled, the soft end they have) and restores what it updated.
"""

import codecs
import csv
import io
import itertools
import logging
import re
import threading
import time
import unicodedata
import uuid
import zipfile
from datetime import date, datetime, timezone

import sqlalchemy as sa
from flask import current_app
from flask_appbuilder.security.sqla.models import User

from app import audit
from app.context import acting_as
from app.emails import normalise_email
from app.extensions import db
from app.roles import ADD, CUSTOMER, EDIT, MEETING, ROLE_PERMISSIONS, TASK
from app.scope import ADMIN, in_scope, role_names
from app.serialize import json_value
from app.services.errors import DomainError, Forbidden, NotFound, ValidationFailed
from app.services.records import is_sales_only, prepare_customer, prepare_meeting, prepare_task
from models.audit import AuditAction
from models.base import new_id, utcnow
from models.customer import CompanySize, Customer, InvestmentProfile
from models.imports import DedupeMode, Import, ImportKind, ImportRow, ImportStatus, RowOutcome
from models.meeting import Meeting, MeetingStatus, MeetingType
from models.task import Task, TaskPriority, TaskStatus

log = logging.getLogger(__name__)

MB = 1024 * 1024
#: Most columns a file may have: a sheet declaring thousands would pad every row to them.
MAX_COLUMNS = 200
#: An .xlsx may unpack to at most this many times the upload limit (a zip bomb unpacks to far more).
XLSX_EXPANSION = 10
#: Bytes of a CSV that charset-normalizer looks at to tell Shift_JIS/CP932 from other encodings.
DETECT_SAMPLE = 256 * 1024
REASON_MAX = 1000


class TooLarge(DomainError):
    """The upload is larger than IMPORT_MAX_MB."""

    status = 413
    error = "Payload Too Large"


# ---- fields of each kind ------------------------------------------------------------------


class Spec:
    """One importable field: its API name, the model attribute, how a cell becomes a value, the headers it is suggested for."""

    def __init__(self, name, attr, kind="text", required=False, max_len=None, enum=None, labels=None, headers=(),
                 minimum=None, maximum=None):
        self.name, self.attr, self.kind, self.required = name, attr, kind, required
        self.max_len, self.enum, self.labels, self.headers = max_len, enum, labels or {}, headers
        self.minimum, self.maximum = minimum, maximum


OWNER_HEADERS = ("担当者", "担当", "担当営業", "営業担当", "担当者メール", "assignee", "owner", "salesrep", "rep", "assignedto",
                 "assignedsales", "assignedsalesid", "salesid", "userid", "user")
CUSTOMER_REF_HEADERS = ("顧客id", "顧客", "顧客名メール", "顧客メール", "customerid", "customer", "customeremail")

SIZE_LABELS = {"小": "SMALL", "小規模": "SMALL", "中": "MEDIUM", "中規模": "MEDIUM", "大": "LARGE", "大規模": "LARGE",
               "大企業": "ENTERPRISE", "エンタープライズ": "ENTERPRISE"}
PROFILE_LABELS = {"保守的": "conservative", "安定": "conservative", "中庸": "moderate", "バランス": "moderate",
                  "積極的": "aggressive"}
MEETING_TYPE_LABELS = {"訪問": "visit", "電話": "phone", "オンライン": "online", "来店": "branch", "その他": "other"}
MEETING_STATUS_LABELS = {"予定": "scheduled", "完了": "completed", "実施済": "completed", "中止": "cancelled",
                         "キャンセル": "cancelled"}
TASK_STATUS_LABELS = {"未着手": "TODO", "進行中": "IN_PROGRESS", "対応中": "IN_PROGRESS", "完了": "COMPLETED",
                      "中止": "CANCELLED", "キャンセル": "CANCELLED"}
PRIORITY_LABELS = {"低": "LOW", "中": "MEDIUM", "高": "HIGH", "緊急": "URGENT"}

FIELDS = {
    ImportKind.customers: [
        Spec("name", "name", required=True, max_len=200,
             headers=("顧客名", "会社名", "企業名", "取引先名", "取引先", "氏名", "名前", "名称", "name", "customername", "company",
                      "companyname", "customer")),
        Spec("email", "email", "email", max_len=254,
             headers=("メール", "メールアドレス", "eメール", "email", "e-mail", "mail", "emailaddress")),
        Spec("phone", "phone", max_len=50, headers=("電話番号", "電話", "tel", "phone", "telephone", "phonenumber", "携帯")),
        Spec("address", "address", max_len=500, headers=("住所", "所在地", "address")),
        Spec("industry", "industry", max_len=100, headers=("業種", "業界", "industry")),
        Spec("size", "size", "enum", enum=CompanySize, labels=SIZE_LABELS,
             headers=("規模", "企業規模", "会社規模", "size", "companysize")),
        Spec("investmentProfile", "investment_profile", "enum", enum=InvestmentProfile, labels=PROFILE_LABELS,
             headers=("投資方針", "投資プロファイル", "投資スタイル", "investmentprofile", "profile")),
        Spec("riskTolerance", "risk_tolerance", "int", minimum=1, maximum=10,
             headers=("リスク許容度", "リスク", "risktolerance", "risk")),
        Spec("investmentExperience", "investment_experience", max_len=500,
             headers=("投資経験", "investmentexperience", "experience")),
        Spec("assignedSalesId", "assigned_sales_id", "user", headers=OWNER_HEADERS),
    ],
    ImportKind.meetings: [
        Spec("customerId", "customer_id", "customer", required=True, headers=CUSTOMER_REF_HEADERS),
        Spec("title", "title", max_len=200, headers=("件名", "タイトル", "商談名", "title", "subject")),
        Spec("scheduledAt", "scheduled_at", "datetime", required=True,
             headers=("日時", "商談日時", "商談日", "予定日時", "実施日", "日付", "scheduledat", "date", "datetime", "when")),
        Spec("description", "description", max_len=20000,
             headers=("内容", "概要", "商談内容", "メモ", "備考", "description", "summary", "notes", "memo")),
        Spec("location", "location", max_len=200, headers=("場所", "訪問先", "location", "place")),
        Spec("type", "type", "enum", enum=MeetingType, labels=MEETING_TYPE_LABELS, headers=("種別", "形式", "type")),
        Spec("status", "status", "enum", enum=MeetingStatus, labels=MEETING_STATUS_LABELS,
             headers=("状態", "ステータス", "status")),
        Spec("nextAction", "next_action", max_len=500, headers=("次回アクション", "ネクストアクション", "nextaction")),
        Spec("nextActionDate", "next_action_date", "datetime",
             headers=("次回予定日", "次回日時", "次回アクション日", "nextactiondate")),
        Spec("salesId", "sales_id", "user", headers=OWNER_HEADERS),
    ],
    ImportKind.tasks: [
        Spec("title", "title", required=True, max_len=200, headers=("タイトル", "件名", "タスク", "タスク名", "title", "task",
                                                                   "subject")),
        Spec("description", "description", max_len=20000,
             headers=("内容", "詳細", "メモ", "備考", "description", "details", "notes")),
        Spec("dueDate", "due_date", "datetime", headers=("期限", "期日", "締切", "期限日", "duedate", "due", "deadline")),
        Spec("priority", "priority", "enum", enum=TaskPriority, labels=PRIORITY_LABELS,
             headers=("優先度", "重要度", "priority")),
        Spec("status", "status", "enum", enum=TaskStatus, labels=TASK_STATUS_LABELS,
             headers=("状態", "ステータス", "status")),
        Spec("customerId", "customer_id", "customer", headers=CUSTOMER_REF_HEADERS),
        Spec("userId", "user_id", "user", headers=OWNER_HEADERS),
    ],
}
#: The permission and FAB resource a row of each kind is written under.
RESOURCE = {ImportKind.customers: CUSTOMER, ImportKind.meetings: MEETING, ImportKind.tasks: TASK}
MODEL = {ImportKind.customers: Customer, ImportKind.meetings: Meeting, ImportKind.tasks: Task}
OWNER_ATTR = {ImportKind.customers: "assigned_sales_id", ImportKind.meetings: "sales_id", ImportKind.tasks: "user_id"}


def fields(kind):
    """The importable fields of `kind` as {name: Spec}, in the screen's order."""
    return {spec.name: spec for spec in FIELDS[parse_kind(kind)]}


def parse_kind(raw):
    """The ImportKind spelled `raw`, else a 400 naming `kind`."""
    try:
        return ImportKind(str(raw or "").strip().lower())
    except ValueError:
        raise ValidationFailed("kind must be one of customers, meetings, tasks", field="kind") from None


def parse_dedupe(raw):
    """The DedupeMode spelled `raw` (default skip), else a 400 naming `dedupe`."""
    if raw in (None, ""):
        return DedupeMode.skip
    try:
        return DedupeMode(str(raw).strip().lower())
    except ValueError:
        raise ValidationFailed("dedupe must be one of skip, update, create", field="dedupe") from None


# ---- reading a file ----------------------------------------------------------------------


class Table:
    """A decoded upload: its headers, its number of data rows and a way to walk them (again, for a resumed job)."""

    def __init__(self, file_format, encoding, headers, total, walk):
        self.file_format, self.encoding, self.headers, self.total = file_format, encoding, headers, total
        self._walk = walk

    def rows(self):
        """Yield (row number as a spreadsheet shows it, [cell values]) of every non-blank data row."""
        width = len(self.headers)
        for number, values in self._walk():
            values = list(values[:width]) + [None] * (width - len(values))
            yield number, values


def _limits():
    config = current_app.config
    return config["IMPORT_MAX_MB"] * MB, config["IMPORT_MAX_ROWS"]


def _blank(values):
    return all(v is None or (isinstance(v, str) and not v.strip()) for v in values)


def _headers(raw):
    """Header texts, stripped; an empty or repeated one gets its column's number so each is unique."""
    out, seen = [], set()
    for i, value in enumerate(raw, start=1):
        text = unicodedata.normalize("NFC", str(value).strip()) if value is not None else ""
        if not text or text in seen:
            text = f"{text or 'column'} ({i})"
        seen.add(text)
        out.append(text[:255])
    while out and out[-1].startswith("column ("):
        out.pop()  # trailing empty header cells (a sheet formatted further to the right)
    return out


def decode_csv(data):
    """Return (text, encoding) of a CSV upload in UTF-8 (BOM or not) or Shift_JIS/CP932; 400 for anything else."""
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8):].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            raise _bad_encoding(f"it starts with a UTF-8 BOM but byte {exc.start + 3} is not UTF-8") from None
    try:
        text, encoding = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = None, None
    if text is None:
        from charset_normalizer import from_bytes

        sample = data[:DETECT_SAMPLE]
        if len(data) > DETECT_SAMPLE and b"\n" in sample:
            sample = sample[: sample.rindex(b"\n") + 1]  # never cut a character in two
        if from_bytes(sample, cp_isolation=["cp932", "shift_jis"]).best() is None:
            guess = from_bytes(sample[:65536]).best()
            found = f" (it looks like {guess.encoding})" if guess is not None else ""
            raise _bad_encoding(f"it is neither UTF-8 nor Shift_JIS/CP932{found}")
        try:
            text, encoding = data.decode("cp932"), "cp932"
        except UnicodeDecodeError as exc:
            raise _bad_encoding(f"byte {exc.start} is not Shift_JIS/CP932") from None
    if "\x00" in text:
        raise _bad_encoding("it holds NUL characters (UTF-16 text? save it as UTF-8 or Shift_JIS CSV)")
    return text, encoding


def _bad_encoding(why):
    return ValidationFailed(f"the file cannot be read as text: {why}; save it as CSV in UTF-8 or Shift_JIS", field="file")


def _csv_table(data):
    text, encoding = decode_csv(data)
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first and "," not in first else ","

    def walk():
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        next(reader, None)
        # Numbered as a spreadsheet opening the file shows them: a quoted newline stays in its cell.
        for number, values in enumerate(reader, start=2):
            if not _blank(values):
                yield number, values

    try:
        header = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), None)
    except csv.Error as exc:
        raise ValidationFailed(f"the CSV cannot be read: {exc}", field="file") from None
    return "csv", encoding, header, walk


def _xlsx_table(data):
    import openpyxl

    max_bytes, max_rows = _limits()
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError):
        raise ValidationFailed("the file is not a readable .xlsx workbook", field="file") from None
    if unpacked > max_bytes * XLSX_EXPANSION:
        raise ValidationFailed(
            f"the workbook unpacks to {unpacked // MB} MB, more than {XLSX_EXPANSION} × IMPORT_MAX_MB", field="file"
        )
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a broken workbook
        raise ValidationFailed(f"the file is not a readable .xlsx workbook ({type(exc).__name__})", field="file") from None
    if not book.worksheets:
        raise ValidationFailed("the workbook has no sheet", field="file")
    sheet = book.worksheets[0]
    declared_rows, declared_cols = sheet.max_row, sheet.max_column
    if declared_rows and declared_rows > max_rows + 1:
        raise ValidationFailed(f"the sheet declares {declared_rows} rows, more than IMPORT_MAX_ROWS ({max_rows})", field="file")
    if declared_cols and declared_cols > MAX_COLUMNS:
        raise ValidationFailed(f"the sheet declares {declared_cols} columns, more than {MAX_COLUMNS}", field="file")
    # Read what the sheet holds, not what its (possibly wrong) dimension says.
    sheet.reset_dimensions()

    def values_of(row):
        out = []
        for cell in row[:MAX_COLUMNS + 1]:
            if getattr(cell, "data_type", None) == "f":
                raise ValidationFailed(
                    f"cell {cell.coordinate} holds a formula; imports never evaluate formulas: paste the values instead",
                    field="file",
                )
            out.append(cell.value)
        if len(out) > MAX_COLUMNS:
            raise ValidationFailed(f"the sheet has more than {MAX_COLUMNS} columns", field="file")
        return out

    def walk():
        rows = sheet.iter_rows()
        next(rows, None)
        for number, row in enumerate(rows, start=2):
            values = values_of(row)
            if not _blank(values):
                yield number, values

    header = next(sheet.iter_rows(max_row=1), None)
    return "xlsx", None, values_of(header) if header else None, walk


def read_table(filename, data):
    """Decode an upload into a Table, checking its size, encoding, shape and row count; a DomainError (4xx) when refused."""
    max_bytes, max_rows = _limits()
    if not data:
        raise ValidationFailed("the file is empty", field="file")
    if len(data) > max_bytes:
        raise TooLarge(f"the file is larger than IMPORT_MAX_MB ({max_bytes // MB} MB)", field="file")
    name = (filename or "").lower()
    if data[:4] == b"PK\x03\x04":
        file_format, encoding, header, walk = _xlsx_table(data)
    elif data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" or name.endswith(".xls"):
        raise ValidationFailed("old .xls workbooks are not read: save it as .xlsx or CSV", field="file")
    elif name.endswith(".xlsx"):
        raise ValidationFailed("the file is not a readable .xlsx workbook", field="file")
    else:
        file_format, encoding, header, walk = _csv_table(data)
    headers = _headers(header or [])
    if not headers:
        raise ValidationFailed("the file has no header row", field="file")
    if len(headers) > MAX_COLUMNS:
        raise ValidationFailed(f"the file has more than {MAX_COLUMNS} columns", field="file")
    total = 0
    try:
        for _ in walk():
            total += 1
            if total > max_rows:
                raise ValidationFailed(f"the file has more than IMPORT_MAX_ROWS ({max_rows}) rows", field="file")
    except csv.Error as exc:
        raise ValidationFailed(f"the CSV cannot be read: {exc}", field="file") from None
    if not total:
        raise ValidationFailed("the file has no data rows under its header", field="file")
    return Table(file_format, encoding, headers, total, walk)


# ---- mapping --------------------------------------------------------------------------------


def _norm(text):
    """A header as compared: NFKC (full-width letters and digits), lower case, no spaces, dashes or underscores."""
    text = unicodedata.normalize("NFKC", str(text or "")).lower()
    return re.sub(r"[\s_\-・:：()（）\[\]【】*＊]", "", text)


def suggest_mapping(kind, headers):
    """{field: column index} guessed from `headers`: exact synonyms first, then a header containing one."""
    specs = FIELDS[parse_kind(kind)]
    normed = [_norm(h) for h in headers]
    mapping, taken = {}, set()
    for exact in (True, False):
        for spec in specs:
            if spec.name in mapping:
                continue
            synonyms = [_norm(s) for s in spec.headers] + [_norm(spec.name), _norm(spec.attr)]
            for index, header in enumerate(normed):
                if index in taken or not header:
                    continue
                if (header in synonyms) if exact else any(len(s) > 1 and s in header for s in synonyms):
                    mapping[spec.name] = index
                    taken.add(index)
                    break
    return mapping


def check_mapping(kind, headers, mapping):
    """Return {field: column index} from `mapping` ({field: index or header text}); 400 naming a bad or missing field."""
    specs = fields(kind)
    if not isinstance(mapping, dict):
        raise ValidationFailed("mapping must be an object of field: column", field="mapping")
    out, problems = {}, {}
    for name, column in mapping.items():
        if column in (None, ""):
            continue
        if name not in specs:
            problems[name] = [f"{name} is not a field of {kind} (fields: {', '.join(specs)})"]
            continue
        index = _column_index(headers, column)
        if index is None:
            problems[name] = [f"the file has no column {column!r}"]
        elif index in out.values():
            problems[name] = [f"column {headers[index]!r} is mapped twice"]
        else:
            out[name] = index
    for name, spec in specs.items():
        if spec.required and name not in out and name not in problems:
            problems[name] = [f"the file has no column for {name} (required); map one of its columns to it"]
    if problems:
        first = next(iter(problems.values()))[0]
        raise ValidationFailed(first if len(problems) == 1 else "invalid mapping: " + ", ".join(problems), details=problems)
    return out


def _column_index(headers, column):
    if isinstance(column, bool):
        return None
    if isinstance(column, int):
        return column if 0 <= column < len(headers) else None
    text = str(column).strip()
    if text in headers:
        return headers.index(text)
    if text.isdigit() and int(text) < len(headers):
        return int(text)
    return None


# ---- cells to values ------------------------------------------------------------------------


class CellError(Exception):
    """A cell that cannot be the value of its field."""


_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y年%m月%d日 %H:%M", "%Y年%m月%d日 %H時%M分",
                 "%Y年%m月%d日")


def _text(value):
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # Excel stores every number as a float: a phone 312345678 is not "312345678.0"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value).strip()


def _local_to_utc(value):
    if value.tzinfo is None:
        from app.i18n import display_zone

        value = value.replace(tzinfo=display_zone())
    return value.astimezone(timezone.utc)


def convert(spec, value, ctx):
    """The value of field `spec` for cell `value`, or None for an empty cell; CellError when it cannot be one."""
    if spec.kind == "datetime" and isinstance(value, datetime):
        return _local_to_utc(value)
    if spec.kind == "datetime" and isinstance(value, date):
        return _local_to_utc(datetime(value.year, value.month, value.day))
    text = _text(value)
    if not text:
        return None
    if "\x00" in text:
        raise CellError("must not contain a NUL character")
    kind = spec.kind
    if kind in ("text", "email"):
        if spec.max_len and len(text) > spec.max_len:
            raise CellError(f"must be at most {spec.max_len} characters")
        return text
    plain = unicodedata.normalize("NFKC", text).strip()
    if kind == "int":
        try:
            number = int(float(plain)) if re.fullmatch(r"-?\d+(\.0+)?", plain) else int(plain)
        except ValueError:
            raise CellError("must be a whole number") from None
        if not spec.minimum <= number <= spec.maximum:
            raise CellError(f"must be between {spec.minimum} and {spec.maximum}")
        return number
    if kind == "enum":
        wanted = spec.labels.get(plain, plain).lower()
        for member in spec.enum:
            if member.value.lower() == wanted:
                return member
        raise CellError("must be one of " + ", ".join(m.value for m in spec.enum))
    if kind == "datetime":
        iso = plain.replace("/", "-")
        try:
            parsed = datetime.fromisoformat(iso[:-1] + "+00:00" if iso.endswith("Z") else iso)
        except ValueError:
            parsed = None
        for fmt in _DATE_FORMATS if parsed is None else ():
            try:
                parsed = datetime.strptime(iso, fmt)
                break
            except ValueError:
                continue
        if parsed is None:
            raise CellError("must be a date (2026-12-01) or date and time (2026-12-01 10:00)")
        # A time without an offset is the team's wall clock (DISPLAY_TIMEZONE), as the screens show times.
        return _local_to_utc(parsed)
    if kind == "user":
        return ctx.user_ref(plain)
    if kind == "customer":
        return ctx.customer_ref(plain)
    raise AssertionError(kind)


class Context:
    """What converting and writing rows of one import needs: its user, mode, and look-ups remembered per batch."""

    def __init__(self, imp, user):
        self.imp, self.user, self.kind, self.dedupe = imp, user, ImportKind(imp.kind), DedupeMode(imp.dedupe)
        self.specs = fields(self.kind)
        self.mapping = {name: int(index) for name, index in (imp.mapping or {}).items() if name in self.specs}
        self.sales_only = is_sales_only(user)
        self._users = {}
        self.pending = {}  # e-mail -> customer written by an earlier row of this batch (not flushed yet)
        self.live = {}  # e-mail -> the live customer holding it (None: free), looked up once per batch
        self._emails = {}

    def email(self, text):
        """`text` as the service stores an address (normalise_email), checked once per batch."""
        if text not in self._emails:
            try:
                self._emails[text] = normalise_email(text, field="email")
            except DomainError as exc:
                self._emails[text] = exc
        found = self._emails[text]
        if isinstance(found, DomainError):
            raise found
        return found

    def prefetch(self, batch):
        """Look up in one query the live customers holding the e-mails of `batch`'s rows."""
        index = self.mapping.get("email")
        if self.kind != ImportKind.customers or index is None:
            return
        wanted = set()
        for _number, cells in batch:
            text = _text(cells[index] if index < len(cells) else None)
            if text:
                try:
                    wanted.add(self.email(text))
                except DomainError:
                    continue
        wanted -= set(self.live)
        if not wanted:
            return
        self.live.update(dict.fromkeys(wanted))
        found = db.session.execute(
            sa.select(Customer).where(Customer.email.in_(sorted(wanted)), Customer.deleted_at.is_(None))
        ).scalars()
        self.live.update({customer.email: customer for customer in found})

    def live_customer(self, email):
        """The live customer holding `email` (this batch's rows first), else None."""
        if email in self.pending:
            return self.pending[email]
        if email not in self.live:
            self.live[email] = db.session.execute(
                sa.select(Customer).where(Customer.email == email, Customer.deleted_at.is_(None))
            ).scalars().first()
        return self.live[email]

    def user_ref(self, text):
        """The id of the active user `text` names (an id or an e-mail)."""
        if text not in self._users:
            if text.isdigit():
                found = db.session.get(User, int(text))
            else:
                found = db.session.execute(sa.select(User).where(sa.func.lower(User.email) == text.lower())).scalars().first()
            self._users[text] = found.id if found is not None and found.active else None
        if self._users[text] is None:
            raise CellError("names no active user (give a user id or e-mail)")
        return self._users[text]

    def customer_ref(self, text):
        """The id of the customer `text` names (its id, or the e-mail of a live customer); scope is judged by the service."""
        try:
            return str(uuid.UUID(text))
        except ValueError:
            pass
        if "@" in text:
            pending = self.pending.get(text.lower())
            if pending is not None:
                return pending.id
            found = db.session.execute(
                sa.select(Customer.id).where(Customer.email == text.lower(), Customer.deleted_at.is_(None))
            ).scalar()
            if found:
                return found
        raise CellError("names no customer (give a customer id or the e-mail of a customer)")

    def values(self, cells, headers):
        """({attribute: value} of the mapped cells of one row, {column: error})."""
        values, problems = {}, {}
        for name, index in self.mapping.items():
            spec = self.specs[name]
            try:
                value = convert(spec, cells[index] if index < len(cells) else None, self)
            except CellError as exc:
                problems[headers[index]] = f"{name} {exc}"
                continue
            if value is None and spec.required:
                problems[headers[index]] = f"{name} is required"
            elif value is not None:
                values[spec.attr] = value
        if self.sales_only:
            # A Sales user imports into their own scope only, whatever the file says.
            values[OWNER_ATTR[self.kind]] = self.user.id
        return values, problems


# ---- permissions and loading ----------------------------------------------------------------


def _may(user, permission, resource):
    names = role_names(user)
    return ADMIN in names or any(permission in ROLE_PERMISSIONS.get(n, {}).get(resource, ()) for n in names)


def check_may_import(user, kind, dedupe=DedupeMode.skip):
    """403 unless `user` may add records of `kind` (and edit customers, for dedupe=update)."""
    kind = parse_kind(kind)
    resource = RESOURCE[kind]
    if not _may(user, ADD, resource):
        raise Forbidden(f"your role may not add {kind.value}")
    if kind == ImportKind.customers and dedupe == DedupeMode.update and not _may(user, EDIT, resource):
        raise Forbidden("your role may not edit customers (dedupe=update)")


def imports_of(user, limit=20):
    """The newest imports `user` may see: their own (an Admin every user's)."""
    query = sa.select(Import).order_by(Import.created_at.desc()).limit(limit)
    if ADMIN not in role_names(user):
        query = query.where(Import.user_id == user.id)
    return db.session.execute(query).scalars().all()


def get_import(import_id, user):
    """The import `import_id` if it is `user`'s own (or `user` is an Admin), else NotFound."""
    try:
        key = str(uuid.UUID(str(import_id)))
    except ValueError:
        raise NotFound("import not found") from None
    imp = db.session.get(Import, key)
    if imp is None or (imp.user_id != user.id and ADMIN not in role_names(user)):
        raise NotFound("import not found")
    return imp


def table_of(imp):
    """The stored file of `imp` decoded again (the job and the preview read it so)."""
    return read_table(imp.filename, imp.data)


# ---- create, map, preview -------------------------------------------------------------------


def create_import(user, kind, filename, data, dedupe=None, mapping=None, require_mapping=True):
    """Check and store an upload; return the new Import (committed).

    `mapping` ({field: column or header}) defaults to the suggestions; with
    `require_mapping` a mapping that leaves a required field out is a 400 and nothing is
    stored (the API); the screen stores the file first and asks for the mapping next.
    """
    kind, dedupe = parse_kind(kind), parse_dedupe(dedupe)
    check_may_import(user, kind, dedupe)
    table = read_table(filename, data)
    suggested = suggest_mapping(kind, table.headers)
    if mapping is not None or require_mapping:
        chosen = check_mapping(kind, table.headers, suggested if mapping is None else mapping)
    else:
        chosen = suggested
    imp = Import(
        id=new_id(), user_id=user.id, kind=kind, dedupe=dedupe, status=ImportStatus.uploaded,
        filename=(filename or "upload")[-255:], file_format=table.file_format, encoding=table.encoding,
        headers=table.headers, mapping=chosen, total=table.total, data=data,
    )
    db.session.add(imp)
    db.session.commit()
    return imp


def set_mapping(imp, user, mapping, dedupe=None):
    """Change the mapping (and dedupe mode) of an import not started yet; 400 naming a bad field."""
    if imp.status != ImportStatus.uploaded:
        raise ValidationFailed(f"the import is {imp.status}: its mapping can no longer change", field="status")
    dedupe = parse_dedupe(dedupe) if dedupe not in (None, "") else DedupeMode(imp.dedupe)
    check_may_import(user, imp.kind, dedupe)
    imp.mapping = check_mapping(imp.kind, imp.headers, mapping)
    imp.dedupe = dedupe
    db.session.commit()
    return imp


def preview(imp, user, limit=None):
    """The first rows as the job would write them: {"rows": [{row, values, errors: {column: message}, outcome}], ...}.

    Nothing is written: the rows go through the same checks in a transaction that is rolled back.
    """
    limit = limit or current_app.config["IMPORT_PREVIEW_ROWS"]
    check_mapping(imp.kind, imp.headers, imp.mapping)
    table = table_of(imp)
    ctx = Context(imp, user)
    out = []
    try:
        with db.session.no_autoflush:
            rows = list(itertools.islice(table.rows(), limit))
            ctx.prefetch(rows)
            for number, cells in rows:
                result = _write_row(ctx, number, cells, dry_run=True)
                out.append({
                    "row": number,
                    "cells": {h: _text(cells[i]) for i, h in enumerate(imp.headers)},
                    "outcome": result["outcome"].value,
                    "errors": result.get("errors") or {},
                    "reason": result.get("reason"),
                })
    finally:
        db.session.rollback()
    return {"headers": imp.headers, "mapping": imp.mapping, "total": imp.total, "rows": out}


# ---- writing one row ------------------------------------------------------------------------


def _rejected(number, errors):
    column, message = next(iter(errors.items()))
    reason = "; ".join(f"{c}: {m}" for c, m in errors.items())[:REASON_MAX]
    return {"row": number, "outcome": RowOutcome.rejected, "column": column, "reason": reason, "errors": errors}


def _column_of(ctx, field):
    """The file's column that holds API field `field` (a service error names the field), else the field itself."""
    for name, spec in ctx.specs.items():
        if field in (name, spec.attr) and name in ctx.mapping:
            return ctx.imp.headers[ctx.mapping[name]]
    return field or "row"


def _write_row(ctx, number, cells, dry_run=False):
    """Convert one row and write it through the kind's service; return its outcome (a rejection names its column)."""
    values, problems = ctx.values(cells, ctx.imp.headers)
    if problems:
        return _rejected(number, problems)
    try:
        if ctx.kind == ImportKind.customers:
            return _write_customer(ctx, number, values, dry_run)
        return _write_record(ctx, number, values, dry_run)
    except DomainError as exc:
        return _rejected(number, {_column_of(ctx, exc.field): exc.message})


def _write_customer(ctx, number, values, dry_run):
    email = values.get("email")
    if email:
        email = values["email"] = ctx.email(email)
    existing = ctx.live_customer(email) if email else None
    if existing is not None and ctx.dedupe == DedupeMode.create:
        return _rejected(number, {_column_of(ctx, "email"): "a customer with this email already exists"
                                  + (" (an earlier row)" if email in ctx.pending else "")})
    if existing is not None and ctx.dedupe == DedupeMode.skip:
        return {"row": number, "outcome": RowOutcome.skipped, "reason": "a customer with this email exists",
                "record": existing.id if in_scope(existing, ctx.user) or existing in ctx.pending.values() else None}
    if existing is not None:
        if existing not in ctx.pending.values() and not in_scope(existing, ctx.user):
            return _rejected(number, {_column_of(ctx, "email"): "a customer with this email already exists"})
        if ctx.sales_only:
            # Updating keeps the customer's rep: the service judges it as on the edit screen.
            values.pop("assigned_sales_id", None)
        previous = {attr: json_value(getattr(existing, attr)) for attr in values}
        for attr, value in values.items():
            setattr(existing, attr, value)
        # The address stays this customer's own: the batch's look-up stands for the service's.
        prepare_customer(existing, ctx.user, creating=False, email_free=True)
        return {"row": number, "outcome": RowOutcome.updated, "record": existing.id, "previous": previous}
    customer = Customer(id=new_id(), **values)
    prepare_customer(customer, ctx.user, creating=True, email_free=True)
    if not dry_run:
        db.session.add(customer)
    if customer.email:
        ctx.pending[customer.email] = customer
    return {"row": number, "outcome": RowOutcome.created, "record": customer.id}


def _write_record(ctx, number, values, dry_run):
    model = MODEL[ctx.kind]
    record = model(id=new_id(), **values)
    (prepare_meeting if ctx.kind == ImportKind.meetings else prepare_task)(record, ctx.user, creating=True)
    if not dry_run:
        db.session.add(record)
    return {"row": number, "outcome": RowOutcome.created, "record": record.id}


# ---- the job --------------------------------------------------------------------------------


def start(imp, user):
    """Queue the import's job (after the commit); an import already running or left by a killed job is queued again."""
    if imp.status not in (ImportStatus.uploaded, ImportStatus.queued, ImportStatus.running, ImportStatus.failed):
        raise ValidationFailed(f"the import is {imp.status}: it cannot start", field="status")
    check_may_import(user, imp.kind, DedupeMode(imp.dedupe))
    check_mapping(imp.kind, imp.headers, imp.mapping)
    if imp.status in (ImportStatus.uploaded, ImportStatus.failed):
        imp.status, imp.error = ImportStatus.queued, None
        audit.record(db.session, AuditAction.UPDATE, "import", imp.id,
                     {"after": {"status": "queued", "kind": imp.kind.value, "filename": imp.filename, "total": imp.total}})
    db.session.commit()
    dispatch(imp.id)
    return imp


def runner(config=None):
    """How import jobs run here: "rq" or "thread" (IMPORT_RUNNER; empty: rq with REDIS_URL, else thread)."""
    config = config or current_app.config
    return config["IMPORT_RUNNER"] or ("rq" if config.get("REDIS_URL") else "thread")


def dispatch(import_id):
    """Run the import's job: enqueue it on RQ by name, or start it in a thread of this process (the same `run`)."""
    config = current_app.config
    if runner(config) == "rq":
        import redis

        from app.delivery import queue

        try:
            queue(config).enqueue("workers.imports.run_import_job", import_id, job_timeout=config["IMPORT_JOB_TIMEOUT"],
                                  result_ttl=600, failure_ttl=86400)
        except redis.RedisError as exc:
            from app.services.errors import Unavailable

            raise Unavailable(f"the job queue is unavailable ({type(exc).__name__}); start the import again later") from None
        return
    app = current_app._get_current_object()

    def work():
        with app.app_context():
            run(import_id)

    threading.Thread(target=work, name=f"import-{import_id[:8]}", daemon=True).start()


def run(import_id):
    """The import job: write the rows not written yet, one committed batch at a time; return the final status."""
    session = db.session
    imp = session.get(Import, import_id)
    if imp is None or imp.status not in (ImportStatus.queued, ImportStatus.running):
        return imp.status if imp is not None else None
    user = session.get(User, imp.user_id)
    if imp.status == ImportStatus.queued:
        imp.status, imp.started_at = ImportStatus.running, imp.started_at or utcnow()
        session.commit()
    config = current_app.config
    size, pause = max(1, config["IMPORT_BATCH_SIZE"]), config["IMPORT_FAULT_PAUSE_AFTER_BATCH"]
    try:
        table = table_of(imp)
        with acting_as(user):
            position = imp.done
            rows = itertools.islice(table.rows(), position, None)
            while True:
                batch = list(itertools.islice(rows, size))
                imp = _lock(import_id)
                if imp.status != ImportStatus.running:
                    session.rollback()
                    return imp.status
                if imp.cancel_requested:
                    imp.status, imp.finished_at = ImportStatus.cancelled, utcnow()
                    session.commit()
                    return imp.status
                if imp.done != position:
                    # Another run of this job got further (or the counter moved): walk on from there.
                    position = imp.done
                    session.rollback()
                    rows = itertools.islice(table.rows(), position, None)
                    continue
                if not batch:
                    imp.status, imp.finished_at = ImportStatus.done, utcnow()
                    session.commit()
                    return imp.status
                _write_batch(imp, user, batch)
                position = imp.done
                if pause:
                    time.sleep(pause)
    except Exception as exc:
        session.rollback()
        log.exception("import %s failed", import_id)
        failed = session.get(Import, import_id)
        failed.status, failed.error, failed.finished_at = ImportStatus.failed, str(exc)[:REASON_MAX], utcnow()
        session.commit()
        return failed.status


def _lock(import_id):
    """The import's row, read fresh and locked until the transaction ends: one writer per import at a time."""
    return db.session.execute(
        sa.select(Import).where(Import.id == import_id).with_for_update().execution_options(populate_existing=True)
    ).scalar_one()


def _write_batch(imp, user, batch):
    """Write one batch's rows with their outcomes and the progress counter in one transaction, and commit it.

    The rows are flushed together (one INSERT of many rows per table). When the database
    refuses the batch (a rule only it checks, say another user took an e-mail meanwhile),
    the batch is written again one row per transaction, so only that row is rejected.
    No savepoints: releasing one runs the session's after-commit hooks (the outbox drain,
    cache invalidation) before the real commit.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from app.services.errors import from_database

    try:
        with db.session.no_autoflush:
            ctx = Context(imp, user)
            ctx.prefetch(batch)
            results = [_write_row(ctx, number, cells) for number, cells in batch]
        db.session.flush()
        _record(imp, results)
        db.session.commit()
        return
    except SQLAlchemyError:
        db.session.rollback()
    for number, cells in batch:
        imp = _lock(imp.id)
        try:
            with db.session.no_autoflush:
                result = _write_row(Context(imp, user), number, cells)
            db.session.flush()
        except SQLAlchemyError as exc:
            db.session.rollback()
            imp = _lock(imp.id)
            refused = from_database(exc)
            result = _rejected(number, {"row": refused.message if refused else "the database refused the row"})
        _record(imp, [result])
        db.session.commit()


def _record(imp, results):
    """Add the rows' outcomes and advance the import's counters (in the caller's transaction)."""
    counts = {outcome: 0 for outcome in RowOutcome}
    rows = []
    for result in results:
        counts[result["outcome"]] += 1
        rows.append({
            "import_id": imp.id, "row_number": result["row"], "outcome": result["outcome"].value,
            "column": result.get("column"), "reason": result.get("reason"), "record_id": result.get("record"),
            "previous": result.get("previous"),
        })
    db.session.execute(sa.insert(ImportRow), rows)
    imp.done += len(results)
    imp.created += counts[RowOutcome.created]
    imp.updated += counts[RowOutcome.updated]
    imp.skipped += counts[RowOutcome.skipped]
    imp.rejected += counts[RowOutcome.rejected]


def cancel(imp, user):
    """Stop an import: one not running yet at once, a running one after its current batch."""
    if imp.status in (ImportStatus.uploaded, ImportStatus.queued):
        imp.status, imp.finished_at = ImportStatus.cancelled, utcnow()
    elif imp.status == ImportStatus.running:
        imp.cancel_requested = True
    else:
        raise ValidationFailed(f"the import is {imp.status}: nothing to cancel", field="status")
    db.session.commit()
    return imp


def status(imp):
    """The import as /api and the screen's progress bar show it."""
    return {
        "id": imp.id, "kind": imp.kind.value, "status": imp.status.value, "filename": imp.filename,
        "format": imp.file_format, "encoding": imp.encoding, "dedupe": imp.dedupe.value,
        "total": imp.total, "done": imp.done,
        "progress": f"{imp.done}/{imp.total}",
        "counts": {"created": imp.created, "updated": imp.updated, "skipped": imp.skipped, "rejected": imp.rejected},
        "headers": imp.headers, "mapping": imp.mapping, "cancelRequested": bool(imp.cancel_requested),
        "error": imp.error, "createdAt": json_value(imp.created_at), "startedAt": json_value(imp.started_at),
        "finishedAt": json_value(imp.finished_at), "undoneAt": json_value(imp.undone_at),
    }


# ---- report and undo ------------------------------------------------------------------------

REPORT_HEADER = ["row", "outcome", "column", "reason", "recordId"]


def report_rows(imp, chunk=2000):
    """Yield every row outcome of `imp` in row order as [row, outcome, column, reason, recordId]."""
    after = 0
    while True:
        page = db.session.execute(
            sa.select(ImportRow.row_number, ImportRow.outcome, ImportRow.column, ImportRow.reason, ImportRow.record_id)
            .where(ImportRow.import_id == imp.id, ImportRow.row_number > after)
            .order_by(ImportRow.row_number).limit(chunk)
        ).all()
        if not page:
            return
        for row in page:
            yield [row[0], json_value(row[1]), row[2], row[3], row[4]]
        after = page[-1][0]


def _restore_value(attr, value):
    """A previous value as stored (JSON) back to the column's Python value (times are ISO text)."""
    if value is not None and attr.endswith(("_at", "_date")):
        return datetime.fromisoformat(value)
    return value


def undo(imp, user):
    """Undo a finished (or cancelled) import: soft-delete what it created, restore what it updated; audited, committed."""
    if imp.status not in (ImportStatus.done, ImportStatus.cancelled, ImportStatus.failed):
        raise ValidationFailed(f"the import is {imp.status}: only a finished import can be undone", field="status")
    kind = ImportKind(imp.kind)
    model = MODEL[kind]
    size = max(1, current_app.config["IMPORT_BATCH_SIZE"])
    undone = {"deleted": 0, "restored": 0}
    with acting_as(user):
        while True:
            rows = db.session.execute(
                sa.select(ImportRow)
                .where(ImportRow.import_id == imp.id, ImportRow.undone_at.is_(None),
                       ImportRow.outcome.in_([RowOutcome.created, RowOutcome.updated]))
                .order_by(ImportRow.row_number.desc()).limit(size)
            ).scalars().all()
            if not rows:
                break
            records = {r.id: r for r in db.session.execute(
                sa.select(model).where(model.id.in_([row.record_id for row in rows]))).scalars()}
            now = utcnow()
            for row in rows:
                record = records.get(row.record_id)
                if record is not None and row.outcome == RowOutcome.created:
                    _soft_delete(kind, record)
                    undone["deleted"] += 1
                elif record is not None:
                    for attr, value in (row.previous or {}).items():
                        setattr(record, attr, _restore_value(attr, value))
                    undone["restored"] += 1
                row.undone_at = now
            db.session.flush()
            db.session.commit()
        imp = db.session.get(Import, imp.id)
        before = imp.status.value
        imp.status, imp.undone_at = ImportStatus.undone, utcnow()
        audit.record(db.session, AuditAction.UPDATE, "import", imp.id,
                     {"before": {"status": before}, "after": {"status": "undone", **undone}})
        db.session.commit()
    return imp


def _soft_delete(kind, record):
    """The soft end of a record the import created: a customer soft-deleted, a meeting or task cancelled."""
    from app.services.records import soft_delete_customer

    if kind == ImportKind.customers:
        soft_delete_customer(record)
    elif kind == ImportKind.meetings:
        record.status = MeetingStatus.cancelled
    else:
        record.status = TaskStatus.CANCELLED

