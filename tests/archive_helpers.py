"""Archives the archive tests create: zips (stored, deflated at several levels), tars, tar.gz, tar.zst."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import zipfile
import zlib

import zstandard


def member_bytes(name: str, size: int, seed: int = 0) -> bytes:
    """Deterministic, compressible-but-not-trivial content (chat-export-like JSON lines)."""
    out = io.BytesIO()
    i = 0
    while out.tell() < size:
        h = hashlib.sha256(f"{name}:{seed}:{i}".encode()).hexdigest()
        out.write(f'{{"ts":"{1700000000 + i}.{h[:6]}","user":"U{h[6:12]}","text":"msg {i} {h[12:40]}"}}\n'.encode())
        i += 1
    return out.getvalue()[:size]


def write_zip(path, members: dict[str, bytes], *, compression=zipfile.ZIP_DEFLATED, level: int | None = None,
              dirs: tuple[str, ...] = ()) -> None:
    with zipfile.ZipFile(path, "w", compression=compression, compresslevel=level) as zf:
        for d in dirs:
            zf.writestr(zipfile.ZipInfo(d.rstrip("/") + "/", (2024, 5, 1, 12, 0, 0)), b"")
        for name, data in members.items():
            info = zipfile.ZipInfo(name, (2024, 5, 1, 12, 0, 2))
            info.compress_type = compression
            info.external_attr = 0o100640 << 16
            info.create_system = 3
            zf.writestr(info, data, compress_type=compression, compresslevel=level)


def write_tar(path, members: dict[str, bytes], *, mode: str = "w", dirs: tuple[str, ...] = (),
              symlinks: dict[str, str] | None = None) -> None:
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tf:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o750, 1714560000
            tf.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uname = len(data), 0o640, 1714560002, "alice"
            tf.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, target, 1714560004
            tf.addfile(info)


def gzip_file(src, dst, level: int = 9) -> None:
    with open(src, "rb") as f, gzip.GzipFile(dst, "wb", compresslevel=level, mtime=1714560000) as g:
        g.write(f.read())


def zstd_file(src, dst, level: int = 3) -> None:
    data = open(src, "rb").read()
    with open(dst, "wb") as f:
        f.write(zstandard.ZstdCompressor(level=level, write_checksum=True).compress(data))


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def redeflate_zip(src, dst, *, strategy=zlib.Z_FILTERED, mem_level: int = 9, foreign=lambda name: True) -> None:
    """Copy a deflated zip, re-compressing the members ``foreign(name)`` picks with zlib parameters
    that strongroom does not try (a stand-in for another deflate implementation), the others
    with zlib's defaults at level 6: sizes and offsets are rewritten."""
    with zipfile.ZipFile(src) as zin, open(dst, "wb") as out:
        central = []
        for info in zin.infolist():
            data = zin.read(info)
            if foreign(info.filename):
                c = zlib.compressobj(6, zlib.DEFLATED, -15, mem_level, strategy)
            else:
                c = zlib.compressobj(6, zlib.DEFLATED, -15)
            comp = c.compress(data) + c.flush()
            name = info.filename.encode()
            offset = out.tell()
            dostime = (info.date_time[3] << 11) | (info.date_time[4] << 5) | (info.date_time[5] // 2)
            dosdate = ((info.date_time[0] - 1980) << 9) | (info.date_time[1] << 5) | info.date_time[2]
            crc = zlib.crc32(data)
            import struct
            out.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, dostime, dosdate, crc, len(comp),
                                  len(data), len(name), 0) + name + comp)
            central.append(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, dostime, dosdate, crc,
                                       len(comp), len(data), len(name), 0, 0, 0, 0, 0, offset) + name)
        cd_start = out.tell()
        for c in central:
            out.write(c)
        import struct
        out.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(central), len(central), out.tell() - cd_start,
                              cd_start, 0))


def tree_files(root) -> dict[str, bytes]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out
