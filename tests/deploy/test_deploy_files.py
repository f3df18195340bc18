"""The files in deploy/ cannot rot silently: what they name exists in the code, and they parse.

No Docker engine or cluster is needed: the Dockerfile, compose file, Kubernetes manifests and
systemd units are read as text/YAML, and every ``mailops`` invocation in them is parsed by the
real click command tree, every ``MAILOPS_*`` variable is looked up in the settings edge, and
every path is checked against the repository or against what the same files mount.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from schemas.commands import COMMANDS
from workers import constants
from workers.cli.main import cli
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
#: ``--drain-timeout`` the deploy files give ``mailops worker``; grace periods must exceed it.
ENV_SOURCES = (ROOT / "workers" / "settings.py", ROOT / "workers" / "cli" / "environment.py")
SECRETS_DIR = "/run/secrets/mailops"


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file())


def yaml_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(DEPLOY.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict), f"{path}: a YAML document is not a mapping"
            yield path, doc


def k8s_documents(kind: str) -> list[dict[str, Any]]:
    return [doc for path, doc in yaml_documents() if path.parent.name == "kubernetes" and doc.get("kind") == kind]


def compose() -> dict[str, Any]:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def unit_entries(path: Path) -> list[tuple[str, str]]:
    return [
        (key.strip(), value.strip())
        for line in path.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith(("#", ";", "["))
        for key, _, value in [line.partition("=")]
    ]


def mailops_invocations() -> list[tuple[str, list[str]]]:
    """Every ``mailops ...`` command line in deploy/, as (where, arguments after ``mailops``)."""
    found: list[tuple[str, list[str]]] = []
    entrypoint = [json.loads(rest) for word, rest in dockerfile_instructions() if word == "ENTRYPOINT"]
    assert entrypoint == [["mailops"]], "the image's entry point is the mailops CLI"
    for word, rest in dockerfile_instructions():
        if word == "CMD":
            found.append(("Dockerfile CMD", json.loads(rest)))
        if word == "HEALTHCHECK":
            found.append(("Dockerfile HEALTHCHECK", json.loads(rest.partition(" CMD ")[2])[1:]))
    for name, service in compose()["services"].items():
        if service.get("image", "").startswith("mailops") and "command" in service:
            found.append((f"compose {name}", list(service["command"])))  # arguments to ENTRYPOINT mailops
    for deployment in k8s_documents("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            if "mailops" in container["image"]:
                assert "command" not in container, "k8s containers keep the image's ENTRYPOINT"
                found.append((f"k8s {container['name']} args", list(container["args"])))
    # Anything else that runs mailops: health checks and probes in YAML, systemd Exec lines.
    for path, doc in yaml_documents():
        found += [(f"{path.name} {words}", words) for words in _mailops_lists(doc)]
    for unit in sorted(DEPLOY.glob("systemd/*.service")):
        for key, value in unit_entries(unit):
            words = shlex.split(value)
            if key.startswith("Exec") and Path(words[0]).name == "mailops":
                found.append((f"{unit.name} {key}", words[1:]))
    return found


def _mailops_lists(node: object) -> Iterator[list[str]]:
    """Arguments after ``mailops`` in every list of strings that runs it."""
    if isinstance(node, dict):
        for value in node.values():
            yield from _mailops_lists(value)
    elif isinstance(node, list):
        if node and all(isinstance(w, str) for w in node) and "mailops" in node:
            yield node[node.index("mailops") + 1:]
        else:
            for value in node:
                yield from _mailops_lists(value)


def resolve(args: list[str]) -> dict[str, Any]:
    """Parse ``mailops <args>`` with the real command tree, without running any callback.

    Unknown subcommands and options, missing option values and values of the wrong type raise
    :class:`click.UsageError` (or :class:`click.BadParameter`); returns the parsed values.
    """
    command: click.Command = cli
    names = ["mailops"]
    while isinstance(command, click.Group):
        if not args:
            raise click.UsageError(f"{' '.join(names)} needs a subcommand")
        sub = command.get_command(click.Context(command), args[0])
        if sub is None:
            raise click.UsageError(f"{' '.join(names)} has no subcommand {args[0]!r}")
        names.append(args.pop(0))
        command = sub
    ctx = click.Context(command, info_name=" ".join(names))
    values, rest, _order = command.make_parser(ctx).parse_args(list(args))
    if rest:
        raise click.UsageError(f"unexpected arguments {rest}")
    for param in command.params:
        if param.name in values:
            values[param.name] = param.type_cast_value(ctx, values[param.name])
    return values


def test_every_yaml_file_in_deploy_parses_into_mappings() -> None:
    docs = list(yaml_documents())
    kinds = {doc.get("kind") for path, doc in docs if path.parent.name == "kubernetes"}
    assert {"Deployment", "ConfigMap", "Secret", "ScaledObject", "Service"} <= kinds
    assert "services" in compose()


def test_every_mailops_invocation_in_deploy_is_a_real_command_with_real_options() -> None:
    # Given every mailops command line written anywhere in deploy/
    invocations = mailops_invocations()
    # Then the usual ones are among them (so the scan itself did not come back empty) ...
    seen = {" ".join(args[:2]) for _where, args in invocations}
    assert {"worker --check", "serve --host", "sandbox --host", "config check"} <= seen
    # ... and each parses with the real click tree: subcommands and options exist, values fit
    for where, args in invocations:
        try:
            resolve(list(args))
        except click.ClickException as exc:
            pytest.fail(f"{where}: mailops {' '.join(args)}: {exc}")


def test_a_made_up_option_would_be_caught() -> None:
    # Given an invocation with an option the CLI does not have
    # Then the same parser the test above relies on refuses it
    with pytest.raises(click.UsageError):
        resolve(["worker", "--drain-time", "30"])
    with pytest.raises(click.UsageError):
        resolve(["wrker"])
    with pytest.raises(click.BadParameter):
        resolve(["worker", "--threads", "many"])


def test_every_mailops_environment_variable_in_deploy_is_read_by_the_settings_or_named_by_a_backends_file() -> None:
    read_by_code = set()
    for source in ENV_SOURCES:
        read_by_code |= set(re.findall(r'"(MAILOPS_[A-Z0-9_]+)"', source.read_text()))
    named_by_config = set()
    for text in _backends_files().values():
        named_by_config |= set(re.findall(r'_env\s*=\s*"(MAILOPS_[A-Z0-9_]+)"', text))
    assert {"MAILOPS_REDIS_URL", "MAILOPS_REDIS_SENTINELS", "MAILOPS_CONFIG"} <= read_by_code
    for path in deploy_files():
        for name in set(re.findall(r"\bMAILOPS_[A-Z0-9_]+\b", path.read_text())):
            assert name in read_by_code | named_by_config, f"{path.relative_to(ROOT)} names {name}, which nothing reads"


def _backends_files() -> dict[str, str]:
    files = {p.name: p.read_text() for p in DEPLOY.glob("*.toml")}
    for configmap in k8s_documents("ConfigMap"):
        for key, text in configmap["data"].items():
            files[f"configmap {key}"] = text
    return files


@pytest.mark.parametrize("name", sorted(_backends_files()))
def test_each_backends_file_in_deploy_loads_through_the_settings(name: str, tmp_path: Path) -> None:
    # Given the file, with its secret files and variables supplied
    text = _backends_files()[name].replace(SECRETS_DIR, str(tmp_path))
    for file in re.findall(r'_file\s*=\s*"([^"]+)"', text):
        Path(file).write_text(base64.b64encode(b"secret-!" * 8).decode())  # also a valid 64-byte sealing key
    env = {var: "secret" for var in re.findall(r'_env\s*=\s*"([A-Z0-9_]+)"', text)}
    (tmp_path / "mailops.toml").write_text(text)
    # When the settings load it
    settings = Settings.from_env({**env, "MAILOPS_CONFIG": str(tmp_path / "mailops.toml")})
    # Then it names backends, and its producers may only use commands that exist
    assert settings.backends
    for producer in settings.producers.values():
        assert set(producer.commands) <= set(COMMANDS) | {"*"}, producer


def test_every_repository_path_named_in_deploy_exists() -> None:
    copied = [rest.split()[:-1] for word, rest in dockerfile_instructions() if word == "COPY" and "--from" not in rest]
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repository"
    for service in compose()["services"].values():
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("."):
                assert (DEPLOY / host).is_file(), f"compose mounts {host}, which does not exist"
    for path in deploy_files():
        for named in set(re.findall(r"\b((?:deploy|workers|schemas|tests|docs|scripts)/[\w./-]*\w)", path.read_text())):
            assert (ROOT / named).exists(), f"{path.relative_to(ROOT)} names {named}, which does not exist"


def test_the_config_and_secret_paths_the_containers_use_are_mounted() -> None:
    # compose: MAILOPS_CONFIG is a mounted file
    for name, service in compose()["services"].items():
        config = service.get("environment", {}).get("MAILOPS_CONFIG")
        if config:
            targets = [v.split(":")[1] for v in service.get("volumes", [])]
            assert config in targets, f"compose {name}: MAILOPS_CONFIG={config} is not mounted"
    # Kubernetes: MAILOPS_CONFIG is a ConfigMap key under a mount; secret files are Secret keys
    configmaps = {c["metadata"]["name"]: c["data"] for c in k8s_documents("ConfigMap")}
    secrets = {s["metadata"]["name"]: s["stringData"] for s in k8s_documents("Secret")}
    for deployment in k8s_documents("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
            env = {e["name"]: e for e in container["env"]}
            config = Path(env["MAILOPS_CONFIG"]["value"])
            assert configmaps[mounts[str(config.parent)]["configMap"]["name"]][config.name]
            for ref in [e["valueFrom"]["secretKeyRef"] for e in env.values() if "valueFrom" in e]:
                assert ref["key"] in secrets[ref["name"]]
            secret = mounts[SECRETS_DIR]["secret"]["secretName"]
            for text in configmaps.values():
                for file in re.findall(r'_file\s*=\s*"([^"]+)"', "".join(text.values())):
                    assert file.startswith(SECRETS_DIR + "/") and Path(file).name in secrets[secret], file


def drain_timeout(args: list[str]) -> float:
    return float(args[args.index("--drain-timeout") + 1])


def test_every_grace_period_outlasts_the_workers_drain_timeout() -> None:
    for deployment in k8s_documents("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            if container["args"][0] == "worker":
                assert drain_timeout(container["args"]) + 5 <= pod["terminationGracePeriodSeconds"]
    worker = compose()["services"]["worker"]
    assert drain_timeout(worker["command"]) + 5 <= float(worker["stop_grace_period"].rstrip("s"))
    unit = dict(unit_entries(DEPLOY / "systemd" / "mailops-worker.service"))
    assert drain_timeout(shlex.split(unit["ExecStart"])) + 5 <= float(unit["TimeoutStopSec"])
    assert unit["KillMode"] == "mixed" and unit["User"] != "root"


def test_the_image_runs_as_a_non_root_user_with_a_real_liveness_check() -> None:
    instructions = dockerfile_instructions()
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert instructions[0][1].startswith("python:") and "slim" in instructions[0][1]
    health = [rest for word, rest in instructions if word == "HEALTHCHECK"]
    assert len(health) == 1 and json.loads(health[0].partition(" CMD ")[2]) == ["mailops", "worker", "--check"]


def test_keda_scales_on_the_queues_and_the_stream_the_workers_consume() -> None:
    (scaled,) = k8s_documents("ScaledObject")
    (worker,) = [d for d in k8s_documents("Deployment") if d["metadata"]["name"] == scaled["spec"]["scaleTargetRef"]["name"]]
    lists = {t["metadata"]["listName"] for t in scaled["spec"]["triggers"] if t["type"] == "redis"}
    keys = constants.Keys()
    assert lists == {f"{keys.dramatiq_namespace}:{queue}" for queue in constants.QUEUES}
    (stream,) = [t["metadata"] for t in scaled["spec"]["triggers"] if t["type"] == "redis-streams"]
    assert (stream["stream"], stream["consumerGroup"]) == (constants.DEFAULT_COMMANDS_STREAM, constants.INGEST_GROUP)
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"][0] == "worker"
