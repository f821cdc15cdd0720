"""Internal: retry with edited params: the form's fields, and the params posted back.

Retry with edited params: the form's fields for a job's method, and turning what was posted
into params the factory accepts (or the errors to show beside the fields).

Each parameter of the method is one field holding its value as JSON; text that is not JSON is
taken as a string (as ``jobkit run -p key=value`` does); an empty field leaves the parameter
out (its default applies); JSON nested deeper than the dashboard parses is an error beside its
field. A secret parameter's field is shown empty; left empty (or, through the API, left out) it
keeps the stored value. A secret nested in a value is shown as ``***``; left so, it keeps its
stored value too: the dashboard never shows a secret, nor asks for it again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from jobkit.dashboard.limits import TooDeep, load_json
from jobkit.exceptions import InvalidParameters
from jobkit.factory import signature_of
from jobkit.masking import MASK, is_secret, mask_secrets
from jobkit.records import JobRecord
from jobkit.registry import JobSpec

#: Form fields are named ``param.<name>``.
PREFIX = "param."


@attrs.frozen
class Field:
    """One parameter as the form shows it."""

    name: str
    value: str  # the current value as JSON; "" for a secret or a parameter not given
    secret: bool
    required: bool
    error: str | None = None


def fields_of(spec: JobSpec, record: JobRecord,
              posted: Mapping[str, str] | None = None,
              errors: Mapping[str, str] | None = None) -> list[Field]:
    """The form's fields for ``record``'s method.

    Its parameters, then any other key its params hold (a method taking ``**kwargs``); ``posted``
    values and ``errors`` when shown again."""
    signature = signature_of(spec.cls, record.method)
    params = record.params if isinstance(record.params, dict) else {}
    names = [p.name for p in signature.parameters if p.kind not in (p.VAR_POSITIONAL,
                                                                      p.VAR_KEYWORD)]
    names += [key for key in params if key not in names]
    required = {p.name for p in signature.parameters if p.default is p.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    found = []
    for name in names:
        secret = is_secret(name)
        if posted is not None:
            value = "" if secret else posted.get(PREFIX + name, "")
        elif secret or name not in params:
            value = ""
        else:  # a secret nested in a value is masked too
            value = json.dumps(mask_secrets(params[name]), ensure_ascii=False)
        found.append(Field(name, value, secret, name in required, (errors or {}).get(name)))
    return found


def edited_params(record: JobRecord, posted: Mapping[str, str]) -> dict[str, Any]:
    """The params to run again with, from the posted fields.

    The params to run again with, from the posted fields (the factory then checks them, as
    for any enqueue); ``InvalidParameters`` naming each field whose JSON nests too deep."""
    stored = record.params if isinstance(record.params, dict) else {}
    params: dict[str, Any] = {}
    too_deep: dict[str, str] = {}
    for key, text in posted.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX):]
        if not name:
            continue
        if not text.strip():
            continue
        try:
            params[name] = _unmasked(load_json(text, "the value"), stored.get(name))
        except TooDeep as exc:
            too_deep[name] = str(exc)
        except json.JSONDecodeError:
            params[name] = text  # plain text is a string
    if too_deep:
        raise InvalidParameters(record.name, record.method, too_deep)
    for name, value in stored.items():  # a secret left empty, or out, keeps its value
        if is_secret(name) and not posted.get(PREFIX + name, "").strip():
            params[name] = value
    for name, value in params.items():  # plain text too may show a URL's password masked
        if isinstance(value, str):
            params[name] = _unmasked(value, stored.get(name))
    return params


def _unmasked(edited: Any, stored: Any) -> Any:
    """``edited`` with each secret left masked given back its stored value.

    ``edited`` with each secret still showing the mask given back its stored value (the form
    showed nested secrets and the passwords of URLs masked)."""
    if isinstance(edited, str) and isinstance(stored, str):
        return stored if edited != stored and edited == mask_secrets(stored) else edited
    if isinstance(edited, dict) and isinstance(stored, dict):
        return {
            key: stored[key] if is_secret(key) and value == MASK and key in stored
            else _unmasked(value, stored.get(key))
            for key, value in edited.items()
        }
    if isinstance(edited, list) and isinstance(stored, list):
        return [_unmasked(value, stored[i] if i < len(stored) else None)
                for i, value in enumerate(edited)]
    return edited
