"""The operations console in a real headless Chromium (Debian's, driven by Selenium through
its chromedriver), against the services as real processes: what staff and grid workers do
at the office desk, each test ending with a screenshot in ``test-artifacts/console/``."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import Select, WebDriverWait

from doorstep_cli.localstack import browser
from services.console.session import sign_in_link
from shared.auth import Role
from tests.e2e.client import (
    Community,
    codes_for,
    datong_rows,
    eventually,
    known,
    new_phone,
    token,
)
from tests.e2e.conftest import SIGNING_KEY, Running, front_end
from tests.gateway import GatewayServer

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


@pytest.fixture(scope="module")
def console(services: Running, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The console as a real process, in front of the session's services."""
    with front_end("console", services, tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def chrome(downloads: Path) -> Iterator[webdriver.Chrome]:
    chromium, chromedriver = browser()
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(options=options, service=Service(str(chromedriver)))
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture()
def page(chrome: webdriver.Chrome, request: pytest.FixtureRequest) -> Iterator[webdriver.Chrome]:
    """The browser, signed out at the start of the test, its screen saved at the end."""
    chrome.delete_all_cookies()
    yield chrome
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    chrome.save_screenshot(str(ARTIFACTS / f"{request.node.name}.png"))


def sign_in(
    driver: webdriver.Chrome,
    console: str,
    community: str,
    grid: str | None = None,
    ops: bool = False,
) -> None:
    driver.get(sign_in_link(SIGNING_KEY, console, "Wang Fang", community, grid, ops))
    driver.add_cookie({"name": "lang", "value": "en"})
    driver.get(f"{console}/")
    assert driver.find_element(By.CSS_SELECTOR, "h1").text.startswith(f"Community {community}")


def wait_for(driver: webdriver.Chrome, what: str, check: Any, timeout: float = 30) -> Any:
    def attempt(d: webdriver.Chrome) -> Any:
        try:
            return check(d)
        except WebDriverException:  # replaced by a refresh or navigation meanwhile
            return False

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(attempt, what)


def figure(driver: webdriver.Chrome, grid: str, name: str) -> int:
    """One figure of a grid's card, read in one step (a live refresh may replace it)."""
    text = driver.execute_script(
        "const card = document.querySelector(`[data-grid='${arguments[0]}']`);"
        "const c = card && card.querySelector(`[data-figure='${arguments[1]}']`);"
        "return c ? c.textContent : null;",
        grid,
        name,
    )
    assert text is not None, f"no figure {name} for grid {grid}"
    return int(text)


def button(driver: webdriver.Chrome, row: str, label: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f"{row} button[aria-label^='{label}']")


def household(community: Community, grid: str, flags: str = "") -> dict[str, Any]:
    """A new household of the community, as staff read it (address, phone, card code)."""
    made = community.household(grid, flags=flags)
    found: dict[str, Any] = community.ok(
        "GET", "orders", f"/v1/households/{made['household_id']}", community.staff
    )
    return found


def press(driver: webdriver.Chrome, row: str, label: str) -> str:
    """Press a row's button; what the page it went back to says."""
    return click_through(driver, button(driver, row, label))


def click_through(driver: webdriver.Chrome, pressed: WebElement) -> str:
    pressed.click()
    wait_for(driver, "the page after the click", lambda d: staleness_of(pressed)(d))
    return said(driver)


def follow(driver: webdriver.Chrome, link: str) -> None:
    """Follow a link of the navigation and wait for its page."""
    driver.find_element(By.LINK_TEXT, link).click()
    wait_for(driver, link, lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith(link))


def said(driver: webdriver.Chrome) -> str:
    """What the page said after an action (waiting for the page it went back to)."""
    return str(
        wait_for(
            driver, "the answer", lambda d: (e := d.find_elements(By.ID, "said")) and e[0].text
        )
    )


def test_an_order_placed_through_the_api_appears_on_the_live_board(
    page: webdriver.Chrome, console: str, community: Community
) -> None:
    community.define()
    home = household(community, "g4")
    sign_in(page, console, community.community_id)
    cards = page.find_elements(By.CSS_SELECTOR, "[data-grid]")
    assert len(cards) == 7  # every grid of the community, each with its grid worker
    assert figure(page, "g4", "open") == 0
    wait_for(
        page,
        "the live stream",
        lambda d: d.find_element(By.ID, "live-state").get_attribute("data-live") == "on",
    )
    loaded_at = page.execute_script("return performance.timeOrigin")

    community.ok(
        "POST",
        "orders",
        "/v1/orders",
        community.resident(home["household_id"]),
        json={"category": "groceries", "items": "rice"},
    )
    # Orders' event and dispatch's come apart (two services, two refreshes): the board
    # shows the order open first, then dispatch's word on it (nobody is on duty here).
    wait_for(page, "the order on the board", lambda d: figure(d, "g4", "open") == 1)
    wait_for(
        page,
        "dispatch's word on the order",
        lambda d: figure(d, "g4", "escalated") + figure(d, "g4", "waiting") >= 1,
    )
    # Without a reload: the same document, refreshed in place by the stream.
    assert page.execute_script("return performance.timeOrigin") == loaded_at


def test_a_hotline_order_by_card_code_is_placed_and_shows_its_trail(
    page: webdriver.Chrome, console: str, community: Community
) -> None:
    community.define()
    home = household(community, "g2", flags="elderly_alone;no_smartphone")
    sign_in(page, console, community.community_id)
    follow(page, "Hotline")
    box = page.find_element(By.ID, "q")
    box.send_keys(home["card_code"].lower(), Keys.ENTER)  # read out over the phone: any case
    wait_for(
        page,
        "the household",
        lambda d: home["address_text"] in d.find_element(By.CSS_SELECTOR, ".household").text,
    )
    Select(page.find_element(By.ID, "category-1")).select_by_value("medicine")
    page.find_element(By.ID, "items-1").send_keys("blood pressure tablets")
    page.find_element(By.CSS_SELECTOR, ".order-form button").click()

    wait_for(page, "the order's page", lambda d: d.find_elements(By.ID, "order-status"))
    order_id = page.current_url.rsplit("/", 1)[1].split("?")[0]
    order = community.order(community.staff, order_id)
    assert order["household_id"] == home["household_id"] and order["channel"] == "hotline"
    assert order["placed_by"] == "Wang Fang (link)"  # who, in words, in the trail too
    # The audit trail: the command (by whom), then what orders and dispatch decided.
    steps = [
        r.get_attribute("data-type") for r in page.find_elements(By.CSS_SELECTOR, "#trail tbody tr")
    ]
    assert steps[:3] == [
        "doorstep.order.place.v1",
        "doorstep.order.received.v1",
        "doorstep.order.accepted.v1",
    ]
    assert "Wang Fang (link)" in page.find_element(By.CSS_SELECTOR, "#trail tbody tr").text

    def dispatch_decided(d: webdriver.Chrome) -> bool:
        d.refresh()
        types = [
            r.get_attribute("data-type")
            for r in d.find_elements(By.CSS_SELECTOR, "#trail tbody tr")
        ]
        return "doorstep.order.escalated.v1" in types  # nobody on duty in g2

    wait_for(page, "dispatch's part of the trail", dispatch_decided)


def test_staff_accept_a_held_duplicate_and_tick_the_call_list(
    page: webdriver.Chrome, console: str, community: Community
) -> None:
    community.define()
    home = household(community, "g5", flags="no_smartphone")
    resident = community.resident(home["household_id"])
    body = {"category": "groceries", "items": "eggs"}
    community.ok("POST", "orders", "/v1/orders", resident, json=body)
    second = community.ok("POST", "orders", "/v1/orders", resident, json=body)
    assert second["status"] == "held"
    sign_in(page, console, community.community_id)
    follow(page, "Needs a person")
    row = f"#held tr[data-order='{second['order_id']}']"
    assert "possible duplicate" in page.find_element(By.CSS_SELECTOR, row).text
    assert press(page, row, "Accept") == "Done"
    community.order_status(second["order_id"], "accepted")
    assert not page.find_elements(By.CSS_SELECTOR, row)

    # The household has no smartphone: what it is told goes to the call list.
    def on_call_list(d: webdriver.Chrome) -> list[WebElement]:
        d.refresh()
        return d.find_elements(By.CSS_SELECTOR, "#calls tr[data-call]")

    # One call per household, with everything it was told since the last call.
    def told_both(d: webdriver.Chrome) -> list[WebElement] | None:
        rows = on_call_list(d)
        return (
            rows
            if rows and len(rows[0].find_elements(By.CSS_SELECTOR, "ol.told li")) >= 2
            else None
        )

    calls = wait_for(page, "the call list", told_both)
    assert len(calls) == 1 and calls[0].get_attribute("data-call") == home["household_id"]
    upto = calls[0].get_attribute("data-upto")
    assert home["phone"] in calls[0].text
    assert press(page, f"#calls tr[data-call='{home['household_id']}']", "Called") == "Done"
    after = community.ok(
        "GET", "notify", "/v1/call-list", community.staff, params={"include_done": True}
    )
    entries = {e["id"]: e for e in after["entries"]}
    told = [e for e in after["entries"] if e["created_at"] <= entries[upto]["created_at"]]
    assert told and all(e["done"] for e in told)  # all it was told in that call, done
    left = [h for h in after["households"] if h["household_id"] == home["household_id"]]
    assert all(m["created_at"] > entries[upto]["created_at"] for h in left for m in h["messages"])


def test_staff_send_an_escalated_order_round_again(
    page: webdriver.Chrome, console: str, community: Community
) -> None:
    community.define()
    cadre = community.volunteer("g6", capacity=1)
    home = household(community, "g6")
    placed = community.ok(
        "POST",
        "orders",
        "/v1/orders",
        community.resident(home["household_id"]),
        json={"category": "groceries", "items": "noodles"},
    )
    order_id = placed["order_id"]
    community.offer_for(cadre, order_id)
    assert community.act(cadre, order_id, "decline").status_code == 200
    sign_in(page, console, community.community_id)

    def escalated(d: webdriver.Chrome) -> list[WebElement]:
        d.get(f"{console}/queues")
        return d.find_elements(By.CSS_SELECTOR, f"#escalated tr[data-order='{order_id}']")

    wait_for(page, "the escalation", escalated)
    assert press(page, f"#escalated tr[data-order='{order_id}']", "Offer again") == "Done"
    assert community.offer_for(cadre, order_id)["attempt"] == 2  # the one who let it pass


def test_the_daily_csv_has_the_figures_the_api_gives(
    page: webdriver.Chrome, console: str, community: Community, downloads: Path
) -> None:
    community.define()
    cadre = community.volunteer("g1", capacity=2)
    home = household(community, "g1", flags="no_smartphone")
    placed = community.ok(
        "POST",
        "orders",
        "/v1/orders",
        community.resident(home["household_id"]),
        json={"category": "medicine", "items": "insulin"},
    )
    order_id = placed["order_id"]
    community.offer_for(cadre, order_id)
    for action in ("accept", "pick-up"):
        assert community.act(cadre, order_id, action).status_code == 200
    code = community.order(community.staff, order_id)["handoff_code"]
    assert community.act(cadre, order_id, "deliver", handoff_code=code).status_code == 200
    community.order_status(order_id, "delivered")

    sign_in(page, console, community.community_id)
    follow(page, "Daily report")
    assert page.find_element(By.CSS_SELECTOR, "[data-figure='delivered']").text == "1"
    # Drawn hour by hour for its grid: one placed, one delivered, each in a bar of its hour.
    drawn = page.find_elements(By.CSS_SELECTOR, "figure[data-grid='g1'] rect:not([data-n='0'])")
    assert sorted(r.get_attribute("class") for r in drawn) == ["delivered", "placed"]
    for old in downloads.glob("report-*.csv"):
        old.unlink()
    page.find_element(By.ID, "report-csv").click()
    saved = eventually(lambda: next(iter(downloads.glob("report-*.csv")), None), what="the CSV")
    rows = dict(csv.reader(io.StringIO(saved.read_text())))
    api = community.ok(
        "GET", "orders", f"/v1/communities/{community.community_id}/report", community.staff
    )
    assert int(rows["orders_placed"]) == api["orders_placed"] == 1
    assert int(rows["delivered"]) == api["delivered"] == 1
    assert int(rows["delivered_within_1h"]) == api["delivered_within"]["within_1h"] == 1
    assert int(rows["households_served"]) == api["households_served"] == 1
    assert (
        int(rows["no_smartphone_households_served"]) == api["no_smartphone_households_served"] == 1
    )
    assert int(rows["category:medicine:delivered"]) == 1
    assert float(rows["volunteer_hours"]) >= 0


def test_staff_start_a_door_knock_campaign_and_cannot_close_it_early_without_a_reason(
    page: webdriver.Chrome, console: str, community: Community
) -> None:
    community.define()
    silent = household(community, "g2")
    household(community, "g2", flags="elderly_alone")
    cadre = community.volunteer("g2")
    sign_in(page, console, community.community_id)
    page.get(f"{console}/campaigns")
    page.find_element(By.ID, "title").send_keys("Who needs medicine refills")
    page.find_element(By.ID, "revisit").clear()
    page.find_element(By.ID, "revisit").send_keys("0", Keys.ENTER)
    wait_for(page, "the campaign's page", lambda d: d.find_elements(By.ID, "coverage"))
    cid = page.current_url.rsplit("/", 1)[1].split("?")[0]
    assert page.find_element(By.CSS_SELECTOR, "[data-figure='not_yet']").text == "2"
    assert len(page.find_elements(By.CSS_SELECTOR, "#elderly_alone_no_contact li")) == 1
    # The grid worker gives the building's walk list to the cadre on duty there.
    (walk,) = page.find_elements(By.CSS_SELECTOR, "#walk-lists tr[data-list]")
    Select(walk.find_element(By.TAG_NAME, "select")).select_by_value(cadre)
    assert click_through(page, walk.find_element(By.TAG_NAME, "button")) == "Done"
    lists = community.ok("GET", "orders", f"/v1/campaigns/{cid}/walk-lists", community.staff)
    assert lists["walk_lists"][0]["volunteer_id"] == cadre
    community.ok(
        "POST",
        "orders",
        f"/v1/campaigns/{cid}/visits",
        community.staff,
        json={"doors": [{"household_id": silent["household_id"], "outcome": "no_answer"}]},
    )
    page.refresh()
    row = f"#never_reached li[data-household='{silent['household_id']}']"
    assert page.find_element(By.CSS_SELECTOR, row)
    page.find_element(By.CSS_SELECTOR, "form[action$='/close'] button").click()
    wait_for(page, "the refusal", lambda d: "2 households are not reached" in said(d))
    # In Chinese the refusal says what it means in Chinese, not in the service's English.
    page.add_cookie({"name": "lang", "value": "zh"})
    page.find_element(By.CSS_SELECTOR, "form[action$='/close'] button").click()
    wait_for(page, "the refusal in Chinese", lambda d: "还有住户没联系上" in said(d))
    assert "not reached" not in said(page)
    page.add_cookie({"name": "lang", "value": "en"})
    page.find_element(By.CSS_SELECTOR, f"{row} button").click()
    wait_for(
        page,
        "the hand-over",
        lambda d: "Grid worker 2" in d.find_element(By.CSS_SELECTOR, row).text,
    )
    page.find_element(By.ID, "reason").send_keys("the rest tomorrow", Keys.ENTER)
    wait_for(page, "closed", lambda d: "(closed)" in d.find_element(By.TAG_NAME, "h1").text)
    closed = community.ok("GET", "orders", f"/v1/campaigns/{cid}", community.staff)
    assert closed["close_reason"] == "the rest tomorrow" and closed["not_reached_at_close"] == 2


def test_a_grid_worker_sees_only_their_grid_and_other_staff_nothing_of_this_community(
    page: webdriver.Chrome, console: str, community: Community
) -> None:
    community.define()
    mine = household(community, "g3")
    theirs = household(community, "g5")
    other_grid = community.ok(
        "POST",
        "orders",
        "/v1/orders",
        community.resident(theirs["household_id"]),
        json={"category": "garbage", "items": "two bags"},
    )
    sign_in(page, console, community.community_id, grid="g3")
    # Read in one step: the live board replaces its cards as it refreshes.
    shown = page.execute_script(
        "return [...document.querySelectorAll('[data-grid]')].map(c => c.dataset.grid)"
    )
    assert shown == ["g3"]
    assert not page.find_elements(By.LINK_TEXT, "Daily report")
    page.get(f"{console}/orders/{other_grid['order_id']}")
    assert page.find_element(By.ID, "problem").text == "Not in your grid"
    page.get(f"{console}/report")
    assert page.find_elements(By.ID, "problem")
    page.get(f"{console}/hotline?q={theirs['card_code']}")
    assert "No household found" in page.page_source
    page.get(f"{console}/hotline?q={mine['card_code']}")
    assert mine["address_text"] in page.find_element(By.CSS_SELECTOR, ".household").text

    # Staff of another community: this community's order is not theirs to see.
    elsewhere = f"c{uuid.uuid4().hex[:8]}"
    Community(community.env, community.http, elsewhere).define()
    page.delete_all_cookies()
    sign_in(page, console, elsewhere)
    page.get(f"{console}/orders/{other_grid['order_id']}")
    assert page.find_elements(By.ID, "problem")
    assert "two bags" not in page.page_source


def test_ops_open_any_community_and_staff_cannot(
    page: webdriver.Chrome, console: str, community: Community
) -> None:
    community.define()
    elsewhere = Community(community.env, community.http, f"c{uuid.uuid4().hex[:8]}")
    elsewhere.define()
    sign_in(page, console, community.community_id, ops=True)
    box = page.find_element(By.ID, "c")
    box.clear()
    box.send_keys(elsewhere.community_id, Keys.ENTER)
    wait_for(
        page,
        "the other community's board",
        lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith(
            f"Community {elsewhere.community_id}"
        ),
    )
    assert len(page.find_elements(By.CSS_SELECTOR, "[data-grid]")) == 7
    page.get(f"{console}/community?c=nosuch{uuid.uuid4().hex[:6]}")
    assert said(page) == "No such community"
    assert page.find_element(By.TAG_NAME, "h1").text.startswith(
        f"Community {elsewhere.community_id}"
    )

    page.delete_all_cookies()
    sign_in(page, console, community.community_id)
    assert not page.find_elements(By.ID, "open-community")
    page.get(f"{console}/community?c={elsewhere.community_id}")
    assert page.find_elements(By.ID, "problem")
    page.get(f"{console}/")
    assert page.find_element(By.TAG_NAME, "h1").text.startswith(
        f"Community {community.community_id}"
    )


def test_the_console_works_from_the_keyboard_and_loads_a_full_community_fast(
    page: webdriver.Chrome, console: str, community: Community
) -> None:
    community.define()
    rows = datong_rows()
    assert len(rows) == 1500
    imported = community.import_households(rows)["imported"]
    staff = community.staff

    def place(household: dict[str, Any]) -> None:
        body = {"household_id": household["household_id"], "category": "groceries", "items": "rice"}
        community.ok("POST", "orders", "/v1/orders", staff, json=body)

    with ThreadPoolExecutor(8) as staff_at_phones:  # eight staff taking calls at once
        list(staff_at_phones.map(place, imported[:300]))
    eventually(
        lambda: len(community.ok("GET", "dispatch", "/v1/tasks", staff)["tasks"]) == 300,
        timeout=120,
        what="300 open orders on dispatch's board",
    )
    sign_in(page, console, community.community_id)
    timing = page.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        "return {ttfb: n.responseStart, loaded: n.loadEventEnd};"
    )
    print(
        f"\n[console] board with 1,500 households and 300 open orders: first byte "
        f"{timing['ttfb']:.0f} ms, loaded {timing['loaded']:.0f} ms"
    )
    assert sum(figure(page, f"g{i}", "open") for i in range(1, 8)) == 300

    # Keyboard only: the first Tab reaches the skip link, the next ones every part's link.
    page.get(f"{console}/")
    page.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert page.switch_to.active_element.text == "Skip to content"
    reached = []
    for _ in range(7):
        page.switch_to.active_element.send_keys(Keys.TAB)
        reached.append(page.switch_to.active_element.text)
    assert reached == [
        "Board",
        "Hotline",
        "Needs a person",
        "Door-knock",
        "Gate",
        "Volunteers",
        "Daily report",
    ]
    page.find_element(By.CSS_SELECTOR, "a.skip").send_keys(Keys.ENTER)
    assert page.switch_to.active_element.get_attribute("id") == "main"
    # Every form field has a label a screen reader reads out.
    page.get(f"{console}/hotline")
    for field in page.find_elements(By.CSS_SELECTOR, "input:not([type=hidden]), select, textarea"):
        assert page.find_elements(By.CSS_SELECTOR, f"label[for='{field.get_attribute('id')}']")
    first = community.ok("GET", "orders", f"/v1/households/{imported[0]['household_id']}", staff)
    page.find_element(By.ID, "q").send_keys(first["card_code"], Keys.ENTER)
    wait_for(page, "the household found", lambda d: first["address_text"] in d.page_source)
    # A grid worker's phone: the board fits a narrow screen without sideways scrolling.
    page.set_window_size(390, 844)
    page.get(f"{console}/")
    overflow = page.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.save_screenshot(str(ARTIFACTS / "narrow-screen-board.png"))
    page.set_window_size(1280, 1000)
    assert overflow <= 0
    page.get(f"{console}/hotline")
    # The language switch: the domain words in Chinese.
    page.find_element(By.CSS_SELECTOR, "a.lang").click()
    assert "热线下单" in page.find_element(By.TAG_NAME, "nav").text
    assert (
        httpx.get(f"{console}/", follow_redirects=False).status_code == 303
    )  # signed out: to sign-in


def test_staff_sign_in_with_the_code_texted_to_their_phone_on_a_small_phone_and_out_again(
    page: webdriver.Chrome, console: str, community: Community, gateway: GatewayServer
) -> None:
    community.define()
    phone = new_phone()
    named = f"/v1/communities/{community.community_id}/staff/{phone}"
    community.ok("PUT", "identity", named, token(Role.ops), json={"name": "刘敏"})
    known(community, phone, "staff")
    page.set_window_size(360, 740)
    try:
        page.get(f"{console}/signin")
        page.add_cookie({"name": "lang", "value": "zh"})
        page.get(f"{console}/signin")
        page.find_element(By.ID, "phone").send_keys(f"+86 {phone}", Keys.ENTER)
        wait_for(page, "the code form", lambda d: d.find_elements(By.ID, "code"))
        assert "验证码" in page.find_element(By.TAG_NAME, "main").text
        code = eventually(lambda: codes_for(gateway, phone)[-1:], what="the texted code")[0]
        page.find_element(By.ID, "code").send_keys(code, Keys.ENTER)
        wait_for(page, "the board", lambda d: "看板" in d.find_element(By.TAG_NAME, "h1").text)
        assert "刘敏" in page.find_element(By.CSS_SELECTOR, ".who").text
        assert page.execute_script("return document.documentElement.scrollWidth") <= 360
        page.save_screenshot(str(ARTIFACTS / "signed-in-360px-zh.png"))
        page.find_element(By.CSS_SELECTOR, "form[action='/signout'] button").click()
        wait_for(page, "the sign-in page", lambda d: d.find_elements(By.ID, "phone"))
        page.get(f"{console}/")  # signed out for real: the board asks for a sign-in again
        wait_for(page, "the sign-in page", lambda d: d.find_elements(By.ID, "phone"))
    finally:
        page.set_window_size(1280, 1000)


def test_staff_see_the_photo_a_delivery_was_proven_with(
    page: webdriver.Chrome, console: str, community: Community
) -> None:
    community.define()
    cadre = community.volunteer("g1")
    home = community.household("g1")["household_id"]
    order = community.ok(
        "POST",
        "orders",
        "/v1/orders",
        community.staff,
        json={"household_id": home, "category": "garbage", "items": "两袋垃圾"},
    )["order_id"]
    community.offer_for(cadre, order)
    assert community.act(cadre, order, "accept").status_code == 200
    photo_id = str(uuid.uuid4())
    assert community.put_photo(cadre, order, photo_id).status_code == 201
    assert community.act(cadre, order, "deliver", photo_id=photo_id).status_code == 200
    sign_in(page, console, community.community_id)
    page.get(f"{console}/orders/{order}")
    link = wait_for(
        page, "the photo in the trail", lambda d: d.find_element(By.CSS_SELECTOR, "#trail a.photo")
    )
    assert link.text == "photo"
    page.get(link.get_attribute("href"))
    assert page.execute_script("return document.contentType") == "image/jpeg"
    page.get(f"{console}/photos/{uuid.uuid4()}")  # none such: said, not a 500
    assert page.find_elements(By.ID, "problem")


def test_staff_order_from_a_supplier_and_take_parcels_in_at_the_gate(
    page: webdriver.Chrome, console: str, community: Community
) -> None:
    community.define()
    staff = community.staff
    sid = community.supplier()
    home = household(community, "g1")
    placed = community.ok(
        "POST",
        "orders",
        "/v1/orders",
        staff,
        json={"household_id": home["household_id"], "category": "groceries", "items": "蔬菜包"},
    )
    community.order_status(placed["order_id"], "accepted")
    sign_in(page, console, community.community_id)
    follow(page, "Gate")
    assert press(page, f"#suppliers tr[data-supplier='{sid}']", "Order now (cut-off)") == "Done"
    sent = community.ok("GET", "orders", "/v1/supplier-orders", staff)["supplier_orders"]
    [code] = sent[0]["parcels"]
    assert page.find_element(By.CSS_SELECTOR, "#supplier-orders a[href$='labels.pdf']")
    page.find_element(By.ID, "code").send_keys(code.lower())  # as typed off the label
    assert click_through(page, page.find_element(By.CSS_SELECTOR, "#scan button")) == "Done"
    row = page.find_element(By.CSS_SELECTOR, f"#queue tr[data-parcel='{code}']")
    assert home["address_text"] in row.text


def test_a_sub_district_officer_sees_their_communities_the_troubled_first_and_ops_drill_in(
    page: webdriver.Chrome, console: str, community: Community, downloads: Path
) -> None:
    district = f"城关街道{uuid.uuid4().hex[:4]}"
    calm = community
    calm.define(sub_district=district)
    troubled = Community(community.env, community.http, f"c{uuid.uuid4().hex[:8]}")
    troubled.define(sub_district=district)
    calm.volunteer("g1", work_unit="市生态环境局")
    home = troubled.household("g2")
    placed = troubled.ok(
        "POST",
        "orders",
        "/v1/orders",
        troubled.resident(home["household_id"]),
        json={"category": "groceries", "items": "米和油"},
    )
    officer = token(Role.sub_district, sub_district=district)

    def caught_up() -> bool:
        seen = calm.ok("GET", "district", "/v1/overview", officer)
        rows = {r["community_id"]: r for r in seen["communities"]}
        return (
            rows.get(troubled.community_id, {}).get("open_orders") == 1
            and rows.get(calm.community_id, {}).get("cadres_on_duty") == 1
        )

    eventually(caught_up, timeout=60, what=f"the view to know of {placed['order_id']}")

    # The officer signs in; any community page sends them to theirs.
    link = sign_in_link(SIGNING_KEY, console, "李主任", None, sub_district=district)
    page.set_window_size(360, 740)
    try:
        page.get(link)
        page.add_cookie({"name": "lang", "value": "zh"})
        page.get(f"{console}/queues")
        wait_for(page, "the sub-district page", lambda d: d.current_url.endswith("/district"))
        assert district in page.find_element(By.TAG_NAME, "h1").text
        rows = page.find_elements(By.CSS_SELECTOR, "#communities tbody tr[data-community]")
        assert [r.get_attribute("data-community") for r in rows] == [
            troubled.community_id,
            calm.community_id,
        ]
        assert "trouble" in (rows[0].get_attribute("class") or "")
        assert "有订单但无人在岗" in rows[0].text
        assert not rows[0].find_elements(By.TAG_NAME, "a")  # officers are not its staff
        unit = page.find_element(By.CSS_SELECTOR, "#mobilisation tr[data-unit='市生态环境局']")
        assert unit.find_element(By.CSS_SELECTOR, "[data-figure='cadres']").text == "1"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.save_screenshot(str(ARTIFACTS / "sub-district-360px-zh.png"))
        assert page.execute_script("return document.documentElement.scrollWidth") <= 360
        page.execute_script("document.getElementById('communities-title').scrollIntoView()")
        page.save_screenshot(str(ARTIFACTS / "sub-district-communities-360px-zh.png"))
        page.get(f"{console}/lang/en")
        page.get(f"{console}/district")
        assert "Sub-district" in page.find_element(By.TAG_NAME, "h1").text
        assert "orders but nobody on duty" in page.find_element(By.ID, "communities").text
        page.save_screenshot(str(ARTIFACTS / "sub-district-360px-en.png"))
        for old in downloads.glob("mobilisation-*.csv"):
            old.unlink()
        page.find_element(By.ID, "mobilisation-csv").click()
        saved = eventually(
            lambda: next(iter(downloads.glob("mobilisation-*.csv")), None), what="the CSV"
        )
        table = list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
        assert table[0][0] == "Work unit"
        assert table[1][:3] == ["市生态环境局", "1", "1"]
    finally:
        page.set_window_size(1280, 1000)

    # Ops see the same page for any sub-district, and drill into a community's console.
    page.delete_all_cookies()
    sign_in(page, console, calm.community_id, ops=True)
    page.get(f"{console}/district?s={district}")
    page.find_element(By.CSS_SELECTOR, f"tr[data-community='{troubled.community_id}'] a").click()
    wait_for(
        page,
        "the troubled community's board",
        lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith(
            f"Community {troubled.community_id}"
        ),
    )
    # Staff are not let in.
    page.delete_all_cookies()
    sign_in(page, console, calm.community_id)
    page.get(f"{console}/district")
    assert page.find_elements(By.ID, "problem")
