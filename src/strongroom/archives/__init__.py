"""Zip and tar files stored member by member (``backup --expand-archives``; spec §21).

format.py   the node field and layout blobs (no I/O)
detect.py   recognising an archive by its magic bytes
reencode.py proving that re-compressing gives back the original compressed bytes
zipscan.py, tarscan.py  streaming readers that split an archive into skeleton and members
members.py  the members' tree (names validated like any tree's)
store.py    backup: one archive file in, one archive node out (or a reason to store it plain)
rebuild.py  restore: the original bytes back, verified against the recorded SHA-256
"""
