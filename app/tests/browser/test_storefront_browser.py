"""End to end in headless Chromium: the real server and a real worker make a comic.

Gunicorn serves the app on a random port and ``morpheus worker`` takes jobs from the same
test database, Redis and queue. The browser submits a novel on the storefront, follows
the status page until the comic is ready, and sees the first page image loaded; then an
operator logs in to the dashboard and sees the job. Set ``MORPHEUS_SCREENSHOT_DIR`` to
keep screenshots of each page.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from api.server_helpers import free_port, settings_env, start_gunicorn, stop, wait_until_live
from morpheus.db import comics, users
from morpheus.settings import Settings
from sqlalchemy.orm import Session

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
NOVEL = (
    "Chapter 1: The Light\n\n"
    "Mara climbed the lighthouse stairs at dusk. The lamp was cold.\n\n"
    '"Is anyone out there?" Mara called into the storm.\n\n'
    "Chapter 2: The Boat\n\n"
    "At dawn a small boat reached the pier. Tom jumped ashore, soaked.\n\n"
    '"We saw your light," Tom said. Mara smiled and put the kettle on.\n'
)


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).exists() and os.access(path, os.X_OK)):
            return f"{path} is not installed"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed"
    return None


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    configured = os.environ.get("MORPHEUS_SCREENSHOT_DIR")
    directory = Path(configured) if configured else tmp_path / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def service(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """Gunicorn and one worker process against the test database and queue; the port."""
    secrets = tmp_path / "no-secrets"
    secrets.mkdir()
    env = settings_env(settings, secrets)
    env["MORPHEUS_WORKER_METRICS_PORT"] = "0"
    env["MORPHEUS_WORKER_CONCURRENCY"] = "1"
    port = free_port()
    web_log = tmp_path / "web.log"
    worker_log = tmp_path / "worker.log"
    web = start_gunicorn(env, port, workers=1, log_path=web_log)
    with worker_log.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "morpheus.cli", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        wait_until_live(port, web, web_log)
        yield str(port)
    finally:
        stop(worker)
        stop(web)
        if os.environ.get("MORPHEUS_TEST_SHOW_LOGS"):
            sys.stderr.write(web_log.read_text() + worker_log.read_text())


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    reason = _missing()
    if reason:
        print(f"browser test skipped: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def test_reader_submits_a_novel_and_reads_the_comic(
    browser: object, service: str, screenshots: Path, db_session: Session
) -> None:
    # ``browser`` comes first: without Chromium the test skips before starting servers.
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser  # type: ignore[assignment]
    shop = f"http://morpheus.localhost:{service}"
    driver.get(shop + "/")  # type: ignore[attr-defined]
    assert "Turn your novel into a comic" in driver.title  # type: ignore[attr-defined]
    driver.save_screenshot(str(screenshots / "storefront-home.png"))  # type: ignore[attr-defined]

    title = f"The Lighthouse {uuid.uuid4().hex[:4]}"
    driver.find_element(By.ID, "title").send_keys(title)  # type: ignore[attr-defined]
    driver.find_element(By.ID, "text").send_keys(NOVEL)  # type: ignore[attr-defined]
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()  # type: ignore[attr-defined]

    wait = WebDriverWait(driver, 120, poll_frequency=0.5)
    wait.until(ec.presence_of_element_located((By.ID, "comic-title")))
    driver.save_screenshot(str(screenshots / "storefront-status.png"))  # type: ignore[attr-defined]
    # The status page refreshes itself until the comic is made.
    read_link = wait.until(ec.element_to_be_clickable((By.ID, "read-link")))
    driver.save_screenshot(str(screenshots / "storefront-ready.png"))  # type: ignore[attr-defined]
    read_link.click()

    image = wait.until(ec.presence_of_element_located((By.ID, "comic-page")))
    wait.until(
        lambda d: d.execute_script(
            "const i = document.getElementById('comic-page'); return i.complete && i.naturalWidth;"
        )
    )
    natural_width = driver.execute_script(  # type: ignore[attr-defined]
        "return document.getElementById('comic-page').naturalWidth;"
    )
    assert natural_width > 0
    assert image.get_attribute("alt").startswith("Page 1 of ")
    driver.save_screenshot(str(screenshots / "storefront-reader.png"))  # type: ignore[attr-defined]

    # The Content-Security-Policy did not block anything on these pages.
    console = driver.get_log("browser")  # type: ignore[attr-defined]
    assert not [e for e in console if "Content Security Policy" in e.get("message", "")]

    # The operator sees the finished job on the dashboard.
    username, password = f"op-{uuid.uuid4().hex[:6]}", "test-only-password-1234"
    users.create_user(db_session, username, password)
    desk = f"http://dashboard.morpheus.localhost:{service}"
    driver.get(desk + "/login")  # type: ignore[attr-defined]
    driver.save_screenshot(str(screenshots / "dashboard-login.png"))  # type: ignore[attr-defined]
    driver.find_element(By.ID, "username").send_keys(username)  # type: ignore[attr-defined]
    driver.find_element(By.ID, "password").send_keys(password)  # type: ignore[attr-defined]
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()  # type: ignore[attr-defined]
    wait.until(ec.presence_of_element_located((By.ID, "jobs-title")))
    page = driver.page_source  # type: ignore[attr-defined]
    assert title in page and "completed" in page
    driver.save_screenshot(str(screenshots / "dashboard-jobs.png"))  # type: ignore[attr-defined]
    driver.find_element(By.LINK_TEXT, title).click()  # type: ignore[attr-defined]
    wait.until(ec.presence_of_element_located((By.ID, "comic-title")))
    assert "Stage timings" in driver.page_source  # type: ignore[attr-defined]
    driver.save_screenshot(str(screenshots / "dashboard-comic.png"))  # type: ignore[attr-defined]


def test_a_double_submit_sends_the_form_once_and_makes_one_comic(
    browser: object, service: str, db_session: Session
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser  # type: ignore[assignment]
    driver.get(f"http://morpheus.localhost:{service}/")  # type: ignore[attr-defined]
    title = f"Twice {uuid.uuid4().hex[:6]}"
    driver.find_element(By.ID, "title").send_keys(title)  # type: ignore[attr-defined]
    driver.find_element(By.ID, "text").send_keys(NOVEL)  # type: ignore[attr-defined]
    # Two submits in a row, as an impatient double click sends them.
    state = driver.execute_script(  # type: ignore[attr-defined]
        "const form = document.querySelector('form[data-submit-once]');"
        "form.requestSubmit(); form.requestSubmit();"
        "const button = form.querySelector('button[type=submit]');"
        "return [button.disabled, button.getAttribute('aria-busy')];"
    )
    assert state == [True, "true"]
    WebDriverWait(driver, 60).until(ec.presence_of_element_located((By.ID, "comic-title")))
    stored = [c for c in comics.list_comics(db_session, limit=500) if c.title == title]
    assert len(stored) == 1
    assert driver.current_url.endswith(f"/comics/{stored[0].id}")  # type: ignore[attr-defined]


def test_a_form_on_another_site_cannot_submit_to_the_storefront(
    browser: object, service: str, db_session: Session
) -> None:
    """A page elsewhere (here a data: URL, whose Origin is "null") that posts a novel to
    the storefront, with a form token copied from a real page, gets the 403 page."""
    from urllib.parse import quote

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser  # type: ignore[assignment]
    shop = f"http://morpheus.localhost:{service}"
    driver.get(shop + "/")  # type: ignore[attr-defined]
    token = driver.find_element(By.NAME, "form_token").get_attribute("value")  # type: ignore[attr-defined]
    title = f"Forged {uuid.uuid4().hex[:6]}"
    attack = (
        f'<form method="post" action="{shop}/comics" enctype="multipart/form-data">'
        f'<input name="title" value="{title}"><input name="text" value="Chapter 1. Once.">'
        f'<input name="form_token" value="{token}"></form>'
        "<script>document.forms[0].submit()</script>"
    )
    driver.get("data:text/html," + quote(attack))  # type: ignore[attr-defined]
    WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "error-title")))
    page = driver.page_source  # type: ignore[attr-defined]
    assert "Not allowed" in page and "another site" in page
    assert [c for c in comics.list_comics(db_session, limit=500) if c.title == title] == []
