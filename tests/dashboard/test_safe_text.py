"""Text that visitors and file names control is shown as text: escaping for markdown and plotly, hidden
server paths, model names checked by shape, the upload limit the server must enforce, the folder picker."""

from __future__ import annotations

import os
import re
import string
from pathlib import Path

import numpy as np
import pytest

from vfs.dashboard.config import AppConfig
from vfs.dashboard.deployment import BYTES_PER_MB, DatasetRoots, ModelPolicy, UploadLimits, check_model_name
from vfs.dashboard.plots import label_distribution, precision_figure, score_distribution, score_scatter
from vfs.dashboard.query_images import load_upload
from vfs.dashboard.safe_text import WORD_JOINER, as_markdown_text, as_plotly_text, hide_paths
from vfs.errors import ImageError, ModelError

#: What the probe of issue #17 put into links and file names, and more of the same kind.
HOSTILE = (
    "[Sign in again](https://evil.example/login)",
    "![t](http://127.0.0.1:9/track.png)",
    "**md**",
    '<a href="https://evil.example">click here</a>',
    "<b>bold</b><br>next line",
    "<img src=x onerror=alert(1)>",
    "https://evil.example/autolink www.evil.example a@evil.example",
    ":red[coloured] $x^2$ `code` ~~struck~~",
    "line\n# heading\n\n- item",
    "[ref]: https://evil.example",
    "&lt;b&gt;entity&amp;",
)


def unescaped(markdown: str) -> str:
    """What CommonMark shows for text that is only backslash escapes and characters."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace(WORD_JOINER, "")  # U+2060 shows as nothing


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_text_escapes_every_markup_character_and_keeps_one_line(text):
    escaped = as_markdown_text(text)
    assert "\n" not in escaped
    # every ASCII punctuation character is escaped, so no construct (link, tag, emphasis, autolink) can start
    assert not re.search(r"(?<!\\)[" + re.escape(string.punctuation.replace("\\", "")) + "]",
                         escaped.replace("\\\\", ""))
    assert unescaped(escaped) == " ".join(text.split("\n")).replace("  ", " ") or "\n" in text


#: The text patterns that remark-gfm (mdast-util-gfm-autolink-literal) turns into links after escapes are resolved.
GFM_TEXT_AUTOLINKS = (re.compile(r"(https?://|www(?=\.))([-.\w]+)([^ \t\r\n]*)", re.IGNORECASE),
                      re.compile(r"([-.\w+]+)@([-\w]+(?:\.[-\w]+)+)"))


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_text_leaves_no_autolink_in_the_parsed_text(text):
    parsed = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", as_markdown_text(text))  # the text node, joiners kept
    assert not any(pattern.search(parsed) for pattern in GFM_TEXT_AUTOLINKS), parsed


def test_markdown_text_reads_the_same_once_rendered():
    assert unescaped(as_markdown_text("cats/[tabby].jpg")) == "cats/[tabby].jpg"
    assert as_markdown_text(Path("a_b")) == "a\\_b"


@pytest.mark.parametrize("text", HOSTILE)
def test_plotly_text_has_no_tag(text):
    assert "<" not in as_plotly_text(text) and ">" not in as_plotly_text(text)


def test_server_paths_are_named_not_shown():
    message = "/srv/cache/abc has no shortlist; see /srv/cache/abc/shortlist/regions.json"
    assert hide_paths(message, {Path("/srv/cache/abc"): "the feature cache"}) == (
        "the feature cache has no shortlist; see the feature cache/shortlist/regions.json")


def _texts(figure) -> str:
    """Every text a figure draws: names, hover texts, tick labels, titles, treemap labels."""
    return repr(figure.to_plotly_json())


def test_figures_show_file_and_label_names_as_text():
    paths = [f'<a href="https:/{i}/evil.example">click here</a>/x{i}.jpg' for i in range(4)]
    labels = ["<b>a</b>", "<b>a</b>", "<br>b", "<br>b"]
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    figures = [score_distribution(scores, paths, labels, 0.3), label_distribution(scores, paths, labels),
               score_scatter(scores, scores[::-1], paths, "<b>A</b> x", "<i>B</i> y", 2),
               precision_figure(np.array([1.0, 0.5]), 0.5, "<a href='x'>l</a> %{x}", 1)]
    for figure in figures:
        drawn = _texts(figure)
        for tag in ("<a ", "<b>a", "<br>b", "<i>", "</a>"):
            assert tag not in drawn
    assert "&lt;a href=" in _texts(figures[0])
    assert "%{x}" not in figures[3].data[0].hovertemplate.replace("top %{x}", "")


@pytest.mark.parametrize("name", ["resnet50", "resnet50.a1_in1k", "hf-hub:timm/vit_small_patch16_224.augreg_in21k"])
def test_model_names_of_the_right_shape_pass(name):
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", ["hf-hub:timm/../../../../etc/x", "hf-hub:timm/a/b", "hf-hub:../x", "../x",
                                  "a/b", "hf-hub:timm/", "[x](https://evil.example)", "x y", "", "..", "a..b",
                                  "hf-hub:timm/x%2e%2e", "hf-hub:timm/x\x00"])
def test_model_names_of_another_shape_are_refused_before_any_library(name):
    with pytest.raises(ModelError, match="is not a model name"):
        check_model_name(name)


def test_a_glob_in_the_allow_list_does_not_let_traversal_through():
    policy = ModelPolicy(("hf-hub:timm/*",), "hf-hub:timm/resnet50.a1_in1k")
    assert policy.resolve("hf-hub:timm/resnet18.a1_in1k") == ("hf-hub:timm/resnet18.a1_in1k", None)
    with pytest.raises(ModelError, match="is not a model name"):
        policy.resolve("hf-hub:timm/../../../../etc/x")


def test_a_local_dashboard_checks_model_names_too(tmp_path):
    app = AppConfig(data=None, cache_dir=tmp_path, read_only=False, deployment=None)
    with pytest.raises(ModelError):
        app.resolve_model("hf-hub:timm/../x")


def test_streamlit_must_not_accept_larger_uploads_than_the_deployment():
    limits = UploadLimits(max_mb=20)
    assert limits.server_problem(20) is None and limits.server_problem(5) is None
    problem = limits.server_problem(200)
    assert "maxUploadSize = 20" in problem and "[server]" in problem


def test_upload_sizes_count_megabytes_as_the_browser_does():
    assert BYTES_PER_MB == 1_000_000 and UploadLimits(max_mb=3).max_bytes == 3_000_000
    with pytest.raises(ImageError, match=r"1\.5 MB; uploads are limited to 1 MB"):
        load_upload("big.png", bytes(1_500_000), max_mb=1)


def test_the_picker_offers_only_folders_that_open(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "fine").mkdir(parents=True)
    (root / "leaky").mkdir()
    outside.mkdir()
    os.symlink(outside, root / "leaky" / "out")
    roots = DatasetRoots((root.resolve(),))
    offered = roots.choices()
    assert root / "fine" in offered and root / "leaky" not in offered
    for folder in offered:
        if folder != root.resolve():  # the root itself holds the leaky folder, so it is refused too
            roots.resolve(folder)
