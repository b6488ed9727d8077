"""Routing rule of the API: a fixed path always wins over `{id}` and `{type}`, for every method.

Starlette takes the first route that matches both path and method, so without this rule
`DELETE /jobs/stats` would reach `DELETE /jobs/{id}` and answer "no job 'stats'", and
`GET /jobs/enqueue` would reach `GET /jobs/{id}`. With it, a template route steps aside for the
paths a fixed route owns, and the fixed route answers 405 with its own `Allow` header.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope


class TemplateRoute(APIRoute):
    """An APIRoute that never claims a concrete path some fixed route of the app owns."""

    # Filled by `let_fixed_paths_win` once every router is known; empty means "claims all".
    fixed_paths: frozenset[str] = frozenset()

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Starlette's match, except NONE for a path that is one of `fixed_paths`."""
        match, child_scope = super().matches(scope)
        if match is Match.NONE or not self.fixed_paths:
            return match, child_scope
        concrete = self.path_format.format(**child_scope.get("path_params", {}))
        if concrete in self.fixed_paths:
            return Match.NONE, {}
        return match, child_scope


def let_fixed_paths_win(routers: Iterable[APIRouter]) -> None:
    """Tell every TemplateRoute of `routers` which fixed paths of them it also matches."""
    routes = [route for router in routers for route in router.routes if isinstance(route, APIRoute)]
    fixed = {route.path for route in routes if not route.param_convertors}
    for route in routes:
        if isinstance(route, TemplateRoute) and route.param_convertors:
            route.fixed_paths = frozenset(p for p in fixed if route.path_regex.match(p))
