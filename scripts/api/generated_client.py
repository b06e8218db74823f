"""Drives the API through a client generated from openapi/openapi.json.

Usage: generated_client.py BASE_URL ADMIN_PASSWORD HOMES_DIR
Exits non-zero when a step does not behave as the document says.
"""
import csv
import io
import sys
import uuid

from tollgate_client import AuthenticatedClient, Client
from tollgate_client.api.audit import export_events, list_events
from tollgate_client.api.auth import create_token
from tollgate_client.api.users import create_user, get_user
from tollgate_client.models import Format, NewUser

base, password, homes = sys.argv[1], sys.argv[2], sys.argv[3]

anonymous = Client(base_url=base, httpx_args={"auth": ("admin", password)})
token = create_token.sync(client=anonymous)
assert token is not None and token.token_type == "Bearer", token
client = AuthenticatedClient(base_url=base, token=token.access_token)

name = "gen-" + uuid.uuid4().hex[:8]
created = create_user.sync(
    client=client,
    body=NewUser(username=name, password="generated-client-pw", home=f"{homes}/{name}"),
)
assert created is not None and created.username == name, created
fetched = get_user.sync(client=client, username=name)
assert fetched.version == created.version and fetched.has_password, fetched

page = list_events.sync(client=client, action="UserCreated", user=name)
assert page is not None and len(page.items) == 1, page
event = page.items[0]
assert event.event_type == "UserCreated" and event.outcome == "success", event
assert event.resource == f"user/{name}", event

# The generated parser of a multi-type binary body reads it as text, so the
# export is requested as the generated code builds it and its bytes read here.
request = export_events._get_kwargs(format_=Format.CSV, action="UserCreated")
exported = client.get_httpx_client().request(**request)
assert exported.status_code == 200, exported
assert exported.headers["content-type"].startswith("text/csv"), exported.headers
rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
assert any(row["user"] == name and row["event_type"] == "UserCreated" for row in rows), rows
print(f"generated client: created {name}, listed {len(page.items)} event, exported {len(rows)} rows")
