"""The ``Rollout`` and ``AnalysisTemplate`` CustomResourceDefinitions, generated from the spec.

The Rollout's OpenAPI schema is derived from ``spec.models.RolloutSpec`` (pydantic's JSON
schema, rewritten into the *structural* subset a 1.20 API server accepts: ``$ref``\\ s
inlined, ``anyOf [X, null]`` → ``X`` + ``nullable``, int-or-percent → ``x-kubernetes-int-
or-string``, unions and durations (``30s`` or ``30``) left open). So the CRD can never
drift from the models; the models stay the authority (the operator and ``apply`` validate
with them and report field paths), the schema makes ``kubectl apply`` catch the shape.

    >>> crd = rollout_crd()
    >>> crd["spec"]["versions"][0]["subresources"]["status"]
    {}
    >>> [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]][:3]
    ['Phase', 'Step', 'Weights']

Called by ``platforms.kubernetes.manifests`` (``changeover manifests`` / ``install-crds``).
"""

from __future__ import annotations

from typing import Any

from changeover.spec import models

JSON = dict[str, Any]
GROUP = "changeover.dev"
VERSION = "v1alpha1"
OPEN: JSON = {"x-kubernetes-preserve-unknown-fields": True}
_KEEP = (
    "type",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "format",
)


def structural(schema: JSON, defs: JSON | None = None) -> JSON:
    """A pydantic JSON schema as a structural OpenAPI v3 schema (see the module doc)."""
    defs = schema.get("$defs", {}) if defs is None else defs
    if "$ref" in schema:
        return structural(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    for union in ("anyOf", "oneOf"):
        if union in schema:
            options = [o for o in schema[union] if o.get("type") != "null"]
            nullable = len(options) < len(schema[union])
            types = sorted(o.get("type", "") for o in options)
            if len(options) == 1:
                picked = structural(options[0], defs)
            elif types == ["integer", "string"]:
                picked = {"x-kubernetes-int-or-string": True}
            else:
                picked = dict(OPEN)
            return {**picked, "nullable": True} if nullable else picked
    if "const" in schema:
        return {"type": "string", "enum": [schema["const"]]}
    kind = schema.get("type")
    if kind == "number":
        # Durations are written "30s" as often as 30: the models check them.
        return dict(OPEN)
    out: JSON = {k: schema[k] for k in _KEEP if k in schema}
    if "exclusiveMinimum" in schema:
        out["minimum"], out["exclusiveMinimum"] = schema["exclusiveMinimum"], True
    if "exclusiveMaximum" in schema:
        out["maximum"], out["exclusiveMaximum"] = schema["exclusiveMaximum"], True
    if kind == "array":
        out["items"] = structural(schema.get("items", {}), defs) if schema.get("items") else OPEN
    if kind == "object" or "properties" in schema:
        out["type"] = "object"
        if "properties" in schema:
            out["properties"] = {
                name: structural(sub, defs) for name, sub in schema["properties"].items()
            }
            if schema.get("required"):
                out["required"] = list(schema["required"])
        else:
            extra = schema.get("additionalProperties", True)
            if isinstance(extra, dict) and extra.get("type") in ("string", "integer", "boolean"):
                out["additionalProperties"] = structural(extra, defs)
            else:
                out.update(OPEN)
    if not out or ("type" not in out and "x-kubernetes-int-or-string" not in out):
        return dict(OPEN)
    return out


def rollout_spec_schema() -> JSON:
    schema = models.RolloutSpec.model_json_schema(by_alias=True, mode="validation")
    out = structural(schema)
    # The template is a pod template on Kubernetes: the API server validates pods itself
    # when the operator creates ReplicaSets; here it stays open (it is huge and versioned).
    out["properties"]["template"] = {"type": "object", **OPEN}
    return out


STATUS_SCHEMA: JSON = {
    "type": "object",
    **OPEN,
    "properties": {
        "phase": {"type": "string"},
        "message": {"type": "string"},
        "stepText": {"type": "string"},
        "weightsText": {"type": "string"},
        "stableRevision": {"type": "integer", "nullable": True},
        "canaryRevision": {"type": "integer", "nullable": True},
        "targetRevision": {"type": "integer", "nullable": True},
        "observedGeneration": {"type": "integer"},
        "replicas": {"type": "integer"},
        "readyReplicas": {"type": "integer"},
        "selector": {"type": "string"},
    },
}

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Step", "type": "string", "jsonPath": ".status.stepText"},
    {"name": "Weights", "type": "string", "jsonPath": ".status.weightsText"},
    {"name": "Stable", "type": "integer", "jsonPath": ".status.stableRevision"},
    {"name": "Canary", "type": "integer", "jsonPath": ".status.canaryRevision"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

FLAG_PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Variant", "type": "string", "jsonPath": ".status.rollout.variant"},
    {"name": "Weight", "type": "integer", "jsonPath": ".status.rollout.weight"},
    {"name": "Step", "type": "integer", "jsonPath": ".status.rollout.stepIndex"},
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _crd(kind: str, plural: str, spec_schema: JSON, *, rollout: bool) -> JSON:
    version: JSON = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "required": ["spec"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    "spec": spec_schema,
                    "status": STATUS_SCHEMA if rollout else {"type": "object", **OPEN},
                },
            }
        },
    }
    if kind == "Flag":
        # The operator walks a flag rollout in status; users' spec writes cannot clobber it.
        version["subresources"] = {"status": {}}
        version["additionalPrinterColumns"] = FLAG_PRINTER_COLUMNS
    if rollout:
        version["subresources"] = {
            "status": {},
            "scale": {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector",
            },
        }
        version["additionalPrinterColumns"] = PRINTER_COLUMNS
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "changeover"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "categories": ["changeover"],
            },
            "versions": [version],
        },
    }


def rollout_crd() -> JSON:
    return _crd("Rollout", "rollouts", rollout_spec_schema(), rollout=True)


def analysis_template_crd() -> JSON:
    # Analysis owns the AnalysisTemplate's shape; the operator reads it with those models.
    return _crd("AnalysisTemplate", "analysistemplates", {"type": "object", **OPEN}, rollout=False)


def flag_crd() -> JSON:
    """The Flag's spec schema comes from ``spec.flag.FlagSpec`` like the Rollout's; the
    operator's OFREP endpoint validates each Flag with the model itself."""
    from changeover.spec import flag as spec_flag

    schema = structural(spec_flag.FlagSpec.model_json_schema(by_alias=True))
    return _crd("Flag", "flags", schema, rollout=False)


def all_crds() -> list[JSON]:
    return [rollout_crd(), analysis_template_crd(), flag_crd()]
