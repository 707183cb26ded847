"""The phone app's figures, printed (``make app-figures``) and kept in
``test-artifacts/app/figures.json``: the app shell's transfer size, first and repeat load on
a slow-3G link, order and offer → the cadre's screen. Not asserted as timings: what these
tests assert is behaviour — the app works over the slow link, the offer reaches the screen
by itself, and an accessibility audit (axe-core in the same Chromium) finds no serious or
critical violation on any screen, in either language."""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from doorstep_cli.localstack import axe_core
from tests.e2e.client import Community, known, new_phone
from tests.e2e.conftest import OFFER_TIMEOUT
from tests.e2e.phone import ARTIFACTS, click, open_phone, shot, sign_in, wait_for
from tests.faults import TcpProxy
from tests.gateway import GatewayServer

# Chrome DevTools' "Slow 3G": 2 s round trip, 400 kbit/s each way.
SLOW_3G = {"delay": 1.0, "rate": 50_000}
SHELL = (
    "/",
    "/static/app.js",
    "/static/app.css",
    "/static/icon.svg",
    "/manifest.webmanifest",
    "/sw.js",
)
DECODER = (
    "/static/vendor/zxing-wasm-3.1.8/reader.js",
    "/static/vendor/zxing-wasm-3.1.8/zxing_reader.wasm",
)
FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "figures.json").write_text(json.dumps(FIGURES, indent=2, ensure_ascii=False))
    print("\nphone app figures:")
    for name, value in FIGURES.items():
        print(f"  {name}: {value}")


def downloaded(url: str) -> int:
    """Bytes on the wire for one file, as a phone asks for it (gzip accepted)."""
    with httpx.Client() as client:
        response = client.get(url, headers={"Accept-Encoding": "gzip"})
        response.raise_for_status()
        return response.num_bytes_downloaded


def test_the_app_loads_over_slow_3g_and_says_what_it_weighs(field: str) -> None:
    FIGURES["shell bytes (gzip)"] = {path: downloaded(field + path) for path in SHELL}
    FIGURES["shell total bytes (gzip)"] = sum(FIGURES["shell bytes (gzip)"].values())
    FIGURES["QR decoder bytes (gzip, fetched when a walk list opens)"] = sum(
        downloaded(field + path) for path in DECODER
    )
    port = urlsplit(field).port
    assert port is not None
    phone = open_phone()
    try:
        with TcpProxy("127.0.0.1", port, **SLOW_3G) as slow:
            url = f"http://127.0.0.1:{slow.port}/"
            started = time.monotonic()
            phone.get(url)
            wait_for(phone, "the sign-in form", lambda d: d.find_element(By.ID, "phone"), 120)
            FIGURES["first load on slow 3G, to the sign-in form (s)"] = round(
                time.monotonic() - started, 1
            )
            FIGURES["first load transferred bytes"] = phone.execute_script(
                "return performance.getEntriesByType('navigation')[0].transferSize"
                " + performance.getEntriesByType('resource')"
                ".reduce((sum, e) => sum + e.transferSize, 0)"
            )
            phone.set_script_timeout(120)
            phone.execute_async_script(  # the shell kept by the service worker
                "navigator.serviceWorker.ready.then(() => arguments[0](true))"
            )
            started = time.monotonic()
            phone.get(url)
            wait_for(phone, "the sign-in form", lambda d: d.find_element(By.ID, "phone"), 120)
            FIGURES["repeat load on slow 3G, to the sign-in form (s)"] = round(
                time.monotonic() - started, 1
            )
    finally:
        phone.quit()


def test_an_offer_reaches_the_cadres_screen_by_itself(
    phone: webdriver.Chrome, field: str, community: Community, gateway: GatewayServer
) -> None:
    community.define()
    number = new_phone()
    cadre = community.volunteer("g1", capacity=5, phone=number)
    known(community, number, "volunteer")
    sign_in(phone, field, gateway, number)
    wait_for(phone, "the cadre on duty", lambda d: d.find_element(By.ID, "on-duty"))
    placed_to_screen, offer_to_screen = [], []
    for _ in range(5):
        home = community.household("g1")["household_id"]
        placed = time.time()
        order = community.ok(
            "POST",
            "orders",
            "/v1/orders",
            community.staff,
            json={"household_id": home, "category": "groceries", "items": "大米 5 斤"},
        )
        css = f".task[data-order='{order['order_id']}'][data-state='offered']"
        wait_for(
            phone,
            "the offer on screen",
            lambda d, css=css: d.find_element(By.CSS_SELECTOR, css),
            60,
        )
        seen = time.time()
        offer = community.offer_for(cadre, order["order_id"])
        offered = datetime.fromisoformat(offer["offer_expires_at"]).timestamp() - OFFER_TIMEOUT
        placed_to_screen.append(seen - placed)
        offer_to_screen.append(seen - offered)
        click(phone, f".task[data-order='{order['order_id']}'] .accept")
    FIGURES["order placed → offer on the cadre's screen, median / max (s)"] = (
        round(statistics.median(placed_to_screen), 2),
        round(max(placed_to_screen), 2),
    )
    FIGURES["offer made → on the cadre's screen, median / max (s)"] = (
        round(statistics.median(offer_to_screen), 2),
        round(max(offer_to_screen), 2),
    )


def audit(phone: webdriver.Chrome, screen: str) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on what the phone shows now."""
    if not phone.execute_script("return Boolean(window.axe)"):
        phone.execute_script(axe_core().read_text())
    phone.set_script_timeout(60)
    found: list[dict[str, Any]] = phone.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then((r) => done(r.violations.map("
        "(v) => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' '))}))))"
    )
    shot(phone, f"audit-{screen}")
    lesser = FIGURES.setdefault("accessibility: minor or moderate findings", {})
    for v in found:
        if v["impact"] not in ("serious", "critical"):
            lesser.setdefault(v["id"], []).append(screen)
    return [dict(v, screen=screen) for v in found if v["impact"] in ("serious", "critical")]


def test_every_screen_passes_an_accessibility_audit(
    field: str, community: Community, gateway: GatewayServer
) -> None:
    community.define()
    resident_phone, cadre_phone = new_phone(), new_phone()
    community.import_households(
        [f"Datong Garden,9,1,{101 + i},g1,139{random.randrange(10**8):08d}," for i in range(3)]
        + [f"Datong Garden,9,2,101,g1,{resident_phone},"]
    )
    community.volunteer("g1", capacity=2, phone=cadre_phone)
    known(community, resident_phone, "resident")
    known(community, cadre_phone, "volunteer")
    community.ok("POST", "orders", "/v1/campaigns", community.staff, json={"title": "排查"})
    violations = []
    for lang in ("zh", "en"):
        for number in (resident_phone, cadre_phone):
            phone = open_phone()
            try:
                phone.get(field)
                phone.execute_script(f"localStorage.setItem('lang', '{lang}')")
                phone.get(field)
                wait_for(phone, "the sign-in form", lambda d: d.find_element(By.ID, "phone"))
                violations += audit(phone, f"sign-in-{lang}")
                sign_in(phone, field, gateway, number)
                if number == resident_phone:
                    wait_for(phone, "the order form", lambda d: d.find_element(By.ID, "place"))
                    violations += audit(phone, f"resident-{lang}")
                else:
                    wait_for(phone, "on duty", lambda d: d.find_element(By.ID, "on-duty"))
                    violations += audit(phone, f"cadre-{lang}")
                    wait_for(
                        phone,
                        "the rounds",
                        lambda d: d.find_elements(By.CSS_SELECTOR, "#rounds .walk"),
                    )
                    if not phone.find_elements(By.CSS_SELECTOR, "#rounds .open"):
                        click(phone, "#rounds .take")  # taken already in the other language
                    click(phone, "#rounds .open")
                    wait_for(phone, "the doors", lambda d: d.find_element(By.ID, "card-code"))
                    violations += audit(phone, f"doors-{lang}")
                click(phone, "#big")  # large text for elderly users
                violations += audit(phone, f"large-text-{lang}-{number == cadre_phone}")
            finally:
                phone.quit()
    FIGURES["accessibility (axe-core 4.11): serious or critical violations"] = len(violations)
    assert violations == []
