#!/usr/bin/env python3
"""Offline dependency-vulnerability audit for this repository's Cargo.lock.

Checks every crates.io package locked in Cargo.lock against a local snapshot
of the RustSec advisory database, with no network access and only the Python
3.11 standard library.

Usage (from the repository root):

    python3 scripts/audit.py              # audit Cargo.lock
    python3 scripts/audit.py --self-test  # run the version-matcher unit tests

Inputs:
  * Cargo.lock at the repository root.
  * The advisory database at ../shared/advisory-db relative to the repository
    root, or the directory named by the RESERVE_ADVISORY_DB environment
    variable.  Advisories are read from crates/<crate>/RUSTSEC-*.md; each file
    starts with a ```toml fenced block holding [advisory] and [versions].
  * audit-ignore.toml at the repository root (optional):

        [[ignore]]
        id = "RUSTSEC-XXXX-YYYY"
        reason = "why it does not apply"

Policy:
  * An advisory without an `informational` field is a vulnerability: a locked
    version matching it fails the run (exit 1) unless its id is listed in
    audit-ignore.toml with a non-empty reason.
  * Informational advisories (unmaintained / unsound / notice) are printed as
    warnings and never fail the run.
  * Withdrawn advisories are skipped.
  * An ignore entry that matches no finding is reported as stale (warning).
  * A malformed ignore file or an unreadable lockfile/database exits 2.

A locked version is affected by an advisory unless it matches any requirement
in `patched` or `unaffected` (Cargo semver requirement syntax).
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
import unittest
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CRATES_IO_SOURCES = (
    "registry+https://github.com/rust-lang/crates.io-index",
    "sparse+https://index.crates.io/",
)


class AuditError(Exception):
    """Configuration or input problem (exit status 2)."""


# --------------------------------------------------------------------------
# Semver versions and Cargo requirement matching
# --------------------------------------------------------------------------

_VERSION_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)


def _pre_key(pre: tuple[str, ...]):
    """Sort key for pre-release identifiers (SemVer 2.0 precedence).

    A version without pre-release sorts after every pre-release of the same
    major.minor.patch; numeric identifiers compare numerically and sort before
    alphanumeric ones; a shorter list of equal prefix sorts first.
    """
    if not pre:
        return (1,)
    return (0, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre))


@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Version":
        m = _VERSION_RE.match(text.strip())
        if not m:
            raise ValueError(f"invalid semver version: {text!r}")
        pre = tuple(m.group(4).split(".")) if m.group(4) else ()
        # Build metadata (group 5) never affects precedence.
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre)

    def key(self):
        return (self.major, self.minor, self.patch, _pre_key(self.pre))

    def __lt__(self, other: "Version") -> bool:
        return self.key() < other.key()

    def __le__(self, other: "Version") -> bool:
        return self.key() <= other.key()

    def __gt__(self, other: "Version") -> bool:
        return self.key() > other.key()

    def __ge__(self, other: "Version") -> bool:
        return self.key() >= other.key()

    def __str__(self) -> str:
        s = f"{self.major}.{self.minor}.{self.patch}"
        return s + ("-" + ".".join(self.pre) if self.pre else "")


# Lowest possible version with a given major.minor.patch: the "0" pre-release
# sorts before any other pre-release, so an exclusive upper bound at X.Y.Z-0
# also excludes pre-releases of X.Y.Z (as Cargo does for ^, ~, = and *).
def _floor(major: int, minor: int, patch: int) -> Version:
    return Version(major, minor, patch, ("0",))


_COMPARATOR_RE = re.compile(
    r"^(?P<op>>=|<=|>|<|=|\^|~)?\s*"
    r"(?P<major>\d+|[*xX])"
    r"(?:\.(?P<minor>\d+|[*xX]))?"
    r"(?:\.(?P<patch>\d+|[*xX]))?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)

# A bound is (version, inclusive).  A comparator is a (lower, upper) pair,
# either side None for unbounded.
Bound = tuple[Version, bool] | None


def _parse_comparator(text: str) -> tuple[Bound, Bound]:
    m = _COMPARATOR_RE.match(text.strip())
    if not m:
        raise ValueError(f"invalid version requirement: {text!r}")
    op = m.group("op") or "^"  # a bare version means caret
    parts = [m.group("major"), m.group("minor"), m.group("patch")]
    pre = tuple(m.group("pre").split(".")) if m.group("pre") else ()

    # Normalise wildcards: "1.*" / "1.2.*" / "*" (also x, X) stand for the
    # partial versions "1" / "1.2" / nothing.  Nothing may follow a wildcard.
    nums: list[int] = []
    seen_wildcard = False
    for p in parts:
        if p is None:
            break
        if p in "*xX":
            seen_wildcard = True
        elif seen_wildcard:
            raise ValueError(f"version number after wildcard: {text!r}")
        else:
            nums.append(int(p))
    if seen_wildcard:
        if pre:
            raise ValueError(f"pre-release on wildcard requirement: {text!r}")
        if op == "^":
            op = "="  # bare "1.*" means "=1", i.e. >=1.0.0, <2.0.0
    if pre and len(nums) < 3:
        raise ValueError(f"pre-release needs a full version: {text!r}")

    n = len(nums)
    major = nums[0] if n > 0 else 0
    minor = nums[1] if n > 1 else 0
    patch = nums[2] if n > 2 else 0
    full = Version(major, minor, patch, pre)

    if n == 0:  # "*"
        return (None, None)

    def next_major():
        return (_floor(major + 1, 0, 0), False)

    def next_minor():
        return (_floor(major, minor + 1, 0), False)

    def next_patch():
        return (_floor(major, minor, patch + 1), False)

    def upper_of_partial():
        # Exclusive upper bound of the range "=major[.minor]".
        return next_major() if n == 1 else next_minor() if n == 2 else next_patch()

    if op == "=":
        if n == 3:
            return ((full, True), (full, True))
        return ((Version(major, minor, 0), True), upper_of_partial())
    if op == ">=":
        return ((full, True), None)
    if op == ">":
        if n == 3:
            return ((full, False), None)
        # "> 1" means ">= 2.0.0", "> 1.2" means ">= 1.3.0".
        return (upper_of_partial()[0], True), None
    if op == "<":
        # "< 1.2" means "< 1.2.0".
        return (None, (full, False))
    if op == "<=":
        if n == 3:
            return (None, (full, True))
        # "<= 1" means "< 2.0.0", "<= 1.2" means "< 1.3.0".
        return (None, upper_of_partial())
    if op == "~":
        lower = (full, True)
        if n == 1:
            return (lower, next_major())
        return (lower, next_minor())
    if op == "^":
        lower = (full, True)
        if major > 0 or n == 1:
            return (lower, next_major())          # ^1.2.3, ^0 -> <1.0.0
        if minor > 0 or n == 2:
            return (lower, next_minor())          # ^0.2.3, ^0.0 -> <0.1.0
        return (lower, next_patch())              # ^0.0.3 -> =0.0.3
    raise ValueError(f"invalid version requirement: {text!r}")


@dataclass(frozen=True)
class VersionReq:
    """A Cargo version requirement: comma-separated comparators, ANDed."""

    text: str
    comparators: tuple[tuple[Bound, Bound], ...]

    @classmethod
    def parse(cls, text: str) -> "VersionReq":
        pieces = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in pieces):
            raise ValueError(f"invalid version requirement: {text!r}")
        return cls(text.strip(), tuple(_parse_comparator(p) for p in pieces))

    def matches(self, version: Version | str) -> bool:
        if isinstance(version, str):
            version = Version.parse(version)
        for lower, upper in self.comparators:
            if lower is not None:
                bound, inclusive = lower
                if version.key() < bound.key() or (not inclusive and version.key() == bound.key()):
                    return False
            if upper is not None:
                bound, inclusive = upper
                if version.key() > bound.key() or (not inclusive and version.key() == bound.key()):
                    return False
        return True

    def __str__(self) -> str:
        return self.text


# --------------------------------------------------------------------------
# Advisory database
# --------------------------------------------------------------------------

_FRONT_MATTER_RE = re.compile(r"\A\s*```toml[ \t]*\r?\n(.*?)\r?\n```", re.S)


@dataclass
class Advisory:
    id: str
    package: str
    date: str
    title: str
    informational: str | None
    patched: list[VersionReq]
    unaffected: list[VersionReq]
    aliases: list[str] = field(default_factory=list)
    url: str | None = None
    functions: dict[str, list[str]] = field(default_factory=dict)
    path: Path | None = None

    def affects(self, version: Version) -> bool:
        return not any(r.matches(version) for r in self.patched + self.unaffected)


def parse_advisory(path: Path) -> tuple[Advisory | None, bool]:
    """Return (advisory, withdrawn)."""
    text = path.read_text(encoding="utf-8")
    m = _FRONT_MATTER_RE.match(text)
    if not m:
        raise AuditError(f"{path}: no ```toml front matter")
    try:
        data = tomllib.loads(m.group(1))
    except tomllib.TOMLDecodeError as e:
        raise AuditError(f"{path}: bad TOML front matter: {e}") from e
    adv = data.get("advisory", {})
    versions = data.get("versions", {})
    for key in ("id", "package"):
        if key not in adv:
            raise AuditError(f"{path}: [advisory] lacks {key!r}")
    if adv.get("withdrawn"):
        return None, True
    body = text[m.end():]
    title_m = re.search(r"^#\s+(.+?)\s*$", body, re.M)
    try:
        patched = [VersionReq.parse(r) for r in versions.get("patched", [])]
        unaffected = [VersionReq.parse(r) for r in versions.get("unaffected", [])]
    except ValueError as e:
        raise AuditError(f"{path}: {e}") from e
    return (
        Advisory(
            id=adv["id"],
            package=adv["package"],
            date=str(adv.get("date", "")),
            title=title_m.group(1) if title_m else "",
            informational=adv.get("informational"),
            patched=patched,
            unaffected=unaffected,
            aliases=list(adv.get("aliases", [])),
            url=adv.get("url"),
            functions=dict(data.get("affected", {}).get("functions", {})),
            path=path,
        ),
        False,
    )


def load_advisories(db: Path) -> tuple[dict[str, list[Advisory]], int, int]:
    """Return ({crate: [advisories]}, active count, withdrawn count)."""
    crates_dir = db / "crates"
    if not crates_dir.is_dir():
        raise AuditError(f"advisory database not found: {crates_dir} does not exist")
    by_crate: dict[str, list[Advisory]] = {}
    active = withdrawn = 0
    for path in sorted(crates_dir.glob("*/*.md")):
        adv, was_withdrawn = parse_advisory(path)
        if was_withdrawn:
            withdrawn += 1
            continue
        by_crate.setdefault(adv.package, []).append(adv)
        active += 1
    if active == 0:
        raise AuditError(f"advisory database at {db} holds no advisories")
    return by_crate, active, withdrawn


def snapshot_info(db: Path, advisories: dict[str, list[Advisory]]) -> str:
    snap = db / "SNAPSHOT.md"
    if snap.is_file():
        text = snap.read_text(encoding="utf-8")
        commit = re.search(r"\bcommit\s+([0-9a-f]{7,40})\b", text)
        date = re.search(r"\b(\d{4}-\d{2}-\d{2})\b", text)
        parts = []
        if date:
            parts.append(date.group(1))
        if commit:
            parts.append(f"commit {commit.group(1)[:12]}")
        if parts:
            return ", ".join(parts)
    head = db / ".git" / "HEAD"
    if head.is_file():
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref_file = db / ".git" / ref[5:]
            if ref_file.is_file():
                return f"git {ref_file.read_text().strip()[:12]}"
            return f"git {ref[5:]}"
        return f"git {ref[:12]}"
    latest = max((a.date for advs in advisories.values() for a in advs), default="?")
    return f"unknown, newest advisory {latest}"


# --------------------------------------------------------------------------
# Lockfile and ignore policy
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str


def load_lockfile(path: Path) -> list[LockedPackage]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise AuditError(f"{path} not found") from e
    except tomllib.TOMLDecodeError as e:
        raise AuditError(f"{path}: {e}") from e
    pkgs = []
    for p in data.get("package", []):
        if p.get("source") in CRATES_IO_SOURCES:
            pkgs.append(LockedPackage(p["name"], p["version"]))
    return pkgs


def load_ignores(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise AuditError(f"{path}: {e}") from e
    unknown = set(data) - {"ignore"}
    if unknown:
        raise AuditError(f"{path}: unknown top-level keys {sorted(unknown)}")
    ignores: dict[str, str] = {}
    for i, entry in enumerate(data.get("ignore", []), 1):
        adv_id = entry.get("id")
        reason = entry.get("reason")
        if not isinstance(adv_id, str) or not re.fullmatch(r"RUSTSEC-\d{4}-\d{4}", adv_id):
            raise AuditError(f"{path}: ignore entry {i} needs id = \"RUSTSEC-YYYY-NNNN\"")
        if not isinstance(reason, str) or not reason.strip():
            raise AuditError(f"{path}: ignore entry {adv_id} needs a non-empty reason")
        if adv_id in ignores:
            raise AuditError(f"{path}: {adv_id} is listed twice")
        ignores[adv_id] = reason.strip()
    return ignores


# --------------------------------------------------------------------------
# Audit
# --------------------------------------------------------------------------


def _describe(adv: Advisory, pkg: LockedPackage) -> list[str]:
    lines = [f"{adv.id}: {pkg.name} {pkg.version}" + (f" -- {adv.title}" if adv.title else "")]
    fixes = ", ".join(str(r) for r in adv.patched) or "none available"
    lines.append(f"    patched: {fixes}")
    if adv.unaffected:
        lines.append(f"    unaffected: {', '.join(str(r) for r in adv.unaffected)}")
    if adv.functions:
        lines.append(f"    affected functions: {', '.join(sorted(adv.functions))}")
    if adv.aliases:
        lines.append(f"    aliases: {', '.join(adv.aliases)}")
    if adv.url:
        lines.append(f"    url: {adv.url}")
    return lines


def run_audit(repo: Path, db: Path, out=sys.stdout) -> int:
    advisories, active, _withdrawn = load_advisories(db)
    packages = load_lockfile(repo / "Cargo.lock")
    ignores = load_ignores(repo / "audit-ignore.toml")

    vulnerable = ignored = warnings = 0
    used_ignores: set[str] = set()

    def emit(line: str = "") -> None:
        print(line, file=out)

    for pkg in sorted(packages, key=lambda p: (p.name, Version.parse(p.version).key())):
        version = Version.parse(pkg.version)
        for adv in advisories.get(pkg.name, []):
            if not adv.affects(version):
                continue
            desc = _describe(adv, pkg)
            if adv.id in ignores:
                used_ignores.add(adv.id)
                ignored += 1
                emit(f"ignored: {desc[0]}")
                emit(f"    reason: {ignores[adv.id]}")
            elif adv.informational:
                warnings += 1
                emit(f"warning ({adv.informational}): {desc[0]}")
                for line in desc[1:]:
                    emit(line)
            else:
                vulnerable += 1
                emit(f"error: vulnerable: {desc[0]}")
                for line in desc[1:]:
                    emit(line)

    for adv_id in sorted(set(ignores) - used_ignores):
        warnings += 1
        emit(f"warning (stale ignore): {adv_id} in audit-ignore.toml matches no locked package; remove it")

    emit(
        f"audit: {len(packages)} packages checked against {active} advisories "
        f"(snapshot {snapshot_info(db, advisories)}): "
        f"{vulnerable} vulnerable, {ignored} ignored, {warnings} warnings"
    )
    return 1 if vulnerable else 0


def advisory_db_path(repo: Path) -> Path:
    override = os.environ.get("RESERVE_ADVISORY_DB")
    if override:
        return Path(override)
    return (repo / ".." / "shared" / "advisory-db").resolve()


# --------------------------------------------------------------------------
# Self-test
# --------------------------------------------------------------------------


class MatcherTests(unittest.TestCase):
    def m(self, req: str, version: str) -> bool:
        return VersionReq.parse(req).matches(version)

    def yes(self, req: str, *versions: str) -> None:
        for v in versions:
            self.assertTrue(self.m(req, v), f"{req!r} should match {v}")

    def no(self, req: str, *versions: str) -> None:
        for v in versions:
            self.assertFalse(self.m(req, v), f"{req!r} should not match {v}")

    def test_version_ordering(self):
        order = [
            "0.9.9", "1.0.0-0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
            "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0",
            "1.0.1", "1.2.0", "1.10.0", "2.0.0",
        ]
        parsed = [Version.parse(v) for v in order]
        self.assertEqual(parsed, sorted(parsed, key=Version.key))
        self.assertEqual(Version.parse("1.0.0+build.5"), Version.parse("1.0.0"))
        with self.assertRaises(ValueError):
            Version.parse("1.0")

    def test_simple_operators(self):
        self.yes(">= 1.2.3", "1.2.3", "1.2.4", "2.0.0")
        self.no(">= 1.2.3", "1.2.2", "0.9.0")
        self.yes(">1.2.3", "1.2.4")
        self.no(">1.2.3", "1.2.3")
        self.yes("< 1.2.3", "1.2.2", "0.1.0")
        self.no("< 1.2.3", "1.2.3", "1.3.0")
        self.yes("<= 1.2.3", "1.2.3")
        self.no("<= 1.2.3", "1.2.4")
        self.yes("=1.2.3", "1.2.3")
        self.no("=1.2.3", "1.2.4", "1.2.2")
        self.yes(">= 1.2.3 ", "1.2.3")  # stray whitespace

    def test_partial_versions(self):
        self.yes(">= 1.2", "1.2.0", "1.3.0")
        self.no(">= 1.2", "1.1.9")
        self.yes("< 0.2", "0.1.99")
        self.no("< 0.2", "0.2.0", "0.2.1")
        self.yes("< 0.2", "0.2.0-alpha.1")  # a pre-release is below its release
        self.yes("> 1", "2.0.0")
        self.no("> 1", "1.9.9")
        self.yes("> 1.2", "1.3.0")
        self.no("> 1.2", "1.2.9")
        self.yes("<= 1.2", "1.2.9")
        self.no("<= 1.2", "1.3.0")
        self.yes("=1.2", "1.2.0", "1.2.7")
        self.no("=1.2", "1.3.0", "1.1.0")
        self.yes(">= 2", "2.0.0")
        self.no(">= 2", "1.99.0")

    def test_caret(self):
        self.yes("^1.2.3", "1.2.3", "1.9.0")
        self.no("^1.2.3", "1.2.2", "2.0.0", "2.0.0-alpha.1")
        self.yes("^ 1.2.3", "1.5.0")
        self.yes("1.2.3", "1.2.3", "1.99.0")  # bare version is caret
        self.no("1.2.3", "2.0.0")
        self.yes("^1.2", "1.2.0", "1.9.9")
        self.no("^1.2", "1.1.9", "2.0.0")
        self.yes("^1", "1.0.0", "1.9.9")
        self.no("^1", "2.0.0", "0.9.0")

    def test_caret_zero_x(self):
        self.yes("^0.9.5", "0.9.5", "0.9.99")
        self.no("^0.9.5", "0.9.4", "0.10.0", "1.0.0")
        self.yes("0.2.3", "0.2.3", "0.2.9")  # bare 0.x
        self.no("0.2.3", "0.3.0")
        self.yes("^0.0.3", "0.0.3")
        self.no("^0.0.3", "0.0.4", "0.0.2", "0.1.0")
        self.yes("^0.0", "0.0.0", "0.0.9")
        self.no("^0.0", "0.1.0")
        self.yes("^0", "0.0.0", "0.9.9")
        self.no("^0", "1.0.0")
        self.yes("^0.1", "0.1.0", "0.1.9")
        self.no("^0.1", "0.2.0")

    def test_tilde(self):
        self.yes("~1.2.3", "1.2.3", "1.2.9")
        self.no("~1.2.3", "1.2.2", "1.3.0")
        self.yes("~1.2", "1.2.0", "1.2.9")
        self.no("~1.2", "1.3.0", "1.1.0")
        self.yes("~1", "1.0.0", "1.9.0")
        self.no("~1", "2.0.0")
        self.yes("~0.2.3", "0.2.5")
        self.no("~0.2.3", "0.3.0")

    def test_wildcards(self):
        self.yes("*", "0.0.1", "9.9.9")
        self.yes("1.*", "1.0.0", "1.9.9")
        self.no("1.*", "0.9.9", "2.0.0")
        self.yes("1.2.*", "1.2.0", "1.2.9")
        self.no("1.2.*", "1.3.0", "1.1.9")
        self.yes("=1.2.*", "1.2.5")
        self.yes("1.x", "1.4.0")
        self.yes("0.*", "0.5.0")
        self.no("0.*", "1.0.0")

    def test_ranges(self):
        r = ">= 1.2.3, < 1.5.0"
        self.yes(r, "1.2.3", "1.4.9")
        self.no(r, "1.2.2", "1.5.0")
        self.yes("< 0.7.0, >= 0.6.2", "0.6.2", "0.6.9")
        self.no("< 0.7.0, >= 0.6.2", "0.6.1", "0.7.0")
        self.yes(">=0.9.0, <0.9.6", "0.9.5")
        self.no(">=0.9.0, <0.9.6", "0.9.6")
        self.yes(">= 2.0, < 2.3", "2.2.9")
        self.no(">= 2.0, < 2.3", "2.3.0")
        self.no(">= 1.0.0, < 0.5.0", "0.7.0", "1.2.0")  # empty range

    def test_prerelease(self):
        # A pre-release is lower than its release.
        self.no(">= 1.0.0", "1.0.0-rc.1")
        self.yes("< 1.0.0", "1.0.0-rc.1")
        self.yes(">= 1.0.0-alpha.2", "1.0.0-alpha.2", "1.0.0-beta", "1.0.0", "1.1.0")
        self.no(">= 1.0.0-alpha.2", "1.0.0-alpha.1", "0.9.0")
        self.yes(">= 0.4.0, < 0.5.0-alpha.1", "0.4.9", "0.5.0-alpha.0")
        self.no(">= 0.4.0, < 0.5.0-alpha.1", "0.5.0-alpha.1", "0.5.0")
        self.yes("< 3.0.0-rc1", "2.9.0", "3.0.0-rc0")
        self.no("< 3.0.0-rc1", "3.0.0-rc2", "3.0.0")
        self.yes("^1.2.3-beta.2", "1.2.3-beta.2", "1.2.3", "1.9.0")
        self.no("^1.2.3-beta.2", "1.2.3-beta.1", "2.0.0")
        self.yes("=1.2.3-beta.2", "1.2.3-beta.2")
        self.no("=1.2.3-beta.2", "1.2.3")
        # Build metadata is ignored on both sides.
        self.yes(">= 0.3.14", "0.3.14+libpq-18.6")
        self.yes("=1.0.4+foo", "1.0.4+wasi-0.2.12")

    def test_invalid(self):
        for bad in ("", "abc", ">= 1.2.3,", "=> 1.0.0", "1.2.3.4", ">= 1.2-alpha", "1.*.3"):
            with self.assertRaises(ValueError, msg=bad):
                VersionReq.parse(bad)


class AdvisoryTests(unittest.TestCase):
    def adv(self, patched=(), unaffected=(), informational=None) -> Advisory:
        return Advisory(
            id="RUSTSEC-0000-0000", package="x", date="2024-01-01", title="t",
            informational=informational,
            patched=[VersionReq.parse(r) for r in patched],
            unaffected=[VersionReq.parse(r) for r in unaffected],
        )

    def test_affects(self):
        a = self.adv(patched=[">= 1.2.3", "^0.9.5"], unaffected=["< 0.2"])
        v = Version.parse
        self.assertTrue(a.affects(v("1.2.2")))
        self.assertTrue(a.affects(v("0.9.4")))
        self.assertTrue(a.affects(v("0.5.0")))
        self.assertFalse(a.affects(v("1.2.3")))
        self.assertFalse(a.affects(v("0.9.7")))
        self.assertFalse(a.affects(v("0.1.9")))
        # No patched version at all: every version is affected.
        self.assertTrue(self.adv().affects(v("9.9.9")))

    def test_front_matter(self):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "RUSTSEC-2099-0001.md"
            p.write_text(
                '```toml\n[advisory]\nid = "RUSTSEC-2099-0001"\npackage = "foo"\n'
                'date = "2099-01-01"\ninformational = "unsound"\n\n'
                '[versions]\npatched = [">= 1.0.0"]\nunaffected = ["< 0.2"]\n```\n\n# Title here\n',
                encoding="utf-8",
            )
            adv, withdrawn = parse_advisory(p)
            self.assertFalse(withdrawn)
            self.assertEqual((adv.id, adv.package, adv.informational, adv.title),
                             ("RUSTSEC-2099-0001", "foo", "unsound", "Title here"))
            p.write_text(
                '```toml\n[advisory]\nid = "RUSTSEC-2099-0001"\npackage = "foo"\n'
                'date = "2099-01-01"\nwithdrawn = "2099-02-01"\n\n[versions]\npatched = []\n```\n',
                encoding="utf-8",
            )
            self.assertEqual(parse_advisory(p), (None, True))


def self_test() -> int:
    suite = unittest.TestSuite()
    loader = unittest.defaultTestLoader
    suite.addTests(loader.loadTestsFromTestCase(MatcherTests))
    suite.addTests(loader.loadTestsFromTestCase(AdvisoryTests))
    result = unittest.TextTestRunner(verbosity=1).run(suite)
    return 0 if result.wasSuccessful() else 1


def main(argv: list[str]) -> int:
    args = argv[1:]
    if args == ["--self-test"]:
        return self_test()
    if args in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if args:
        print("usage: python3 scripts/audit.py [--self-test]", file=sys.stderr)
        return 2
    try:
        return run_audit(REPO_ROOT, advisory_db_path(REPO_ROOT))
    except AuditError as e:
        print(f"audit: error: {e}", file=sys.stderr)
        return 2

if __name__ == "__main__":
    sys.exit(main(sys.argv))
