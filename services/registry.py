"""Every service the `party` command can run."""

from __future__ import annotations

from runtime.service import ServiceDefinition
from services.activities.service import DEFINITION as ACTIVITIES
from services.notify.service import DEFINITION as NOTIFY
from services.roster.service import DEFINITION as ROSTER
from services.scoring.service import DEFINITION as SCORING

SERVICES: dict[str, ServiceDefinition] = {d.name: d for d in (ROSTER, ACTIVITIES, SCORING, NOTIFY)}


def resolve(names: list[str]) -> list[ServiceDefinition]:
    if not names or names == ["all"]:
        return list(SERVICES.values())
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise SystemExit(f"unknown service {', '.join(unknown)}; choose from {', '.join(SERVICES)}")
    return [SERVICES[n] for n in names]
