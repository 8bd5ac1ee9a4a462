"""Classroom load test: N students draw a digit at once while a run trains and M tabs watch it.

    python scripts/loadtest.py --students 30 --train --json load.json

What it does, in order, against a fresh `streamlit run app.py` (headless, a free port, a temporary
runs folder) driven by one headless Chromium with one browser context per tab:

1. Warm-up: one Draw tab opens and draws, so that the one-time costs (imports, loading the models)
   are paid and measured apart (`warmup_cpu_s`).
   With --returning, every student's browser opens Draw and draws once now, as one that has used the
   lab before: later its tabs load the lab's scripts (about 110 files) from their cache, as a class
   does from the second visit on, and the server only runs the pages. Without it every student is a
   first visit, the worst case.
2. With --train, a teacher tab starts a LeNet-5 run on all 60,000 images for the most epochs the
   form allows, and reads its images/s alone for --solo-seconds (`solo_img_s`, the median).
3. M watcher tabs open Train, and once the browser has drawn them (SETTLE_S) they stay for
   --watch-seconds with no student at work:
   `background_cpu_per_s` is what the server spends per second on the open Train tabs (they update
   every 2 s while a run trains), `watch_browser_cpu_per_s` what the browser spends on them, and
   `watched_img_s` the run's speed meanwhile (`watched_solo_ratio`: the share of its solo speed left
   with M tabs watching).
4. N students open Draw (`canvas_ready_*`: page open to canvas drawn), all at once or, with --ramp R,
   arriving evenly over R seconds as a class does; then all draw a "1" with the mouse at once
   (`answer_*`: mouse up to the consensus on screen). Meanwhile the teacher
   and watcher tabs read the run's images/s (`busy_img_s`; `busy_solo_ratio` under 1 is the share of
   training speed that is left while the class works).

Server CPU is the user+system time of the streamlit process alone, from /proc/<pid>/stat, over the
two student phases (`server_cpu_open_s`, `server_cpu_draw_s`); `server_cpu_per_student_s` is their
sum over N: what one student opening Draw and drawing once costs the server, the watchers' polling
during those phases included; `server_cpu_per_student_net_s` leaves that polling out, at the rate
measured with the watchers alone. `children_cpu_s` is the CPU of the server's child processes (training
workers, if any) over the same phases. The browser runs on the same machine and takes CPU as well
(`browser_cpu_s`), so latencies on a small machine are upper bounds: when the server's CPU over the
phases is far under one core per second (`server_cpu_s` against `phase_s`; one Python process is
bound to about one core) while the browser's is high, the clients are the bottleneck, not the server.
Exit status 1 if any student or watcher failed or timed out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
CANVAS = "[data-testid=stBidiComponentIsolated] canvas.upper-canvas"
ANSWER = "div.consensus"
PAGE_ERRORS = "[data-testid=stException], [data-testid=stAlertContentError]"
SPEED = re.compile(r"([\d,.]+) img/s")
LIMIT = re.compile(r"may be at most ([\d,]+)")  # the server's limit on epochs x images of a run
ONE = [(145, 35), (135, 245)]  # a "1" on the 280x280 canvas, as in tests/test_browser.py
VIEWPORT = {"width": 1400, "height": 1600}
SETTLE_S = 10  # after the watcher tabs are up: the browser is still drawing them for the first time
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Student:
    canvas_s: float | None = None  # page open to canvas on screen
    answer_s: float | None = None  # mouse up to consensus on screen
    answer: str | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class Report:
    students: int
    returning: bool  # the students' browsers had opened the lab before (its scripts cached)
    watchers: int
    train: bool
    machine: str
    wall_s: float
    warmup_cpu_s: float  # the first Draw tab: imports, model loading, one drawing
    ramp_s: float  # the students arrived evenly over this long (0: all at once)
    background_cpu_per_s: float  # server CPU per second with only the Train tabs open
    watch_browser_cpu_per_s: float  # the browser's CPU per second meanwhile
    watched_img_s: float | None  # the run's speed meanwhile
    watched_solo_ratio: float | None
    watched_readings: int
    server_cpu_open_s: float  # all students opening Draw
    server_cpu_draw_s: float  # all students drawing once
    server_cpu_s: float
    server_cpu_per_student_s: float
    server_cpu_per_student_net_s: float  # less what the Train tabs cost meanwhile at their background rate
    children_cpu_s: float
    browser_cpu_s: float  # the browser's CPU over the same phases, on this same machine
    phase_s: float  # wall time of the two student phases
    answered: int
    correct: int  # answers that read the "1"
    canvas_ready_p50_s: float | None
    canvas_ready_p95_s: float | None
    canvas_ready_max_s: float | None
    answer_p50_s: float | None
    answer_p95_s: float | None
    answer_max_s: float | None
    errors: int  # students without an answer or with an error shown, plus the watchers' errors
    error_messages: list[str]  # the first five
    solo_img_s: float | None
    busy_img_s: float | None
    busy_solo_ratio: float | None
    solo_readings: int
    busy_readings: int
    run_outlasted: bool | None  # the run still trained when the students were done (else busy_img_s is partial)


# ---------------------------------------------------------------------------------------------
# the server and its CPU


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, runs: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, MNIST_LAB_RUNS=str(runs))
    return subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--server.fileWatcherType", "none"],  # an edit to the checkout meanwhile must not rerun the pages
        cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def wait_until_up(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text()[-2000:]
                raise RuntimeError(f"streamlit did not start (exit {process.poll()}):\n{tail}") from None
            time.sleep(0.3)


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM to the whole process group (server and any workers), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()  # fields from 3 (state) on; the name may hold spaces


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), without its children."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICKS


def descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def children_cpu_seconds(pid: int) -> float:
    """Live descendants' CPU plus what finished children left in the server's cutime + cstime."""
    fields = _stat(pid)
    total = (int(fields[13]) + int(fields[14])) / TICKS
    for child in descendants(pid):
        try:
            total += cpu_seconds(child)
        except OSError:
            pass  # ended meanwhile
    return total


def browser_cpu_seconds(server_pid: int) -> float:
    """This script's other descendants: the Playwright driver and Chromium, which share the machine."""
    server = {server_pid, *descendants(server_pid)}
    total = 0.0
    for pid in set(descendants(os.getpid())) - server:
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    return f"{os.cpu_count()} cores, {model}"


# ---------------------------------------------------------------------------------------------
# the tabs


async def new_tab(browser, errors: list[str], timeout_ms: float):
    """A browser context of its own (its own cookies and ?student= token) with one page; every wait on
    it, page loads included, gives up after `timeout_ms`."""
    context = await browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(timeout_ms)
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    return page


async def page_errors(page) -> list[str]:
    shown = page.locator(PAGE_ERRORS)
    return [f"on the page: {(await shown.nth(i).inner_text())[:300]}" for i in range(await shown.count())]


async def open_draw(page, server: str, student: Student) -> None:
    start = time.perf_counter()
    try:
        await page.goto(f"{server}/Draw", wait_until="commit")  # the canvas is what counts
        await page.locator(CANVAS).wait_for()
        student.canvas_s = time.perf_counter() - start
    except Exception as error:  # a timeout or a crash: the student's result, not the test's end
        student.errors.append(f"opening Draw: {type(error).__name__}: {str(error).splitlines()[0]}")


async def draw(page, student: Student) -> None:
    if student.canvas_s is None:
        return
    try:
        box = await page.locator(CANVAS).bounding_box()
        await page.mouse.move(box["x"] + ONE[0][0], box["y"] + ONE[0][1])
        await page.mouse.down()
        for x, y in ONE[1:]:
            await page.mouse.move(box["x"] + x, box["y"] + y, steps=6)
        await page.mouse.up()
        start = time.perf_counter()
        answer = page.locator(ANSWER)
        await answer.wait_for()
        student.answer_s = time.perf_counter() - start
        student.answer = (await answer.inner_text()).strip()
        student.errors += await page_errors(page)
    except Exception as error:
        student.errors.append(f"drawing: {type(error).__name__}: {str(error).splitlines()[0]}")


async def open_train(page, server: str, training: bool, errors: list[str]) -> None:
    """A watcher: Train, until it shows the run's progress (or the form, with no run)."""
    ready = "[data-testid=stProgress]" if training else "[data-testid=stFormSubmitButton]"
    try:
        await page.goto(f"{server}/Train", wait_until="commit")
        await page.locator(ready).first.wait_for()
    except Exception as error:
        errors.append(f"opening Train: {type(error).__name__}: {str(error).splitlines()[0]}")


async def start_run(page, server: str) -> None:
    """The teacher's LeNet-5 (the default architecture) on all 60,000 images, as many epochs as the
    form and the server's limit on a run allow, no early stopping: a run that outlasts the test."""
    await page.goto(f"{server}/Train")
    start = page.get_by_role("button", name="Start training")
    await start.wait_for()
    await page.get_by_label("Run name").fill("loadtest")
    epochs = page.get_by_role("slider", name="Epochs")
    await epochs.press("End")
    await page.get_by_role("slider", name="Training images").press("End")  # "all 60,000" is the last
    patience = page.get_by_label("Early stopping patience", exact=True)
    await patience.fill("0")
    await patience.press("Tab")
    await start.click()
    progress = page.locator("[data-testid=stProgress]").get_by_text(SPEED)
    refused = page.get_by_text(LIMIT)
    failed = page.get_by_text("This run failed")
    await progress.or_(refused).or_(failed).first.wait_for()
    if await refused.count():  # more than a run may be: the most epochs of 60,000 images it allows
        most = int(LIMIT.search(await refused.first.inner_text()).group(1).replace(",", ""))
        await epochs.press("Home")
        for _ in range(max(most // 60_000, 1) - 1):
            await epochs.press("ArrowRight")
        await start.click()
        await progress.or_(failed).first.wait_for()
    if await failed.count():
        raise RuntimeError(f"the teacher's run did not start: {await failed.first.inner_text()}")


async def read_speed(page, timeout_ms: float = 2_000) -> float | None:
    try:
        text = await page.locator("[data-testid=stProgress]").first.inner_text(timeout=timeout_ms)
    except Exception:
        return None  # between two reruns of the fragment, or no run on screen
    found = SPEED.search(text)
    return float(found.group(1).replace(",", "")) if found else None


async def sample_speeds(pages: list, readings: list[float], stop: asyncio.Event, every: float = 1.0) -> None:
    while not stop.is_set():
        for speed in await asyncio.gather(*(read_speed(p) for p in pages)):
            if speed is not None:
                readings.append(speed)
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
        except asyncio.TimeoutError:
            pass


# ---------------------------------------------------------------------------------------------
# the test


async def arrive(delay: float, opening) -> None:
    await asyncio.sleep(delay)
    await opening


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least q % of the values at or under it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(len(ordered) * q / 100), 1) - 1]


async def warm_up(browser, server: str, pid: int, timeout_ms: float) -> float:
    """One Draw tab opens and draws; returns the server CPU it took."""
    warm, cpu = Student(), cpu_seconds(pid)
    page = await new_tab(browser, warm.errors, timeout_ms)
    await open_draw(page, server, warm)
    await draw(page, warm)
    await page.context.close()
    if warm.errors:
        raise RuntimeError(f"the warm-up Draw tab failed: {warm.errors}")
    return cpu_seconds(pid) - cpu


async def visited_before(page, server: str, student: Student):
    """A student who has used the lab in this browser before: the tab opened Draw and drew once, and a
    new tab of the same browser (its cache holding the lab's scripts: Streamlit's bundles are named by
    their content and cached for a year) takes its place, a session of its own."""
    earlier = Student()
    await open_draw(page, server, earlier)
    await draw(page, earlier)
    student.errors += [f"the earlier visit: {m}" for m in earlier.errors]
    fresh = await page.context.new_page()
    fresh.on("pageerror", lambda error: student.errors.append(f"page error: {error}"))
    await page.close()
    return fresh


async def solo_speeds(browser, server: str, seconds: float, timeout_ms: float) -> tuple[object, list[float]]:
    """The teacher tab starts the run and reads its speed, alone, for `seconds`."""
    teacher, readings, stop = await new_tab(browser, [], timeout_ms), [], asyncio.Event()
    await start_run(teacher, server)
    sampler = asyncio.create_task(sample_speeds([teacher], readings, stop))
    await asyncio.sleep(seconds)
    stop.set()
    await sampler
    return teacher, readings


async def run_load(server: str, pid: int, args: argparse.Namespace) -> Report:
    from playwright.async_api import async_playwright

    timeout_ms = args.timeout * 1000
    began = time.perf_counter()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            warmup_cpu = await warm_up(browser, server, pid, timeout_ms)
            students = [Student() for _ in range(args.students)]
            tabs = [(await new_tab(browser, s.errors, timeout_ms), s) for s in students]
            if args.returning:
                tabs = [(await visited_before(pg, server, s), s) for pg, s in tabs]
            trainers, solo = [], []
            if args.train:
                teacher, solo = await solo_speeds(browser, server, args.solo_seconds, timeout_ms)
                trainers.append(teacher)

            watcher_errors: list[str] = []
            watchers = [await new_tab(browser, watcher_errors, timeout_ms) for _ in range(args.watchers)]
            await asyncio.gather(*(open_train(w, server, args.train, watcher_errors) for w in watchers))
            trainers += watchers
            await asyncio.sleep(SETTLE_S)
            watched: list[float] = []
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_speeds(trainers, watched, stop)) if args.train else None
            cpu, client, quiet = cpu_seconds(pid), browser_cpu_seconds(pid), time.perf_counter()
            await asyncio.sleep(args.watch_seconds)
            quiet = time.perf_counter() - quiet
            background = (cpu_seconds(pid) - cpu) / quiet
            watch_browser = (browser_cpu_seconds(pid) - client) / quiet
            stop.set()
            if sampler:
                await sampler

            busy: list[float] = []
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_speeds(trainers, busy, stop)) if args.train else None
            cpu0, kids0, client0 = cpu_seconds(pid), children_cpu_seconds(pid), browser_cpu_seconds(pid)
            phase = time.perf_counter()
            await asyncio.gather(*(arrive(i * args.ramp / args.students, open_draw(pg, server, s))
                                   for i, (pg, s) in enumerate(tabs)))
            cpu1 = cpu_seconds(pid)
            await asyncio.gather(*(draw(pg, s) for pg, s in tabs))
            cpu2, kids2, client2 = cpu_seconds(pid), children_cpu_seconds(pid), browser_cpu_seconds(pid)
            phase = time.perf_counter() - phase
            stop.set()
            if sampler:
                await sampler
            outlasted = await read_speed(trainers[0], 60_000) is not None if args.train else None
            for w in watchers:
                watcher_errors += await page_errors(w)
            if args.screenshots:
                args.screenshots.mkdir(parents=True, exist_ok=True)
                for i, (pg, s) in enumerate(tabs):
                    if s.errors or s.answer_s is None:
                        await pg.screenshot(path=args.screenshots / f"student-{i}.png", full_page=True)
        finally:
            await browser.close()

    canvas = [s.canvas_s for s in students if s.canvas_s is not None]
    answers = [s.answer_s for s in students if s.answer_s is not None]
    messages = [f"watcher: {m}" for m in watcher_errors] + [m for s in students for m in s.errors]
    failed = sum(1 for s in students if s.errors or s.answer_s is None) + len(watcher_errors)
    solo_speed = statistics.median(solo) if solo else None
    busy_speed = statistics.median(busy) if busy else None
    watched_speed = statistics.median(watched) if watched else None
    return Report(
        students=args.students, returning=args.returning, watchers=args.watchers, train=args.train, machine=machine(),
        wall_s=time.perf_counter() - began, warmup_cpu_s=warmup_cpu, ramp_s=args.ramp,
        background_cpu_per_s=background, watch_browser_cpu_per_s=watch_browser,
        watched_img_s=watched_speed, watched_readings=len(watched),
        watched_solo_ratio=watched_speed / solo_speed if solo_speed and watched_speed else None,
        server_cpu_open_s=cpu1 - cpu0, server_cpu_draw_s=cpu2 - cpu1, server_cpu_s=cpu2 - cpu0,
        server_cpu_per_student_s=(cpu2 - cpu0) / args.students, children_cpu_s=kids2 - kids0,
        server_cpu_per_student_net_s=max(cpu2 - cpu0 - background * phase, 0.0) / args.students,
        browser_cpu_s=client2 - client0, phase_s=phase,
        answered=len(answers), correct=sum(s.answer == "1" for s in students),
        canvas_ready_p50_s=percentile(canvas, 50), canvas_ready_p95_s=percentile(canvas, 95),
        canvas_ready_max_s=max(canvas, default=None),
        answer_p50_s=percentile(answers, 50), answer_p95_s=percentile(answers, 95),
        answer_max_s=max(answers, default=None),
        errors=failed, error_messages=messages[:5],
        solo_img_s=solo_speed, busy_img_s=busy_speed,
        busy_solo_ratio=busy_speed / solo_speed if solo_speed and busy_speed else None,
        solo_readings=len(solo), busy_readings=len(busy), run_outlasted=outlasted,
    )


def show(report: Report) -> str:
    def s(value: float | None, unit: str = " s") -> str:
        return "–" if value is None else f"{value:.2f}{unit}"

    r = report
    lines = [
        f"MNIST CNN Lab load test · {r.machine}",
        f"  {r.students} {'returning' if r.returning else 'first-time'} students, {r.watchers} watchers, "
        f"training {'on' if r.train else 'off'}; "
        f"arriving over {r.ramp_s:g} s; wall {r.wall_s:.1f} s, student phases {r.phase_s:.1f} s",
        f"  answered      {r.answered}/{r.students} (read as 1: {r.correct}); errors {r.errors}",
        f"  canvas ready  p50 {s(r.canvas_ready_p50_s)}  p95 {s(r.canvas_ready_p95_s)}  max {s(r.canvas_ready_max_s)}",
        f"  answer        p50 {s(r.answer_p50_s)}  p95 {s(r.answer_p95_s)}  max {s(r.answer_max_s)}",
        f"  server CPU    {r.server_cpu_s:.2f} s = open {r.server_cpu_open_s:.2f} + draw {r.server_cpu_draw_s:.2f}; "
        f"{r.server_cpu_per_student_s:.3f} s per student, {r.server_cpu_per_student_net_s:.3f} s without the "
        "Train tabs' updates",
        f"                warm-up tab {r.warmup_cpu_s:.2f} s; Train tabs alone {r.background_cpu_per_s:.3f} s/s "
        f"(the browser {r.watch_browser_cpu_per_s:.3f} s/s); "
        f"child processes {r.children_cpu_s:.2f} s; the browser {r.browser_cpu_s:.2f} s",
    ]
    if r.train:
        lines.append(f"  training      solo {s(r.solo_img_s, ' img/s')} ({r.solo_readings} readings), "
                     f"watched {s(r.watched_img_s, ' img/s')} ({r.watched_readings}), "
                     f"ratio {s(r.watched_solo_ratio, '')}; "
                     f"with the students {s(r.busy_img_s, ' img/s')} ({r.busy_readings}), "
                     f"ratio {s(r.busy_solo_ratio, '')}"
                     + ("" if r.run_outlasted else "; the run ended before the students did"))
    lines += [f"  ! {m}" for m in r.error_messages]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, required=True, help="tabs that open Draw and draw at once")
    parser.add_argument("--train", action="store_true", help="a LeNet-5 run trains throughout")
    parser.add_argument("--returning", action="store_true",
                        help="students whose browsers opened the lab before, so it loads from their cache")
    parser.add_argument("--watchers", type=int, default=None, help="tabs that watch the run (default min(N, 6))")
    parser.add_argument("--json", type=Path, default=None, help="write the report here too")
    parser.add_argument("--port", type=int, default=None, help="the server's port (default: a free one)")
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds over which the students arrive")
    parser.add_argument("--watch-seconds", type=float, default=15.0,
                        help="how long the watchers alone are measured")
    parser.add_argument("--solo-seconds", type=float, default=15.0, help="how long to read the run's solo speed")
    parser.add_argument("--screenshots", type=Path, default=None, help="save the failed students' pages here")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds each page step may take")
    args = parser.parse_args(argv)
    if args.students < 1:
        parser.error(f"--students must be 1 or more, got {args.students}")
    if args.ramp < 0 or args.watch_seconds <= 0:
        parser.error("--ramp must be 0 or more and --watch-seconds more than 0")
    args.watchers = min(args.students, 6) if args.watchers is None else args.watchers

    port = args.port or free_port()
    server = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="loadtest-runs-") as runs:
        log = Path(runs) / "server.log"
        process = start_server(port, Path(runs) / "runs", log)
        try:
            wait_until_up(server, process, log)
            report = asyncio.run(run_load(server, process.pid, args))
        except BaseException:
            print(f"the server's log ends:\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise
        finally:
            stop_server(process)
    print(show(report))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
