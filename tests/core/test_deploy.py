"""The production layout in deploy/ (issue #15, item 3) names what the project really has.

The units are read as systemd reads them (key=value per section, repeated keys kept); each
command they run is checked against the project: the executable is one its virtualenv has, the
files and queues it names exist, the health check paths resolve to the project's health API,
every setting of the environment file is one config/settings.py reads. Where systemd-analyze
is installed it verifies the units themselves, with the paths pointed at this checkout.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from django.urls import resolve

from config.brokers import QUEUES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service")) + sorted((DEPLOY / "systemd").glob("*.timer"))
INSTALL_ROOT = "/srv/recommender"


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        assert section is not None, f"{path.name}: {line!r} outside a section"
        key, separator, value = line.partition("=")
        assert separator, f"{path.name}: {line!r} is not key=value"
        sections[section][key.strip()].append(value.strip())
    return sections


def _in_checkout(word: str) -> str:
    return word.replace(INSTALL_ROOT, str(ROOT))


def test_every_service_runs_a_command_of_the_project():
    services = [path for path in UNITS if path.suffix == ".service"]
    assert {path.name for path in services} >= {
        "recommender-web.service",
        "recommender-worker@.service",
        "recommender-beat.service",
    }
    for path in services:
        unit = _unit(path)
        service = unit["Service"]
        assert len(service["ExecStart"]) == 1, path.name
        for command in service["ExecStart"] + service["ExecStartPre"]:
            words = shlex.split(command)
            executable = Path(_in_checkout(words[0]))
            assert executable.exists(), f"{path.name}: {words[0]} (here {executable}) does not exist"
            if executable.name == "python" and words[1] == "manage.py":
                assert words[2] in {"collectstatic", "migrate"}, command
            if executable.name == "gunicorn":
                assert (ROOT / words[words.index("-c") + 1]).exists()
            if executable.name == "celery":
                assert words[words.index("-A") + 1] == "config"
                assert (ROOT / "config" / "celery.py").exists()
        if path.name != "recommender-web-liveness.service":
            assert service["WorkingDirectory"] == [INSTALL_ROOT], path.name
            assert service["EnvironmentFile"] == ["/etc/recommender/recommender.env"], path.name
            assert service["Restart"] == ["always"], path.name


def test_the_worker_template_serves_each_queue_of_the_project():
    command = shlex.split(_unit(DEPLOY / "systemd" / "recommender-worker@.service")["Service"]["ExecStart"][0])
    assert command[command.index("-Q") + 1] == "%i"
    # The instances the README enables are the queues the tasks are routed to.
    readme = (DEPLOY / "README.md").read_text()
    assert {f"recommender-worker@{queue}" for queue in QUEUES} <= set(re.findall(r"recommender-worker@\w+", readme))


def test_health_checks_name_the_projects_health_endpoints():
    liveness = _unit(DEPLOY / "systemd" / "recommender-web-liveness.service")["Service"]["ExecStart"][0]
    haproxy = (DEPLOY / "haproxy.cfg").read_text()
    live = re.search(r"http://127\.0\.0\.1:8000(/api/v1/health/live/)", liveness)
    ready = re.search(r"http-check send meth GET uri (\S+)", haproxy)
    assert live and ready
    assert resolve(live.group(1)).view_name.endswith("health:live")
    assert resolve(ready.group(1)).view_name.endswith("health:ready")


def test_the_environment_file_names_only_settings_the_project_reads():
    example = (DEPLOY / "recommender.env.example").read_text()
    names = re.findall(r"^([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE)
    read = "\n".join(
        path.read_text() for path in [ROOT / "config" / "settings.py", ROOT / "config" / "gunicorn.conf.py"]
    )
    assert "DJANGO_SECRET_KEY" in names and "DATABASE_REPLICA_URLS" in names
    for name in names:
        assert f'"{name}"' in read, f"{name} is not a setting config/ reads"
    # Placeholders only: no real secret in the repository.
    assert re.search(r"^DJANGO_SECRET_KEY=change-me$", example, flags=re.MULTILINE)


def test_the_environment_file_is_a_valid_production_configuration():
    settings = {}
    for line in (DEPLOY / "recommender.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            settings[name] = value
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings as s; print(s.DATABASE_REPLICAS, s.CELERY_TASK_QUEUES[0].name)"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **settings},
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "['replica_1'] interactive"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_units(tmp_path):
    for path in UNITS:
        text = _in_checkout(path.read_text()).replace("/etc/recommender/recommender.env", str(tmp_path / "env"))
        (tmp_path / path.name).write_text(text)
    (tmp_path / "env").write_text((DEPLOY / "recommender.env.example").read_text())
    units = [str(tmp_path / path.name) for path in UNITS if "@" not in path.name]
    units.append(str(tmp_path / "recommender-worker@interactive.service"))
    shutil.copy(tmp_path / "recommender-worker@.service", tmp_path / "recommender-worker@interactive.service")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True, timeout=60
    )
    # Only what concerns the units themselves: a container without a running systemd also
    # reports its own missing pieces, which say nothing about these files.
    problems = [line for line in result.stderr.splitlines() if str(tmp_path) in line]
    assert problems == [], result.stderr
