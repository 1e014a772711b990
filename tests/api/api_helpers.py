"""What the API tests share: the token they start the API with and a minimal Rollout."""

from __future__ import annotations

from typing import Any

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROLLOUT: dict[str, Any] = {
    "apiVersion": "changeover.dev/v1alpha1",
    "kind": "Rollout",
    "metadata": {"name": "chat"},
    "spec": {
        "template": {"command": ["python", "-m", "v1"]},
        "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
    },
}
