"""Contact cards for Datong's 1,500 households: the PDF renders (time printed), every card
code and address is on it exactly once, and the QR codes open the right page; a card code
is caught when mistyped; a lost card's code is retired."""

from __future__ import annotations

import io
import re
import time
from collections import Counter

import pypdfium2 as pdfium
import zxingcpp
from pypdf import PdfReader

from tests.e2e.client import Community, datong_rows

CARD_URL = "http://127.0.0.1:8005/card"  # orders' default DOORSTEP_CARD_URL


def test_cards_for_every_household_print_once_each_and_their_qr_codes_open_the_card(
    community: Community,
) -> None:
    community.define()
    imported = community.import_households(datong_rows())["imported"]
    staff = community.staff
    path = f"/v1/communities/{community.community_id}"
    started = time.monotonic()
    response = community.call("GET", "orders", f"{path}/cards.pdf", staff)
    took = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    print(f"\n[cards] 1,500 contact cards: {len(response.content) / 1e6:.1f} MB in {took:.1f} s")

    reader = PdfReader(io.BytesIO(response.content))
    assert len(reader.pages) == 150  # ten to an A4 sheet
    lines = Counter(
        line.strip() for page in reader.pages for line in page.extract_text().splitlines()
    )
    codes = {h["card_code"] for h in imported}
    assert len(codes) == 1500
    assert all(lines[code] == 1 for code in codes), "every card code exactly once"
    everyone = {
        h["household_id"]: h
        for grid in range(1, 8)
        for h in community.ok(
            "GET",
            "orders",
            f"{path}/households",
            staff,
            params={"limit": 500, "grid_id": f"g{grid}"},
        )["households"]
    }
    assert len(everyone) == 1500
    assert all(lines[h["address_text"]] == 1 for h in everyone.values()), "every address once"

    # The QR codes of a sheet open the cards printed on it.
    document = pdfium.PdfDocument(response.content)
    for number in (0, 149):
        image = document[number].render(scale=3).to_pil()
        urls = {code.text for code in zxingcpp.read_barcodes(image)}
        printed = set(re.findall(r"^[A-Z0-9]{6}$", reader.pages[number].extract_text(), re.M))
        assert len(urls) == 10 and urls == {f"{CARD_URL}/{code}" for code in printed}

    # One card, card-sized.
    one = next(iter(everyone.values()))
    single = community.call(
        "GET", "orders", f"{path}/cards.pdf", staff, params={"household_id": one["household_id"]}
    )
    card = PdfReader(io.BytesIO(single.content))
    assert len(card.pages) == 1 and one["card_code"] in card.pages[0].extract_text()
    assert float(card.pages[0].mediabox.width) < 300  # 85 mm, not A4


def test_a_mistyped_card_code_is_caught_and_a_lost_card_is_reissued(community: Community) -> None:
    community.define()
    home = community.household("g2")
    staff = community.staff
    path = f"/v1/communities/{community.community_id}/households"
    code = home["card_code"]
    found = community.ok("GET", "orders", path, staff, params={"card_code": code.lower()})
    assert [h["household_id"] for h in found["households"]] == [home["household_id"]]
    # One character misheard: caught by the check character, not matched to anyone.
    one_off = code[:2] + ("A" if code[2] != "A" else "C") + code[3:]
    refused = community.call("GET", "orders", path, staff, params={"card_code": one_off})
    assert refused.status_code == 422 and "check character" in refused.json()["detail"]

    renewed = community.ok("POST", "orders", f"/v1/households/{home['household_id']}/card", staff)
    assert renewed["card_code"] != code and code in renewed["retired_card_codes"]
    assert (
        community.ok("GET", "orders", path, staff, params={"card_code": code})["households"] == []
    )
    again = community.ok("GET", "orders", path, staff, params={"card_code": renewed["card_code"]})
    assert [h["household_id"] for h in again["households"]] == [home["household_id"]]
