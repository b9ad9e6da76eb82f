"""Each reader against its hand-written fixture (tests/fixtures/exports/README.md): exact messages."""

from __future__ import annotations

from pathlib import Path

from strongroom.messages.formats import LocalExportFiles, find_exports
from strongroom.messages.model import Message

FIXTURES = Path(__file__).parent / "fixtures" / "exports"


def read(platform: str, warnings: list[str] | None = None) -> tuple[list, list[Message]]:
    sink = warnings if warnings is not None else []
    files = LocalExportFiles(FIXTURES / platform)
    found = find_exports(files, warn=sink.append)
    exports = [e for r, e in found]
    msgs = [m for r, e in found for m in r.messages(files, e, warn=sink.append)]
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


def utc(*fields) -> int:
    import calendar
    return calendar.timegm(fields + (0,) * (6 - len(fields))) * 1000


def test_telegram_single_chat_and_full_export():
    warnings: list[str] = []
    exports, msgs = read("telegram", warnings)
    assert [(e.platform, e.root, e.files) for e in exports] == [
        ("telegram", "chat/result.json", ("chat/result.json",)),
        ("telegram", "full/result.json", ("full/result.json",))]
    P, src = "Project Phoenix 凤凰", "result.json"
    assert msgs == [
        # a service message: the actor is the author, its (empty) text is kept
        Message("telegram", P, "1", "Alice Martin", utc(2025, 3, 1, 9), False, "", src),
        Message("telegram", P, "2", "Alice Martin", utc(2025, 3, 1, 9, 1), False,
                "Kickoff notes are in the doc", src),
        # text as an array of strings and entities; date_unixtime wins over the local "date"
        Message("telegram", P, "3", "张伟", utc(2025, 3, 1, 9, 2, 30), True,
                "收到 @alice_m，链接：https://example.com/doc", src, reply_to="2"),
        Message("telegram", P, "4", "Alice Martin", utc(2025, 3, 1, 9, 3, 20), False,
                "Line one\nLine two", src, attachments=("photos/photo_1@01-03-2025_10-03-20.jpg",)),
        # a deleted account (from: null) and no date_unixtime: "date" is read as UTC
        Message("telegram", P, "5", "user1003", utc(2025, 3, 1, 10, 4), False, "", src,
                attachments=("files/report.pdf",)),
        Message("telegram", "张伟", "101", "张伟", utc(2025, 3, 2, 8), False, "早上好", src),
        Message("telegram", "张伟", "102", "Alice Martin", utc(2025, 3, 2, 8, 0, 5), False, "Morning!", src),
        Message("telegram", "chat 1001", "7", "Alice Martin", utc(2025, 3, 2, 9), False, "note to self", src),
        Message("telegram", "Old Team", "9", "Bob", utc(2024, 12, 31, 23, 59, 59), False, "bye 👋", src),
    ]
    assert warnings == []


def test_discord_chat_exporter():
    warnings: list[str] = []
    exports, msgs = read("discord", warnings)
    name = "Acme Community - Text Channels - general [1085].json"
    assert [(e.platform, e.root, e.files) for e in exports] == [("discord", name, (name,))]
    C = "Acme Community/general"
    assert msgs == [
        Message("discord", C, "1345000000000000001", "wei_zhang", utc(2025, 3, 1, 9), False,
                "Joined the server.", name),
        Message("discord", C, "1345000000000000002", "alice", utc(2025, 3, 1, 9, 1) + 123, True,
                "Welcome! Rules are in #rules", name),
        # +08:00 offset → UTC
        Message("discord", C, "1345000000000000003", "wei_zhang", utc(2025, 3, 1, 9, 2), False,
                "谢谢！\n我先看看规则", name, reply_to="1345000000000000002"),
        Message("discord", C, "1345000000000000004", "alice", utc(2025, 3, 1, 9, 5), False, "", name,
                attachments=(name + "_Files/diagram-3F2A1.png",)),
    ]
    assert warnings == []


def test_whatsapp_ios_and_android():
    warnings: list[str] = []
    exports, msgs = read("whatsapp", warnings)
    ios, android = "WhatsApp Chat - 家人群/_chat.txt", "android/WhatsApp Chat with Bob Lee.txt"
    assert [(e.platform, e.root) for e in exports] == [("whatsapp", ios), ("whatsapp", android)]
    from strongroom.messages.formats.whatsapp import _author_hash as h
    wei, alice, bob = h("张伟"), h("Alice Martin"), h("Bob Lee")
    t1, t2 = utc(2025, 3, 1, 9, 15, 2), utc(2025, 3, 13, 20, 1, 9)
    a1, a2 = utc(2025, 3, 1, 21, 5), utc(2025, 3, 1, 21, 6)
    assert msgs == [
        # iOS, day-first (13/03 decides); notices (U+200E) are not messages
        Message("whatsapp", "家人群", f"{t1}-{wei}-0", "张伟", t1, False, "周末一起吃饭吗？", "_chat.txt"),
        Message("whatsapp", "家人群", f"{t1}-{wei}-1", "张伟", t1, False, "地点：\n老地方\n12 点", "_chat.txt"),
        Message("whatsapp", "家人群", f"{utc(2025, 3, 1, 9, 16, 40)}-{alice}-0", "Alice Martin",
                utc(2025, 3, 1, 9, 16, 40), False, "<attached: 00000007-PHOTO-2025-03-01-09-16-40.jpg>",
                "_chat.txt", attachments=("00000007-PHOTO-2025-03-01-09-16-40.jpg",)),
        Message("whatsapp", "家人群", f"{utc(2025, 3, 1, 9, 17)}-{alice}-0", "Alice Martin",
                utc(2025, 3, 1, 9, 17), True, "Sounds good", "_chat.txt"),
        # the deleted message before it keeps occurrence 0
        Message("whatsapp", "家人群", f"{t2}-{wei}-1", "张伟", t2, False, "好的", "_chat.txt"),
        # Android, US locale: only ambiguous dates and a 12-hour clock → month-first
        Message("whatsapp", "Bob Lee", f"{a1}-{bob}-0", "Bob Lee", a1, False,
                "Are we still on for Friday?", "WhatsApp Chat with Bob Lee.txt"),
        Message("whatsapp", "Bob Lee", f"{a1}-{alice}-0", "Alice Martin", a1, False,
                "Yes: 7pm, usual place", "WhatsApp Chat with Bob Lee.txt"),
        Message("whatsapp", "Bob Lee", f"{a2}-{bob}-1", "Bob Lee", a2, False,
                "IMG-20250301-WA0001.jpg (file attached)\nmenu for the evening",
                "WhatsApp Chat with Bob Lee.txt", attachments=("IMG-20250301-WA0001.jpg",)),
        Message("whatsapp", "Bob Lee", f"{utc(2025, 3, 2, 0, 30)}-{alice}-0", "Alice Martin",
                utc(2025, 3, 2, 0, 30), True, "👍", "WhatsApp Chat with Bob Lee.txt"),
    ]
    assert warnings == []


def test_whatsapp_date_order_without_evidence_and_24_hours(tmp_path):
    from strongroom.messages.formats import LocalExportFiles as L
    (tmp_path / "WhatsApp Chat with Carol.txt").write_text(
        "01/03/2025, 21:05 - Carol: ciao\n02/03/2025, 07:00 - Carol: buongiorno\n", encoding="utf-8")
    files = L(tmp_path)
    (r, e), = find_exports(files)
    assert [(m.time_ms, m.text) for m in r.messages(files, e)] == [
        (utc(2025, 3, 1, 21, 5), "ciao"), (utc(2025, 3, 2, 7), "buongiorno")]


def test_zulip_realm_export():
    warnings: list[str] = []
    exports, msgs = read("zulip", warnings)
    assert [(e.platform, e.root, e.files) for e in exports] == [
        ("zulip", "export", ("export/realm.json", "export/messages-000001.json", "export/messages-000002.json"))]
    m1, m2 = "messages-000001.json", "messages-000002.json"
    assert msgs == [
        Message("zulip", "engineering", "1001", "Iago García", utc(2025, 3, 1, 9), False,
                "Release branch is cut.", m1, topic="release 2.4"),
        Message("zulip", "engineering", "1002", "张伟", utc(2025, 3, 1, 9, 1) + 125, True,
                "测试通过了 ✅\n[report.pdf](/user_uploads/2/ab/report.pdf)", m1, topic="release 2.4"),
        Message("zulip", "@Iago García,张伟", "1003", "Iago García", utc(2025, 3, 1, 10), False,
                "Can you review my PR?", m1),
        Message("zulip", "@group 3", "1004", "张伟", utc(2025, 3, 1, 10, 1, 40), False, "group hello", m2),
        Message("zulip", "设计", "1005", "张伟", utc(2025, 3, 1, 10, 3, 20), False, "新草稿", m2, topic="图标"),
    ]
    assert warnings == []


def test_matrix_element_export():
    warnings: list[str] = []
    exports, msgs = read("matrix", warnings)
    name = "matrix - Ops Room - Chat Export - 2025-03-03.json"
    assert [(e.platform, e.root, e.files) for e in exports] == [("matrix", name, (name,))]
    R = "Ops Room 运维"
    assert msgs == [
        # two m.replace edits follow it: the latest text, edited; the edits are not messages
        Message("matrix", R, "$m1:example.org", "@alice:example.org", utc(2025, 3, 1, 9), True,
                "Deploy at 11:00", name),
        Message("matrix", R, "$m2:example.org", "@wei:example.org", utc(2025, 3, 1, 9, 1), False,
                "> <@alice:example.org> Deploy at 10:00\n\n收到，我来盯监控", name, reply_to="$m1:example.org"),
        Message("matrix", R, "$m3:example.org", "@wei:example.org", utc(2025, 3, 1, 9, 5), False,
                "dashboard.png", name, attachments=("mxc://example.org/AbCdEf123",)),
        # $m4 is redacted (empty content): gone; state events and reactions are not messages
        Message("matrix", R, "$m5:example.org", "@wei:example.org", utc(2025, 3, 1, 9, 8, 20), False,
                "Rollback done\nAll green", name, reply_to="$m1:example.org"),
    ]
    assert warnings == []


def test_readers_take_file_roles_by_name_and_read_a_subset():
    """The catalogue re-reads only changed files: it passes an Export whose files are sorted
    and a subset (context files + the changed data files)."""
    from strongroom.messages.model import Export
    for platform, keep in (("zulip", "export/messages-000002.json"), ("slack", "workspace/general/2025-03-02.json")):
        files = LocalExportFiles(FIXTURES / platform)
        (reader, export), = find_exports(files)
        context = [p for p in export.files if p.rpartition("/")[2] in ("realm.json", "users.json", "channels.json")]
        part = Export(export.platform, export.root, tuple(sorted(context + [keep])))
        every = [m for m in reader.messages(files, export) if m.source == keep.partition("/")[2]]
        assert every and list(reader.messages(files, part)) == every


def test_derived_ids_are_pinned():
    """Derived ids are catalogue keys across nights and versions: these literals follow spec
    §22.3 and §22.6 (BLAKE2s-32 of the UTF-8 author), computed independently of the readers."""
    _, wa = read("whatsapp")
    assert [m.message_id for m in wa if m.author in ("张伟", "Bob Lee")] == [
        "1740820502000-281f9156-0", "1740820502000-281f9156-1", "1741896069000-281f9156-1",
        "1740863100000-3a6284d2-0", "1740863160000-3a6284d2-1"]
    _, mm = read("mattermost")
    assert mm[0].message_id == "1740823200000-97363a6f"
