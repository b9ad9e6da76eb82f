"""The policy file: one TOML document naming repositories, sources and what `run` does after the
backups (retention, prune cadence, verification share, off-site copies, notifications, metrics).

Loading validates everything before anything runs; a problem is one line naming the file, the
line and the dotted key (``tomllib`` reports syntax errors with a position but not where a key
is, so :func:`key_lines` finds keys in the text). Unknown keys are errors, so a typo never turns
into a silently ignored setting. See README, "Running nightly", for a full example.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from typing import Any

from strongroom.commands.backup import BackupOptions
from strongroom.commands.prune import MaxUnused, PruneOptions
from strongroom.commands.read_data import Subset
from strongroom.errors import StrongroomError, UsageError
from strongroom.globs import read_pattern_file
from strongroom.policy import GROUP_FIELDS, Duration, Policy

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NOTIFY_ON = ("failure", "success", "always")
S3_ADDRESSING = ("auto", "path", "virtual")

# source key -> BackupOptions field. Keys whose field this build's BackupOptions lacks are refused.
SOURCE_BACKUP_KEYS = {"paths": "paths", "command": "stdin_command", "filename": "stdin_filename",
                      "tags": "tags", "excludes": "excludes", "host": "hostname",
                      "expand_archives": "expand_archives", "catalog": "catalog"}
SOURCE_KEYS = ("repository", "exclude_files", *SOURCE_BACKUP_KEYS)
REPOSITORY_KEYS = ("location", "password_file", "password_command", "password_env", "compression_level",
                   "copy_to", "s3_endpoint", "s3_region", "s3_profile", "s3_addressing")
RETENTION_KEYS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly",
                  "keep_within", "keep_tags", "group_by")
SECTIONS = {"run": ("state_dir",), "repositories": None, "sources": None, "retention": RETENTION_KEYS,
            "prune": ("every", "max_unused", "max_repack_size", "repack_small"),
            "check": ("read_data_subset", "offsite"),
            "notify": ("command", "url", "on", "timeout"), "metrics": ("file",)}


class PolicyFileError(UsageError):
    """The policy file cannot be read or is invalid (exit code 2, like other usage errors)."""


@dataclass
class RepositorySpec:
    name: str
    location: str
    password_file: str | None = None
    password_command: str | None = None
    password_env: str | None = None  # the name of an environment variable holding the password
    compression_level: int | None = None  # overrides the repository's level for blobs this run writes
    copy_to: list[str] = field(default_factory=list)  # off-site repositories receiving its snapshots
    s3: dict[str, str | None] = field(default_factory=dict)  # endpoint, region, profile, addressing


@dataclass
class SourceSpec:
    name: str
    repository: str
    backup: dict[str, Any]  # BackupOptions keyword arguments

    def backup_options(self) -> BackupOptions:
        return BackupOptions(**{k: list(v) if isinstance(v, list) else v for k, v in self.backup.items()})


@dataclass
class PruneSpec:
    every: Duration | None  # None: whenever `run` runs
    options: PruneOptions


@dataclass
class CheckSpec:
    subset: str | None  # a `check --read-data-subset` value; None: structural check only
    offsite: bool = False  # check the off-site repositories too


@dataclass
class NotifySpec:
    command: list[str] | None = None
    url: str | None = None
    on: str = "failure"
    timeout: float = 30.0


@dataclass
class PolicyFile:
    path: str
    repositories: dict[str, RepositorySpec]
    sources: dict[str, SourceSpec]  # in file order
    retention: Policy | None = None
    group_by: list[str] = field(default_factory=lambda: ["host", "paths"])
    prune: PruneSpec | None = None
    check: CheckSpec | None = None
    notify: NotifySpec = field(default_factory=NotifySpec)
    metrics_file: str | None = None
    state_dir: str | None = None

    def select(self, jobs: list[str]) -> list[SourceSpec]:
        """The sources to run: all, or the named ones (in file order)."""
        unknown = [j for j in jobs if j not in self.sources]
        if unknown:
            raise UsageError(f"no source named {unknown[0]!r} in {self.path} "
                             f"(sources: {', '.join(self.sources) or 'none'})")
        return [s for name, s in self.sources.items() if not jobs or name in jobs]


# -- where keys are ------------------------------------------------------------------------------

_ATOM = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_HEADER = re.compile(rf"^\s*\[\[?\s*({_ATOM}(?:\s*\.\s*{_ATOM})*)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(rf"^\s*({_ATOM}(?:\s*\.\s*{_ATOM})*)\s*=")


def _split_key(text: str) -> tuple[str, ...]:
    parts = re.findall(_ATOM, text)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Dotted key path -> 1-based line where it is defined (tables and plain keys; keys inside
    inline tables and arrays map to the line of their enclosing key)."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    in_multiline = None
    for number, line in enumerate(text.splitlines(), 1):
        if in_multiline:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        header = _HEADER.match(line)
        if header:
            table = _split_key(header.group(1))
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault(table + _split_key(key.group(1)), number)
        for quote in ('"""', "'''"):
            if line.count(quote) % 2 == 1:
                in_multiline = quote
    return lines


# -- loading ---------------------------------------------------------------------------------------

def load_policy_file(path: str) -> PolicyFile:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise PolicyFileError(f"cannot read policy file {path}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
        doc = tomllib.loads(text)
    except UnicodeDecodeError as e:
        raise PolicyFileError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise PolicyFileError(f"{path}: {e}") from None
    return _Loader(path, text).load(doc)


class _Loader:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.base = os.path.dirname(os.path.abspath(path))
        self.lines = key_lines(text)

    def error(self, key: tuple[str, ...], message: str) -> PolicyFileError:
        for n in range(len(key), 0, -1):
            line = self.lines.get(key[:n])
            if line is not None:
                return PolicyFileError(f"{self.path}, line {line}: {'.'.join(key)}: {message}")
        return PolicyFileError(f"{self.path}: {'.'.join(key)}: {message}" if key else f"{self.path}: {message}")

    # -- typed getters

    def table(self, value: Any, key: tuple[str, ...], allowed: tuple[str, ...] | None) -> dict:
        if not isinstance(value, dict):
            raise self.error(key, "must be a table")
        if allowed is not None:
            for k in value:
                if k not in allowed:
                    raise self.error(key + (k,), f"unknown key (expected one of: {', '.join(allowed)})")
        return value

    def get(self, t: dict, key: tuple[str, ...], kind: type | tuple, what: str, default: Any = None) -> Any:
        value = t.get(key[-1], default)
        if value is default:
            return value
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int, float))):
            raise self.error(key, f"must be {what}")
        return value

    def string(self, t: dict, key: tuple[str, ...], *, required: bool = False) -> str | None:
        value = self.get(t, key, str, "a string")
        if value is None and required:
            raise self.error(key, "is required")
        if value is not None and not value:
            raise self.error(key, "must not be empty")
        return value

    def strings(self, t: dict, key: tuple[str, ...], *, nonempty: bool = False) -> list[str] | None:
        value = self.get(t, key, list, "a list of strings")
        if value is None:
            return None
        if not all(isinstance(v, str) and v for v in value):
            raise self.error(key, "must be a list of non-empty strings")
        if nonempty and not value:
            raise self.error(key, "must not be empty")
        return value

    def path_value(self, value: str) -> str:
        return os.path.join(self.base, os.path.expanduser(value))

    def parsed(self, key: tuple[str, ...], parse, value):
        try:
            return parse(value)
        except StrongroomError as e:
            raise self.error(key, str(e)) from None

    # -- sections

    def load(self, doc: dict) -> PolicyFile:
        self.table(doc, (), tuple(SECTIONS))
        for section, allowed in SECTIONS.items():
            if section in doc:
                self.table(doc[section], (section,), allowed)
        repositories = self.repositories(doc.get("repositories", {}))
        sources = self.sources(doc.get("sources", {}), repositories)
        run = doc.get("run", {})
        state_dir = self.string(run, ("run", "state_dir"))
        policy = PolicyFile(self.path, repositories, sources,
                            state_dir=self.path_value(state_dir) if state_dir else None)
        if "retention" in doc:
            policy.retention, policy.group_by = self.retention(doc["retention"])
        if "prune" in doc:
            policy.prune = self.prune_spec(doc["prune"])
        if "check" in doc:
            t = doc["check"]
            subset = self.string(t, ("check", "read_data_subset"))
            if subset is not None:
                self.parsed(("check", "read_data_subset"), Subset.parse, subset)
            policy.check = CheckSpec(subset, bool(self.get(t, ("check", "offsite"), bool, "true or false", False)))
        if "notify" in doc:
            policy.notify = self.notify(doc["notify"])
        metrics = doc.get("metrics", {})
        file = self.string(metrics, ("metrics", "file"))
        policy.metrics_file = self.path_value(file) if file else None
        return policy

    def repositories(self, value: Any) -> dict[str, RepositorySpec]:
        self.table(value, ("repositories",), None)
        if not value:
            raise self.error(("repositories",), "name at least one repository, e.g. [repositories.main]")
        specs = {}
        for name, t in value.items():
            key = ("repositories", name)
            self.check_name(key, name)
            self.table(t, key, REPOSITORY_KEYS)
            location = self.string(t, key + ("location",), required=True)
            if not location.lower().startswith("s3:"):
                location = self.path_value(location)
            spec = RepositorySpec(name, location)
            given = [k for k in ("password_file", "password_command", "password_env") if k in t]
            if len(given) > 1:
                raise self.error(key + (given[1],), f"give one password source, not both {given[0]} and {given[1]}")
            password_file = self.string(t, key + ("password_file",))
            spec.password_file = self.path_value(password_file) if password_file else None
            spec.password_command = self.string(t, key + ("password_command",))
            spec.password_env = self.string(t, key + ("password_env",))
            level = self.get(t, key + ("compression_level",), int, "an integer from 0 to 22")
            if level is not None and not 0 <= level <= 22:
                raise self.error(key + ("compression_level",), "must be an integer from 0 to 22")
            spec.compression_level = level
            spec.copy_to = self.strings(t, key + ("copy_to",)) or []
            addressing = self.string(t, key + ("s3_addressing",))
            if addressing is not None and addressing not in S3_ADDRESSING:
                raise self.error(key + ("s3_addressing",), f"must be one of {', '.join(S3_ADDRESSING)}")
            spec.s3 = {k: self.string(t, key + ("s3_" + k,)) for k in ("endpoint", "region", "profile", "addressing")}
            specs[name] = spec
        for spec in specs.values():
            key = ("repositories", spec.name, "copy_to")
            for target in spec.copy_to:
                if target not in specs:
                    raise self.error(key, f"no repository named {target!r}")
                if target == spec.name:
                    raise self.error(key, "a repository cannot be its own off-site copy")
                if specs[target].copy_to:
                    raise self.error(key, f"{target!r} is itself copied elsewhere: chains of copies are not supported")
        return specs

    def sources(self, value: Any, repositories: dict[str, RepositorySpec]) -> dict[str, SourceSpec]:
        self.table(value, ("sources",), None)
        if not value:
            raise self.error(("sources",), "name at least one source, e.g. [sources.chat]")
        targets = {t for r in repositories.values() for t in r.copy_to}
        primaries = [n for n in repositories if n not in targets]
        fields = {f.name for f in dataclasses.fields(BackupOptions)}
        specs = {}
        seen_files: dict[tuple[str, str], str] = {}
        for name, t in value.items():
            key = ("sources", name)
            self.check_name(key, name)
            self.table(t, key, SOURCE_KEYS)
            for k, target in SOURCE_BACKUP_KEYS.items():
                if k in t and target not in fields:
                    raise self.error(key + (k,), f"this strongroom's backup has no {target} option "
                                                 f"(a newer version supports it)")
            repository = self.string(t, key + ("repository",))
            if repository is None:
                if len(primaries) != 1:
                    raise self.error(key, f"name its repository (one of: {', '.join(primaries)})")
                repository = primaries[0]
            elif repository not in repositories:
                raise self.error(key + ("repository",), f"no repository named {repository!r}")
            elif repository in targets:
                raise self.error(key + ("repository",), f"{repository!r} is an off-site copy target; "
                                                        f"back up into its primary instead")
            backup: dict[str, Any] = {}
            if ("paths" in t) == ("command" in t):
                raise self.error(key, "give either paths or command")
            if "paths" in t:
                backup["paths"] = [self.path_value(p) for p in self.strings(t, key + ("paths",), nonempty=True)]
                if "filename" in t:
                    raise self.error(key + ("filename",), "only for a command source")
            elif "excludes" in t or "exclude_files" in t:
                k = "excludes" if "excludes" in t else "exclude_files"
                raise self.error(key + (k,), "only for a paths source (a command's output is one file)")
            else:
                command = t["command"]
                if isinstance(command, str):
                    command = shlex.split(command)
                    if not command:
                        raise self.error(key + ("command",), "must not be empty")
                else:
                    command = self.strings(t, key + ("command",), nonempty=True)
                backup["stdin_command"] = command
                filename = self.string(t, key + ("filename",)) or name
                if "/" in filename or filename in (".", ".."):
                    raise self.error(key + ("filename",), "must be one file name without '/'")
                backup["stdin_filename"] = filename
                other = seen_files.get((repository, filename))
                if other:
                    raise self.error(key + ("filename",), f"source {other!r} already stores {filename!r} in "
                                                          f"{repository!r}; give each command source its own filename")
                seen_files[(repository, filename)] = name
            for k in ("tags", "excludes"):
                if k in t:
                    backup[k] = self.strings(t, key + (k,))
            for f in self.strings(t, key + ("exclude_files",)) or []:
                try:
                    backup.setdefault("excludes", []).extend(read_pattern_file(self.path_value(f)))
                except OSError as e:
                    raise self.error(key + ("exclude_files",), f"cannot read {f}: {e.strerror}") from None
            if "host" in t:
                backup["hostname"] = self.string(t, key + ("host",))
            for k in ("expand_archives", "catalog"):
                if k in t:
                    backup[SOURCE_BACKUP_KEYS[k]] = self.get(t, key + (k,), bool, "true or false")
            specs[name] = SourceSpec(name, repository, backup)
        return specs

    def retention(self, t: dict) -> tuple[Policy, list[str]]:
        counts = {}
        for rule in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
            key = ("retention", f"keep_{rule}")
            value = self.get(t, key, int, "an integer (-1: unlimited)", 0)
            if value < -1:
                raise self.error(key, "must be -1 (unlimited) or more")
            counts[rule] = value
        within = self.string(t, ("retention", "keep_within"))
        policy = Policy(**counts, within=self.parsed(("retention", "keep_within"), Duration.parse, within)
                        if within else None, tags=self.strings(t, ("retention", "keep_tags")) or [])
        if policy.is_empty():
            raise self.error(("retention",), "keeps nothing: give at least one keep_* rule (an empty policy "
                                             "would remove every snapshot)")
        group_by = self.strings(t, ("retention", "group_by"))
        for g in group_by or []:
            if g not in GROUP_FIELDS:
                raise self.error(("retention", "group_by"), f"cannot group by {g!r}: use {', '.join(GROUP_FIELDS)}")
        return policy, ["host", "paths"] if group_by is None else group_by

    def prune_spec(self, t: dict) -> PruneSpec:
        every = self.string(t, ("prune", "every"))
        options = PruneOptions()
        max_unused = self.string(t, ("prune", "max_unused"))
        if max_unused is not None:
            options.max_unused = self.parsed(("prune", "max_unused"), lambda v: MaxUnused.parse(v, parse_size),
                                             max_unused)
        max_repack = self.string(t, ("prune", "max_repack_size"))
        if max_repack is not None:
            options.max_repack_size = self.parsed(("prune", "max_repack_size"), parse_size, max_repack)
        options.repack_small = bool(self.get(t, ("prune", "repack_small"), bool, "true or false", False))
        return PruneSpec(self.parsed(("prune", "every"), Duration.parse, every) if every else None, options)

    def notify(self, t: dict) -> NotifySpec:
        spec = NotifySpec()
        command = t.get("command")
        if isinstance(command, str):
            spec.command = shlex.split(command) or None
            if spec.command is None:
                raise self.error(("notify", "command"), "must not be empty")
        elif command is not None:
            spec.command = self.strings(t, ("notify", "command"), nonempty=True)
        spec.url = self.string(t, ("notify", "url"))
        if spec.url is not None and not spec.url.lower().startswith(("http://", "https://")):
            raise self.error(("notify", "url"), "must be an http:// or https:// URL")
        spec.on = self.string(t, ("notify", "on")) or "failure"
        if spec.on not in NOTIFY_ON:
            raise self.error(("notify", "on"), f"must be one of {', '.join(NOTIFY_ON)}")
        timeout = self.get(t, ("notify", "timeout"), (int, float), "a number of seconds", 30.0)
        if timeout <= 0:
            raise self.error(("notify", "timeout"), "must be a positive number of seconds")
        spec.timeout = float(timeout)
        return spec

    def check_name(self, key: tuple[str, ...], name: str) -> None:
        if not NAME.match(name):
            raise self.error(key, "names are letters, digits, '.', '_' and '-' (at most 64, not starting with "
                                  "'.', '_' or '-')")


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``500M``, ``2G``, ``1.5GiB``, ``4096``: bytes (binary units)."""
    m = _SIZE.match(text.strip())
    if not m:
        raise UsageError(f"invalid size {text!r}: use a number with an optional K, M, G or T")
    return int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()])
