"""Job spec files, JSON or YAML, read the same way by the CLI and the SDK."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from shared.errors import InvalidInputError

JSON_SUFFIXES = (".json",)
YAML_SUFFIXES = (".yaml", ".yml")
STDIN = "-"


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's floats: plain PyYAML (YAML 1.1) reads
    ``lr: 1e-3`` as the string "1e-3", which a search space would then refuse."""


SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.VERBOSE,
    ),
    list("-+0123456789."),
)


def read_spec(source: str | Path) -> dict[str, Any]:
    """The job spec in a file (``-`` for stdin): JSON for ``.json``, YAML for ``.yaml``
    and ``.yml``; else JSON if it opens with ``{`` or ``[``, YAML if not.
    InvalidInputError names the line of a syntax error, or says that the file holds no
    mapping of spec fields."""
    if str(source) == STDIN:
        name, text = "stdin", sys.stdin.read()
    else:
        path = Path(source)
        try:
            name, text = str(path), path.read_text()
        except OSError as exc:
            raise InvalidInputError(f"cannot read the job spec {path}: {exc.strerror}") from exc
    return parse_spec(text, name)


def parse_spec(text: str, name: str) -> dict[str, Any]:
    """A job spec from its text; ``name`` (a file name, or "stdin") goes in the errors."""
    suffix = Path(name).suffix.lower()
    if suffix in YAML_SUFFIXES:
        return _mapping(_yaml(text, name), name)
    # Text that opens with a bracket is JSON (flow-style YAML would too, but almost no
    # spec is written so, and a typo in JSON that still parses as YAML would go on to
    # the gateway as some other spec, with a puzzling error).
    if suffix in JSON_SUFFIXES or text.lstrip().startswith(("{", "[")):
        return _mapping(_json(text, name), name)
    return _mapping(_yaml(text, name), name)


def _json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _json_error(exc, name) from exc


def _json_error(exc: json.JSONDecodeError, name: str) -> InvalidInputError:
    return InvalidInputError(
        f"{name} is not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}"
    )


def _yaml(text: str, name: str) -> Any:
    try:
        return yaml.load(text, Loader=SpecLoader)  # SpecLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        message = f"{name} is not valid YAML: {where}{exc.problem or exc.context}"
        if exc.problem and exc.context and exc.context_mark:
            # Where the unclosed bracket or the block began, often the line to fix.
            message += f" ({exc.context} from line {exc.context_mark.line + 1})"
        raise InvalidInputError(message) from exc
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{name} is not valid YAML: {exc}") from exc


def _mapping(spec: Any, name: str) -> dict[str, Any]:
    if not isinstance(spec, dict):
        kind = "nothing" if spec is None else f"a {type(spec).__name__}"
        raise InvalidInputError(
            f"{name} holds {kind}, not a job spec: a mapping of fields such as dataset "
            "and search_space (docs/guides/job-spec.md)"
        )
    return spec
