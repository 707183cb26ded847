"""Printable contact cards (联系卡), the article's 8,000 cards: per household its card code,
address, the community hotline and the grid worker's number, in Chinese and English, and
a QR code a family member's phone opens. A4 sheets of ten cards with cut marks, or one
card on a card-sized page. Pure: card data in, PDF bytes out (ReportLab, segno for the QR code)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import segno
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

T = TypeVar("T")
CARD_W, CARD_H = 85 * mm, 54 * mm  # a bank card: fits a wallet and a phone case
COLUMNS, ROWS = 2, 5
MARGIN_X = (A4[0] - COLUMNS * CARD_W) / 2
MARGIN_Y = (A4[1] - ROWS * CARD_H) / 2
MARK = 4 * mm  # cut marks outside each corner
QR_SIZE = 26 * mm
CJK = "DoorstepCJK"
# Every text of a card in one TrueType Chinese font, embedded as a subset: a PDF that
# names a font without embedding it (ReportLab's STSong-Light) prints boxes on a printer
# or viewer without Adobe's Asian font pack, and Helvetica has no 汉字 at all. TrueType
# outlines only (ReportLab cannot embed CFF): WenQuanYi Micro Hei (Debian's
# fonts-wqy-microhei, which the images and `make test` install) or Noto Sans SC (the setup
# fetches it into the cache where no system font is found).
FONT_FILES = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),
)
CACHED_FONT = "fonts/NotoSansSC-Regular.ttf"  # under $DOORSTEP_CACHE


class FontMissing(RuntimeError):
    """No Chinese TrueType font to print cards with."""


def font_candidates(explicit: Path | None = None) -> list[Path]:
    cache = os.environ.get("DOORSTEP_CACHE")
    found = [explicit] if explicit else []
    if cache:
        found.append(Path(cache) / CACHED_FONT)
    return [*found, *FONT_FILES]


def use_font(explicit: Path | None = None) -> Path:
    """Register the cards' font (once): the file given, else the first one found."""
    if CJK in pdfmetrics.getRegisteredFontNames():
        return Path(pdfmetrics.getFont(CJK).face.filename)
    path = find_font(explicit)
    pdfmetrics.registerFont(TTFont(CJK, str(path), subfontIndex=0))
    return path


def find_font(explicit: Path | None = None) -> Path:
    for path in font_candidates(explicit):
        if path.is_file():
            return path
        if path == explicit:
            raise FontMissing(f"DOORSTEP_CARD_FONT: no such file {path}")
    raise FontMissing(
        "no Chinese TrueType font for contact cards: install fonts-wqy-microhei (Debian), "
        "run `make setup`, or set DOORSTEP_CARD_FONT to a .ttf/.ttc file; looked at "
        + ", ".join(map(str, font_candidates(explicit)))
    )


def has_glyph(ch: str) -> bool:
    use_font()
    return ord(ch) in pdfmetrics.getFont(CJK).face.charToGlyph


@dataclass(frozen=True)
class Card:
    card_code: str
    address: str
    grid: str
    grid_worker: str
    grid_worker_phone: str
    hotline: str | None
    url: str  # what the QR code opens


def render(cards: Iterable[Card], community: str, single: bool = False) -> bytes:
    use_font()
    out = io.BytesIO()
    pdf = Canvas(out, pagesize=(CARD_W, CARD_H) if single else A4, initialFontName=CJK)
    pdf.setTitle(f"Doorstep contact cards — {community}")
    if single:
        for placed, card in enumerate(cards):
            if placed:
                pdf.showPage()
            draw(pdf, card, community, 0.0, 0.0)
    else:
        on_sheets(pdf, cards, lambda card, x, y: draw(pdf, card, community, x, y))
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def on_sheets(pdf: Canvas, items: Iterable[T], draw_at: Callable[[T, float, float], None]) -> None:
    """Card-sized items on A4 sheets, ten a sheet with cut marks (contact cards, parcel
    labels): each drawn at its slot's lower-left corner."""
    per_page = COLUMNS * ROWS
    for placed, item in enumerate(items):
        if placed and placed % per_page == 0:
            pdf.showPage()
        slot = placed % per_page
        x = MARGIN_X + (slot % COLUMNS) * CARD_W
        y = A4[1] - MARGIN_Y - (slot // COLUMNS + 1) * CARD_H
        cut_marks(pdf, x, y)
        draw_at(item, x, y)


def cut_marks(pdf: Canvas, x: float, y: float) -> None:
    pdf.setLineWidth(0.3)
    for cx in (x, x + CARD_W):
        for cy in (y, y + CARD_H):
            dx = -1 if cx == x else 1
            dy = -1 if cy == y else 1
            pdf.line(cx + dx * 1 * mm, cy, cx + dx * MARK, cy)
            pdf.line(cx, cy + dy * 1 * mm, cx, cy + dy * MARK)


def lines(card: Card, community: str) -> list[str]:
    """The card's texts, top to bottom: title, code, address, then the small print."""
    return [
        f"{community} 社区联系卡 · Contact card",
        card.card_code,
        card.address[:30],
        f"热线 Hotline: {card.hotline or '请问网格员 ask the grid worker'}",
        f"网格员 Grid worker {card.grid}: {card.grid_worker}"[:34],
        f"{card.grid_worker_phone}",
        "报卡号下单 · Call, read out the code",
    ]


def draw(pdf: Canvas, card: Card, community: str, x: float, y: float) -> None:
    pad = 4 * mm
    top = y + CARD_H - pad
    title, code, address, *small = lines(card, community)
    pdf.setFont(CJK, 9)
    pdf.drawString(x + pad, top - 3 * mm, title)
    pdf.setFont(CJK, 20)
    pdf.drawString(x + pad, top - 12 * mm, code)
    pdf.setFont(CJK, 8.5)
    pdf.drawString(x + pad, top - 17.5 * mm, address)
    pdf.setFont(CJK, 8)
    for i, line in enumerate(small):
        pdf.drawString(x + pad, top - (23 + 5 * i) * mm, line)
    qr_code(pdf, card.url, x + CARD_W - QR_SIZE - pad / 2, y + pad)


def qr_code(pdf: Canvas, url: str, x: float, y: float) -> None:
    """The QR code as one filled path, a rectangle per run of dark modules: 1,500 cards in
    seconds (drawing module by module, or letting the encoder try all eight masks, takes a
    minute). Any mask reads the same; a fixed one saves choosing."""
    matrix = segno.make_qr(url, error="m", mask=3, boost_error=False).matrix
    quiet = 2  # modules of white border
    module = QR_SIZE / (len(matrix) + 2 * quiet)
    path = pdf.beginPath()
    for row, modules in enumerate(matrix):
        top = y + QR_SIZE - (row + quiet + 1) * module
        col = 0
        while col < len(modules):
            if not modules[col]:
                col += 1
                continue
            start = col
            while col < len(modules) and modules[col]:
                col += 1
            path.rect(x + (start + quiet) * module, top, (col - start) * module, module)
    pdf.drawPath(path, stroke=0, fill=1)
