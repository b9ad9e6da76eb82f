"""Slack workspace export: channels.json, users.json and one JSON array per channel and day."""

from __future__ import annotations

import datetime as _dt

from strongroom.samples.common import _KINDS, _P_SLACK, _REACTIONS, _Raw, _T_ID, _User, _b36, _dumps, _enc_a, _mix
from strongroom.samples.output import _Writer, _plain
from strongroom.samples.world import _World


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
