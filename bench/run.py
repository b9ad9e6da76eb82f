"""Side-by-side benchmark: strongroom vs restic vs borg on the same nightly chat exports.

One run, one corpus (bench/corpus.py): for every night the full export is rewritten in place
(fresh mtimes) and each tool backs it up.  Then each tool restores the latest snapshot (the
result is compared byte for byte with the export), runs a full data check, and forgets all but
the last ``--keep`` snapshots with prune.  Every step runs as a child process; its wall time,
CPU time and peak RSS come from ``os.wait4`` (the child's own rusage, not a running maximum).

Settings (chosen to be comparable; all are the tools' defaults unless named):
- strongroom: defaults (text chunks 4K:16K:64K, binary 256K:1M:4M, zstd 3, AES-256-GCM).
- restic: ``--repository-version 2`` (compressed; default compression "auto").
- borg 1.2: ``--encryption repokey-blake2``, ``--compression zstd,3`` (the same zstd level as
  strongroom), default chunker; ``prune`` is followed by ``compact`` (borg 1.2 frees space only
  there).
Each tool gets its own cache directory under the work dir, and the password comes from the
environment.  Key derivation runs at each tool's default cost on every command.

    python bench/run.py --days 6 --scale 20 --profile attachment-heavy --workdir /tmp/srbench

restic and borgbackup are installed from Debian packages when missing (root only).
"""

from __future__ import annotations

import argparse
import compileall
import filecmp
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

TOOLS = ("strongroom", "restic", "borg")
PASSWORD = "bench-password-not-secret"


@dataclass
class Step:
    seconds: float
    cpu: float
    rss_mb: float  # peak resident set (VmHWM; of the largest process, a forked child included)
    rc: int
    anon_mb: float = 0.0  # peak anonymous memory of the process and its children (Pss_Anon, every 20 ms)


def _peak_anon(pid: int, stop: threading.Event, out: list[float]) -> None:
    """Sample the anonymous memory of the child and its own children (strongroom's backup forks
    one for its catalogue): LMDB's mapped pages count in VmHWM, but are page cache that the
    kernel can drop, so the anonymous part is reported separately. Each process counts its
    proportional share (Pss_Anon), so pages a forked child still shares with its parent count
    once; RssAnon where the kernel has no smaps_rollup."""
    while not stop.wait(0.02):
        total, seen = 0.0, False
        for p in _process_tree(pid):
            kib = _anon_kib(p)
            if kib is not None:
                total, seen = total + kib, True
        if not seen:
            return
        out[0] = max(out[0], total / 1024)


def _process_tree(pid: int) -> list[int]:
    pids = [pid]
    for p in pids:
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                pids.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def _anon_kib(pid: int) -> float | None:
    for path, key in ((f"/proc/{pid}/smaps_rollup", "Pss_Anon:"), (f"/proc/{pid}/status", "RssAnon:")):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return float(line.split()[1])
        except OSError:
            continue
    return None


@dataclass
class ToolResult:
    backups: list[Step] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)  # repository bytes after each night
    repo_bytes: int = 0
    restore: Step | None = None
    restore_ok: bool | None = None
    check: Step | None = None
    prune: Step | None = None
    repo_bytes_after_prune: int = 0
    notes: list[str] = field(default_factory=list)


def run_step(cmd: list[str], env: dict[str, str], cwd: str | None = None, log=None) -> Step:
    """Run ``cmd`` to completion; measure wall time and the child's own CPU time and peak RSS."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log or subprocess.DEVNULL,
                         stderr=log or subprocess.DEVNULL)
    anon, stop = [0.0], threading.Event()
    sampler = threading.Thread(target=_peak_anon, args=(p.pid, stop, anon), daemon=True)
    sampler.start()
    _, status, ru = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    return Step(seconds, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, p.returncode, anon[0])


def source_snapshot(work: Path, source: str) -> Path:
    """A private copy of the strongroom package to benchmark, so that edits to the checkout
    during a long run cannot mix versions.  ``source`` is a directory holding ``strongroom/``
    (e.g. ``src`` for the working tree) or a git revision of this checkout (default HEAD)."""
    dest = work / "strongroom-src"
    if Path(source, "strongroom").is_dir():
        shutil.copytree(Path(source, "strongroom"), dest / "strongroom", ignore=shutil.ignore_patterns("__pycache__"))
    else:
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", source, "src/strongroom"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "--strip-components=1", "-C", str(dest)], input=archive, check=True)
    # byte-compile as an installed package is: with PYTHONDONTWRITEBYTECODE set (as on the
    # benchmark machine) every command would otherwise recompile ~80 modules (0.1-0.4 s)
    compileall.compile_dir(str(dest), quiet=1)
    return dest


def source_label(source: str) -> str:
    if Path(source, "strongroom").is_dir():
        rev = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip()
        return f"working tree {source} at {rev}"
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", source], capture_output=True, text=True)
    return f"git {source} = {rev.stdout.strip()}"


def dir_bytes(path: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def trees_equal(a: Path, b: Path) -> bool:
    """Same relative file names and byte-identical contents."""
    def files(root: Path) -> set[str]:
        return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}
    fa, fb = files(a), files(b)
    return fa == fb and all(filecmp.cmp(a / r, b / r, shallow=False) for r in sorted(fa))


def ensure_tools(tools: list[str]) -> None:
    missing = [pkg for tool, pkg in (("restic", "restic"), ("borg", "borgbackup"))
               if tool in tools and shutil.which(tool) is None]
    if missing:
        subprocess.run(["apt-get", "update"], check=True)
        subprocess.run(["apt-get", "install", "-y", *missing], check=True)


def version(cmd: list[str], env: dict[str, str]) -> str:
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"


class Tool:
    """How one tool does each step.  ``repo``/``cache`` are per-tool directories."""

    name = ""

    def __init__(self, work: Path, log) -> None:
        self.repo = work / "repos" / self.name
        self.cache = work / "cache" / self.name
        self.target = work / "restore" / self.name
        self.log = log
        self.env = dict(os.environ)
        self.result = ToolResult()

    def run(self, args: list[str], cwd: str | None = None) -> Step:
        self.log.write(f"\n$ {' '.join(args)}\n")
        self.log.flush()
        step = run_step(args, self.env, cwd, self.log)
        if step.rc != 0:
            self.result.notes.append(f"`{' '.join(args[:4])} …` exited {step.rc}")
        return step

    def restored_root(self, export: Path) -> Path:
        return self.target / str(export).lstrip("/")


class Strongroom(Tool):
    name = "strongroom"

    def __init__(self, work: Path, log, src: Path, backup_args: list[str] = (), init_args: list[str] = ()) -> None:
        super().__init__(work, log)
        self.init_args = list(init_args)
        self.env.update(STRONGROOM_REPO=str(self.repo), STRONGROOM_PASSWORD=PASSWORD,
                        STRONGROOM_CACHE_DIR=str(self.cache), PYTHONPATH=str(src))
        self.cmd = [sys.executable, "-m", "strongroom"]
        self.backup_args = list(backup_args)

    def has(self, *args: str) -> bool:
        r = subprocess.run([*self.cmd, *args, "--help"], env=self.env, capture_output=True, text=True)
        return r.returncode == 0 and (len(args) < 2 or args[-1] in r.stdout)

    def init(self): self.run([*self.cmd, "init", *self.init_args])
    def backup(self, path, day):
        return self.run([*self.cmd, "backup", str(path), "--host", "bench", *self.backup_args])

    def restore(self, export): return self.run([*self.cmd, "restore", "latest", "--target", str(self.target)])

    def check(self):
        r = subprocess.run([*self.cmd, "check", "--help"], env=self.env, capture_output=True, text=True)
        if "--read-data" in r.stdout:
            return self.run([*self.cmd, "check", "--read-data"])
        self.result.notes.append("`check --read-data` does not exist yet: measured `check` (structure only)")
        return self.run([*self.cmd, "check"])

    def prune(self, keep):
        forget = subprocess.run([*self.cmd, "forget", "--help"], env=self.env, capture_output=True, text=True)
        if forget.returncode != 0:
            self.result.notes.append("`forget`/`prune` do not exist yet: skipped")
            return None
        if "--prune" in forget.stdout:
            return self.run([*self.cmd, "forget", "--keep-last", str(keep), "--prune"])
        a = self.run([*self.cmd, "forget", "--keep-last", str(keep)])
        b = self.run([*self.cmd, "prune"])
        return Step(a.seconds + b.seconds, a.cpu + b.cpu, max(a.rss_mb, b.rss_mb), a.rc or b.rc,
                    max(a.anon_mb, b.anon_mb))


class Restic(Tool):
    name = "restic"

    def __init__(self, work: Path, log) -> None:
        super().__init__(work, log)
        self.env.update(RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=str(self.repo))
        self.cmd = ["restic", "--quiet", "--cache-dir", str(self.cache)]

    def init(self): self.run([*self.cmd, "init", "--repository-version", "2"])
    def backup(self, path, day): return self.run([*self.cmd, "backup", str(path), "--host", "bench"])
    def restore(self, export): return self.run([*self.cmd, "restore", "latest", "--target", str(self.target)])
    def check(self): return self.run([*self.cmd, "check", "--read-data"])
    def prune(self, keep): return self.run([*self.cmd, "forget", "--keep-last", str(keep), "--prune"])


class Borg(Tool):
    name = "borg"

    def __init__(self, work: Path, log) -> None:
        super().__init__(work, log)
        self.env.update(BORG_PASSPHRASE=PASSWORD, BORG_REPO=str(self.repo), BORG_BASE_DIR=str(self.cache),
                        BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")

    def init(self): self.run(["borg", "init", "--encryption", "repokey-blake2"])

    def backup(self, path, day):
        return self.run(["borg", "create", "--compression", "zstd,3", f"::day-{day:03d}", str(path)])

    def restore(self, export):
        self.target.mkdir(parents=True, exist_ok=True)
        return self.run(["borg", "extract", f"::{self.last}"], cwd=str(self.target))

    def check(self): return self.run(["borg", "check", "--verify-data"])

    def prune(self, keep):
        a = self.run(["borg", "prune", "--keep-last", str(keep)])
        b = self.run(["borg", "compact"])
        return Step(a.seconds + b.seconds, a.cpu + b.cpu, max(a.rss_mb, b.rss_mb), a.rc or b.rc,
                    max(a.anon_mb, b.anon_mb))


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "–"


def fmt_step(s: Step | None) -> tuple[str, str]:
    return ("–", "–") if s is None else (f"{s.seconds:.1f}", f"{s.rss_mb:.0f}")


def report(results: dict[str, ToolResult], days: list[dict]) -> str:
    names = list(results)
    lines = ["### Backup per night (wall seconds; peak RSS; repository growth)", "",
             "| night | export MB | " + " | ".join(names) + " |",
             "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
    for d, info in enumerate(days):
        def cell(n):
            r = results[n]
            grown = "" if len(r.sizes) <= d else f"; +{(r.sizes[d] - (r.sizes[d - 1] if d else 0)) / 1e6:.1f} MB"
            return f"{r.backups[d].seconds:.1f} s; {r.backups[d].rss_mb:.0f} MB{grown}"
        cells = [cell(n) for n in names]
        lines.append(f"| {d} | {info['bytes'] / 1e6:.1f} | " + " | ".join(cells) + " |")

    def total(n):
        return sum(s.seconds for s in results[n].backups)

    def later(n):  # nights after the first: the "mostly duplicate" case the target is about
        return sum(s.seconds for s in results[n].backups[1:]) / max(1, len(results[n].backups) - 1)

    rows = [
        ("backup, all nights (s)", {n: total(n) for n in names}, "{:.1f}"),
        ("backup, mean of nights ≥1 (s)", {n: later(n) for n in names}, "{:.2f}"),
        ("backup CPU, mean of nights ≥1 (s)",
         {n: sum(s.cpu for s in results[n].backups[1:]) / max(1, len(results[n].backups) - 1) for n in names}, "{:.2f}"),
        ("backup peak RSS (MB)", {n: max(s.rss_mb for s in results[n].backups) for n in names}, "{:.0f}"),
        ("backup peak anonymous memory, PSS (MB)", {n: max(s.anon_mb for s in results[n].backups) or None for n in names}, "{:.0f}"),
        ("repository size (MB)", {n: results[n].repo_bytes / 1e6 for n in names}, "{:.1f}"),
        ("restore (s)", {n: results[n].restore and results[n].restore.seconds for n in names}, "{:.1f}"),
        ("restore CPU (s)", {n: results[n].restore and results[n].restore.cpu for n in names}, "{:.1f}"),
        ("restore peak RSS (MB)", {n: results[n].restore and results[n].restore.rss_mb for n in names}, "{:.0f}"),
        ("restore peak anonymous memory, PSS (MB)", {n: results[n].restore and results[n].restore.anon_mb or None for n in names}, "{:.0f}"),
        ("check with data (s)", {n: results[n].check and results[n].check.seconds for n in names}, "{:.1f}"),
        ("check CPU (s)", {n: results[n].check and results[n].check.cpu for n in names}, "{:.1f}"),
        ("check peak RSS (MB)", {n: results[n].check and results[n].check.rss_mb for n in names}, "{:.0f}"),
        ("check peak anonymous memory, PSS (MB)", {n: results[n].check and results[n].check.anon_mb or None for n in names}, "{:.0f}"),
        ("forget+prune (s)", {n: results[n].prune and results[n].prune.seconds for n in names}, "{:.1f}"),
        ("forget+prune peak RSS (MB)", {n: results[n].prune and results[n].prune.rss_mb for n in names}, "{:.0f}"),
        ("forget+prune peak anonymous memory, PSS (MB)", {n: results[n].prune and results[n].prune.anon_mb or None for n in names}, "{:.0f}"),
        ("size after prune (MB)", {n: results[n].repo_bytes_after_prune / 1e6 or None for n in names}, "{:.1f}"),
    ]
    ratio_cols = [(o, f"strongroom/{o}") for o in ("restic", "borg") if o in names and "strongroom" in names]
    lines += ["", "### Summary", "", "| measure | " + " | ".join(names + [c for _, c in ratio_cols]) + " |",
              "| --- | " + " | ".join("---" for _ in names + ratio_cols) + " |"]
    for label, vals, f in rows:
        if all(vals[n] is None for n in names):
            continue  # e.g. anonymous RSS in results from before it was measured
        cells = [f.format(vals[n]) if vals[n] is not None else "–" for n in names]
        cells += [ratio(vals["strongroom"], vals[o]) for o, _ in ratio_cols]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Ratios are strongroom ÷ other: below 1 means strongroom is faster, smaller or leaner.",
              "", "Restore verified byte for byte: " +
              ", ".join(f"{n} {'yes' if r.restore_ok else 'NO'}" for n, r in results.items())]
    for n, r in results.items():
        for note in dict.fromkeys(r.notes):
            lines.append(f"- {n}: {note}")
    return "\n".join(lines)


def load_results(path: Path) -> tuple[dict[str, ToolResult], list[dict]]:
    """Results from a run's results.json (to re-print its report)."""
    doc = json.loads(path.read_text())
    results = {}
    for name, r in doc["results"].items():
        step = lambda d: Step(**d) if d else None  # noqa: E731
        results[name] = ToolResult([Step(**b) for b in r["backups"]], r.get("sizes", []), r["repo_bytes"],
                                   step(r["restore"]),
                                   r["restore_ok"], step(r["check"]), step(r["prune"]),
                                   r["repo_bytes_after_prune"], r["notes"])
    return results, doc["days"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", metavar="RESULTS_JSON", help="only re-print the report of an earlier run")
    ap.add_argument("--days", type=int, default=6)
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--profile", choices=("attachment-heavy", "text-heavy"), default="attachment-heavy")
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of " + ",".join(TOOLS))
    ap.add_argument("--workdir", default="/tmp/srbench")
    ap.add_argument("--keep", type=int, default=2, help="snapshots kept by forget")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--strongroom-src", default="HEAD",
                    help="what to benchmark: a git revision of this checkout (default HEAD) or a "
                         "directory holding strongroom/ (e.g. src for the working tree); copied first")
    ap.add_argument("--strongroom-init-arg", action="append", default=[], metavar="ARG",
                    help="an extra option for strongroom init (e.g. --strongroom-init-arg=--group-size=0)")
    ap.add_argument("--strongroom-backup-arg", action="append", default=[], metavar="ARG",
                    help="an extra option for every strongroom backup (e.g. --strongroom-backup-arg=--no-catalog)")
    a = ap.parse_args(argv)
    if a.report:
        print(report(*load_results(Path(a.report))))
        return 0
    tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    if not tools or any(t not in TOOLS for t in tools):
        ap.error(f"--tools must name some of {', '.join(TOOLS)}")

    work = Path(a.workdir).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    src = source_snapshot(work, a.strongroom_src)
    sys.path.insert(0, str(src))  # the corpus generator (strongroom.samples) from the same copy
    from corpus import params_for, write_night
    ensure_tools(tools)
    log = open(work / "commands.log", "w")  # noqa: SIM115 - closed at exit
    by_name = {"strongroom": lambda: Strongroom(work, log, src, a.strongroom_backup_arg, a.strongroom_init_arg),
               "restic": lambda: Restic(work, log),
               "borg": lambda: Borg(work, log)}
    runners = [by_name[t]() for t in tools]
    export = work / "export"
    params = params_for(a.profile, a.scale, a.seed)

    env = dict(os.environ, PYTHONPATH=str(src))
    machine = {
        "cpus": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(), "kernel": platform.release(),
        "strongroom": version([sys.executable, "-m", "strongroom", "--version"], env),
        "restic": version(["restic", "version"], env) if "restic" in tools else None,
        "borg": version(["borg", "--version"], env) if "borg" in tools else None,
        "git": source_label(a.strongroom_src),
        "strongroom backup options": " ".join(a.strongroom_backup_arg) or None,
        "strongroom init options": " ".join(a.strongroom_init_arg) or None,
    }
    print(json.dumps(machine), flush=True)
    for r in runners:
        r.init()

    days = []
    for day in range(a.days):
        stats = write_night(export, day, params)
        days.append(asdict(stats))
        print(f"night {day}: {stats.bytes / 1e6:.1f} MB, {stats.files} files, "
              f"attachments {stats.attachment_share:.0%}", flush=True)
        for r in runners:
            step = r.backup(export, day)
            r.result.backups.append(step)
            r.result.sizes.append(dir_bytes(r.repo))
            print(f"  {r.name:10} backup {step.seconds:7.2f} s  cpu {step.cpu:7.2f} s  "
                  f"rss {step.rss_mb:6.0f} MB  rc {step.rc}", flush=True)
    for r in runners:
        if isinstance(r, Borg):
            r.last = f"day-{a.days - 1:03d}"
        r.result.repo_bytes = dir_bytes(r.repo)
        r.result.restore = r.restore(export)
        r.result.restore_ok = trees_equal(export, r.restored_root(export))
        shutil.rmtree(r.target, ignore_errors=True)
        r.result.check = r.check()
        r.result.prune = r.prune(a.keep)
        r.result.repo_bytes_after_prune = dir_bytes(r.repo) if r.result.prune else 0
        print(f"  {r.name:10} repo {r.result.repo_bytes / 1e6:.1f} MB, restore "
              f"{fmt_step(r.result.restore)[0]} s (ok={r.result.restore_ok}), check {fmt_step(r.result.check)[0]} s, "
              f"prune {fmt_step(r.result.prune)[0]} s", flush=True)

    results = {r.name: r.result for r in runners}
    text = report(results, days)
    header = (f"Run: `python bench/run.py --days {a.days} --scale {a.scale:g} --profile {a.profile} "
              f"--tools {','.join(tools)} --keep {a.keep} --seed {a.seed} --strongroom-src {a.strongroom_src}"
              + "".join(f" --strongroom-init-arg={arg}" for arg in a.strongroom_init_arg)
              + "".join(f" --strongroom-backup-arg={arg}" for arg in a.strongroom_backup_arg) + "`\n\n"
              f"Machine: {machine['cpus']} CPUs, {machine['memory_gb']} GiB; Python {machine['python']}; "
              f"{machine['strongroom']} ({machine['git']}); {machine['restic']}; {machine['borg']}\n")
    print("\n" + header + "\n" + text)
    (work / "results.md").write_text(header + "\n" + text + "\n")
    (work / "results.json").write_text(json.dumps(
        {"machine": machine, "args": vars(a), "days": days,
         "results": {n: asdict(r) for n, r in results.items()}}, indent=1))
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
