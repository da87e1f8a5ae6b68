"""Reading a policy file: YAML with a line for every problem, validated whole or not at all.

Every problem found is reported with the line it sits on (``FILE:LINE: message``) so a CI
check or an admin's ``reload`` can point at it. Each section and each resource is
validated on its own, and the checks a schema cannot make (``engine.policy_checks``) run
on everything that validated, so one run reports every independent problem.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from engine.policy import Policy, PolicyDocument, Resource
from engine.policy_checks import CheckedResource, Checks, semantic_problems


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong with a policy file, at a line."""

    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


@dataclass
class PolicyError(Exception):
    """A policy that was refused, with every problem found in it."""

    problems: list[PolicyProblem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


Path_ = tuple[str | int, ...]

# What a resource key that failed its schema is checked as, so that the resource's other
# keys still get their cross-reference checks; checks that read a failed key are skipped.
# Keys with a default are simply dropped.
_STAND_INS: dict[str, object] = {
    "id": "-",
    "name": "-",
    "risk": "low",
    "grant": {"connector": "-", "group": "-"},
    "duration": {"default": "1m", "max": "1m"},
    "approval": "auto",
}


class LineMap:
    """Where each key and list item sits in the YAML text, so errors can name a line."""

    def __init__(self) -> None:
        self.lines: dict[Path_, int] = {}
        self.duplicates: list[tuple[int, str]] = []

    def walk(self, node: yaml.Node, path: Path_ = ()) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in seen:
                    self.duplicates.append((key_node.start_mark.line + 1, key))
                seen.add(key)
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                self.walk(value_node, (*path, key))
                # The key's own line is the better pointer for the whole entry.
                self.lines[(*path, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*path, index))

    def line_of(self, path: Iterable[str | int]) -> int:
        parts = tuple(path)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return self.lines.get((), 1)


def _dotted(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def parse_policy(
    text: bytes | str,
    source: str = "<policy>",
    checks: Checks | None = None,
) -> Policy:
    """Validate policy text and return it loaded, or raise PolicyError listing every problem."""
    raw = text.encode() if isinstance(text, str) else text
    version = hashlib.sha256(raw).hexdigest()
    problems: list[PolicyProblem] = []

    def problem(line: int, message: str) -> None:
        problems.append(PolicyProblem(source, line, message))

    try:
        node = yaml.compose(raw.decode("utf-8"), Loader=yaml.SafeLoader)
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise PolicyError([PolicyProblem(source, 1, "the file is not UTF-8 text")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        reason = getattr(exc, "problem", None) or str(exc)
        raise PolicyError([PolicyProblem(source, line, f"YAML syntax: {reason}")]) from None

    lines = LineMap()
    if node is not None:
        lines.walk(node)
    for line, key in lines.duplicates:
        problem(line, f"duplicate key '{key}' (the earlier value would be silently lost)")
    if not isinstance(data, dict):
        problem(1, "a policy is a mapping with at least a 'resources' list")
        raise PolicyError(problems)
    if isinstance(data.get("directory"), dict):
        # Non-static directories carry their own settings; keep them apart from the schema.
        directory = dict(data["directory"])
        known = {"type", "people", "groups"}
        options = {k: v for k, v in directory.items() if k not in known}
        data["directory"] = {k: v for k, v in directory.items() if k in known} | {
            "options": options
        }

    document, resources, failed = _validate_sections(data, lines, problem)
    for line, message in semantic_problems(document, resources, lines, checks or Checks(), failed):
        problem(line, message)
    if problems:
        problems.sort(key=lambda p: p.line)
        raise PolicyError(problems)
    return Policy(
        document=document.model_copy(update={"resources": tuple(r.resource for r in resources)}),
        version=version,
        source=source,
    )


def _message(err: Any) -> str:
    kind, loc = err["type"], tuple(err["loc"])
    if kind == "extra_forbidden":
        return f"unknown key '{loc[-1]}'"
    if kind == "missing":
        return f"missing required key '{loc[-1]}'"
    return str(err["msg"]).removeprefix("Value error, ")


def _validate_sections(
    data: dict[str, Any], lines: LineMap, problem: Callable[[int, str], None]
) -> tuple[PolicyDocument, list[CheckedResource], frozenset[str]]:
    """Validate each section and each resource on its own, so one run reports everything.

    A resource that fails the schema is still cross-checked on its keys that validated
    (each ``CheckedResource`` says which keys failed); top-level sections that failed are
    returned as the third value, and checks against them are skipped, which would only add
    noise. The caller refuses the policy if any problem was found.
    """

    def report(exc: ValidationError, prefix: Path_) -> None:
        for err in exc.errors():
            loc = (*prefix, *tuple(err["loc"]))
            where = _dotted(loc)
            text = _message(err)
            problem(lines.line_of(loc), f"{where}: {text}" if where else text)

    top = {k: v for k, v in data.items() if k != "resources"}
    raw_resources = data.get("resources")
    failed: frozenset[str] = frozenset()
    try:
        document = PolicyDocument.model_validate({**top, "resources": ()})
    except ValidationError as exc:
        report(exc, ())
        failed = frozenset(_failed_keys(exc))
        document = PolicyDocument.model_validate(
            {k: v for k, v in {**top, "resources": ()}.items() if k not in failed}
        )
    resources: list[CheckedResource] = []
    if raw_resources is None:
        problem(lines.line_of(()), "missing required key 'resources' (a list of resources)")
    elif not isinstance(raw_resources, list):
        problem(lines.line_of(("resources",)), "resources: must be a list of resources")
    else:
        for index, item in enumerate(raw_resources):
            try:
                resources.append(CheckedResource(index, Resource.model_validate(item)))
            except ValidationError as exc:
                report(exc, ("resources", index))
                if (partial := _partial_resource(index, item, exc)) is not None:
                    resources.append(partial)
    return document, resources, failed


def _partial_resource(index: int, item: object, exc: ValidationError) -> CheckedResource | None:
    """The resource with its failed keys stood in for, to check what did validate."""
    if not isinstance(item, dict):
        return None
    # An error of the whole resource (no key) is about its approval chain.
    failed = frozenset(str(err["loc"][0]) if err["loc"] else "approval" for err in exc.errors())
    data = {k: v for k, v in item.items() if k not in failed}
    data |= {k: v for k, v in _STAND_INS.items() if k in failed or k not in item}
    if "approval" in failed:
        data.pop("auto_approve", None)
    try:
        resource = Resource.model_validate(data)
    except ValidationError:
        return None
    return CheckedResource(index, resource, failed | (_STAND_INS.keys() - item.keys()))


def _failed_keys(exc: ValidationError) -> set[str]:
    """Top-level sections that failed; they are checked as if absent (already reported)."""
    return {str(err["loc"][0]) for err in exc.errors() if err["loc"]}


def load_policy(
    path: str | Path,
    checks: Checks | None = None,
) -> Policy:
    """Read and validate the policy file at ``path``."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise PolicyError(
            [PolicyProblem(str(p), 1, f"cannot read the file: {exc.strerror}")]
        ) from None
    return parse_policy(raw, str(p), checks)
