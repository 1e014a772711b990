"""The Kubernetes platform: a revision is a ReplicaSet owned by a ``Rollout`` resource.

Modules: ``client`` (the asyncio REST client) and ``kubeconfig``; ``crds`` and
``manifests`` (what ``changeover install-crds`` / ``manifests`` produce); ``names``
(labels, annotations, hashes); ``replicasets`` (``KubePlatform``: revisions, scaling,
observation); ``hooks`` (recreate hooks as Jobs); ``events`` (Kubernetes Events).
The operator loop that drives them with the engine lives in ``changeover.operator``.
"""
