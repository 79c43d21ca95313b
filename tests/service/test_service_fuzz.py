"""Property-based fuzzing of the OpenAPI schema with schemathesis: no 5xx, responses match the schema.

Uses schemathesis' Python API (operations -> hypothesis strategies of cases) on the ASGI app,
with a bounded number of examples per operation (positive and negative data).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

EXAMPLES = 8


def _operations(app):  # noqa: ANN001, ANN202
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [r.ok() for r in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_schema(shared_env, mode) -> None:  # noqa: ANN001
    ops = _operations(shared_env.app)
    assert len(ops) >= 10
    runs_before = shared_env.app.state.access.forecasts().run_keys()
    written_before = shared_env.app.state.access.forecasts().latest().written_at
    seen: dict[str, set[int]] = {}

    for op in ops:

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def check(case) -> None:  # noqa: ANN001
            if case.method.upper() == "POST":
                case.headers = {**(case.headers or {}), "X-API-Key": "not-the-key"}
            response = case.call()
            seen.setdefault(case.operation.label, set()).add(response.status_code)
            assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
            if mode is GenerationMode.POSITIVE or response.status_code < 300:
                case.validate_response(response, checks=[schemathesis.checks.not_a_server_error, schemathesis.checks.response_schema_conformance, schemathesis.checks.status_code_conformance, schemathesis.checks.content_type_conformance])

        try:
            check()
        except Unsatisfiable:
            # negative mode: an operation without parameters has no invalid input to generate
            assert mode is GenerationMode.NEGATIVE and not list(op.iter_parameters()), op.label
    # admin routes were called with a wrong key: nothing changed
    fc = shared_env.app.state.access.forecasts()
    assert fc.run_keys() == runs_before and fc.latest().written_at == written_before
    assert seen.get("POST /v1/admin/forecast", {401}) <= {401, 422}
    assert any(code == 200 for codes in seen.values() for code in codes) or mode is GenerationMode.NEGATIVE
