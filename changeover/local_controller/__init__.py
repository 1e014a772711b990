"""The local controller: ``changeover serve`` on this machine.

``loop`` (the controller loop), ``local_executor`` (engine actions on the local platform and
its routers), ``rollout_store`` (rollouts, revisions and events in SQLite),
``local_service`` (the user operations of ``rollout_service.RolloutService``).
``changeover.local_server`` wires them with the HTTP API.
"""
