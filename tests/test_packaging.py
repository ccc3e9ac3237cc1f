"""The package as pip sees it: the wheel's contents and entry point, the locks against the declared ranges,
and the Airflow version guard."""

from __future__ import annotations

import email
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from hitl import compat

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGE_DIR = REPO / "plugins" / "hitl"
HEAVY = {
    "apache-airflow-providers-google",
    "apache-airflow-providers-common-ai",
    "pydantic-ai-slim",
    "litellm",
    "openai",
    "dag-factory",
    "ray",
    "scikit-learn",
}
DEV_TOOLS = {"pytest", "pytest-timeout", "aiosmtpd", "playwright", "ruff", "mypy"}


# --- the wheel ----------------------------------------------------------------------------------------------


def _build_wheel(src: Path, out: Path) -> Path:
    """pip wheel of a copy of the project; without build isolation when this venv can build it (seconds, offline)."""
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(src)]
    if importlib.util.find_spec("setuptools") is not None:
        import setuptools

        # setuptools >= 70.1 builds wheels by itself; older ones need the wheel package.
        own_bdist_wheel = Version(setuptools.__version__) >= Version("70.1")
        if own_bdist_wheel or importlib.util.find_spec("wheel") is not None:
            cmd.insert(4, "--no-build-isolation")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """The wheel built once for this module, from a copy of the sources (the checkout stays free of build/)."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    # hitl_devstack and hitl_plugin.py are copied too, so that leaving them out is the package list's doing.
    shutil.copytree(REPO / "plugins", src / "plugins", ignore=ignore)
    with zipfile.ZipFile(_build_wheel(src, tmp_path_factory.mktemp("wheel"))) as zf:
        yield zf


def _dist_info(zf: zipfile.ZipFile, name: str) -> str:
    (path,) = [n for n in zf.namelist() if re.fullmatch(r"[^/]+\.dist-info/" + re.escape(name), n)]
    return zf.read(path).decode()


@pytest.mark.timeout(300)
def test_wheel_carries_templates_migrations_and_every_data_file(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    templates = sorted(p.name for p in (PACKAGE_DIR / "views" / "templates" / "hitl").glob("*.html"))
    assert templates, "no templates in the checkout?"
    for t in templates:
        assert f"hitl/views/templates/hitl/{t}" in names
    assert "hitl/store/migrations/env.py" in names
    versions = sorted(p.name for p in (PACKAGE_DIR / "store" / "migrations" / "versions").glob("*.py"))
    assert versions
    for v in versions:
        assert f"hitl/store/migrations/versions/{v}" in names
    # Whatever else lives in the package (static files, a template added later) ships too.
    for path in PACKAGE_DIR.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            assert f"hitl/{path.relative_to(PACKAGE_DIR).as_posix()}" in names, path


@pytest.mark.timeout(300)
def test_wheel_holds_only_the_hitl_package(wheel: zipfile.ZipFile) -> None:
    tops = {n.split("/", 1)[0] for n in wheel.namelist() if ".dist-info/" not in n}
    assert tops == {"hitl"}
    assert not [n for n in wheel.namelist() if "hitl_devstack" in n or "hitl_plugin" in n]
    assert _dist_info(wheel, "top_level.txt").split() == ["hitl"]


@pytest.mark.timeout(300)
def test_wheel_registers_the_airflow_plugin_entry_point(wheel: zipfile.ZipFile) -> None:
    text = _dist_info(wheel, "entry_points.txt")
    section = text.split("[airflow.plugins]", 1)[1].split("[", 1)[0]
    entries = dict(line.replace(" ", "").split("=", 1) for line in section.splitlines() if line.strip())
    assert entries == {"hitl": "hitl.plugin:HitlPlugin"}

    from airflow.plugins_manager import AirflowPlugin

    plugin = EntryPoint(name="hitl", value=entries["hitl"], group="airflow.plugins").load()
    assert issubclass(plugin, AirflowPlugin)
    assert plugin.name == "hitl"


@pytest.mark.timeout(300)
def test_wheel_metadata_declares_ranges_and_extras_not_dev_tools(wheel: zipfile.ZipFile) -> None:
    meta = email.message_from_string(_dist_info(wheel, "METADATA"))
    requires = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
    runtime = {canonicalize_name(r.name): r for r in requires if r.marker is None}
    assert runtime["apache-airflow"].specifier == compat.SUPPORTED_AIRFLOW  # type: ignore[index]
    for name in ("apache-airflow-providers-fab", "apache-airflow-providers-standard", "apache-airflow-providers-smtp"):
        assert name in runtime
        assert any(s.operator == ">=" for s in runtime[name].specifier), name  # type: ignore[index]
    assert set(meta.get_all("Provides-Extra") or []) >= {"google", "slack", "postgres"}
    assert not (set(runtime) & (HEAVY | DEV_TOOLS))
    by_extra = {
        canonicalize_name(r.name) for r in requires if r.marker is not None and r.marker.evaluate({"extra": "google"})
    }
    assert "apache-airflow-providers-google" in by_extra


# --- the locks ----------------------------------------------------------------------------------------------


def _pins(lock: str) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for raw in (REPO / lock).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"{lock}: {line} is not pinned"
        pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def _group(name: str) -> list[str]:
    out: list[str] = []
    for item in PYPROJECT["dependency-groups"][name]:
        out.extend(_group(item["include-group"]) if isinstance(item, dict) else [item])
    return out


def _declared(extras: tuple[str, ...] = (), groups: tuple[str, ...] = ()) -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    for group in groups:
        reqs += _group(group)
    env = {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux", "extra": ""}
    return [r for r in map(Requirement, reqs) if r.marker is None or r.marker.evaluate(env)]


LOCKS = {
    # lock file: what `make lock` makes it from
    "requirements.txt": (("google", "ai", "slack", "postgres", "statsd"), ("dev",)),
    "requirements-demo.txt": ((), ()),
    "requirements-bench.txt": ((), ("bench",)),
}


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_pins_satisfy_the_declared_ranges(lock: str) -> None:
    pins = _pins(lock)
    extras, groups = LOCKS[lock]
    problems = []
    for req in _declared(extras, groups):
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req} is not in {lock}")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{lock} pins {name}=={pins[name]}, outside {req}")
    assert not problems, "run `make lock`:\n" + "\n".join(problems)
    assert compat.is_supported(str(pins["apache-airflow"]))


def test_locks_agree_and_the_demo_install_stays_light() -> None:
    full, demo, bench = _pins("requirements.txt"), _pins("requirements-demo.txt"), _pins("requirements-bench.txt")
    for name, version in [*demo.items(), *bench.items()]:
        assert full.get(name, version) == version, f"{name}: the locks disagree"
    assert demo.keys() <= full.keys()
    assert not (demo.keys() & (HEAVY | DEV_TOOLS))
    assert "dag-factory" in bench
    assert not (bench.keys() & ((HEAVY - {"dag-factory"}) | DEV_TOOLS))
    # The tests' install keeps what the Gemini, Slack and PostgreSQL tests need, and no benchmark tools.
    needed = {
        "apache-airflow-providers-google",
        "apache-airflow-providers-common-ai",
        "openai",
        "asyncpg",
        "pytest",
        "ruff",
    }
    assert needed <= set(full)
    assert "dag-factory" not in full


# --- the Airflow version guard ------------------------------------------------------------------------------


def test_pyproject_and_the_guard_name_the_same_airflow_range() -> None:
    (airflow,) = [r for r in map(Requirement, PYPROJECT["project"]["dependencies"]) if r.name == "apache-airflow"]
    assert airflow.specifier == compat.SUPPORTED_AIRFLOW


@pytest.mark.parametrize("version", ["3.3.0", "3.3.2", "3.3.0rc1", "3.3.10", "3.3.2+astro.1", "3.3.3.dev0"])
def test_guard_accepts_the_3_3_line(version: str) -> None:
    compat.check_airflow_version(version)


@pytest.mark.parametrize("version", ["3.2.9", "3.4.0", "3.4.0.dev0", "3.4.0rc1", "4.0.0", "2.11.0", "not-a-version"])
def test_guard_refuses_any_other_with_a_clear_message(version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(compat.OVERRIDE_ENV, raising=False)
    with pytest.raises(ImportError, match=re.escape(f"airflow-hitl supports Airflow 3.3.x; found {version}.")):
        compat.check_airflow_version(version)


def test_guard_checks_the_running_airflow(monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow

    monkeypatch.delenv(compat.OVERRIDE_ENV, raising=False)
    compat.check_airflow_version()  # the installed one passes
    monkeypatch.setattr(airflow, "__version__", "3.4.1")
    with pytest.raises(compat.UnsupportedAirflowVersion, match=re.escape("found 3.4.1")):
        compat.check_airflow_version()


def test_override_turns_the_refusal_into_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(compat.OVERRIDE_ENV, "1")
    with caplog.at_level(logging.WARNING, logger="hitl.compat"):
        compat.check_airflow_version("3.4.0")
    assert "supports Airflow 3.3.x; found 3.4.0" in caplog.text


@pytest.mark.timeout(120)
def test_plugin_module_refuses_to_load_on_another_airflow() -> None:
    """What Airflow's plugin manager sees when it imports the entry point: an ImportError naming both versions."""
    code = "import airflow; airflow.__version__ = '3.4.0'; import hitl.plugin"
    env = {k: v for k, v in os.environ.items() if k != compat.OVERRIDE_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "plugins"), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0
    assert "UnsupportedAirflowVersion: airflow-hitl supports Airflow 3.3.x; found 3.4.0." in proc.stderr


@pytest.mark.timeout(180)
def test_airflow_registers_the_plugin_once_from_the_repo_plugins_folder(tmp_path: Path) -> None:
    """Airflow's plugin manager, as the dev stack runs it: the installed entry point and plugins/ together."""
    from importlib.metadata import entry_points

    if not [ep for ep in entry_points(group="airflow.plugins") if ep.name == "hitl"]:
        pytest.skip("the airflow.plugins entry point is not installed in this venv yet: run `make venv`")
    code = (
        "import json; from airflow import plugins_manager as pm; plugins, errors = pm._get_plugins(); "
        "print(json.dumps([[p.name for p in plugins if p.name == 'hitl'], errors]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(
        AIRFLOW_HOME=str(tmp_path),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    names, errors = json.loads(proc.stdout.strip().splitlines()[-1])
    assert names == ["hitl"]
    hitl_errors = {k: v for k, v in errors.items() if "hitl" in k or "hitl" in v}
    assert hitl_errors == {}  # e.g. "Plugin 'hitl' already registered" if plugins/hitl_plugin.py were loaded too
