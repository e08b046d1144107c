"""Schemathesis against the admin API, driven by the OpenAPI document the API serves about
itself: every operation called with data drawn from its schema (and, negatively, with data
that breaks it), through a real gateway over HTTP, with a real admin token.

Each answer must be no 5xx, a status the document lists for the operation, of the content
type and schema it documents, with the headers it documents; every error must be in the
Anthropic shape with the ``request-id`` the header carries; and data that breaks the schema
must be refused with a 4xx. test_admin_api.py checks named calls against the same document;
this lets the generator pick the calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.admin.harness import ADMIN_PREFIX, AdminGateway
from tests.admin.test_admin_api import ADMINS, _sections
from tests.audit.filled import fill
from tests.fuzzing import examples
from ztgate.admin.openapi import openapi_document

schema = schemathesis.openapi.from_dict(openapi_document())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


def anthropic_error_shape(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Every refusal is the Anthropic error envelope, with the request id of its header."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict), body
    assert body.get("type") == "error", body
    error = body.get("error")
    assert isinstance(error, dict), body
    assert isinstance(error.get("type"), str), body
    assert isinstance(error.get("message"), str), body
    assert error["message"], body
    assert body.get("request_id") == response.headers["request-id"][0], body
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    anthropic_error_shape,
]


@pytest.fixture(scope="module")
def admin_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AdminGateway, str]]:
    """A gateway over a filled SQLite store, and an admin's token (a member of ``auditors``;
    it lives ten minutes, longer than this module runs)."""
    directory = tmp_path_factory.mktemp("openapi-fuzz")
    url = f"sqlite:///{directory}/audit.db"
    filled = asyncio.run(fill(url))
    gateway = AdminGateway(url, **_sections(filled, Path(directory)))
    try:
        yield gateway, gateway.token(ADMINS)
    finally:
        gateway.close()


@schema.parametrize()
@settings(max_examples=examples(15), deadline=None)
def test_the_admin_api_keeps_to_its_document(
    case: Case[Any], admin_api: tuple[AdminGateway, str]
) -> None:
    gateway, token = admin_api
    if not (case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER)):
        # The document's bearer scheme, with a real admin token in place of the generated
        # one; a case that breaks the header on purpose keeps what it made (a 401 is due).
        case.headers["Authorization"] = f"Bearer {token}"  # the dict ignores case
    response = case.call(base_url=gateway.url + ADMIN_PREFIX, timeout=30)
    case.validate_response(response, checks=CHECKS)


@schema.parametrize()
@settings(max_examples=examples(5), deadline=None)
def test_without_a_token_every_operation_answers_401_in_the_anthropic_shape(
    case: Case[Any], admin_api: tuple[AdminGateway, str]
) -> None:
    """No operation answers anything but 401 to a caller without a token (Slack's button
    URL, which Slack signs instead, refuses an unsigned click with 400 or 401)."""
    gateway, _ = admin_api
    case.headers.pop("Authorization", None)  # the dict ignores case
    response = case.call(base_url=gateway.url + ADMIN_PREFIX, timeout=30)
    slack = case.operation.path.endswith("/slack")
    assert response.status_code in ((400, 401) if slack else (401,)), response.text
    case.validate_response(
        response,
        checks=[not_a_server_error, status_code_conformance, anthropic_error_shape],
    )


# --- query strings beyond what the document's types generate ---------------------------------

_DOCUMENT = openapi_document()
_GET_FILTERS = {
    path: [p["name"] for p in item["get"]["parameters"] if p["in"] == "query"]
    for path, item in _DOCUMENT["paths"].items()
    if "get" in item and "{" not in path
}
# Digits of every kind (``²`` and ``٣`` are digits to ``str.isdigit``), signs, white space.
_VALUES = st.text(
    st.characters(categories=["Nd", "No", "Zs", "Cc"]) | st.sampled_from("-+.eE:Tdhm,"),
    max_size=12,
) | st.text(max_size=12)


@settings(max_examples=examples(60), deadline=None)
@given(
    case=st.sampled_from(sorted(_GET_FILTERS)).flatmap(
        lambda path: st.tuples(
            st.just(path),
            st.dictionaries(
                st.sampled_from(_GET_FILTERS[path] or ["x"]), _VALUES, min_size=1, max_size=3
            ),
        )
    )
)
def test_any_filter_value_gets_a_clean_answer(
    admin_api: tuple[AdminGateway, str], case: tuple[str, dict[str, str]]
) -> None:
    """A filter of any spelling is answered (200) or refused in the Anthropic shape (400),
    never a 5xx: what schemathesis draws for an ``integer`` never holds ``²``."""
    gateway, token = admin_api
    path, params = case
    response = gateway.get(path, token, **params)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        body = response.json()
        assert body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error"
        assert body["request_id"] == response.headers["request-id"]


@pytest.mark.parametrize("path", ["/audit/events", "/sessions"])
@pytest.mark.parametrize("digit", ["²", "①", "𝟗"])
def test_a_limit_in_other_digits_is_refused_with_a_400(
    admin_api: tuple[AdminGateway, str], path: str, digit: str
) -> None:
    """Regression (found by the fuzzer above): ``limit=²`` passed ``str.isdigit`` and failed
    ``int``, and the admin API, which has no net for an unexpected exception, answered a
    plain-text 500 without a request id. Every admin route now checks its query against
    the schema its document shows (admin/parameters.py: ASCII digits only), and the admin
    API answers a bug in the Anthropic shape."""
    gateway, token = admin_api
    response = gateway.get(path, token, limit=digit)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("path", "name"),
    [(path, name) for path, names in sorted(_GET_FILTERS.items()) for name in names],
)
def test_an_empty_filter_is_taken_only_where_the_document_says_so(
    admin_api: tuple[AdminGateway, str], path: str, name: str
) -> None:
    """Regression (found by schemathesis: ``?decision=`` and ``?limit=`` answered 200 where
    the document's enum and integer schemas do not allow an empty value): the audit and
    session filters read an empty value as a filter left out, as the CLI does, so the
    document says ``allowEmptyValue`` for them (and the reviews' filters refuse one): both
    come from one table, admin/parameters.py."""
    gateway, token = admin_api
    response = gateway.get(path, token, **{name: ""})
    (parameter,) = [p for p in _DOCUMENT["paths"][path]["get"]["parameters"] if p["name"] == name]
    assert response.status_code in (200, 400), response.text
    schema_ = parameter["schema"]
    empty_is_valid = schema_.get("type") == "string" and "" in schema_.get("enum", [""])
    if response.status_code == 200 and not empty_is_valid:
        assert parameter.get("allowEmptyValue") is True, (
            f"{path}?{name}= answers 200, but its schema {schema_} takes no empty value "
            "and the document does not say allowEmptyValue"
        )
