"""The snapshot chain and receipts: deleted, edited, re-ordered and inserted snapshots are found."""

from __future__ import annotations

import json
import os

import pytest

from strongroom.chain import ChainLink, current_receipt, group_tag, verify_chain, verify_receipt
from strongroom.cli import main
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.crypto import boxed, sealed
from strongroom.errors import EXIT_ERROR, UsageError
from strongroom.repository import object_name
from strongroom.snapshot import Snapshot

from conftest import PASSWORD


@pytest.fixture
def source(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_bytes(b"alpha " * 100)
    return tmp_path / "src"


def backups(repo, source, n: int) -> list[Snapshot]:
    out = []
    for i in range(n):
        (source / "a.txt").write_bytes(b"version %d " % i * 50)
        out.append(run_backup(repo, BackupOptions(paths=[str(source)])).snapshot)
    return out


def test_snapshots_are_chained_per_group(repo, source, tmp_path):
    a, b, c = backups(repo, source, 3)
    other = run_backup(repo, BackupOptions(paths=[str(source)], hostname="elsewhere")).snapshot
    assert [s.chain.seq for s in (a, b, c, other)] == [0, 1, 2, 0]
    assert [s.chain.previous for s in (a, b, c, other)] == [None, a.id, b.id, None]
    assert a.chain.group == c.chain.group != other.chain.group
    loaded = repo.load_snapshot(c.id)
    assert loaded.chain == c.chain and loaded.signer.kind_name == "full"
    report = verify_chain(repo)
    assert report.ok and (report.chained, report.groups, report.unchained) == (4, 2, 0)


def test_deleted_snapshot_is_detected_unless_a_forget_was_recorded(repo, source):
    a, b, c = backups(repo, source, 3)
    repo.storage.delete(f"snapshots/{b.id}")
    report = verify_chain(repo)
    assert report.problems == [
        f"snapshot {c.id[:16]}: previous snapshot {b.id[:16]} is missing and no log entry records its removal "
        "(deleted)",
        f"snapshots/{b.id[:16]}: recorded as added by log entry 2 but missing, and no log entry records its "
        "removal (deleted)"]
    repo.audit("forget", {"snapshots": [b.id]}, removed=[f"snapshots/{b.id}"])
    report = verify_chain(repo)
    assert report.ok and report.notes == [f"snapshot {c.id[:16]}: previous snapshot {b.id[:16]} was removed by a "
                                          "recorded operation"]


def test_deleted_head_snapshot_is_found_through_the_log(repo, source):
    a, b = backups(repo, source, 2)
    repo.storage.delete(f"snapshots/{b.id}")
    report = verify_chain(repo)
    assert len(report.problems) == 1 and report.problems[0].startswith(f"snapshots/{b.id[:16]}: recorded as added")


def test_edited_snapshot_is_detected(repo, repo_path, source):
    a, b = backups(repo, source, 2)
    path = repo_path / "snapshots" / b.id
    data = bytearray(path.read_bytes())
    data[-80] ^= 1
    path.write_bytes(bytes(data))
    report = verify_chain(repo)
    assert report.problems[0] == f"snapshot {b.id[:16]}: content does not match its name (damaged)"
    # Renamed to its new hash: the AEAD and the signature catch it.
    os.remove(path)
    (repo_path / "snapshots" / object_name(bytes(data))).write_bytes(bytes(data))
    report = verify_chain(repo)
    assert any("authentication failed" in p for p in report.problems)
    assert any(p.startswith(f"snapshots/{b.id[:16]}: recorded as added") for p in report.problems)


def test_reordered_header_fails_authentication(repo, repo_path, source):
    """Moving a snapshot in the chain means changing its cleartext link, which is authenticated."""
    a, b, c = backups(repo, source, 3)
    path = repo_path / "snapshots" / c.id
    data = bytearray(path.read_bytes())
    link = ChainLink.decode(boxed.boxed_header(bytes(data), boxed.MAGIC_SNAPSHOT, "x"), "x")
    forged = ChainLink(link.group, 1, a.id).encode()  # claim to come right after a, skipping b
    start = boxed.PREFIX_SIZE
    data[start:start + len(forged)] = forged
    os.remove(path)
    (repo_path / "snapshots" / object_name(bytes(data))).write_bytes(bytes(data))
    report = verify_chain(repo)
    assert not report.ok and any("authentication failed" in p for p in report.problems)


def _signed_snapshot(repo, snap: Snapshot, link: ChainLink) -> str:
    """What only a key holder could do: store a correctly signed snapshot with a chosen link."""
    data = boxed.seal_boxed(repo.master.recipient_public, repo.signer, boxed.MAGIC_SNAPSHOT, link.encode(),
                            snap.encode())
    name = object_name(data)
    repo.storage.store(f"snapshots/{name}", data)
    return name


def test_reordered_and_inserted_snapshots_are_detected(repo, source):
    a, b = backups(repo, source, 2)
    # Out of time order: claims to follow b but is older.
    older = Snapshot(time="2020-01-01T00:00:00+00:00", hostname=b.hostname, username="x", paths=b.paths, tree=b.tree)
    old_id = _signed_snapshot(repo, older, ChainLink(b.chain.group, 2, b.id))
    # Inserted with a sequence number that does not follow its previous snapshot.
    skip = Snapshot(time="2030-01-01T00:00:00+00:00", hostname=b.hostname, username="x", paths=b.paths, tree=b.tree)
    skip_id = _signed_snapshot(repo, skip, ChainLink(b.chain.group, 5, a.id))
    # In another group's chain than its host and paths say.
    moved = Snapshot(time="2030-01-01T00:00:00+00:00", hostname="other", username="x", paths=b.paths, tree=b.tree)
    moved_id = _signed_snapshot(repo, moved, ChainLink(b.chain.group, 2, b.id))
    problems = verify_chain(repo).problems
    assert f"snapshot {old_id[:16]}: older than its previous snapshot {b.id[:16]} (re-ordered)" in problems
    assert (f"snapshot {skip_id[:16]}: its previous snapshot {a.id[:16]} is not the one before it in its group "
            "(re-ordered or inserted)") in problems
    assert f"snapshot {moved_id[:16]}: group tag does not match its host and paths" in problems


def test_a_correctly_linked_snapshot_missing_from_the_log_is_an_insertion(repo, source):
    a, b = backups(repo, source, 2)
    extra = Snapshot(time="2030-01-01T00:00:00+00:00", hostname=b.hostname, username="x", paths=b.paths, tree=b.tree)
    extra_id = _signed_snapshot(repo, extra, ChainLink(b.chain.group, 2, b.id))
    assert verify_chain(repo).problems == [
        f"snapshot {extra_id[:16]}: no log entry records adding it (inserted outside strongroom, or its log entry "
        "was lost)"]
    repo.audit("copy", {}, added=[f"snapshots/{extra_id}"])
    assert verify_chain(repo).ok


def test_legacy_snapshots_stay_readable_and_are_reported_unchained(repo, source):
    (snap,) = backups(repo, source, 1)
    legacy = Snapshot(time=snap.time, hostname="old", username="u", paths=snap.paths, tree=snap.tree,
                      program_version="strongroom 0.1.0")
    data = sealed.seal(repo.master, sealed.MAGIC_SNAPSHOT, legacy.encode())
    repo.storage.store(f"snapshots/{object_name(data)}", data)
    loaded = repo.load_snapshot(object_name(data))
    assert loaded.hostname == "old" and loaded.chain is None and loaded.signer is None
    report = verify_chain(repo)
    assert report.ok and (report.chained, report.unchained) == (1, 1)


def test_group_tag_is_keyed():
    class K:
        id_key = b"\x01" * 32
    class L:
        id_key = b"\x02" * 32
    assert group_tag(K, "h", ["/a"]) != group_tag(L, "h", ["/a"])
    assert group_tag(K, "h", ["/a", "/b"]) == group_tag(K, "h", ["/b", "/a"])


def test_receipt_covers_history(repo, repo_path, source):
    a, b = backups(repo, source, 2)
    receipt = current_receipt(repo)
    assert len(receipt) == 24
    c, = backups(repo, source, 1)
    report = verify_receipt(repo, receipt)
    assert report.ok and (report.entry_seq, report.entries_covered, report.snapshots_covered) == (2, 3, 2)
    # A recorded forget of a covered snapshot keeps the receipt valid.
    repo.storage.delete(f"snapshots/{a.id}")
    repo.audit("forget", {}, removed=[f"snapshots/{a.id}"])
    assert verify_receipt(repo, receipt).ok
    # An unrecorded deletion does not.
    repo.storage.delete(f"snapshots/{b.id}")
    report = verify_receipt(repo, receipt)
    assert report.problems == [f"snapshots/{b.id[:16]}: covered by the receipt but missing, and no log entry "
                               "records its removal (deleted)"]


def test_receipt_detects_a_deleted_or_rewritten_log(repo, source):
    backups(repo, source, 1)
    receipt = current_receipt(repo)
    first = next(name for name, _ in repo.storage.list("log") if name.startswith(f"log/{0:016d}"))
    repo.storage.delete(first)
    report = verify_receipt(repo, receipt)
    assert not report.ok and report.problems[0].startswith("log entry ") and "is missing (deleted)" in report.problems[0]
    with pytest.raises(UsageError):
        verify_receipt(repo, "abc")
    assert verify_receipt(repo, "0" * 24).problems == [
        "no log entry has this hash: the history the receipt covers was removed or altered"]


def test_cli_receipt_and_check(repo, repo_path, source, monkeypatch, capsys):
    backups(repo, source, 2)
    monkeypatch.setenv("STRONGROOM_REPO", str(repo_path))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSWORD.decode())
    with pytest.raises(SystemExit):
        main(["receipt"])
    receipt = capsys.readouterr().out.strip()
    assert receipt == current_receipt(repo)
    with pytest.raises(SystemExit) as e:
        main(["check", "--chain", "--receipt", receipt, "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert e.value.code in (None, 0) and doc["ok"] and doc["chain"]["chained"] == 2
    assert doc["receipt"]["entries_covered"] == 3
    victim = repo.snapshot_ids()[0]
    repo.storage.delete(f"snapshots/{victim}")
    with pytest.raises(SystemExit) as e:
        main(["check", "--receipt", receipt])
    out, err = capsys.readouterr()
    assert e.value.code == EXIT_ERROR and "NOT INTACT" in out and victim[:16] in err


def test_copied_history_older_than_its_previous_is_only_a_note(repo, source):
    (b,) = backups(repo, source, 1)
    copied = Snapshot(time="2020-01-01T00:00:00+00:00", hostname=b.hostname, username="x", paths=b.paths,
                      tree=b.tree, original="12" * 32)
    copied_id = _signed_snapshot(repo, copied, ChainLink(b.chain.group, 1, b.id))
    repo.audit("copy", {}, added=[f"snapshots/{copied_id}"])
    report = verify_chain(repo)
    assert report.ok and report.notes == [f"snapshot {copied_id[:16]}: a copy, older than its previous snapshot "
                                          f"{b.id[:16]}"]
