"""Every answer the module gives matches the published schema, docs/schema.json."""

from __future__ import annotations

import json

import jsonschema
import pytest

from conftest import REPO, VECTORS

SCHEMA = json.loads((REPO / "docs/schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def test_schema_is_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_every_vector_answer_matches_the_schema(vector: str) -> None:
    answer = json.loads((VECTORS / f"{vector}.answer.json").read_bytes())
    errors = sorted(VALIDATOR.iter_errors(answer), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


@pytest.mark.parametrize("call", ["matrix", "policy_info"])
def test_matrix_and_info_match_the_schema(policy, call: str) -> None:
    answer = json.loads(getattr(policy, call)())
    VALIDATOR.validate(answer)


def test_a_schema_violation_is_caught() -> None:
    broken = {"ok": {"subjects": [{"source": {"kind": "Pod"}}]}}
    assert list(VALIDATOR.iter_errors(broken)), "the schema must reject an answer missing required fields"
