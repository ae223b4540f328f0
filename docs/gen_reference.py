"""The reference pages, generated from the code at each build (mkdocs-gen-files): the job
spec from its pydantic models, the HTTP API from the apps' OpenAPI schemas, the CLI from
its Typer commands, and every setting from ``Settings``. Nothing here is a copy."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import mkdocs_gen_files
import redis
import typer.main

from cluster.cli import app as cli_app
from services.gateway.app import create_app as create_gateway
from services.predictor.app import create_app as create_predictor
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.spec import JobEdit, JobSpec

# The apps are built for their schemas only: nothing connects to this address.
UNUSED_REDIS = "redis://127.0.0.1:1/0"
# A search-space parameter's domains: pydantic names each use of one after its types.
DOMAINS = re.compile(r"^(Grid|Choice|Uniform|QUniform|LogUniform|RandInt)_")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _type(schema: dict[str, Any]) -> str:
    """A JSON schema's type as a reader says it."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        domain = DOMAINS.match(name)
        if domain:
            return f'`{{"{domain.group(1).lower()}": ...}}`'
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema or "oneOf" in schema:
        kinds = [_type(s) for s in schema.get("anyOf", schema.get("oneOf", []))]
        return " or ".join(dict.fromkeys(kinds))
    if "enum" in schema:
        return " or ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        return f"map to {_type(extra) if isinstance(extra, dict) else 'any'}"
    return str(kind)


def _limits(schema: dict[str, Any]) -> str:
    words = {
        "minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<",
        "minLength": "length >=", "maxLength": "length <=", "minItems": "items >=",
        "maxItems": "items <=", "pattern": "pattern",
    }  # fmt: skip
    found = [f"{word} `{schema[key]}`" for key, word in words.items() if key in schema]
    for option in schema.get("anyOf", []):
        found += [f"{word} `{option[key]}`" for key, word in words.items() if key in option]
    return ", ".join(found)


def _model_section(name: str, schema: dict[str, Any]) -> Iterator[str]:
    yield f"## {name}\n"
    if schema.get("description"):
        yield schema["description"].strip() + "\n"
    properties = schema.get("properties", {})
    if not properties:
        return
    required = set(schema.get("required", []))
    yield "| field | type | default | limits | what it is |"
    yield "| --- | --- | --- | --- | --- |"
    for field, prop in properties.items():
        if field in required:
            default = "required"
        elif "default" in prop:
            default = f"`{json.dumps(prop['default'])}`"
        else:
            default = "its own defaults"
        description = prop.get("description", "")
        yield (
            f"| `{field}` | {_cell(_type(prop))} | {_cell(default)} | "
            f"{_cell(_limits(prop))} | {_cell(description)} |"
        )
    yield ""


def spec_page() -> str:
    lines = [
        "# Job spec reference",
        "",
        "Generated from the pydantic models in `shared/spec.py` and "
        "`shared/search_space.py` that validate every submission. A search space "
        'parameter is a constant or one domain: `{"grid": [...]}`, `{"choice": [...]}`, '
        '`{"uniform": [lo, hi]}`, `{"quniform": [lo, hi, q]}`, `{"loguniform": [lo, hi]}`, '
        '`{"randint": [lo, hi]}`. The guide with examples: [Writing a job spec]'
        "(../guides/job-spec.md).",
        "",
    ]
    for model in (JobSpec, JobEdit):
        schema = model.model_json_schema(ref_template="#/$defs/{model}")
        definitions = schema.pop("$defs", {})
        lines += list(_model_section(model.__name__, schema))
        for name, definition in definitions.items():
            if not DOMAINS.match(name) and name not in {x.removeprefix("## ") for x in lines}:
                lines += list(_model_section(name, definition))
    return "\n".join(lines) + "\n"


def _apps() -> dict[str, Any]:
    settings = Settings(redis_url=UNUSED_REDIS)

    async def predict(*args: Any, **kwargs: Any) -> Any:  # never called
        raise NotImplementedError

    registry = ModelRegistry(redis.Redis.from_url(UNUSED_REDIS))
    return {
        "": create_gateway(settings, predict),
        "/models": create_predictor(settings, registry, predict),
    }


def _operation(prefix: str, path: str, method: str, operation: dict[str, Any]) -> Iterator[str]:
    yield f"### `{method.upper()} {prefix}{path}`\n"
    text = operation.get("description") or operation.get("summary") or ""
    if text:
        yield text.strip() + "\n"
    parameters = operation.get("parameters", [])
    if parameters:
        yield "| parameter | in | type | what it is |"
        yield "| --- | --- | --- | --- |"
        for parameter in parameters:
            yield (
                f"| `{parameter['name']}` | {parameter['in']} | "
                f"{_cell(_type(parameter.get('schema', {})))} | "
                f"{_cell(parameter.get('description', ''))} |"
            )
        yield ""
    body = operation.get("requestBody", {}).get("content", {})
    for media, content in body.items():
        ref = content.get("schema", {}).get("$ref", "")
        name = ref.rsplit("/", 1)[-1] if ref else media
        yield f"Body: `{media}`" + (f", `{name}`" if ref else "") + "\n"
    codes = ", ".join(
        f"`{code}` {_cell(answer.get('description', ''))}"
        for code, answer in operation.get("responses", {}).items()
    )
    yield f"Answers: {codes}\n"


def http_page() -> str:
    lines = [
        "# HTTP API reference",
        "",
        "Generated from the OpenAPI schemas the running services answer at `/openapi.json` "
        "(the gateway) and `/models/openapi.json` (the predictor); each has its "
        "interactive page at `/docs` and `/models/docs`. Every route takes "
        "`Authorization: Bearer <key>` once keys exist (see "
        "[Keys and tenants](../guides/tenants.md)). Errors answer "
        '`{"detail": ...}` (the Open Inference Protocol\'s `/v2` routes: `{"error": ...}`).',
        "",
    ]
    for prefix, app in _apps().items():
        schema = app.openapi()
        lines += [f"## {schema['info']['title']}{' (predictor)' if prefix else ' (gateway)'}", ""]
        for path, methods in schema["paths"].items():
            for method, operation in methods.items():
                lines += list(_operation(prefix, path, method, operation))
    return "\n".join(lines) + "\n"


# Typer's commands are its own copy of click's classes: told apart by what they have.
def _commands(group: Any, path: str) -> Iterator[tuple[str, Any]]:
    for name in sorted(group.commands):
        command = group.commands[name]
        if hasattr(command, "commands"):
            yield from _commands(command, f"{path} {name}")
        else:
            yield f"{path} {name}", command


def cli_page() -> str:
    root = typer.main.get_command(cli_app)
    lines = [
        "# CLI reference",
        "",
        "Generated from the Typer commands in `cluster/`. Every command that talks to a "
        "stack takes `--url` (default `TUNEFLEET_URL`, else `http://127.0.0.1:8000`) and "
        "`--api-key` (`TUNEFLEET_API_KEY`); `tunefleet COMMAND --help` says the same.",
        "",
    ]
    for path, command in _commands(root, "tunefleet"):
        usage = " ".join(
            (param.metavar or param.name or "").upper()
            for param in command.params
            if param.param_type_name == "argument"
        )
        lines += [f"## `{path}`", "", (command.help or "").strip(), ""]
        lines += ["```text", f"{path} [OPTIONS] {usage}".rstrip(), "```", ""]
        options = [p for p in command.params if p.param_type_name == "option" and not p.hidden]
        if options:
            lines += ["| option | what it is |", "| --- | --- |"]
            for option in options:
                names = ", ".join(f"`{name}`" for name in [*option.opts, *option.secondary_opts])
                lines.append(f"| {names} | {_cell(option.help or '')} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def settings_page() -> str:
    lines = [
        "# Settings reference",
        "",
        "Every setting of a tunefleet process, read once at its start from the environment "
        "(`shared/settings.py`, generated). The guide: "
        "[Configuration](../guides/configuration.md).",
        "",
        "| variable | default | what it sets |",
        "| --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        default = field.default if not field.is_required() else "required"
        shown = json.dumps(default, default=str)
        lines.append(
            f"| `TUNEFLEET_{name.upper()}` | `{_cell(shown)}` | {_cell(field.description or '')} |"
        )
    return "\n".join(lines) + "\n"


PAGES = {
    "reference/spec.md": spec_page,
    "reference/http.md": http_page,
    "reference/cli.md": cli_page,
    "reference/settings.md": settings_page,
}


for page, build in PAGES.items():
    with mkdocs_gen_files.open(page, "w") as handle:
        handle.write(build())
