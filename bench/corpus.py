"""Benchmark corpus: realistic nightly full exports of a chat server, deterministic from a seed.

Built on ``strongroom.samples.write_day`` (Slack, Mattermost, Telegram, Discord, WhatsApp; each
night the FULL export of all history so far, every file rewritten with a fresh mtime).  What
this module adds for the benchmark:

- profiles: ``attachment-heavy`` (attachments ~50% of the bytes) and ``text-heavy`` (~20%);
- a Slack export also delivered as one deflated zip, ``slack-export.zip`` next to the format
  folders, re-created every night (as Slack's own export download is).  Like Slack's real
  export it holds the JSON only (channels, users, one file per channel per day); uploaded
  files are in ``slack/__uploads`` of the unzipped copy.  Its entries carry the export night's
  timestamp, so the zip is byte-identical for the same (seed, scale, profile, day).

Usage::

    python bench/corpus.py OUT_DIR --day 3 --scale 20 --profile text-heavy
    python bench/corpus.py OUT_DIR --days 6 --scale 20      # nights 0..5 in turn, prints stats
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

# run as a script from a checkout: fall back to its src/ (appended, so that a copy put first on
# the path by run.py or large_index.py wins)
sys.path.append(str(Path(__file__).resolve().parent.parent / "src"))

from strongroom.samples import ExportParams, write_day  # noqa: E402

#: attachment share of export bytes per profile (``ExportParams.attachment_share``)
PROFILES = {"attachment-heavy": 0.5, "text-heavy": 0.2}
TEXT_SUFFIXES = (".json", ".jsonl", ".txt", ".zip")
ZIP_NAME = "slack-export.zip"


@dataclass
class NightStats:
    day: int
    files: int
    bytes: int
    text_bytes: int  # JSON/JSONL/TXT exports and the zip
    attachment_bytes: int
    zip_bytes: int
    seconds: float

    @property
    def attachment_share(self) -> float:
        return self.attachment_bytes / self.bytes if self.bytes else 0.0


def params_for(profile: str, scale: float, seed: int = 1) -> ExportParams:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    return ExportParams(seed=seed, scale=scale, attachment_share=PROFILES[profile])


def write_slack_zip(out_dir: Path, when: dt.datetime) -> int:
    """(Re)create ``slack-export.zip`` from the JSON files of ``out_dir/slack``; return its size."""
    slack = out_dir / "slack"
    members = sorted(
        os.path.relpath(os.path.join(d, f), slack)
        for d, dirs, files in os.walk(slack)
        if "__uploads" not in Path(d).relative_to(slack).parts
        for f in files if f.endswith(".json")
    )
    stamp = (when.year, when.month, when.day, when.hour, when.minute, when.second)
    tmp = out_dir / (ZIP_NAME + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for rel in members:
            info = zipfile.ZipInfo(rel.replace(os.sep, "/"), date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            # stream: ZipFile.open(w) writes in pieces, never the whole file in memory
            with open(slack / rel, "rb") as src, zf.open(info, "w") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
    os.replace(tmp, out_dir / ZIP_NAME)
    return (out_dir / ZIP_NAME).stat().st_size


def measure(out_dir: Path) -> tuple[int, int, int]:
    """(files, text bytes, attachment bytes) currently under ``out_dir``."""
    files = text = att = 0
    for d, _, names in os.walk(out_dir):
        for n in names:
            size = os.path.getsize(os.path.join(d, n))
            files += 1
            if n.endswith(TEXT_SUFFIXES):
                text += size
            else:
                att += size
    return files, text, att


def write_night(out_dir: str | os.PathLike, day: int, params: ExportParams) -> NightStats:
    """Write night ``day``'s full export (all formats plus the Slack zip) into ``out_dir``."""
    root = Path(out_dir)
    t0 = time.perf_counter()
    write_day(root, day, params)
    when = dt.datetime.combine(params.start + dt.timedelta(days=day + 1), dt.time(3, 0))
    zip_bytes = write_slack_zip(root, when)
    seconds = time.perf_counter() - t0
    files, text, att = measure(root)
    return NightStats(day, files, text + att, text, att, zip_bytes, seconds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--day", type=int, help="write only this night")
    ap.add_argument("--days", type=int, default=1, help="write nights 0..DAYS-1 in turn")
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="attachment-heavy")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    params = params_for(a.profile, a.scale, a.seed)
    nights = [a.day] if a.day is not None else range(a.days)
    for day in nights:
        s = write_night(a.out_dir, day, params)
        print(f"night {s.day}: {s.files} files, {s.bytes / 1e6:.1f} MB "
              f"(attachments {s.attachment_share:.0%}, zip {s.zip_bytes / 1e6:.1f} MB) in {s.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
