"""Consuming the family streams into projections (see runner.py)."""

from runtime.consumer.incoming import IncomingEvent, parse_entry
from runtime.consumer.projector import Projection, Projector
from runtime.consumer.runner import ConsumerOptions, EventConsumer

__all__ = [
    "ConsumerOptions",
    "EventConsumer",
    "IncomingEvent",
    "Projection",
    "Projector",
    "parse_entry",
]
