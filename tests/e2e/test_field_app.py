"""The phone app in Debian's headless Chromium with phone emulation (360 px), against the
services as real processes: a cadre signs in with the texted code and records a walk
list's doors with the network off, reopens the app offline, and the records go up when the
network returns — each exactly once; a resident orders and sees the order to the door.
Screenshots in ``test-artifacts/app/``."""

from __future__ import annotations

import ipaddress
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import segno
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from selenium import webdriver
from selenium.webdriver.common.by import By

from doorstep_cli.localstack import KafkaNode, free_port
from tests.conftest import Stack
from tests.e2e.client import Community, codes_for, eventually, known, new_phone
from tests.e2e.conftest import (
    Running,
    field_app,
    front_end,
    restart,
    spawn,
    start_services,
    stop_services,
)
from tests.e2e.phone import click, offline, open_phone, shot, sign_in, wait_for, waiting
from tests.gateway import GatewayServer


def test_a_cadre_records_doors_offline_and_each_reaches_the_server_once(
    phone: webdriver.Chrome, field: str, community: Community, gateway: GatewayServer
) -> None:
    community.define()
    rows = [
        f"Datong Garden,12,{1 + i // 10},{101 + i % 10},g1,139{random.randrange(10**8):08d},"
        for i in range(30)
    ]
    community.import_households(rows)
    number = new_phone()
    cadre = community.volunteer("g1", capacity=2, phone=number)
    known(community, number, "volunteer")
    round_ = community.ok(
        "POST", "orders", "/v1/campaigns", community.staff, json={"title": "每日排查"}
    )
    path = f"/v1/campaigns/{round_['campaign_id']}"

    sign_in(phone, field, gateway, number)
    wait_for(phone, "the cadre on duty", lambda d: d.find_element(By.ID, "on-duty"))
    click(phone, "#rounds .take")
    click(phone, "#rounds .open")
    wait_for(phone, "30 doors", lambda d: len(d.find_elements(By.CSS_SELECTOR, ".door")) == 30)
    shot(phone, "walk-list-zh")

    # In the stairwell: no network. Thirty doors recorded, every fifth did not answer.
    offline(phone, True)
    for i, door in enumerate(phone.find_elements(By.CSS_SELECTOR, ".door")):
        button = door.find_element(By.CSS_SELECTOR, ".no-answer" if i % 5 == 4 else ".answered")
        phone.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
        button.click()
    wait_for(phone, "30 records on the phone", lambda d: waiting(d) == 30)
    # The app closed and opened again, still offline: the shell from the service worker,
    # the records from the phone's own storage.
    phone.get(field)
    wait_for(phone, "the app offline", lambda d: d.find_element(By.ID, "outbox").is_displayed())
    wait_for(phone, "30 records still waiting", lambda d: waiting(d) == 30)
    shot(phone, "offline-outbox-zh")
    assert (
        community.ok("GET", "orders", path, community.staff)["coverage"]["total"]["not_yet"] == 30
    )

    # The network is back: "Sync now" (and the online event) send them, each once.
    offline(phone, False)
    click(phone, "#outbox button")
    wait_for(phone, "the outbox empty", lambda d: waiting(d) == 0, timeout=60)
    click(phone, "#outbox button")  # sent again by a nervous cadre: nothing twice
    total = community.ok("GET", "orders", path, community.staff)["coverage"]["total"]
    assert (total["reached"], total["no_answer"], total["not_yet"]) == (24, 6, 0)
    lists = community.ok("GET", "orders", f"{path}/walk-lists", community.staff)["walk_lists"]
    assert [d["attempts"] for w in lists for d in w["doors"]] == [1] * 30
    assert cadre in {w["volunteer_id"] for w in lists}


def test_a_door_refused_in_a_synced_batch_leaves_the_others_recorded(
    phone: webdriver.Chrome, field: str, community: Community, gateway: GatewayServer
) -> None:
    """Offline, a cadre records five doors; the office closes the round; the cadre, still
    offline, records three more. Back online, the server takes the five knocked while the
    round was open and refuses the three after: all of one batch or none, so the app must
    not let the three take the five down with them."""
    community.define()
    rows = [f"Datong Garden,14,1,{101 + i},g1,139{random.randrange(10**8):08d}," for i in range(8)]
    community.import_households(rows)
    number = new_phone()
    community.volunteer("g1", capacity=2, phone=number)
    known(community, number, "volunteer")
    round_ = community.ok(
        "POST", "orders", "/v1/campaigns", community.staff, json={"title": "夜间排查"}
    )
    path = f"/v1/campaigns/{round_['campaign_id']}"
    sign_in(phone, field, gateway, number)
    click(phone, "#rounds .take")
    click(phone, "#rounds .open")
    wait_for(phone, "8 doors", lambda d: len(d.find_elements(By.CSS_SELECTOR, ".door")) == 8)
    offline(phone, True)
    doors = phone.find_elements(By.CSS_SELECTOR, ".door")

    def answered(door: Any) -> None:
        button = door.find_element(By.CSS_SELECTOR, ".answered")
        phone.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
        button.click()

    for door in doors[:5]:
        answered(door)
    wait_for(phone, "5 on the phone", lambda d: waiting(d) == 5)
    community.ok("POST", "orders", f"{path}/close", community.staff, json={"reason": "收队"})
    time.sleep(1)  # the three below are knocked after the close, by any clock
    for door in doors[5:]:
        answered(door)
    wait_for(phone, "8 on the phone", lambda d: waiting(d) == 8)

    offline(phone, False)
    click(phone, "#outbox button")
    wait_for(phone, "the outbox settled", lambda d: waiting(d) == 0, timeout=60)
    total = community.ok("GET", "orders", path, community.staff)["coverage"]["total"]
    assert (total["reached"], total["not_yet"]) == (5, 3)
    wait_for(
        phone,
        "the three refused, said so",
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#outbox .problem")) == 3,
    )


def camera_showing(text: str, path: Path) -> Path:
    """A video for Chromium's fake camera: a QR code of ``text``, black on white, in the
    middle of a 640x480 frame (Y4M, 4:2:0; the browser loops it)."""
    matrix = segno.make_qr(text, error="m").matrix
    width, height, quiet = 640, 480, 4
    scale = 400 // (len(matrix) + 2 * quiet)
    left = (width - (len(matrix) + 2 * quiet) * scale) // 2
    top = (height - (len(matrix) + 2 * quiet) * scale) // 2
    luma = bytearray([235]) * (width * height)
    for r, row in enumerate(matrix):
        for c, dark in enumerate(row):
            if dark:
                for dy in range(scale):
                    at = (top + (r + quiet) * scale + dy) * width + left + (c + quiet) * scale
                    luma[at : at + scale] = bytes([16]) * scale
    chroma = bytes([128]) * (width * height // 4)
    frame = b"FRAME\n" + bytes(luma) + chroma + chroma
    path.write_bytes(b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg\n" + frame * 2)
    return path


def full_width(text: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) for ch in text)


def test_a_cadre_finds_a_door_by_its_contact_card_scanned_or_typed_in_the_stairwell(
    field: str, community: Community, gateway: GatewayServer, tmp_path: Path
) -> None:
    community.define()
    community.import_households(
        [f"Datong Garden,7,1,{101 + i},g1,139{random.randrange(10**8):08d}," for i in range(6)]
    )
    number = new_phone()
    community.volunteer("g1", capacity=2, phone=number)
    known(community, number, "volunteer")
    round_ = community.ok(
        "POST", "orders", "/v1/campaigns", community.staff, json={"title": "扫码排查"}
    )
    path = f"/v1/campaigns/{round_['campaign_id']}/walk-lists"
    [walk] = community.ok("GET", "orders", path, community.staff)["walk_lists"]
    typed, scanned = walk["doors"][2], walk["doors"][4]
    camera = camera_showing(
        f"http://127.0.0.1:8006/card/{scanned['card_code']}", tmp_path / "card.y4m"
    )
    phone = open_phone(
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}",
    )
    try:
        sign_in(phone, field, gateway, number)
        click(phone, "#rounds .take")
        click(phone, "#rounds .open")
        wait_for(phone, "6 doors", lambda d: len(d.find_elements(By.CSS_SELECTOR, ".door")) == 6)
        wait_for(
            phone,
            "the QR decoder fetched while online",
            lambda d: d.execute_script(
                "return performance.getEntriesByType('resource')"
                ".some((e) => e.name.endsWith('zxing_reader.wasm'))"
            ),
        )

        # In the stairwell, the app opened again with no network: the list, the decoder and
        # the app itself come from the phone.
        offline(phone, True)
        phone.get(field)
        click(phone, "#rounds .open")
        box = wait_for(phone, "the card code box", lambda d: d.find_element(By.ID, "card-code"))
        box.send_keys(full_width(typed["card_code"].lower()))  # as a phone keyboard may type it
        click(phone, "#find-card")
        found = wait_for(
            phone, "the typed door", lambda d: d.find_element(By.CSS_SELECTOR, ".door.found")
        )
        assert found.get_attribute("data-household") == typed["household_id"]

        click(phone, "#scan")
        wait_for(
            phone,
            "the scanned door",
            lambda d: (
                d.find_element(By.CSS_SELECTOR, ".door.found").get_attribute("data-household")
                == scanned["household_id"]
            ),
        )
        assert not phone.find_elements(By.ID, "scanner")  # the camera closed by itself
        wait_for(
            phone,
            "the address",
            lambda d: scanned["address"] in d.find_element(By.ID, "found").text,
        )
        shot(phone, "card-found-zh")

        # A card from another community's list is said so, not matched to a door here.
        box = phone.find_element(By.ID, "card-code")
        box.clear()
        box.send_keys("XXXX-XXXX")
        click(phone, "#find-card")
        wait_for(
            phone, "not on the list", lambda d: "XXXXXXXX" in d.find_element(By.ID, "found").text
        )
    finally:
        phone.quit()


def test_a_cadre_delivers_garbage_with_a_photo_and_reports_a_delivery_that_failed(
    phone: webdriver.Chrome,
    field: str,
    community: Community,
    gateway: GatewayServer,
    tmp_path: Path,
) -> None:
    community.define()
    number = new_phone()
    cadre = community.volunteer("g1", capacity=2, phone=number)
    known(community, number, "volunteer")
    orders = {}
    for category in ("garbage", "groceries"):
        home = community.household("g1")["household_id"]
        body = {"household_id": home, "category": category, "items": "两袋"}
        orders[category] = community.ok("POST", "orders", "/v1/orders", community.staff, json=body)[
            "order_id"
        ]
    garbage, groceries = orders["garbage"], orders["groceries"]
    sign_in(phone, field, gateway, number)
    for order in (garbage, groceries):
        click(phone, f".task[data-order='{order}'][data-state='offered'] .accept")
        wait_for(
            phone,
            "taken",
            lambda d, o=order: d.find_element(By.CSS_SELECTOR, f".task[data-order='{o}'] .pick-up"),
        )
    click(phone, f".task[data-order='{garbage}'] .pick-up")
    # Only the garbage can be proven by a photo; the groceries need the household's code.
    assert not phone.find_elements(By.CSS_SELECTOR, f".task[data-order='{groceries}'] .photo")
    picture = tmp_path / "bags-at-the-door.png"
    segno.make_qr("两袋垃圾 7-1-101").save(picture, scale=40)  # any real photo-sized image
    shot(phone, "cadre-tasks-zh")
    field_input = wait_for(
        phone,
        "the photo field",
        lambda d: d.find_element(By.CSS_SELECTOR, f".task[data-order='{garbage}'] .photo"),
    )
    field_input.send_keys(str(picture))
    community.order_status(garbage, "delivered")
    [delivered] = [p for t, p in community.dispatch_events(garbage) if t == "task.delivered"]
    assert delivered["proof"] == "photo"
    photo = community.call(
        "GET", "dispatch", delivered["photo_url"].removeprefix("/dispatch"), community.staff
    )
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert photo.content.startswith(b"\xff\xd8\xff")  # shrunk to a JPEG on the phone

    # The groceries: nobody home. Reported with the reason, from the app.
    click(phone, f".task[data-order='{groceries}'] details.fail summary")
    phone.find_element(
        By.CSS_SELECTOR, f".task[data-order='{groceries}'] select.reason option[value='not_home']"
    ).click()
    click(phone, f".task[data-order='{groceries}'] .report")
    community.order_status(groceries, "failed")
    [failed] = [p for t, p in community.dispatch_events(groceries) if t == "task.failed"]
    assert (failed["reason"], failed["volunteer_id"]) == ("not_home", cadre)


def test_a_cadre_whose_phone_clock_is_wrong_checks_in_and_sees_the_offers_true_time_left(
    phone: webdriver.Chrome, field: str, community: Community, gateway: GatewayServer
) -> None:
    """A phone that lost its date (the battery ran flat) is ten hours behind: the shift it
    asks for still ends eight hours from now, and an offer's time left is the server's."""
    community.define()
    number = new_phone()
    cadre = community.volunteer("g1", check_in=False, phone=number)
    known(community, number, "volunteer")
    phone.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {"source": "{ const real = Date.now; Date.now = () => real() - 10 * 3600e3; }"},
    )
    sign_in(phone, field, gateway, number)
    click(phone, "#check-in")
    wait_for(phone, "the cadre on duty", lambda d: d.find_element(By.ID, "on-duty"))
    me = community.ok(
        "GET", "volunteers", f"/v1/volunteers/{cadre}", community.volunteer_token(cadre)
    )
    until = datetime.fromisoformat(me["shift"]["until"])
    assert timedelta(hours=7, minutes=50) < until - datetime.now(UTC) <= timedelta(hours=8)

    home = community.household("g1")["household_id"]
    body = {"household_id": home, "category": "medicine", "items": "降压药"}
    order = community.ok("POST", "orders", "/v1/orders", community.staff, json=body)["order_id"]
    left = wait_for(
        phone,
        "the offer with its time left",
        lambda d: re.search(
            r"(\d+)s", d.find_element(By.CSS_SELECTOR, f".task[data-order='{order}']").text
        ),
    )
    assert int(left.group(1)) > 0


def test_a_cadre_at_the_gate_takes_a_buildings_parcels_as_one_batch(
    phone: webdriver.Chrome, field: str, community: Community, gateway: GatewayServer
) -> None:
    community.define(sourced_via_gate=True)
    staff = community.staff
    rows = [f"Datong Garden,5,1,{101 + i},g1,139{random.randrange(10**8):08d}," for i in range(3)]
    homes = [h["household_id"] for h in community.import_households(rows)["imported"]]
    number = new_phone()
    community.volunteer("g1", capacity=3, phone=number)
    known(community, number, "volunteer")
    sid = community.supplier()
    ordered = [
        community.ok(
            "POST",
            "orders",
            "/v1/orders",
            staff,
            json={"household_id": h, "category": "groceries", "items": "蔬菜包"},
        )["order_id"]
        for h in homes
    ]
    community.bought_and_at_the_gate(sid, ordered)

    sign_in(phone, field, gateway, number)
    # Read in the step that finds it: a live update may re-render the card meanwhile.
    wait_for(
        phone,
        "the building's batch of three",
        lambda d: (
            (b := d.find_elements(By.CSS_SELECTOR, ".batch"))
            and "3" in (text := b[0].text)
            and "Datong Garden 5" in text
        ),
    )
    shot(phone, "gate-batch-zh")
    click(phone, ".batch .take-all")
    wait_for(
        phone,
        "all three picked up",
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".task[data-state='picked_up']")) == 3,
    )
    assert not phone.find_elements(By.CSS_SELECTOR, ".batch")
    for order_id in ordered:
        community.order_status(order_id, "picked_up")


def test_a_resident_orders_and_sees_the_order_to_the_door(
    phone: webdriver.Chrome, field: str, community: Community, gateway: GatewayServer
) -> None:
    community.define()
    number = new_phone()
    home = community.import_households(
        [f"Datong Garden,3,1,{random.randrange(10**5)},g2,{number},"]
    )
    household_id = home["imported"][0]["household_id"]
    cadre = community.volunteer("g2", capacity=1)
    known(community, number, "resident")
    # As in WeChat's older webview or a LAN page over plain HTTP: no crypto.randomUUID.
    phone.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {"source": "delete Crypto.prototype.randomUUID;"},
    )

    sign_in(phone, field, gateway, number)
    wait_for(phone, "the order form", lambda d: d.find_element(By.ID, "place"))
    # The access token expires mid-session (15 minutes): the next call refreshes it with
    # the refresh token, silently, and goes on.
    phone.delete_cookie("doorstep_access")
    phone.add_cookie({"name": "doorstep_access", "value": "an.expired.token", "path": "/"})
    click(phone, "button[data-category='medicine']")
    phone.find_element(By.ID, "items").send_keys("降压药 一盒")
    # An old hand taps twice (or the network drops the answer and they tap again): one order.
    phone.execute_script("const b = document.getElementById('place'); b.click(); b.click();")
    order_id = wait_for(
        phone,
        "the order shown",
        lambda d: d.find_element(By.CSS_SELECTOR, ".order").get_attribute("data-order"),
    )
    shot(phone, "resident-order-zh")
    mine = community.resident(household_id)
    time.sleep(1)  # a second order, if one was made, is decided by now
    placed = community.ok("GET", "orders", "/v1/orders", mine)["orders"]
    assert [o["order_id"] for o in placed] == [order_id]

    community.offer_for(cadre, order_id)
    assert community.act(cadre, order_id, "accept").status_code == 200
    code = community.order(community.resident(household_id), order_id)["handoff_code"]
    # The accept re-renders the card live; read it after, in one step.
    wait_for(
        phone, "the code", lambda d: code in d.find_element(By.CSS_SELECTOR, ".order .code").text
    )
    assert community.act(cadre, order_id, "deliver", handoff_code=code).status_code == 200
    wait_for(
        phone,
        "delivered on the phone",
        lambda d: (
            d.find_element(By.CSS_SELECTOR, f".order[data-order='{order_id}']").get_attribute(
                "data-status"
            )
            == "delivered"
        ),
        timeout=12,  # live, over the inbox's stream: the app itself looks only every 30 s
    )
    shot(phone, "resident-delivered-zh")
    # "It arrived", and "please call me": the call list has them.
    click(phone, f".order[data-order='{order_id}'] .arrived")
    wait_for(phone, "thanked", lambda d: d.find_element(By.CSS_SELECTOR, ".thanks"))
    click(phone, "#call-me")
    eventually(
        lambda: (
            [
                c["household_id"]
                for c in community.ok("GET", "notify", "/v1/call-list", community.staff)["entries"]
                if c["kind"] == "call_me"
            ]
            == [household_id]
        ),
        what="the resident on the call list",
    )
    # A daughter outside sends fruit: announced from the app, the code to write on it.
    phone.find_element(By.ID, "from-name").send_keys("女儿 王丽")
    phone.find_element(By.ID, "parcel-items").send_keys("水果 一箱")
    click(phone, "#announce")
    code = wait_for(phone, "the parcel's code", lambda d: d.find_element(By.ID, "parcel-code").text)
    shot(phone, "resident-parcel-zh")
    parcels = community.ok("GET", "orders", "/v1/parcels", community.staff)["parcels"]
    assert [(p["code"], p["state"], p["household_id"]) for p in parcels] == [
        (code, "expected", household_id)
    ]
    label = phone.find_element(By.CSS_SELECTOR, "#parcel a").get_attribute("href")
    assert label is not None and label.endswith(f"/v1/parcels/{code}/label.pdf")
    click(phone, "#lang")
    wait_for(phone, "English", lambda d: "Delivered" in d.find_element(By.ID, "orders").text)
    shot(phone, "resident-delivered-en")
    # Signing out ends the session at identity too: the refresh token no longer works.
    refresh = phone.get_cookie("doorstep_refresh")
    assert refresh is not None
    click(phone, "#out")
    wait_for(phone, "signed out", lambda d: d.find_element(By.ID, "phone"))
    with httpx.Client(base_url=field, timeout=10) as http:
        http.cookies.set("doorstep_refresh", refresh["value"])
        assert http.get("/session").status_code == 401


def test_the_app_refuses_bad_calls_with_clear_problems(field: str) -> None:
    with httpx.Client(base_url=field, timeout=10) as http:
        app = {"X-Doorstep-App": "1"}
        assert http.post("/session/code", json={"phone": "13900000000"}).status_code == 403
        assert http.post("/session/code", json={}, headers=app).status_code == 422
        assert http.post("/session/code", content=b"{no", headers=app).status_code == 422
        assert http.get("/session").status_code == 401
        assert http.get("/api/orders/v1/orders").status_code == 401
        unknown = http.get("/api/payroll/v1/x")
        assert unknown.status_code == 404
        assert unknown.headers["content-type"].startswith("application/problem+json")
        worker = http.get("/sw.js")
        assert worker.headers["cache-control"] == "no-cache" and "doorstep-field-" in worker.text


def test_the_app_passes_on_only_the_services_v1_routes(
    field: str, community: Community, gateway: GatewayServer
) -> None:
    """A signed-in phone reaches a service's /v1 routes with its own token, and nothing
    else of the service: not its metrics, not its SMS hooks, however the path is spelt."""
    community.define()
    number = new_phone()
    community.import_households([f"Datong Garden,3,2,{random.randrange(10**5)},g1,{number},"])
    known(community, number, "resident")
    app = {"X-Doorstep-App": "1"}
    with httpx.Client(base_url=field, timeout=10, headers=app) as http:
        assert http.post("/session/code", json={"phone": number}).status_code == 200
        code = eventually(lambda: codes_for(gateway, number), what="the code")[-1]
        assert http.post("/session/verify", json={"phone": number, "code": code}).is_success
        assert http.get("/api/orders/v1/orders").status_code == 200
        # A refusal passed on carries what it means in Chinese, for the app to say.
        order = {"category": "groceries", "items": "大米"}
        key = {"Idempotency-Key": f"k-{random.randrange(10**9)}"}
        assert http.post("/api/orders/v1/orders", json=order, headers=key).is_success
        other = http.post("/api/orders/v1/orders", json={**order, "items": "面"}, headers=key)
        assert other.status_code == 422 and other.json()["words_zh"] == "这次提交和上次的内容不同。"
        for path in (
            "/api/orders/v1/%2e%2e/metrics",
            "/api/notify/v1/%2E%2E/hooks/sms",
            "/api/orders/v1/./../openapi.json",
            "/api/orders/v1/x/%2e%2e/%2e%2e/metrics",
        ):
            refused = http.get(path)
            assert refused.status_code == 404, (path, refused.text[:200])
            assert refused.headers["content-type"].startswith("application/problem+json")


def test_a_refused_sign_in_says_why_in_the_persons_words(
    phone: webdriver.Chrome,
    field: str,
    community: Community,
    gateway: GatewayServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Identity's refusals reach the phone as what they are (a wrong code, too many codes,
    with how many tries are left and when to try again), for the app to say in Chinese;
    the console says them in Chinese too, not in identity's English."""
    community.define()
    number = new_phone()
    community.import_households([f"Datong Garden,3,3,{random.randrange(10**5)},g1,{number},"])
    known(community, number, "resident")
    phone.get(field)
    wait_for(phone, "the phone field", lambda d: d.find_element(By.ID, "phone")).send_keys(number)
    click(phone, "#send")
    code = eventually(lambda: codes_for(gateway, number), what="the code")[-1]
    wrong = "000000" if code != "000000" else "111111"
    wait_for(phone, "the code field", lambda d: d.find_element(By.ID, "code").is_displayed())
    phone.find_element(By.ID, "code").send_keys(wrong)
    click(phone, "#verify")
    wait_for(phone, "why, in Chinese", lambda d: "验证码不对" in d.find_element(By.ID, "main").text)
    assert "还可以试 4 次" in phone.find_element(By.ID, "main").text
    shot(phone, "signin-wrong-code-zh")
    app = {"X-Doorstep-App": "1"}
    with httpx.Client(base_url=field, timeout=10, headers=app) as http:
        assert http.post("/session/code", json={"phone": number}).status_code == 200
        refused = http.post("/session/verify", json={"phone": number, "code": wrong})
        assert refused.status_code == 401, refused.text
        assert refused.json()["reason"] == "code_wrong" and refused.json()["tries_left"] == 4
        for _ in range(4):  # five an hour per phone
            http.post("/session/code", json={"phone": number})
        limited = http.post("/session/code", json={"phone": number})
        assert limited.status_code == 429 and limited.json()["reason"] == "too_many_codes"
        assert int(limited.headers["retry-after"]) > 0
    with (
        front_end("console", community.env, tmp_path_factory) as console,
        httpx.Client(base_url=console, timeout=10) as http,
    ):
        page = http.post("/signin/verify", data={"phone": number, "code": wrong})
        assert "验证码不对" in page.text and "wrong code" not in page.text.lower()
        page = http.post("/signin/code", data={"phone": number})
        assert "太频繁" in page.text and "too many codes" not in page.text.lower()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, as a community's own CA would issue for its LAN address."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "doorstep-field")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "field.crt", directory / "field.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_the_app_serves_https_itself_for_phones_on_the_lan(
    services: Running, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    env = {
        **services.envs["orders"],
        "DOORSTEP_PORT": str(port),
        "DOORSTEP_IDENTITY_URL": services.urls["identity"],
        "DOORSTEP_TLS_CERT_FILE": str(cert),
        "DOORSTEP_TLS_KEY_FILE": str(key),
    }
    process = spawn("field", env, tmp_path / "field.log")
    try:
        with httpx.Client(
            base_url=f"https://127.0.0.1:{port}", verify=str(cert), timeout=5
        ) as http:
            page = eventually(
                lambda: _quietly(http.get, "/"), timeout=60, what="the app over HTTPS"
            )
            assert page.status_code == 200 and "/static/app.js" in page.text
            assert http.get("/sw.js").status_code == 200  # a service worker may register
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=5)  # no plain HTTP beside it
    finally:
        process.kill()
        process.wait()
    alone = {**env, "DOORSTEP_PORT": str(free_port())}
    del alone["DOORSTEP_TLS_KEY_FILE"]
    refused = subprocess.run(
        [sys.executable, "-m", "services.field"],
        env=alone,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "DOORSTEP_TLS_KEY_FILE go together" in refused.stderr


def _quietly(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except httpx.HTTPError:
        return None


@pytest.fixture()
def own(
    stack: Stack, gateway: GatewayServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """Services of this test's own, to kill, on a broker of their own: on the session's,
    they would join the session services' consumer groups and share their partitions."""
    base = tmp_path_factory.mktemp("own-kafka")
    node = KafkaNode(base / "kafka", log_file=base / "kafka.log")
    node.start()
    try:
        running = start_services(
            Stack(node.bootstrap, stack.mongo_url, stack.origin),
            tmp_path_factory.mktemp("own"),
            {"DOORSTEP_GATEWAY_URL": gateway.url},
        )
        try:
            yield running
        finally:
            stop_services(running)
    finally:
        node.stop()


def test_door_records_reach_the_server_once_though_it_is_killed_mid_sync(
    phone: webdriver.Chrome,
    own: Running,
    gateway: GatewayServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with httpx.Client(timeout=120) as http, field_app(own, tmp_path_factory) as app:
        community = Community(own, http, f"k{random.randrange(10**8):08d}")
        community.define()
        rows = [
            f"Datong Garden,7,1,{101 + i},g1,139{random.randrange(10**8):08d}," for i in range(12)
        ]
        community.import_households(rows)
        number = new_phone()
        community.volunteer("g1", capacity=2, phone=number)
        # Services just started: identity's consumers may still be joining their group.
        known(community, number, "volunteer", timeout=120)
        round_ = community.ok(
            "POST", "orders", "/v1/campaigns", community.staff, json={"title": "晚间排查"}
        )
        path = f"/v1/campaigns/{round_['campaign_id']}"
        sign_in(phone, app, gateway, number)
        click(phone, "#rounds .take")
        click(phone, "#rounds .open")
        wait_for(phone, "12 doors", lambda d: len(d.find_elements(By.CSS_SELECTOR, ".door")) == 12)
        offline(phone, True)
        for door in phone.find_elements(By.CSS_SELECTOR, ".door"):
            button = door.find_element(By.CSS_SELECTOR, ".answered")
            phone.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
            button.click()
        wait_for(phone, "12 records on the phone", lambda d: waiting(d) == 12)

        # The network is back; the sync starts and orders is killed (kill -9) under it.
        offline(phone, False)
        click(phone, "#outbox button")
        own.procs["orders"].kill()
        own.procs["orders"].wait()
        click(phone, "#outbox button")  # refused (503): the records stay on the phone
        restart(own, "orders")
        click(phone, "#outbox button")
        wait_for(phone, "the outbox empty", lambda d: waiting(d) == 0, timeout=60)
        wait_for(  # each door says it went up (read in one step: the list may re-render)
            phone,
            "every door marked as gone up",
            lambda d: (
                [e.text for e in d.find_elements(By.CSS_SELECTOR, ".door .state")]
                == ["已应答 · 已上传"] * 12
            ),
        )
        shot(phone, "synced-after-kill-zh")
        lists = community.ok("GET", "orders", f"{path}/walk-lists", community.staff)["walk_lists"]
        assert [d["attempts"] for w in lists for d in w["doors"]] == [1] * 12
        total = community.ok("GET", "orders", path, community.staff)["coverage"]["total"]
        assert (total["reached"], total["not_yet"]) == (12, 0)
