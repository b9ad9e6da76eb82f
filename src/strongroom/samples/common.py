"""Parameters, seeded randomness, vocabularies and small helpers shared by the generator."""

from __future__ import annotations

import datetime as _dt
import json.encoder as _jenc
import random
from bisect import bisect_right
from dataclasses import dataclass

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
