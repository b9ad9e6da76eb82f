"""The simulated organisation: users, conversations and every message, day by day, from the seed."""

from __future__ import annotations

import calendar
import datetime as _dt
import math
import random
from array import array
from bisect import bisect_right

from strongroom.samples.common import ExportParams, _ATT_MAX, _ATT_MIN, _Conv, _DC_CHANNELS, _EDIT_NOTES_EN, _EDIT_NOTES_ZH, _EMOJI, _EN_END, _EN_OBJ, _EN_OPEN, _EN_Q, _EN_SHORT, _EN_SUBJ, _EN_TAIL, _EN_VERB, _EST_AVG, _EST_BYTES, _IMAGE_KINDS, _KINDS, _M64, _MM_CHANNELS, _PLATFORM_SHARE, _P_DC, _P_MM, _P_SLACK, _P_TG, _P_WA, _REACT_CUM, _REPOST_PROB, _SLACK_CHANNELS, _TG_GROUPS, _T_DAY, _T_EDIT, _T_ID, _T_REACT, _T_TEXT, _T_WORLD, _URLS, _UTC, _User, _WA_GROUPS, _ZH_ADV, _ZH_END, _ZH_OBJ, _ZH_Q, _ZH_SHORT, _ZH_SUBJ, _ZH_VERB, _b32, _b36, _mix, _pick, _round


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
