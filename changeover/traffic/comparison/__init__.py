"""Shadow answers compared with production's.

``streams`` turns a captured response into text (de-chunking, and reassembling streamed
LLM answers); ``comparators`` decides whether two answers match (``exact``, ``json``,
``text``, or a user's own); ``stats`` counts the differences per kind and keeps a bounded
sample of them. ``traffic.builtin.compare`` pairs the primary's response with the
shadow's inside the builtin router and runs the comparison off the hot path.
"""
