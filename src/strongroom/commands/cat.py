"""Decoded repository objects as JSON documents, for debugging."""

from __future__ import annotations

import json

from strongroom.errors import UsageError
from strongroom.indexfile import open_index
from strongroom.pack import BLOB_TYPES
from strongroom.repository import Repository
from strongroom.tree import decode_tree


def _full_name(repo: Repository, folder: str, prefix: str | None) -> str:
    if not prefix:
        raise UsageError(f"give the id of the {folder[:-1] if folder != 'index' else 'index file'}")
    matches = [n for n, _ in repo.storage.list(folder) if n.rsplit("/", 1)[1].startswith(prefix)]
    if len(matches) != 1:
        raise UsageError(f"{'no' if not matches else 'more than one'} {folder} object matches {prefix!r}")
    return matches[0]


def cat_object(repo: Repository, kind: str, object_id: str | None) -> object:
    if kind == "config":
        doc = json.loads(repo.config.encode())
        return doc
    if kind == "snapshot":
        snap = repo.find_snapshot(object_id or "latest")
        doc = dict(snap.to_json(), id=snap.id)
        if snap.chain is not None:  # a signed snapshot (spec §16.4)
            doc["chain"] = {"group": snap.chain.group.hex(), "seq": snap.chain.seq, "previous": snap.chain.previous,
                            "signer": snap.signer.short_id, "signer_kind": snap.signer.kind_name}
        return doc
    if kind == "tree":
        if not object_id:
            raise UsageError("give a tree id (see `cat snapshot ID`)")
        try:
            tree_id = bytes.fromhex(object_id)
        except ValueError:
            raise UsageError(f"invalid tree id {object_id!r}") from None
        return {"id": object_id, "nodes": [n.to_json() for n in decode_tree(repo.load_blob(tree_id), object_id)]}
    if kind == "index":
        name = _full_name(repo, "index", object_id)
        packs, supersedes = open_index(repo.master, repo.storage.load(name), name)
        return {"id": name.rsplit("/", 1)[1], "supersedes": supersedes, "packs": [
            {"name": p.name, "size": p.size, "blobs": [
                {"id": e.id.hex(), "type": BLOB_TYPES.get(e.type, e.type), "compression": e.compression,
                 "offset": e.offset, "length": e.length, "raw_length": e.raw_length,
                 **({"member_offset": e.member_offset, "group_length": e.group_length} if e.group_length else {})}
                for e in p.entries]}
            for p in packs]}
    if kind == "key":
        name = _full_name(repo, "keys", object_id)
        doc = json.loads(repo.storage.load(name))
        for sealed_field in ("master", "writer", "signing"):  # ciphertext: nothing to show
            doc.pop(sealed_field, None)
        return dict(doc, id=name.rsplit("/", 1)[1], in_use=name == repo.key_name)
    raise UsageError(f"unknown object kind {kind!r}")
