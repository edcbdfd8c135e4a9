"""A local eBox over real TLS: the OAuth2 token endpoint, the federation searches and the Message
Registry's publication, status and message-type operations, under the production URL prefixes.

- `state.py`: what the sandbox knows (clients, tokens, recipients, publications, message types);
- `validation.py`: requests checked against the published contract, errors as `StatusMessage`;
- `faults.py`: injected latency, error answers, late answers, dropped connections (token endpoint too);
- `app.py`: the ASGI application and `SandboxServer`, which runs it in a thread or as a process:
  `python -m sandboxes.ebox --port 8443 --dir var/ebox-sandbox`.

Its own routes are described in docs/ebox-sandbox-openapi.yaml.
"""

from sandboxes.ebox.app import SandboxServer, create_app
from sandboxes.ebox.state import SandboxState

__all__ = ["SandboxServer", "SandboxState", "create_app"]
