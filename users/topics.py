"""The events the users domain publishes (events.services.event_publish).

A topic is part of the contract with webhook subscribers and with events still in the
outbox: never rename one.
"""

USER_CREATED = "user.created"
USER_UPDATED = "user.updated"
USER_DEACTIVATED = "user.deactivated"
