"""Check the Dockerfile without a Docker engine: do what it does, in a clean virtual env.

    python scripts/dockerfile_smoke.py [--keep DIR]

1. Parse ``Dockerfile`` (ENV, WORKDIR, COPY, RUN, USER, HEALTHCHECK, CMD).
2. Copy what the COPY lines copy into a scratch "image root", make a new venv (no system
   site packages), and run every RUN command there, ``&&`` step by step, with the venv
   first on PATH: so ``pip install .`` is a real non-editable install from PyPI, and the
   build-time checks (``fhir-checker data info``, table warm-up, packs) run against the
   installed package, not this checkout. Steps that change the OS (``useradd``, ``rm -rf``
   of the image's own paths) are skipped and listed.
3. Start the CMD (its port replaced by a free one) with only the Dockerfile's ENV, run the
   HEALTHCHECK command until it passes (within its start period), and ask ``/readyz``.

Exit 0 when all of that works; 1 with the reason otherwise. Needs PyPI (pip downloads the
dependencies) and takes a minute or two.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: RUN steps that change the OS of the image, not what is installed: not run here.
OS_STEPS = ("useradd", "groupadd", "adduser", "chown", "chmod", "rm -rf /", "apt-get", "mkdir -p /var")


@dataclass
class Dockerfile:
    base: str = ""
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    #: (workdir, kind, payload): kind COPY (sources, dest) or RUN (shell command), in order.
    steps: list[tuple[str, str, object]] = field(default_factory=list)
    healthcheck: list[str] | None = None
    healthcheck_options: dict[str, str] = field(default_factory=dict)
    cmd: list[str] | None = None
    workdir: str = "/"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        name, _, args = full.partition(" ")
        out.append((name.upper(), args.strip()))
    return out


def _env_pairs(args: str) -> dict[str, str]:
    parts = shlex.split(args)
    if parts and "=" not in parts[0]:  # legacy form: ENV KEY value
        return {parts[0]: " ".join(parts[1:])}
    return dict(p.split("=", 1) for p in parts)


def parse(text: str) -> Dockerfile:
    df = Dockerfile()
    for name, args in instructions(text):
        if name == "FROM":
            df.base = args
        elif name == "ENV":
            df.env.update(_env_pairs(args))
        elif name == "WORKDIR":
            df.workdir = args if args.startswith("/") else f"{df.workdir.rstrip('/')}/{args}"
        elif name == "COPY":
            *sources, dest = shlex.split(args)
            df.steps.append((df.workdir, "COPY", (sources, dest)))
        elif name == "RUN":
            df.steps.append((df.workdir, "RUN", args))
        elif name == "USER":
            df.user = args
        elif name == "HEALTHCHECK":
            options, _, command = args.partition("CMD")
            df.healthcheck_options = dict(
                o.lstrip("-").split("=", 1) for o in options.split() if o.startswith("--")
            )
            df.healthcheck = json.loads(command) if command.strip().startswith("[") else ["sh", "-c", command]
        elif name == "CMD":
            df.cmd = json.loads(args) if args.startswith("[") else ["sh", "-c", args]
    return df


def _seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text)
    if not m:
        raise ValueError(f"not a duration: {text}")
    value = float(m.group(1))
    return value / 1000 if m.group(2) == "ms" else value * 60 if m.group(2) == "m" else value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Failed(Exception):
    pass


def smoke(scratch: Path, dockerfile: Path = ROOT / "Dockerfile", log: object = print) -> None:
    say = log if callable(log) else print
    df = parse(dockerfile.read_text())
    if df.user in (None, "root", "0") or (df.user or "").split(":")[0] in ("root", "0"):
        raise Failed(f"USER is {df.user!r}: the image must run as a non-root user")
    if not df.healthcheck or not df.cmd:
        raise Failed("the Dockerfile needs a HEALTHCHECK and a CMD")
    image = scratch / "image"
    venv = scratch / "venv"
    image.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)

    def at(path: str) -> Path:
        return image / path.lstrip("/")

    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin",
        "HOME": str(scratch / "home"),
        "LANG": "C.UTF-8",
        "VIRTUAL_ENV": str(venv),
        **df.env,
    }
    Path(env["HOME"]).mkdir(exist_ok=True)
    skipped: list[str] = []
    for workdir, kind, payload in df.steps:
        cwd = at(workdir)
        cwd.mkdir(parents=True, exist_ok=True)
        if kind == "COPY":
            sources, dest = payload  # type: ignore[misc]
            target = cwd / dest if not dest.startswith("/") else at(dest)
            into_dir = dest.endswith("/") or dest in (".", "./") or len(sources) > 1
            for src in sources:
                from_path = ROOT / src
                if from_path.is_dir():  # Docker copies a directory's contents, not the directory
                    shutil.copytree(from_path, target, dirs_exist_ok=True)
                else:
                    (target if into_dir else target.parent).mkdir(parents=True, exist_ok=True)
                    shutil.copy2(from_path, target / from_path.name if into_dir else target)
            continue
        for step in str(payload).split("&&"):
            step = step.strip()
            if step.startswith(OS_STEPS):
                skipped.append(step)
                continue
            say(f"RUN ({workdir}) {step[:100]}")
            done = subprocess.run(["bash", "-c", step], cwd=cwd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise Failed(
                    f"RUN {step!r} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
                )
    if skipped:
        say("skipped (they change the OS, not the install): " + "; ".join(s[:60] for s in skipped))
    run_dir = at(df.workdir)
    run_dir.mkdir(parents=True, exist_ok=True)  # the skipped useradd --create-home makes it
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import fhir_checker; print(fhir_checker.__file__)"],
        cwd=run_dir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not where.startswith(str(venv)):
        raise Failed(f"fhir_checker imports from {where}, not from the clean venv")

    port = _free_port()
    cmd = [a.replace("8000", str(port)) for a in df.cmd]
    health = [a.replace("8000", str(port)) for a in df.healthcheck]
    say(f"CMD {' '.join(cmd)}")
    stderr = (scratch / "serve.log").open("w+b")
    proc = subprocess.Popen(cmd, cwd=run_dir, env=env, stdout=stderr, stderr=subprocess.STDOUT)
    try:
        start = _seconds(df.healthcheck_options.get("start-period", "30s"))
        interval = 0.5
        deadline = time.monotonic() + start + _seconds(df.healthcheck_options.get("timeout", "5s"))
        while True:
            if proc.poll() is not None:
                raise Failed(f"the CMD exited {proc.returncode}")
            probe = subprocess.run(health, cwd=run_dir, env=env, capture_output=True, text=True)
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise Failed(f"HEALTHCHECK still failing after the start period: {probe.stderr[-500:]}")
            time.sleep(interval)
        say("HEALTHCHECK passed")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as resp:
            if resp.status != 200:
                raise Failed(f"/readyz answered {resp.status}")
        say("/readyz 200")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        stderr.seek(0)
        output = stderr.read().decode(errors="replace")
        stderr.close()
    if df.env.get("FHIR_CHECKER_LOG_FORMAT") == "json":
        lines = [ln for ln in output.splitlines() if ln.strip()]
        not_json = [ln for ln in lines if not ln.startswith("{")]
        if not_json:
            raise Failed(f"log lines that are not JSON: {not_json[:3]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = ap.parse_args(argv)
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="dockerfile-smoke-"))
    started = time.monotonic()
    try:
        smoke(scratch)
    except Failed as exc:
        print(f"dockerfile smoke: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"dockerfile smoke: ok in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
