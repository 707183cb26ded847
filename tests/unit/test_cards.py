"""Contact cards as printed: every text in one embedded Chinese font, nothing missing."""

from __future__ import annotations

import io

from pypdf import PdfReader

from services.orders import cards

CARD = cards.Card(
    card_code="K7Q2M",
    address="民主路小区 8-2-301",
    grid="g3",
    grid_worker="王芳",
    grid_worker_phone="13800000003",
    hotline="0371-6000 1234",
    url="https://doorstep.example/c/K7Q2M",
)


def fonts_of(pdf: bytes) -> list[dict]:  # type: ignore[type-arg]
    found = []
    for page in PdfReader(io.BytesIO(pdf)).pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            descendants = font.get("/DescendantFonts")
            found.append(descendants[0].get_object() if descendants else font)
    return found


def test_a_card_prints_chinese_in_one_embedded_font_with_every_glyph() -> None:
    pdf = cards.render([CARD], "民主路", single=True)
    fonts = fonts_of(pdf)
    assert fonts, "no font on the card"
    for font in fonts:
        descriptor = font["/FontDescriptor"].get_object()
        assert any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3")), font
    text = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    for said in ("民主路小区 8-2-301", "热线", "0371-6000 1234", "王芳", "K7Q2M"):
        assert said in text
    missing = [ch for line in cards.lines(CARD, "民主路") for ch in line if not cards.has_glyph(ch)]
    assert missing == []
