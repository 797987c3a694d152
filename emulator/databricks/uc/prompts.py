"""UC prompt registry (``/api/2.0/mlflow/unity-catalog/prompts...``): the name check only.

``mlflow.genai.register_prompt`` / ``load_prompt`` on registry ``databricks-uc`` name the prompt in
the path (``prompts/{name}/...``) or in the body (``prompts`` create: ``name``, ``prompt.name``). A
name that is not ``catalog.schema.prompt`` is refused with the prompt wording (the client passes the
server's message through), never the model one. The prompt registry itself is not emulated: a
well-formed name goes on to the app's 501 NOT_IMPLEMENTED.
"""

from __future__ import annotations

from urllib.parse import unquote

from flask import Flask, request

from emulator.databricks.uc.views import PREFIX
from emulator.errors import error_response

PROMPTS = f"{PREFIX}/prompts"
# fidelity: Evaluation datasets, traces and prompts
BAD_PROMPT_NAME = ("Bad prompt name: please specify all three levels of the prompt in the form "
                   "`catalog_name.schema_name.prompt_name`")


def is_three_levels(name) -> bool:
    parts = name.split(".") if isinstance(name, str) else []
    return len(parts) == 3 and all(p.strip() for p in parts)


def _names_in_request() -> list:
    """The prompt names a call carries: the path segment after ``prompts/``, or the create body's."""
    rest = request.path[len(PROMPTS):]
    if rest.startswith("/"):
        segment = unquote(rest[1:].split("/", 1)[0])
        return [] if segment == "search" else [segment]
    if request.method == "POST":  # prompts create
        body = request.get_json(force=True, silent=True)
        body = body if isinstance(body, dict) else {}
        prompt = body.get("prompt") if isinstance(body.get("prompt"), dict) else {}
        return [body.get("name", prompt.get("name"))]
    return []


def install(app: Flask) -> None:
    @app.before_request
    def _prompt_name_has_three_levels():
        if request.path != PROMPTS and not request.path.startswith(PROMPTS + "/"):
            return None
        if any(not is_three_levels(name) for name in _names_in_request()):
            return error_response("INVALID_PARAMETER_VALUE", BAD_PROMPT_NAME, 400)
        return None
