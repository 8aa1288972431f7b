#!/usr/bin/env python3
"""Runs the README's API tour and writes what each command really prints.

The tour is the part of README.md between the `<!-- tour:begin -->` and
`<!-- tour:end -->` markers. Its ```console blocks hold commands (`$ ...`,
continued over lines while a quote is open or a line ends in `\\`), each
followed by its output. This script starts `target/release/reserve serve
--demo` on a fresh database in a scratch directory, runs every command there in
order with the demo's tokens and `$B` set, and puts each command's output
(stdout and stderr, as a terminal would show them) under it. Prose is left as
it is.

    python3 scripts/readme-tour.py          # rewrite the tour in README.md
    python3 scripts/readme-tour.py --check  # exit 1 if README.md is not current

`--check` (run by .ci/run) compares after masking what differs from run to run:
timestamps, HTTP dates, UUIDs (request and movement ids), SHA-256 hashes,
the demo's generated signing key, `verify`'s own timings and memory,
tokens, and the order of response headers (actix keeps them in a hash map).
Everything else must match: the demo data come from a fixed seed, so ids,
sequence numbers, quantities, cursors, headers and the JSON key order are
stable.

Needs bash, curl and jq; builds the binary with `cargo build --release` when it
is missing.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
BEGIN = "<!-- tour:begin -->"
END = "<!-- tour:end -->"

# Files the tour shows with `cat` and posts with `-d @file`.
FIXTURES = {
    "mm-holmium.csv": """element,form,origin_country,hs_code,period_start,period_end,quantity_kg,source,external_id
Ho,carbonate,MM,2846.90.8000,2025-10-01,2025-10-31,2500,MM-customs,HO-MM-2025-10
Ho,carbonate,MM,2846.90.8000,2025-11-01,2025-11-30,2500,MM-customs,HO-MM-2025-11
Ho,carbonate,MM,2846.90.8000,2025-12-01,2025-12-31,2500,MM-customs,HO-MM-2025-12
Ho,carbonate,MM,2846.90.8000,2026-01-01,2026-01-31,2500,MM-customs,HO-MM-2026-01
Ho,carbonate,MM,2846.90.8000,2026-02-01,2026-02-28,2500,MM-customs,HO-MM-2026-02
Ho,carbonate,MM,2846.90.8000,2026-03-01,2026-03-31,2500,MM-customs,HO-MM-2026-03
Ho,carbonate,MM,2846.90.8000,2026-04-01,2026-04-30,2500,MM-customs,HO-MM-2026-04
Ho,carbonate,MM,2846.90.8000,2026-05-01,2026-05-31,2500,MM-customs,HO-MM-2026-05
Ho,carbonate,MM,2846.90.8000,2026-06-01,2026-06-30,2500,MM-customs,HO-MM-2026-06
Ho,carbonate,MM,2846.90.8000,2026-07-01,2026-07-31,2500,MM-customs,HO-MM-2026-07
Ho,carbonate,MM,2846.90.8000,2026-08-01,2026-08-31,2500,MM-customs,HO-MM-2026-08
Ho,carbonate,MM,2846.90.8000,2026-09-01,2026-09-30,2500,MM-customs,HO-MM-2026-09
""",
    "acq.json": """{"depot": "TX2", "element": "Nd", "form": "oxide", "grade": "99.5",
 "quantity_kg": "1250.500", "reference": "BOL-2026-0142",
 "counterparty": "Lynas Rare Earths", "origin_country": "AU",
 "unit_price": "81.25", "currency": "USD"}
""",
    "batch.json": """{"entries": [
  {"kind": "acquisition", "depot": "WY6", "element": "Dy", "form": "oxide", "grade": "99.5",
   "quantity_kg": "800", "origin_country": "VN", "reference": "BOL-2026-0150"},
  {"kind": "transfer", "from_depot": "WY6", "to_depot": "NV1", "element": "Dy", "form": "oxide",
   "grade": "99.5", "quantity_kg": "300"},
  {"kind": "release", "depot": "WY6", "element": "Dy", "form": "oxide", "grade": "99.5",
   "quantity_kg": "150.250", "reference": "RO-2026-008"}
]}
""",
}

# Values that differ on every run, masked before `--check` compares.
VOLATILE = [
    (re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"), "<token>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<sha256>"),
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"),
        "<uuid>",
    ),
    (
        re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})"),
        "<time>",
    ),
    (re.compile(r"(?im)^date: .*$"), "date: <date>"),
    # The demo generates its signing key, and `verify` reports its own speed.
    (re.compile(r'"public_key": ?"[A-Za-z0-9+/=]{40,}"'), '"public_key": "<key>"'),
    (re.compile(r'"seconds": ?"[0-9.]+"'), '"seconds": "<seconds>"'),
    (re.compile(r'"entries_per_second": ?[0-9]+'), '"entries_per_second": <n>'),
    (re.compile(r'"peak_rss_kib": ?[0-9]+'), '"peak_rss_kib": <n>'),
]


def mask(text: str) -> str:
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    # actix keeps response headers in a hash map, so their order changes from
    # one server process to the next: compare each header block sorted.
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith("HTTP/1.1 "):
            j = i + 1
            while j < len(lines) and lines[j].strip():
                j += 1
            lines[i + 1 : j] = sorted(lines[i + 1 : j])
            i = j
        i += 1
    return "\n".join(lines)


def complete(command: str) -> bool:
    """A command is complete when its quotes are closed and it does not end in `\\`."""
    if command.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(command, comments=False, posix=True)
    except ValueError:
        return False
    return True


def parse(block: str) -> list:
    """Splits the tour into prose lines and console blocks of (command, output)."""
    parts: list = []
    lines = block.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() != "```console":
            parts.append(line)
            i += 1
            continue
        i += 1
        items: list[list[str]] = []
        while i < len(lines) and lines[i].strip() != "```":
            if lines[i].startswith("$ "):
                command = [lines[i][2:]]
                i += 1
                while not complete("\n".join(command)):
                    if i >= len(lines) or lines[i].strip() == "```":
                        sys.exit(f"readme-tour: unfinished command: {command[0]}")
                    command.append(lines[i])
                    i += 1
                items.append(command)
            else:
                if not items:
                    sys.exit(f"readme-tour: output before any command: {lines[i]!r}")
                i += 1  # an old output line: regenerated
        if i >= len(lines):
            sys.exit("readme-tour: a ```console block is not closed")
        i += 1
        parts.append(["\n".join(c) for c in items])
    return parts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary() -> Path:
    exe = REPO / "target" / "release" / "reserve"
    if not exe.exists():
        subprocess.run(
            ["cargo", "build", "--release", "--locked", "--bin", "reserve"],
            cwd=REPO,
            check=True,
        )
    return exe


class Tour:
    """A scratch directory with a running demo server and a shell state file."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="readme-tour-"))
        (self.dir / "target" / "release").mkdir(parents=True)
        (self.dir / "target" / "release" / "reserve").symlink_to(binary())
        for name, text in FIXTURES.items():
            (self.dir / name).write_text(text)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("RESERVE_") and k not in ("RUST_LOG",)
        }
        self.env["RESERVE_BIND"] = f"127.0.0.1:{self.port}"
        # The demo's import statistics end with the month before this day, so
        # the release-rule figures of the tour do not move with the calendar.
        self.env["RESERVE_DEMO_TODAY"] = "2026-10-15"
        self.env["NO_COLOR"] = "1"
        self.server = subprocess.Popen(
            ["target/release/reserve", "serve", "--demo"],
            cwd=self.dir,
            env=self.env,
            stdout=open(self.dir / "tokens.txt", "w"),
            stderr=open(self.dir / "server.log", "w"),
        )
        deadline = time.time() + 300
        while True:
            if self.server.poll() is not None:
                sys.exit("readme-tour: serve --demo exited:\n" + (self.dir / "server.log").read_text())
            try:
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=2) as r:
                    if r.status == 200 and "TOKEN" in (self.dir / "tokens.txt").read_text():
                        break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("readme-tour: serve --demo never became ready")
            time.sleep(0.5)
        state = [f"B={self.base}"]
        for line in (self.dir / "tokens.txt").read_text().splitlines():
            if "_TOKEN=" in line:
                state.append(line)
        (self.dir / "state.sh").write_text("\n".join(state) + "\n")

    def tamper(self) -> None:
        """`tamper/reserve.db`: a copy of the database where someone dropped the
        append-only trigger and edited entry 100, as the tour describes."""
        target = self.dir / "tamper"
        if target.exists():
            return
        target.mkdir()
        src = sqlite3.connect(self.dir / "data" / "reserve.db")
        dst = sqlite3.connect(target / "reserve.db")
        src.backup(dst)
        src.close()
        dst.executescript(
            "DROP TRIGGER ledger_entries_no_update;"
            "UPDATE ledger_entries SET quantity_g = quantity_g + 1000 WHERE sequence = 100;"
        )
        dst.commit()
        dst.close()

    def run(self, command: str) -> str:
        if "tamper/" in command:
            self.tamper()
        # Variables a command sets (ALICE=$(...)) carry over to the next ones.
        script = f"set -a\nsource state.sh\n{command}\nstatus=$?\nset +a\nexport -p > state.sh\nexit $status\n"
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=self.dir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=120,
        )
        out = done.stdout.decode().replace("\r\n", "\n").rstrip("\n")
        return out

    def stop(self) -> None:
        self.server.terminate()
        try:
            self.server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.server.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def render(parts: list, tour: Tour) -> str:
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        out.append("```console")
        for n, command in enumerate(part):
            if n:
                out.append("")
            lines = command.split("\n")
            out.append("$ " + lines[0])
            out.extend(lines[1:])
            output = tour.run(command)
            if output:
                out.extend(output.split("\n"))
        out.append("```")
    return "\n".join(out)


def tools() -> None:
    """The tour's commands use curl and jq; install them where they are missing
    (CI runs as root on Debian, as scripts/ensure-postgres.sh assumes too)."""
    missing = [t for t in ("curl", "jq") if shutil.which(t) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(f"readme-tour: install {' and '.join(missing)} first")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)


def main() -> int:
    check = "--check" in sys.argv[1:]
    tools()
    text = README.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        sys.exit(f"readme-tour: README.md needs one {BEGIN} and one {END}")
    head, rest = text.split(BEGIN, 1)
    block, tail = rest.split(END, 1)
    parts = parse(block)
    tour = Tour()
    try:
        fresh = render(parts, tour)
    finally:
        tour.stop()
    if not check:
        README.write_text(head + BEGIN + fresh + END + tail)
        print("readme-tour: README.md's tour regenerated")
        return 0
    old, new = mask(block).split("\n"), mask(fresh).split("\n")
    if old == new:
        print("readme-tour: README.md's tour matches a fresh run")
        return 0
    sys.stdout.writelines(
        line + "\n"
        for line in difflib.unified_diff(old, new, "README.md (tour)", "a fresh run", lineterm="")
    )
    print("readme-tour: README.md's tour is not what the commands print; "
          "run `python3 scripts/readme-tour.py` and commit the result", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
