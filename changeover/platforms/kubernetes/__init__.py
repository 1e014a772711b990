"""The Kubernetes platform: a revision is a ReplicaSet owned by a ``Rollout`` resource.

Modules: ``crds`` and ``manifests`` (what ``changeover install-crds`` / ``manifests``
produce); ``replicasets`` (``KubePlatform``: revisions, scaling, observation); ``informer``
(watch-fed caches); ``hooks`` (recreate hooks as Jobs); ``events`` (Kubernetes Events).
The REST client, kubeconfig and the shared labels and names are ``changeover.kube``; the
operator loop that drives all of them with the engine lives in ``changeover.operator``.
"""
