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

import calendar
import datetime as _dt
import json.encoder as _jenc
import math
import os
import random
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DayStats", "ExportParams", "FORMATS", "write_day"]

#: The format folders ``write_day`` owns inside ``out_dir``.
FORMATS = ("slack", "mattermost", "telegram", "discord", "whatsapp")


@dataclass(frozen=True)
class ExportParams:
    seed: int = 1
    users: int = 12
    channels: int = 6
    messages_per_day: int = 400
    attachment_share: float = 0.5
    edit_rate: float = 0.03
    start: _dt.date = _dt.date(2026, 11, 1)
    scale: float = 1.0
    history_days: int = 2

    def __post_init__(self) -> None:
        if self.users < 2:
            raise ValueError("users must be at least 2")
        if self.channels < 1:
            raise ValueError("channels must be at least 1")
        if self.messages_per_day < 0 or self.scale < 0:
            raise ValueError("messages_per_day and scale must not be negative")
        if not 0.0 <= self.attachment_share < 0.95:
            raise ValueError("attachment_share must be in [0, 0.95)")
        if not 0.0 <= self.edit_rate <= 1.0:
            raise ValueError("edit_rate must be in [0, 1]")
        if self.history_days < 0:
            raise ValueError("history_days must not be negative")


@dataclass
class DayStats:
    files: int
    bytes: int
    messages: int
    attachments: int


# --------------------------------------------------------------------------- randomness

_M64 = (1 << 64) - 1
_T_WORLD, _T_DAY, _T_TEXT, _T_EDIT, _T_REACT, _T_BYTES, _T_ID, _T_EXPORT = range(1, 9)


def _mix(*vals: int) -> int:
    """A 64-bit hash of a few integers (splitmix64 finaliser); stable across runs."""
    h = 0x243F6A8885A308D3
    for v in vals:
        h = ((h ^ (v & _M64)) * 0x9E3779B97F4A7C15) & _M64
        h ^= h >> 29
    h = (h * 0xBF58476D1CE4E5B9) & _M64
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & _M64
    return h ^ (h >> 31)


def _pick(rng: random.Random, seq):
    """Like ``rng.choice(seq)`` but cheaper (one float draw)."""
    return seq[int(rng.random() * len(seq))]


def _round(rng: random.Random, x: float) -> int:
    """Round x up or down at random so that the expectation is x."""
    n = int(x)
    return n + (rng.random() < x - n)


_B32 = "ybndrfg8ejkmcpqxot1uwisza345h769"  # Mattermost's id alphabet
_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _b32(x: int, n: int) -> str:
    return "".join(_B32[(x >> (5 * k)) & 31] for k in range(n))


def _b36(x: int, n: int) -> str:
    out = []
    for _ in range(n):
        x, r = divmod(x, 36)
        out.append(_B36[r])
    return "".join(out)


# --------------------------------------------------------------------------- word lists

_EN_FIRST = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Ivy", "Jack",
             "Kate", "Leo", "Mia", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Sam", "Tina"]
_EN_LAST = ["Smith", "Jones", "Brown", "Garcia", "Miller", "Davis", "Wilson", "Moore", "Taylor",
            "Clark", "Lewis", "Walker"]
_ZH_LAST = [("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"),
            ("杨", "yang"), ("赵", "zhao"), ("黄", "huang"), ("周", "zhou"), ("吴", "wu")]
_ZH_GIVEN = [("芳", "fang"), ("伟", "wei"), ("娜", "na"), ("敏", "min"), ("静", "jing"),
             ("磊", "lei"), ("洋", "yang"), ("艳", "yan"), ("勇", "yong"), ("杰", "jie"),
             ("婷", "ting"), ("浩", "hao"), ("晓明", "xiaoming"), ("建国", "jianguo")]

_EN_OPEN = ["", "", "", "btw ", "fyi ", "hey, ", "ok so ", "quick update: ", "lol ", "hmm, ",
            "heads up: ", "morning! "]
_EN_SUBJ = ["I", "we", "the team", "QA", "the client", "my script", "the build", "our nightly job",
            "ops", "the new intern", "marketing", "the on-call person", "someone"]
_EN_VERB = ["pushed", "reviewed", "broke", "fixed", "deployed", "rolled back", "benchmarked",
            "documented", "merged", "tested", "rescheduled", "cancelled", "moved", "updated",
            "cleaned up", "looked at"]
_EN_OBJ = ["the release", "the login page", "the migration", "the Q3 report", "the database backup",
           "the hotfix", "the onboarding doc", "the invoice", "the meeting", "the API", "the dashboard",
           "the cache layer", "the flaky test", "the roadmap", "the budget sheet", "the CI pipeline"]
_EN_TAIL = ["this morning", "before lunch", "yesterday", "again", "for the demo", "on staging",
            "last night", "as discussed", "without tests", "by Friday", "", "", "after the standup",
            "in prod", "for the customer call"]
_EN_END = [".", ".", ".", "!", " 🙂", "...", " (finally)", ", fingers crossed."]
_EN_Q = ["can someone take a look?", "any objections?", "does that work for everyone?",
         "who owns this?", "thoughts?", "is this expected?", "should we postpone?",
         "where is the latest version?"]
_EN_SHORT = ["ok", "thanks!", "lgtm", "+1", "on it", "sounds good", "brb", "nice", "haha", "agreed",
             "done", "will do", "ack", "omw", "good catch"]

_ZH_SUBJ = ["我", "我们", "老王", "产品组", "测试同学", "客户", "运维", "新来的实习生", "小李",
            "大家", "老板", "前端"]
_ZH_ADV = ["刚刚", "今天", "昨晚", "已经", "马上", "下午", "明天", "又", "终于", "还没", "顺便"]
_ZH_VERB = ["发布了", "修复了", "检查了", "更新了", "部署了", "回滚了", "整理了", "讨论了",
            "测试了", "提交了", "看了一下", "改好了"]
_ZH_OBJ = ["新版本", "登录页面", "数据库备份", "季度报告", "接口文档", "发票", "会议纪要",
           "缓存问题", "监控告警", "迁移脚本", "周报", "需求文档", "报销单"]
_ZH_END = ["。", "！", "，大家看一下。", "，有问题随时说。", "～", "？", "，辛苦了。", "，晚点同步。"]
_ZH_Q = ["谁有空帮忙看一下？", "这个正常吗？", "明天开会吗？", "最新版本在哪里？", "要不要延期？"]
_ZH_SHORT = ["好的", "收到", "谢谢！", "没问题", "哈哈哈", "辛苦了", "明白", "稍等", "可以",
             "好的👌", "在路上了"]

_EMOJI = ["😂", "👍", "🎉", "🙏", "🚀", "❤️", "😅", "🔥", "👀", "✅", "🤔", "😭", "🍵", "☕"]
_URLS = ["https://github.com/acme/strongroom/pull/{n}", "https://docs.google.com/document/d/{t}/edit",
         "https://www.youtube.com/watch?v={t}", "https://jira.example.com/browse/OPS-{n}",
         "https://zhuanlan.zhihu.com/p/{n}", "https://status.example.com/incidents/{n}",
         "https://www.bilibili.com/video/BV{t}", "https://example.com/wiki/Runbook#step-{n}"]
_EDIT_NOTES_EN = [" (edit: typo)", " -- updated", " EDIT: never mind, fixed", " (see thread)"]
_EDIT_NOTES_ZH = ["（已更正）", "，更新一下：", "（改了个错别字）", "，补充：见上文"]

# (unicode, Slack/Mattermost short name, Discord code); earlier entries are more popular.
_REACTIONS = [("👍", "+1", "thumbsup"), ("😂", "joy", "joy"), ("🎉", "tada", "tada"),
              ("❤️", "heart", "heart"), ("🙏", "pray", "pray"), ("🚀", "rocket", "rocket"),
              ("👀", "eyes", "eyes"), ("✅", "white_check_mark", "white_check_mark"),
              ("🔥", "fire", "fire"), ("😅", "sweat_smile", "sweat_smile")]
_REACT_CUM = [30, 48, 60, 70, 78, 84, 89, 93, 97, 100]

_SLACK_CHANNELS = ["general", "random", "engineering", "design", "support", "announcements",
                   "ops-alerts", "sales", "hiring", "watercooler", "release-train", "data"]
_MM_CHANNELS = ["town-square", "off-topic", "backend", "frontend", "infra", "product", "qa",
                "security", "mobile", "docs", "oncall", "research"]
_DC_CHANNELS = ["general", "memes", "dev-chat", "help", "releases", "off-topic", "gaming",
                "music", "showcase", "feedback", "voice-text", "bots"]
_TG_GROUPS = [("Family 家人群", "private_group"), ("Project Phoenix", "private_supergroup"),
              ("Tech News 科技快讯", "public_channel"), ("羽毛球群", "private_group"),
              ("Climbing Club", "private_supergroup"), ("Neighbours 邻居", "private_group")]
_WA_GROUPS = ["Family 家人群", "Book Club", "周末爬山", "School Parents", "Football Tuesdays"]

_P_SLACK, _P_MM, _P_TG, _P_DC, _P_WA = range(5)
_PLATFORM_SHARE = [0.30, 0.20, 0.20, 0.20, 0.10]
# Estimated export text bytes per message, per platform (calibrated against the writers below);
# the attachment budget is derived from these so that attachment_share comes out right.
_EST_BYTES = [1730, 270, 650, 1280, 106]
_EST_AVG = sum(s * b for s, b in zip(_PLATFORM_SHARE, _EST_BYTES))

_KINDS = {  # kind: (extension, mime, magic header, trailer)
    "jpg": ("jpg", "image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",
            b"\xff\xd9"),
    "png": ("png", "image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"\x00\x00\x00\x00IEND\xaeB`\x82"),
    "gif": ("gif", "image/gif", b"GIF89a", b"\x00;"),
    "pdf": ("pdf", "application/pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", b"\n%%EOF\n"),
    "mp4": ("mp4", "video/mp4", b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41", b""),
    "docx": ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
             b"PK\x03\x04\x14\x00\x06\x00\x08\x00", b"PK\x05\x06" + bytes(18)),
}
_IMAGE_KINDS = ("jpg", "png", "gif")
_ATT_MIN = 3 * 1024
_ATT_MAX = 8 * 1024 * 1024
_REPOST_PROB = 0.12


# --------------------------------------------------------------------------- helpers

_UTC = _dt.timezone.utc
_enc_u = _jenc.c_encode_basestring or _jenc.py_encode_basestring
_enc_a = _jenc.c_encode_basestring_ascii or _jenc.py_encode_basestring_ascii


class _Raw(str):
    """Already serialised JSON (rendered for the nesting level it is used at)."""

    __slots__ = ()


def _dumps(o: object, step: int, enc, level: int = 0) -> str:
    """Pretty JSON like ``json.dumps(indent=step)``, but with the C string encoder."""
    t = type(o)
    if t is str:
        return enc(o)
    if t is _Raw:
        return o  # type: ignore[return-value]
    if t is int:
        return str(o)
    if o is None:
        return "null"
    if o is True:
        return "true"
    if o is False:
        return "false"
    if t is dict:
        if not o:
            return "{}"
        pad = "\n" + " " * (step * (level + 1))
        body = ",".join([pad + enc(k) + ": " + _dumps(v, step, enc, level + 1) for k, v in o.items()])
        return "{" + body + "\n" + " " * (step * level) + "}"
    if t is list:
        if not o:
            return "[]"
        pad = "\n" + " " * (step * (level + 1))
        body = ",".join([pad + _dumps(v, step, enc, level + 1) for v in o])
        return "[" + body + "\n" + " " * (step * level) + "]"
    if t is float:
        return repr(o)
    raise TypeError(f"cannot serialise {t.__name__}")


def _compact(o: object) -> str:
    """Compact JSON (one line, raw UTF-8) like ``json.dumps(ensure_ascii=False, separators)``."""
    t = type(o)
    if t is str:
        return _enc_u(o)
    if t is int:
        return str(o)
    if o is None:
        return "null"
    if o is True:
        return "true"
    if o is False:
        return "false"
    if t is dict:
        return "{" + ",".join(_enc_u(k) + ":" + _compact(v) for k, v in o.items()) + "}"
    if t is list:
        return "[" + ",".join(_compact(v) for v in o) + "]"
    if t is float:
        return repr(o)
    raise TypeError(f"cannot serialise {t.__name__}")


def _dt_of(ms: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ms // 1000, _UTC).replace(microsecond=(ms % 1000) * 1000)


def _iso(ms: int) -> str:  # Telegram style, local-less
    return _dt.datetime.fromtimestamp(ms // 1000, _UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _iso_ms(ms: int) -> str:  # DiscordChatExporter style
    return _dt_of(ms).isoformat(timespec="milliseconds")


class _User:
    __slots__ = ("idx", "name", "first", "last", "handle", "zh", "weight", "slack_id", "dc_id",
                 "tg_id", "color", "avatar")

    def __init__(self, idx: int, rng: random.Random, seed: int, used: set[str]) -> None:
        self.idx = idx
        self.zh = rng.random() < 0.5
        if self.zh:
            (lz, lp), (gz, gp) = rng.choice(_ZH_LAST), rng.choice(_ZH_GIVEN)
            self.name, self.first, self.last, handle = lz + gz, gz, lz, f"{gp}.{lp}"
        else:
            f, la = rng.choice(_EN_FIRST), rng.choice(_EN_LAST)
            self.name, self.first, self.last, handle = f"{f} {la}", f, la, f"{f}.{la}".lower()
        base, n = handle, 1
        while handle in used:
            n += 1
            handle = f"{base}{n}"
        used.add(handle)
        self.handle = handle
        self.weight = 0.3 + rng.random() ** 2 * 3  # a few chatty people, many quiet ones
        h = _mix(seed, _T_ID, 1, idx)
        self.slack_id = "U0" + _b36(h, 9)
        self.dc_id = str((((1_500_000_000_000 + h % 200_000_000_000) - 1420070400000) << 22)
                         | (h & 0x3FFFFF))
        self.tg_id = 100_000_000 + h % 900_000_000
        self.color = "#%06x" % (h >> 40)
        self.avatar = "%032x" % (h * 0x9E3779B97F4A7C15 & ((1 << 128) - 1))


class _Conv:
    __slots__ = ("idx", "platform", "name", "kind", "members", "cum", "cid", "topic", "local")

    def __init__(self, idx, platform, name, kind, members, users, cid, topic, local):
        self.idx, self.platform, self.name, self.kind = idx, platform, name, kind
        self.members = members
        acc, cum = 0.0, []
        for m in members:
            acc += users[m].weight
            cum.append(acc)
        self.cum = cum
        self.cid, self.topic, self.local = cid, topic, local

    def pick_user(self, rng: random.Random) -> int:
        return self.members[bisect_right(self.cum, rng.random() * self.cum[-1])]


# --------------------------------------------------------------------------- simulation


class _World:
    """All state of the simulated organisation, regenerated from the seed."""

    def __init__(self, p: ExportParams) -> None:
        self.p = p
        self.seed = p.seed & _M64
        self.epoch0 = calendar.timegm(p.start.timetuple()) - p.history_days * 86400
        rng = random.Random(_mix(self.seed, _T_WORLD))
        used: set[str] = set()
        self.users = [_User(i, rng, self.seed, used) for i in range(p.users)]
        self.team_id = "T0" + _b36(_mix(self.seed, _T_ID, 2), 9)
        self.guild_id = str(_mix(self.seed, _T_ID, 3) >> 10)
        self._build_convs(rng)
        # per message columns
        self.ts = array("q")        # creation time, ms since the epoch
        self.conv = array("i")
        self.user = array("i")
        self.parent = array("i")    # thread root / replied-to message, -1 if none
        self.seq = array("i")       # 1-based number within its conversation
        self.ver = array("i")       # number of edits
        self.edit_ts = array("q")
        self.att = array("i")       # attachment index, -1 if none
        self.dead = bytearray()
        self.reactions: dict[int, list[int]] = {}  # msg -> reaction times (ms)
        self.live_replies: dict[int, int] = {}
        self.conv_msgs = [array("i") for _ in self.convs]
        # attachments: (msg, content key, kind, size, path relative to the format folder)
        self.atts: list[tuple[int, int, str, int, str]] = []
        self.live_by_platform = [0] * 5
        self.live_att_bytes = 0
        self.days_done = 0

    def _build_convs(self, rng: random.Random) -> None:
        p, n_users = self.p, self.p.users
        convs: list[_Conv] = []

        def members(k: int, must_me: bool = False) -> list[int]:
            k = max(2, min(n_users, k))
            pool = rng.sample(range(1, n_users), k - 1)
            ms = sorted(pool + [0]) if must_me or rng.random() < 0.7 else sorted(
                rng.sample(range(n_users), k))
            return ms

        def add(platform, name, kind, mem, topic=""):
            cid = _mix(self.seed, _T_ID, 10, len(convs))
            local = sum(1 for c in convs if c.platform == platform)
            convs.append(_Conv(len(convs), platform, name, kind, mem, self.users, cid, topic, local))

        def names(base: list[str], n: int) -> list[str]:
            return [base[i % len(base)] + (f"-{i // len(base) + 1}" if i >= len(base) else "")
                    for i in range(n)]

        everyone = list(range(n_users))
        for i, nm in enumerate(names(_SLACK_CHANNELS, p.channels)):
            add(_P_SLACK, nm, "public", everyone if i == 0 else members(rng.randint(min(3, n_users), n_users)),
                rng.choice(["", "Daily chatter", "Ship it 🚀", "Ask anything", "本频道用于日常沟通"]))
        for i, nm in enumerate(names(_MM_CHANNELS, p.channels)):
            add(_P_MM, nm, "O", everyone if i == 0 else members(rng.randint(min(3, n_users), n_users)))
        for i, nm in enumerate(names(_DC_CHANNELS, p.channels)):
            add(_P_DC, nm, "GuildTextChat", members(rng.randint(min(3, n_users), n_users)),
                rng.choice(["", "Be nice", "No spoilers!", "中文交流区", "Bug reports here"]))
        for i in range(p.channels):
            if i % 2 == 0:  # personal chats with other people
                other = 1 + (i // 2) % (n_users - 1)
                add(_P_TG, self.users[other].name, "personal_chat", [0, other])
            else:
                nm, kind = _TG_GROUPS[(i // 2) % len(_TG_GROUPS)]
                if i // 2 >= len(_TG_GROUPS):
                    nm += f" {i // 2 // len(_TG_GROUPS) + 1}"
                add(_P_TG, nm, kind, [0] if kind == "public_channel" else members(
                    rng.randint(min(3, n_users), n_users), True))
        for i in range(max(2, p.channels // 2)):
            if i % 2 == 0:
                other = 1 + (i // 2 + 3) % (n_users - 1)
                nm = self.users[other].name
                if any(c.platform == _P_WA and c.name == nm for c in convs):
                    nm = f"{nm} ({i})"
                add(_P_WA, nm, "personal", [0, other])
            else:
                nm = _WA_GROUPS[(i // 2) % len(_WA_GROUPS)]
                if i // 2 >= len(_WA_GROUPS):
                    nm += f" {i // 2 // len(_WA_GROUPS) + 1}"
                add(_P_WA, nm, "group", members(rng.randint(min(3, n_users), n_users), True))
        self.convs = convs
        # activity weights: platform share split Zipf-like over the platform's conversations
        cum, acc = [], 0.0
        for c in convs:
            peers = [d for d in convs if d.platform == c.platform]
            z = sum(1.0 / (k + 1) for k in range(len(peers)))
            acc += _PLATFORM_SHARE[c.platform] / (c.local + 1) / z
            cum.append(acc)
        self.conv_cum = cum

    # ---- day simulation

    def simulate(self, last: int) -> None:
        while self.days_done <= last:
            self._day(self.days_done)
            self.days_done += 1

    def _pick_old(self, rng: random.Random, count: int, recent: int) -> int:
        lo = max(0, count - recent) if rng.random() < 0.5 else 0
        return rng.randrange(lo, count)

    def _day(self, t: int) -> None:
        p = self.p
        rng = random.Random(_mix(self.seed, _T_DAY, t))
        day_ms = (self.epoch0 + t * 86400) * 1000
        mpd = p.messages_per_day * p.scale
        count = len(self.ts)
        dead = self.dead
        live = sum(self.live_by_platform)
        # 1. touch old messages: edits, reactions, deletions
        if live:
            recent = max(1, int(7 * mpd))
            for _ in range(_round(rng, p.edit_rate * live)):
                i = self._pick_old(rng, count, recent)
                if not dead[i]:
                    self.ver[i] += 1
                    self.edit_ts[i] = day_ms + rng.randrange(86_400_000)
            for _ in range(_round(rng, p.edit_rate * 1.5 * live)):
                i = self._pick_old(rng, count, recent)
                if not dead[i]:
                    self.reactions.setdefault(i, []).append(day_ms + rng.randrange(86_400_000))
            for _ in range(_round(rng, p.edit_rate * 0.1 * live)):
                i = self._pick_old(rng, count, recent)
                if dead[i] or self.live_replies.get(i):
                    continue
                dead[i] = 1
                self.live_by_platform[self.convs[self.conv[i]].platform] -= 1
                if self.parent[i] >= 0:
                    self.live_replies[self.parent[i]] -= 1
                if self.att[i] >= 0:
                    self.live_att_bytes -= self.atts[self.att[i]][3]
        # 2. new messages (quieter on weekends)
        weekday = (self.p.start + _dt.timedelta(days=t - p.history_days)).weekday()
        factor = (0.6 if weekday >= 5 else 1.16) * (0.85 + 0.3 * rng.random())
        n = _round(rng, mpd * factor)
        times = sorted(rng.randrange(86_400_000) for _ in range(n))
        convs = rng.choices(range(len(self.convs)), cum_weights=self.conv_cum, k=n)
        first_new = count
        for k in range(n):
            c = convs[k]
            conv = self.convs[c]
            ms = day_ms + times[k]
            i = count + k
            parent = -1
            cm = self.conv_msgs[c]
            if conv.platform != _P_WA and cm and rng.random() < 0.18:
                j = cm[-1 - rng.randrange(min(60, len(cm)))]
                if self.parent[j] >= 0:
                    j = self.parent[j]
                if not dead[j]:
                    parent = j
                    self.live_replies[j] = self.live_replies.get(j, 0) + 1
            self.ts.append(ms)
            self.conv.append(c)
            self.user.append(conv.pick_user(rng))
            self.parent.append(parent)
            self.seq.append(len(cm) + 1)
            self.ver.append(0)
            self.edit_ts.append(0)
            self.att.append(-1)
            dead.append(0)
            cm.append(i)
            self.live_by_platform[conv.platform] += 1
            if rng.random() < 0.15:
                left = day_ms + 86_400_000 - ms
                self.reactions[i] = sorted(ms + 1000 + rng.randrange(max(1, left - 1000))
                                           for _ in range(1 + rng.randrange(3)))
        count += n
        # 3. attachments on today's messages until the byte budget is met
        share = p.attachment_share
        if share <= 0 or n == 0:
            return
        ratio = share / (1.0 - share)
        est_text = sum(a * b for a, b in zip(self.live_by_platform, _EST_BYTES))
        deficit = ratio * est_text - self.live_att_bytes
        hi = min(_ATT_MAX, max(64 * 1024, int(ratio * mpd * _EST_AVG)))
        cands = list(range(first_new, count))
        rng.shuffle(cands)
        wa_seq = 0
        while deficit > 0 and cands:
            i = cands.pop()
            conv = self.convs[self.conv[i]]
            k = len(self.atts)
            if self.atts and rng.random() < _REPOST_PROB:
                _, key, kind, size, _ = self.atts[rng.randrange(len(self.atts))]
            else:
                key = k
                size = int(math.exp(rng.uniform(math.log(_ATT_MIN), math.log(hi))))
                size = max(_ATT_MIN, min(size, int(deficit) + _ATT_MIN))
                kind = self._kind(rng, size)
            if conv.platform == _P_WA:
                wa_seq += 1
            path = self._att_path(rng, conv, i, k, kind, wa_seq)
            self.atts.append((i, key, kind, size, path))
            self.att[i] = k
            self.live_att_bytes += size
            deficit -= size

    @staticmethod
    def _kind(rng: random.Random, size: int) -> str:
        if size < 24 * 1024:
            return "png" if rng.random() < 0.6 else "gif"
        r = rng.random()
        if r < 0.55:
            return "jpg"
        if r < 0.75:
            return "pdf"
        if r < 0.88:
            return "png"
        if r < 0.95:
            return "mp4" if size > 400 * 1024 else "jpg"
        return "docx"

    def _att_path(self, rng, conv: _Conv, i: int, k: int, kind: str, wa_seq: int) -> str:
        when = _dt.datetime.fromtimestamp(self.ts[i] // 1000, _UTC)
        ymd = when.strftime("%Y%m%d")
        ext = _KINDS[kind][0]
        choices = {
            "jpg": [f"IMG_{k + 1000:04d}.jpg", f"photo_{ymd}_{when:%H%M%S}_{k}.jpg",
                    f"微信图片_{ymd}{when:%H%M%S}_{k}.jpg"],
            "png": [f"Screenshot {when:%Y-%m-%d} at {when:%H.%M.%S} ({k}).png", f"image-{k}.png",
                    f"截图_{k}.png"],
            "gif": [f"reaction-{k}.gif", f"party-parrot-{k}.gif"],
            "pdf": [f"Q{(when.month - 1) // 3 + 1}-report-v{k}.pdf", f"invoice_{ymd}_{k}.pdf",
                    f"会议纪要_{k}.pdf", f"scan{k:05d}.pdf"],
            "mp4": [f"VID_{ymd}_{when:%H%M%S}_{k}.mp4", f"screen-recording-{k}.mp4"],
            "docx": [f"proposal-draft-{k}.docx", f"需求文档_v{k}.docx"],
        }[kind]
        name = rng.choice(choices)
        fid = _mix(self.seed, _T_ID, 20, k)
        if conv.platform == _P_SLACK:
            return f"__uploads/F0{_b36(fid, 9)}/{name}"
        if conv.platform == _P_MM:
            return f"data/{ymd}/{_b32(fid, 13)}{_b32(fid >> 1, 13)}/{name}"
        if conv.platform == _P_TG:
            chat = f"chats/chat_{conv.local + 1:03d}"
            if kind in _IMAGE_KINDS:
                return f"{chat}/photos/photo_{k + 1}@{when:%d-%m-%Y_%H-%M-%S}.{ext}"
            if kind == "mp4":
                return f"{chat}/video_files/{name}"
            return f"{chat}/files/{name}"
        if conv.platform == _P_DC:
            stem = name.rsplit(".", 1)[0]
            return f"{conv.name}.json_Files/{stem}-{fid & 0xFFFFF:05X}.{ext}"
        prefix = "IMG" if kind in _IMAGE_KINDS else ("VID" if kind == "mp4" else "DOC")
        return f"{prefix}-{ymd}-WA{wa_seq:04d}.{ext}"

    # ---- message content

    def segments(self, i: int) -> list[tuple[int, object]]:
        """Message text as segments: (0, text), (1, user index) mention, (2, url)."""
        u = self.users[self.user[i]]
        rng = random.Random(_mix(self.seed, _T_TEXT, i))
        zh_p = 0.75 if u.zh else 0.15
        segs: list[tuple[int, object]] = []
        if rng.random() < 0.12:
            segs.append((1, rng.randrange(len(self.users))))
            segs.append((0, " "))
        r = rng.random()
        if r < 0.22:
            segs.append((0, _pick(rng, _ZH_SHORT if rng.random() < zh_p else _EN_SHORT)))
        else:
            n = 1 + (rng.random() < 0.45) + (rng.random() < 0.2)
            if r > 0.97:
                n = 5 + rng.randrange(8)
            sep = "\n" if rng.random() < 0.08 else " "
            segs.append((0, sep.join(self._sentence(rng, rng.random() < zh_p) for _ in range(n))))
        if rng.random() < 0.1:
            segs.append((0, " "))
            tmpl = _pick(rng, _URLS)
            segs.append((2, tmpl.format(n=rng.randrange(1, 99999), t=_b36(rng.getrandbits(60), 11))))
        if rng.random() < 0.18:
            segs.append((0, " " + _pick(rng, _EMOJI) * (1 + (rng.random() < 0.2))))
        for k in range(1, self.ver[i] + 1):
            erng = random.Random(_mix(self.seed, _T_EDIT, i, k))
            zh = erng.random() < zh_p
            if erng.random() < 0.5:  # rewrite the main sentence
                for s in range(len(segs)):
                    if segs[s][0] == 0 and len(segs[s][1]) > 2:  # type: ignore[arg-type]
                        segs[s] = (0, self._sentence(erng, zh))
                        break
            else:
                segs.append((0, _pick(erng, _EDIT_NOTES_ZH if zh else _EDIT_NOTES_EN)))
        return segs

    @staticmethod
    def _sentence(rng: random.Random, zh: bool) -> str:
        if zh:
            if rng.random() < 0.2:
                return _pick(rng, _ZH_Q)
            return (_pick(rng, _ZH_SUBJ) + _pick(rng, _ZH_ADV) + _pick(rng, _ZH_VERB)
                    + _pick(rng, _ZH_OBJ) + _pick(rng, _ZH_END))
        if rng.random() < 0.2:
            return _pick(rng, _EN_OPEN) + _pick(rng, _EN_Q)
        s = (f"{_pick(rng, _EN_OPEN)}{_pick(rng, _EN_SUBJ)} {_pick(rng, _EN_VERB)} "
             f"{_pick(rng, _EN_OBJ)} {_pick(rng, _EN_TAIL)}").rstrip()
        return s + _pick(rng, _EN_END)

    def reaction_list(self, i: int) -> list[tuple[int, list[tuple[int, int]]]]:
        """[(reaction index, [(user, ms), ...]), ...] in order of first use."""
        times = self.reactions.get(i)
        if not times:
            return []
        members = self.convs[self.conv[i]].members
        out: dict[int, list[tuple[int, int]]] = {}
        for j, ms in enumerate(times):
            h = _mix(self.seed, _T_REACT, i, j)
            e = bisect_right(_REACT_CUM, h % 100)
            u = members[(h >> 8) % len(members)]
            lst = out.setdefault(e, [])
            if all(u != x for x, _ in lst):
                lst.append((u, ms))
        return list(out.items())


# --------------------------------------------------------------------------- writing


class _Writer:
    def __init__(self, root: Path, world: _World) -> None:
        self.root = root
        self.w = world
        self.written: set[str] = set()
        self.files = 0
        self.bytes = 0
        self.attachments = 0

    def open(self, rel: str):
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self.written.add(str(path))
        self.files += 1
        return _Sink(self, path)

    def text(self, rel: str, s: str) -> None:
        with self.open(rel) as f:
            f.write(s)

    def blob(self, rel: str, key: int, kind: str, size: int) -> None:
        _, _, head, tail = _KINDS[kind]
        rng = random.Random(_mix(self.w.seed, _T_BYTES, key))
        body = size - len(head) - len(tail)
        with self.open(rel) as f:
            f.write_bytes(head)
            while body > 0:
                n = min(body, 1 << 20)
                f.write_bytes(rng.randbytes(n))
                body -= n
            f.write_bytes(tail)
        self.attachments += 1

    def prune(self) -> None:
        for fmt in FORMATS:
            top = self.root / fmt
            if not top.is_dir():
                continue
            for dirpath, dirnames, filenames in os.walk(top, topdown=False):
                for fn in filenames:
                    full = os.path.join(dirpath, fn)
                    if full not in self.written:
                        os.unlink(full)
                for dn in dirnames:
                    full = os.path.join(dirpath, dn)
                    if os.path.isdir(full) and not os.path.islink(full) and not os.listdir(full):
                        os.rmdir(full)


class _Sink:
    """A binary file with a small write buffer that counts bytes."""

    def __init__(self, writer: _Writer, path: Path) -> None:
        self.writer = writer
        self.f = open(path, "wb")  # noqa: SIM115 - closed in __exit__
        self.buf: list[str] = []
        self.pending = 0

    def write(self, s: str) -> None:
        self.buf.append(s)
        self.pending += len(s)
        if self.pending > 1 << 18:
            self.flush()

    def write_bytes(self, b: bytes) -> None:
        self.flush()
        self.f.write(b)
        self.writer.bytes += len(b)

    def flush(self) -> None:
        if self.buf:
            data = "".join(self.buf).encode("utf-8")
            self.f.write(data)
            self.writer.bytes += len(data)
            self.buf.clear()
            self.pending = 0

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, *exc) -> None:
        self.flush()
        self.f.close()


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


def _plain(w: _World, segs, style: int) -> str:
    """Flatten segments. style 0 Slack mrkdwn, 1 '@handle', 2 '@Display Name'."""
    parts = []
    for kind, v in segs:
        if kind == 0:
            if style == 0:
                v = v.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            parts.append(v)
        elif kind == 1:
            u = w.users[v]
            parts.append(f"<@{u.slack_id}>" if style == 0 else
                         "@" + (u.handle if style == 1 else u.name))
        else:
            parts.append(f"<{v}>" if style == 0 else v)
    return "".join(parts)


# ---- Slack


def _slack_ts(ms: int, i: int) -> str:
    return f"{ms // 1000}.{(ms % 1000) * 1000 + i % 1000:06d}"


def _slack(w: _World, out: _Writer, live_by_conv, children) -> None:
    enc = _enc_a

    def dump(o) -> str:  # Slack exports are PHP json_encode output: ASCII, escaped slashes
        return _dumps(o, 4, enc).replace("/", "\\/")

    base_ts = w.epoch0 - 86400 * 400
    users = []
    for u in w.users:
        users.append({
            "id": u.slack_id, "team_id": w.team_id, "name": u.handle, "deleted": False,
            "color": u.color[1:], "real_name": u.name,
            "tz": "Asia/Shanghai" if u.zh else "America/New_York",
            "tz_label": "China Standard Time" if u.zh else "Eastern Standard Time",
            "tz_offset": 28800 if u.zh else -18000,
            "profile": {"title": "", "phone": "", "skype": "", "real_name": u.name,
                        "real_name_normalized": u.name, "display_name": u.first,
                        "display_name_normalized": u.first, "status_text": "", "status_emoji": "",
                        "avatar_hash": u.avatar[:12],
                        "image_72": f"https://avatars.slack-edge.com/2026-01-01/{u.avatar[:10]}_72.jpg",
                        "first_name": u.first, "last_name": u.last, "team": w.team_id},
            "is_admin": u.idx == 0, "is_owner": u.idx == 0, "is_bot": False, "is_app_user": False,
            "updated": base_ts + u.idx * 3600,
        })
    out.text("slack/users.json", dump(users))
    chans = []
    for c in w.convs:
        if c.platform != _P_SLACK:
            continue
        chans.append({
            "id": "C0" + _b36(c.cid, 9), "name": c.name, "created": base_ts + c.local * 86400,
            "creator": w.users[0].slack_id, "is_archived": False, "is_general": c.local == 0,
            "members": [w.users[m].slack_id for m in c.members],
            "topic": {"value": c.topic, "creator": w.users[0].slack_id if c.topic else "",
                      "last_set": base_ts if c.topic else 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        })
    out.text("slack/channels.json", dump(chans))
    profiles = [_slack_profile(w, u) for u in w.users]
    for c in w.convs:
        if c.platform != _P_SLACK:
            continue
        day_key, batch = None, []
        for i in live_by_conv[c.idx]:
            k = w.ts[i] // 86_400_000
            if k != day_key:
                if batch:
                    out.text(f"slack/{c.name}/{_dt.date.fromordinal(719163 + day_key)}.json",
                             dump(batch))
                day_key, batch = k, []
            batch.append(_slack_msg(w, i, children, profiles))
        if batch:
            out.text(f"slack/{c.name}/{_dt.date.fromordinal(719163 + day_key)}.json", dump(batch))


def _slack_profile(w: _World, u: _User) -> _Raw:
    """The user_profile object Slack embeds in every message, pre-rendered at its level."""
    return _Raw(_dumps({
        "avatar_hash": u.avatar[:12],
        "image_72": f"https://avatars.slack-edge.com/2026-01-01/{u.avatar[:10]}_72.jpg",
        "first_name": u.first, "real_name": u.name, "display_name": u.first, "team": w.team_id,
        "name": u.handle, "is_restricted": False, "is_ultra_restricted": False,
    }, 4, _enc_a, 2))


def _slack_msg(w: _World, i: int, children, profiles) -> dict:
    u = w.users[w.user[i]]
    ms = w.ts[i]
    ts = _slack_ts(ms, i)
    segs = w.segments(i)
    text = _plain(w, segs, 0)
    h = _mix(w.seed, _T_ID, 30, i)
    m: dict = {
        "client_msg_id": "%08x-%04x-4%03x-a%03x-%012x" % (
            h >> 32, (h >> 16) & 0xFFFF, (h >> 4) & 0xFFF, h & 0xFFF, (h * 31) & 0xFFFFFFFFFFFF),
        "type": "message", "text": text, "user": u.slack_id, "ts": ts,
    }
    if w.ver[i]:
        m["edited"] = {"user": u.slack_id, "ts": _slack_ts(w.edit_ts[i], i)}
    elems = []
    for kind, v in segs:
        if kind == 0:
            elems.append({"type": "text", "text": v})
        elif kind == 1:
            elems.append({"type": "user", "user_id": w.users[v].slack_id})
        else:
            elems.append({"type": "link", "url": v})
    m["blocks"] = [{"type": "rich_text", "block_id": _b36(h >> 7, 5),
                    "elements": [{"type": "rich_text_section", "elements": elems}]}]
    m["team"] = w.team_id
    m["user_team"] = w.team_id
    m["source_team"] = w.team_id
    m["user_profile"] = profiles[w.user[i]]
    a = w.att[i]
    if a >= 0:
        _, _, kind, size, path = w.atts[a]
        ext, mime, _, _ = _KINDS[kind]
        fid, name = path.split("/")[1:3]
        url = f"https://files.slack.com/files-pri/{w.team_id}-{fid}/{name}"
        m["files"] = [{
            "id": fid, "created": ms // 1000, "timestamp": ms // 1000, "name": name, "title": name,
            "mimetype": mime, "filetype": ext, "pretty_type": ext.upper(), "user": u.slack_id,
            "user_team": w.team_id, "editable": False, "size": size, "mode": "hosted",
            "is_external": False, "external_type": "", "is_public": True,
            "public_url_shared": False, "display_as_bot": False, "username": "",
            "url_private": url, "url_private_download": url.replace("/files-pri/", "/download/"),
            "permalink": f"https://acme.slack.com/files/{u.slack_id}/{fid}/{name}",
        }]
    par = w.parent[i]
    kids = children.get(i)
    if par >= 0:
        m["thread_ts"] = _slack_ts(w.ts[par], par)
        m["parent_user_id"] = w.users[w.user[par]].slack_id
    elif kids:
        reply_users: list[str] = []
        for k in kids:
            sid = w.users[w.user[k]].slack_id
            if sid not in reply_users:
                reply_users.append(sid)
        m["thread_ts"] = ts
        m["reply_count"] = len(kids)
        m["reply_users_count"] = len(reply_users)
        m["latest_reply"] = _slack_ts(w.ts[kids[-1]], kids[-1])
        m["reply_users"] = reply_users
        m["replies"] = [{"user": w.users[w.user[k]].slack_id, "ts": _slack_ts(w.ts[k], k)}
                        for k in kids]
        m["is_locked"] = False
        m["subscribed"] = False
    reacts = w.reaction_list(i)
    if reacts:
        m["reactions"] = [{"name": _REACTIONS[e][1], "users": [w.users[x].slack_id for x, _ in us],
                           "count": len(us)} for e, us in reacts]
    return m


# ---- Mattermost


def _mm_id(w: _World, i: int) -> str:
    h = _mix(w.seed, _T_ID, 40, i)
    return _b32(h, 13) + _b32(_mix(h, 41), 13)


def _mattermost(w: _World, out: _Writer, live_by_conv, children, export_ms: int) -> None:
    team = "acme"
    with out.open("mattermost/export.jsonl") as f:
        f.write(_compact({"type": "version", "version": 1, "info": {
            "generator": "mattermost-server", "version": "9.11.2",
            "created": _dt_of(export_ms + _mix(w.seed, _T_EXPORT, w.days_done) % 600_000)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "additional": {}}}) + "\n")
        f.write(_compact({"type": "team", "team": {
            "name": team, "display_name": "Acme 研发", "type": "O",
            "description": "Everything Acme", "allow_open_invite": True}}) + "\n")
        mm_convs = [c for c in w.convs if c.platform == _P_MM]
        for c in mm_convs:
            f.write(_compact({"type": "channel", "channel": {
                "team": team, "name": c.name, "display_name": c.name.replace("-", " ").title(),
                "type": "O", "header": "", "purpose": ""}}) + "\n")
        for u in w.users:
            f.write(_compact({"type": "user", "user": {
                "username": u.handle, "email": f"{u.handle}@acme.example", "auth_service": "",
                "nickname": "", "first_name": u.first, "last_name": u.last, "position": "",
                "roles": "system_admin system_user" if u.idx == 0 else "system_user",
                "locale": "zh-CN" if u.zh else "en",
                "teams": [{"name": team, "roles": "team_user", "channels": [
                    {"name": c.name, "roles": "channel_user"} for c in mm_convs
                    if u.idx in c.members]}]}}) + "\n")
        roots = []
        for c in mm_convs:
            for i in live_by_conv[c.idx]:
                if w.parent[i] < 0:
                    roots.append((_mm_id(w, i), i))
        roots.sort()
        for pid, i in roots:
            post = {"team": team, "channel": w.convs[w.conv[i]].name, **_mm_post(w, i, pid)}
            kids = children.get(i)
            if kids:
                post["replies"] = [_mm_post(w, k, _mm_id(w, k)) for k in kids]
            f.write(_compact({"type": "post", "post": post}) + "\n")


def _mm_post(w: _World, i: int, pid: str) -> dict:
    ms = w.ts[i]
    p: dict = {"id": pid, "user": w.users[w.user[i]].handle,
               "message": _plain(w, w.segments(i), 1), "create_at": ms}
    if w.ver[i]:
        p["edit_at"] = w.edit_ts[i]
    reacts = w.reaction_list(i)
    if reacts:
        p["reactions"] = [{"user": w.users[x].handle, "create_at": t, "emoji_name": _REACTIONS[e][1]}
                          for e, us in reacts for x, t in us]
    a = w.att[i]
    if a >= 0:
        p["attachments"] = [{"path": w.atts[a][4]}]
    return p


# ---- Telegram


def _telegram(w: _World, out: _Writer, live_by_conv) -> None:
    me = w.users[0]
    enc = _enc_u
    with out.open("telegram/result.json") as f:
        head = {
            "about": "Here is the data you requested. Remember: Telegram is ad free, it doesn't "
                     "collect your data for ads targeting.",
            "personal_information": {"user_id": me.tg_id, "first_name": me.first,
                                     "last_name": me.last, "phone_number": "+1 555 0100",
                                     "username": "@" + me.handle.replace(".", "_"), "bio": ""},
            "contacts": {"about": "This is your contacts list.", "list": [
                {"first_name": u.first, "last_name": u.last, "phone_number": f"+1 555 01{u.idx:02d}",
                 "date": "2025-01-01T12:00:00", "date_unixtime": "1735732800"}
                for u in w.users[1:]]},
        }
        body = _dumps(head, 1, enc)
        f.write(body[:-2] + ",\n \"chats\": {\n  \"about\": \"This page lists all chats from "
                "this export.\",\n  \"list\": [")
        first_chat = True
        for c in w.convs:
            if c.platform != _P_TG:
                continue
            f.write(("\n" if first_chat else ",\n") + "   {\n")
            first_chat = False
            cid = c.cid % 9_000_000_000 + 1_000_000_000
            f.write(f'    "name": {enc(c.name)},\n    "type": "{c.kind}",\n    "id": {cid},\n'
                    '    "messages": [')
            msgs = live_by_conv[c.idx]
            for n, i in enumerate(msgs):
                f.write(("," if n else "") + "\n     " + _dumps(_tg_msg(w, c, i), 1, enc, 5))
            f.write("\n    ]\n   }" if msgs else "]\n   }")
        f.write("\n  ]\n }\n}\n")


def _tg_msg(w: _World, c: _Conv, i: int) -> dict:
    ms = w.ts[i]
    u = w.users[w.user[i]]
    m: dict = {"id": w.seq[i] + 10, "type": "message", "date": _iso(ms),
               "date_unixtime": str(ms // 1000)}
    if w.ver[i]:
        m["edited"] = _iso(w.edit_ts[i])
        m["edited_unixtime"] = str(w.edit_ts[i] // 1000)
    if c.kind == "public_channel":
        m["from"], m["from_id"] = c.name, f"channel{c.cid % 9_000_000_000 + 1_000_000_000}"
    else:
        m["from"], m["from_id"] = u.name, f"user{u.tg_id}"
    par = w.parent[i]
    if par >= 0:
        m["reply_to_message_id"] = w.seq[par] + 10
    a = w.att[i]
    if a >= 0:
        _, key, kind, size, path = w.atts[a]
        if kind in _IMAGE_KINDS:
            m["photo"] = path
            m["photo_file_size"] = size
            m["width"] = 1280 if key % 2 else 960
            m["height"] = 960 if key % 2 else 1280
        else:
            m["file"] = path
            m["file_name"] = path.rsplit("/", 1)[1]
            m["file_size"] = size
            m["mime_type"] = _KINDS[kind][1]
    segs = w.segments(i)
    ents = []
    for kind, v in segs:
        if kind == 0:
            ents.append({"type": "plain", "text": v})
        elif kind == 1:
            ents.append({"type": "mention", "text": "@" + w.users[v].handle.replace(".", "_")})
        else:
            ents.append({"type": "link", "text": v})
    if all(e["type"] == "plain" for e in ents):
        m["text"] = "".join(e["text"] for e in ents)
    else:
        m["text"] = [e["text"] if e["type"] == "plain" else e for e in ents]
    m["text_entities"] = ents
    reacts = w.reaction_list(i)
    if reacts:
        m["reactions"] = [{"type": "emoji", "count": len(us), "emoji": _REACTIONS[e][0],
                           "recent": [{"from": w.users[x].name, "from_id": f"user{w.users[x].tg_id}",
                                       "date": _iso(t)} for x, t in us[-3:]]}
                          for e, us in reacts]
    return m


# ---- Discord (DiscordChatExporter JSON)


def _dc_author(w: _World, x: int) -> dict:
    u = w.users[x]
    return {"id": u.dc_id, "name": u.handle.replace(".", "_"), "discriminator": "0000",
            "nickname": u.name, "color": u.color if u.idx % 3 else None, "isBot": False,
            "roles": ([{"id": str(int(w.guild_id) + 7), "name": "Admin", "color": "#E74C3C",
                        "position": 3}] if u.idx == 0 else []),
            "avatarUrl": f"https://cdn.discordapp.com/avatars/{u.dc_id}/{u.avatar}.png?size=512"}


def _dc_id(w: _World, i: int) -> str:
    return str(((w.ts[i] - 1420070400000) << 22) | (_mix(w.seed, _T_ID, 50, i) & 0x3FFFFF))


def _discord(w: _World, out: _Writer, live_by_conv, export_ms: int) -> None:
    enc = _enc_u
    # authors are embedded at three nesting levels: message.author, mentions[], reactions[].users[]
    authors = {lvl: [_Raw(_dumps(_dc_author(w, x), 2, enc, lvl)) for x in range(len(w.users))]
               for lvl in (3, 4, 6)}
    for c in w.convs:
        if c.platform != _P_DC:
            continue
        jitter = _mix(w.seed, _T_EXPORT, w.days_done, c.idx) % 900_000
        head = {
            "guild": {"id": w.guild_id, "name": "Acme Community 社区",
                      "iconUrl": f"https://cdn.discordapp.com/icons/{w.guild_id}/a1b2c3.png?size=512"},
            "channel": {"id": str(c.cid >> 8), "type": c.kind, "categoryId": str(c.cid >> 9),
                        "category": "Text Channels", "name": c.name, "topic": c.topic or None},
            "dateRange": {"after": None, "before": None},
            "exportedAt": _iso_ms(export_ms + c.local * 2_000 + jitter),
        }
        msgs = live_by_conv[c.idx]
        with out.open(f"discord/{c.name}.json") as f:
            f.write(_dumps(head, 2, enc)[:-2] + ',\n  "messages": [')
            for n, i in enumerate(msgs):
                f.write(("," if n else "") + "\n    " + _dumps(_dc_msg(w, c, i, authors), 2, enc, 2))
            f.write(f'\n  ],\n  "messageCount": {len(msgs)}\n}}\n' if msgs
                    else '],\n  "messageCount": 0\n}\n')


def _dc_msg(w: _World, c: _Conv, i: int, authors) -> dict:
    segs = w.segments(i)
    par = w.parent[i]
    m: dict = {
        "id": _dc_id(w, i), "type": "Reply" if par >= 0 else "Default",
        "timestamp": _iso_ms(w.ts[i]),
        "timestampEdited": _iso_ms(w.edit_ts[i]) if w.ver[i] else None,
        "callEndedTimestamp": None, "isPinned": False,
        "content": _plain(w, segs, 2), "author": authors[3][w.user[i]],
    }
    atts = []
    a = w.att[i]
    if a >= 0:
        _, _, kind, size, path = w.atts[a]
        atts.append({"id": str(_mix(w.seed, _T_ID, 51, a) >> 1), "url": f"{path}",
                     "fileName": path.rsplit("/", 1)[1].rsplit("-", 1)[0] + "." + _KINDS[kind][0],
                     "fileSizeBytes": size})
    m["attachments"] = atts
    m["embeds"] = []
    m["stickers"] = []
    reacts = w.reaction_list(i)
    m["reactions"] = [{"emoji": {"id": "", "name": _REACTIONS[e][0], "code": _REACTIONS[e][2],
                                 "isAnimated": False,
                                 "imageUrl": f"https://cdn.jsdelivr.net/gh/twitter/twemoji@latest/"
                                             f"assets/svg/{ord(_REACTIONS[e][0][0]):x}.svg"},
                       "count": len(us), "users": [authors[6][x] for x, _ in us]}
                      for e, us in reacts]
    m["mentions"] = [authors[4][v] for kind, v in segs if kind == 1]
    m["inlineEmojis"] = []
    if par >= 0:
        m["reference"] = {"messageId": _dc_id(w, par), "channelId": str(c.cid >> 8),
                          "guildId": w.guild_id}
    return m


# ---- WhatsApp (Android, US locale)


def _wa_time(ms: int) -> str:
    d = _dt.datetime.fromtimestamp(ms // 1000, _UTC)
    h = d.hour % 12 or 12
    return f"{d.month}/{d.day}/{d.year % 100:02d}, {h}:{d.minute:02d} {'AM' if d.hour < 12 else 'PM'}"


def _whatsapp(w: _World, out: _Writer) -> None:
    for c in w.convs:
        if c.platform != _P_WA:
            continue
        msgs = w.conv_msgs[c.idx]
        with out.open(f"whatsapp/WhatsApp Chat with {c.name}.txt") as f:
            if msgs:
                f.write(f"{_wa_time(w.ts[msgs[0]])} - Messages and calls are end-to-end encrypted. "
                        "No one outside of this chat, not even WhatsApp, can read or listen to "
                        "them. Tap to learn more.\n")
            for i in msgs:
                name = w.users[w.user[i]].name
                if w.dead[i]:
                    text = "You deleted this message" if w.user[i] == 0 else "This message was deleted"
                else:
                    text = _plain(w, w.segments(i), 2)
                    a = w.att[i]
                    if a >= 0:
                        text = f"{w.atts[a][4]} (file attached)\n{text}"
                    if w.ver[i]:
                        text += " <This message was edited>"
                f.write(f"{_wa_time(w.ts[i])} - {name}: {text}\n")


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
