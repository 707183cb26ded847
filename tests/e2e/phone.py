"""The phone as the field app's tests use it: Debian's Chromium emulating a 360-px Android
screen with a Chinese browser, the field app as a real process in front of the services,
and the steps a person takes (sign in with the texted code, press, go offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from doorstep_cli.localstack import browser
from tests.e2e.client import codes_for, eventually
from tests.gateway import GatewayServer

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "app"


def open_phone(*flags: str) -> webdriver.Chrome:
    chromium, chromedriver = browser()
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--lang=zh-CN"):
        options.add_argument(arg)
    for arg in flags:
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})
    options.add_experimental_option(
        "mobileEmulation",
        {"deviceMetrics": {"width": 360, "height": 740, "pixelRatio": 2.0, "touch": True}},
    )
    return webdriver.Chrome(options=options, service=Service(str(chromedriver)))


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

    def press(d: webdriver.Chrome) -> bool:
        button = d.find_element(By.CSS_SELECTOR, css)
        d.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
        button.click()
        return True

    wait_for(driver, css, press)


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
