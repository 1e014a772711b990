"""Argo Rollouts' rollbackWindow, progressDeadlineAbort and canary scaleDownDelaySeconds
carry over with their meaning."""

from __future__ import annotations

from pathlib import Path

from changeover import importers
from changeover.spec import load

# Argo Rollouts' docs (features/rollback): a window of 3 revisions.
DOC = """
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: rollback-window
spec:
  replicas: 2
  revisionHistoryLimit: 5
  rollbackWindow:
    revisions: 3
  progressDeadlineSeconds: 120
  progressDeadlineAbort: true
  template:
    metadata:
      labels: {app: rollback-window}
    spec:
      containers:
      - name: app
        image: argoproj/rollouts-demo:blue
        ports: [{containerPort: 8080}]
  strategy:
    canary:
      scaleDownDelaySeconds: 10
      steps:
      - setWeight: 20
      - pause: {}
"""


def test_rollback_window_and_deadline_abort_are_carried(tmp_path: Path) -> None:
    source = tmp_path / "rollout.yaml"
    source.write_text(DOC)
    result = importers.import_path(str(source))
    (body,) = result.documents
    (rollout,) = load.parse_rollouts([load.LoadedDocument(source=str(source), index=0, data=body)])
    assert rollout.spec.rollback_window is not None
    assert rollout.spec.rollback_window.revisions == 3
    assert rollout.spec.progress_deadline_abort is True
    assert rollout.spec.progress_deadline_seconds == 120
    assert rollout.spec.strategy.canary is not None
    assert rollout.spec.strategy.canary.scale_down_delay_seconds == 10
    notes = " ".join(str(n) for n in result.notes)
    assert "rollbackWindow" not in notes and "progressDeadlineAbort" not in notes
    assert "scaleDownDelaySeconds" not in notes
