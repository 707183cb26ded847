"""Parcel labels for the gate: what the supplier (or a relative) writes on or sticks to each
household's parcel — the parcel's code large and as a QR code, the building-unit-room,
the last four digits of the household's phone, and a mark for medicine — so the gate reads
where it goes without opening it. A4 sheets of ten with cut marks, the contact cards'
geometry and Chinese font. Pure: labels in, PDF bytes out."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from services.orders.cards import CARD_H, CARD_W, CJK, QR_SIZE, on_sheets, qr_code, use_font


@dataclass(frozen=True)
class Label:
    code: str
    address: str
    phone_last4: str
    category: str
    items: str
    order_id: str


WHAT = {"medicine": "药品 MEDICINE", "groceries": "生活物资 Groceries"}


def render(labels: Iterable[Label], community: str) -> bytes:
    use_font()
    out = io.BytesIO()
    pdf = Canvas(out, pagesize=A4, initialFontName=CJK)
    pdf.setTitle(f"Doorstep parcel labels — {community}")
    on_sheets(pdf, labels, lambda label, x, y: draw(pdf, label, community, x, y))
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def draw(pdf: Canvas, label: Label, community: str, x: float, y: float) -> None:
    pad = 4 * mm
    top = y + CARD_H - pad
    pdf.setFont(CJK, 8)
    pdf.drawString(x + pad, top - 3 * mm, f"{community} 社区 · 大门收货 Gate")
    pdf.setFont(CJK, 18)
    pdf.drawString(x + pad, top - 11 * mm, label.code)
    pdf.setFont(CJK, 11)
    pdf.drawString(x + pad, top - 18 * mm, label.address[-22:])
    pdf.drawString(x + pad, top - 24 * mm, f"尾号 Phone ····{label.phone_last4}")
    pdf.setFont(CJK, 10 if label.category == "medicine" else 8)
    pdf.drawString(x + pad, top - 30 * mm, WHAT.get(label.category, label.category))
    pdf.setFont(CJK, 7)
    pdf.drawString(x + pad, top - 35 * mm, label.items[:24])
    pdf.drawString(x + pad, top - 40 * mm, label.order_id)
    if label.category == "medicine":  # seen first at the gate
        pdf.rect(x + 1.5 * mm, y + 1.5 * mm, CARD_W - 3 * mm, CARD_H - 3 * mm, stroke=1, fill=0)
    qr_code(pdf, label.code, x + CARD_W - QR_SIZE - pad / 2, y + pad)
