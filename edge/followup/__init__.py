"""Follow-up rules: stops, counts, events and process values → maintenance requests and quality alerts.

``FollowUpEngine(cfg)`` is the whole public API (see ``edge.followup.engine``); the rules are in
``maintenance`` and ``quality``, the open/revise/close life of a record in ``tracker``.
"""

from edge.followup.engine import FollowUpEngine

__all__ = ["FollowUpEngine"]
