"""--json on every command: every command has the option (or a justified exemption), and every
command's JSON output parses and has exactly the top-level keys docs/json.md documents.

docs/json.md is the contract: each `## strongroom <command>` section states the shape (an object,
or an array of objects) and lists the top-level keys in a table; keys whose type says
"optional" appear only in some runs. The scenarios below run every command on a small repository
so that, together, they produce every documented key at least once."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from strongroom.cli import cli
from strongroom.cli.reference import _commands

from conftest import PASSWORD, WEAK_KDF_ARGS

DOC = Path(__file__).resolve().parent.parent / "docs" / "json.md"

#: Commands without --json, and why. Keep it short: machine-readable output is the rule. None is
#: exempt today: `init` and `key add/passwd` may prompt for a passphrase, but prompts go to stderr,
#: so their --json output stays one clean document; `cat` always prints JSON and accepts --json.
EXEMPT: dict[str, str] = {}


# -- docs/json.md ----------------------------------------------------------------------------------

def _documented() -> dict[str, dict]:
    """{section title: {"shape": "object"|"array", "required": set, "optional": set, "example": doc}}"""
    sections: dict[str, dict] = {}
    parts = re.split(r"^## (strongroom [^\n]+)\n", DOC.read_text(encoding="utf-8"), flags=re.M)
    for title, body in zip(parts[1::2], parts[2::2]):
        shape = re.search(r"^Shape: (an object|an array of objects)", body, re.M)
        assert shape, f"docs/json.md, {title}: no `Shape:` line"
        required, optional = set(), set()
        for key, kind in re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \|", body, re.M):
            (optional if "optional" in kind else required).add(key)
        example = re.search(r"```json\n(.*?)```", body, re.S)
        assert example, f"docs/json.md, {title}: no example"
        sections[title] = {"shape": shape.group(1), "required": required, "optional": optional,
                           "example": example.group(1)}
    return sections


DOCUMENTED = _documented()


def _leaf_commands() -> list[str]:
    return [" ".join(path) for path, command in _commands(cli, ["strongroom"])
            if not isinstance(command, click.Group)]


def test_every_command_has_json_or_a_justified_exemption():
    missing = []
    for path, command in _commands(cli, ["strongroom"]):
        if isinstance(command, click.Group):
            continue
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        if "--json" not in options and " ".join(path[1:]) not in EXEMPT:
            missing.append(" ".join(path))
    assert missing == []
    assert all(len(reason) > 20 for reason in EXEMPT.values())


def test_every_command_is_documented_in_json_md():
    titles = {title.split(" --")[0] for title in DOCUMENTED}
    assert sorted(set(_leaf_commands()) - titles) == []
    assert sorted(titles - set(_leaf_commands())) == []  # no section for a command that is gone


def _keys_of(doc, shape: str) -> list[set]:
    if shape == "an array of objects":
        assert isinstance(doc, list)
        return [set(item) for item in doc]
    assert isinstance(doc, dict)
    return [set(doc)]


@pytest.mark.parametrize("title", sorted(DOCUMENTED))
def test_documented_examples_parse_and_match_their_tables(title):
    spec = DOCUMENTED[title]
    for keys in _keys_of(json.loads(spec["example"]), spec["shape"]):
        assert spec["required"] <= keys <= spec["required"] | spec["optional"], title


# -- running every command -------------------------------------------------------------------------

class Session:
    """One small repository and the CLI run in-process against it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.repo = root / "repo"
        self.env = {"STRONGROOM_REPO": str(self.repo), "STRONGROOM_PASSWORD": PASSWORD.decode(),
                    "STRONGROOM_CACHE_DIR": str(root / "cache")}
        self.outputs: dict[str, list] = {}

    def run(self, title: str, args: list[str], *, expect: int = 0, env: dict | None = None):
        result = CliRunner().invoke(cli, args + ["--json"], env={**self.env, **(env or {})},
                                    catch_exceptions=False)
        assert result.exit_code == expect, f"{args}: exit {result.exit_code}\n{result.stderr}"
        doc = json.loads(result.stdout_bytes.decode("utf-8"))  # exactly one document, valid UTF-8
        self.outputs.setdefault(title, []).append(doc)
        return doc


def _run_every_command(tmp_path: Path) -> Session:
    s = Session(tmp_path)
    data = tmp_path / "data"
    (data / "chat").mkdir(parents=True)
    (data / "chat" / "general.json").write_text('[{"text": "hello"}]\n' * 200)
    (data / "chat" / "random.json").write_text('[{"text": "bye"}]\n' * 50)
    (data / "chat" / "latest").symlink_to("general.json")
    (data / "chat" / "caf\udce9.txt").write_text("a name that is not UTF-8\n")
    export = Path(__file__).resolve().parent / "fixtures" / "exports" / "mattermost" / "export.jsonl"
    (data / "chat" / "export.jsonl").write_bytes(export.read_bytes())  # a chat export: a message catalogue
    (tmp_path / "pw2").write_text("second passphrase\n")
    (tmp_path / "pw3").write_text("third passphrase\n")

    s.run("strongroom init", ["init", *WEAK_KDF_ARGS])
    first = s.run("strongroom backup", ["backup", str(data), "--tag", "nightly"])["snapshot"]["id"]
    s.run("strongroom backup", ["backup", str(data), "--dry-run"])
    (data / "chat" / "random.json").write_text('[{"text": "changed"}]\n' * 60)
    second = s.run("strongroom backup", ["backup", str(data)])["snapshot"]["id"]
    s.run("strongroom snapshots", ["snapshots"])
    s.run("strongroom ls", ["ls", "latest"])
    s.run("strongroom restore", ["restore", "latest", "--target", str(tmp_path / "out")])
    s.run("strongroom restore", ["restore", "latest", "--target", str(tmp_path / "out2"), "--verify"])
    s.run("strongroom check", ["check"])
    s.run("strongroom check", ["check", "--read-data"])
    receipt = s.run("strongroom receipt", ["receipt"])["receipt"]
    s.run("strongroom check --chain", ["check", "--chain", "--receipt", receipt])
    s.run("strongroom cat", ["cat", "config"])
    s.run("strongroom stats", ["stats"])
    s.run("strongroom stats", ["stats", "--mode", "raw-data"])
    s.run("strongroom diff", ["diff", first, second])
    s.run("strongroom messages search", ["messages", "search", ""])
    s.run("strongroom messages diff", ["messages", "diff", first, second])
    s.run("strongroom messages export", ["messages", "export", second, "--conversation", "acme/town-square",
                                         "--output", str(tmp_path / "town-square.jsonl")])
    s.run("strongroom messages stats", ["messages", "stats", second])
    s.run("strongroom messages index", ["messages", "index", "--all"])
    s.run("strongroom hold", ["hold", first, "--reason", "case 42"])
    s.run("strongroom holds", ["holds"])
    s.run("strongroom release", ["release", first])
    s.run("strongroom tag", ["tag", second, "--add", "kept"])
    s.run("strongroom drill", ["drill", "--all", "--seed", "1"])
    s.run("strongroom forget", ["forget", "--keep-last", "1", "--dry-run"])
    s.run("strongroom forget", ["forget", "--keep-last", "1", "--prune"])
    s.run("strongroom prune", ["prune"])
    s.run("strongroom unlock", ["unlock"])
    added = s.run("strongroom key add", ["key", "add", "--new-password-file", str(tmp_path / "pw2"),
                                         *WEAK_KDF_ARGS])["id"]
    s.run("strongroom key list", ["key", "list"])
    s.run("strongroom key remove", ["key", "remove", added])
    s.run("strongroom key passwd", ["key", "passwd", "--new-password-file", str(tmp_path / "pw3"), *WEAK_KDF_ARGS])
    s.env["STRONGROOM_PASSWORD"] = "third passphrase"
    s.run("strongroom log", ["log"])
    s.run("strongroom repair index", ["repair", "index"])
    pack = next(p.name for p in (s.repo / "data").rglob("*") if p.is_file())
    s.run("strongroom repair packs", ["repair", "packs", pack])
    s.run("strongroom repair snapshots", ["repair", "snapshots", "--dry-run"])
    copy_env = {"STRONGROOM_REPO": str(tmp_path / "copy"), "STRONGROOM_FROM_PASSWORD": "third passphrase"}
    s.run("strongroom init", ["init", *WEAK_KDF_ARGS], env=copy_env)
    s.run("strongroom copy", ["copy", "--from-repo", str(s.repo)], env=copy_env)
    s.run("strongroom snapshots", ["snapshots"], env=copy_env)  # copies record their original
    s.run("strongroom demo", ["demo", "--dir", str(tmp_path / "demo"), "--days", "1"])
    policy = tmp_path / "strongroom.toml"
    policy.write_text(f"""\
[repositories.main]
location = "{s.repo}"
password_env = "STRONGROOM_PASSWORD"

[sources.chat]
paths = ["{data}"]

[retention]
keep_last = 2

[check]
read_data_subset = "100%"

[run]
state_dir = "{tmp_path / 'state'}"
""")
    s.run("strongroom run", ["run", "--config", str(policy)])
    s.run("strongroom schedule show", ["schedule", "show", "--config", str(policy)])
    s.run("strongroom schedule install", ["schedule", "install", "--config", str(policy),
                                          "--unit-dir", str(tmp_path / "units")])
    return s


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("json")
        mp.setenv("STRONGROOM_CACHE_DIR", str(root / "cache"))
        yield _run_every_command(root)


def test_every_command_ran(session):
    assert sorted({t.split(" --")[0] for t in session.outputs}) == sorted(_leaf_commands())


@pytest.mark.parametrize("title", sorted(DOCUMENTED))
def test_output_has_exactly_the_documented_keys(session, title):
    spec = DOCUMENTED[title]
    outputs = session.outputs[title]
    seen: set = set()
    for doc in outputs:
        for keys in _keys_of(doc, spec["shape"]):
            assert spec["required"] <= keys, f"{title}: missing {spec['required'] - keys}"
            assert keys <= spec["required"] | spec["optional"], f"{title}: undocumented {keys - spec['required'] - spec['optional']}"
            seen |= keys
    if any(_keys_of(doc, spec["shape"]) for doc in outputs):  # arrays may be empty in a run
        assert seen == spec["required"] | spec["optional"], f"{title}: documented but never produced"


def test_names_that_are_not_utf8_round_trip_through_json(session):
    paths = [entry["path"] for entry in session.outputs["strongroom ls"][0]]
    assert sum(os.fsencode(p).endswith(b"/chat/caf\xe9.txt") for p in paths) == 1
