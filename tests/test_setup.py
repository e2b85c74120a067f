"""The environment files agree with each other, so both set-up routes install the same course."""
import json
import os
import re
import subprocess
import sys
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
    lock = lock_pins()
    for name, version in pyproject_pins().items():
        if name == "torch":  # installed from the local CPU wheel; pyproject pins it
            continue
        assert lock.get(name) == version, f"requirements.lock has {name} {lock.get(name)}, pyproject {version}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "make test" in readme
    assert "make lab" in readme


# --- The Pythons people have ------------------------------------------------------------------
# Debian 12's python3 is 3.11.2, Ubuntu 24.04's 3.12, Debian 13's 3.13.
PYTHONS = ["3.11.2", "3.12", "3.13"]
NETWORK_TROUBLE = ("Failed to establish a new connection", "Temporary failure in name resolution",
                   "Network is unreachable", "Could not fetch URL", "No route to host")


def lock_pins():
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[_name(name)] = version
    return pins


@pytest.mark.parametrize("python", PYTHONS)
def test_pyproject_admits_the_python(python):
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    assert python in spec, f"pyproject.toml's requires-python {spec} refuses Python {python}"


# pip, run in a process that counts the bytes it receives over the network.
COUNTING_PIP = """
import atexit, runpy, ssl, sys
received = [0]
read = ssl.SSLSocket.read  # what recv and recv_into of a TLS socket call
def counting_read(self, *args, **kwargs):
    result = read(self, *args, **kwargs)
    received[0] += result if isinstance(result, int) else len(result)
    return result
ssl.SSLSocket.read = counting_read
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(str(received[0])))
sys.argv[0] = "pip"
runpy.run_module("pip", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("python", PYTHONS)
def test_the_lock_resolves_for_the_python_without_downloading_packages(python, tmp_path):
    """pip resolves pyproject's dependencies under the lock for that Python, from the package index.

    A dry run installs nothing; with fast-deps pip reads each wheel's metadata with HTTP range
    requests where the index does not serve it on its own, so torch's several-GB CUDA wheels
    (what 3.12 and 3.13 get) are never downloaded (without it pip fetched 2.9 GB here). `--isolated` ignores this
    machine's pip settings (its local wheels), so the index a learner's machine uses decides.
    Every package pip picks must be pinned by the lock (torch by pyproject).
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(project["dependencies"] + project["optional-dependencies"]["test"]) + "\n")
    report, received = tmp_path / "report.json", tmp_path / "received"
    proc = subprocess.run(
        [sys.executable, "-c", COUNTING_PIP, str(received), "--isolated", "install", "--dry-run", "--ignore-installed",
         "--quiet", "--python-version", python, "--only-binary=:all:", "--no-cache-dir", "--use-feature=fast-deps",
         "--report", str(report),
         "-c", str(ROOT / "requirements.lock"), "-r", str(requirements)],
        capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 and any(text in proc.stderr for text in NETWORK_TROUBLE):
        pytest.skip(f"the package index cannot be reached: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, f"the lock does not resolve for Python {python}:\n{proc.stderr[-3000:]}"
    chosen = {_name(i["metadata"]["name"]): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    pins = dict(lock_pins(), torch=pyproject_pins()["torch"])
    unpinned = {name: version for name, version in chosen.items() if pins.get(name) != version}
    assert not unpinned, f"Python {python}: pip picked versions the lock does not pin: {unpinned}"
    fetched = int(received.read_text())
    print(f"Python {python}: {len(chosen)} packages resolved, {fetched / 2**20:.1f} MiB received (index pages, metadata)")
    assert fetched < 100 * 2**20, f"the dry run received {fetched / 2**20:.0f} MiB: it must not download wheels"


# --- The Makefile -----------------------------------------------------------------------------

def _make_n(*args, env=None):
    proc = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_env_installs_the_learners_nbgrader_config(tmp_path):
    out = _make_n("env", f"VENV={tmp_path / 'v'}")
    assert f"cp jupyter/nbgrader_config.py {tmp_path / 'v'}/etc/jupyter/nbgrader_config.py" in out


def test_make_lab_passes_allow_root_only_to_root(tmp_path):
    stamp_free = tmp_path / "v"
    out = _make_n("lab", f"VENV={stamp_free}")
    lab = next(line for line in out.splitlines() if "bin/jupyter lab " in line)
    assert ("--allow-root" in lab) == (os.geteuid() == 0), lab


def test_make_picks_the_first_supported_python_on_path(tmp_path):
    """python3 and python3.13 here are too old (they fail the version test); python3.12 is this Python."""
    for name in ("python3", "python3.13"):
        fake = tmp_path / name
        fake.write_text("#!/bin/sh\nexit 1\n")
        fake.chmod(0o755)
    (tmp_path / "python3.12").symlink_to(sys.executable)
    env = {"PATH": f"{tmp_path}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    env_without_python = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    proc = subprocess.run(["make", "-n", "env", f"VENV={tmp_path / 'v'}"], cwd=ROOT, capture_output=True, text=True,
                          env=dict(env_without_python, **env), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"{tmp_path / 'python3.12'} -m venv" in proc.stdout, proc.stdout


def test_make_env_writes_the_given_code_so_solutions_run_as_checked_out(tmp_path):
    """`make lab` and `make test` both make `env`, which writes solutions/NN/earlier_chapters.py: an instructor
    can execute a worked solution (jupyter nbconvert --execute) right after either."""
    out = _make_n("env", f"VENV={tmp_path / 'v'}")
    assert "-m grader.workflow.earlier_chapters" in out, out
