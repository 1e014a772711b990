"""Everything ``kubectl apply`` needs to run the operator: CRDs, namespace, RBAC, the
Deployment and its metrics Service.

This module is the one source: ``changeover manifests`` prints ``documents(...)`` as YAML;
``changeover install-crds`` applies ``crds.all_crds()`` (and, with ``--operator``, the rest)
through the API; ``kustomize_base()`` is the kustomize base checked in under
``deploy/kubernetes/base`` (``tools/gen_deploy.py`` writes it; a test fails when it drifts).

The operator runs two replicas; the Lease ``changeover-operator`` in its namespace elects
the one that acts (``operator.leader``), so a node failure hands over in about 15 s.
"""

from __future__ import annotations

from typing import Any

import yaml

import changeover
from changeover.platforms.kubernetes import crds

# The operator image of this version (`changeover manifests --image` names another).
DEFAULT_IMAGE = f"changeover:{changeover.__version__}"

JSON = dict[str, Any]
NAME = "changeover-operator"
METRICS_PORT = 8090
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "changeover"}

# What the operator reads and writes, and nothing more.
RULES: list[JSON] = [
    {
        "apiGroups": ["changeover.dev"],
        "resources": [
            "rollouts",
            "rollouts/status",
            "rollouts/scale",
            "analysistemplates",
            "flags",
            "flags/status",
        ],
        "verbs": ["get", "list", "watch", "update", "patch"],
    },
    {
        # serve --argo-rollouts creates a changeover Rollout for each Argo Rollout it reads
        "apiGroups": ["changeover.dev"],
        "resources": ["rollouts"],
        "verbs": ["create"],
    },
    {
        "apiGroups": ["apps"],
        "resources": ["replicasets"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    },
    {
        "apiGroups": [""],
        "resources": ["services"],
        "verbs": ["get", "list", "watch", "create", "update", "patch"],
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    # an analysis argument's valueFrom.secretKeyRef (read when its run starts, as Argo does)
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch", "list"]},
    {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": ["get", "list", "watch", "create", "delete"],
    },
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "create", "update"],
    },
    {
        "apiGroups": ["networking.k8s.io"],
        "resources": ["ingresses"],
        "verbs": ["get", "list", "watch", "create", "update", "patch"],
    },
    {
        "apiGroups": ["networking.istio.io"],
        "resources": ["virtualservices", "destinationrules"],
        "verbs": ["get", "list", "watch", "update", "patch"],
    },
    {
        "apiGroups": ["gateway.networking.k8s.io"],
        "resources": ["httproutes"],
        "verbs": ["get", "list", "watch", "update", "patch"],
    },
    {
        "apiGroups": ["split.smi-spec.io"],
        "resources": ["trafficsplits"],
        "verbs": ["get", "list", "watch", "create", "update", "patch"],
    },
    {
        # serve --argo-rollouts reads Argo's templates and writes the Argo Rollout's status
        # (what kubectl argo rollouts and Argo CD read)
        "apiGroups": ["argoproj.io"],
        "resources": ["rollouts", "analysistemplates", "clusteranalysistemplates"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": ["argoproj.io"], "resources": ["rollouts/status"], "verbs": ["update", "patch"]},
    # an Argo Rollout's workloadRef names a Deployment whose pod template it runs
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
]


def operator_documents(
    *, namespace: str = "changeover-system", image: str = DEFAULT_IMAGE, replicas: int = 2
) -> list[JSON]:
    meta = {"namespace": namespace, "labels": LABELS}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, **meta}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": NAME, "labels": LABELS},
            "rules": RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": NAME, "labels": LABELS},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": NAME,
            },
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": NAME, **meta},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
                "template": {
                    "metadata": {
                        "labels": LABELS,
                        # Scraped by a Prometheus that honours the common annotations; a
                        # PodMonitor (docs) does the same for the Prometheus Operator.
                        "annotations": {
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(METRICS_PORT),
                            "prometheus.io/path": "/metrics",
                        },
                    },
                    "spec": {
                        "serviceAccountName": NAME,
                        "containers": [
                            {
                                "name": "operator",
                                "image": image,
                                "args": [
                                    "serve",
                                    "--platform",
                                    "kubernetes",
                                    "--all-namespaces",
                                    "--lease-namespace",
                                    namespace,
                                    "--metrics-bind",
                                    f"0.0.0.0:{METRICS_PORT}",
                                ],
                                "ports": [
                                    {
                                        "name": "metrics",
                                        "containerPort": METRICS_PORT,
                                        "protocol": "TCP",
                                    }
                                ],
                                "livenessProbe": _probe("/healthz", period=10),
                                "readinessProbe": _probe("/readyz", period=5),
                                "env": [
                                    {
                                        "name": "POD_NAME",
                                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                    }
                                ],
                                "resources": {
                                    "requests": {"cpu": "100m", "memory": "128Mi"},
                                    "limits": {"memory": "512Mi"},
                                },
                                "securityContext": {
                                    "runAsNonRoot": True,
                                    "readOnlyRootFilesystem": True,
                                    "allowPrivilegeEscalation": False,
                                },
                                # The analysis runs' SQLite file (operator_analysis) lives here.
                                "volumeMounts": [{"name": "state", "mountPath": "/tmp"}],
                            }
                        ],
                        "volumes": [{"name": "state", "emptyDir": {}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"{NAME}-metrics", **meta},
            "spec": {
                "selector": {"app.kubernetes.io/name": NAME},
                "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}],
            },
        },
    ]


def _probe(path: str, *, period: int) -> JSON:
    return {
        "httpGet": {"path": path, "port": "metrics"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }


def documents(*, crds_only: bool = False, **operator: Any) -> list[JSON]:
    docs = crds.all_crds()
    return docs if crds_only else [*docs, *operator_documents(**operator)]


def to_yaml(docs: list[JSON]) -> str:
    return "---\n".join(yaml.safe_dump(doc, sort_keys=False) for doc in docs)


# The base's files, by the kinds they hold (kustomize applies them in its own order).
_BASE_FILES = {
    "crds.yaml": ("CustomResourceDefinition",),
    "namespace.yaml": ("Namespace",),
    "rbac.yaml": ("ServiceAccount", "ClusterRole", "ClusterRoleBinding"),
    "operator.yaml": ("Deployment", "Service"),
}


def kustomize_base() -> dict[str, str]:
    """The files of ``deploy/kubernetes/base``: the same objects as ``documents()``.

    The operator's namespace is written into each namespaced object (not through
    kustomize's ``namespace:`` field, which would also move the ClusterRoleBinding's
    subject), and the image is named ``changeover`` so an overlay's ``images:`` entry
    replaces it.
    """
    docs = documents(image="changeover")
    files = {}
    for name, kinds in _BASE_FILES.items():
        files[name] = to_yaml([d for d in docs if d["kind"] in kinds])
    header = (
        "# Generated from changeover/platforms/kubernetes/manifests.py by tools/gen_deploy.py.\n"
    )
    files["kustomization.yaml"] = header + yaml.safe_dump(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": list(_BASE_FILES),
            "images": [
                {"name": "changeover", "newName": "changeover", "newTag": changeover.__version__}
            ],
        },
        sort_keys=False,
    )
    return files
