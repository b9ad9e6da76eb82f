"""File trees, zips, recognition of the generated sample exports, malformed input, native output."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from strongroom.messages.formats import (
    LocalExportFiles, ZipExportFiles, expand_zips, find_exports, write_native)
from strongroom.samples import ExportParams, write_day

FIXTURES = Path(__file__).parent / "fixtures" / "exports"


def all_messages(files, warn=None):
    out = []
    for reader, export in find_exports(files, warn=warn):
        out.extend(reader.messages(files, export, warn=warn))
    return out


def zip_dir(src: Path, dst: Path, prefix: str = "") -> None:
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                z.write(p, prefix + p.relative_to(src).as_posix())


# ---- trees


def test_local_files_lists_regular_files_sorted_and_skips_symlinks(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.json").write_bytes(b"[]")
    (tmp_path / "a.txt").write_bytes(b"hello")
    (tmp_path / "link").symlink_to(tmp_path / "a.txt")
    files = LocalExportFiles(str(tmp_path))
    assert list(files.paths()) == ["a.txt", "b/x.json"]
    assert files.size("a.txt") == 5
    with files.open("b/x.json") as f:
        assert f.read() == b"[]"
    with pytest.raises(FileNotFoundError):
        files.open("link")


def test_zip_rejects_escaping_member_names(tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("ok/channels.json", "[]")
        z.writestr("../escape.json", "[]")
        z.writestr("/abs.json", "[]")
        z.writestr("a/../../b.json", "[]")
        z.writestr("C:/win.json", "[]")
        z.writestr("dir/", "")
    warnings: list[str] = []
    with ZipExportFiles(str(path), warn=warnings.append) as files:
        assert list(files.paths()) == ["ok/channels.json"]
    assert len(warnings) == 4 and all("escapes the archive" in w for w in warnings)


def test_zip_member_stored_data_is_the_archives_bytes(tmp_path):
    import zlib
    text = "".join(f"line {i} 中文\n" for i in range(3000)).encode()
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("a/deflated.txt"), text, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr(zipfile.ZipInfo("b/stored.txt", date_time=(2026, 1, 1, 0, 0, 0)), text)
    with ZipExportFiles(str(path)) as files:
        method, crc, size, blocks = files.stored("a/deflated.txt")
        data = b"".join(blocks)
        assert (method, crc, size) == (zipfile.ZIP_DEFLATED, zlib.crc32(text), len(text)) and len(data) < len(text)
        assert zlib.decompressobj(-15).decompress(data) == text
        with files.open("b/stored.txt") as member:  # an open member's reads are not disturbed
            head = member.read(10)
            assert b"".join(files.stored("b/stored.txt")[3]) == text
            assert head + member.read() == text
    path.write_bytes(path.read_bytes()[:200])  # the archive cut inside the first member
    with pytest.raises(zipfile.BadZipFile):
        ZipExportFiles(str(path))  # (no central directory: refused whole, as a broken archive)


def test_slack_zip_inside_a_directory_is_found(tmp_path):
    zip_dir(FIXTURES / "slack" / "workspace", tmp_path / "slack-export.zip")
    (tmp_path / "notes.zip").write_bytes(b"PK\x03\x04 but not really a zip")
    warnings: list[str] = []
    files = expand_zips(LocalExportFiles(tmp_path), warn=warnings.append)
    found = find_exports(files, warn=warnings.append)
    assert [(r.platform, e.root) for r, e in found] == [("slack", "slack-export.zip")]
    msgs = [m for r, e in found for m in r.messages(files, e)]
    direct = all_messages(LocalExportFiles(FIXTURES / "slack"))
    assert msgs == direct and len(msgs) == 8
    assert len(warnings) == 1 and warnings[0].startswith("notes.zip: not a readable zip archive")
    files.close()


def test_zip_from_a_non_seekable_stream_is_spooled(tmp_path):
    zip_dir(FIXTURES / "mattermost", tmp_path / "mm.zip")

    class Pipe(io.RawIOBase):  # a snapshot tree's stream: read-only, not seekable
        def __init__(self, data):
            self._b = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            return self._b.readinto(b)

    class Tree:
        def paths(self):
            return ["mm.zip"]

        def size(self, p):
            return (tmp_path / p).stat().st_size

        def open(self, p):
            return Pipe((tmp_path / p).read_bytes())

    files = expand_zips(Tree())
    assert list(files.paths()) == ["mm.zip", "mm.zip/export.jsonl"]
    assert len(all_messages(files)) == 6
    files.close()


# ---- the generated sample exports (strongroom.samples)


def test_samples_are_recognised_with_exact_counts(tmp_path):
    """Every live message of the generator is read exactly once, on a first and a later night
    (WhatsApp's deleted-message placeholders are not messages, spec §22.1)."""
    params = ExportParams(messages_per_day=120)
    for day in (0, 3):
        stats = write_day(tmp_path, day, params)
        files = LocalExportFiles(tmp_path)
        warnings: list[str] = []
        found = find_exports(files, warnings.append)
        exports = Counter(r.platform for r, e in found)
        assert exports == {"slack": 1, "mattermost": 1, "telegram": 1, "discord": 6, "whatsapp": 3}
        msgs = [m for r, e in found for m in r.messages(files, e, warn=warnings.append)]
        assert warnings == []
        assert len(msgs) == stats.messages
        assert len({(m.platform, m.conversation, m.message_id) for m in msgs}) == stats.messages
        # the generator's conversations, as each format names them
        convs = {(m.platform, m.conversation) for m in msgs}
        assert len([c for c in convs if c[0] == "slack"]) == 6
        assert ("discord", "Acme Community 社区/general") in convs
        assert ("mattermost", "acme/town-square") in convs


# ---- malformed input never raises


def test_truncated_and_wrong_typed_slack_files_are_skipped_with_warnings(tmp_path):
    root = tmp_path / "ws"
    shutil.copytree(FIXTURES / "slack" / "workspace", root)
    day = root / "general" / "2025-03-01.json"
    day.write_bytes(day.read_bytes()[:900])  # truncated mid-record
    (root / "general" / "2025-03-02.json").write_text(
        json.dumps([{"ts": 5, "text": ["not", "a", "string"]}, "oops", {"ts": "1.5", "user": "U0G9QF9C6", "text": "ok"}]))
    warnings: list[str] = []
    msgs = all_messages(LocalExportFiles(tmp_path), warnings.append)
    texts = [m.text for m in msgs]
    assert "ok" in texts and "<@U0G9QF9C6> has joined the channel" in texts
    assert [w.split(":")[0] for w in warnings] == [
        "ws/general/2025-03-01.json", "ws/general/2025-03-02.json", "ws/general/2025-03-02.json"]
    assert "unreadable from here on" in warnings[0]


def test_mattermost_bad_lines_and_huge_line(tmp_path, monkeypatch):
    import strongroom.messages.formats.common as common
    monkeypatch.setattr(common, "MAX_LINE", 1000)
    lines = (FIXTURES / "mattermost" / "export.jsonl").read_bytes().splitlines(keepends=True)
    huge = b'{"type":"post","post":{"message":"' + b"x" * 5000 + b'"}}\n'
    broken = b'{"type":"post","post":{"team":"acme",\n'
    wrong = b'{"type":"post","post":{"team":"acme","channel":"c","user":"u","create_at":"soon"}}\n'
    (tmp_path / "export.jsonl").write_bytes(lines[0] + huge + broken + wrong + b"".join(lines[1:]))
    warnings: list[str] = []
    msgs = all_messages(LocalExportFiles(tmp_path), warnings.append)
    assert len(msgs) == 6
    assert [w.split(": ", 1)[1] for w in warnings] == [
        "line 2 skipped: ValueError: longer than 1000 bytes",
        "line 3 skipped: JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 38 (char 37)",
        "line 4 skipped: ValueError: invalid literal for int() with base 10: 'soon'"]


def test_single_document_formats_truncated_or_wrong_typed(tmp_path):
    """Telegram, Discord and Matrix files cut mid-message keep what came before and warn once;
    records of the wrong type are skipped one by one."""
    expected = {}
    for platform in ("telegram", "discord", "matrix"):
        src = FIXTURES / platform
        shutil.copytree(src, tmp_path / platform)
        expected[platform] = all_messages(LocalExportFiles(src))
    tg = tmp_path / "telegram" / "full" / "result.json"
    data = tg.read_bytes()
    tg.write_bytes(data[: data.index(b'"note to self"')])  # cut inside the second chat
    dc = next((tmp_path / "discord").glob("*.json"))
    doc = json.loads(dc.read_text())
    doc["messages"][1]["timestamp"] = 12
    doc["messages"][2] = "not a message"
    doc["messages"][3]["author"] = ["x"]
    dc.write_text(json.dumps(doc, ensure_ascii=False))
    mx = next((tmp_path / "matrix").glob("*.json"))
    mx.write_bytes(mx.read_bytes()[:-40])  # the last event is cut
    warnings: list[str] = []
    got = all_messages(LocalExportFiles(tmp_path), warnings.append)
    by = lambda p: [m for m in got if m.platform == p]
    tg_expected = [m for m in expected["telegram"] if m.conversation not in ("chat 1001", "Old Team")]
    assert by("telegram") == tg_expected
    assert by("discord") == expected["discord"][:1]
    assert by("matrix") == expected["matrix"][:-1]
    assert [w.split(":")[0] for w in warnings] == ["telegram/full/result.json"] + [dc.relative_to(tmp_path).as_posix()] * 3 + [
        mx.relative_to(tmp_path).as_posix()]
    assert "unreadable from here on" in warnings[0] and "unreadable from here on" in warnings[-1]
    assert "message 1 skipped: TypeError" in warnings[1]


def test_whatsapp_huge_line_and_undecodable_bytes(tmp_path, monkeypatch):
    import strongroom.messages.formats.common as common
    monkeypatch.setattr(common, "MAX_LINE", 200)
    (tmp_path / "WhatsApp Chat with Dan.txt").write_bytes(
        b"01/03/2025, 21:05 - Dan: hi\n"
        b"01/03/2025, 21:06 - Dan: " + b"y" * 1000 + b"\n"
        b"01/03/2025, 21:07 - Dan: caf\xe9 \xff\n"
        b"01/03/2025, 21:07 - Dan: runaway\n" + b"z" * 150 + b"\n" + b"z" * 150 + b"\n"
        b"01/03/2025, 21:07 - Dan: after\n"
        b"31/02/2025, 21:08 - Dan: no such day\n")
    warnings: list[str] = []
    msgs = all_messages(LocalExportFiles(tmp_path), warnings.append)
    assert [(m.text, m.message_id[-2:]) for m in msgs] == [
        ("hi", "-0"), ("caf\ufffd \ufffd", "-0"),
        ("after\n31/02/2025, 21:08 - Dan: no such day", "-2")]  # the runaway one keeps its -1
    assert [w.split(": ", 1)[1] for w in warnings] == [
        "line 2 skipped: ValueError: longer than 200 bytes",
        "line 2 skipped: ValueError: longer than 200 bytes",  # pass 1 (date order) sees it too
        "message ending at line 6 skipped: ValueError: longer than 200 bytes",
        "line 8 skipped: ValueError: not a valid date and time"]


def test_unrecognised_files_are_not_exports(tmp_path):
    (tmp_path / "channels.json").write_text('{"not": "a list"}')
    (tmp_path / "x.jsonl").write_text('{"type": "post"}\n')
    (tmp_path / "empty.json").write_bytes(b"")
    (tmp_path / "bin.json").write_bytes(bytes(range(256)))
    (tmp_path / "geo.json").write_text('{"type": "FeatureCollection", "id": 1, "features": []}')
    (tmp_path / "chat.json").write_text('{"type": "x", "id": 1, "messages": [{"id": 1, "body": "no date"}]}')
    (tmp_path / "dc.json").write_text('{"channel": {}, "guild": {}, "messages": []}')  # wrong order
    (tmp_path / "room.json").write_text('{"room_name": "r"}')
    (tmp_path / "realm.json").write_text('{"realm": []}')
    (tmp_path / "log.txt").write_text("2025-03-01 09:00:00 INFO started\n")
    (tmp_path / "users.json").write_text('[{"id": 5, "name": "not a slack user id"}]')
    assert find_exports(LocalExportFiles(tmp_path)) == []


# ---- native output reads back


NATIVE_NAMES = {"slack": "export.zip", "mattermost": "export.jsonl", "telegram": "result.json",
                "discord": "channel.json", "whatsapp": "WhatsApp Chat with X.txt", "zulip": "realm.zip",
                "matrix": "room.json"}


@pytest.mark.parametrize("platform", sorted(NATIVE_NAMES))
def test_native_output_reads_back_as_the_same_messages(tmp_path, platform):
    msgs = all_messages(LocalExportFiles(FIXTURES / platform))
    conv = Counter(m.conversation for m in msgs).most_common(1)[0][0]
    one = sorted((m for m in msgs if m.conversation == conv), key=lambda m: m.time_ms)
    assert len(one) >= 2
    buf = io.BytesIO()
    write_native(platform, one, buf)
    (tmp_path / NATIVE_NAMES[platform]).write_bytes(buf.getvalue())
    files = expand_zips(LocalExportFiles(tmp_path))
    warnings: list[str] = []
    back = all_messages(files, warnings.append)
    files.close()
    assert warnings == []
    # what each native form keeps (spec §22.9): Mattermost writes replies as posts of their
    # own; WhatsApp has no ids, threads or attachment lists of its own
    if platform == "whatsapp":
        key = lambda m: (m.author, m.time_ms, m.edited, m.text)
    else:
        thread = (lambda m: "") if platform == "mattermost" else (lambda m: m.reply_to)
        key = lambda m: (m.message_id, m.author, m.time_ms, m.edited, m.text, thread(m),
                         m.attachments[:1] if platform in ("telegram", "matrix") else m.attachments, m.topic)
    assert sorted(map(key, back)) == sorted(map(key, one))
    if platform != "whatsapp":  # its conversation is the file name
        assert {m.conversation for m in back} == {conv}


def test_write_native_unknown_platform():
    with pytest.raises(ValueError, match="no native format"):
        write_native("irc", [], io.BytesIO())


# ---- memory is bounded by a message, not the file


@pytest.mark.parametrize("shape", ["single", "full"])
def test_large_telegram_export_streams_in_bounded_memory(tmp_path, shape):
    import tracemalloc
    n, body = 5_000, "x" * 800
    msg = ('{"id": %d, "type": "message", "date": "2025-03-01T10:00:00", "date_unixtime": "%d", '
           '"from": "Alice", "from_id": "user1", "text": "%s %d"}')
    path = tmp_path / "result.json"
    with open(path, "w") as f:
        if shape == "full":
            f.write('{"about": "x", "personal_information": {"user_id": 1}, "chats": {"list": [')
        f.write('{"name": "big", "type": "private_group", "id": 5, "messages": [')
        f.write(",".join(msg % (i, 1740819600 + i, body, i) for i in range(n)))
        f.write("]}" + ("]}}" if shape == "full" else ""))
    assert path.stat().st_size > 4_000_000
    files = LocalExportFiles(tmp_path)
    (reader, export), = find_exports(files)
    tracemalloc.start()
    count = last = 0
    for m in reader.messages(files, export):
        count += 1
        last = m.time_ms
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (count, last) == (n, (1740819600 + n - 1) * 1000)
    assert peak < 1_000_000, peak  # a quarter of the file would be > 1 MB


def test_slack_channels_json_with_a_first_channel_larger_than_the_head(tmp_path):
    members = [f"U{i:08d}" for i in range(5000)]  # ~60 KB: the head holds only its start
    (tmp_path / "channels.json").write_text(json.dumps([{"id": "C1", "name": "general", "members": members}]))
    (tmp_path / "general").mkdir()
    (tmp_path / "general" / "2025-03-01.json").write_text('[{"type": "message", "ts": "1.000001", "text": "hi"}]')
    found = find_exports(LocalExportFiles(tmp_path))
    assert [(r.platform, e.root) for r, e in found] == [("slack", "")]
    assert [m.text for r, e in found for m in r.messages(LocalExportFiles(tmp_path), e)] == ["hi"]
