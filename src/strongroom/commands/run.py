"""The `run` use case: everything a policy file asks for, in one unattended pass.

For each selected source: back up into its repository. Then, for each repository that received
a backup: forget by the retention policy, prune when due, check (with a read-data share), and
for each of its off-site targets: copy every snapshot there, then forget, prune and (if asked)
check there too.

Each step is isolated: a failing source or step is recorded and the run goes on, so one broken
export never costs the other sources their backup. Steps a failed step makes pointless are
still tried (a forget after a failed backup is safe: retention counts existing snapshots only).
The exit code is the worst step's: any error beats a partial backup (3), which beats success.

Nothing here prints: steps go to ``on_step`` as they finish and into the returned result.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Protocol

from strongroom.commands.backup import run_backup
from strongroom.commands.check import run_check
from strongroom.commands.copy import CopySelection, run_copy
from strongroom.commands.forget import run_forget
from strongroom.commands.prune import run_prune
from strongroom.commands.read_data import Subset
from strongroom.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, StrongroomError
from strongroom.jobs import notify
from strongroom.jobs.metrics import render_metrics
from strongroom.jobs.policyfile import NotifySpec, PolicyFile, RepositorySpec, SourceSpec
from strongroom.jobs.state import RunState, default_state_dir, write_atomically
from strongroom.repository import Repository
from strongroom.storage.cache import CachedStorage

MAX_WARNINGS_KEPT = 20  # per backup step, in the result (all of them go to the warn callback)


@dataclass
class StepResult:
    job: str  # the source name for a backup; the repository name for the other steps
    step: str  # open | backup | forget | prune | check | copy
    repository: str
    status: str = "ok"  # ok | partial | failed | skipped
    exit_code: int = EXIT_OK
    message: str = ""
    snapshot: str | None = None
    bytes_read: int = 0
    bytes_added: int = 0
    duration_s: float = 0.0
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class RepositoryFacts:
    name: str
    size_bytes: int | None = None  # stored pack bytes
    snapshots: int | None = None
    check_errors: int | None = None  # None: not checked in this run


@dataclass
class RunResult:
    config: str
    host: str
    started: float  # unix time
    duration_s: float = 0.0
    jobs: list[str] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    repositories: dict[str, RepositoryFacts] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # notifier, state and metrics problems
    notifications_sent: int = 0  # deliveries that succeeded (a command and a URL count apart)

    @property
    def exit_code(self) -> int:
        return worst_exit_code(s.exit_code for s in self.steps)

    def to_json(self) -> dict:
        return {"config": self.config, "host": self.host, "exit_code": self.exit_code,
                "started": datetime.fromtimestamp(self.started, timezone.utc).isoformat(),
                "duration_s": self.duration_s, "jobs": self.jobs, "steps": [s.to_json() for s in self.steps],
                "repositories": {n: dict(f.__dict__) for n, f in self.repositories.items()},
                "warnings": self.warnings, "notifications_sent": self.notifications_sent}


def worst_exit_code(codes) -> int:
    """Errors (any code but 0 and 3) beat a partial backup (3), which beats success; the first
    error wins among errors."""
    worst = EXIT_OK
    for code in codes:
        rank = 0 if code == EXIT_OK else 1 if code == EXIT_PARTIAL else 2
        if rank > (0 if worst == EXIT_OK else 1 if worst == EXIT_PARTIAL else 2):
            worst = code
    return worst


@dataclass
class RunOptions:
    jobs: list[str] = field(default_factory=list)  # source names; empty = all
    notify: NotifySpec | None = None  # None: the policy file's
    metrics_file: str | None = None  # None: the policy file's
    state_dir: str | None = None  # None: the policy file's, else default_state_dir()


class Opener(Protocol):
    """Opens a repository of the policy file (the CLI supplies one that knows password sources).
    ``uncached``: read remote storage directly, without the local metadata cache (for check)."""

    def __call__(self, spec: RepositorySpec, *, uncached: bool = False) -> Repository: ...


def run_policy(policy: PolicyFile, options: RunOptions, open_repository: Opener, *,
               on_step: Callable[[StepResult], None] = lambda s: None,
               warn: Callable[[str], None] = lambda m: None, clock: Callable[[], float] = time.time) -> RunResult:
    sources = policy.select(options.jobs)  # unknown job names fail before anything runs
    run = _Run(policy, options, open_repository, on_step, warn, clock)
    try:
        run.execute(sources)
    finally:
        run.close()
    run.finish()
    return run.result


class _Run:
    def __init__(self, policy: PolicyFile, options: RunOptions, opener: Opener, on_step, warn, clock) -> None:
        self.policy = policy
        self.opener = opener
        self.on_step = on_step
        self._warn = warn
        self.clock = clock
        self.notify = options.notify if options.notify is not None else policy.notify
        self.metrics_file = options.metrics_file if options.metrics_file is not None else policy.metrics_file
        self.state = RunState.load(options.state_dir or policy.state_dir or default_state_dir())
        self.result = RunResult(policy.path, socket.gethostname(), clock())
        self.started = time.monotonic()
        self.open: dict[str, Repository] = {}
        self.open_errors: dict[str, StepResult] = {}
        self.hide_env = tuple(r.password_env for r in policy.repositories.values() if r.password_env)
        for problem in self.state.problems:
            self.warn(problem)

    def warn(self, message: str) -> None:
        self.result.warnings.append(message)
        self._warn(message)

    # -- the plan

    def execute(self, sources: list[SourceSpec]) -> None:
        self.result.jobs = [s.name for s in sources]
        primaries: list[str] = []
        for source in sources:
            if source.repository not in primaries:
                primaries.append(source.repository)
            self.backup(source)
        for name in primaries:
            repo = self.repository(name)
            if repo is None:
                continue
            self.maintain(name, repo, check=True)
            for target_name in self.policy.repositories[name].copy_to:
                if repo.write_only:
                    self.record(StepResult(name, "copy", target_name, "skipped",
                                           message="write-only key: copies run where a full key is"))
                    continue
                target = self.repository(target_name, job=name)
                if target is None:
                    continue
                copied = self.step(name, "copy", target_name, lambda r: self.copy(repo, target, r))
                if copied.status == "ok":
                    offsite_check = self.policy.check is not None and self.policy.check.offsite
                    self.maintain(target_name, target, check=offsite_check)

    def repository(self, name: str, job: str | None = None) -> Repository | None:
        """The opened repository, opening it on first use; None (and a failed step) if it cannot be."""
        if name in self.open:
            return self.open[name]
        if name in self.open_errors:
            return None
        spec = self.policy.repositories[name]

        def do_open(step: StepResult) -> None:
            repo = self.opener(spec)
            if spec.compression_level is not None:  # for blobs written in this run only; never stored
                repo.config.compression_level = spec.compression_level
            self.open[name] = repo
            step.message = f"opened {spec.location}" + (" (write-only key)" if repo.write_only else "")

        step = self.step(job or name, "open", name, do_open)
        if step.status != "ok":
            self.open_errors[name] = step
            return None
        return self.open[name]

    def backup(self, source: SourceSpec) -> None:
        repo = self.repository(source.repository, job=source.name)

        def do_backup(step: StepResult) -> None:
            if repo is None:
                failed = self.open_errors[source.repository]
                raise _StepFailed(failed.exit_code, f"repository {source.repository} not opened: {failed.message}")
            result = run_backup(repo, source.backup_options(), warn=self._warn)
            s = result.summary
            step.snapshot = result.snapshot.id if result.snapshot else None
            step.bytes_read, step.bytes_added = s.bytes_read, s.bytes_added
            step.details = {"files_new": s.files_new, "files_changed": s.files_changed,
                            "files_unchanged": s.files_unchanged, "bytes_total": s.bytes_total,
                            "errors": s.errors, "warnings": result.warnings[:MAX_WARNINGS_KEPT]}
            if result.partial:
                step.status, step.exit_code = "partial", EXIT_PARTIAL
                step.message = (f"snapshot {step.snapshot[:8]} written, but {s.errors} item(s) could not be read "
                                f"(first: {result.warnings[0] if result.warnings else '?'})")
            else:
                step.message = (f"snapshot {step.snapshot[:8]}: {s.files_new} new, {s.files_changed} changed, "
                                f"{s.files_unchanged} unchanged files")

        step = self.step(source.name, "backup", source.repository, do_backup)
        if step.status == "ok":
            self.state.last_success[f"job:{source.name}"] = self.clock()

    def maintain(self, name: str, repo: Repository, *, check: bool) -> None:
        facts = self.result.repositories.setdefault(name, RepositoryFacts(name))
        if repo.write_only:
            self.record(StepResult(name, "forget", name, "skipped", message="write-only key: retention, prune and "
                                   "check run where a full key is"))
        else:
            if self.policy.retention is not None:
                self.step(name, "forget", name, lambda s: self.forget(repo, s))
            if self.policy.prune is not None:
                self.step(name, "prune", name, lambda s: self.prune(repo, s))
            if check and self.policy.check is not None:
                self.step(name, "check", name, lambda s: self.check(repo, s, facts))
        try:
            facts.size_bytes = sum(size for _, size in repo.stored_packs())
            facts.snapshots = len(repo.snapshot_ids())
        except StrongroomError as e:
            self.warn(f"cannot measure repository {name}: {e}")

    # -- the steps after backup

    def forget(self, repo: Repository, step: StepResult) -> None:
        result = run_forget(repo, policy=self.policy.retention, group_by=self.policy.group_by)
        step.details = {"removed": result.removed, "kept": len(result.kept)}
        step.message = f"removed {len(result.removed)} snapshot(s), kept {len(result.kept)}"

    def prune(self, repo: Repository, step: StepResult) -> None:
        spec = self.policy.prune
        last = self.state.last_prune.get(repo.config.id)
        now = self.clock()
        if spec.every is not None and last is not None:
            due = spec.every.before(datetime.fromtimestamp(now, timezone.utc)).timestamp()
            if last > due:
                step.status = "skipped"
                step.message = (f"not due: last pruned {_utc(last)}, every {spec.every}; next after "
                                f"{_utc(last + now - due)}")
                return
        result = run_prune(repo, spec.options)
        self.state.last_prune[repo.config.id] = now
        step.details = {"packs_deleted": result.packs_deleted, "bytes_deleted": result.bytes_deleted,
                        "packs_written": result.packs_written, "bytes_written": result.bytes_written}
        step.message = f"deleted {result.packs_deleted} pack(s) ({result.bytes_deleted} bytes)"

    def check(self, repo: Repository, step: StepResult, facts: RepositoryFacts) -> None:
        spec = self.policy.check
        subset = Subset.parse(spec.subset) if spec.subset else None
        if isinstance(repo.storage, CachedStorage):
            # check must see the repository's own bytes, not the local copies of its metadata
            with self.opener(self.policy.repositories[facts.name], uncached=True) as direct:
                result = run_check(direct, subset=subset)
        else:
            result = run_check(repo, subset=subset)
        facts.check_errors = len(result.errors)
        step.bytes_read = result.bytes_read
        step.details = {"errors": result.errors[:MAX_WARNINGS_KEPT], "snapshots": result.snapshots,
                        "packs": result.packs, "packs_read": result.packs_read,
                        "read_data_subset": spec.subset}
        if result.errors:
            raise _StepFailed(EXIT_ERROR, f"{len(result.errors)} error(s), first: {result.errors[0]}")
        step.message = (f"no errors; read {result.packs_read} of {result.packs_selected_of} packs"
                        if result.read_data else "no errors (structure only)")

    def copy(self, src: Repository, dst: Repository, step: StepResult) -> None:
        result = run_copy(src, dst, CopySelection())
        step.bytes_added = result.bytes_added
        step.details = {"copied": [c.copy for c in result.copied], "skipped": len(result.skipped)}
        step.message = f"copied {len(result.copied)} snapshot(s), {len(result.skipped)} already there"

    # -- recording

    def step(self, job: str, name: str, repository: str, body: Callable[[StepResult], None]) -> StepResult:
        step = StepResult(job, name, repository)
        started = time.monotonic()
        try:
            body(step)
        except _StepFailed as e:
            step.status, step.exit_code, step.message = "failed", e.exit_code, e.message
        except StrongroomError as e:
            step.status, step.exit_code, step.message = "failed", e.exit_code, str(e)
        except Exception as e:  # a bug or unmapped OS error in one step must not cost the other sources
            step.status, step.exit_code = "failed", EXIT_ERROR
            step.message = f"unexpected error: {type(e).__name__}: {e}"
        step.duration_s = round(time.monotonic() - started, 3)
        self.record(step)
        return step

    def record(self, step: StepResult) -> None:
        self.result.steps.append(step)
        self.on_step(step)
        spec = self.notify
        if not (spec.command or spec.url) or not notify.wanted(spec.on, step.status):
            return
        if step.step == "open" and step.status == "ok":
            return  # only noise: the steps that follow say what the run did
        payload = dict(step.to_json(), host=self.result.host, config=self.policy.path,
                       time=datetime.fromtimestamp(self.clock(), timezone.utc).isoformat())
        payload.pop("details")
        outcomes = []
        if spec.command:
            outcomes.append(notify.notify_command(spec.command, payload, spec.timeout, self.hide_env))
        if spec.url:
            outcomes.append(notify.notify_url(spec.url, payload, spec.timeout))
        for problem in outcomes:
            if problem:
                self.warn(f"{problem} (about {step.job} {step.step}: {step.status})")
            else:
                self.result.notifications_sent += 1

    def close(self) -> None:
        for repo in self.open.values():
            try:
                repo.close()
            except Exception as e:  # closing must not hide what the run did
                self.warn(f"closing a repository failed: {e}")

    def finish(self) -> None:
        self.result.duration_s = round(time.monotonic() - self.started, 3)
        if self.result.steps and all(s.status in ("ok", "skipped") for s in self.result.steps):
            self.state.last_success["run"] = self.clock()
        try:
            self.state.save()
        except OSError as e:
            self.warn(f"cannot save the run state {self.state.path}: {e.strerror} (prune cadence not recorded)")
        if self.metrics_file:
            try:
                write_atomically(self.metrics_file, render_metrics(self.result, self.state, self.policy),
                                 mode=0o644)
            except OSError as e:
                self.warn(f"cannot write the metrics file {self.metrics_file}: {e.strerror}")


class _StepFailed(Exception):
    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
