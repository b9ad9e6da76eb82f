"""The members of one archive as an ordinary tree (the archive node's ``subtree``).

Member paths are untrusted: they are split on ``/`` and every component must pass the same
check as any tree name (strongroom.names.check_name), so ``..``, absolute paths, empty
components and NUL bytes are refused, as are duplicates and a path used both as a file and as
a directory. One leading ``./`` is allowed (tar's ``tar -C dir .``). A refused path makes the
whole archive "not expandable": it is then stored as a plain file, never partly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from strongroom.archives.source import NotExpandable
from strongroom.errors import MaliciousTree
from strongroom.names import check_name, show_name
from strongroom.tree import _INT_FIELDS, DIR, Node, encode_tree

MAX_MEMBERS = 250_000  # members held in memory while the tree is built
MAX_DEPTH = 256  # path components in one member name


@dataclass
class _Dir:
    node: Node
    explicit: bool = False
    children: dict[bytes, _Dir | Node] = field(default_factory=dict)


class MemberTree:
    def __init__(self, default_mtime_ns: int) -> None:
        self._default_mtime = default_mtime_ns
        self._root = _Dir(Node(name=b"", type=DIR))
        self.count = 0

    def add(self, path: bytes, node: Node) -> None:
        """Add a member; ``node.name`` is set here from the last path component."""
        self.count += 1
        if self.count > MAX_MEMBERS:
            raise NotExpandable(f"more than {MAX_MEMBERS} members")
        for key, (low, high) in _INT_FIELDS.items():  # what a tree may hold (tree.Node.from_json)
            if not low <= getattr(node, key) <= high:
                raise NotExpandable(f"member {show_name(path)}: {key} out of range")
        parts = split_member_path(path, is_dir=node.type == DIR)
        if not parts:  # "./" itself: the archive's root folder, nothing to create
            if node.type != DIR:
                raise NotExpandable(f"member name {show_name(path)} is not a file name")
            return
        folder = self._root
        for part in parts[:-1]:
            child = folder.children.get(part)
            if child is None:
                child = folder.children[part] = _Dir(Node(name=part, type=DIR, mode=0o755))
            elif not isinstance(child, _Dir):
                raise NotExpandable(f"member {show_name(path)} is below a file of the same name")
            folder = child
        name = parts[-1]
        node.name = name
        existing = folder.children.get(name)
        if node.type == DIR:
            if existing is None:
                folder.children[name] = _Dir(node, explicit=True)
            elif isinstance(existing, _Dir) and not existing.explicit:
                existing.node, existing.explicit = node, True  # listed after its contents
            else:
                raise NotExpandable(f"duplicate member {show_name(path)}")
        elif existing is None:
            folder.children[name] = node
        else:
            raise NotExpandable(f"duplicate member {show_name(path)}")

    def write(self, add_tree: Callable[[bytes], bytes]) -> bytes:
        """Store the trees bottom up (explicit stack); return the root tree id."""
        stack = [(self._root, _subdirs(self._root))]
        while True:
            folder, subdirs = stack[-1]
            sub = next(subdirs, None)
            if sub is not None:
                stack.append((sub, _subdirs(sub)))
                continue
            nodes = [c.node if isinstance(c, _Dir) else c for c in folder.children.values()]
            if not folder.explicit:  # a folder only implied by member paths: dated by its newest member
                folder.node.mtime_ns = max((n.mtime_ns for n in nodes), default=self._default_mtime)
            tree_id = add_tree(encode_tree(nodes))
            stack.pop()
            if not stack:
                return tree_id
            folder.node.subtree = tree_id


def _subdirs(folder: _Dir):
    return (c for c in folder.children.values() if isinstance(c, _Dir))


def split_member_path(path: bytes, *, is_dir: bool) -> list[bytes]:
    parts = path.split(b"/")
    if parts[0] == b".":
        parts = parts[1:]
    if is_dir and parts and parts[-1] == b"":
        parts = parts[:-1]
    if len(parts) > MAX_DEPTH:
        raise NotExpandable(f"member name {show_name(path)} is nested deeper than {MAX_DEPTH} levels")
    for part in parts:
        try:
            check_name(part)
        except MaliciousTree:
            raise NotExpandable(f"member name {show_name(path)} is unsafe (absolute, '..', '.' or empty "
                                f"components, or NUL)") from None
    return parts
