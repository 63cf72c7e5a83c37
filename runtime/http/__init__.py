"""The HTTP entrypoint pattern every service uses (see app.py)."""

from runtime.http.app import create_app
from runtime.http.problems import Problem, ProblemDetails, problem_responses
from runtime.http.security import CommandKey, CurrentPrincipal

__all__ = [
    "CommandKey",
    "CurrentPrincipal",
    "Problem",
    "ProblemDetails",
    "create_app",
    "problem_responses",
]
