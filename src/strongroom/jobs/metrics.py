"""Metrics of a `run` in the Prometheus text exposition format, for node_exporter's textfile
collector (or any scraper reading a file). The caller writes the text atomically.

Per job (source) of the run: success, exit code, duration, bytes read and added; the last
success time of every job of the policy file (kept in the run state, so it survives failed and
partial runs); per repository: stored size, snapshot count, check errors; per step: duration and
exit code; and the run as a whole."""

from __future__ import annotations

from typing import Iterable

# name -> (help, type)
METRICS = {
    "strongroom_job_last_success_timestamp_seconds": ("Unix time of the job's last successful backup.", "gauge"),
    "strongroom_job_success": ("1 if the job's backup succeeded in the last run, 0 if it failed or was partial.",
                               "gauge"),
    "strongroom_job_exit_code": ("Exit code of the job's backup in the last run (0 ok, 3 partial).", "gauge"),
    "strongroom_job_duration_seconds": ("Duration of the job's backup in the last run.", "gauge"),
    "strongroom_job_read_bytes": ("Bytes the job's backup read in the last run.", "gauge"),
    "strongroom_job_added_bytes": ("Bytes the job's backup added to the repository in the last run (stored size).",
                                   "gauge"),
    "strongroom_repository_size_bytes": ("Stored size of the repository's packs after the last run.", "gauge"),
    "strongroom_repository_snapshots": ("Snapshots in the repository after the last run.", "gauge"),
    "strongroom_repository_check_errors": ("Errors found by the last run's check of the repository.", "gauge"),
    "strongroom_step_duration_seconds": ("Duration of each step of the last run.", "gauge"),
    "strongroom_step_exit_code": ("Exit code of each step of the last run (0 ok or skipped).", "gauge"),
    "strongroom_run_timestamp_seconds": ("Unix time the last run started.", "gauge"),
    "strongroom_run_duration_seconds": ("Duration of the last run.", "gauge"),
    "strongroom_run_exit_code": ("Exit code of the last run (the worst step's).", "gauge"),
    "strongroom_run_last_success_timestamp_seconds": ("Unix time of the last run in which every step succeeded.",
                                                      "gauge"),
}


def render_metrics(result, state, policy) -> str:
    """``result``: a commands.run.RunResult; ``state``: the RunState after the run; ``policy``: the
    PolicyFile (its sources name the jobs whose last success is reported)."""
    samples: dict[str, list[str]] = {name: [] for name in METRICS}

    def add(name: str, labels: dict[str, str], value: float) -> None:
        samples[name].append(f"{name}{_labels(labels)} {_number(value)}")

    for job in policy.sources:
        when = state.last_success.get(f"job:{job}")
        if when is not None:
            add("strongroom_job_last_success_timestamp_seconds", {"job": job}, when)
    for step in result.steps:
        if step.step == "backup":
            labels = {"job": step.job, "repository": step.repository}
            add("strongroom_job_success", labels, 1 if step.status == "ok" else 0)
            add("strongroom_job_exit_code", labels, step.exit_code)
            add("strongroom_job_duration_seconds", labels, step.duration_s)
            add("strongroom_job_read_bytes", labels, step.bytes_read)
            add("strongroom_job_added_bytes", labels, step.bytes_added)
    for name, facts in result.repositories.items():
        if facts.size_bytes is not None:
            add("strongroom_repository_size_bytes", {"repository": name}, facts.size_bytes)
        if facts.snapshots is not None:
            add("strongroom_repository_snapshots", {"repository": name}, facts.snapshots)
        if facts.check_errors is not None:
            add("strongroom_repository_check_errors", {"repository": name}, facts.check_errors)
    for step in result.steps:
        labels = {"job": step.job, "step": step.step, "repository": step.repository}
        add("strongroom_step_duration_seconds", labels, step.duration_s)
        add("strongroom_step_exit_code", labels, step.exit_code)
    add("strongroom_run_timestamp_seconds", {}, result.started)
    add("strongroom_run_duration_seconds", {}, result.duration_s)
    add("strongroom_run_exit_code", {}, result.exit_code)
    if "run" in state.last_success:
        add("strongroom_run_last_success_timestamp_seconds", {}, state.last_success["run"])
    return "".join(_family(name, lines) for name, lines in samples.items() if lines)


def _family(name: str, lines: Iterable[str]) -> str:
    help_text, kind = METRICS[name]
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n" + "".join(line + "\n" for line in lines)


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.3f}"
