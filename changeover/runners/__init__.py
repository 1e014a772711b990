"""What both controllers run on the engine's behalf: analysis runs, webhook calls, their
SQLite store, and re-applying a persisted traffic state to a fresh router.

Shared by the local controller (``changeover.local_controller``) and the Kubernetes operator
(``changeover.operator``), which never import each other.
"""
