"""The deployment files in deploy/ run real ``samenloop`` commands with valid settings.

No container engine, cluster or systemd runs here, so the files are read instead. Every
command that a compose service, a Kubernetes container (init containers and Jobs
included), the systemd unit or a code block of deploy/README.md runs is

* a ``samenloop`` command: the image's ENTRYPOINT with arguments, or ``samenloop ...``;
* accepted by the real parser (``exchange.cli.build_parser``);
* given settings that load: the ``--config`` file (or ``SAMENLOOP_CONFIG``) must be
  provided by a ConfigMap, a compose config or a mount, and is loaded with the real
  settings class together with the container's ``SAMENLOOP_*`` variables and its flags;
* given every file its settings name (certificates, keys, the export, the state database)
  by a mount, at an absolute path;
* run as a server beyond loopback only with every TLS setting, and with ``--ops-listen``
  for the probes.

Health checks (compose ``healthcheck``, PostgreSQL's own image) are not commands of ours
and are only checked for the endpoint they call.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import ipaddress
import json
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from agent import AdminSettings, AgentSettings, AuditSettings, CoordinatorSettings
from exchange import config, tls
from exchange.cli import build_parser
from exchange.errors import ConfigError
from hub import HubSettings, KeyServiceSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
DOCKERFILE = DEPLOY / "Dockerfile"
README = DEPLOY / "README.md"
SECRET_TEMPLATES = KUBERNETES / "secrets.template.yaml"
KUSTOMIZATION = KUBERNETES / "kustomization.yaml"

SETTINGS: dict[str, type[Any]] = {
    "hub": HubSettings, "keyservice": KeyServiceSettings, "agent": AgentSettings,
    "admin": AdminSettings, "coordinator": CoordinatorSettings, "audit": AuditSettings,
}
SERVER_TLS = ("tls_cert", "tls_key", "tls_client_ca", "tls_crl")
CLIENT_TLS = ("tls_ca", "tls_cert", "tls_key")
IMAGE = "samenloop"
# Images compose may run besides ours; Kubernetes runs only ours (PostgreSQL is external).
COMPOSE_OTHER_IMAGES = frozenset({"postgres"})
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"})


# -- what a command sees ----------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """What a container sees at ``target``: files with known content (a ConfigMap, a
    Secret, a compose config; ``None`` where the content is not ours to know), or, with
    ``files=None``, a volume whose files are written at run time."""

    target: PurePosixPath
    files: Mapping[str, str | None] | None = None
    writable: bool = False


@dataclass
class Command:
    """One ``samenloop`` invocation found in a deployment file."""

    where: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    # False for commands an operator runs on their own machine (deploy/README.md).
    in_container: bool = True
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.where}: `samenloop {shlex.join(self.argv)}`"

    def locate(self, path: PurePosixPath) -> tuple[Mount, str] | None:
        candidates = [m for m in self.mounts if path == m.target or m.target in path.parents]
        if not candidates:
            return None
        mount = max(candidates, key=lambda m: len(m.target.parts))
        return mount, "" if path == mount.target else str(path.relative_to(mount.target))


def require_file(cmd: Command, path: str | Path, what: str) -> str | None:
    """The content of a file the command reads (None: written at run time, or unknown)."""
    p = PurePosixPath(path)
    assert p.is_absolute(), f"{cmd}: {what} {p} is a relative path"
    found = cmd.locate(p)
    assert found is not None, f"{cmd}: {what} {p} is on no mounted volume"
    mount, rel = found
    if mount.files is None:
        return None
    assert rel in mount.files, (
        f"{cmd}: {what} {p} is not provided: {mount.target} holds {sorted(mount.files)}")
    return mount.files[rel]


def require_writable_dir(cmd: Command, path: str | Path, what: str) -> None:
    p = PurePosixPath(path)
    assert p.is_absolute(), f"{cmd}: {what} {p} is a relative path"
    found = cmd.locate(p)
    assert found is not None and found[0].files is None and found[0].writable, (
        f"{cmd}: {what} {p} is not on a writable volume")


# -- the parser ---------------------------------------------------------------------------


@cache
def parser() -> argparse.ArgumentParser:
    return build_parser()


def parser_chain(argv: Sequence[str]) -> list[argparse.ArgumentParser]:
    """The parser and the subcommand parsers that argv names, outermost first."""
    chain = [parser()]
    words = list(argv)
    while True:
        subs = [a for a in chain[-1]._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return chain
        choices: dict[str, argparse.ArgumentParser] = subs[0].choices
        index = next((i for i, w in enumerate(words) if w in choices), None)
        if index is None:
            return chain
        chain.append(choices[words[index]])
        words = words[index + 1:]


def options(p: argparse.ArgumentParser) -> set[str]:
    return {s for a in p._actions for s in a.option_strings}


def leaf_options(argv: Sequence[str]) -> set[str]:
    """The options of the (sub)command that argv names."""
    return options(parser_chain(argv)[-1])


def flag_value(argv: Sequence[str], flag: str) -> str | None:
    for i, word in enumerate(argv):
        if word == flag and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    return None


def parse(cmd: Command) -> argparse.Namespace:
    """argv parsed by the real parser; fails the test, naming the command, otherwise."""
    argv = list(cmd.argv)
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            args = parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{cmd} is not a valid samenloop command (exit {exc.code}): "
                    f"{errors.getvalue().strip()}", pytrace=False)
    # argparse also takes abbreviations (--day for --days); the deployment files spell
    # options out, so that a new option can never make one ambiguous.
    known = set().union(*(options(p) for p in parser_chain(argv)))
    unknown = [w for w in argv if w.startswith("-") and w.split("=", 1)[0] not in known]
    if unknown:
        pytest.fail(f"{cmd} is not a valid samenloop command: {unknown[0]} is not an option "
                    "as the parser spells it", pytrace=False)
    return args


def settings(cmd: Command, args: argparse.Namespace, tmp_path: Path) -> Any:
    """The settings the command runs with, as the CLI builds them: file, then
    SAMENLOOP_* variables, then flags."""
    cls = SETTINGS.get(args.role)
    if cls is None:
        return None
    env = {k: v for k, v in cmd.env.items() if k != config.CONFIG_ENV}
    given = args.config or cmd.env.get(config.CONFIG_ENV)
    path = None
    if given is not None:
        content = require_file(cmd, given, "the settings file") if cmd.in_container else None
        if cmd.in_container:
            assert content is not None, (
                f"{cmd}: the settings file {given} must come from a ConfigMap or a compose "
                "config, so that it can be checked")
            path = tmp_path / "samenloop.toml"
            path.write_text(content, encoding="utf-8")
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                 if hasattr(args, f.name)}
    try:
        return config.load(cls, path=path, env=env, overrides=overrides)
    except ConfigError as exc:
        pytest.fail(f"{cmd}: its settings do not load: {exc}")


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sqlite_path(url: str) -> str | None:
    return url[len("sqlite:///"):] if url.startswith("sqlite:///") else None


# -- compose ------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def image_name(image: str) -> str:
    return image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]


def words(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def compose_env(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def compose_mounts(service: Mapping[str, Any]) -> list[Mount]:
    top = compose()
    mounts: list[Mount] = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            read_only = "ro" in mode
        else:
            source, target = volume.get("source", ""), volume["target"]
            read_only = bool(volume.get("read_only"))
        if source.startswith((".", "/")):
            host = (DEPLOY / source).resolve()
            assert host.exists(), f"compose bind mount {source} does not exist"
            files: dict[str, str | None] = (
                {"": None} if host.is_file()
                else {str(p.relative_to(host)): None for p in host.rglob("*") if p.is_file()})
            mounts.append(Mount(PurePosixPath(target), files, writable=not read_only))
        else:
            assert source in (top.get("volumes") or {}), f"unknown compose volume {source}"
            mounts.append(Mount(PurePosixPath(target), None, writable=not read_only))
    for kind, default_dir in (("configs", "/"), ("secrets", "/run/secrets/")):
        for ref in service.get(kind) or []:
            name = ref if isinstance(ref, str) else ref["source"]
            target = (default_dir + name) if isinstance(ref, str) else ref.get(
                "target", default_dir + name)
            definition = (top.get(kind) or {}).get(name)
            assert definition is not None, f"unknown compose {kind[:-1]} {name}"
            content = definition.get("content")
            if content is None and "file" in definition:
                content = (DEPLOY / definition["file"]).read_text(encoding="utf-8")
            mounts.append(Mount(PurePosixPath(target), {"": content}))
    return mounts


def is_ours(service: Mapping[str, Any]) -> bool:
    return image_name(str(service.get("image", ""))) == IMAGE


def compose_argv(name: str, service: Mapping[str, Any]) -> list[str]:
    entrypoint = words(service.get("entrypoint"))
    assert entrypoint in ([], [IMAGE]), (
        f"compose service {name} replaces the samenloop entrypoint with {entrypoint}")
    argv = words(service.get("command"))
    assert argv, f"compose service {name} runs no explicit samenloop command"
    return argv


def compose_commands() -> Iterator[Command]:
    for name, service in compose()["services"].items():
        if not is_ours(service):
            assert image_name(str(service.get("image", ""))) in COMPOSE_OTHER_IMAGES, (
                f"compose service {name} runs an unexpected image {service.get('image')}")
            continue
        yield Command(f"compose.yaml: service {name}", compose_argv(name, service),
                      compose_env(service), compose_mounts(service), source="compose",
                      extra={"service": name})


# -- Kubernetes ---------------------------------------------------------------------------


@cache
def kubernetes() -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                docs.append((path.name, doc))
    return docs


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in kubernetes() if doc.get("kind") == kind}


def object_files(doc: Mapping[str, Any]) -> dict[str, str | None]:
    data = {**(doc.get("data") or {}), **(doc.get("stringData") or {})}
    return {str(k): str(v) for k, v in data.items()}


def pod_spec(doc: Mapping[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    result: dict[str, Any] = spec["template"]["spec"]
    return result


def pod_labels(doc: Mapping[str, Any]) -> dict[str, str]:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    labels: dict[str, str] = spec["template"]["metadata"].get("labels", {})
    return labels


def volume_mount(where: str, vm: Mapping[str, Any], volume: Mapping[str, Any]) -> Mount:
    target = PurePosixPath(vm["mountPath"])
    read_only = bool(vm.get("readOnly"))
    for kind, key in (("configMap", "name"), ("secret", "secretName")):
        if kind in volume:
            ref = volume[kind][key]
            source = objects("ConfigMap" if kind == "configMap" else "Secret").get(ref)
            assert source is not None, f"{where}: no {kind} named {ref} in deploy/kubernetes"
            files = object_files(source)
            if volume[kind].get("items"):
                for item in volume[kind]["items"]:
                    assert item["key"] in files, f"{where}: {ref} has no key {item['key']}"
                files = {item["path"]: files[item["key"]] for item in volume[kind]["items"]}
            if vm.get("subPath"):
                assert vm["subPath"] in files, f"{where}: {ref} has no {vm['subPath']}"
                files = {"": files[vm["subPath"]]}
            return Mount(target, files)
    assert "emptyDir" in volume or "persistentVolumeClaim" in volume, (
        f"{where}: unsupported volume {volume['name']}")
    return Mount(target, None, writable=not read_only)


def container_env(where: str, container: Mapping[str, Any]) -> dict[str, str]:
    assert "envFrom" not in container, f"{where}: envFrom cannot be checked; name each variable"
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"].get("secretKeyRef") or item["valueFrom"].get("configMapKeyRef")
        assert ref is not None, f"{where}: {item['name']} comes from an unsupported source"
        kind = "Secret" if "secretKeyRef" in item["valueFrom"] else "ConfigMap"
        source = objects(kind).get(ref["name"])
        assert source is not None, f"{where}: no {kind} named {ref['name']}"
        assert ref["key"] in object_files(source), f"{where}: {ref['name']} has no {ref['key']}"
        env[item["name"]] = f"<{kind} {ref['name']}/{ref['key']}>"
    return env


def kubernetes_commands() -> Iterator[Command]:
    for filename, doc in kubernetes():
        if doc.get("kind") not in WORKLOAD_KINDS:
            continue
        spec = pod_spec(doc)
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
            where = f"kubernetes/{filename}: {doc['kind']} {doc['metadata']['name']}, " \
                    f"container {container['name']}"
            assert image_name(container["image"]) == IMAGE, (
                f"{where} runs {container['image']}, not the samenloop image")
            command = words(container.get("command"))
            assert command in ([], [IMAGE]), f"{where} replaces the entrypoint with {command}"
            argv = words(container.get("args"))
            assert argv, f"{where} runs no explicit samenloop command"
            mounts = [volume_mount(where, vm, volumes[vm["name"]])
                      for vm in container.get("volumeMounts") or []]
            yield Command(where, argv, container_env(where, container), mounts,
                          source="kubernetes", extra={"doc": doc, "container": container})


# -- systemd ------------------------------------------------------------------------------


def unit_file(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit: section -> key -> values (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    lines = re.sub(r"\\\n\s*", " ", path.read_text(encoding="utf-8")).splitlines()
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{path.name}: {line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not KEY=VALUE"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def specifiers(value: str, unit: str) -> str:
    table = {"%%": "%", "%d": f"/run/credentials/{unit}", "%S": "/var/lib", "%n": unit}
    out = re.sub(r"%.", lambda m: table.get(m.group(), m.group()), value)
    unknown = re.findall(r"%.", value.replace("%%", ""))
    assert all(s in table for s in unknown), f"{unit}: unhandled specifier in {value!r}"
    return out


def systemd_commands() -> Iterator[Command]:
    for path in sorted(SYSTEMD.glob("*.service")):
        service = unit_file(path).get("Service", {})
        env: dict[str, str] = {}
        for line in service.get("Environment", []):
            for item in shlex.split(line):
                key, _, value = item.partition("=")
                env[key] = value
        mounts = [Mount(PurePosixPath(f"/run/credentials/{path.name}"), {
            v.split(":", 1)[0]: None
            for v in service.get("LoadCredential", []) + service.get("SetCredential", [])})]
        mounts += [Mount(PurePosixPath("/var/lib") / d, None, writable=True)
                   for line in service.get("StateDirectory", []) for d in line.split()]
        mounts += [Mount(PurePosixPath(p.lstrip("-")), None)
                   for line in service.get("ReadOnlyPaths", []) for p in line.split()]
        for line in service.get("ExecStart", []):
            argv = shlex.split(specifiers(line, path.name))
            program = argv[0].lstrip("-@:+!")
            where = f"systemd/{path.name}: ExecStart"
            assert program.startswith("/"), f"{where}: {program} is not an absolute path"
            assert PurePosixPath(program).name == IMAGE, f"{where} runs {program}"
            yield Command(where, argv[1:], env, mounts, source="systemd",
                          extra={"unit": service})


# -- deploy/README.md ---------------------------------------------------------------------


def readme_commands() -> Iterator[Command]:
    text = README.read_text(encoding="utf-8")
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            argv = shlex.split(line, comments=True)
            where = f"deploy/README.md: {line.split('#')[0].strip()}"
            if argv[:1] == [IMAGE]:
                yield Command(where, argv[1:], in_container=False, source="readme")
            elif argv[:3] == ["docker", "compose", "run"]:
                rest = argv[3:]
                assert "--entrypoint" not in rest, f"{where}: replaces the entrypoint"
                flags = rest[:next(i for i, w in enumerate(rest) if not w.startswith("-"))]
                assert set(flags) <= {"--rm", "-T", "--no-deps"}, f"{where}: {flags}"
                name, *args = rest[len(flags):]
                service = compose()["services"].get(name)
                assert service is not None and is_ours(service), f"{where}: no service {name}"
                yield Command(where, args or compose_argv(name, service), compose_env(service),
                              compose_mounts(service), source="compose")


ALL_COMMANDS: list[Command] = [
    *compose_commands(), *kubernetes_commands(), *systemd_commands(), *readme_commands()]


def run_by(commands: Sequence[Command], *words_: str) -> list[Command]:
    """The commands whose role and subcommand are ``words_`` (e.g. "hub", "serve")."""
    return [c for c in commands if (args := parse(c)).role == words_[0]
            and getattr(args, "command", None) == words_[1]]


# -- the tests ----------------------------------------------------------------------------


def test_every_deployment_file_is_found() -> None:
    sources = {c.source for c in ALL_COMMANDS}
    assert sources == {"compose", "kubernetes", "systemd", "readme"}
    assert len(list(KUBERNETES.glob("*.yaml"))) >= 5
    for name, doc in kubernetes():
        if doc.get("kind") == "Kustomization":
            continue
        assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{name}: not a manifest"
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "samenloop", (
                f"{name}: {doc['kind']} {doc['metadata'].get('name')} is not in samenloop")


@pytest.mark.parametrize("cmd", ALL_COMMANDS, ids=lambda c: c.where)
def test_command(cmd: Command, tmp_path: Path) -> None:
    args = parse(cmd)
    current = settings(cmd, args, tmp_path)
    command = getattr(args, "command", None)
    if args.role in ("hub", "keyservice") and command == "serve":
        host = current.listen.rsplit(":", 1)[0]
        if not is_loopback(host):
            missing = [name for name in SERVER_TLS if getattr(current, name) is None]
            assert not missing, f"{cmd} listens on {current.listen} without {missing}"
            assert current.server_tls() is not None
        ops = flag_value(cmd.argv, "--ops-listen") or getattr(current, "ops_listen", "")
        assert ops, f"{cmd}: no --ops-listen, so no probe and no metrics"
    if not cmd.in_container:
        return
    if isinstance(current, tls.TlsClientSettings):
        missing = [name for name in CLIENT_TLS if getattr(current, name) is None]
        assert not missing, f"{cmd}: the servers require mutual TLS, but {missing} is unset"
    if args.role == "hub":
        assert current.database_url.startswith("postgresql"), (
            f"{cmd}: replicas share one PostgreSQL database, not {current.database_url}")
        assert not current.migrate, f"{cmd}: migrations run once, not in every replica"
        query = parse_qs(urlsplit(current.database_url).query)
        for cert in query.get("sslrootcert", []):
            require_file(cmd, cert, "the database's CA certificate")
    if args.role == "pki":
        require_writable_dir(cmd, args.dir, "the CA directory")
    elif (args.role, command) == ("keyservice", "keygen"):
        require_writable_dir(cmd, Path(current.key_file).parent, "the new OPRF key's directory")
    elif (args.role, command) != ("hub", "migrate") and current is not None:
        for f in dataclasses.fields(current):
            value = getattr(current, f.name)
            if isinstance(value, Path):
                require_file(cmd, value, f.name)
    if (args.role, command) == ("hub", "serve"):
        # Given (a Secret), or created on the first start in a volume every replica shares.
        found = cmd.locate(PurePosixPath(current.checkpoint_key))
        assert found is not None and (found[0].files is not None or found[0].writable), (
            f"{cmd}: the checkpoint key is neither provided nor on a writable volume")
    if args.role == "agent":
        if getattr(args, "input", None):
            require_file(cmd, args.input, "the export")
        database = sqlite_path(current.state_database)
        if database is not None:
            require_writable_dir(cmd, Path(database).parent, "the state database's directory")


def test_settings_files_load_with_the_real_settings(tmp_path: Path) -> None:
    files = {f"kubernetes ConfigMap {name}: {key}": text
             for name, doc in objects("ConfigMap").items()
             for key, text in object_files(doc).items() if key.endswith(".toml")}
    files.update({f"compose config {name}": c["content"]
                  for name, c in (compose().get("configs") or {}).items() if "content" in c})
    assert len(files) >= 2
    for where, text in files.items():
        assert text is not None
        path = tmp_path / "settings.toml"
        path.write_text(text, encoding="utf-8")
        sections = tomllib.loads(text)
        assert sections, f"{where}: empty"
        for section in sections:
            assert section in SETTINGS, f"{where}: unknown section [{section}]"
            try:
                config.load(SETTINGS[section], path=path, env={})
            except ConfigError as exc:
                pytest.fail(f"{where}: {exc}")


def test_dockerfile_runs_samenloop_as_non_root() -> None:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith("#")]
    instructions = [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]
    stages = [i for i, (op, _) in enumerate(instructions) if op == "FROM"]
    assert stages, "no FROM"
    assert all(instructions[i][1].split()[0] == "python:3.11-slim" for i in stages)
    final = instructions[stages[-1]:]
    values = dict(final)
    assert json.loads(values["ENTRYPOINT"]) == [IMAGE]
    user = values.get("USER", "root").split(":")[0]
    assert user not in ("root", "0"), "the image must not run as root"
    cmd = json.loads(values["CMD"])
    with pytest.raises(SystemExit) as exited, contextlib.redirect_stdout(io.StringIO()):
        parser().parse_args(cmd)
    assert cmd == ["--help"] and exited.value.code == 0
    copied = {src.rstrip("/") for op, value in instructions if op == "COPY"
              and not value.startswith("--") for src in value.split()[:-1]}
    for src in copied:
        assert (ROOT / src).exists(), f"the Dockerfile copies {src}, which does not exist"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"][
        "include"]}
    assert packages | {"pyproject.toml", "README.md", "constraints.txt"} <= copied


def test_compose_runs_two_hubs_after_one_migration() -> None:
    services = compose()["services"]
    compose_cmds = [c for c in ALL_COMMANDS if c.where.startswith("compose.yaml")]
    hubs = run_by(compose_cmds, "hub", "serve")
    migrations = run_by(compose_cmds, "hub", "migrate")
    assert len(hubs) >= 2, "the hub runs as two or more replicas"
    assert len(migrations) == 1, "the schema is migrated once, by one one-shot service"
    migrate = migrations[0].extra["service"]
    assert services[migrate].get("restart") == "no"
    for hub in hubs:
        service = services[hub.extra["service"]]
        depends = service.get("depends_on") or {}
        assert depends.get(migrate, {}).get("condition") == "service_completed_successfully", (
            f"{hub.where} must start after {migrate} succeeded")
    for server in [*hubs, *run_by(compose_cmds, "keyservice", "serve")]:
        ops = flag_value(server.argv, "--ops-listen")
        assert ops is not None
        check = " ".join(words(services[server.extra["service"]]["healthcheck"]["test"]))
        assert f":{ops.rsplit(':', 1)[1]}/readyz" in check, f"{server.where}: health check"


def test_kubernetes_runs_two_ready_hubs_after_one_migration() -> None:
    kube_cmds = [c for c in ALL_COMMANDS if c.source == "kubernetes"]
    hubs = run_by(kube_cmds, "hub", "serve")
    assert hubs, "no hub Deployment"
    for hub in hubs:
        assert hub.extra["doc"]["kind"] == "Deployment"
        assert hub.extra["doc"]["spec"]["replicas"] >= 2, f"{hub.where}: fewer than 2 replicas"
    migrations = run_by(kube_cmds, "hub", "migrate")
    assert [m.extra["doc"]["kind"] for m in migrations] == ["Job"], (
        "the schema is migrated by one Job, not by the replicas or their init containers")
    for server in [*hubs, *run_by(kube_cmds, "keyservice", "serve")]:
        ops = flag_value(server.argv, "--ops-listen")
        assert ops is not None
        port = int(ops.rsplit(":", 1)[1])
        container, doc = server.extra["container"], server.extra["doc"]
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = (container.get(probe) or {}).get("httpGet")
            assert get is not None, f"{server.where}: no {probe}"
            assert get["path"] == path, f"{server.where}: {probe} on {get['path']}"
            assert ports.get(get["port"], get["port"]) == port, f"{server.where}: {probe} port"
        notes = doc["spec"]["template"]["metadata"].get("annotations", {})
        assert notes.get("prometheus.io/scrape") == "true"
        assert notes.get("prometheus.io/port") == str(port)
        assert notes.get("prometheus.io/path") == "/metrics"


def test_hub_replicas_and_migration_share_one_database(tmp_path: Path) -> None:
    for source in ("compose", "kubernetes"):
        commands = [c for c in ALL_COMMANDS if c.source == source]
        urls = {settings(c, parse(c), tmp_path).database_url
                for c in run_by(commands, "hub", "serve") + run_by(commands, "hub", "migrate")}
        assert len(urls) == 1, f"{source}: the hubs and the migration use {urls}"


def test_kubernetes_services_select_their_pods() -> None:
    workloads = [doc for _, doc in kubernetes() if doc.get("kind") in WORKLOAD_KINDS]
    selecting = [*objects("Service").values(), *objects("PodDisruptionBudget").values()]
    assert selecting
    for obj in selecting:
        selector = obj["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        matched = [w for w in workloads if selector.items() <= pod_labels(w).items()]
        name = f"{obj['kind']} {obj['metadata']['name']}"
        assert len(matched) == 1, f"{name} selects {len(matched)} workloads"
        if obj["kind"] != "Service":
            continue
        names = {p.get("name") for c in pod_spec(matched[0])["containers"]
                 for p in c.get("ports", [])}
        for port in obj["spec"]["ports"]:
            assert port["targetPort"] in names, f"{name}: no container port {port['targetPort']}"
    for deployment in objects("Deployment").values():
        labels = deployment["spec"]["selector"]["matchLabels"]
        assert labels.items() <= pod_labels(deployment).items()


def test_secret_templates_are_placeholders_and_never_applied() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))
    manifests = {p.name for p in KUBERNETES.glob("*.yaml")}
    assert set(kustomization["resources"]) == manifests - {
        KUSTOMIZATION.name, SECRET_TEMPLATES.name}
    templates = [doc for doc in yaml.safe_load_all(SECRET_TEMPLATES.read_text(encoding="utf-8"))
                 if doc]
    assert templates
    for doc in templates:
        for key, value in object_files(doc).items():
            assert str(value).startswith("REPLACE"), (
                f"{doc['kind']} {doc['metadata']['name']}/{key} must be a REPLACE placeholder")
    for name, doc in kubernetes():
        if doc.get("kind") == "Secret":
            assert name == SECRET_TEMPLATES.name, f"{name}: Secrets belong in the templates"


def test_systemd_agent_is_a_hardened_timer_driven_one_shot() -> None:
    services = sorted(SYSTEMD.glob("*.service"))
    assert [p.name for p in services] == ["samenloop-agent.service"]
    unit = unit_file(services[0])["Service"]

    def one(key: str) -> str:
        assert key in unit, f"{services[0].name}: no {key}="
        return unit[key][-1]

    assert one("Type") == "oneshot"
    assert one("DynamicUser") == "yes" or one("User") not in ("", "root", "0")
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                       ("PrivateDevices", "yes"), ("CapabilityBoundingSet", "")):
        assert one(key) == value, f"{services[0].name}: {key}={value} expected"
    assert one("StateDirectory") and one("ReadOnlyPaths")
    agents = [c for c in ALL_COMMANDS if c.source == "systemd"]
    assert [parse(c).command for c in agents] == ["submit"]
    timers = sorted(SYSTEMD.glob("*.timer"))
    assert [p.name for p in timers] == ["samenloop-agent.timer"]
    timer = unit_file(timers[0])
    assert timer["Timer"]["OnCalendar"] and timer["Timer"].get("Persistent") == ["true"]
    assert timer["Timer"].get("Unit", [services[0].name]) == [services[0].name]
    assert timer["Install"]["WantedBy"] == ["timers.target"]
