"""Topic names: part of the contract between services.

Every topic but identity's is keyed by community id and has the same partition count, so one
community's events stay ordered and land on the same partition number everywhere.
"""

ORDERS_COMMANDS = "orders.commands"
ORDERS_EVENTS = "orders.events"
VOLUNTEERS_COMMANDS = "volunteers.commands"
VOLUNTEERS_EVENTS = "volunteers.events"
DISPATCH_COMMANDS = "dispatch.commands"
DISPATCH_EVENTS = "dispatch.events"
# Keyed by account (a phone), not community: sign-in begins before a community is known.
IDENTITY_COMMANDS = "identity.commands"
IDENTITY_EVENTS = "identity.events"
# Owners' answers to commands, for the instance whose HTTP request waits on one.
OUTCOMES = "commands.outcomes"

ALL = (
    ORDERS_COMMANDS,
    ORDERS_EVENTS,
    VOLUNTEERS_COMMANDS,
    VOLUNTEERS_EVENTS,
    DISPATCH_COMMANDS,
    DISPATCH_EVENTS,
    IDENTITY_COMMANDS,
    IDENTITY_EVENTS,
    OUTCOMES,
)


def dlq(topic: str) -> str:
    """Dead-letter topic for records of ``topic`` that a consumer could not handle."""
    return f"{topic}.dlq"
