"""changeover.validation: specs checked against what changeover can do, every problem at once.

It sits above ``spec``, ``traffic`` and ``analysis``: a spec alone cannot know which router
can mirror or which metric provider exists, so the checks that must ask are here, and
``spec`` imports none of those layers. Routers and providers are looked up by name in their
registries (``traffic.base``, ``analysis.providers.base``), which import no implementation
to answer.

    specs = validation.read("rollouts/")        # load + parse + check; SpecError on any error
    problems = validation.lint("rollout.yaml")  # the same, as a list (warnings too); never raises
    problems = validation.validate_rollouts(rollouts, source="request")

Modules: ``specs`` (the entry points), ``routers`` (what the chosen router must be able to
do), ``analysis_checks`` (analysis blocks, AnalysisTemplates, webhooks, notifications).
"""

from changeover.validation.analysis_checks import (
    absent_template,
    check_rollouts,
    parse_templates,
)
from changeover.validation.specs import (
    check_documents,
    check_rollout,
    lint,
    read,
    read_text,
    validate_rollouts,
)

__all__ = [
    "absent_template",
    "check_documents",
    "check_rollout",
    "check_rollouts",
    "lint",
    "parse_templates",
    "read",
    "read_text",
    "validate_rollouts",
]
