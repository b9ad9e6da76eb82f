"""Recognition remembered in the messages cache (catalog_index.HeadVerdicts): a file whose content
did not change is not read again to be recognised, and a snapshot tree found to hold no export is
not walked again; the catalogue is the same as without the memo."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.index import MessageCache
from strongroom.messages import catalog_build, catalog_index
from strongroom.messages.catalog_build import build_catalog
from strongroom.messages.catalog_index import cache_folder
from strongroom.messages.formats import files as format_files
from strongroom.writer import BlobWriter

FIXTURES = Path(__file__).parent / "fixtures" / "exports"
CHAT = FIXTURES / "whatsapp" / "android" / "WhatsApp Chat with Bob Lee.txt"


@pytest.fixture(autouse=True)
def _real_readers(monkeypatch):
    monkeypatch.setattr(catalog_build, "DEFAULT_READERS", None)


@pytest.fixture
def heads_read(monkeypatch) -> list[str]:
    """The files whose first bytes recognition reads (every reader reads through HeadCache.head)."""
    read: list[str] = []
    original = format_files.HeadCache.head

    def spy(self, path):
        read.append(path)
        return original(self, path)
    monkeypatch.setattr(format_files.HeadCache, "head", spy)
    return read


def backup(repo, src):
    result = run_backup(repo, BackupOptions(paths=[str(src)]))
    assert not result.warnings
    return result.snapshot


def plain_files(src: Path, n: int) -> None:
    for i in range(n):
        (src / "notes").mkdir(parents=True, exist_ok=True)
        (src / "notes" / f"note{i}.txt").write_text(f"a note that is no chat, number {i}\n")
        (src / "notes" / f"data{i}.json").write_text(f'{{"key": {i}}}')


def catalogue_without_memo(repo, snap) -> bytes | None:
    with BlobWriter(repo) as writer:
        root, _ = build_catalog(repo, writer, bytes.fromhex(snap.tree))
        writer.flush()
    return root


def test_an_unchanged_file_is_not_read_again_to_be_recognised(repo, tmp_path, heads_read):
    src = tmp_path / "src"
    shutil.copytree(FIXTURES, src)
    plain_files(src, 20)
    first = backup(repo, src)
    notes = {p for p in heads_read if "/notes/" in p}
    assert len(notes) == 40  # every candidate was read once
    heads_read.clear()
    (src / "notes" / "note3.txt").write_text("changed, still no chat\n")
    (src / "notes" / "data7.json").write_text('{"key": "changed"}')
    second = backup(repo, src)
    assert {p.rsplit("/", 2)[-1] for p in heads_read if "/notes/" in p} == {"note3.txt", "data7.json"}
    assert second.catalog == first.catalog == catalogue_without_memo(repo, second).hex()  # no export changed


def test_a_file_that_becomes_an_export_is_recognised(repo, tmp_path):
    src = tmp_path / "src"
    plain_files(src, 3)
    (src / "notes" / "chat.txt").write_text("not yet a chat\n")
    assert backup(repo, src).catalog is None
    shutil.copyfile(CHAT, src / "notes" / "chat.txt")
    snap = backup(repo, src)
    assert snap.catalog is not None and snap.catalog == catalogue_without_memo(repo, snap).hex()


def test_a_tree_without_exports_is_not_walked_again(repo, tmp_path, monkeypatch, heads_read):
    src = tmp_path / "deep" / "src"
    plain_files(src, 5)
    assert backup(repo, src).catalog is None
    heads_read.clear()
    walks = []
    original = catalog_build.TreeFiles.__init__

    def counted(self, *args, **kwargs):
        walks.append(1)
        original(self, *args, **kwargs)
    monkeypatch.setattr(catalog_build.TreeFiles, "__init__", counted)
    (tmp_path / "deep" / "beside").write_text("changes the parent folder's times, not the tree below")
    again = backup(repo, src)
    assert again.catalog is None and walks == [] and heads_read == []
    shutil.copyfile(CHAT, src / "notes" / "chat.txt")
    found = backup(repo, src)
    assert found.catalog is not None and walks == [1]


def test_verdicts_are_dropped_past_their_bound_and_found_again(repo, tmp_path, monkeypatch, heads_read):
    monkeypatch.setattr(catalog_index.HeadVerdicts, "MAX_ENTRIES", 5)
    src = tmp_path / "src"
    shutil.copytree(FIXTURES / "whatsapp", src)
    plain_files(src, 4)
    backup(repo, src)

    def remembered() -> int:
        cache = MessageCache(cache_folder(repo))
        try:
            return cache.count("verdicts")
        finally:
            cache.close()
    first = remembered()  # more than 5 at once: the (empty) table is emptied, then they are written
    assert first > 5
    (src / "notes" / "note0.txt").write_text("changed\n")
    heads_read.clear()
    snap = backup(repo, src)
    assert 0 < remembered() < first  # emptied again: only this backup's verdicts are left
    assert snap.catalog == catalogue_without_memo(repo, snap).hex()
    heads_read.clear()
    (src / "notes" / "note1.txt").write_text("changed too\n")
    backup(repo, src)
    assert len([p for p in heads_read if "/notes/" in p]) > 1  # what was dropped is read again


def test_small_files_are_recognised_from_their_source(repo, tmp_path, monkeypatch):
    """A candidate of at most 16 KiB is read whole from the file the backup just stored (and
    checked against its content hash), not back from the repository."""
    from strongroom.messages.catalog_files import TreeFiles
    src = tmp_path / "src"
    plain_files(src, 10)
    shutil.copyfile(CHAT, src / "notes" / "chat.txt")
    from_repository = []
    original = TreeFiles.open

    def spy(self, path):
        from_repository.append(path)
        return original(self, path)
    monkeypatch.setattr(TreeFiles, "open", spy)
    snap = backup(repo, src)
    assert snap.catalog is not None
    assert not [p for p in from_repository if "/notes/" in p and not p.endswith("chat.txt")]
    assert snap.catalog == catalogue_without_memo(repo, snap).hex()


def test_a_source_changed_after_the_backup_stored_it_is_recognised_from_the_stored_bytes(repo, tmp_path,
                                                                                          monkeypatch):
    src = tmp_path / "src"
    plain_files(src, 2)
    shutil.copyfile(CHAT, src / "notes" / "chat.txt")
    catalogue = catalog_build.catalog_for_backup

    def source_changes_first(*args, **kwargs):
        (src / "notes" / "chat.txt").write_bytes((b"no chat, the same size. " * 2000)[:CHAT.stat().st_size])
        return catalogue(*args, **kwargs)
    monkeypatch.setattr(catalog_build, "catalog_for_backup", source_changes_first)
    snap = run_backup(repo, BackupOptions(paths=[str(src)])).snapshot
    monkeypatch.setattr(catalog_build, "catalog_for_backup", catalogue)
    assert snap.catalog is not None  # the chat the snapshot holds, not the file as it is now
    assert snap.catalog == catalogue_without_memo(repo, snap).hex()
