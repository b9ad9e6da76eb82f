"""Telegram Desktop full-account export (result.json)."""

from __future__ import annotations

from strongroom.samples.common import _Conv, _IMAGE_KINDS, _KINDS, _P_TG, _REACTIONS, _dumps, _enc_u, _iso
from strongroom.samples.output import _Writer
from strongroom.samples.world import _World


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
