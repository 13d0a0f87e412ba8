"""schemathesis hooks of scripts/api-fuzz.sh.

A generated `Idempotency-Key` comes back again and again (the shortest strings
first) with other bodies, and the documented answer to a key reused with another
body is 422 - which schemathesis would count as a valid request refused. Each
valid key is therefore made unique before it is sent, so the run still checks
that every schema-valid body is accepted; key reuse is tested by
crates/user-info/tests/api/idempotency.rs. Invalid keys are sent as generated.
"""

import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    for name in list(headers):
        value = headers[name]
        if name.lower() == "idempotency-key" and isinstance(value, str) and VALID_KEY.match(value):
            headers[name] = uuid.uuid4().hex
