"""Mattermost bulk export JSONL, posts ordered by their hash-like ids."""

from __future__ import annotations

from strongroom.samples.common import _P_MM, _REACTIONS, _T_EXPORT, _T_ID, _b32, _compact, _dt_of, _mix
from strongroom.samples.output import _Writer, _plain
from strongroom.samples.world import _World


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
