"""Issue 32: the documentation site and the short README.

The site (docs/) is built with ``sphinx-build -W`` (every warning an error)
into a temporary folder; then every page is opened from ``file://`` in
headless Chromium, as the listening page's test does: no console error,
every image decoded by the browser, and every internal link, image, style
sheet and script of the rendered page resolves to a file of the site (and a
``#fragment`` to an id of its target). The checker itself is tested on a
tiny site with broken links, and in the browser on a broken page, so that
it can fail. Skips, saying why, only where Sphinx (``pip install -e
".[docs]"``) or Chromium is absent; ``.ci/run`` installs both.
"""

import html.parser
import importlib
import inspect
import json
import pathlib
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from conftest import ROOT

DOCS = ROOT / "docs"
README = ROOT / "README.md"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
EXTERNAL_SCHEMES = {"http", "https", "mailto", "data", "javascript", "tel"}
# (tag, attribute) pairs whose value the browser loads or the reader follows
REFERENCES = {
    ("a", "href"),
    ("img", "src"),
    ("link", "href"),
    ("script", "src"),
    ("source", "src"),
    ("iframe", "src"),
}
# The README's sections before issue 32, each now a page or a section of one.
MOVED_SECTIONS = [
    "Training and recipes",
    "Ablations: one flag each",
    "DNS-Challenge recipe: on-the-fly mixing, DNS test sets, DNSMOS",
    "Measured on the shipped subset (2 CPU cores, no GPU)",
    "The model, and the choices this implementation made",
    "The CR representation",
    "Using a trained model and the CLI",
    "Metrics",
    "Listening page",
    "Enhancing a corpus",
    "In front of speech recognition",
    "Measured: does the shipped enhancer help an off-the-shelf recogniser?",
    "Results and the ablation",
    "The shipped model against the denoisers people install (`benchmarks/peers.py`)",
    "The default runs",
    "Does it work? CM and CR at an equal budget (`benchmarks/ablation.py`)",
    "Performance: speed, memory, streaming, export",
    "Offline model: RTF and peak memory (`inference_memory.py`)",
    "Causal streaming mode (`streaming.py`)",
    "Cost per variant (`model_cost.py`)",
    "Training throughput (`training_throughput.py`)",
    "Export: TorchScript and ONNX",
    "Limits and errors",
    "Loading a model folder from someone else",
    "Tests",
    "Layout",
]


# --- the checker: internal references of a rendered page ---


class _Page(html.parser.HTMLParser):
    """The ids of a page and the references it makes."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.references = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("id", "name") if tag == "a" else ("id",):
            if attrs.get(name):
                self.ids.add(attrs[name])
        for attribute in ("href", "src"):
            if (tag, attribute) in REFERENCES and attrs.get(attribute) is not None:
                self.references.append((tag, attrs[attribute]))


def parse_page(text):
    page = _Page()
    page.feed(text)
    return page


def broken_references(site, page_file, text=None):
    """Every internal reference of a page that does not resolve inside ``site``.

    ``text`` is the page's HTML (the DOM the browser rendered), by default
    the file. A reference resolves when its file exists inside the site (a
    link that leaves the site's folder does not: the site must move whole)
    and its ``#fragment``, if any, is an id of the target page. External
    addresses (http, mailto, ...) are not followed. Returns one line per
    broken reference: ``page: <tag> target (reason)``.
    """
    site, page_file = pathlib.Path(site).resolve(), pathlib.Path(page_file).resolve()
    page = parse_page(page_file.read_text(encoding="utf-8") if text is None else text)
    ids_of = {page_file: page.ids}
    problems = []
    for tag, value in page.references:
        parts = urllib.parse.urlsplit(value.strip())
        if parts.scheme in EXTERNAL_SCHEMES or (
            parts.netloc and parts.scheme != "file"
        ):
            continue
        if parts.scheme == "file":
            target = pathlib.Path(urllib.request.url2pathname(parts.path))
        elif parts.path:
            target = page_file.parent / urllib.parse.unquote(parts.path)
        else:
            target = page_file
        target = target.resolve()
        where = f"{page_file.relative_to(site)}: <{tag}> {value}"
        if site != target and site not in target.parents:
            problems.append(f"{where} (outside the site)")
        elif not target.is_file():
            problems.append(f"{where} (no such file)")
        elif tag == "img" and target.stat().st_size == 0:
            problems.append(f"{where} (empty image)")
        elif parts.fragment and target.suffix == ".html":
            if target not in ids_of:
                ids_of[target] = parse_page(target.read_text(encoding="utf-8")).ids
            if urllib.parse.unquote(parts.fragment) not in ids_of[target]:
                problems.append(f"{where} (no id {parts.fragment!r} in {target.name})")
    return problems


def site_pages(site):
    """The site's HTML pages (not the files of its static, image and download
    folders)."""
    site = pathlib.Path(site)
    return sorted(
        path
        for path in site.rglob("*.html")
        if not path.relative_to(site).parts[0].startswith("_")
    )


# --- the browser ---


def _browser():
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip(
        "no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it): "
        "the documentation site is not checked in a browser here"
    )


def _open(page, profile):
    """The DOM of ``page?selftest`` after its scripts ran, its self-test and
    console lines."""
    command = [
        _browser(),
        "--headless=new",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        "--allow-file-access-from-files",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.as_uri() + "?selftest",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="docs-selftest"[^>]*>(.*?)</pre>', result.stdout, re.S)
    selftest = json.loads(html.unescape(found.group(1))) if found else None
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return result.stdout, selftest, console


def browser_problems(site, page, profile):
    """What is wrong with one page in the browser: no self-test (the site's
    script did not run), script errors, console messages, images that did
    not decode, internal references that do not resolve."""
    dom, selftest, console = _open(page, profile)
    name = page.relative_to(site)
    if selftest is None:
        return [
            f"{name}: the self-test wrote nothing (selftest.js "
            "not loaded, or the page never finished)"
        ]
    problems = [f"{name}: script error {error}" for error in selftest["errors"]]
    problems += [f"{name}: console {line.split(':CONSOLE', 1)[1]}" for line in console]
    problems += [
        f"{name}: image not decoded {item['src']}"
        for item in selftest["images"]
        if not item["ok"]
    ]
    return problems + broken_references(site, page, dom)


# --- the site ---


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built with ``sphinx-build -W --keep-going`` into a temporary folder."""
    pytest.importorskip(
        "sphinx",
        reason=(
            'Sphinx is not installed (pip install -e ".[docs]"): '
            "the site is not built here"
        ),
    )
    pytest.importorskip(
        "myst_parser",
        reason=(
            'myst-parser is not installed (pip install -e ".[docs]"): '
            "the site is not built here"
        ),
    )
    out = tmp_path_factory.mktemp("site")
    start = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(out / "doctrees"),
            str(DOCS),
            str(out / "html"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"sphinx-build -W failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )
    print(f"sphinx-build -W: {time.monotonic() - start:.1f} s")
    return out / "html"


def test_site_builds_without_warnings_with_a_page_per_source(site):
    sources = {path.stem for path in DOCS.glob("*.md")} | {
        path.stem for path in DOCS.glob("*.rst")
    }
    built = {path.stem for path in site_pages(site)}
    assert sources <= built, sources - built
    for page in [
        "quickstart",
        "training",
        "model",
        "usage",
        "corpus",
        "listening",
        "asr",
        "results",
        "performance",
        "limits",
        "model_folders",
        "api",
        "development",
    ]:
        assert page in sources, f"docs/{page}.md is missing"


def test_api_reference_documents_every_public_class_and_function(site):
    ids = parse_page((site / "api.html").read_text(encoding="utf-8")).ids
    missing = []
    for path in sorted((ROOT / "cmse_speechbrain").glob("*.py")):
        module = importlib.import_module(f"cmse_speechbrain.{path.stem}")
        if path.stem != "__init__" and module.__name__ not in {
            i.removeprefix("module-") for i in ids
        }:
            missing.append(module.__name__)
        for name, obj in vars(module).items():
            if (
                not name.startswith("_")
                and (inspect.isclass(obj) or inspect.isfunction(obj))
                and obj.__module__ == module.__name__
                and f"{module.__name__}.{name}" not in ids
            ):
                missing.append(f"{module.__name__}.{name}")
    assert missing == []
    text = (site / "api.html").read_text(encoding="utf-8")
    assert text.count("&gt;&gt;&gt;") > 50  # the doctested examples are on the page


def test_benchmark_figures_are_on_the_site(site):
    shown = set()
    for page in site_pages(site):
        shown |= {
            pathlib.Path(src).name
            for tag, src in parse_page(page.read_text(encoding="utf-8")).references
            if tag == "img"
        }
    figures = {path.name for path in (ROOT / "benchmarks" / "results").glob("*.png")}
    assert figures <= shown, figures - shown
    assert "report_screenshot.png" in shown


def test_every_page_opens_in_a_browser_with_no_error_and_no_broken_link(site, tmp_path):
    pages = site_pages(site)
    assert site / "index.html" in pages and len(pages) >= 15
    problems = []
    start = time.monotonic()
    for page in pages:
        problems += browser_problems(site, page, tmp_path / "profile")
    print(f"{len(pages)} pages opened in {time.monotonic() - start:.1f} s")
    assert problems == []


# --- the checker can fail ---

TINY_PAGE = """<html><head><link rel="stylesheet" href="style.css">\
<script src="{script}"></script></head><body>
<p id="top">x</p>
<a href="#top">ok</a> <a href="other.html#there">ok</a> <a href="https://example.org/x">external</a>
<a href="mailto:a@b.c">mail</a> <a href="sub/deep.html">ok</a>
<a href="other.html#nowhere">bad fragment</a> <a href="#missing-here">bad local</a>
<a href="gone.html">missing page</a> <a href="../outside.html">outside</a>
<img src="fig.png"> <img src="no%20such.png"> <img src="empty.png">
</body></html>"""


def _tiny_site(root, script="missing.js"):
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text(TINY_PAGE.format(script=script), encoding="utf-8")
    (root / "other.html").write_text(
        '<html><body><h1 id="there">t</h1></body></html>', encoding="utf-8"
    )
    (root / "sub" / "deep.html").write_text(
        '<html><body><a href="../index.html#top">up</a></body></html>', encoding="utf-8"
    )
    (root / "style.css").write_text("p { color: black }", encoding="utf-8")
    shutil.copy(ROOT / "docs" / "report_screenshot.png", root / "fig.png")
    (root / "empty.png").write_bytes(b"")
    (root.parent / "outside.html").write_text("<html></html>", encoding="utf-8")


def test_checker_finds_every_broken_link_and_image(tmp_path):
    site = tmp_path / "site"
    _tiny_site(site)
    problems = broken_references(site, site / "index.html")
    assert problems == [
        "index.html: <script> missing.js (no such file)",
        "index.html: <a> other.html#nowhere (no id 'nowhere' in other.html)",
        "index.html: <a> #missing-here (no id 'missing-here' in index.html)",
        "index.html: <a> gone.html (no such file)",
        "index.html: <a> ../outside.html (outside the site)",
        "index.html: <img> no%20such.png (no such file)",
        "index.html: <img> empty.png (empty image)",
    ]
    assert broken_references(site, site / "sub" / "deep.html") == []
    assert site_pages(site) == [
        site / "index.html",
        site / "other.html",
        site / "sub" / "deep.html",
    ]


def test_browser_check_reports_a_broken_page(tmp_path):
    _browser()
    site = tmp_path / "site"
    _tiny_site(site, script="selftest.js")
    shutil.copy(DOCS / "_static" / "selftest.js", site / "selftest.js")
    page = site / "index.html"
    page.write_text(
        page.read_text(encoding="utf-8").replace(
            "</body>", "<script>notDefined()</script></body>"
        ),
        encoding="utf-8",
    )
    problems = browser_problems(site, page, tmp_path / "profile")
    assert any("script error" in line and "notDefined" in line for line in problems), (
        problems
    )
    assert any("console" in line and "notDefined" in line for line in problems), (
        problems
    )
    assert [line for line in problems if "image not decoded" in line] == [
        "index.html: image not decoded no%20such.png",
        "index.html: image not decoded empty.png",
    ]
    assert "index.html: <a> gone.html (no such file)" in problems
    assert not any("fig.png" in line for line in problems)


# --- the README ---


def _code_blocks(text):
    return re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S)


def test_readme_is_short_keeps_the_two_commands_and_ci_runs_the_second():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 230
    install, tests = (block.strip() for block in _code_blocks(text)[:2])
    assert install == (
        'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[plots]" '
        "&& python recipes/VoiceBank/train.py hparams/cmse.yaml"
    )
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    pinned = re.search(r"^pinned\(\) \{\n(.*?)^\}", ci, re.S | re.M).group(1)
    assert tests.startswith("python3 -m venv .venv && ") and tests in pinned, (
        "the README's test command is not the one .ci/run's pinned pass runs"
    )
    for heading in ["Results", "Documentation"]:
        assert re.search(rf"^## {heading}", text, re.M), heading
    assert "sphinx-build -W docs docs/_build/html" in text


def test_readme_links_resolve_and_every_section_it_lost_is_on_the_site():
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link for link in links if not urllib.parse.urlsplit(link).scheme]
    missing = [
        link
        for link in local
        if not (ROOT / urllib.parse.unquote(link.split("#")[0])).exists()
    ]
    assert missing == []
    linked_pages = {link.split("#")[0] for link in local if link.startswith("docs/")}
    assert len(linked_pages) >= 10, linked_pages
    headings = set()
    for page in DOCS.glob("*.md"):
        headings |= {
            line.lstrip("#").strip()
            for line in page.read_text(encoding="utf-8").splitlines()
            if re.match(r"#+ ", line)
        }
    assert [section for section in MOVED_SECTIONS if section not in headings] == []
