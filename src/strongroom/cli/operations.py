"""Click commands for unattended operation: `run` (the policy file's nightly job) and `schedule`
(registered on the main group by importing this module)."""

from __future__ import annotations

import dataclasses
import os
import shlex

import click

from strongroom.cli.commands import cli
from strongroom.cli.context import Location, human_bytes, json_option, print_json, warn
from strongroom.commands.run import RunOptions, RunResult, StepResult, run_policy
from strongroom.errors import UsageError
from strongroom.jobs.policyfile import NOTIFY_ON, PolicyFile, RepositorySpec, load_policy_file


def config_candidates() -> list[str]:
    """Where the policy file is looked for, in order, when --config is not given."""
    explicit = os.environ.get("STRONGROOM_CONFIG")
    if explicit:
        return [explicit]
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return [os.path.join(base, "strongroom", "strongroom.toml"), "/etc/strongroom/strongroom.toml"]


def find_config(config: str | None) -> str:
    if config:
        return config
    candidates = config_candidates()
    if os.environ.get("STRONGROOM_CONFIG"):
        return candidates[0]
    for path in candidates:
        if os.path.exists(path):
            return path
    raise UsageError(f"no policy file: use --config, set STRONGROOM_CONFIG, or create {' or '.join(candidates)}")


def config_option(func):
    return click.option("--config", "-c", "config", metavar="FILE", type=click.Path(dir_okay=False),
                        help="The policy file (default: $STRONGROOM_CONFIG, else "
                             "~/.config/strongroom/strongroom.toml, else /etc/strongroom/strongroom.toml).")(func)


def open_repository(spec: RepositorySpec, *, uncached: bool = False):
    from strongroom.storage.s3 import S3Options

    s3 = S3Options(endpoint=spec.s3.get("endpoint"), region=spec.s3.get("region"), profile=spec.s3.get("profile"),
                   addressing=spec.s3.get("addressing"))
    return Location(spec.location, spec.password_file, spec.password_command, s3=s3,
                    password_env=spec.password_env or "STRONGROOM_PASSWORD").open(uncached=uncached)


@cli.command()
@config_option
@click.argument("jobs", nargs=-1, metavar="[JOB]...")
@click.option("--notify-command", metavar="CMD",
              help="Run CMD for each notified step, with a JSON payload on stdin (overrides [notify] command).")
@click.option("--notify-url", metavar="URL", help="POST the JSON payload to URL (overrides [notify] url).")
@click.option("--notify-on", type=click.Choice(NOTIFY_ON),
              help="Which steps to notify (default: the policy file's, else failure).")
@click.option("--metrics-file", metavar="PATH", type=click.Path(dir_okay=False),
              help="Write Prometheus text-format metrics here (overrides [metrics] file).")
@json_option
def run(config: str | None, jobs: tuple[str, ...], notify_command: str | None, notify_url: str | None,
        notify_on: str | None, metrics_file: str | None, as_json: bool) -> None:
    """Run the policy file: back up every source (or the JOBs named), then forget by the retention
    policy, prune when due, check, and copy to the off-site repositories.

    A failing source does not stop the others. Exits with the worst step's code (3 if a backup
    was partial, the error's code if a step failed)."""
    policy = load_policy_file(find_config(config))
    options = RunOptions(jobs=list(jobs), notify=_notify_overrides(policy, notify_command, notify_url, notify_on),
                         metrics_file=metrics_file)
    on_step = (lambda step: None) if as_json else _print_step
    result = run_policy(policy, options, open_repository, on_step=on_step, warn=warn)
    if as_json:
        print_json(result.to_json())
    else:
        _print_summary(result)
    if result.exit_code:
        raise SystemExit(result.exit_code)


def _notify_overrides(policy: PolicyFile, command: str | None, url: str | None, on: str | None):
    if command is None and url is None and on is None:
        return None
    spec = dataclasses.replace(policy.notify)
    if command is not None:
        spec.command = shlex.split(command) or None
    if url is not None:
        if not url.lower().startswith(("http://", "https://")):
            raise UsageError(f"--notify-url must be an http:// or https:// URL, not {url!r}")
        spec.url = url
    if on is not None:
        spec.on = on
    return spec


def _print_step(step: StepResult) -> None:
    extra = []
    if step.bytes_added:
        extra.append(f"+{human_bytes(step.bytes_added)}")
    extra.append(f"{step.duration_s:.1f} s")
    line = f"{step.status:<8} {step.step:<7} {step.job:<16} {step.repository:<12} {step.message} ({', '.join(extra)})"
    click.echo(line, err=step.status in ("failed", "partial"))


def _print_summary(result: RunResult) -> None:
    counts: dict[str, int] = {}
    for s in result.steps:
        counts[s.status] = counts.get(s.status, 0) + 1
    for name, facts in result.repositories.items():
        parts = []
        if facts.snapshots is not None:
            parts.append(f"{facts.snapshots} snapshots")
        if facts.size_bytes is not None:
            parts.append(human_bytes(facts.size_bytes))
        if parts:
            click.echo(f"repository {name}: {', '.join(parts)}")
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    click.echo(f"run: {len(result.jobs)} job(s), {len(result.steps)} step(s): {summary} in {result.duration_s:.1f} s; "
               f"exit code {result.exit_code}")


@cli.group()
def schedule() -> None:
    """Show or install a daily schedule (systemd timer or cron) for `strongroom run`."""


def schedule_options(func):
    func = click.option("--name", default="strongroom-run", show_default=True,
                        help="Unit (or cron file) name; use one per policy file.")(func)
    func = click.option("--at", "at", default="03:00", show_default=True, metavar="HH:MM",
                        help="Time of day to run (local time).")(func)
    func = click.option("--unit-dir", metavar="DIR", type=click.Path(file_okay=False),
                        help="Where to write the files (default: /etc/systemd/system, "
                             "~/.config/systemd/user with --user, /etc/cron.d with --cron).")(func)
    func = click.option("--user", is_flag=True, help="A per-user schedule (systemd --user, or a user crontab).")(func)
    func = click.option("--systemd/--cron", "use_systemd", default=True,
                        help="A systemd service and timer (default), or a cron line.")(func)
    return config_option(func)


def _plan(config, use_systemd, user, unit_dir, at, name):
    from strongroom.jobs.schedule import plan_schedule
    path = find_config(config)
    load_policy_file(path)  # never schedule a policy file that does not load
    return plan_schedule(path, kind="systemd" if use_systemd else "cron", user=user, unit_dir=unit_dir, at=at,
                         name=name)


@schedule.command(name="show")
@schedule_options
@json_option
def schedule_show(config, use_systemd, user, unit_dir, at, name, as_json) -> None:
    """Print the schedule files (or crontab line) without writing anything."""
    plan = _plan(config, use_systemd, user, unit_dir, at, name)
    if as_json:
        print_json(plan.to_json())
        return
    for path, content in plan.files:
        click.echo(f"# {path}\n{content}")
    if plan.cron_line and not plan.files:
        click.echo(plan.cron_line)
    if plan.enable:
        click.echo("# after `strongroom schedule install`, enable it with:")
        for command in plan.enable:
            click.echo(f"#   {command}")


@schedule.command(name="install")
@schedule_options
@json_option
def schedule_install(config, use_systemd, user, unit_dir, at, name, as_json) -> None:
    """Write the schedule files; print the commands that enable them (strongroom does not run
    systemctl itself)."""
    from strongroom.jobs.schedule import install_schedule
    plan = _plan(config, use_systemd, user, unit_dir, at, name)
    written = install_schedule(plan)
    if as_json:
        print_json(dict(plan.to_json(), written=written))
        return
    for path in written:
        click.echo(f"wrote {path}")
    if plan.enable:
        click.echo("enable it with:")
        for command in plan.enable:
            click.echo(f"  {command}")
