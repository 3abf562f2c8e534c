"""Screenshots of a run's TensorBoard board in headless Chromium, and a check of its event files.

    python benchmarks/tensorboard_screenshots.py      # about a minute on 2 CPU cores

What it does:

1. trains a tiny VAE with ``bin/train`` (300 steps, a point every 50 steps, a sample grid every
   100, a 2-repeat evaluation of the NELBO and IWAE-1/10; no full-test-set bounds) into a
   temporary ``--out_dir``;
2. checks the event files of ``<run>/logs`` without a browser (``EventAccumulator``): ``train``
   and ``validation`` hold the same scalar tags (``bound/nelbo``, ``bound/kl``, ``bound/rec``) at
   the global steps 50, 100, ..., 300; ``samples`` holds ``samples/grid`` at 100, 200, 300;
   ``evaluation`` is one event file of ``evaluation/...`` tags at the last step; no tag anywhere
   ends in ``seconds`` (bookkeeping belongs to the ``evaluation/run`` text table);
3. starts TensorBoard on a free port of 127.0.0.1 with ``--logdir`` that logs folder, waits until
   it serves every run, and takes a full-page PNG of the TIME SERIES, SCALARS and IMAGES
   dashboards with headless Chromium into ``docs/gallery/tensorboard/`` (one file per dashboard,
   named after it), then stops TensorBoard;
4. checks that the pictures are not blank (enough colours), and that the TIME SERIES page, as
   Chromium's DOM has it after the same wait (``--dump-dom``), draws a line per run (train,
   validation) in each chart of the ``train`` tags, with a vertex per logged step.

It exits with status 1 if any check fails (and says which), 2 if a tool is missing or fails.

Needs Chromium: ``apt-get install -y chromium-headless-shell`` (Debian; or ``chromium``, or pass
``--chromium=PATH``). TensorBoard comes with TensorFlow.

Notes on the browser:

* TensorBoard is a JavaScript app that fetches its data after the page loads, so each capture
  runs with ``--virtual-time-budget`` (``--budget_ms``, 15 s of virtual time, about 4 s of real
  time): Chromium fast-forwards the page's timers and network until it has been idle that long.
* The TIME SERIES charts draw with WebGL, which headless Chromium without a GPU does not provide
  (the charts come out as empty axes, even with SwiftShader); the capture adds ``?forceSVG=true``,
  TensorBoard's switch to its SVG renderer. The board in a desktop browser uses WebGL.
* The app scrolls inside a fixed-height frame, so "full page" means a tall window
  (``--max_height``) cropped to where the content ends. A picture over ``--max_kb`` is reduced to
  256 colours.

Other uses:

    python benchmarks/tensorboard_screenshots.py --logdir=runs/model=vae_z=10_run=0000/logs \\
        --out=/tmp/board        # an existing run's board; the step checks use the flags below
    python benchmarks/tensorboard_screenshots.py --no_screenshots     # the event checks only
    python benchmarks/tensorboard_screenshots.py --dashboards=timeseries,text --keep
"""

import argparse
import glob
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

# TensorBoard's event reader imports TensorFlow: keep its C++ start-up chatter out (also of the
# TensorBoard server, which inherits the environment).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tfp_vae import quiet  # noqa: E402  (imports nothing heavy)

TRAIN = os.path.join(ROOT, "bin", "train")
RUNS = ("train", "validation", "samples", "evaluation")
BOUND_TAGS = {"bound/nelbo", "bound/kl", "bound/rec"}

# Dashboard -> the URL (after http://host:port/) that shows it.
DASHBOARDS = {
    "timeseries": "?forceSVG=true#timeseries",
    "scalars": "#scalars",
    "images": "#images",
    "text": "#text",
}
# A data series of the time series' SVG line chart: <path d="M x,y L x,y ..." style="fill:
# none; stroke: rgb(...); ...">. (Its colour per run changes from one page load to another.)
SERIES_PATH = re.compile(r'<path d="(M[-\d.e]+,[-\d.e]+(?:L[-\d.e]+,[-\d.e]+)+)" '
                         r'style="fill: none; stroke: (rgb\([^)]*\))')


class Checks:
    """Collects named pass/fail results and prints them as they come."""

    def __init__(self):
        self.failed = []

    def __call__(self, ok, what, detail=""):
        print(f"  [{'ok' if ok else 'FAIL'}] {what}" + (f": {detail}" if detail else ""))
        if not ok:
            self.failed.append(what)
        return ok


# --------------------------------------------------------------------------- training


def train_tiny_run(out_dir, args):
    """Runs bin/train with the tiny settings into ``out_dir``; returns the run's logs folder."""
    command = [sys.executable, TRAIN, f"--model={args.model}", f"--iter_max={args.iter_max}",
               f"--iter_save={args.iter_save}", f"--log_every={args.log_every}",
               "--eval_repeats=2", "--iwae_samples=1,10", "--nofull_test", f"--out_dir={out_dir}"]
    print("training:", " ".join(command))
    start = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    if done.returncode:
        print(done.stdout[-4000:])
        sys.exit(f"bin/train failed with status {done.returncode}")
    logs = glob.glob(os.path.join(glob.escape(out_dir), "*", "logs"))
    if len(logs) != 1:
        sys.exit(f"expected one run with a logs folder in {out_dir}, found {logs}")
    print(f"  trained in {time.monotonic() - start:.0f} s: {logs[0]}")
    return logs[0]


# --------------------------------------------------------------------------- event files


def read_run(folder):
    """``{tag: (plugin name, [(step, value)])}`` of one run folder, every event kept; values are
    numpy arrays (a scalar's number, an image's [width, height, png...] strings, a text)."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util
    accumulator = event_accumulator.EventAccumulator(
        folder, size_guidance={kind: 0 for kind in (event_accumulator.SCALARS,
                                                    event_accumulator.IMAGES,
                                                    event_accumulator.TENSORS)})
    accumulator.Reload()
    tags = {}
    # TF2 summaries (tf.summary.scalar/image/text) are stored as tensors with a plugin name.
    for tag in accumulator.Tags()["tensors"]:
        plugin = accumulator.SummaryMetadata(tag).plugin_data.plugin_name
        tags[tag] = (plugin, [(event.step, tensor_util.make_ndarray(event.tensor_proto))
                              for event in accumulator.Tensors(tag)])
    for tag in accumulator.Tags()["scalars"]:  # TF1-style summaries, should any appear
        tags[tag] = ("scalars", [(event.step, event.value) for event in accumulator.Scalars(tag)])
    for tag in accumulator.Tags()["images"]:
        tags[tag] = ("images", [(event.step, None) for event in accumulator.Images(tag)])
    return tags


def every(stride, last):
    """The steps a callback that fires every ``stride`` steps and at the last one writes at."""
    steps = list(range(stride, last + 1, stride))
    return steps if steps and steps[-1] == last else steps + [last]


def check_event_files(logs, args, check):
    """The board's contents, from the event files."""
    print(f"event files of {logs}:")
    found = sorted(name for name in os.listdir(logs) if os.path.isdir(os.path.join(logs, name)))
    check(found == sorted(RUNS), "runs are train, validation, samples, evaluation",
          ", ".join(found))
    with quiet.filtered_stderr():  # TensorFlow's start-up lines, as bin/train filters them
        runs = {run: read_run(os.path.join(logs, run)) for run in RUNS if run in found}
    for run, tags in runs.items():
        for tag, (plugin, events) in sorted(tags.items()):
            steps = [step for step, _ in events]
            shown = steps if len(steps) <= 8 else steps[:3] + ["..."] + steps[-2:]
            print(f"    {run:<10} {plugin:<7} {tag:<32} steps {shown}")

    def scalars(run):
        return {tag: events for tag, (plugin, events) in runs.get(run, {}).items()
                if plugin == "scalars"}

    train, validation = scalars("train"), scalars("validation")
    check(set(train) == set(validation), "train and validation have the same scalar tags",
          f"train {sorted(train)}, validation {sorted(validation)}")
    check(BOUND_TAGS <= set(train), "the bound tags are on the board",
          f"missing {sorted(BOUND_TAGS - set(train))}" if BOUND_TAGS - set(train) else
          ", ".join(sorted(BOUND_TAGS)))
    expected = every(args.log_every, args.iter_max)
    wrong = [f"{run}:{tag} {[s for s, _ in events]}"
             for run, tags in (("train", train), ("validation", validation))
             for tag, events in sorted(tags.items()) if [s for s, _ in events] != expected]
    check(not wrong, f"train and validation scalars are at the global steps {expected}",
          "; ".join(wrong))
    bad = [f"{run}:{tag}" for run, tags in (("train", train), ("validation", validation))
           for tag, events in tags.items() if not all(math.isfinite(float(v)) for _, v in events)]
    check(not bad, "every scalar is finite", ", ".join(bad))

    samples = runs.get("samples", {})
    grid = samples.get("samples/grid")
    grid_steps = [step for step, _ in grid[1]] if grid else None
    expected = every(args.iter_save, args.iter_max)
    check(grid is not None and grid[0] == "images" and grid_steps == expected,
          f"samples/grid images at {expected}",
          f"{grid and grid[0]} at {grid_steps}; the samples run holds {sorted(samples)}")
    if grid:
        width, height = (int(x) for x in grid[1][-1][1][:2])
        print(f"    samples/grid is {width} x {height} pixels")

    event_files = glob.glob(os.path.join(glob.escape(logs), "evaluation", "events.out.tfevents.*"))
    check(len(event_files) == 1, "one event file in evaluation/", f"{len(event_files)} found")
    evaluation = runs.get("evaluation", {})
    plugins = {}
    for tag, (plugin, _) in evaluation.items():
        plugins.setdefault(plugin, []).append(tag)
    check(evaluation and all(tag.startswith("evaluation/") for tag in evaluation),
          "every tag of evaluation/ is evaluation/...",
          ", ".join(f"{plugin}: {len(tags)}" for plugin, tags in sorted(plugins.items())))
    check({"scalars", "images", "text"} <= set(plugins),
          "evaluation/ has scalars, images and the text table", ", ".join(sorted(plugins)))
    steps = sorted({step for _, events in evaluation.values() for step, _ in events})
    check(steps == [args.iter_max], f"the evaluation is at the last step {args.iter_max}",
          f"steps {steps}")
    timed = [f"{run}:{tag}" for run, tags in runs.items() for tag in tags
             if tag.endswith("seconds")]
    check(not timed, "no tag ends in 'seconds'", ", ".join(timed))
    others = [tag for run, tags in runs.items() for tag in tags
              if run in ("train", "validation", "samples")
              and not tag.startswith(("bound/", "classifier/", "samples/"))]
    check(not others, "no stray tags in train, validation or samples", ", ".join(others))
    return len(train), len(every(args.log_every, args.iter_max))


# --------------------------------------------------------------------------- TensorBoard


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def start_tensorboard(logs, timeout):
    """Starts TensorBoard on 127.0.0.1 and waits until it serves every run's tags; returns
    (process, base URL). Its own process group, so that stopping it also stops the data server
    it may start."""
    port = free_port()
    command = [sys.executable, "-m", "tensorboard.main", f"--logdir={logs}",
               "--host=127.0.0.1", f"--port={port}"]
    print("tensorboard:", " ".join(command))
    log = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    base = f"http://127.0.0.1:{port}/"
    start = time.monotonic()
    while True:
        if process.poll() is not None:
            log.seek(0)
            print(log.read()[-4000:])
            sys.exit(f"TensorBoard exited with status {process.returncode}")
        try:
            runs = get_json(base + "data/runs")
            scalars = get_json(base + "data/plugin/scalars/tags")
            images = get_json(base + "data/plugin/images/tags")
            if (set(RUNS) <= set(runs) and {"train", "validation", "evaluation"} <= set(scalars)
                    and {"samples", "evaluation"} <= set(images)):
                break
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            pass
        if time.monotonic() - start > timeout:
            stop(process)
            sys.exit(f"TensorBoard did not serve every run within {timeout} s")
        time.sleep(0.5)
    print(f"  serving {base} after {time.monotonic() - start:.0f} s")
    return process, base


def stop(process):
    """Stops the process group of ``process`` (started with start_new_session)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------- screenshots


def find_chromium(given):
    for name in ([given] if given else
                 ["chromium-headless-shell", "chromium", "chromium-browser",
                  "chrome-headless-shell", "google-chrome"]):
        path = shutil.which(name) or (os.path.isfile(name) and name)
        if path:
            return path
    sys.exit("no Chromium found: apt-get install -y chromium-headless-shell, or --chromium=PATH")


def content_height(picture, margin=16):
    """The row below which ``picture`` is all the colour of its last row, plus ``margin``."""
    import numpy as np
    pixels = np.asarray(picture.convert("RGB"))
    same = np.all(pixels == pixels[-1], axis=(1, 2))
    end = len(pixels)
    while end > 0 and same[end - 1]:
        end -= 1
    return min(len(pixels), end + margin)


def run_chromium(chromium, url, action, args, profile):
    """Chromium on ``url`` with the page given ``args.budget_ms`` of virtual time, then
    ``action`` (``--screenshot=PATH`` or ``--dump-dom``); returns its stdout."""
    command = [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
               "--no-first-run", "--mute-audio", f"--user-data-dir={profile}",
               f"--window-size={args.width},{args.max_height}",
               f"--virtual-time-budget={args.budget_ms}", action, url]
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=args.budget_ms / 1000 + 120)
    if done.returncode:
        print(done.stderr[-4000:])
        sys.exit(f"Chromium failed ({done.returncode}) on {url}")
    return done.stdout


def screenshot(chromium, url, path, args, profile):
    """A full-page PNG of ``url`` at ``path``; returns (height, kilobytes, colours)."""
    import numpy as np
    from PIL import Image
    raw = path + ".raw.png"
    run_chromium(chromium, url, f"--screenshot={raw}", args, profile)
    if not os.path.isfile(raw):
        sys.exit(f"Chromium wrote no screenshot of {url}")
    picture = Image.open(raw).convert("RGB")
    picture = picture.crop((0, 0, picture.width, content_height(picture)))
    os.remove(raw)
    picture.save(path, optimize=True)
    if os.path.getsize(path) > args.max_kb * 1024:
        picture.quantize(256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    pixels = np.asarray(picture).astype(int)[64:]  # below the orange header
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    return picture.height, os.path.getsize(path) / 1024, colours


def check_time_series_lines(chromium, base, args, profile, charts, points, check):
    """The time series' SVG line charts, from the DOM after the same wait as the screenshot:
    at least one line per run (train, validation) per chart, with ``points`` vertices."""
    dom = run_chromium(chromium, base + DASHBOARDS["timeseries"], "--dump-dom", args, profile)
    lines = [(d.count("L") + 1, colour) for d, colour in SERIES_PATH.findall(dom)]
    full = [colour for n, colour in lines if n == points]
    check(len(full) >= 2 * charts and len(set(full)) >= 2,
          f"the time series draws train and validation in its {charts} charts",
          f"{len(full)} lines of {points} points in {len(set(full))} colours "
          f"({len(lines)} lines in all)")


def take_screenshots(base, args, check, charts, points):
    chromium = find_chromium(args.chromium)
    version = subprocess.run([chromium, "--version"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True).stdout.strip()
    print(f"screenshots with {chromium} ({version or 'version unknown'}) into {args.out}:")
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        for name in args.dashboards:
            url = base + DASHBOARDS[name]
            path = os.path.join(args.out, f"{name}.png")
            start = time.monotonic()
            height, kb, colours = screenshot(chromium, url, path, args, profile)
            print(f"    {name}: {url} -> {path} ({args.width} x {height}, {kb:.0f} KB, "
                  f"{time.monotonic() - start:.1f} s)")
            check(colours >= 200 and height >= 400, f"{name}.png is not blank",
                  f"{colours} colours, {height} rows")
            check(kb <= args.max_kb * 1.05, f"{name}.png is at most about {args.max_kb} KB",
                  f"{kb:.0f} KB")
            if name == "timeseries":
                check_time_series_lines(chromium, base, args, profile, charts, points, check)


# --------------------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="See the module docstring for details.")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "gallery", "tensorboard"),
                        help="folder of the PNGs (default: docs/gallery/tensorboard)")
    parser.add_argument("--dashboards", default="timeseries,scalars,images",
                        help=f"comma-separated, of {', '.join(DASHBOARDS)}")
    parser.add_argument("--logdir", help="an existing run's logs folder: no training")
    parser.add_argument("--work_dir", help="where to train (default: a temporary folder, "
                        "removed at the end unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the trained run")
    parser.add_argument("--model", default="vae", help="bin/train --model (default vae)")
    parser.add_argument("--iter_max", type=int, default=300)
    parser.add_argument("--iter_save", type=int, default=100)
    parser.add_argument("--log_every", type=int, default=50)
    parser.add_argument("--no_screenshots", action="store_true",
                        help="check the event files only (no TensorBoard, no browser)")
    parser.add_argument("--chromium", help="the browser (default: the first of "
                        "chromium-headless-shell, chromium, ... on PATH)")
    parser.add_argument("--width", type=int, default=1400, help="window width (default 1400)")
    parser.add_argument("--max_height", type=int, default=4500,
                        help="window height, cropped to the content (default 4500)")
    parser.add_argument("--budget_ms", type=int, default=15000,
                        help="Chromium's --virtual-time-budget per page (default 15000)")
    parser.add_argument("--max_kb", type=int, default=400,
                        help="larger pictures are reduced to 256 colours (default 400)")
    parser.add_argument("--timeout", type=float, default=180,
                        help="seconds to wait for TensorBoard to serve the runs (default 180)")
    args = parser.parse_args()
    args.dashboards = [name.strip() for name in args.dashboards.split(",") if name.strip()]
    unknown = [name for name in args.dashboards if name not in DASHBOARDS]
    if unknown:
        parser.error(f"unknown dashboards {unknown}; known: {', '.join(DASHBOARDS)}")
    args.out = os.path.abspath(args.out)

    start = time.monotonic()
    check = Checks()
    work = None
    try:
        if args.logdir:
            logs = os.path.abspath(args.logdir)
        else:
            work = args.work_dir or tempfile.mkdtemp(prefix="tensorboard-screenshots-")
            logs = train_tiny_run(os.path.abspath(work), args)
        charts, points = check_event_files(logs, args, check)
        if not args.no_screenshots:
            process, base = start_tensorboard(logs, args.timeout)
            try:
                take_screenshots(base, args, check, charts, points)
            finally:
                stop(process)
                print("  TensorBoard stopped")
    finally:
        if work and not args.work_dir and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif work:
            print(f"run kept in {work}")
    print(f"{time.monotonic() - start:.0f} s in all; "
          + (f"{len(check.failed)} check(s) failed: {'; '.join(check.failed)}"
             if check.failed else "every check passed"))
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
