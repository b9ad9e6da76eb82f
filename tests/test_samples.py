"""Tests for the deterministic chat-export generator (strongroom.samples)."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from strongroom.samples import FORMATS, DayStats, ExportParams, write_day

TEXT_SUFFIXES = (".json", ".jsonl", ".txt")
CJK = re.compile(r"[\u4e00-\u9fff]")
WA_LINE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d\d), (\d{1,2}):(\d\d) (AM|PM) - ([^:]+): (.*)$")
MAGIC = {".jpg": b"\xff\xd8\xff", ".png": b"\x89PNG", ".gif": b"GIF89a", ".pdf": b"%PDF",
         ".mp4": b"\x00\x00\x00\x20ftyp", ".docx": b"PK\x03\x04"}


def tree(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for fn in files:
            p = Path(dirpath, fn)
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def is_attachment(rel: str) -> bool:
    return not rel.endswith(TEXT_SUFFIXES)


def mm_posts(root: Path) -> tuple[list[str], dict[str, dict]]:
    """(root post ids in file order, {id: post-or-reply})."""
    order, posts = [], {}
    with open(root / "mattermost" / "export.jsonl", encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line)
            if obj["type"] != "post":
                continue
            post = obj["post"]
            order.append(post["id"])
            posts[post["id"]] = post
            for reply in post.get("replies", []):
                posts[reply["id"]] = reply
    return order, posts


def tg_messages(root: Path) -> dict[tuple[int, int], dict]:
    data = json.loads((root / "telegram" / "result.json").read_text(encoding="utf-8"))
    return {(chat["id"], m["id"]): m for chat in data["chats"]["list"] for m in chat["messages"]}


def slack_messages(root: Path) -> dict[str, dict]:
    out = {}
    for p in sorted((root / "slack").glob("*/*.json")):
        if p.parent.name == "__uploads":
            continue
        for m in json.loads(p.read_text()):
            out[m["ts"]] = m
    return out


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    base = tmp_path_factory.mktemp("samples")
    d1, d2, d2b, over = base / "d1", base / "d2", base / "d2b", base / "over"
    stats = {
        "d1": write_day(d1, 1),
        "d2": write_day(d2, 2),
        "d2b": write_day(str(d2b), 2),
    }
    write_day(over, 1)
    (over / "unrelated.txt").write_text("not ours")
    (over / "slack" / "gone").mkdir()
    (over / "slack" / "gone" / "2020-01-01.json").write_text("[]")
    stats["over"] = write_day(over, 2)
    return {"d1": d1, "d2": d2, "d2b": d2b, "over": over, "stats": stats}


def test_layout(days):
    root = days["d2"]
    assert sorted(p.name for p in root.iterdir()) == sorted(FORMATS)
    for rel in ("slack/channels.json", "slack/users.json", "slack/general/2026-11-01.json",
                "slack/general/2026-11-03.json", "mattermost/export.jsonl", "telegram/result.json",
                "discord/general.json"):
        assert (root / rel).is_file(), rel
    assert not (root / "slack/general/2026-11-04.json").exists()  # day 2 is 2026-11-03
    assert list((root / "whatsapp").glob("WhatsApp Chat with *.txt"))


def test_deterministic(days):
    a, b = tree(days["d2"]), tree(days["d2b"])
    assert len(a) > 40
    assert sorted(a) == sorted(b)
    for rel in a:
        assert a[rel] == b[rel], rel
    assert days["stats"]["d2"] == days["stats"]["d2b"]


def test_overwrite_equals_fresh_and_prunes_only_our_files(days):
    over = tree(days["over"])
    assert over.pop("unrelated.txt") == b"not ours"
    fresh = tree(days["d2"])
    assert sorted(over) == sorted(fresh)
    for rel in fresh:
        assert over[rel] == fresh[rel], rel
    assert not (days["over"] / "slack" / "gone").exists()


def test_stats_match_disk(days):
    for key in ("d1", "d2"):
        files = tree(days[key])
        st: DayStats = days["stats"][key]
        assert st.files == len(files)
        assert st.bytes == sum(len(v) for v in files.values())
        assert st.attachments == sum(1 for rel in files if is_attachment(rel))
    st1, st2 = days["stats"]["d1"], days["stats"]["d2"]
    assert 1_500_000 < st1.bytes < st2.bytes < 8_000_000  # demo-sized
    assert 200 < st2.messages - st1.messages < 800  # ~400 new per day, minus deletions


def test_message_count_matches_parsed_exports(days):
    root = days["d2"]
    n = len(slack_messages(root)) + len(mm_posts(root)[1]) + len(tg_messages(root))
    for p in (root / "discord").glob("*.json"):
        doc = json.loads(p.read_text(encoding="utf-8"))
        assert doc["messageCount"] == len(doc["messages"])
        n += len(doc["messages"])
    for p in (root / "whatsapp").glob("*.txt"):
        for line in p.read_text(encoding="utf-8").splitlines():
            m = WA_LINE.match(line)
            if m and m.group(8) not in ("This message was deleted", "You deleted this message"):
                n += 1
    assert n == days["stats"]["d2"].messages


def test_every_json_file_parses(days):
    count = 0
    for root in (days["d1"], days["d2"]):
        for rel, data in tree(root).items():
            if rel.endswith(".json"):
                json.loads(data.decode("utf-8"))
                count += 1
            elif rel.endswith(".jsonl"):
                lines = data.decode("utf-8").splitlines()
                kinds = [json.loads(line)["type"] for line in lines]
                assert kinds[0] == "version"
                assert kinds.index("team") < kinds.index("channel") < kinds.index("user") < kinds.index("post")
                assert set(kinds) == {"version", "team", "channel", "user", "post"}
                count += 1
    assert count > 30


def test_slack_message_shape(days):
    msgs = slack_messages(days["d2"])
    assert len(msgs) > 300
    for m in msgs.values():
        assert m["type"] == "message" and m["user"].startswith("U") and m["text"]
        assert re.fullmatch(r"\d{10}\.\d{6}", m["ts"])
    assert any("files" in m for m in msgs.values())
    assert any("reactions" in m for m in msgs.values())
    assert any("edited" in m for m in msgs.values())
    assert any(m.get("reply_count", 0) > 0 for m in msgs.values())
    replies = [m for m in msgs.values() if "parent_user_id" in m]
    assert replies and all(m["thread_ts"] in msgs for m in replies)
    users = json.loads((days["d2"] / "slack" / "users.json").read_text())
    assert len(users) == ExportParams().users
    raw = (days["d2"] / "slack" / "general" / "2026-11-01.json").read_bytes()
    assert b"https:\\/\\/" in raw  # PHP-style escaped slashes, as real Slack exports


def test_day_n_plus_1_keeps_old_messages(days):
    _, mm1 = mm_posts(days["d1"])
    _, mm2 = mm_posts(days["d2"])
    tg1, tg2 = tg_messages(days["d1"]), tg_messages(days["d2"])
    missing = (set(mm1) - set(mm2)) | {str(k) for k in set(tg1) - set(tg2)}
    total = len(mm1) + len(tg1)
    assert len(missing) <= 0.02 * total  # only a few deletions
    assert len(set(mm2) - set(mm1)) > 30 and len(set(tg2) - set(tg1)) > 30
    # deletions do happen over a few days (all formats) and the message count reflects them
    s1, s2 = days["stats"]["d1"], days["stats"]["d2"]
    assert len(missing) + (s2.messages - s1.messages) >= len(set(mm2) - set(mm1))
    assert len(missing) > 0


def test_old_messages_edited_between_days(days):
    _, mm1 = mm_posts(days["d1"])
    _, mm2 = mm_posts(days["d2"])
    edited = [k for k in mm1 if k in mm2 and mm1[k]["message"] != mm2[k]["message"]]
    assert len(edited) >= 3
    for k in edited:
        assert mm2[k]["edit_at"] > mm1[k].get("edit_at", 0)
        assert mm2[k]["edit_at"] > mm2[k]["create_at"]
    tg1, tg2 = tg_messages(days["d1"]), tg_messages(days["d2"])
    tg_edited = [k for k in tg1 if k in tg2 and tg1[k].get("edited") != tg2[k].get("edited")]
    assert len(tg_edited) >= 3
    assert all(tg1[k]["text_entities"] != tg2[k]["text_entities"] for k in tg_edited)
    # new reactions on old messages
    new_reactions = [k for k in tg1 if k in tg2 and tg1[k].get("reactions") != tg2[k].get("reactions")]
    assert len(new_reactions) >= 3
    # old Slack day files change too (edits, reactions, thread counters)
    for date in ("2026-10-30", "2026-10-31"):
        changed = [c.name for c in (days["d1"] / "slack").iterdir()
                   if (c / f"{date}.json").exists() and (days["d2"] / "slack" / c.name / f"{date}.json").exists()
                   and (c / f"{date}.json").read_bytes()
                   != (days["d2"] / "slack" / c.name / f"{date}.json").read_bytes()]
        assert changed, date


def test_thread_reply_counters_grow(days):
    s1, s2 = slack_messages(days["d1"]), slack_messages(days["d2"])
    day2_start = 1793664000  # 2026-11-03T00:00:00Z
    grown = [ts for ts, m in s1.items() if ts in s2
             and s2[ts].get("reply_count", 0) > m.get("reply_count", 0)]
    assert grown
    assert all(float(ts) < day2_start for ts in grown)
    # Mattermost replies are carried inline by their roots
    _, mm = mm_posts(days["d2"])
    assert any(len(p.get("replies", [])) >= 2 for p in mm.values())


def test_mattermost_new_posts_spread_through_file(days):
    order1, _ = mm_posts(days["d1"])
    order2, _ = mm_posts(days["d2"])
    old = set(order1)
    pos = [n / len(order2) for n, pid in enumerate(order2) if pid not in old]
    assert len(pos) > 20
    assert min(pos) < 0.2 and max(pos) > 0.8
    assert order2 == sorted(order2)
    times = [p["create_at"] for p in mm_posts(days["d2"])[1].values()]
    assert times != sorted(times)


def test_chinese_text_present(days):
    root = days["d2"]
    slack_text = " ".join(m["text"] for m in slack_messages(root).values())
    assert len(CJK.findall(slack_text)) > 1000
    assert len(CJK.findall((root / "telegram" / "result.json").read_text(encoding="utf-8"))) > 1000
    wa = "".join(p.read_text(encoding="utf-8") for p in (root / "whatsapp").glob("*.txt"))
    assert CJK.search(wa)
    english = sum(1 for m in slack_messages(root).values() if not CJK.search(m["text"]))
    assert english > 100  # mixed, not all Chinese
    assert "<@U" in slack_text and "https:" in slack_text


@pytest.mark.parametrize("share", [0.5, 0.3])
def test_attachment_share(days, tmp_path, share):
    if share == 0.5:
        files = tree(days["d2"])
    else:
        write_day(tmp_path, 3, ExportParams(seed=7, attachment_share=share, messages_per_day=250))
        files = tree(tmp_path)
    att = sum(len(v) for rel, v in files.items() if is_attachment(rel))
    total = sum(len(v) for v in files.values())
    assert abs(att / total - share) <= 0.15 * share, att / total


def test_no_attachments_when_share_zero(tmp_path):
    st = write_day(tmp_path, 0, ExportParams(attachment_share=0.0, messages_per_day=100))
    assert st.attachments == 0
    assert not any(is_attachment(rel) for rel in tree(tmp_path))


def test_attachments_look_real_and_some_are_reposted(days):
    files = {rel: data for rel, data in tree(days["d2"]).items() if is_attachment(rel)}
    assert len(files) >= 15
    by_hash = collections.defaultdict(list)
    for rel, data in files.items():
        ext = os.path.splitext(rel)[1]
        assert data.startswith(MAGIC[ext]), rel
        assert 2048 <= len(data) <= 8 * 1024 * 1024
        by_hash[hashlib.sha256(data).hexdigest()].append(rel)
    reposts = [paths for paths in by_hash.values() if len(paths) > 1]
    assert reposts
    assert all(len({os.path.basename(p) for p in paths}) == len(paths) for paths in reposts)
    # incompressible: no long repeated runs
    big = max(files.values(), key=len)
    assert len(set(big[64:4160])) > 200
    # every attachment is referenced by its export
    for rel in files:
        fmt, sub = rel.split("/", 1)
        if fmt == "slack":
            assert any(sub.split("/")[1] in m.get("files", [{}])[0].get("id", "")
                       for m in slack_messages(days["d2"]).values()), rel


def test_discord_exported_at_changes(days):
    for p in (days["d1"] / "discord").glob("*.json"):
        a = json.loads(p.read_text(encoding="utf-8"))
        b = json.loads((days["d2"] / "discord" / p.name).read_text(encoding="utf-8"))
        assert a["exportedAt"] != b["exportedAt"]
        assert a["exportedAt"].startswith("2026-11-03T03:") and b["exportedAt"].startswith("2026-11-04T03:")
        assert set(a) >= {"guild", "channel", "exportedAt", "messages"}
        for m in b["messages"]:
            assert m["author"]["id"] and m["author"]["name"]
            assert "timestampEdited" in m and "reactions" in m and "attachments" in m


def test_whatsapp_lines(days):
    n = 0
    for p in (days["d2"] / "whatsapp").glob("*.txt"):
        lines = p.read_text(encoding="utf-8").splitlines()
        assert "end-to-end encrypted" in lines[0]
        for line in lines[1:]:
            m = WA_LINE.match(line)
            if m:
                n += 1
                assert 1 <= int(m.group(1)) <= 12 and 1 <= int(m.group(4)) <= 12
    assert n > 50


def test_seed_changes_output(tmp_path):
    write_day(tmp_path / "a", 0, ExportParams(seed=1, messages_per_day=50))
    write_day(tmp_path / "b", 0, ExportParams(seed=2, messages_per_day=50))
    a = (tmp_path / "a" / "telegram" / "result.json").read_bytes()
    b = (tmp_path / "b" / "telegram" / "result.json").read_bytes()
    assert a != b


def test_scale_grows_export(tmp_path):
    small = write_day(tmp_path / "s", 0, ExportParams(messages_per_day=100, history_days=0))
    big = write_day(tmp_path / "b", 0, ExportParams(messages_per_day=100, history_days=0, scale=4))
    assert 3 * small.messages < big.messages < 5 * small.messages
    assert big.bytes > 2.5 * small.bytes


def test_bad_params():
    with pytest.raises(ValueError):
        ExportParams(users=1)
    with pytest.raises(ValueError):
        ExportParams(attachment_share=1.0)
    with pytest.raises(ValueError):
        write_day("/nonexistent-never-created", -1)
