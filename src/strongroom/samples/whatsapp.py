"""WhatsApp chat .txt (Android, US locale), one file per chat."""

from __future__ import annotations

import datetime as _dt

from strongroom.samples.common import _P_WA, _UTC
from strongroom.samples.output import _Writer, _plain
from strongroom.samples.world import _World


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
