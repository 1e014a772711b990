"""Test doubles for changeover's own tests and for code that embeds changeover.

``fake_platform.FakePlatform`` (the Platform contract in memory), ``recording_router``
(a TrafficRouter that records its calls) and ``fake_service.FakeService`` (an in-memory
RolloutService behind the HTTP API); ``local_world.started`` runs the local controller over
the first two. Nothing outside this package imports them, and none is offered to users as a
router or platform.
"""
