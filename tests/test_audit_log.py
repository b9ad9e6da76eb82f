"""The audit log: entries for every mutating operation, encrypted, signed, chained, verified."""

from __future__ import annotations

import json
import os

import blake3
import pytest

from strongroom.audit import encode_header, list_entry_names, read_log
from strongroom.cli import main
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.keys import add_key, change_password, remove_key
from strongroom.crypto import boxed
from strongroom.crypto.signing import KIND_FULL, Signer
from strongroom.errors import EXIT_ERROR, EXIT_OK
from strongroom.repository import Repository
from strongroom.storage import LocalStorage

from conftest import PASSWORD, WEAK_KDF


@pytest.fixture
def source(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_bytes(b"alpha " * 100)
    return tmp_path / "src"


def commands(repo) -> list[str]:
    return [e.doc["command"] for e in read_log(repo).entries]


def test_operations_append_signed_entries(repo, repo_path, source):
    snap = run_backup(repo, BackupOptions(paths=[str(source)], tags=["t"])).snapshot
    second = add_key(repo, b"second passphrase", WEAK_KDF)
    writer = add_key(repo, b"writer", WEAK_KDF, write_only=True)
    remove_key(repo, writer.id)
    change_password(repo, b"changed passphrase", WEAK_KDF)
    report = read_log(repo)
    assert report.ok, (report.problems, [e.problems for e in report.entries])
    assert [e.doc["command"] for e in report.entries] == ["init", "backup", "key add", "key add", "key remove",
                                                          "key passwd"]
    assert [e.seq for e in report.entries] == [0, 1, 2, 3, 4, 5]
    assert [len(e.previous) for e in report.entries] == [0, 1, 1, 1, 1, 1]
    for before, after in zip(report.entries, report.entries[1:]):
        assert after.previous == [before.hash]
    init, backup, add_full, add_wo, remove, passwd = report.entries
    assert init.doc["added"][0] == "config" and init.doc["key"] == backup.doc["key"]
    assert backup.doc["added"][0] == f"snapshots/{snap.id}"
    assert all(a.startswith("index/") for a in backup.doc["added"][1:]) and len(backup.doc["added"]) >= 2
    assert backup.doc["args"]["paths"] == [str(source)] and backup.doc["args"]["tags"] == ["t"]
    assert backup.doc["result"] == "ok" and backup.doc["host"] == repo.hostname
    assert add_full.doc["added"] == [f"keys/{second.id}"] and add_full.doc["args"]["kind"] == "full"
    assert add_wo.doc["args"]["kind"] == "write-only"
    assert remove.doc["removed"] == [f"keys/{writer.id}"]
    assert passwd.doc["removed"][0] != passwd.doc["added"][0]
    assert {e.signer.kind for e in report.entries} == {KIND_FULL}
    # Encrypted: neither commands nor arguments appear in what the storage holds.
    for _, _, name in list_entry_names(repo):
        data = (repo_path / name).read_bytes()
        assert b"backup" not in data and str(source).encode() not in data and b"passphrase" not in data


def test_passwords_are_never_recorded(repo):
    repo.audit("test", {"password": "hunter2", "new_password_file": "/root/pw", "Secret": "x", "count": 3})
    entry = read_log(repo).entries[-1]
    assert entry.doc["args"] == {"count": 3}
    assert "hunter2" not in json.dumps(entry.to_json())


def test_write_only_keys_append_but_cannot_read(repo, repo_path, source):
    add_key(repo, b"writer", WEAK_KDF, write_only=True)
    with Repository.open(LocalStorage(repo_path), b"writer") as writer:
        run_backup(writer, BackupOptions(paths=[str(source)]))
        with pytest.raises(Exception, match="write-only key cannot read the audit log"):
            read_log(writer)
    report = read_log(repo)
    assert report.ok
    assert report.entries[-1].doc["command"] == "backup"
    assert report.entries[-1].signer.kind_name == "write-only"


def _entry(repo, seq: int) -> str:
    return next(name for s, _, name in list_entry_names(repo) if s == seq)


def test_a_deleted_entry_is_a_gap(repo, source):
    run_backup(repo, BackupOptions(paths=[str(source)]))
    repo.audit("tag", {"add": ["x"]})
    repo.storage.delete(_entry(repo, 1))
    report = read_log(repo)
    assert not report.ok
    assert report.problems == ["gap: no entry with sequence number 1 (deleted)"]
    assert report.entries[-1].problems == [f"previous entry {report.entries[-1].previous[0][:16]} is missing (deleted)"]


def test_an_edited_entry_is_detected(repo, repo_path, source):
    run_backup(repo, BackupOptions(paths=[str(source)]))
    name = _entry(repo, 1)
    data = bytearray((repo_path / name).read_bytes())
    data[-100] ^= 1
    (repo_path / name).write_bytes(bytes(data))  # edited in place
    report = read_log(repo)
    assert report.entries[1].problems == ["content does not match its name (altered or damaged)"]
    # Edited and renamed to match its new hash: the signature (and AEAD) still catch it.
    os.remove(repo_path / name)
    renamed = f"log/{1:016d}-{blake3.blake3(bytes(data)).hexdigest()}"
    (repo_path / renamed).write_bytes(bytes(data))
    report = read_log(repo)
    assert len(report.entries[1].problems) == 1 and "authentication failed" in report.entries[1].problems[0]
    assert report.entries[0].problems == []
    assert not report.ok


def test_forged_and_renumbered_entries_are_detected(repo, repo_path):
    repo.audit("one", {})
    # An entry signed by a key the repository never certified.
    rogue = Signer(b"\x07" * 32, KIND_FULL, b"\x00" * 32)
    head = list_entry_names(repo)[-1]
    data = boxed.seal_boxed(repo.master.recipient_public, rogue, boxed.MAGIC_LOG, encode_header(2, [head[1]]),
                            b'{"command":"forget","removed":["snapshots/x"]}')
    repo.storage.store(f"log/{2:016d}-{blake3.blake3(data).hexdigest()}", data)
    # A genuine entry moved to another sequence number.
    name = _entry(repo, 1)
    moved = name.replace(f"log/{1:016d}", f"log/{7:016d}")
    os.rename(repo_path / name, repo_path / moved)
    report = read_log(repo)
    by_seq = {e.seq: e for e in report.entries}
    assert by_seq[2].problems == ["signed by a key this repository never certified (forged)"]
    assert by_seq[7].problems == ["signed sequence number 1 differs from its name (renamed)"]
    assert "gap: no entry with sequence number 1 (deleted)" in report.problems
    # A forged "removed" list must not excuse a deletion.
    assert "snapshots/x" not in report.removed_objects()


def test_concurrent_appends_fork_and_merge(repo):
    names = list_entry_names(repo)
    # Two writers that both saw entry 0 append entry 1.
    for command in ("a", "b"):
        data = boxed.seal_boxed(repo.master.recipient_public, repo.signer, boxed.MAGIC_LOG,
                                encode_header(1, [names[0][1]]),
                                json.dumps({"command": command, "time": "2026-11-22T00:00:00+00:00"}).encode())
        repo.storage.store(f"log/{1:016d}-{blake3.blake3(data).hexdigest()}", data)
    repo.audit("c", {})
    report = read_log(repo)
    assert report.ok
    assert len(report.entries[-1].previous) == 2 and report.entries[-1].seq == 2


def test_cli_log(repo_path, source, monkeypatch, capsys):
    monkeypatch.setenv("STRONGROOM_REPO", str(repo_path))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSWORD.decode())
    with Repository.init(LocalStorage(repo_path), PASSWORD, kdf=WEAK_KDF) as repo:
        run_backup(repo, BackupOptions(paths=[str(source)]))
    with pytest.raises(SystemExit) as e:
        main(["log", "--json"])
    assert e.value.code in (None, EXIT_OK)
    doc = json.loads(capsys.readouterr().out)
    assert [d["command"] for d in doc] == ["init", "backup"]
    assert all(d["verified"] and d["signer_kind"] == "full" for d in doc)
    with pytest.raises(SystemExit):
        main(["log", "--json", "--since", "2999-01-01"])
    assert json.loads(capsys.readouterr().out) == []
    with Repository.open(LocalStorage(repo_path), PASSWORD) as repo:
        repo.storage.delete(_entry(repo, 0))
    with pytest.raises(SystemExit) as e:
        main(["log"])
    out, err = capsys.readouterr()
    assert e.value.code == EXIT_ERROR
    assert "GAP: gap: no entry with sequence number 0 (deleted)" in err
    assert out.startswith("BAD     1 ")
