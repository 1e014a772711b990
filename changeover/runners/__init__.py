"""What both controllers run on the engine's behalf: analysis runs, webhook calls, their
SQLite store, and the router actions (``router_actions``: one action, or a fresh router
brought back to a persisted traffic state).

Shared by the local controller (``changeover.local_controller``) and the Kubernetes operator
(``changeover.operator``), which never import each other.
"""
