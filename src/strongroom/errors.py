"""The error tree. Every error strongroom raises on purpose derives from StrongroomError.

Each class carries the process exit code the CLI uses for it; the CLI has one handler that
prints ``str(error)`` as a single line on stderr and exits with ``error.exit_code``.

    StrongroomError (1)
    ├── UsageError (2)                 bad arguments or options
    ├── RepositoryNotFound (10)        no repository at the given location
    ├── RepositoryExists (1)           init on a location that already holds one
    ├── RepositoryLocked (11)          another process holds a conflicting lock
    ├── WrongPassword (12)             no key file opens with the given password
    ├── AccessDenied (1)               the key in use may not do this (a write-only key)
    ├── UnsupportedFormat (1)          the repository uses a format version we do not know
    ├── IntegrityError (1)             an object failed authentication, hashing or parsing
    │   └── MaliciousTree (1)          a tree tries to escape the restore target or loop
    ├── SnapshotNotFound (1)           no snapshot matches the given id or selector
    ├── SourceError (1)                a backup source could not be read as a whole
    └── StorageError (1)               the storage backend failed
        ├── ObjectNotFound (1)
        ├── ObjectExists (1)
        └── StorageFull (1)            no space left on the device or quota exceeded
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_NO_REPOSITORY = 10
EXIT_LOCKED = 11
EXIT_WRONG_PASSWORD = 12
EXIT_INTERRUPTED = 130


class StrongroomError(Exception):
    exit_code = EXIT_ERROR


class UsageError(StrongroomError):
    exit_code = EXIT_USAGE


class RepositoryNotFound(StrongroomError):
    exit_code = EXIT_NO_REPOSITORY


class RepositoryExists(StrongroomError):
    pass


class RepositoryLocked(StrongroomError):
    exit_code = EXIT_LOCKED


class WrongPassword(StrongroomError):
    exit_code = EXIT_WRONG_PASSWORD


class AccessDenied(StrongroomError):
    pass


class UnsupportedFormat(StrongroomError):
    pass


class IntegrityError(StrongroomError):
    pass


class MaliciousTree(IntegrityError):
    pass


class SnapshotNotFound(StrongroomError):
    pass


class SourceError(StrongroomError):
    pass


class StorageError(StrongroomError):
    pass


class ObjectNotFound(StorageError):
    pass


class ObjectExists(StorageError):
    pass


class StorageFull(StorageError):
    pass
