"""Export files read piece by piece (SegmentReader, spec §22.10) against the whole-file readers:
equivalence for any partition, deterministic states, bounded memory, bad input never raises."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest

from strongroom.chunker import ChunkingProfiles, chunk_stream
from strongroom.messages.formats import LocalExportFiles, common, find_exports, write_native
from strongroom.messages.formats.segments import decode_state
from strongroom.messages.formats.telegram import shape
from strongroom.messages.formats.throughput import synthetic
from strongroom.messages.model import Export, Message
from strongroom.samples import ExportParams, write_day

FIXTURES = Path(__file__).parent / "fixtures" / "exports"
CONTEXT = ("users.json", "channels.json", "groups.json", "dms.json", "mpims.json", "realm.json")
SEGMENTED = {"slack", "mattermost", "telegram", "discord", "zulip", "whatsapp", "matrix"}


class DictFiles:
    """An ExportFiles tree of in-memory files."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def paths(self):
        return sorted(self.files)

    def size(self, path):
        return len(self.files[path])

    def open(self, path):
        return io.BytesIO(self.files[path])


class Case:
    """One data file of a recognised export, with what the whole-file reader makes of it."""

    def __init__(self, reader, files, export: Export, path: str) -> None:
        self.reader, self.files, self.path = reader, files, path
        # only this data file and the context files: the messages of this file alone
        self.export = Export(export.platform, export.root, tuple(
            p for p in export.files if p == path or p.rpartition("/")[2] in CONTEXT))
        with files.open(path) as f:
            self.data = f.read()

    def whole(self, warn=None) -> list[Message]:
        return list(self.reader.messages(self.files, self.export, warn=warn or (lambda w: None)))

    def segments(self, warn=None):
        return self.reader.segment_reader(self.files, self.export, self.path, warn or (lambda w: None))

    def with_data(self, data: bytes) -> Case:
        """The same file with other content (truncated, garbled)."""
        tree = {p: self.files.open(p).read() for p in self.export.files}
        tree[self.path] = data
        return Case(self.reader, DictFiles(tree), self.export, self.path)

    def __repr__(self) -> str:
        return f"{self.export.platform}:{self.path}"


def cases_in(files) -> list[Case]:
    out = []
    for reader, export in find_exports(files):
        make = getattr(reader, "segment_reader", None)
        for p in export.files:
            if make is not None and make(files, export, p, lambda w: None) is not None:
                out.append(Case(reader, files, export, p))
    return out


def feed(seg, data: bytes, sizes, warn=None) -> tuple[list[Message], dict[int, bytes], int]:
    """Feed ``data`` in pieces of ``sizes`` (the last piece final): messages, the state at each
    piece boundary, and the largest state seen."""
    warn = warn or (lambda w: None)
    state = seg.initial()
    states = {0: state}
    msgs: list[Message] = []
    pos, biggest = 0, len(state)
    sizes = iter(sizes)
    while True:
        size = next(sizes, len(data) - pos)
        piece = data[pos:pos + size]
        pos += len(piece)
        got, state = seg.feed(state, piece, pos >= len(data), warn)
        msgs += got
        biggest = max(biggest, len(state))
        if pos >= len(data):
            return msgs, states, biggest
        states[pos] = state


def random_sizes(seed: int, low: int = 1, high: int = 5000):
    rng = random.Random(seed)
    while True:
        yield rng.choice((0, rng.randint(low, high), rng.randint(low, 64)))


def cdc_sizes(data: bytes, records: bool) -> list[int]:
    return [len(c) for c in chunk_stream(io.BytesIO(data), ChunkingProfiles().text, records=records)]


FIXTURE_CASES = cases_in(LocalExportFiles(FIXTURES))


@pytest.fixture(scope="module")
def sample_cases(tmp_path_factory) -> list[Case]:
    root = tmp_path_factory.mktemp("samples")
    for day in range(3):  # three nights: history grows, some messages edited
        write_day(root, day, ExportParams(scale=0.4, attachment_share=0.0))
    synthetic(str(root), 300)  # a Zulip realm (one message per line) and a Matrix room
    return cases_in(LocalExportFiles(root))


def test_the_fixtures_and_samples_cover_every_supported_format(sample_cases):
    assert {c.export.platform for c in FIXTURE_CASES} == SEGMENTED
    assert {c.export.platform for c in sample_cases} == SEGMENTED
    assert sum(c.path.endswith("full/result.json") for c in FIXTURE_CASES) == 1


@pytest.mark.parametrize("case", FIXTURE_CASES, ids=repr)
def test_every_split_into_two_pieces_gives_the_whole_file_messages(case):
    expected = case.whole()
    assert expected  # every fixture file holds messages
    seg = case.segments()
    _, bytewise, _ = feed(seg, case.data, iter(lambda: 1, None))  # the state at every offset
    for k in range(len(case.data) + 1):
        msgs, states, _ = feed(seg, case.data, [k])
        assert msgs == expected, k
        if k < len(case.data):
            assert states[k] == bytewise[k], k


def test_random_and_chunker_partitions_give_the_same_messages_and_states(sample_cases):
    for case in FIXTURE_CASES + sample_cases:
        expected = case.whole()
        seg = case.segments()
        runs = [feed(seg, case.data, random_sizes(seed)) for seed in range(3)]
        runs += [feed(seg, case.data, cdc_sizes(case.data, records)) for records in (False, True)]
        runs.append(feed(seg, case.data, []))  # the whole file in one piece
        seen: dict[int, bytes] = {}
        for msgs, states, _ in runs:
            assert msgs == expected, case
            for offset, state in states.items():
                assert seen.setdefault(offset, state) == state, (case, offset)


def _by_record_pieces(case: Case, data: bytes) -> tuple[list[Message], list[bytes], list[str]]:
    """``data`` through the case's segment reader in the pieces the catalogue cuts (a record and
    its comma each, for pretty-printed JSON): messages, the state after each piece, warnings."""
    from strongroom.messages import catalog_memo
    warnings: list[str] = []
    seg = case.segments()
    state, msgs, states = seg.initial(), [], []
    pieces = []
    for piece, final in catalog_memo.pieces([data[i:i + 7000] for i in range(0, len(data), 7000)]):
        opening = 0 if pieces else piece.find(b"[\n") + 1  # also cut after the first array's opening,
        pieces += [(piece[:opening], False), (piece[opening:], final)] if opening else [(piece, final)]
    for piece, final in pieces:  # so that a piece follows a state expecting the array's first element
        got, state = seg.feed(state, piece, final, warnings.append)
        msgs += got
        states.append(state)
    return msgs, states, warnings


def test_a_record_read_whole_reads_as_the_scan_reads_it(sample_cases, monkeypatch):
    # JsonSegments reads a piece that is one record and its comma without its scan; messages,
    # states and warnings must be the scan's, for good records, wrong-shape ones and broken JSON
    from strongroom.messages.formats.segments import JsonSegments
    real = JsonSegments._whole_record
    taken: dict[str, list] = {}
    for case in FIXTURE_CASES + sample_cases:
        if case.export.platform in ("whatsapp", "mattermost"):
            continue  # not JSON documents
        counted = taken.setdefault(case.export.platform, [])
        monkeypatch.setattr(JsonSegments, "_whole_record", lambda self, *a: counted.append(real(self, *a)) or counted[-1])
        start = case.data.find(b"\n        {", len(case.data) // 3)  # a record (in Slack's array)
        start = start if start >= 0 else case.data.find(b"\n    {", len(case.data) // 3)  # (in "messages")
        end = case.data.find(b"},", start) + 2
        variants = [case.data]
        if start >= 0 and end > start:  # that record empty (the wrong shape) or broken (invalid JSON)
            variants += [case.data[:start] + b"\n    {}," + case.data[end:],
                         case.data[:start + 8] + b"\x00" + case.data[start + 8:]]
        for data in variants:
            fast = _by_record_pieces(case, data)
            monkeypatch.setattr(JsonSegments, "_whole_record", lambda self, *a: None)
            assert fast == _by_record_pieces(case, data), case
            monkeypatch.setattr(JsonSegments, "_whole_record", lambda self, *a: counted.append(real(self, *a)) or counted[-1])
    for platform in ("slack", "discord", "telegram"):  # pretty-printed: many pieces take the short way
        read_whole = sum(t is not None for t in taken[platform])
        assert read_whole > 100 and read_whole > len(taken[platform]) // 3, (platform, read_whole, len(taken[platform]))


def test_states_are_small_between_records_and_hold_the_captured_context(sample_cases):
    discord = next(c for c in sample_cases if c.export.platform == "discord")
    seg = discord.segments()
    cut = discord.data.index(b"\n    },") + len(b"\n    },")  # just after the first message
    _, states, _ = feed(seg, discord.data, [cut])
    header, carry = decode_state(states[cut])
    assert carry == b""
    guild = json.loads(discord.data)["guild"]
    channel = json.loads(discord.data)["channel"]
    assert header["c"] == {"guild": {"id": guild["id"], "name": guild["name"]},
                           "channel": {"id": channel["id"], "name": channel["name"]}}
    assert len(states[cut]) < 250
    slack = next(c for c in sample_cases if c.export.platform == "slack")
    cut = slack.data.index(b"\n    },") + len(b"\n    },")
    state = feed(slack.segments(), slack.data, [cut])[1][cut]
    assert state == b'{"c":{},"k":[["[","v",null]],"m":"r","t":"v"}\0'
    # an unfinished record is carried with its line's indentation (for the end guess)
    cut += 10
    state = feed(slack.segments(), slack.data, [cut])[1][cut]
    assert state.partition(b"\0")[2] == slack.data[cut - 10:cut]


def test_initial_state_equals_the_state_after_an_empty_piece():
    for case in FIXTURE_CASES:
        seg = case.segments()
        assert seg.feed(seg.initial(), b"", False, lambda w: None) == ([], seg.initial())


# ---- shapes the samples do not have


def _single(platform: str, name: str, data: bytes, context: dict[str, bytes] | None = None) -> Case:
    tree = dict(context or {})
    tree[name] = data
    files = DictFiles(tree)
    found = [(r, e) for r, e in find_exports(files) if r.platform == platform]
    assert found, name
    reader, export = found[0]
    return Case(reader, files, export, name)


def _slack(day: bytes) -> Case:
    return _single("slack", "ws/general/2025-03-01.json", day, {
        "ws/channels.json": b'[{"id": "C1", "name": "general"}]',
        "ws/users.json": b'[{"id": "U1", "name": "alice"}]'})


SLACK_RECORDS = [
    {"type": "message", "user": "U1", "text": "hello \u00e9 \U0001f600 \"quoted\" {braces} [x]",
     "ts": "1740823200.000100"},
    {"type": "message", "user": "U2", "text": "line\nbreak", "ts": "1740823201.000200",
     "thread_ts": "1740823200.000100", "files": [{"name": "a.pdf"}], "edited": {"ts": "1"}},
    {"type": "message", "subtype": "tombstone", "text": "deleted", "ts": "1740823202.000000"},
    {"type": "message", "username": "bot", "text": "", "ts": "1740823203.5", "nested": [[{}], {"a": []}]},
]


def _all_partitions_match(case: Case, warnings_expected: bool | None = None) -> list[Message]:
    whole_warnings: list[str] = []
    expected = case.whole(whole_warnings.append)
    seg = case.segments()
    sizes = [iter(lambda: 1, None), [], [len(case.data) // 2]] + [random_sizes(s, 1, 40) for s in range(4)]
    seen: dict[int, bytes] = {}
    for sz in sizes:
        warnings: list[str] = []
        msgs, states, _ = feed(seg, case.data, sz, warnings.append)
        assert msgs == expected, (case, sz)
        if warnings_expected is not None:
            assert bool(warnings) == warnings_expected, warnings
        for offset, state in states.items():
            assert seen.setdefault(offset, state) == state
    return expected


@pytest.mark.parametrize("dump", [
    lambda o: json.dumps(o, indent=4),  # Slack's own layout
    lambda o: json.dumps(o, indent="\t"),
    lambda o: json.dumps(o, indent=2).replace("\n", "\r\n"),  # Windows line ends
    lambda o: json.dumps(o),  # compact, one line: the bracket scan
    lambda o: json.dumps(o, ensure_ascii=False, separators=(",", ":")),
    lambda o: "\ufeff" + json.dumps(o, indent=1, ensure_ascii=False) + "\n\n",  # byte order mark
    lambda o: "[" + ",\n".join(json.dumps(r) for r in o) + "]",  # one record per line
])
def test_layouts_of_the_same_document_read_alike(dump):
    case = _slack(dump(SLACK_RECORDS).encode())
    msgs = _all_partitions_match(case, warnings_expected=False)
    assert [m.message_id for m in msgs] == ["1740823200.000100", "1740823201.000200", "1740823203.5"]
    assert msgs[0].text == SLACK_RECORDS[0]["text"] and msgs[0].author == "alice"


def test_numbers_read_as_ijson_reads_them():
    """Telegram ids are converted with str(): int vs float must match ijson's use_float."""
    records = ",".join(
        '{"id": %s, "type": "message", "date_unixtime": "1740823200", "from": "a", "text": "t"}' % n
        for n in ("7", "1e2", "2.50", "-0", "12345678901234", "1.5E-3", "0.0"))
    doc = ('{"name": "g", "type": "private_group", "id": 1, "messages": [%s]}' % records).encode()
    msgs = _all_partitions_match(_single("telegram", "result.json", doc), warnings_expected=False)
    assert [m.message_id for m in msgs] == ["7", "100.0", "2.5", "0", "12345678901234", "0.0015", "0.0"]


def test_telegram_chats_take_their_own_name_and_id():
    chat = lambda name, cid, mid: {  # noqa: E731
        **({"name": name} if name is not None else {}), "type": "personal_chat", "id": cid,
        "messages": [{"id": mid, "type": "message", "date_unixtime": "1740823200", "from": "x",
                      "text": ["a", {"type": "bold", "text": "b"}]}]}
    doc = {"about": "x", "personal_information": {"user_id": 1},
           "contacts": {"list": [{"first_name": "n", "phone_number": "1"}] * 50},
           "chats": {"about": "c", "list": [chat("one", 1, 10), chat(None, 2, 20), chat(["odd"], 3, 30)]},
           "left_chats": {"list": [chat("gone", 4, 40)]}}
    case = _single("telegram", "result.json", json.dumps(doc, indent=1).encode())
    msgs = _all_partitions_match(case, warnings_expected=False)
    assert [(m.conversation, m.message_id, m.text) for m in msgs] == [
        ("one", "10", "ab"), ("chat 2", "20", "ab"), ("chat 3", "30", "ab"), ("gone", "40", "ab")]


@pytest.mark.parametrize("platform", ["telegram", "discord"])
def test_native_output_one_record_per_line_reads_alike(platform):
    msgs = [Message(platform, "guild/chan", str(100 + i), f"user{i % 3}", 1740823200000 + i * 1000,
                    i % 4 == 0, f"text {i} {{}} [] \"q\"\n2nd line", reply_to=str(99 + i) if i % 5 else "")
            for i in range(30)]
    out = io.BytesIO()
    write_native(platform, msgs, out)
    case = _single(platform, "result.json", out.getvalue())
    assert len(_all_partitions_match(case, warnings_expected=False)) == 30


# ---- rule 4: bad input never raises


def test_truncated_files_read_as_the_whole_file_reader_reads_them(sample_cases):
    rng = random.Random(4)
    picked = FIXTURE_CASES + [c for c in sample_cases if c.export.platform != "slack"][:4]
    for case in picked:
        n = len(case.data)
        for cut in sorted({*rng.sample(range(n), min(n, 15)), 1, 2, n - 1}):
            broken = case.with_data(case.data[:cut])
            whole_warnings: list[str] = []
            expected = broken.whole(whole_warnings.append)
            seg = broken.segments()
            for sizes in ([], random_sizes(cut, 1, 3000)):
                warnings: list[str] = []
                msgs, _, _ = feed(seg, broken.data, sizes, warnings.append)
                assert msgs == expected, (case, cut)
                if case.export.platform in ("mattermost", "whatsapp"):  # a cut line, as the whole file
                    assert len(warnings) == len(whole_warnings)
                elif cut < len(case.data.rstrip()):
                    assert len(warnings) == 1, (case, cut)  # a cut document is reported


@pytest.mark.parametrize("garbage", [b"\x00", b"\xff", b"}", b'"', b"{", b"]", b","])
def test_garbled_files_read_as_the_whole_file_reader_reads_them(garbage, sample_cases):
    """What came before the damage, one warning, nothing after (or, where the damage still
    leaves JSON, the same records skipped)."""
    rng = random.Random(garbage[0])
    picked = FIXTURE_CASES + [c for c in sample_cases if c.export.platform in ("telegram", "discord")][:2]
    for case in picked:
        for _ in range(6):
            at = rng.randrange(1, len(case.data) - 1)
            bad = case.with_data(case.data[:at] + garbage + case.data[at:])
            if case.export.platform == "telegram" and shape(bad.data) != shape(case.data):
                continue  # no longer recognised as the same shape: not a reading question
            whole_warnings: list[str] = []
            expected = bad.whole(whole_warnings.append)
            seg = bad.segments()
            for sizes in ([], random_sizes(at, 1, 2000), cdc_sizes(bad.data, False)):
                warnings: list[str] = []
                msgs, _, _ = feed(seg, bad.data, sizes, warnings.append)
                assert msgs == expected, (case, at)
                assert sum("unreadable from here on" in w for w in warnings) == \
                    sum("unreadable from here on" in w for w in whole_warnings), (case, at)


def test_a_garbled_line_is_skipped_like_the_whole_file_reader_does():
    case = next(c for c in FIXTURE_CASES if c.export.platform == "mattermost")
    lines = case.data.split(b"\n")
    post = next(i for i, line in enumerate(lines) if b'"post"' in line)
    lines[post] = lines[post][:30] + b"\x00" + lines[post][30:]
    bad = case.with_data(b"\n".join(lines))
    msgs = _all_partitions_match(bad, warnings_expected=True)
    assert len(msgs) == len(case.whole()) - 3  # that post had two replies


def test_records_of_the_wrong_shape_are_skipped_with_a_warning():
    records = ['"just a string"', "42", "null", '{"type": "message", "text": "no ts"}',
               '{"ts": "1740823200.000100", "files": "not a list"}', '{"ts": "x.y"}',
               json.dumps(SLACK_RECORDS[0]), '[1, 2]']
    case = _slack(("[\n" + ",\n".join(records) + "\n]").encode())
    msgs = _all_partitions_match(case, warnings_expected=True)
    assert [m.message_id for m in msgs] == ["1740823200.000100"]
    warnings: list[str] = []
    feed(case.segments(), case.data, [], warnings.append)
    assert len(warnings) == 7 and all("message skipped" in w for w in warnings)
    # Discord and Telegram: a record without its id
    doc = {"guild": {"id": "1", "name": "g"}, "channel": {"id": "2", "name": "c"}, "messages": [
        {"timestamp": "2025-03-01T10:00:00+00:00", "content": "no id", "author": {"name": "a"}},
        {"id": "5", "timestamp": "2025-03-01T10:00:00+00:00", "content": "ok", "author": {"name": "a"}}]}
    msgs = _all_partitions_match(_single("discord", "c.json", json.dumps(doc, indent=2).encode()), True)
    assert [(m.conversation, m.message_id) for m in msgs] == [("g/c", "5")]


def test_record_warnings_are_capped_per_piece():
    case = _slack(("[" + ",".join(["1"] * 30) + "]").encode())
    warnings: list[str] = []
    feed(case.segments(), case.data, [], warnings.append)
    assert len(warnings) == 11 and warnings[-1].endswith("30 malformed records skipped in all")


# ---- rule 3: bounded memory


def test_an_over_long_record_is_skipped_and_never_accumulated(monkeypatch):
    monkeypatch.setattr(common, "MAX_LINE", 400)
    big = dict(SLACK_RECORDS[1], text='x\\"{[' * 300, ts="1740823209.000000")
    records = [SLACK_RECORDS[0], big, SLACK_RECORDS[1], {"ts": "1740823210.1", "text": "s" * 2000}]
    case = _slack(json.dumps(records, indent=4).encode())
    seg = case.segments()
    for sizes in (iter(lambda: 1, None), [], random_sizes(1, 1, 300), [500, 0, 1]):
        warnings: list[str] = []
        msgs, _, biggest = feed(seg, case.data, sizes, warnings.append)
        assert [m.message_id for m in msgs] == ["1740823200.000100", "1740823201.000200"]
        assert warnings == [f"{case.path}: message skipped: ValueError: longer than 400 bytes"] * 2
        if sizes != []:
            assert biggest <= 400 + 300  # the carry never outgrows the limit (+ a piece, a header)


def test_an_over_long_skipped_or_captured_value_costs_no_memory(monkeypatch):
    monkeypatch.setattr(common, "MAX_LINE", 300)
    doc = {"guild": {"id": "1", "name": "g" * 1000}, "channel": {"id": "2", "name": "c"},
           "dateRange": {"after": ["\\" * 500, {"x": "]" * 500}]},
           "messages": [{"id": "5", "timestamp": "2025-03-01T10:00:00Z", "content": "ok",
                         "author": {"name": "a"}}]}
    case = _single("discord", "c.json", json.dumps(doc, indent=2).encode())
    for sizes in (iter(lambda: 1, None), random_sizes(2, 1, 200)):
        warnings: list[str] = []
        msgs, _, biggest = feed(case.segments(), case.data, sizes, warnings.append)
        assert [(m.conversation, m.message_id) for m in msgs] == [("c", "5")]  # the guild's name is lost
        assert warnings == [f"{case.path}: context value skipped: ValueError: longer than 300 bytes"]
        assert biggest <= 300 + 250


def test_an_over_long_line_is_skipped(monkeypatch):
    case = next(c for c in FIXTURE_CASES if c.export.platform == "mattermost")
    longest = max(len(line) for line in case.data.split(b"\n"))
    monkeypatch.setattr(common, "MAX_LINE", longest - 1)
    expected = case.whole()  # the whole-file reader skips it too
    assert 0 < len(expected) < 6
    for sizes in (iter(lambda: 1, None), [], random_sizes(3, 1, 200)):
        warnings: list[str] = []
        msgs, _, biggest = feed(case.segments(), case.data, sizes, warnings.append)
        assert msgs == expected and len(warnings) == 1
        assert biggest <= longest + 200


def test_context_files_offer_no_segment_reader():
    files = LocalExportFiles(FIXTURES)
    for reader, export in find_exports(files):
        make = reader.segment_reader
        context = [p for p in export.files if p.rpartition("/")[2] in CONTEXT]
        assert all(make(files, export, p, lambda w: None) is None for p in context)


def test_a_value_that_leads_to_no_record_is_never_carried():
    contacts = [{"first_name": f"n{i}", "last_name": "\u5f20", "phone_number": "+1 555 %04d" % i}
                for i in range(400)]
    doc = {"about": "x", "contacts": {"about": "c", "list": contacts}, "frequent_contacts": {"list": [[[[]]]]},
           "chats": {"list": [{"name": "one", "type": "personal_chat", "id": 1, "messages": [
               {"id": 5, "type": "message", "date_unixtime": "1740823200", "from": "x", "text": "hi"}]}]}}
    for dump in (lambda o: json.dumps(o, indent=1), json.dumps):
        case = _single("telegram", "result.json", dump(doc).encode())
        assert len(case.data) > 30_000
        msgs, _, biggest = feed(case.segments(), case.data, random_sizes(5, 1, 500))
        assert [(m.conversation, m.message_id) for m in msgs] == [("one", "5")]
        assert biggest < 500 + 250  # a piece, one contact, the path


def test_json_lines_with_a_byte_order_mark_and_windows_line_ends():
    case = next(c for c in FIXTURE_CASES if c.export.platform == "mattermost")
    bom = case.with_data(b"\xef\xbb\xbf" + case.data.replace(b"\n", b"\r\n"))
    assert _all_partitions_match(bom, warnings_expected=False) == case.whole()


def test_pieces_may_be_memoryviews():
    for case in FIXTURE_CASES:
        seg = case.segments()
        state, msgs = seg.initial(), []
        view = memoryview(case.data)
        for i in range(0, len(case.data), 100):
            got, state = seg.feed(state, view[i:i + 100], i + 100 >= len(case.data), lambda w: None)
            msgs += got
        assert msgs == case.whole(), case


def test_deep_nesting_outside_records_reads_alike_in_any_pieces():
    deep = "[" * 600 + "]" * 600  # deeper than the state keeps open, valid JSON
    doc = '{"guild": {"id": "1", "name": "g"}, "channel": {"id": "2", "name": "c"}, "x": %s, ' \
          '"messages": [{"id": "5", "timestamp": "2025-03-01T10:00:00Z", "author": {"name": "a"}}]}' % deep
    case = _single("discord", "c.json", doc.encode())
    assert [m.message_id for m in case.whole()] == ["5"]
    seen: dict[int, bytes] = {}
    for sizes in ([], [300], [700], random_sizes(6, 1, 200)):
        msgs, states, biggest = feed(case.segments(), case.data, sizes)
        assert msgs == case.whole()
        assert biggest < 200 + 256 * 16 + 300  # a piece, the open containers, the context
        for offset, state in states.items():
            assert seen.setdefault(offset, state) == state


def test_a_lone_surrogate_escape_reads_as_the_whole_file_reader_reads_it():
    """A message cut inside an emoji ("\\ud83d" without its pair) must not yield a string that
    cannot be encoded; ijson's C backend reads a lone high surrogate as "?"."""
    records = [dict(SLACK_RECORDS[0], text="cut \ud83d"), dict(SLACK_RECORDS[1], text="pair \U0001f600")]
    case = _slack(json.dumps(records, indent=4).encode())
    msgs = _all_partitions_match(case, warnings_expected=False)
    assert [m.text for m in msgs] == ["cut ?", "pair \U0001f600"]


# ---- WhatsApp: lines, a date order the whole file decides, messages over several lines


def _wa(lines: list[str], name: str = "WhatsApp Chat with Ann.txt", end: str = "\n") -> Case:
    return _single("whatsapp", name, (end.join(lines) + end).encode())


def _ios(day: int, month: int, hour: int, minute: int, who: str, text: str) -> str:
    return f"[{day:02d}/{month:02d}/2025, {hour:02d}:{minute:02d}:07] {who}: {text}"


def _android_us(month: int, day: int, hour: int, minute: int, who: str, text: str) -> str:
    h = hour % 12 or 12
    return f"{month}/{day}/25, {h}:{minute:02d}\u202f{'AM' if hour < 12 else 'PM'} - {who}: {text}"


def _ambiguous(stamp, n: int = 400) -> list[str]:
    """``n`` records dated the 1st to the 12th of months 1 to 12 (either order reads as a
    date), every seventh over three lines."""
    out = []
    for i in range(n):
        text = f"message {i}" + ("\nsecond line\n  3/4 third" if i % 7 == 3 else "")
        out.append(stamp(1 + i % 12, 1 + (i // 12) % 12, 8 + i % 10, i % 60, ("Ann", "Bo", "Cy")[i % 3], text))
    return out


def _ms(y: int, mo: int, d: int, h: int, mi: int, s: int = 0) -> int:
    import calendar
    return calendar.timegm((y, mo, d, h, mi, s)) * 1000


def _line_offsets(data: bytes) -> list[int]:
    return [i + 1 for i, b in enumerate(data) if b == 10]


def _splits_match(case: Case, offsets) -> None:
    """Two pieces cut at each of ``offsets``: the whole-file messages, and the state the
    byte-by-byte feed has there."""
    expected = case.whole()
    seg = case.segments()
    _, bytewise, _ = feed(seg, case.data, iter(lambda: 1, None))
    for k in offsets:
        msgs, states, _ = feed(seg, case.data, [k])
        assert msgs == expected, k
        if k < len(case.data):
            assert states[k] == bytewise[k], k


IOS = lambda d, m, h, mi, who, t: _ios(d, m, h, mi, who, t)  # noqa: E731 - day, month: "[dd/mm/2025"
US = lambda d, m, h, mi, who, t: _android_us(d, m, h, mi, who, t)  # noqa: E731 - "d/m/25" read US-style


@pytest.mark.parametrize("stamp, decider, second", [
    # iOS: 01/01 .. 12/12 say nothing, 13/01 decides day-first: record 1 ("02/01") is 2 January
    (IOS, _ios(13, 1, 9, 0, "Ann", "late"), _ms(2025, 1, 2, 9, 1, 7)),
    # Android, US: 1/1 .. 12/12 say nothing, 1/13 decides month-first: record 1 ("2/1") is 1 February
    (US, _android_us(1, 13, 21, 0, "Ann", "late"), _ms(2025, 2, 1, 9, 1)),
])
def test_whatsapp_date_order_decided_after_hundreds_of_ambiguous_lines(stamp, decider, second):
    lines = _ambiguous(stamp)
    case = _wa(lines + [decider])
    msgs = case.whole()
    assert len(msgs) == 401 and msgs[1].time_ms == second
    assert msgs[3].text == "message 3\nsecond line\n  3/4 third"
    _splits_match(case, _line_offsets(case.data)[:40] + list(range(0, 300)) + [len(case.data) - 30])
    assert _all_partitions_match(case, warnings_expected=False) == msgs


def test_whatsapp_the_same_bytes_in_the_other_order_share_no_state():
    """A memo keyed by states never gives a piece read in one date order to the other: the
    identical ambiguous prefix of two files decided differently has different states."""
    prefix = _ambiguous(IOS, 30)
    day_first = _wa(prefix + [_ios(13, 1, 9, 0, "Ann", "late")])
    month_first = _wa(prefix + ["[01/13/2025, 09:00:07] Ann: late"])
    a, b = day_first.whole(), month_first.whole()
    assert a[12].time_ms != b[12].time_ms and a[12].text == b[12].text == "message 12"
    cut = _line_offsets(day_first.data)[20]
    assert day_first.data[:cut] == month_first.data[:cut]
    state_a = feed(day_first.segments(), day_first.data, [cut])[1][cut]
    state_b = feed(month_first.segments(), month_first.data, [cut])[1][cut]
    assert state_a != state_b
    assert state_a.split(b" ")[1][:1] == b"D" and state_b.split(b" ")[1][:1] == b"M"  # day-first or not


@pytest.mark.parametrize("stamp, second", [
    (IOS, _ms(2025, 1, 2, 9, 1, 7)),  # a 24-hour clock: day-first, "02/01" is 2 January
    (US, _ms(2025, 2, 1, 9, 1)),  # AM/PM: month-first, "2/1" is 1 February
])
def test_whatsapp_a_file_that_never_decides(stamp, second):
    case = _wa(_ambiguous(stamp, 40))
    msgs = _all_partitions_match(case, warnings_expected=False)
    assert len(msgs) == 40 and msgs[1].time_ms == second


IOS_SINK = [
    "\u200e[02/03/2025, 09:00:00] Family: \u200eMessages and calls are end-to-end encrypted.",
    "[02/03/2025, 09:00:00] Ann: first",
    "[02/03/2025, 09:00:00] Ann: same second, same author: k = 1",
    "[02/03/2025, 09:00:00] Bo: same second, other author",
    "[02/03/2025, 09:01:00] Bo: a message",
    "over",
    "",
    "[31/02/2025, 09:01:00] Cy: not a date: this line continues Bo's message",
    "several lines",
    "\u200e[14/03/2025, 10:00:00] Ann: \u200e<attached: 00000012-PHOTO.jpg>",
    "[14/03/2025, 10:00:05] Cy: fixed <This message was edited>",
    "[14/03/2025, 10:00:06] Cy: This message was deleted",
    "[14/03/2025, 10:00:07] Cy: \u00e9 \U0001f600 \u5bb6",
    "[14/03/2025, 10:00:08] a notice without an author",
    "and its continuation, dropped",
]


@pytest.mark.parametrize("end", ["\n", "\r\n"])
def test_whatsapp_ios_every_split_reads_as_the_whole_file(end):
    case = _single("whatsapp", "chats/WhatsApp Chat - Family.zip/_chat.txt",
                   ("\ufeff" + end.join(IOS_SINK) + end).encode())
    warnings: list[str] = []
    msgs = case.whole(warnings.append)
    assert len(warnings) == 1 and "not a valid date" in warnings[0]
    assert [(m.author, m.message_id.rsplit("-", 1)[1], m.text, m.edited, m.attachments) for m in msgs] == [
        ("Ann", "0", "first", False, ()),
        ("Ann", "1", "same second, same author: k = 1", False, ()),
        ("Bo", "0", "same second, other author", False, ()),
        ("Bo", "0", "a message\nover\n\n[31/02/2025, 09:01:00] Cy: not a date: this line continues Bo's message"
         "\nseveral lines", False, ()),
        ("Ann", "0", "<attached: 00000012-PHOTO.jpg>", False, ("00000012-PHOTO.jpg",)),
        ("Cy", "0", "fixed", True, ()),
        ("Cy", "0", "\u00e9 \U0001f600 \u5bb6", False, ())]
    assert {m.conversation for m in msgs} == {"Family"}
    _splits_match(case, range(len(case.data) + 1))
    for sizes in ([], random_sizes(7, 1, 30), [3, 1]):
        said: list[str] = []
        assert feed(case.segments(), case.data, sizes, said.append)[0] == msgs
        assert len(said) == 1 and said[0].endswith("skipped: ValueError: not a valid date and time")


def test_whatsapp_android_every_split_reads_as_the_whole_file():
    lines = ["3/1/25, 9:05 PM - Messages and calls are end-to-end encrypted.",
             "3/1/25, 9:05 PM - Bo Lee: Are we still on?",
             "3/1/25, 9:05\u00a0p.\u00a0m. - Ann: yes",
             "spanning",
             "3/1/25, 21:06 - Ann: 24 h stamp in an AM/PM file",
             "3/13/25, 12:00 AM - Bo Lee: IMG-20250313-WA0001.jpg (file attached)",
             "look",
             "3/13/25, 13:00 PM - Ann: not a valid hour: continues",
             "3/14/25, 1:00 AM - You deleted this message"]
    case = _wa(lines, "WhatsApp Chat with Bo Lee.txt")
    msgs = case.whole()
    assert [(m.author, m.time_ms, m.text, m.attachments) for m in msgs] == [
        ("Bo Lee", _ms(2025, 3, 1, 21, 5), "Are we still on?", ()),
        ("Ann", _ms(2025, 3, 1, 21, 5), "yes\nspanning", ()),
        ("Ann", _ms(2025, 3, 1, 21, 6), "24 h stamp in an AM/PM file", ()),
        ("Bo Lee", _ms(2025, 3, 13, 0, 0), "IMG-20250313-WA0001.jpg (file attached)\nlook\n"
         "3/13/25, 13:00 PM - Ann: not a valid hour: continues", ("IMG-20250313-WA0001.jpg",))]
    _splits_match(case, range(len(case.data) + 1))


def test_whatsapp_a_multi_line_message_across_many_pieces():
    body = [f"line {i} of a pasted log: 2025-03-01 10:{i % 60:02d}:00 INFO ok" for i in range(300)]
    lines = [_ios(13, 3, 9, 0, "Ann", "before"), _ios(13, 3, 9, 1, "Bo", "the log:")] + body + \
        [_ios(13, 3, 9, 2, "Ann", "after")]
    case = _wa(lines)
    msgs = case.whole()
    assert [m.text.count("\n") for m in msgs] == [0, 300, 0]
    _splits_match(case, _line_offsets(case.data))
    assert _all_partitions_match(case, warnings_expected=False) == msgs


def test_whatsapp_pieces_start_where_some_records_start():
    from strongroom.messages.formats import whatsapp_segments
    from zlib import crc32
    case = _wa(_ambiguous(US, 200))
    cut = list(whatsapp_segments.pieces([case.data]))
    assert b"".join(p for p, _ in cut) == case.data and [f for _, f in cut] == [False] * (len(cut) - 1) + [True]
    starts = [p.split(b" - ")[0] + b" - " for p, _ in cut[1:]]
    assert all(crc32(s) % whatsapp_segments.GROUP == 0 for s in starts)
    records = [line.split(b" - ")[0] + b" - " for line in case.data.split(b"\n") if line[:1].isdigit()]
    assert sum(crc32(s) % whatsapp_segments.GROUP == 0 for s in records[1:]) == len(cut) - 1 == 50
    msgs, state = [], case.segments().initial()
    for piece, final in cut:
        got, state = case.segments().feed(state, piece, final, lambda w: None)
        msgs += got
    assert msgs == case.whole()


def test_whatsapp_pieces_one_record_each(monkeypatch):
    from strongroom.messages.formats import whatsapp_segments
    monkeypatch.setattr(whatsapp_segments, "GROUP", 1)
    case = _wa(_ambiguous(US, 50))
    cut = list(whatsapp_segments.pieces([case.data]))
    assert b"".join(p for p, _ in cut) == case.data
    # a piece per record, the last one final
    assert [f for _, f in cut] == [False] * 49 + [True] and cut[-1][0].startswith(b"2/5/25, 5:49")
    assert all(p[:1].isdigit() and p.endswith(b"\n") for p, _ in cut)
    assert cut[3][0].count(b"\n") == 3  # a message over three lines is one piece
    rng = random.Random(8)
    for _ in range(5):  # whatever blocks the bytes come in
        blocks, pos = [], 0
        while pos < len(case.data):
            n = rng.randint(1, 200)
            blocks.append(case.data[pos:pos + n])
            pos += n
        assert list(whatsapp_segments.pieces(blocks)) == cut
    msgs, state = [], case.segments().initial()
    for piece, final in cut:
        got, state = case.segments().feed(state, piece, final, lambda w: None)
        msgs += got
    assert msgs == case.whole()


def test_whatsapp_pieces_without_a_record_start_are_cut_at_max_piece(monkeypatch):
    from strongroom.messages.formats import whatsapp_segments
    monkeypatch.setattr(whatsapp_segments, "MAX_PIECE", 100)
    data = b"[13/03/2025, 09:00:00] Ann: x\n" + b"y" * 450 + b"\n[13/03/2025, 09:00:01] Ann: z\n"
    cut = list(whatsapp_segments.pieces([data[i:i + 64] for i in range(0, len(data), 64)]))
    assert b"".join(p for p, _ in cut) == data
    assert max(len(p) for p, _ in cut) == 100 and cut[-1][1]


def test_whatsapp_over_long_lines_and_messages_are_skipped_and_never_carried(monkeypatch):
    monkeypatch.setattr(common, "MAX_LINE", 200)
    lines = [_ios(13, 3, 9, 0, "Ann", "decides the order"),
             _ios(13, 3, 9, 1, "Bo", "x" * 300),  # an over-long line: skipped (Bo's record with it)
             "continues Ann's first message",
             _ios(13, 3, 9, 2, "Cy", "a message over many lines")] + ["z" * 60] * 8 + [
             _ios(13, 3, 9, 3, "Ann", "after")]
    case = _wa(lines)
    whole_warnings: list[str] = []
    expected = case.whole(whole_warnings.append)
    assert [(m.author, m.text) for m in expected] == [
        ("Ann", "decides the order\ncontinues Ann's first message"), ("Ann", "after")]
    assert len(whole_warnings) == 2
    for sizes in (iter(lambda: 1, None), [], random_sizes(9, 1, 120)):
        warnings: list[str] = []
        msgs, _, biggest = feed(case.segments(), case.data, sizes, warnings.append)
        assert msgs == expected
        assert warnings == [f"{case.path}: a line skipped: ValueError: longer than 200 bytes",
                            f"{case.path}: a message skipped: ValueError: longer than 200 bytes"]
        assert biggest <= 200 + 120 + 250  # the limit, a piece, the header


def test_whatsapp_authors_of_one_time_are_counted_up_to_a_limit(monkeypatch):
    from strongroom.messages.formats import whatsapp
    monkeypatch.setattr(whatsapp, "MAX_AUTHORS_PER_TIME", 3)
    lines = [_ios(13, 3, 9, 0, who, "hi") for who in ("A", "B", "C", "D", "A", "E")] + [_ios(13, 3, 9, 1, "F", "ok")]
    case = _wa(lines)
    msgs = _all_partitions_match(case, warnings_expected=True)
    assert [(m.author, m.message_id.rsplit("-", 1)[1]) for m in msgs] == [
        ("A", "0"), ("B", "0"), ("C", "0"), ("A", "1"), ("F", "0")]


# ---- Matrix: the room's name and the edits are the whole file's


def _room(events: list[dict], room: str | None = "Ops") -> bytes:
    doc = {"room_name": room, "export_date": "x", "exported_by": "@a:x", "messages": events} \
        if room is not None else {"messages": events}
    return json.dumps(doc, indent=2, ensure_ascii=False).encode()


def _event(i: int, body: str, **content) -> dict:
    return {"type": "m.room.message", "sender": f"@u{i % 3}:x", "event_id": f"$e{i}",
            "origin_server_ts": 1740819600000 + i * 1000, "content": {"msgtype": "m.text", "body": body, **content}}


def _edit(i: int, target: int, body: str) -> dict:
    return _event(i, "* " + body, **{"m.new_content": {"msgtype": "m.text", "body": body},
                                     "m.relates_to": {"rel_type": "m.replace", "event_id": f"$e{target}"}})


def test_matrix_edits_anywhere_in_the_file_read_as_the_whole_file():
    events = [_edit(0, 3, "edited before its original"), _event(1, "one"), _event(2, "two"),
              _event(3, "three"), _edit(4, 1, "one, first edit"), _edit(5, 1, "one, second edit"),
              {"type": "m.reaction", "sender": "@u1:x", "event_id": "$r", "origin_server_ts": 1, "content": {}},
              _event(6, "reply", **{"m.relates_to": {"m.in_reply_to": {"event_id": "$e2"}}}),
              dict(_event(7, ""), content={})]  # redacted
    case = _single("matrix", "room.json", _room(events))
    msgs = _all_partitions_match(case, warnings_expected=False)
    assert [(m.conversation, m.message_id, m.text, m.edited, m.reply_to) for m in msgs] == [
        ("Ops", "$e1", "one, second edit", True, ""), ("Ops", "$e2", "two", False, ""),
        ("Ops", "$e3", "edited before its original", True, ""), ("Ops", "$e6", "reply", False, "$e2")]
    _splits_match(case, range(0, len(case.data) + 1, 7))


def test_matrix_a_later_edit_or_another_room_name_changes_every_state():
    """A memo keyed by states never reuses a piece read without tonight's edits or name."""
    events = [_event(i, f"message {i}") for i in range(20)]
    before = _single("matrix", "room.json", _room(events))
    edited = _single("matrix", "room.json", _room(events + [_edit(20, 2, "new text")]))
    renamed = _single("matrix", "room.json", _room(events, room="Ops 2"))
    nameless = _single("matrix", "Ops Room.json", _room(events, room=None))
    assert edited.whole()[2].text == "new text" and before.whole()[2].text == "message 2"
    assert {m.conversation for m in renamed.whole()} == {"Ops 2"}
    assert {m.conversation for m in nameless.whole()} == {"Ops Room"}
    cut = before.data.index(b'"$e5"')
    assert before.data[:cut] == edited.data[:cut]
    states = [feed(c.segments(), c.data, [cut])[1][cut] for c in (before, edited)]
    assert states[0] != states[1]
    assert states[0].split(b"\0", 1)[1] == states[1].split(b"\0", 1)[1]  # the same place in the document
    assert before.segments().initial() != renamed.segments().initial()
    for case in (before, edited, renamed, nameless):
        _all_partitions_match(case, warnings_expected=False)


# ---- the catalogue uses them: a changed chat file costs what changed in it


def test_the_catalogue_reads_changed_chat_files_piece_by_piece(repo, tmp_path, monkeypatch):
    from strongroom.commands.backup import BackupOptions, run_backup
    from strongroom.messages.catalog_build import build_catalog as build  # (not the recording one)
    from strongroom.messages.formats import matrix, whatsapp
    from strongroom.messages.formats import whatsapp_segments
    from strongroom.writer import BlobWriter
    from tests.test_catalog_segments import catalog_stats_of_backups
    monkeypatch.setattr(whatsapp_segments, "GROUP", 1)  # a piece per record: counts to reason about

    class Whole:  # the same reader without its segment reader
        def __init__(self, reader):
            self.reader, self.platform = reader, reader.platform

        def find(self, files):
            return self.reader.find(files)

        def messages(self, files, export, warn=None):
            return self.reader.messages(files, export, warn=warn)

    seen = catalog_stats_of_backups(monkeypatch)
    src = tmp_path / "src"
    chat = [_ios(13, 3, 9, i % 60, ("Ann", "Bo")[i % 2], f"message {i}" + ("\nmore" if i % 5 == 0 else ""))
            for i in range(200)]
    events = [_event(i, f"message {i}") for i in range(200)]
    for night in range(3):
        if night == 1:  # an edit in the middle and two new messages in each file
            chat[100] = chat[100].replace("message 100", "message 100 <This message was edited>")
            chat += [_ios(14, 3, 9, 0, "Ann", "new"), _ios(14, 3, 9, 1, "Bo", "newer")]
            events += [_edit(200, 100, "message 100, edited"), _event(201, "new")]
        if night == 2:  # one new message in the room, no new edit; the chat unchanged
            events += [_event(202, "newest")]
        (src / "whatsapp").mkdir(parents=True, exist_ok=True)
        (src / "whatsapp" / "WhatsApp Chat with Ann.txt").write_text("\n".join(chat) + "\n")
        (src / "Ops.json").write_bytes(_room(events))
        snap = run_backup(repo, BackupOptions(paths=[str(src)])).snapshot
        with BlobWriter(repo) as writer:  # the same tree read whole
            root, _ = build(repo, writer, bytes.fromhex(snap.tree),
                            readers=[Whole(whatsapp.WhatsAppReader()), Whole(matrix.MatrixReader())])
            writer.flush()
        assert root.hex() == snap.catalog
    first, second, third = seen
    assert first.platforms == ["whatsapp", "matrix"] and first.pieces_reused == 0
    room = first.pieces_parsed - 200  # WhatsApp: a piece per record; the room: about one per event
    assert room >= 200
    # WhatsApp parses the edited record, the next one (its state holds the edited one), the
    # old last record (final no more) and the two new ones; the room has a new edit: its every
    # piece is parsed again (two events more)
    assert (second.pieces_parsed, second.pieces_reused) == (5 + room + 2, 197)
    assert second.messages == 202 + 201
    # no new edit: the room reuses all but its old last piece and the new event's
    assert (third.pieces_parsed, third.pieces_reused, third.parts_reused) == (2, room + 2 - 1, 1)
