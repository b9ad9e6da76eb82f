"""DiscordChatExporter JSON, one file per channel."""

from __future__ import annotations

from strongroom.samples.common import _Conv, _KINDS, _P_DC, _REACTIONS, _Raw, _T_EXPORT, _T_ID, _dumps, _enc_u, _iso_ms, _mix
from strongroom.samples.output import _Writer, _plain
from strongroom.samples.world import _World


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
