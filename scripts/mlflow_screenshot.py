"""Screenshot MLflow's runs table for the README (docs/img/mlflow_sweep.png), headless Chromium.

Drives the system's Chromium (Debian: apt-get install chromium) through Playwright, which is not
a dependency of fmnist-tl: install it in a throwaway environment, it downloads no browser here.

    python3 -m venv /tmp/pw && /tmp/pw/bin/pip install playwright
    mlflow ui --backend-store-uri sqlite:///PATH/mlflow.db --host 127.0.0.1 --port 5055
    /tmp/pw/bin/python scripts/mlflow_screenshot.py \
        "http://127.0.0.1:5055/#/experiments/1/runs?workflowType=machine_learning" out.png

It waits for a sweep's parent run (named `*-sweep-*`), closes the assistant panel, expands
the parent, shows the swept params and the test metrics, and takes a 1600x640 screenshot.
Look at the picture before using it: MLflow's UI changes between releases (this is 3.17).
"""

from __future__ import annotations

import sys

ARGS = [  # nothing leaves 127.0.0.1
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HIDE = ["Dataset", "Models"]
SHOW = [
    "test_accuracy",
    "best_val_accuracy",
    "best_test_accuracy_mean",
    "model.head.units",
    "train.learning_rate",
    "seed",
]


def shoot(url: str, out: str, chromium: str = "/usr/bin/chromium") -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 640})
        page.goto(url, timeout=120_000)
        page.wait_for_selector("text=-sweep-", timeout=180_000)
        page.wait_for_timeout(2000)
        page.click("[data-component-id='mlflow.assistant.chat_panel.close']")
        page.click("[data-component-id$='runnamecellrenderer.tsx_46']")  # expand the parent
        page.wait_for_timeout(1000)
        page.click("[data-testid='column-selection-dropdown']:has-text('Columns')")
        search = page.get_by_placeholder("Search columns")
        for name in HIDE + SHOW:
            search.fill(name)
            page.wait_for_timeout(600)
            item = page.locator("label, span, div").filter(has_text=name)
            item.get_by_text(name, exact=True).last.click()
            page.wait_for_timeout(600)
        page.keyboard.press("Escape")
        page.mouse.click(1200, 600)
        page.wait_for_timeout(2000)
        page.screenshot(path=out)
        browser.close()


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: mlflow_screenshot.py URL OUT.png [CHROMIUM]")
    shoot(*sys.argv[1:])
