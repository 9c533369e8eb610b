"""The operator console in a real browser (Debian's chromium + chromedriver, selenium)
against the running pipeline: broker, Triton, PostgreSQL, the five services, the console.

Screenshots are kept under the test's tmp dir (printed); with DEFECTFLOW_UPDATE_SCREENSHOT=1
the lines overview is also copied to docs/console.png.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from defectflow.v1 import query_pb2, query_pb2_grpc

from services.localstack.process import free_port, port_open

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
READER = "mes-console-token-0123456789"
REVIEWER = "anna-console-token-0123456789"
TOKENS = f"mes:read:{READER},anna:reviewer:{REVIEWER}"
ROOT = Path(__file__).resolve().parents[2]


def browser(home: Path) -> webdriver.Chrome:
    """Headless Chromium that writes nothing outside `home` and looks nothing up."""
    for d in ("config", "cache", "profile"):
        (home / d).mkdir(parents=True, exist_ok=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # as root
        "--disable-dev-shm-usage",
        f"--user-data-dir={home / 'profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--window-size=1280,800",
        "--no-first-run",
        "--disable-background-networking",
    ):
        opts.add_argument(arg)
    env = dict(
        os.environ,
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_CACHE_HOME=str(home / "cache"),
    )
    # an explicit driver path: selenium's driver manager (which goes to the network) never runs
    service = Service(executable_path=str(CHROMEDRIVER), env=env)
    return webdriver.Chrome(service=service, options=opts)


def wait(driver, predicate, timeout_s: float, what: str):
    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.3).until(lambda d: predicate())
    except Exception as exc:
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}") from exc


def text_of(driver, element_id: str, timeout_s: float = 20) -> str:
    """The text of an element once the page that has it has loaded: a click that submits a
    form returns before the next page is there (on a slow machine, well before)."""
    found = wait(
        driver,
        lambda: driver.find_elements(By.ID, element_id),
        timeout_s,
        f"#{element_id} on {driver.current_url}",
    )
    return found[0].text


@pytest.fixture()
def console_stack(stack):
    """The pipeline with a token-protected store on its own database, and the console."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (see .ci/setup)")
    stack.stop_services()
    base = stack.postgres.url.rsplit("/", 1)[0]
    admin = sa.create_engine(stack.postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("drop database if exists console_e2e with (force)"))
        conn.execute(sa.text("create database console_e2e"))
    admin.dispose()
    stack.start_pipeline({"store": {"tokens": TOKENS, "database_url": f"{base}/console_e2e"}})
    port = free_port()
    console = stack.start_service(
        "console",
        {"query_target": f"127.0.0.1:{stack.query_port}", "port": str(port), "audit_sample": "0.2"},
    )
    console.wait_ready(lambda: port_open(port), 60)
    yield f"http://127.0.0.1:{port}"
    stack.stop_services()


def test_console_in_a_real_browser(console_stack, stack, tmp_path):
    url = console_stack
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nconsole screenshots in {shots}")

    # without a token: refused (scripts get 401, browsers go to the sign-in page)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/export.csv?verdict=any", timeout=10)
    assert refused.value.code == 401

    driver = browser(tmp_path / "chromium-home")
    stub = query_pb2_grpc.InspectionQueryStub(
        grpc.insecure_channel(f"127.0.0.1:{stack.query_port}")
    )
    auth = [("authorization", f"Bearer {READER}")]
    try:
        driver.get(url + "/gallery")
        assert "/login" in driver.current_url
        driver.save_screenshot(str(shots / "0-sign-in.png"))
        driver.find_element(By.ID, "token").send_keys("not-a-valid-token-00000")
        driver.find_element(By.ID, "sign-in").click()
        assert "refused" in text_of(driver, "login-error")
        driver.find_element(By.ID, "token").send_keys(REVIEWER + Keys.ENTER)  # keyboard only
        wait(driver, lambda: driver.current_url.endswith("/gallery"), 20, "sign-in")
        assert "anna" in text_of(driver, "who")

        # lines overview: counts rise live while the cameras run
        driver.get(url + "/")
        total = driver.find_element(By.ID, "total-count")
        wait(driver, lambda: "live" in driver.find_element(By.ID, "live-state").text, 20, "SSE")
        before = int(total.text)
        ingest = stack.start_service(
            "ingest",
            {"lines": "2", "cameras_per_line": "2", "fps": "2", "frames": "40", "seed": "11"},
        )
        first = wait(driver, lambda: int(total.text) > before and int(total.text), 180, "counts")
        wait(driver, lambda: int(total.text) > first, 120, "counts to rise again")
        rows = driver.find_elements(By.CSS_SELECTOR, "#board tbody tr[data-line]")
        assert {r.get_attribute("data-line") for r in rows} == {"line-1", "line-2"}
        ingest.proc.wait(timeout=240)
        assert ingest.proc.returncode == 0, f"ingest failed, see {ingest.log_path}"

        def stored_ng() -> int:
            resp = stub.ListInspections(
                query_pb2.ListInspectionsRequest(
                    filter=query_pb2.InspectionFilter(lines=["line-1"], verdicts=[2])
                ),
                metadata=auth,
                timeout=10,
            )
            return len(resp.records)

        wait(driver, lambda: stored_ng() > 0 and int(total.text) >= 100, 240, "NG on line-1")
        time.sleep(1.5)  # the board's next event carries the thumbnails of the last frames
        driver.save_screenshot(str(shots / "1-lines.png"))

        # gallery: filter by line with the keyboard, every card is an NG of that line
        driver.get(url + "/gallery")
        box = driver.find_element(By.ID, "f-line")
        box.send_keys("line-1" + Keys.ENTER)
        wait(driver, lambda: "line=line-1" in driver.current_url, 20, "the filtered gallery")
        cards = wait(
            driver,
            lambda: driver.find_elements(By.CSS_SELECTOR, "#gallery .card"),
            20,
            "NG cards for line-1",
        )
        assert cards, "no NG card for line-1"
        metas = [c.find_element(By.CSS_SELECTOR, ".meta").text for c in cards]
        assert all(m.startswith("NG") and "line-1 /" in m for m in metas), metas
        wait(
            driver,
            lambda: driver.execute_script(
                "return [...document.querySelectorAll('#gallery img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            ),
            30,
            "overlay thumbnails",
        )
        driver.save_screenshot(str(shots / "2-gallery.png"))
        unlabelled = driver.execute_script(
            "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]"
            ".filter(c => !c.labels.length && !c.getAttribute('aria-label')).map(c => c.name)"
        )
        assert unlabelled == []

        # open an NG (keyboard: focus the card link, Enter), toggle the overlay
        link = cards[0].find_element(By.CSS_SELECTOR, "a.card-link")
        frame_id = link.get_attribute("href").rsplit("/", 1)[1]
        link.send_keys(Keys.ENTER)
        wait(driver, lambda: "/inspection/" in driver.current_url, 20, "the detail page")
        assert text_of(driver, "machine-verdict") == "NG"
        assert driver.find_elements(By.CSS_SELECTOR, "#defects tbody tr td")[0].text
        assert "anomaly" in driver.find_element(By.ID, "models").text
        img = driver.find_element(By.ID, "frame-image")
        assert img.get_attribute("src").endswith("/overlay")
        toggle = driver.find_element(By.ID, "toggle-overlay")
        toggle.send_keys(Keys.SPACE)
        assert not toggle.is_selected()
        wait(
            driver,
            lambda: (
                img.get_attribute("src").endswith("/frame")
                and driver.execute_script("return arguments[0].naturalWidth", img) > 0
            ),
            20,
            "the plain frame",
        )
        toggle.click()
        assert img.get_attribute("src").endswith("/overlay")

        # review: the person overrules the machine, with a reason
        driver.find_element(By.ID, "disp-ok").click()
        driver.find_element(By.ID, "comment").send_keys("glare on the edge, part is fine")
        driver.save_screenshot(str(shots / "3-detail.png"))
        driver.find_element(By.ID, "submit-review").click()
        wait(driver, lambda: driver.find_elements(By.ID, "saved"), 20, "the saved review")
        rec = stub.GetInspection(
            query_pb2.GetInspectionRequest(frame_id=frame_id), metadata=auth, timeout=10
        )
        assert rec.inspection.verdict == 2, "the machine verdict stays"
        review = rec.reviews[-1]
        assert (review.disposition, review.reviewer, review.comment) == (
            1,
            "anna",
            "glare on the edge, part is fine",
        )

        # tablet width: still readable, nothing wider than the screen
        driver.set_window_size(820, 1180)
        for path in ("/", "/review", f"/inspection/{frame_id}"):
            driver.get(url + path)
            overflow = driver.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 1, f"{path} scrolls sideways by {overflow} px at tablet width"
        driver.save_screenshot(str(shots / "4-detail-tablet.png"))

        # signed out: the browser is refused again
        driver.find_element(By.CSS_SELECTOR, "form.who button").click()
        wait(driver, lambda: "/login" in driver.current_url, 20, "the sign-out")
        driver.get(url + "/review")
        assert "/login" in driver.current_url
    finally:
        driver.quit()
    if os.environ.get("DEFECTFLOW_UPDATE_SCREENSHOT"):
        shutil.copy(shots / "1-lines.png", ROOT / "docs" / "console.png")
