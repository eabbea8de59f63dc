"""The MLflow UI in a real headless Chromium: the experiment, the sweep run, its trial runs and the report.

Served by `visionsweep ui` on 127.0.0.1, as a person would start it. Screenshots go to test-output/ui-browser/.
Needs Debian's chromium and chromium-driver (`apt-get install -y chromium chromium-driver`); skipped without them.
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support.servers import free_port, wait_until_serving
from visionsweep import tracking

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("Debian's chromium and chromium-driver are not installed "
                "(apt-get install -y chromium chromium-driver)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SCREENSHOTS = Path(__file__).parents[2] / "test-output" / "ui-browser"
WAIT_S = 45  # the UI's first page load on a busy 2-core machine
# The machine has no network: no first-run screens, updates, sync or background fetches.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000"]


@pytest.fixture
def ui_url(reported_sweep):
    """`visionsweep ui` for the sweep's store, in its own process group so that Ctrl-C reaches mlflow too."""
    port = free_port()  # never a fixed one on a shared machine
    log = open(reported_sweep.folder / "ui.log", "w")
    command = [sys.executable, "-m", "visionsweep.cli", "ui", "--tracking-uri", reported_sweep.uri, "--port", str(port)]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=reported_sweep.folder,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(url, server, reported_sweep.folder / "ui.log", stop=lambda: os.killpg(server.pid, signal.SIGKILL))
    yield url
    os.killpg(server.pid, signal.SIGINT)  # what Ctrl-C sends
    try:
        server.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
    log.close()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_ui_shows_sweep_trials_and_report(reported_sweep, ui_url, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    wait = WebDriverWait(browser, WAIT_S)
    experiment, sweep = reported_sweep.experiment_id, reported_sweep.sweep_run_id

    browser.get(f"{ui_url}/#/experiments")
    wait.until(expected_conditions.presence_of_element_located((By.LINK_TEXT, "it-report")))
    browser.save_screenshot(str(SCREENSHOTS / "1-experiments.png"))

    # The parent sweep run, expanded to show its nested trial runs.
    browser.get(f"{ui_url}/#/experiments/{experiment}/runs")
    row = wait.until(expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, f"[role=row][row-id='{sweep}']")))
    for close in browser.find_elements(By.CSS_SELECTOR, "button[data-component-id='mlflow.assistant.chat_panel.close']"):
        close.click()  # the assistant panel would cover half of the screenshots
    assert row.find_element(By.PARTIAL_LINK_TEXT, "sweep-").is_displayed()
    row.find_element(By.CSS_SELECTOR, "[role=gridcell] button").click()  # the expander beside the run name
    trials = tracking.trial_runs(reported_sweep.client, sweep)
    for trial in trials:
        link = wait.until(expected_conditions.presence_of_element_located(
            (By.CSS_SELECTOR, f"[role=row][row-id='{trial.info.run_id}'] a")))
        assert link.text == trial.info.run_name
    browser.save_screenshot(str(SCREENSHOTS / "2-sweep-and-trials.png"))

    # The report artifact, previewed by the UI itself.
    browser.get(f"{ui_url}/#/experiments/{experiment}/runs/{sweep}/artifacts")
    wait.until(expected_conditions.element_to_be_clickable((By.XPATH, "//*[text()='report.html']"))).click()
    wait.until(expected_conditions.frame_to_be_available_and_switch_to_it((By.TAG_NAME, "iframe")))
    heading = wait.until(expected_conditions.presence_of_element_located((By.TAG_NAME, "h1")))
    assert heading.text == "Sweep report: it-report"
    assert browser.find_elements(By.XPATH, "//h2[text()='Learning curves']")
    browser.switch_to.default_content()
    browser.save_screenshot(str(SCREENSHOTS / "3-report-artifact.png"))


REPORT_SECTIONS = ["Sweep", "Best trials", "Learning curves", "ASHA rung survival", "Parameter importances",
                   "Parallel coordinates", "Slice plots", "Ensemble score against k", "Confusion matrix",
                   "Error montage", "Class activation maps"]


def test_report_page_opens_whole_in_chromium(reported_sweep, browser):
    """The page as a person opens it from disk: every section there, each figure decoded, nothing fetched."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.get(reported_sweep.report.as_uri())
    WebDriverWait(browser, WAIT_S).until(expected_conditions.presence_of_element_located((By.TAG_NAME, "h1")))
    headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
    assert headings == REPORT_SECTIONS
    for heading in browser.find_elements(By.TAG_NAME, "h2"):
        # each section holds what it says: a figure, a table or a note
        section = heading.find_elements(By.XPATH, "following-sibling::*[1][self::p or self::table or self::img]")
        assert section, heading.text
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) >= 8
    decoded = browser.execute_script(
        "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0)")
    assert all(decoded), decoded
    cam = browser.find_element(By.XPATH, "//h2[text()='Class activation maps']/following-sibling::img[1]")
    assert cam.get_attribute("src").startswith("data:image/png;base64,")
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(r => r.name)")
    assert resources == []  # one self-contained file: no script, style sheet or image from elsewhere
    browser.execute_script("arguments[0].scrollIntoView()", cam)
    browser.save_screenshot(str(SCREENSHOTS / "4-report-class-activation-maps.png"))
