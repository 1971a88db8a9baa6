"""Concurrent users: one dashboard server, one browser session searching, then eight at once.

Starts ``streamlit run app.py`` (read-only) on the dataset and its existing cache, and opens
searches as links (query image and box in the URL, the query left out of the results) in
headless Debian chromium, each in a browser context of its own, i.e. a separate Streamlit
session. In order: one cold session (the server loads the model and maps the cache), then
``--single`` sessions one after another, then eight sessions at once; every query image is
different, so no session is served from another's cached previews. Latency: from opening the
link to the gallery shown with every thumbnail loaded (it includes loading the page). Every
gallery is checked against the library's own answer for its query. Server memory comes from
/proc: VmRSS after the first session and with the eight open too, and how many memory maps of
each shard file the server holds.

    .venv/bin/python -m bench.concurrency                  # ../shared/datasets/imagenette-val
    .venv/bin/python -m bench.concurrency --data DIR --cache-dir DIR --sessions 8 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path
from urllib.parse import urlencode

from bench._common import append_results, command_line, machine, machine_line, now
from tests.support.app_server import CHROMIUM, CHROMIUM_ARGS, Dashboard, LinkedSearch, dashboard_server, linked_sessions
from vfs.feature_search import FeatureSearch

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "imagenette-val"


def queries(search: FeatureSearch, count: int) -> list[tuple[str, tuple[int, int, int, int]]]:
    """``count`` dataset images spread evenly over the (sorted, so class by class) cache, with their middle ninth."""
    cache = search.cache
    picked = []
    for i in range(count):
        row = (2 * i + 1) * len(cache) // (2 * count)
        width, height = (int(v) for v in cache.image_sizes[row])
        picked.append((cache.paths[row], (width // 3, height // 3, 2 * width // 3, 2 * height // 3)))
    return picked


def link(query: str, box: tuple[int, int, int, int], top_k: int) -> str:
    return "/?" + urlencode({"q": query, "box": ",".join(map(str, box)), "k": top_k, "x": 1})


def expected_files(search: FeatureSearch, data: Path, query: str, box: tuple[int, int, int, int],
                   top_k: int) -> list[str]:
    result = search.search(data / query, box=box, top_k=top_k, exclude_query=True)
    return [match.path.rsplit("/", 1)[-1] for match in result.matches]


def shown_files(search: LinkedSearch) -> list[str]:
    return [caption.rsplit(" · ", 1)[-1] for caption in search.captions]


async def scenario(server: Dashboard, links: list[str], single: int, sessions: int, top_k: int,
                   shards: list[Path]) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
        async with linked_sessions(browser, server.url, links[:1], top_k) as cold:
            rss_one = server.resident_bytes()
            maps_one = server.mappings(shards)
            alone: list[LinkedSearch] = []
            for position in range(1, 1 + single):
                async with linked_sessions(browser, server.url, links[position:position + 1], top_k) as searched:
                    alone.extend(searched)
            async with linked_sessions(browser, server.url, links[1 + single:], top_k) as together:
                rss_all = server.resident_bytes()  # the first session and the eight are all open
                maps_all = server.mappings(shards)
        await browser.close()
    assert len(together) == sessions
    return {"cold": cold[0], "alone": alone, "together": together, "rss_one": rss_one, "rss_all": rss_all,
            "maps_one": maps_one, "maps_all": maps_all}


def seconds(searches: list[LinkedSearch]) -> dict:
    values = [search.seconds for search in searches]
    return {"median_s": round(statistics.median(values), 3), "max_s": round(max(values), 3),
            "all_s": [round(v, 3) for v in values]}


def measure(data: Path, cache_dir: Path, single: int, sessions: int, top_k: int) -> dict:
    search = FeatureSearch(data, cache_dir=cache_dir)  # the app's defaults: bundled model, its default layer and grid
    shards = sorted(search.cache_path.glob("*.arrow"))
    if not shards:
        raise SystemExit(f"No cache for {data} under {cache_dir}: run `.venv/bin/vfs index {data}` first.")
    picked = queries(search, 1 + single + sessions)
    expected = [expected_files(search, data, query, box, top_k) for query, box in picked]
    log = REPO / "test-artifacts" / "concurrency-streamlit.log"
    log.parent.mkdir(exist_ok=True)
    arguments = ["--data", str(data), "--cache-dir", str(cache_dir), "--read-only"]
    with dashboard_server(arguments, log=log) as server:
        run = asyncio.run(scenario(server, [link(query, box, top_k) for query, box in picked], single, sessions,
                                   top_k, shards))
    shown = [run["cold"], *run["alone"], *run["together"]]
    wrong = [picked[i][0] for i, got in enumerate(shown) if shown_files(got) != expected[i]]
    return {"data": str(data), "images": len(search.cache), "top_k": top_k, "cache": str(search.cache_path),
            "shards": len(shards), "sessions": sessions, "single_trials": single,
            "cold_first_session_s": round(run["cold"].seconds, 3), "one_at_a_time": seconds(run["alone"]),
            "at_once": seconds(run["together"]), "wrong_galleries": wrong,
            "rss_after_one_mib": round(run["rss_one"] / 2**20, 1),
            "rss_with_all_open_mib": round(run["rss_all"] / 2**20, 1),
            "rss_ratio": round(run["rss_all"] / run["rss_one"], 3),
            "maps_per_shard_after_one": sorted(set(run["maps_one"].values())),
            "maps_per_shard_with_all_open": sorted(set(run["maps_all"].values()))}


def report(result: dict, info: dict) -> str:
    single, together = result["one_at_a_time"], result["at_once"]
    slowdown = together["median_s"] / single["median_s"]
    maps = "/".join(map(str, result["maps_per_shard_with_all_open"]))
    table = "\n".join([
        "| sessions searching | searches | link → gallery median s | max s |",
        "|---|---:|---:|---:|",
        f"| 1, cold server (model load, cache mapped) | 1 | {result['cold_first_session_s']:.2f} | – |",
        f"| 1 at a time | {len(single['all_s'])} | {single['median_s']:.2f} | {single['max_s']:.2f} |",
        f"| {result['sessions']} at once | {len(together['all_s'])} | {together['median_s']:.2f} | "
        f"{together['max_s']:.2f} |",
    ])
    return (f"`{command_line()}` · {now()}\n\n{machine_line(info)}\n\n"
            f"{result['images']:,} imagenette-val photos, cache {Path(result['cache']).name} "
            f"({result['shards']} shards), k={result['top_k']}, the query left out. Each search is a link (query "
            "image, its middle ninth as the box) opened in its own chromium context, i.e. its own Streamlit session, "
            "every one a different image; latency runs from opening the link to the gallery with every thumbnail "
            "loaded, so it includes loading the page. With 2 CPUs shared by the server, chromium and other agents' "
            "jobs, the figures are noisy.\n\n"
            f"{table}\n\n"
            f"{result['sessions']} at once vs 1 at a time: median {slowdown:.1f}× slower. Every gallery equal to the "
            f"library's top {result['top_k']} for its query: {not result['wrong_galleries']}. Server resident memory "
            f"(VmRSS): {result['rss_after_one_mib']:.0f} MiB after the first session, "
            f"{result['rss_with_all_open_mib']:.0f} MiB with the {result['sessions']} also open "
            f"(**{result['rss_ratio']:.2f}×**). Memory maps of each shard file in the server: {maps} "
            f"(one map per file, shared by every session).\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache-dir", type=Path, default=REPO / "data" / "cache")
    parser.add_argument("--sessions", type=int, default=8, help="sessions searching at once")
    parser.add_argument("--single", type=int, default=3, help="sessions searching one after another, for the baseline")
    parser.add_argument("--top-k", type=int, default=12)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.single < 1:
        parser.error("--sessions and --single must be at least 1")
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2
    info = machine()
    result = measure(args.data.resolve(), args.cache_dir.resolve(), args.single, args.sessions, args.top_k)
    text = report(result, info)
    print(json.dumps(result, indent=2) if args.json else text)
    if not args.no_record:
        append_results(f"Concurrent users: 1 vs {args.sessions} dashboard sessions", text)
    return 1 if result["wrong_galleries"] else 0


if __name__ == "__main__":
    sys.exit(main())
