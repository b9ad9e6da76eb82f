"""Deterministic generator of realistic chat-server exports (stdlib only).

Used by ``strongroom demo`` (which backs up several simulated nightly exports) and by the
benchmark corpus.  It simulates one small organisation chatting on five platforms and writes,
for every simulated night, the FULL export of all history so far -- the way a nightly export
job does -- into one output directory, overwriting the previous night's files.

API::

    @dataclass(frozen=True)
    class ExportParams:
        seed: int = 1
        users: int = 12               # people (user 0 is "me", the exporting account)
        channels: int = 6             # channels/chats per platform (WhatsApp gets half)
        messages_per_day: int = 400   # average new messages per day, all platforms together
        attachment_share: float = 0.5 # target fraction of export bytes that are attachments
        edit_rate: float = 0.03       # share of live old messages edited each day; reactions
                                      # are added to ~1.5x as many, ~edit_rate/10 are deleted
        start: date = date(2026, 11, 1)  # calendar date of night 0
        scale: float = 1.0            # multiplies messages_per_day (size knob for benchmarks)
        history_days: int = 2         # days of history already on the server before night 0

    write_day(out_dir, day, params=ExportParams()) -> DayStats
        Writes the full export as of night ``day`` (0 = first night): the pre-existing history
        plus days 0..day.  Files that no longer belong (deleted messages' attachments, emptied
        Slack day files) are removed from the five format folders; nothing else in ``out_dir``
        is touched.  Every file is rewritten, so mtimes are fresh.

    @dataclass
    class DayStats: files: int; bytes: int; messages: int; attachments: int
        files/bytes: what was written; messages: live messages in the export; attachments:
        attachment files written.

Layout of ``out_dir``::

    slack/channels.json, slack/users.json, slack/<channel>/<YYYY-MM-DD>.json,
          slack/__uploads/<file id>/<name>
    mattermost/export.jsonl, mattermost/data/<YYYYMMDD>/<file id>/<name>
    telegram/result.json, telegram/chats/chat_NNN/{photos,files,video_files}/...
    discord/<channel>.json, discord/<channel>.json_Files/<name>-<HASH>.<ext>
    whatsapp/WhatsApp Chat with <name>.txt, whatsapp/{IMG,DOC,VID}-<YYYYMMDD>-WA<NNNN>.<ext>

What changes from night to night (this is what dedup sees): new messages every day (fewer on
weekends); edits of old messages (text and ``edited`` timestamps), new reactions, new thread
replies (Slack ``reply_count`` etc. of old roots), a few deletions (WhatsApp keeps a "This
message was deleted" line); Mattermost posts are ordered by a hash-like post id so new posts
land all over ``export.jsonl``; Discord's ``exportedAt`` and Mattermost's version line change
every night.  Attachments are incompressible pseudo-random bytes behind a real magic header
(JPEG, PNG, GIF, PDF, MP4, DOCX), from a few KB up to a few MB (the upper bound grows with
the daily attachment budget, max 8 MB); about one in eight is a re-post of earlier bytes under
a new name.  Text mixes English and Chinese sentences, emoji, @mentions and URLs.

Determinism: the same (params, day) gives byte-identical files.  All randomness comes from
``random.Random`` instances seeded by integer hashes of (seed, purpose, index); nothing is read
back from disk.  Night N is produced by re-simulating days 0..N in memory with compact arrays
(a few dozen bytes per message; message texts are regenerated from their seed when written),
and files are written in a streaming fashion, so memory stays far below the export size.

Size and speed: with the defaults night 0 is ~1.9 MB and each night adds ~0.9 MB (5.5 MB on
night 4), at 0.1-0.6 s per night.  The text part is about ``(history_days + day + 1) *
messages_per_day * scale * 1000`` bytes (Slack's pretty-printed, \\u-escaped JSON is the
heaviest) and attachments add ``attachment_share / (1 - attachment_share)`` times that.
``scale=60`` gives ~110 MB on night 0 and ~200 MB on night 2 (about 20 MB/s, < 100 MB RSS).
"""

from __future__ import annotations

import os
from pathlib import Path

from strongroom.samples.common import FORMATS, DayStats, ExportParams
from strongroom.samples.discord import _discord
from strongroom.samples.mattermost import _mattermost
from strongroom.samples.output import _Writer
from strongroom.samples.slack import _slack
from strongroom.samples.telegram import _telegram
from strongroom.samples.whatsapp import _whatsapp
from strongroom.samples.world import _World

__all__ = ["DayStats", "ExportParams", "FORMATS", "write_day"]

# Module layout: common (parameters, randomness, vocabularies, JSON helpers) -> world (the
# simulation) -> output (files) -> one module per platform's format -> this entry point.


def _render(w: _World, out: _Writer, last_day: int) -> int:
    """Write every format; return the number of live messages."""
    dead = w.dead
    children: dict[int, list[int]] = {}
    for i, par in enumerate(w.parent):
        if par >= 0 and not dead[i]:
            children.setdefault(par, []).append(i)
    live_by_conv = [[i for i in cm if not dead[i]] for cm in w.conv_msgs]
    export_ms = (w.epoch0 + (last_day + 1) * 86400 + 3 * 3600) * 1000  # 03:00 the next morning
    _slack(w, out, live_by_conv, children)
    _mattermost(w, out, live_by_conv, children, export_ms)
    _telegram(w, out, live_by_conv)
    _discord(w, out, live_by_conv, export_ms)
    _whatsapp(w, out)
    for i, key, kind, size, path in w.atts:
        if not dead[i]:
            out.blob(FORMATS[w.convs[w.conv[i]].platform] + "/" + path, key, kind, size)
    return sum(len(x) for x in live_by_conv)


# --------------------------------------------------------------------------- entry point


def write_day(out_dir: str | os.PathLike, day: int, params: ExportParams = ExportParams()) -> DayStats:
    """Write the full export as of night ``day`` into ``out_dir``; see the module docstring."""
    if day < 0:
        raise ValueError("day must not be negative")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    world = _World(params)
    world.simulate(params.history_days + day)
    writer = _Writer(root, world)
    messages = _render(world, writer, params.history_days + day)
    writer.prune()
    return DayStats(files=writer.files, bytes=writer.bytes, messages=messages,
                    attachments=writer.attachments)
