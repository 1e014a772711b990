"""The Kubernetes API as changeover talks to it, shared by the platform and the routers.

Modules: ``client`` (the asyncio REST client, its resources and errors), ``kubeconfig``
(credentials from a kubeconfig file or the pod's service account) and ``names`` (the
labels, annotations and object names every Kubernetes module agrees on). The platform
(``platforms.kubernetes``), the Kubernetes routers (``traffic.kubernetes``) and the
operator build on it; it imports nothing of theirs.
"""
