"""The phone app in Debian's headless Chromium with phone emulation (360 px), against the
services as real processes: a cadre signs in with the texted code and records a walk
list's doors with the network off, reopens the app offline, and the records go up when the
network returns — each exactly once; a resident orders and sees the order to the door.
Screenshots in ``test-artifacts/app/``."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from doorstep_cli.localstack import KafkaNode, browser
from tests.conftest import Stack
from tests.e2e.client import Community, codes_for, eventually, known, new_phone
from tests.e2e.conftest import Running, front_end, restart, start_services, stop_services
from tests.gateway import GatewayServer

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "app"


@pytest.fixture(scope="module")
def field(services: Running, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The field app as a real process, in front of the session's services."""
    with field_app(services, tmp_path_factory) as url:
        yield url


def field_app(services: Running, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return front_end("field", services, tmp_path_factory)


@pytest.fixture()
def phone() -> Iterator[webdriver.Chrome]:
    """A phone: Chromium emulating a 360-px Android screen, with a fresh profile."""
    chromium, chromedriver = browser()
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--lang=zh-CN"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})
    options.add_experimental_option(
        "mobileEmulation",
        {"deviceMetrics": {"width": 360, "height": 740, "pixelRatio": 2.0, "touch": True}},
    )
    driver = webdriver.Chrome(options=options, service=Service(str(chromedriver)))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: webdriver.Chrome, what: str, check: Any, timeout: float = 30) -> Any:
    def attempt(d: webdriver.Chrome) -> Any:
        try:
            return check(d)
        except WebDriverException:  # the view re-rendered meanwhile
            return False

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(attempt, what)


def shot(driver: webdriver.Chrome, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def click(driver: webdriver.Chrome, css: str) -> None:
    """Find and click in one step, again if the view re-rendered in between."""
    wait_for(driver, css, lambda d: d.find_element(By.CSS_SELECTOR, css).click() or True)


def sign_in(driver: webdriver.Chrome, field: str, gateway: GatewayServer, phone: str) -> None:
    driver.get(field)
    wait_for(driver, "the phone field", lambda d: d.find_element(By.ID, "phone")).send_keys(phone)
    shot(driver, "signin-zh")
    before = len(codes_for(gateway, phone))
    click(driver, "#send")
    code = eventually(
        lambda: (c := codes_for(gateway, phone)) and len(c) > before and c[-1],
        what="the sign-in code texted",
    )
    wait_for(driver, "the code field", lambda d: d.find_element(By.ID, "code").is_displayed())
    driver.find_element(By.ID, "code").send_keys(code)
    click(driver, "#verify")


def offline(driver: webdriver.Chrome, off: bool) -> None:
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": off, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )


def waiting(driver: webdriver.Chrome) -> int:
    return int(driver.find_element(By.ID, "waiting").get_attribute("data-count") or 0)


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

    sign_in(phone, field, gateway, number)
    wait_for(phone, "the order form", lambda d: d.find_element(By.ID, "place"))
    # The access token expires mid-session (15 minutes): the next call refreshes it with
    # the refresh token, silently, and goes on.
    phone.delete_cookie("doorstep_access")
    phone.add_cookie({"name": "doorstep_access", "value": "an.expired.token", "path": "/"})
    click(phone, "button[data-category='medicine']")
    phone.find_element(By.ID, "items").send_keys("降压药 一盒")
    click(phone, "#place")
    card = wait_for(phone, "the order shown", lambda d: d.find_element(By.CSS_SELECTOR, ".order"))
    order_id = card.get_attribute("data-order")
    shot(phone, "resident-order-zh")

    community.offer_for(cadre, order_id)
    assert community.act(cadre, order_id, "accept").status_code == 200
    code = community.order(community.resident(household_id), order_id)["handoff_code"]
    assert code in phone.find_element(By.CSS_SELECTOR, ".order .code").text
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
        states = [e.text for e in phone.find_elements(By.CSS_SELECTOR, ".door .state")]
        assert states == ["已应答 · 已上传"] * 12  # each door says it went up
        shot(phone, "synced-after-kill-zh")
        lists = community.ok("GET", "orders", f"{path}/walk-lists", community.staff)["walk_lists"]
        assert [d["attempts"] for w in lists for d in w["doors"]] == [1] * 12
        total = community.ok("GET", "orders", path, community.staff)["coverage"]["total"]
        assert (total["reached"], total["not_yet"]) == (12, 0)
