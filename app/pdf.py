"""PDF documents with Japanese text (ReportLab): a title, headings, paragraphs, key-value blocks and tables.

One small builder for every PDF the CRM hands out (reports, evidence packs):

    doc = Document("顧客一覧", subtitle="2026-12-01 09:00 作成")
    doc.heading("条件")
    doc.key_values([("担当", "山田 太郎"), ("業種", "製造")])
    doc.table(["顧客名", "金額"], rows, numeric={1})
    doc.paragraph("備考: ...")
    data = doc.to_bytes()          # or doc.save(path_or_binary_file)

The font: the TrueType file of PDF_FONT_PATH (config.py; Debian's IPA Gothic from
fonts-ipafont-gothic), embedded as a subset so every viewer shows it; when that file is
missing, ReportLab's built-in CID font HeiseiKakuGo-W5, which needs no file (viewers
substitute a Japanese font, and `pdftotext` reads it through poppler-data). Text is
always escaped: a customer name is text, never ReportLab markup. Tables are split into
chunks so a long table lays out page by page in bounded time.
"""

import io
import os
import threading
from datetime import date, datetime
from decimal import Decimal
from xml.sax.saxutils import escape

#: ReportLab's Japanese CID font (Adobe-Japan1), available without any font file.
CID_FONT = "HeiseiKakuGo-W5"
#: The name a TrueType file of PDF_FONT_PATH is registered under.
TTF_FONT = "CRMGothic"
#: Rows per table flowable: a long table is several flowables, laid out one after another.
TABLE_CHUNK = 200

_fonts = {}
_fonts_lock = threading.Lock()


def configured_font_path():
    """PDF_FONT_PATH of the current app (None outside an app context)."""
    from flask import current_app, has_app_context

    return current_app.config.get("PDF_FONT_PATH") if has_app_context() else None


def font_name(path=None):
    """Register and return the Japanese font: the TrueType file `path` when it exists, else the CID font."""
    from reportlab.pdfbase import pdfmetrics

    key = path if path and os.path.isfile(path) else None
    with _fonts_lock:
        if key in _fonts:
            return _fonts[key]
        if key is not None:
            from reportlab.pdfbase.ttfonts import TTFont

            name = f"{TTF_FONT}{len(_fonts)}"
            pdfmetrics.registerFont(TTFont(name, key))
        else:
            from reportlab.pdfbase.cidfonts import UnicodeCIDFont

            name = CID_FONT
            pdfmetrics.registerFont(UnicodeCIDFont(CID_FONT))
        _fonts[key] = name
        return name


def text_of(value):
    """The printed text of one value: dates as ISO days, datetimes to the minute, None as empty."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "value") and not isinstance(value, (str, int, float, Decimal)):
        value = value.value  # an enum
    return str(value)


def yen(value):
    """A yen amount as printed: ¥ and thousands separators, no decimals when whole."""
    if value is None:
        return ""
    value = Decimal(value)
    if value == value.to_integral_value():
        return f"¥{int(value):,}"
    return f"¥{value:,.2f}"


class Document:
    """A PDF being built: flowables appended in order, written by `save` / `to_bytes`."""

    def __init__(self, title, subtitle=None, landscape=False, font_path=None, author=None, font_size=9):
        """Start a document titled `title` (also the PDF's metadata title), A4, portrait unless `landscape`."""
        from reportlab.lib import colors
        from reportlab.lib.pagesizes import A4, landscape as rotate
        from reportlab.lib.styles import ParagraphStyle

        self.title = title
        self.author = author
        self.pagesize = rotate(A4) if landscape else A4
        self.font = font_name(font_path if font_path is not None else configured_font_path())
        self.colors = colors
        base = ParagraphStyle("crm-body", fontName=self.font, fontSize=font_size, leading=font_size * 1.4,
                              wordWrap="CJK")
        self.styles = {
            "body": base,
            "title": ParagraphStyle("crm-title", parent=base, fontSize=16, leading=22, spaceAfter=4),
            "subtitle": ParagraphStyle("crm-subtitle", parent=base, textColor=colors.grey, spaceAfter=8),
            "heading": ParagraphStyle("crm-heading", parent=base, fontSize=12, leading=17, spaceBefore=8, spaceAfter=4),
            "cell": ParagraphStyle("crm-cell", parent=base, fontSize=font_size - 1, leading=(font_size - 1) * 1.3),
            "cell_right": ParagraphStyle("crm-cell-right", parent=base, fontSize=font_size - 1,
                                         leading=(font_size - 1) * 1.3, alignment=2),
            "head": ParagraphStyle("crm-head", parent=base, fontSize=font_size - 1, leading=(font_size - 1) * 1.3,
                                   textColor=colors.white),
        }
        self.flowables = []
        self.paragraph(title, "title")
        if subtitle:
            self.paragraph(subtitle, "subtitle")

    @property
    def width(self):
        """The printable width in points (page less margins)."""
        return self.pagesize[0] - 2 * self.margin

    margin = 36  # half an inch

    def _para(self, text, style):
        from reportlab.platypus import Paragraph

        return Paragraph(escape(text_of(text)).replace("\n", "<br/>"), self.styles[style])

    def paragraph(self, text, style="body"):
        """Append a paragraph of plain text (escaped; newlines kept)."""
        self.flowables.append(self._para(text, style))
        return self

    def heading(self, text):
        """Append a section heading."""
        return self.paragraph(text, "heading")

    def spacer(self, height=6):
        """Append vertical space of `height` points."""
        from reportlab.platypus import Spacer

        self.flowables.append(Spacer(1, height))
        return self

    def page_break(self):
        """Start a new page."""
        from reportlab.platypus import PageBreak

        self.flowables.append(PageBreak())
        return self

    def key_values(self, pairs, key_width=None):
        """Append a two-column block of (label, value) pairs (e.g. a report's parameters, a request's fields)."""
        from reportlab.platypus import Table, TableStyle

        pairs = list(pairs)
        if not pairs:
            return self
        key_width = key_width or self.width * 0.25
        data = [[self._para(k, "cell"), self._para(v, "cell")] for k, v in pairs]
        table = Table(data, colWidths=[key_width, self.width - key_width], hAlign="LEFT")
        table.setStyle(TableStyle([
            ("BACKGROUND", (0, 0), (0, -1), self.colors.HexColor("#f0f0f0")),
            ("GRID", (0, 0), (-1, -1), 0.25, self.colors.grey),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ]))
        self.flowables.append(table)
        self.spacer()
        return self

    def table(self, header, rows, widths=None, numeric=(), empty="(該当なし)"):
        """Append a table: `header` labels, `rows` (any iterable of sequences), header repeated on every page.

        `widths` are relative column weights (default equal); columns whose index is in
        `numeric` are right-aligned. Values go through `text_of` unless already text
        (format amounts with `yen` first). Returns the number of rows written.
        """
        from reportlab.platypus import Table, TableStyle

        ncols = len(header)
        weights = list(widths or [1] * ncols)
        total = float(sum(weights))
        col_widths = [self.width * w / total for w in weights]
        head = [self._para(h, "head") for h in header]
        style = TableStyle([
            ("BACKGROUND", (0, 0), (-1, 0), self.colors.HexColor("#34495e")),
            ("GRID", (0, 0), (-1, -1), 0.25, self.colors.grey),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("ROWBACKGROUNDS", (0, 1), (-1, -1), [self.colors.white, self.colors.HexColor("#f7f7f7")]),
        ])
        count, chunk = 0, []

        def flush():
            table = Table([head] + chunk, colWidths=col_widths, repeatRows=1, hAlign="LEFT")
            table.setStyle(style)
            self.flowables.append(table)

        for row in rows:
            chunk.append([self._para(v, "cell_right" if i in numeric else "cell") for i, v in enumerate(row)])
            count += 1
            if len(chunk) >= TABLE_CHUNK:
                flush()
                chunk = []
        if chunk or not count:
            if not count:
                chunk = [[self._para(empty, "cell")] + [""] * (ncols - 1)]
            flush()
        self.spacer()
        return count

    def _on_page(self, canvas, doc):
        """Every page's footer: the title and the page number."""
        canvas.saveState()
        canvas.setFont(self.font, 7)
        canvas.setFillColor(self.colors.grey)
        canvas.drawString(self.margin, self.margin / 2, self.title[:80])
        canvas.drawRightString(self.pagesize[0] - self.margin, self.margin / 2, f"{doc.page}")
        canvas.restoreState()

    def save(self, target):
        """Write the PDF to `target`: a path or a binary file object."""
        from reportlab.platypus import SimpleDocTemplate

        doc = SimpleDocTemplate(
            target,
            pagesize=self.pagesize,
            leftMargin=self.margin,
            rightMargin=self.margin,
            topMargin=self.margin,
            bottomMargin=self.margin,
            title=self.title,
            author=self.author or "",
            creator="Sales CRM",
        )
        doc.build(list(self.flowables), onFirstPage=self._on_page, onLaterPages=self._on_page)

    def to_bytes(self):
        """The PDF as bytes."""
        out = io.BytesIO()
        self.save(out)
        return out.getvalue()
