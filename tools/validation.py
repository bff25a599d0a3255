"""Turns a rejected tool argument into a short sentence the model can act on.

Pydantic's own message repeats the whole input (up to 50,000 characters of content); the model only needs
to know which argument broke which rule.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError


class NoArguments(BaseModel):
    """The tool takes no arguments."""


def describe_validation_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in item.get("loc", ())) or "arguments"
        problems.append(f"{field}: {item.get('msg', 'invalid')}")
    return "Invalid tool arguments, nothing was done. " + "; ".join(problems) + "."
