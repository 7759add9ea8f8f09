"""Every shared vector through the wasm module must match the native core's answer."""

from __future__ import annotations

import json

from conftest import DUMP_HINT, GOOD_REQUEST, VECTORS, canonical, vector_names


def test_vector_matches_native(policy, vector):
    assert vector is not None, f"no vectors in {VECTORS}: run `{DUMP_HINT}` or set SIDEKILL_VECTORS_OUT"
    request = (VECTORS / f"{vector}.request.json").read_bytes()
    answer_path = VECTORS / f"{vector}.answer.json"
    assert answer_path.is_file(), f"{answer_path} is missing: re-run `{DUMP_HINT}`"
    assert canonical(policy.plan(request)) == canonical(answer_path.read_bytes())


def test_every_answer_has_a_request():
    names = set(vector_names())
    orphans = sorted(p.name for p in VECTORS.glob("*.answer.json")
                     if p.name[: -len(".answer.json")] not in names)
    assert not orphans, f"answers without a request in {VECTORS}: {orphans}"


def test_one_instance_serves_every_vector_in_turn(policy):
    names = vector_names()
    assert names, f"no vectors in {VECTORS}"
    for _ in range(2):
        for name in names:
            answer = policy.plan((VECTORS / f"{name}.request.json").read_bytes())
            assert canonical(answer) == canonical((VECTORS / f"{name}.answer.json").read_bytes()), name


def test_classify_matrix_and_info_answer_ok(policy):
    info = json.loads(policy.policy_info())["ok"]
    assert {"name", "version", "features", "presetsHash"} <= info.keys()
    assert "ok" in json.loads(policy.matrix())
    assert "ok" in json.loads(policy.classify(GOOD_REQUEST))
    assert "ok" in json.loads(policy.plan(GOOD_REQUEST))
