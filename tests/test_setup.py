"""The environment files agree with each other, so both set-up routes install the same course."""
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.setup


def _name(req):
    return re.split(r"[=<>!~\[ ]", req, maxsplit=1)[0].lower().replace("_", "-")


def pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["test"]
    pins = {}
    for req in reqs:
        assert "==" in req, f"pyproject.toml: {req!r} is not pinned with =="
        name, version = req.split("==")
        pins[_name(name)] = version
    return pins


def environment_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for req in dep["pip"]:
                if "==" in req:
                    name, version = req.split("==")
                    pins[_name(name)] = version
        else:
            name, _, version = dep.partition("=")
            pins[_name(name)] = version
    return env, pins


def test_every_pyproject_pin_appears_in_environment_yml_with_the_same_version():
    _, env_pins = environment_pins()
    for name, version in pyproject_pins().items():
        assert name in env_pins, f"environment.yml does not list {name} (pyproject pins {version})"
        assert env_pins[name] == version, f"environment.yml has {name} {env_pins[name]}, pyproject {version}"


def test_environment_yml_installs_the_course_package_and_python_311():
    env, pins = environment_pins()
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section, "environment.yml must install the course itself (-e .)"
    assert pins["python"] == "3.11"


def test_lock_file_agrees_with_pyproject_pins():
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            lock[_name(name)] = version
    for name, version in pyproject_pins().items():
        if name == "torch":  # installed from the local CPU wheel; pyproject pins it
            continue
        assert lock.get(name) == version, f"requirements.lock has {name} {lock.get(name)}, pyproject {version}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "make test" in readme
    assert "make lab" in readme
