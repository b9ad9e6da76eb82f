"""Keys: list, add, remove, passwd, their refusals, and the key file formats (both kinds)."""

from __future__ import annotations

import json

import pytest

from strongroom.cli import main
from strongroom.commands.keys import add_key, change_password, list_keys, remove_key
from strongroom.crypto.keyfile import KdfParams, calibrate, open_access_key, read_key_info
from strongroom.errors import (EXIT_ERROR, EXIT_OK, EXIT_USAGE, EXIT_WRONG_PASSWORD, RepositoryLocked, UsageError,
                               WrongPassword)
from strongroom.repository import Repository
from strongroom.storage import LocalStorage

from conftest import PASSWORD, WEAK_KDF, WEAK_KDF_ARGS

KDF_ARGS = ["--kdf-memory", "64", "--kdf-iterations", "1"]


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


def reopen(repo_path, password: bytes = PASSWORD) -> Repository:
    return Repository.open(LocalStorage(repo_path), password)


def test_add_full_key_opens_the_same_repository(repo, repo_path):
    row = add_key(repo, b"second passphrase", WEAK_KDF)
    assert row.kind == "full" and not row.in_use
    with reopen(repo_path, b"second passphrase") as other:
        assert other.master.secret == repo.master.secret
        assert other.config.id == repo.config.id
        assert other.key_id == row.id
    rows = list_keys(repo)
    assert [r.kind for r in rows] == ["full", "full"]
    assert [r.in_use for r in rows] == [True, False]


def test_remove_refuses_the_key_in_use_and_the_last_full_key(repo, repo_path):
    with pytest.raises(UsageError, match="the one in use"):
        remove_key(repo, repo.key_id[:8])
    wo = add_key(repo, b"writer", WEAK_KDF, write_only=True)
    # The write-only key does not count: the key in use is still the last full key.
    with reopen(repo_path, b"writer") as writer:
        assert writer.write_only
    second = add_key(repo, b"second", WEAK_KDF)
    with reopen(repo_path, b"second") as other:
        with pytest.raises(UsageError, match="the one in use"):
            remove_key(other, second.id)
        removed = remove_key(other, repo.key_id)  # the first key, from the second
        assert removed.id == repo.key_id
        with pytest.raises(UsageError, match="last full key"):
            remove_key(repo, second.id)  # the handle of the removed key still knows the master
        assert {r.id for r in list_keys(other)} == {second.id, wo.id}
    with pytest.raises(WrongPassword):
        reopen(repo_path, PASSWORD)


def test_a_passphrase_opens_one_key_only(repo, repo_path):
    with pytest.raises(UsageError, match=f"already opens key {repo.key_id[:12]}"):
        add_key(repo, PASSWORD, WEAK_KDF, write_only=True)
    row = add_key(repo, b"writer", WEAK_KDF, write_only=True)
    with pytest.raises(UsageError, match=f"already opens key {row.id[:12]}"):
        add_key(repo, b"writer", WEAK_KDF)
    with pytest.raises(UsageError, match=f"already opens key {row.id[:12]}"):
        change_password(repo, b"writer", WEAK_KDF)
    assert change_password(repo, PASSWORD, KdfParams(128, 1, 1)).in_use  # same passphrase, new cost: fine
    assert len(list_keys(repo)) == 2


def test_remove_takes_the_exclusive_lock(repo, repo_path):
    row = add_key(repo, b"second", WEAK_KDF)
    with reopen(repo_path, b"second") as other, other.lock(exclusive=False):
        with pytest.raises(RepositoryLocked):
            remove_key(repo, row.id)
    assert remove_key(repo, row.id).id == row.id


def test_remove_unknown_and_ambiguous_ids(repo):
    with pytest.raises(UsageError, match="no key with id"):
        remove_key(repo, "ffffffffffff0000")
    with pytest.raises(UsageError, match="invalid key id"):
        remove_key(repo, "xyz")


def test_passwd_replaces_the_key_file(repo, repo_path):
    old = repo.key_id
    signer = repo.signer.info.public
    row = change_password(repo, b"new passphrase", WEAK_KDF)
    assert row.id != old and row.in_use and row.kind == "full"
    assert [r.id for r in list_keys(repo)] == [row.id]
    with pytest.raises(WrongPassword):
        reopen(repo_path, PASSWORD)
    with reopen(repo_path, b"new passphrase") as again:
        assert again.master.secret == repo.master.secret
        assert again.signer.info.public == signer  # same signing key: the log still attributes to it


def test_passwd_of_a_write_only_key_keeps_it_write_only(repo, repo_path):
    add_key(repo, b"writer", WEAK_KDF, write_only=True)
    with reopen(repo_path, b"writer") as writer:
        row = change_password(writer, b"writer 2", WEAK_KDF)
        assert row.kind == "write-only"
    with reopen(repo_path, b"writer 2") as writer:
        assert writer.write_only
    with pytest.raises(WrongPassword):
        reopen(repo_path, b"writer")


def test_key_files_store_their_kdf_parameters(repo, repo_path):
    kdf = KdfParams(memory_kib=128, iterations=2, lanes=2)
    row = add_key(repo, b"p", kdf)
    info, params, salt, doc = read_key_info((repo_path / "keys" / row.id).read_bytes(), "k")
    assert params == kdf and len(salt) == 16 and doc["kind"] == "full"
    assert len(bytes.fromhex(doc["signing_public"])) == 32
    assert open_access_key((repo_path / "keys" / row.id).read_bytes(), b"nope", "k") is None


def test_calibration_scales_iterations_with_the_target_time():
    fast = calibrate(0.0001, 64, 1)
    assert fast.iterations == 1 and fast.memory_kib == 64 and fast.lanes == 1
    slow = calibrate(0.2, 64, 1)  # 64 KiB takes well under a millisecond: many passes, capped at 100
    assert slow.iterations > fast.iterations and slow.iterations <= 100


def test_cli_key_commands(repo_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STRONGROOM_REPO", str(repo_path))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSWORD.decode())
    assert cli(["init", *WEAK_KDF_ARGS], capsys)[0] == EXIT_OK
    pw = tmp_path / "pw2"
    pw.write_text("second\n")
    code, out, _ = cli(["key", "add", "--new-password-file", str(pw), *KDF_ARGS], capsys)
    assert code == EXIT_OK and out.startswith("added full key ")
    code, out, _ = cli(["key", "add", "--write-only", "--new-password-command", "echo writer", *KDF_ARGS, "--json"],
                       capsys)
    assert code == EXIT_OK and json.loads(out)["kind"] == "write-only"
    code, out, _ = cli(["key", "list", "--json"], capsys)
    rows = json.loads(out)
    assert [(r["kind"], r["in_use"]) for r in rows] == [("full", True), ("full", False), ("write-only", False)]
    code, out, _ = cli(["key", "list"], capsys)
    assert out.splitlines()[1].startswith("* " + rows[0]["id"][:12])
    code, _, err = cli(["key", "remove", rows[0]["id"][:10]], capsys)
    assert code == EXIT_USAGE and "in use" in err
    # A write-only key cannot manage keys.
    monkeypatch.setenv("STRONGROOM_PASSWORD", "writer")
    code, _, err = cli(["key", "remove", rows[1]["id"][:10]], capsys)
    assert code == EXIT_ERROR and "write-only key cannot remove keys" in err
    code, _, err = cli(["key", "add", "--new-password-file", str(pw), *KDF_ARGS], capsys)
    assert code == EXIT_ERROR and "write-only key cannot add keys" in err
    # Wrong passphrase: exit 12.
    monkeypatch.setenv("STRONGROOM_PASSWORD", "wrong")
    code, _, err = cli(["key", "list"], capsys)
    assert code == EXIT_WRONG_PASSWORD and "wrong password" in err
    # passwd with the second key, then the old passphrase is refused.
    monkeypatch.setenv("STRONGROOM_PASSWORD", "second")
    pw3 = tmp_path / "pw3"
    pw3.write_text("third\n")
    code, out, _ = cli(["key", "passwd", "--new-password-file", str(pw3), *KDF_ARGS], capsys)
    assert code == EXIT_OK and out.startswith("changed passphrase")
    assert cli(["key", "list"], capsys)[0] == EXIT_WRONG_PASSWORD
    monkeypatch.setenv("STRONGROOM_PASSWORD", "third")
    code, out, _ = cli(["key", "remove", rows[0]["id"][:12]], capsys)
    assert code == EXIT_OK and out == f"removed full key {rows[0]['id'][:12]}\n"
    code, _, err = cli(["key", "add", *KDF_ARGS], capsys)  # no new passphrase source, no terminal
    assert code == EXIT_USAGE and "no new passphrase" in err
