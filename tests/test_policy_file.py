"""The policy file: the README's example loads as documented; every kind of mistake is one line
naming the file, the line and the key; settings map onto backup, forget, prune and check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from strongroom.commands.backup import BackupOptions
from strongroom.jobs.policyfile import PolicyFileError, key_lines, load_policy_file, parse_size
from strongroom.policy import Duration, Policy

README = Path(__file__).resolve().parent.parent / "README.md"

MINIMAL = """\
[repositories.main]
location = "repo"

[sources.chat]
paths = ["data"]
"""


def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("### Running nightly", 1)[1]
    return re.search(r"```toml\n(.*?)```", section, re.S).group(1)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "strongroom.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(PolicyFileError) as e:
        load_policy_file(write(tmp_path, text))
    return str(e.value)


def test_readme_example_loads_as_documented(tmp_path) -> None:
    policy = load_policy_file(write(tmp_path, readme_example()))
    main, offsite = policy.repositories["main"], policy.repositories["offsite"]
    assert (main.location, main.password_file, main.copy_to) == (
        "/srv/backup/strongroom", "/etc/strongroom/main.password", ["offsite"])
    assert (offsite.location, offsite.password_command, offsite.compression_level, offsite.s3["region"]) == (
        "s3://acme-backups/chat", "systemd-creds cat strongroom-offsite", 9, "eu-central-1")
    assert list(policy.sources) == ["mattermost-files", "mattermost-db", "slack"]
    assert policy.sources["mattermost-files"].backup == {
        "paths": ["/var/opt/mattermost/data"], "excludes": ["*/thumbnails/*", "*.tmp"], "tags": ["mattermost"]}
    db = policy.sources["mattermost-db"]
    assert db.repository == "main"
    assert db.backup == {"stdin_command": ["pg_dump", "--format=custom", "--dbname=mattermost"],
                         "stdin_filename": "mattermost.pgdump", "tags": ["mattermost", "database"]}
    assert db.backup_options() == BackupOptions(stdin_command=["pg_dump", "--format=custom", "--dbname=mattermost"],
                                                stdin_filename="mattermost.pgdump", tags=["mattermost", "database"])
    assert policy.sources["slack"].backup_options().hostname == "chat-archive"
    assert policy.retention == Policy(daily=14, weekly=8, monthly=24, yearly=-1, tags=["legal"])
    assert policy.group_by == ["host", "paths"]
    assert policy.prune.every == Duration(days=7) and policy.prune.options.max_unused.percent == 5.0
    assert (policy.check.subset, policy.check.offsite) == ("5%", False)
    assert (policy.notify.command, policy.notify.url, policy.notify.on, policy.notify.timeout) == (
        ["/usr/local/bin/page-oncall"], "https://chat.example.org/hooks/backup-alerts", "failure", 20.0)
    assert policy.metrics_file == "/var/lib/prometheus/node-exporter/strongroom.prom"
    assert policy.state_dir == "/var/lib/strongroom"


def test_minimal_file_and_relative_paths(tmp_path) -> None:
    policy = load_policy_file(write(tmp_path, MINIMAL))
    assert policy.repositories["main"].location == str(tmp_path / "repo")
    assert policy.sources["chat"].backup == {"paths": [str(tmp_path / "data")]}
    assert policy.sources["chat"].repository == "main"
    assert (policy.retention, policy.prune, policy.check, policy.metrics_file) == (None, None, None, None)
    assert policy.notify.command is None and policy.notify.url is None


@pytest.mark.parametrize("text, message", [
    (MINIMAL + "tagz = ['x']\n",
     "line 6: sources.chat.tagz: unknown key (expected one of: repository, exclude_files, paths, command, "
     "filename, tags, excludes, host, expand_archives, catalog)"),
    (MINIMAL + "\n[retention]\nkeep_daily = 'seven'\n", "line 8: retention.keep_daily: must be an integer"),
    (MINIMAL + "\n[retention]\nkeep_daily = true\n", "line 8: retention.keep_daily: must be an integer"),
    (MINIMAL + "\n[retention]\ngroup_by = ['host']\n",
     "line 7: retention: keeps nothing: give at least one keep_* rule"),
    (MINIMAL + "\n[retention]\nkeep_within = '2 weeks'\n",
     "line 8: retention.keep_within: invalid duration '2 weeks'"),
    (MINIMAL + "\n[check]\nread_data_subset = '200%'\n",
     "line 8: check.read_data_subset: invalid subset '200%'"),
    (MINIMAL + "\n[prune]\nevery = 'weekly'\n", "line 8: prune.every: invalid duration 'weekly'"),
    (MINIMAL + "\n[notify]\nurl = 'ftp://x'\n", "line 8: notify.url: must be an http:// or https:// URL"),
    (MINIMAL + "\n[notify]\non = 'sometimes'\n", "line 8: notify.on: must be one of failure, success, always"),
    (MINIMAL + "\n[metric]\nfile = 'x'\n", "line 7: metric: unknown key (expected one of: run, repositories"),
    (MINIMAL + "repository = 'nas'\n", "line 6: sources.chat.repository: no repository named 'nas'"),
    (MINIMAL + "command = 'pg_dump'\n", "line 4: sources.chat: give either paths or command"),
    (MINIMAL.replace('paths = ["data"]', "paths = []"), "line 5: sources.chat.paths: must not be empty"),
    (MINIMAL.replace('location = "repo"', 'location = "repo"\npassword_file = "a"\npassword_env = "B"'),
     "line 4: repositories.main.password_env: give one password source, not both password_file and password_env"),
    (MINIMAL.replace('location = "repo"', 'location = "repo"\ncopy_to = ["main"]'),
     "line 3: repositories.main.copy_to: a repository cannot be its own off-site copy"),
    (MINIMAL.replace('location = "repo"', 'location = "repo"\ncompression_level = 30'),
     "line 3: repositories.main.compression_level: must be an integer from 0 to 22"),
    (MINIMAL.replace('location = "repo"', ""), "line 1: repositories.main.location: is required"),
    (MINIMAL.replace("[sources.chat]", "[sources.'bad name']"), "line 4: sources.bad name: names are letters"),
    (MINIMAL + "\n[sources.db]\ncommand = 'pg_dump x'\n[sources.db2]\ncommand = ['pg_dump', 'y']\nfilename = 'db'\n",
     "line 11: sources.db2.filename: source 'db' already stores 'db' in 'main'"),
    ("[repositories.a]\nlocation = 'a'\n[repositories.b]\nlocation = 'b'\n[sources.x]\npaths = ['x']\n",
     "line 5: sources.x: name its repository (one of: a, b)"),
    ("[sources.x]\npaths = ['x']\n", "repositories: name at least one repository"),
    (MINIMAL + "\n[sources.db]\ncommand = 'pg_dump x'\nexcludes = ['*.tmp']\n",
     "line 9: sources.db.excludes: only for a paths source (a command's output is one file)"),
])
def test_mistakes_name_line_and_key(tmp_path, text, message) -> None:
    error = error_of(tmp_path, text)
    assert error.startswith(f"{tmp_path / 'strongroom.toml'}, line ") or "line" not in message
    assert message in error, error


def test_unknown_backup_option_of_this_build_is_refused_clearly(tmp_path, monkeypatch) -> None:
    import dataclasses
    from strongroom.jobs import policyfile
    present = {f.name for f in dataclasses.fields(BackupOptions)}
    for key in ("expand_archives", "catalog"):
        text = MINIMAL + f"{key} = true\n"
        if key in present:  # another branch added it: it maps through
            assert load_policy_file(write(tmp_path, text)).sources["chat"].backup[key] is True
        else:
            assert error_of(tmp_path, text).endswith(
                f"line 6: sources.chat.{key}: this strongroom's backup has no {key} option (a newer version "
                f"supports it)")
    # a known key whose BackupOptions field is missing is refused the same way
    monkeypatch.setitem(policyfile.SOURCE_BACKUP_KEYS, "host", "no_such_field")
    assert error_of(tmp_path, MINIMAL + "host = 'x'\n").endswith(
        "line 6: sources.chat.host: this strongroom's backup has no no_such_field option (a newer version "
        "supports it)")


def test_toml_syntax_error_carries_its_position(tmp_path) -> None:
    error = error_of(tmp_path, MINIMAL + 'tags = ["a" "b"]\n')
    assert error == f"{tmp_path / 'strongroom.toml'}: Unclosed array (at line 6, column 13)"


def test_missing_file(tmp_path) -> None:
    with pytest.raises(PolicyFileError, match=r"cannot read policy file .*nope.toml: No such file or directory"):
        load_policy_file(str(tmp_path / "nope.toml"))


def test_key_lines_follow_tables_dotted_and_quoted_keys() -> None:
    text = ('a = 1\n[sources."x.y"]\npaths = [\n  "p = q",\n]\nb.c = 2\ns = """\nz = 3\n"""\n'
            '[[arr]]\nk = 1\n')
    assert key_lines(text) == {("a",): 1, ("sources", "x.y"): 2, ("sources", "x.y", "paths"): 3,
                               ("sources", "x.y", "b", "c"): 6, ("sources", "x.y", "s"): 7, ("arr",): 10,
                               ("arr", "k"): 11}


def test_exclude_files_and_inline_tables(tmp_path) -> None:
    (tmp_path / "excludes.txt").write_text("# caches\n*.cache\n\n/tmp/*\n")
    text = MINIMAL + 'excludes = ["*.tmp"]\nexclude_files = ["excludes.txt"]\n'
    assert load_policy_file(write(tmp_path, text)).sources["chat"].backup["excludes"] == ["*.tmp", "*.cache", "/tmp/*"]
    inline = '[repositories]\nmain = { location = "r", colour = "red" }\n[sources]\nx = { paths = ["x"] }\n'
    assert error_of(tmp_path, inline).endswith("line 2: repositories.main.colour: unknown key (expected one of: "
                                               "location, password_file, password_command, password_env, "
                                               "compression_level, copy_to, s3_endpoint, s3_region, s3_profile, "
                                               "s3_addressing)")


def test_parse_size() -> None:
    assert [parse_size(t) for t in ("4096", "2K", "1.5M", "2GiB", "1T")] == [4096, 2048, 1572864, 2 << 30, 1 << 40]
    with pytest.raises(Exception, match="invalid size"):
        parse_size("lots")
