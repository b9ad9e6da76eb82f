"""Shared CLI plumbing: repository and password options, opening the repository, output."""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
from typing import TYPE_CHECKING, Any, Callable

import click

from strongroom.errors import UsageError, StrongroomError

if TYPE_CHECKING:  # imported in Location.open, while the key derivation runs
    from strongroom.repository import Repository


def repo_options(func: Callable) -> Callable:
    """-r/--repo and the password sources, shared by every command that opens a repository."""

    @click.option("-r", "--repo", "repo_url", envvar="STRONGROOM_REPO", metavar="URL",
                  help="Repository location: a path, s3:https://host:port/bucket/prefix or "
                       "s3://bucket/prefix. Default: $STRONGROOM_REPO.")
    @click.option("--password-file", type=click.Path(dir_okay=False), envvar="STRONGROOM_PASSWORD_FILE",
                  help="Read the password from the first line of this file.")
    @click.option("--password-command", metavar="CMD", envvar="STRONGROOM_PASSWORD_COMMAND",
                  help="Run CMD and use the first line it prints as the password.")
    @s3_options
    @functools.wraps(func)
    def wrapper(*args: Any, repo_url: str | None, password_file: str | None, password_command: str | None,
                **kwargs: Any) -> Any:
        if not repo_url:
            raise UsageError("no repository given: use -r/--repo or set STRONGROOM_REPO")
        s3 = _take_s3_options(kwargs)
        kwargs["location"] = Location(repo_url, password_file, password_command, s3=s3)
        return func(*args, **kwargs)

    return wrapper


def no_lock_option(func: Callable) -> Callable:
    """--no-lock, for commands that only read (below @repo_options): open without writing a lock."""

    @click.option("--no-lock", is_flag=True,
                  help="Do not lock the repository: read one you cannot write (a read-only mount or "
                       "credentials). A prune running meanwhile may remove what is being read.")
    @functools.wraps(func)
    def wrapper(*args: Any, no_lock: bool, **kwargs: Any) -> Any:
        kwargs["location"].lock = not no_lock
        return func(*args, **kwargs)

    return wrapper


_S3_KEYS = ("s3_endpoint", "s3_region", "s3_profile", "s3_addressing")


def s3_options(func: Callable) -> Callable:
    """Settings for s3: repositories (they apply to every S3 URL of the command, source included)."""
    func = click.option("--s3-endpoint", metavar="URL", envvar="STRONGROOM_S3_ENDPOINT",
                        help="S3 endpoint for s3://bucket/prefix URLs (default: AWS).")(func)
    func = click.option("--s3-region", metavar="NAME", envvar="STRONGROOM_S3_REGION",
                        help="S3 region (default: the AWS ways, e.g. $AWS_REGION).")(func)
    func = click.option("--s3-profile", metavar="NAME", envvar="STRONGROOM_S3_PROFILE",
                        help="AWS profile for credentials and region (default: $AWS_PROFILE).")(func)
    func = click.option("--s3-addressing", type=click.Choice(["auto", "path", "virtual"]),
                        envvar="STRONGROOM_S3_ADDRESSING",
                        help="Bucket addressing: path-style (self-hosted servers) or virtual-hosted "
                             "(AWS). Default auto: path-style whenever an endpoint is given.")(func)
    return func


def _take_s3_options(kwargs: dict[str, Any]):
    values = {key: kwargs.pop(key, None) for key in _S3_KEYS}
    if all(value is None for value in values.values()):
        return None  # S3Storage's defaults; and the S3 module stays unimported for local repositories
    from strongroom.storage.s3 import S3Options

    return S3Options(endpoint=values["s3_endpoint"], region=values["s3_region"],
                     profile=values["s3_profile"], addressing=values["s3_addressing"])


def from_password_options(func: Callable) -> Callable:
    """Password sources for a second (source) repository, as for copy and init
    --copy-chunker-params-from; the environment fallback is $STRONGROOM_FROM_PASSWORD."""
    func = click.option("--from-password-command", metavar="CMD", envvar="STRONGROOM_FROM_PASSWORD_COMMAND",
                        help="Run CMD for the source repository's password "
                             "(default: $STRONGROOM_FROM_PASSWORD).")(func)
    func = click.option("--from-password-file", type=click.Path(dir_okay=False),
                        envvar="STRONGROOM_FROM_PASSWORD_FILE",
                        help="Read the source repository's password from this file.")(func)
    return func


def source_location(url: str, password_file: str | None, password_command: str | None,
                    destination: Location) -> Location:
    """The source repository of a copy; S3 settings are shared with the destination."""
    return Location(url, password_file, password_command, s3=destination.s3,
                    password_env="STRONGROOM_FROM_PASSWORD")


#: Commands that must see the repository's own bytes, never a cached copy of them.
UNCACHED_COMMANDS = {"check", "repair"}


def _command_name() -> str | None:
    """The top-level command being run (``repair`` for ``repair index``), if any."""
    ctx = click.get_current_context(silent=True)
    while ctx is not None and ctx.parent is not None and ctx.parent.parent is not None:
        ctx = ctx.parent  # climb to the child of the root group
    return ctx.info_name if ctx is not None else None


class Location:
    """Where the repository is and how to get its password (asked for only when needed)."""

    def __init__(self, url: str, password_file: str | None, password_command: str | None,
                 *, s3: Any = None, password_env: str = "STRONGROOM_PASSWORD") -> None:
        self.url = url
        self.password_file = password_file
        self.password_command = password_command
        self.s3 = s3
        self.password_env = password_env
        self.lock = True  # False: --no-lock (no_lock_option)

    def storage(self, *, uncached: bool = False):
        _check_cache_root()
        if self.url.lower().startswith("s3:"):
            from strongroom.opening import default_cache_root
            from strongroom.storage.cache import CachedStorage, cache_folder
            from strongroom.storage.s3 import S3Storage

            backend = S3Storage(self.url, self.s3)
            if uncached or _command_name() in UNCACHED_COMMANDS:
                return backend
            # Remote: keep snapshots, index files, keys and trees in a local cache (verified on use).
            return CachedStorage(backend, cache_folder(default_cache_root(), self.url))
        from strongroom.storage import open_storage
        return open_storage(self.url)

    def password(self, *, confirm: bool = False) -> bytes:
        if self.password_file:
            try:
                with open(self.password_file, "rb") as f:
                    return _first_line(f.read())
            except OSError as e:
                raise UsageError(f"cannot read password file {self.password_file}: {e.strerror}") from None
        if self.password_command:
            import shlex
            import subprocess
            try:
                argv = shlex.split(self.password_command)
            except ValueError as e:  # e.g. an unclosed quote
                raise UsageError(f"invalid password command {self.password_command!r}: {e}") from None
            try:
                out = subprocess.run(argv, stdout=subprocess.PIPE, check=True).stdout
            except (OSError, subprocess.CalledProcessError) as e:
                raise StrongroomError(f"password command failed: {e}") from None
            return _first_line(out)
        env = os.environ.get(self.password_env)
        if env is not None:
            if not env:
                raise UsageError(f"{self.password_env} is set but empty")
            return os.fsencode(env)
        if sys.stdin.isatty():
            what = "source repository" if self.password_env != "STRONGROOM_PASSWORD" else "repository"
            pw = click.prompt(f"{what} password", hide_input=True, confirmation_prompt=confirm, err=True)
            return pw.encode()
        if self.password_env != "STRONGROOM_PASSWORD":
            raise UsageError(f"no password given for the source repository: set {self.password_env}, "
                             f"or use --from-password-file or --from-password-command")
        raise UsageError("no password given: set STRONGROOM_PASSWORD, or use --password-file or --password-command")

    def open(self, *, uncached: bool = False, imports: tuple[str, ...] = ()) -> Repository:
        """Open the repository. The key derivation starts as soon as the key file is read and runs
        in a thread, while the repository layer and the modules named in ``imports`` (the
        command's use case) are imported: on two cores the imports cost no wall time."""
        storage = self.storage(uncached=uncached)
        if not storage.exists():
            from strongroom.errors import RepositoryNotFound
            raise RepositoryNotFound(f"no repository at {self.url} (run `strongroom init` to create one)")
        password = self.password()
        from strongroom.cli import early
        from strongroom.opening import KeyOpening
        opening = early.take(self.url, password)  # begun before the command line was parsed
        if opening is None:
            opening = KeyOpening(storage, password)
        import importlib
        from strongroom.repository import Repository
        for module in imports:
            importlib.import_module(module)
        repo = Repository.open(opening.storage, password, opening=opening)
        repo.lock_free = not self.lock
        return repo


def _check_cache_root() -> None:
    """Every command opening a repository keeps its index cache below the cache folder: one that
    is a file or cannot be written is a setting to fix, said in one line, not an OS error raised
    deep inside the index cache."""
    from strongroom.repository import default_cache_root

    root = default_cache_root()
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        if not os.access(root, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), root)
    except OSError as e:
        reason = "it is not a folder" if isinstance(e, FileExistsError) else e.strerror
        raise UsageError(f"cannot use the cache folder {root}: {reason} (set STRONGROOM_CACHE_DIR "
                         "or XDG_CACHE_HOME to a folder you can write)") from None


def _first_line(data: bytes) -> bytes:
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not line:
        raise UsageError("the password source gave an empty password")
    return line


def json_option(func: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(func)


def json_text(doc: Any, indent: int | None = None) -> str:
    """Sorted keys, UTF-8; but a path with bytes that are not UTF-8 (held as lone surrogates by
    os.fsdecode) is written as \\udcXX escapes, so the output always stays valid UTF-8 JSON."""
    text = json.dumps(doc, indent=indent, ensure_ascii=False, sort_keys=True)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(doc, indent=indent, ensure_ascii=True, sort_keys=True)
    return text


def print_json(doc: Any) -> None:
    click.echo(json_text(doc, indent=2))


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
