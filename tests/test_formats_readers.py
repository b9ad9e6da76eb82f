"""Each reader against its hand-written fixture (tests/fixtures/exports/README.md): exact messages."""

from __future__ import annotations

from pathlib import Path

from strongroom.messages.formats import LocalExportFiles, find_exports
from strongroom.messages.model import Message

FIXTURES = Path(__file__).parent / "fixtures" / "exports"


def read(platform: str, warnings: list[str] | None = None) -> tuple[list, list[Message]]:
    files = LocalExportFiles(FIXTURES / platform)
    found = find_exports(files, warn=(warnings or []).append)
    exports = [e for r, e in found]
    msgs = [m for r, e in found for m in r.messages(files, e, warn=(warnings if warnings is not None else []).append)]
    return exports, msgs


def test_slack_workspace():
    warnings: list[str] = []
    exports, msgs = read("slack", warnings)
    assert [(e.platform, e.root) for e in exports] == [("slack", "workspace")]
    assert exports[0].files == (
        "workspace/D024BE91L/2025-03-01.json", "workspace/channels.json", "workspace/dms.json",
        "workspace/general/2025-03-01.json", "workspace/general/2025-03-02.json",
        "workspace/users.json", "workspace/设计/2025-03-01.json")
    g1, g2 = "general/2025-03-01.json", "general/2025-03-02.json"
    root = "1740823260.000200"
    assert msgs == [
        Message("slack", "D024BE91L", "1740830500.123456", "alice", 1740830500123, False,
                "Lunch at 12?", "D024BE91L/2025-03-01.json"),
        Message("slack", "general", "1740823200.000100", "wei.zhang", 1740823200000, False,
                "<@U0G9QF9C6> has joined the channel", g1),
        Message("slack", "general", root, "alice", 1740823260000, True,
                "Release 2.4 is out: <https://example.com/notes|notes> &amp; binaries", g1),
        Message("slack", "general", "1740823320.000300", "wei.zhang", 1740823320000, False,
                "恭喜！我们明天更新测试环境 🎉", g1, reply_to=root),
        Message("slack", "general", "1740823380.000400", "alice", 1740823380000, False,
                "Thanks!\nChangelog attached.", g1, reply_to=root, attachments=("changelog.pdf",)),
        # the tombstone of the deleted root is not a message; its reply still is
        Message("slack", "general", "1740909660.000600", "wei.zhang", 1740909660000, False,
                "reply to a deleted root", g2, reply_to="1740909600.000500"),
        Message("slack", "general", "1740909720.000700", "deploybot", 1740909720000, False,
                "Deploy finished", g2),
        Message("slack", "设计", "1740830400.000000", "wei.zhang", 1740830400000, False,
                "新的图标草稿在这里", "设计/2025-03-01.json"),
    ]
    assert warnings == []


def test_mattermost_bulk_export():
    warnings: list[str] = []
    exports, msgs = read("mattermost", warnings)
    assert [(e.platform, e.root, e.files) for e in exports] == [
        ("mattermost", "export.jsonl", ("export.jsonl",))]
    ts = "acme/town-square"
    root_id = "1740823200000-" + __import__("hashlib").blake2s(b"alice", digest_size=4).hexdigest()
    from strongroom.messages.formats.mattermost import derived_id
    assert root_id == derived_id(1740823200000, "alice")
    assert msgs == [
        Message("mattermost", ts, root_id, "alice", 1740823200000, True, "Standup moved to 10:00",
                "export.jsonl"),
        Message("mattermost", ts, derived_id(1740823260000, "wei.zhang"), "wei.zhang", 1740823260000,
                False, "好的，收到", "export.jsonl", reply_to=root_id),
        Message("mattermost", ts, derived_id(1740823320000, "alice"), "alice", 1740823320000, False,
                "Agenda:\n1. release\n2. hiring", "export.jsonl", reply_to=root_id,
                attachments=("data/20250301/agenda.docx",)),
        Message("mattermost", ts, derived_id(1740820000000, "wei.zhang"), "wei.zhang", 1740820000000,
                False, "wei.zhang joined the channel.", "export.jsonl"),
        Message("mattermost", ts, "8x4f1mqsbtgnzjzyq3kdp1zoqa", "alice", 1740823400000, False,
                "post with an id", "export.jsonl"),
        Message("mattermost", "@alice,wei.zhang", derived_id(1740830000000, "wei.zhang"), "wei.zhang",
                1740830000000, False, "私聊：周五见", "export.jsonl"),
    ]
    assert warnings == []
