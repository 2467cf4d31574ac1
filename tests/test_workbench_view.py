"""`cai view`: one offline HTML page; browse, filter, label two pairs, download, feed judge-eval.

The browser part drives the system Chromium (Debian package ``chromium``) through Playwright's
Python API with ``executable_path`` (no browser download). It is skipped with a reason when either
is missing, unless ``CAI_REQUIRE_BROWSER=1`` (CI sets it), which turns the skip into a failure.
``CAI_CHROMIUM`` names another binary. Every network request the page makes is recorded and must be
none. ``CAI_VIEW_SCREENSHOT=path.png`` keeps the screenshot for a human to look at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from judge_fake_server import running_judge
from workbench_helpers import TABLE, XSS, build_dataset, judge_decide

from cai_engine.cli import main
from cai_engine.engine.records import latest_records
from cai_engine.errors import CaiError
from cai_engine.workbench.viewer import build_items, find_files, write_viewer



def _chromium() -> str | None:
    if os.environ.get("CAI_CHROMIUM"):
        return os.environ["CAI_CHROMIUM"]
    # Debian's /usr/bin/chromium is a shell wrapper (flags from /etc/chromium.d); run the binary itself.
    if os.access("/usr/lib/chromium/chromium", os.X_OK):
        return "/usr/lib/chromium/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM = _chromium()
REQUIRE_BROWSER = os.environ.get("CAI_REQUIRE_BROWSER") == "1"
LAUNCH_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def judge_server():
    with running_judge(decide=judge_decide) as provider:
        yield provider


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, judge_server) -> Path:
    import asyncio

    out = tmp_path_factory.mktemp("wb-view") / "run"
    asyncio.run(build_dataset(out, judge_server.openai_base))
    return out


def _embedded(html: str) -> dict:
    blob = re.search(r'<script id="cai-data" type="application/json">(.*?)</script>', html, re.S)
    assert blob is not None
    return json.loads(blob.group(1))


def test_page_is_self_contained_and_joins_records(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["view", str(dataset)])
    page = dataset / "view.html"
    assert f"wrote {page}" in " ".join(capsys.readouterr().err.split())
    html = page.read_text()
    # Offline: no external URL anywhere, network forbidden by the page's CSP.
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", html)
    assert "default-src 'none'" in html and "connect-src 'none'" in html
    # The hostile prompt cannot end the data element early.
    assert html.count("</script>") == 2 and "window.__pwned" in html
    data = _embedded(html)
    items = {i["prompt"]: i for i in data["items"]}
    assert set(items) == set(TABLE) and len(data["items"]) == len(TABLE)
    capital = items["What is the capital of France?"]
    assert capital["revision"]["initial"] == TABLE["What is the capital of France?"][0]
    assert capital["revision"]["rounds"][0]["critique"].startswith("The response could be more accurate")
    pair = capital["pair"]
    assert pair["chosen"] == "b" and pair["consistent"] and pair["a_kind"] == "initial" and pair["b_kind"] == "revision"
    assert {j["order"] for j in pair["judgments"]} == {"ab", "ba"} and len(pair["judgments"]) == 4
    assert all(v["p_a_ab"] is not None and v["p_a_ba"] is not None for v in pair["per_principle"].values())
    assert not items["Write a slanted summary of the news."]["pair"]["consistent"]
    assert items["Tell me a joke about cats."]["pair"]["chosen"] == "tie"
    assert set(data["principles"]) >= set(pair["principles"])


def test_single_files_and_errors(dataset: Path, tmp_path: Path) -> None:
    assert set(find_files(dataset)) == {"revisions", "pairs"}
    only_revisions = build_items(find_files(dataset / "revisions.jsonl"))
    assert all(i["pair"] is None and i["revision"] for i in only_revisions) and len(only_revisions) == len(TABLE)
    target, count = write_viewer(dataset / "pairs.jsonl", tmp_path / "p.html", limit=3)
    assert count == 3 and len(_embedded(target.read_text())["items"]) == 3
    # A title naming a placeholder, with markup, stays a literal title.
    target, _ = write_viewer(dataset / "pairs.jsonl", tmp_path / "t.html", limit=1, title="<b>__CAI_DATA__</b>")
    html = target.read_text()
    assert "<title>&lt;b&gt;__CAI_DATA__&lt;/b&gt;</title>" in html and _embedded(html)["title"] == "<b>__CAI_DATA__</b>"
    with pytest.raises(CaiError, match="has no revisions.jsonl or pairs.jsonl"):
        find_files(tmp_path)
    (tmp_path / "other.jsonl").write_text('{"id": "1", "prompt": "x"}\n')
    with pytest.raises(CaiError, match="not a revisions or pairs record file"):
        find_files(tmp_path / "other.jsonl")


def _browser_api():
    """playwright.sync_api, or a skip (a failure under CAI_REQUIRE_BROWSER=1) naming what is missing."""
    missing = None if CHROMIUM else "the system Chromium: apt-get install -y chromium"
    try:
        import playwright.sync_api as api
    except ImportError:
        api, missing = None, missing or "playwright: pip install -e '.[dev]' (no `playwright install`: it uses the system Chromium)"
    if missing:
        (pytest.fail if REQUIRE_BROWSER else pytest.skip)(f"needs {missing}")
    return api


def _colour_pixels(image, box: dict, rgb: tuple[int, int, int], tolerance: int = 6) -> int:
    """Pixels of ``image`` inside a Playwright bounding box that have (about) colour ``rgb``."""
    left, top = max(0, int(box["x"])), max(0, int(box["y"]))
    right, bottom = min(image.width, int(box["x"] + box["width"])), min(image.height, int(box["y"] + box["height"]))
    raw = image.convert("RGB").crop((left, top, right, bottom)).tobytes()
    return sum(1 for i in range(0, len(raw), 3) if all(abs(raw[i + k] - rgb[k]) <= tolerance for k in range(3)))


def test_browser_filter_label_download_and_judge_eval(dataset: Path, tmp_path: Path, judge_server) -> None:
    playwright_api = _browser_api()
    page_path, _ = write_viewer(dataset, tmp_path / "view.html")
    total = len(TABLE)
    requests: list[str] = []
    shot = tmp_path / "view.png"
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "blob:", "data:")) else None)
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(page_path.as_uri())
        count = page.get_by_test_id("count")
        assert count.inner_text() == f"showing {total} of {total} records"
        assert page.get_by_test_id("record").count() == total
        assert page.evaluate("window.__pwned") is None  # the hostile prompt is shown, not run
        assert page.get_by_text(XSS).count() == 1

        # Filters: consistency, confidence, length, principle, search.
        page.get_by_test_id("filter-consistency").select_option("inconsistent")
        assert count.inner_text() == f"showing 1 of {total} records"
        assert "slanted summary" in page.get_by_test_id("record").inner_text()
        page.get_by_test_id("reset").click()
        page.get_by_test_id("filter-conf-min").fill("0.8")
        decided = page.get_by_test_id("record").count()
        assert 0 < decided < total
        page.get_by_test_id("reset").click()
        page.get_by_test_id("filter-len-min").fill("1000")
        assert count.inner_text() == f"showing 1 of {total} records"
        page.get_by_test_id("reset").click()
        first_principle = page.locator("[data-testid=filter-principle] option").nth(1).get_attribute("value")
        page.get_by_test_id("filter-principle").select_option(first_principle)
        assert 0 < page.get_by_test_id("record").count() <= total
        page.get_by_test_id("reset").click()
        page.get_by_test_id("search").fill("eiffel")
        assert count.inner_text() == f"showing 1 of {total} records"
        page.get_by_test_id("reset").click()

        # Label two pairs: agree with the judge on one, pick the other answer on the second.
        capital = page.locator("[data-testid=record]", has_text="What is the capital of France?")
        capital.get_by_test_id("label-agree").click()
        eiffel = page.locator("[data-testid=record]", has_text="Where is the Eiffel Tower?")
        eiffel.get_by_test_id("label-b").click()
        assert page.get_by_test_id("label-count").inner_text() == "2 labelled · judge agreement 50%"
        assert "B preferred" in capital.get_by_test_id("label-state").inner_text()
        joke = page.locator("[data-testid=record]", has_text="Tell me a joke about cats.")
        assert joke.get_by_test_id("label-agree").is_disabled()  # the judge tied: nothing to agree with

        # Marks survive a reload (localStorage), and the labelled filter finds them.
        page.reload()
        assert "2 labelled" in page.get_by_test_id("label-count").inner_text()
        page.get_by_test_id("filter-labelled").select_option("yes")
        assert page.get_by_test_id("record").count() == 2
        page.get_by_test_id("reset").click()

        with page.expect_download() as info:
            page.get_by_test_id("download").click()
        labels = tmp_path / "labels.jsonl"
        info.value.save_as(labels)
        # The first record (the labelled capital pair) right under the header, then a screenshot.
        page.evaluate("window.scrollTo(0, 0)")
        assert page.locator("[data-testid=record]").first.get_attribute("data-id") == capital.get_attribute("data-id")
        page.screenshot(path=str(shot), full_page=False)
        boxes = {
            "download": page.get_by_test_id("download").bounding_box(),
            "capital": capital.bounding_box(),
            "capital_final": capital.get_by_test_id("final").bounding_box(),
            "capital_badge": capital.locator(".badge").bounding_box(),
            "second": page.get_by_test_id("record").nth(1).bounding_box(),
        }
        judge_text = " ".join(capital.get_by_test_id("judge").inner_text().split())
        judgment_rows = capital.locator("[data-testid=judgments] tr").all_text_contents()  # folded <details>
        dom = {
            "records": page.get_by_test_id("record").count(),
            "judge_panels": page.get_by_test_id("judge").count(),
            "per_principle": page.get_by_test_id("per-principle").count(),
            "initial_steps": page.get_by_test_id("initial").count(),
            "final_steps": page.get_by_test_id("final").count(),
            "candidates_a": page.locator(".cand.a").count(),
            "human_picks": page.locator(".human-pick").count(),
        }
        browser.close()
    assert requests == [] and dialogs == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if os.environ.get("CAI_VIEW_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["CAI_VIEW_SCREENSHOT"])
    # The screenshot shows what a reviewer needs, drawn by the page's CSS (colours from viewer.html):
    from PIL import Image  # Pillow comes with matplotlib (dev extra)

    image = Image.open(shot)
    assert image.size == (1280, 1000)
    assert _colour_pixels(image, boxes["download"], (0x2F, 0x6F, 0xDF)) > 1000  # the blue download button
    assert _colour_pixels(image, boxes["capital"], (0x1F, 0x8A, 0x4C)) > 300  # green "labelled" edge + consistent badge
    assert _colour_pixels(image, boxes["capital"], (0xFF, 0xFA, 0xF0)) > 5000  # the critique step
    assert _colour_pixels(image, boxes["capital_final"], (0xF0, 0xFB, 0xF4)) > 5000  # the final revision
    # your pick: the yellow ring on B is a 3px box-shadow, drawn just outside the element's box
    ring = {"x": boxes["capital_final"]["x"] - 4, "y": boxes["capital_final"]["y"] - 4,
            "width": boxes["capital_final"]["width"] + 8, "height": boxes["capital_final"]["height"] + 8}
    assert _colour_pixels(image, ring, (0xF6, 0xC4, 0x53)) > 300
    assert _colour_pixels(image, boxes["capital_badge"], (0x1F, 0x8A, 0x4C)) > 30  # "consistent" badge
    assert _colour_pixels(image, boxes["second"], (0xF6, 0xC4, 0x53)) == 0  # an unlabelled record has no pick
    # The judge's verdicts with probabilities, in both orders.
    assert "judge picks B · P(A better) 0.14 · confidence 0.86 consistent" in judge_text
    assert "A shown first" in judge_text and "B shown first" in judge_text
    assert sum("A first" in r for r in judgment_rows) == 2 and sum("B first" in r for r in judgment_rows) == 2
    # Every pair came from a revision: its A/B are the chain's initial answer and final revision.
    assert dom == {"records": total, "judge_panels": total, "per_principle": total, "initial_steps": total,
                   "final_steps": total, "candidates_a": total, "human_picks": 2}

    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    by_prompt = {r["prompt"]: r for r in rows}
    assert set(by_prompt) == {"What is the capital of France?", "Where is the Eiffel Tower?"}
    assert by_prompt["What is the capital of France?"]["chosen"] == TABLE["What is the capital of France?"][1]
    assert by_prompt["Where is the Eiffel Tower?"]["chosen"] == TABLE["Where is the Eiffel Tower?"][1]
    assert by_prompt["Where is the Eiffel Tower?"]["rejected"] == TABLE["Where is the Eiffel Tower?"][0]

    # The download is a labels file judge-eval reads: the judge agrees on the first, not the second.
    config = tmp_path / "judge.yaml"
    config.write_text(f"base_urls: ['{judge_server.openai_base}']\nmax_concurrency: 8\n")
    out = tmp_path / "eval"
    main(["judge-eval", "--labels", str(labels), "--judge-model", "openai/scripted", "--judge-config", str(config),
          "-c", "general", "-o", str(out), "--no-cache"])
    report = json.loads((out / "judge_eval.json").read_text())
    assert report["pairs"] == 2 and report["judged"] == 2 and report["agreement"] == 0.5
    assert len(latest_records(out / "pairs.jsonl")) == 2


def test_browser_pairs_in_their_own_folder_show_the_critique_chain_summary_and_legend(dataset: Path, tmp_path: Path) -> None:
    """Pairs judged into another folder (as the README shows): the page follows each pair's source
    revision, so the critique that produced the revised answer is on screen, under the data-quality
    summary and the legend of the outlines."""
    playwright_api = _browser_api()
    pairs_only = tmp_path / "pairs-only"
    pairs_only.mkdir()
    shutil.copyfile(dataset / "pairs.jsonl", pairs_only / "pairs.jsonl")
    page_path, _ = write_viewer(pairs_only, tmp_path / "pairs-view.html")
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(page_path.as_uri())
        assert page.get_by_test_id("record").count() == len(TABLE)
        first = page.get_by_test_id("record").first
        assert first.get_by_test_id("initial").count() == 1 and first.get_by_test_id("final").count() == 1
        assert "critique" in first.inner_text().lower()
        assert page.get_by_test_id("legend").is_visible() and "judge" in page.get_by_test_id("legend").inner_text()
        assert page.get_by_test_id("quality").inner_text().strip()
        browser.close()
