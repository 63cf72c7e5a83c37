"""The HTTP entrypoint pattern every service uses (see app.py)."""

from runtime.http.app import create_app
from runtime.http.problems import Problem, ProblemDetails, problem_responses
from runtime.http.responses import Accepted, accepted
from runtime.http.security import Command, CommandKey, CurrentPrincipal

__all__ = [
    "Accepted",
    "Command",
    "CommandKey",
    "CurrentPrincipal",
    "Problem",
    "ProblemDetails",
    "accepted",
    "create_app",
    "problem_responses",
]
