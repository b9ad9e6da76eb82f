"""Write-only keys: back up with deduplication, read nothing, delete nothing; full keys read all."""

from __future__ import annotations

import os

import pytest

from strongroom.cli import main
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.keys import add_key
from strongroom.commands.restore import run_restore
from strongroom.crypto import sealed
from strongroom.crypto.keyfile import open_access_key
from strongroom.errors import EXIT_ERROR, AccessDenied, UsageError
from strongroom.indexfile import seal_index
from strongroom.locking import remove_stale_locks
from strongroom.pack import DATA, ENVELOPE_X25519, TREE
from strongroom.repository import Repository
from strongroom.storage import LocalStorage

from conftest import PASSWORD, WEAK_KDF

WRITER = b"write-only passphrase"
SECRET_NAME = b"merger-plan-acme.txt"
SECRET_TEXT = b"the acquisition closes on friday " * 50


@pytest.fixture
def source(tmp_path):
    root = tmp_path / "src"
    (root / "chat").mkdir(parents=True)
    (root / "chat" / SECRET_NAME.decode()).write_bytes(SECRET_TEXT)
    (root / "chat" / "general.jsonl").write_bytes(b'{"user":"bob","text":"hi"}\n' * 300)
    return root


def open_writer(repo_path) -> Repository:
    return Repository.open(LocalStorage(repo_path), WRITER)


def all_stored_bytes(repo_path) -> bytes:
    out = []
    for dirpath, _, files in os.walk(repo_path):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                out.append(fh.read())
    return b"".join(out)


def test_write_only_key_cannot_read_existing_snapshots(repo, repo_path, source):
    snap = run_backup(repo, BackupOptions(paths=[str(source)])).snapshot
    add_key(repo, WRITER, WEAK_KDF, write_only=True)
    with open_writer(repo_path) as writer:
        assert writer.write_only
        with pytest.raises(AccessDenied):
            writer.load_snapshot(snap.id)
        with pytest.raises(AccessDenied):
            writer.load_tree(bytes.fromhex(snap.tree))  # file names live in trees
        some_data = writer.master.blob_id(SECRET_TEXT)
        assert writer.index.has(some_data)  # it may know a blob exists (that is what dedup needs) ...
        with pytest.raises(AccessDenied):
            writer.load_blob(some_data)  # ... but not read it
        with pytest.raises(AccessDenied):
            writer.snapshots()
    # Nothing a storage holder sees carries the file name or content in clear.
    stored = all_stored_bytes(repo_path)
    assert SECRET_NAME not in stored and b"acquisition" not in stored


def test_write_only_key_material_holds_no_reading_secret(repo, repo_path):
    row = add_key(repo, WRITER, WEAK_KDF, write_only=True)
    opened = open_access_key((repo_path / "keys" / row.id).read_bytes(), WRITER, "k")
    key = opened.key
    assert key.write_only and opened.signer.info.kind == 1
    material = key.id_key + key.shared_root + key.recipient_public + key.config_payload
    master = repo.master
    for secret in (master.secret, master._pack_root, master._object_root):
        assert secret not in material
    with pytest.raises(AccessDenied):
        key.object_cipher(bytes(32))
    with pytest.raises(AccessDenied):
        key.pack_cipher(bytes(32))


def test_full_key_restores_what_a_write_only_key_backed_up(repo, repo_path, source, tmp_path):
    run_backup(repo, BackupOptions(paths=[str(source)]))
    add_key(repo, WRITER, WEAK_KDF, write_only=True)
    (source / "chat" / "new.jsonl").write_bytes(b'{"user":"eve","text":"new"}\n' * 100)
    with open_writer(repo_path) as writer:
        result = run_backup(writer, BackupOptions(paths=[str(source)]))
        snap_id = result.snapshot.id
        assert result.snapshot.parent is None  # no metadata skip without read access
        # Deduplicated: only the new file's one chunk and the changed trees (one per directory from
        # / down to chat/, since chat/ changed) were stored.
        assert result.summary.files_new == 3
        assert result.summary.blobs_added == 1 + len((source / "chat").parts)
        with pytest.raises(AccessDenied):
            writer.load_snapshot(snap_id)  # not even its own snapshot
    with Repository.open(LocalStorage(repo_path), PASSWORD) as full:
        snap = full.load_snapshot(snap_id)
        assert snap.signer.kind_name == "write-only"
        target = tmp_path / "restored"
        run_restore(full, snap, str(target))
        base = target / str(source).lstrip("/") / "chat"
        assert (base / SECRET_NAME.decode()).read_bytes() == SECRET_TEXT
        assert (base / "new.jsonl").read_bytes() == b'{"user":"eve","text":"new"}\n' * 100
        assert sorted(os.listdir(base)) == ["general.jsonl", SECRET_NAME.decode(), "new.jsonl"]
        envelopes = {info[1][0] for info in (full.index.pack_info(p) for p in _pack_names(repo_path))}
        assert envelopes == {0, ENVELOPE_X25519}


def _pack_names(repo_path) -> list[str]:
    return [f for _, _, files in os.walk(repo_path / "data") for f in files]


def test_writer_backup_of_unchanged_data_stores_nothing_new(repo, repo_path, source):
    run_backup(repo, BackupOptions(paths=[str(source)]))
    add_key(repo, WRITER, WEAK_KDF, write_only=True)
    with open_writer(repo_path) as writer:
        result = run_backup(writer, BackupOptions(paths=[str(source)]))
    assert result.summary.blobs_added == 0 and result.summary.bytes_added == 0
    assert result.summary.bytes_read == len(SECRET_TEXT) + 300 * 27  # every file re-read (no parent)


def test_write_only_key_cannot_delete_or_restore(repo, repo_path, source, tmp_path, monkeypatch, capsys):
    run_backup(repo, BackupOptions(paths=[str(source)]))
    add_key(repo, WRITER, WEAK_KDF, write_only=True)
    with open_writer(repo_path) as writer:
        with pytest.raises(AccessDenied, match="exclusive lock"):
            writer.lock(exclusive=True)  # every deleting operation takes it
        with pytest.raises(AccessDenied):
            remove_stale_locks(writer, remove_all=True)
        with pytest.raises(UsageError, match="--parent needs a full key"):
            run_backup(writer, BackupOptions(paths=[str(source)], parent="latest"))
    monkeypatch.setenv("STRONGROOM_REPO", str(repo_path))
    monkeypatch.setenv("STRONGROOM_PASSWORD", WRITER.decode())
    for argv in (["restore", "latest", "--target", str(tmp_path / "t")], ["ls", "latest"], ["snapshots"],
                 ["unlock", "--remove-all"], ["log"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == EXIT_ERROR, argv
        assert "write-only key cannot" in capsys.readouterr().err, argv
    assert not (tmp_path / "t").exists()


def test_writer_skips_index_files_it_cannot_read(repo, repo_path, source):
    """Index files written before §16 (magic SRIX) are full-key only: the writer just does not
    deduplicate against them."""
    run_backup(repo, BackupOptions(paths=[str(source)]))
    records = []
    for name, _ in repo.storage.list("index"):
        from strongroom.indexfile import open_index
        packs, _ = open_index(repo.master, repo.storage.load(name), name)
        records += packs
        repo.storage.delete(name)
    legacy = seal_index(repo.master, records, magic=sealed.MAGIC_INDEX)
    from strongroom.repository import object_name
    repo.storage.store(f"index/{object_name(legacy)}", legacy)
    add_key(repo, WRITER, WEAK_KDF, write_only=True)
    with open_writer(repo_path) as writer:
        assert writer.index.has(writer.master.blob_id(SECRET_TEXT)) is False
        assert writer.damaged_index_files == []
        result = run_backup(writer, BackupOptions(paths=[str(source)]))
        assert result.summary.blobs_added > 0
    with Repository.open(LocalStorage(repo_path), PASSWORD) as full:
        assert full.index.has(full.master.blob_id(SECRET_TEXT))


def test_blob_types_constant():
    assert (DATA, TREE) == (0, 1)


def test_cli_backup_with_a_write_only_key(repo, repo_path, source, monkeypatch, capsys):
    import json
    add_key(repo, WRITER, WEAK_KDF, write_only=True)
    monkeypatch.setenv("STRONGROOM_REPO", str(repo_path))
    monkeypatch.setenv("STRONGROOM_PASSWORD", WRITER.decode())
    with pytest.raises(SystemExit) as e:
        main(["backup", str(source), "--json"])
    assert e.value.code in (None, 0)
    snap_id = json.loads(capsys.readouterr().out)["snapshot"]["id"]
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSWORD.decode())
    with pytest.raises(SystemExit) as e:
        main(["check", "--chain", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert e.value.code in (None, 0) and doc["chain"]["chained"] == 1 and doc["ok"]
    with Repository.open(LocalStorage(repo_path), PASSWORD) as full:
        assert full.load_snapshot(snap_id).signer.kind_name == "write-only"
