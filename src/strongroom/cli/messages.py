"""Click commands for the message catalogue: `strongroom messages search|diff|export|stats|index`."""

from __future__ import annotations

import sys

import click

from strongroom.cli.commands import cli
from strongroom.cli.context import Location, json_option, no_lock_option, print_json, repo_options, warn
from strongroom.commands.messages import (FORMATS, format_time, parse_time, run_diff, run_export, run_index,
                                          run_search, run_stats)
from strongroom.errors import UsageError
from strongroom.messages.catalog_format import Record
from strongroom.messages.catalog_query import Filters

PREVIEW = 160


@cli.group()
def messages() -> None:
    """Find, compare and export the messages of backed-up chat exports.

    Backups catalogue recognised exports (Slack, Mattermost, ...) unless --no-catalog is given;
    `messages index` catalogues older snapshots."""


def _time_options(func):
    func = click.option("--until", metavar="TIME", help="Only messages before this ISO date/time (UTC unless "
                                                       "an offset is given).")(func)
    func = click.option("--since", metavar="TIME", help="Only messages at or after this ISO date/time.")(func)
    return func


def _line(r: Record) -> str:
    text = " ".join(r.text.split())
    if len(text) > PREVIEW:
        text = text[:PREVIEW - 1] + "…"
    return f"{format_time(r.time_ms)}  {r.platform} {r.conversation}  {r.author}: {text}" + \
        (" (edited)" if r.edited else "")


@messages.command("search")
@repo_options
@no_lock_option
@click.argument("query")
@click.option("--from", "author", metavar="USER", help="Only messages by this author (exact name, any case).")
@click.option("--conversation", metavar="C", help="Only this conversation (channel, chat or room name).")
@click.option("--platform", metavar="P", help="Only this platform (slack, mattermost, ...).")
@_time_options
@click.option("--snapshot", metavar="SNAPSHOT", help="Search one snapshot only.")
@click.option("--all-snapshots", is_flag=True, help="Search every snapshot (the default).")
@json_option
def search_cmd(location: Location, query: str, author: str | None, conversation: str | None, platform: str | None,
               since: str | None, until: str | None, snapshot: str | None, all_snapshots: bool,
               as_json: bool) -> None:
    """Find messages whose text contains QUERY (case-insensitive; "" matches all), in every
    version any snapshot holds, with the snapshots each appears in."""
    filters = Filters(query=query, author=author, conversation=conversation, platform=platform,
                      since_ms=parse_time(since, "--since"), until_ms=parse_time(until, "--until"))
    with location.open() as repo:
        result = run_search(repo, filters, snapshot=snapshot, all_snapshots=all_snapshots)
    if as_json:
        print_json(result.to_json())
        return
    total = len(result.snapshots)
    for found in result.matches:
        click.echo(_line(found.record))
        ids = [i[:8] for i in found.snapshots]
        click.echo(f"    in {len(ids)} of {total} snapshot(s): {', '.join(ids[:8])}" + (" …" if len(ids) > 8 else ""))
    click.echo(f"{len(result.matches)} message(s) in {total} catalogued snapshot(s)")
    for line in result.unreadable:
        warn(f"snapshot {line[:8]}{line[64:]} (not searched; see `strongroom check`)")
    if result.uncatalogued:
        warn(f"{len(result.uncatalogued)} snapshot(s) have no message catalogue and were not searched "
             f"(`strongroom messages index --all` builds them)")


@messages.command("diff")
@repo_options
@no_lock_option
@click.argument("before")
@click.argument("after")
@json_option
def diff_cmd(location: Location, before: str, after: str, as_json: bool) -> None:
    """Messages added, edited and deleted from snapshot BEFORE to snapshot AFTER, per conversation."""
    with location.open() as repo:
        result = run_diff(repo, before, after)
    if as_json:
        print_json(result.to_json())
        return
    for c in result.conversations:
        click.echo(f"{c.platform} {c.conversation}: {len(c.added)} added, {len(c.edited)} edited, "
                   f"{len(c.deleted)} deleted")
        for r in c.added:
            click.echo(f"  + {_line(r)}")
        for old, new in c.edited:
            click.echo(f"  ~ {_line(old)}")
            click.echo(f"    → {_line(new)}")
        for r in c.deleted:
            click.echo(f"  - {_line(r)}")
    t = result.totals()
    click.echo(f"{t['added']} added, {t['edited']} edited, {t['deleted']} deleted "
               f"({result.before.short_id} → {result.after.short_id})")


@messages.command("export")
@repo_options
@no_lock_option
@click.argument("snapshot")
@click.option("--conversation", required=True, metavar="C", help="The conversation to export.")
@click.option("--platform", metavar="P", help="Its platform, when several have a conversation of that name.")
@_time_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True,
              help="JSON lines of catalogue records, or the platform's own export format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Write here instead of standard output.")
@json_option
def export_cmd(location: Location, snapshot: str, conversation: str, platform: str | None, since: str | None,
               until: str | None, fmt: str, output: str | None, as_json: bool) -> None:
    """Write one conversation of SNAPSHOT, in time order, optionally limited to a time range."""
    if as_json and output is None:
        raise UsageError("--json prints a summary: give --output for the messages")
    since_ms, until_ms = parse_time(since, "--since"), parse_time(until, "--until")
    with location.open() as repo:
        if output is None:
            result = run_export(repo, snapshot, sys.stdout.buffer, conversation=conversation, fmt=fmt,
                                platform=platform, since_ms=since_ms, until_ms=until_ms)
        else:
            with open(output, "wb") as out:
                result = run_export(repo, snapshot, out, conversation=conversation, fmt=fmt, platform=platform,
                                    since_ms=since_ms, until_ms=until_ms)
    if as_json:
        print_json(result.to_json())
    elif output is not None:
        click.echo(f"{result.messages} message(s) of {result.platform} {result.conversation} written to {output}")


@messages.command("stats")
@repo_options
@no_lock_option
@click.argument("snapshot")
@json_option
def stats_cmd(location: Location, snapshot: str, as_json: bool) -> None:
    """Conversations, messages, authors and date range per platform in SNAPSHOT."""
    with location.open() as repo:
        result = run_stats(repo, snapshot)
    if as_json:
        print_json(result.to_json())
        return
    click.echo(f"snapshot {result.snapshot.short_id}")
    for p in result.platforms:
        click.echo(f"  {p.platform}: {p.messages} message(s) in {p.conversations} conversation(s) by "
                   f"{p.authors} author(s), {format_time(p.first_ms)} to {format_time(p.last_ms)}")


@messages.command("index")
@repo_options
@click.argument("snapshot", required=False)
@click.option("--all", "all_snapshots", is_flag=True, help="Every snapshot that has no catalogue yet.")
@json_option
def index_cmd(location: Location, snapshot: str | None, all_snapshots: bool, as_json: bool) -> None:
    """Catalogue SNAPSHOT (or --all) taken before catalogues or with --no-catalog.

    The export files are read from the repository. Each catalogued snapshot is rewritten with
    its catalogue, so it gets a new id (as `tag` does); legal holds move with it."""
    with location.open() as repo:
        result = run_index(repo, snapshot, all_snapshots=all_snapshots, warn=warn)
    if as_json:
        print_json(result.to_json())
        return
    for i in result.indexed:
        if i.new_id is None:
            click.echo(f"{i.old_id[:8]}: no recognised chat export")
        else:
            click.echo(f"{i.old_id[:8]} → {i.new_id[:8]}: {i.stats.messages} message(s) from "
                       f"{i.stats.exports} export(s) ({', '.join(i.stats.platforms)})")
    if result.already:
        click.echo(f"{len(result.already)} snapshot(s) already had a catalogue")
