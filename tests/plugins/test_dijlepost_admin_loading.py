"""Loading the plugin module (as the scheduler, DAG processor and workers do) stays cheap: it imports
neither FastAPI nor the admin app nor Airflow's API security, and declares what the API server needs.
A fresh interpreter, so that nothing imported by other tests hides an import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("dijlepost_admin", "plugins/dijlepost_admin.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
plugin = module.DijlepostAdminPlugin
print(json.dumps({
    "imported": [m for m in ("fastapi", "include.dijlepost.admin.app", "psycopg",
                             "airflow.api_fastapi.core_api.security") if m in sys.modules],
    "name": plugin.name,
    "apps": [{"url_prefix": a["url_prefix"], "name": a["name"], "callable": callable(a["app"])}
             for a in plugin.fastapi_apps],
    "views": plugin.external_views,
}))
"""


def test_loading_the_plugin_imports_nothing_heavy_and_declares_the_app_and_the_menu_entry():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["imported"] == []
    assert info["name"] == "dijlepost_admin"
    assert info["apps"] == [
        {"url_prefix": "/dijlepost-rollout", "name": "dijlepost rollout administration", "callable": True}
    ]
    # Airflow refuses prefixes it reserves; the menu entry shows the mounted page inside the UI
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES

    assert not any(info["apps"][0]["url_prefix"].startswith(p) for p in RESERVED_URL_PREFIXES)
    assert info["views"] == [
        {
            "name": "Rollout",
            "href": "/dijlepost-rollout/",
            "url_route": "dijlepost-rollout",
            "destination": "nav",
            "category": "admin",
        }
    ]
