"""schemathesis against our OpenAPI schema, for a bounded number of generated cases per
operation: no 5xx, every status documented, every response body matching its schema."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from dream.server import Settings, create_app  # noqa: E402
from tests.server import fakes, tiny  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 15

# schemathesis collects operations from a schema built at import time, so the app is too
# (a throwaway folder; models load on first use, since no lifespan runs under its transport).
_DIR = Path(tempfile.mkdtemp(prefix="dream-schemathesis-"))
with tiny.installed():  # the engine keeps its spec objects; the catalog forgets them again
    APP = create_app(Settings(
        specs=["tiny-16"], db_url=f"sqlite:///{_DIR / 'ledger.sqlite3'}", data_dir=str(_DIR / "data"), batch_window_ms=0,
        rate_limit_rps=0, max_concurrent_rollouts=0, load_on_startup=False, payment_provider=fakes.FakePayments(),
        max_body_bytes=1024 * 1024,
    ))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module")
def fuzz_key():
    svc = APP.state.services
    svc.start()
    yield svc.ledger.create_key("fuzz", credits_mils=10_000_000).key
    svc.stop()
    shutil.rmtree(_DIR, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, fuzz_key) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {fuzz_key}"}, checks=CHECKS)
