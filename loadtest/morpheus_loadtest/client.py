"""A simulated user's HTTP in Locust: its own client address, cookies and API key.

Each user's connections leave from its own address (a urllib3 pool bound to it, which
Locust's HttpSession takes as its pool manager): nginx and the service count limits
per client address, and see one client per user, as in production. Nothing is
forwarded in headers the edge would not believe.

Answers are judged here: the statuses a step expects are successes; a 429 is a failure
with the message ``RATE_LIMITED`` (the report counts those on their own) and makes the
user wait as long as Retry-After asks; anything else is a failure named by its status,
never by a URL with ids in it, so that Locust's failures table stays one row per kind.
Imported in the load generator's container only (it needs Locust).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from locust.clients import HttpSession
from urllib3 import PoolManager

from .report import RATE_LIMITED

TIMEOUT_SECONDS = 30
MAX_PAUSE_SECONDS = 60
# 429s by request name, for the capacity search's figures.
LIMITED: Counter[str] = Counter()


def bound_pool(address: str) -> PoolManager:
    """Connections from `address` (any port), a few per host name."""
    return PoolManager(num_pools=4, maxsize=4, source_address=(address, 0))


def retry_after(value: str | None) -> float:
    try:
        return min(float(value or 1), MAX_PAUSE_SECONDS)
    except ValueError:
        return 1.0


class Browser:
    def __init__(self, session: HttpSession, urls: dict[str, str], api_key: str) -> None:
        self.session = session
        self.urls = urls
        self.api_key = api_key
        self._pause = 0.0

    def url(self, site: str) -> str:
        return self.urls[site]

    def pause(self) -> float:
        """Seconds a 429 asked this user to wait (once)."""
        pause, self._pause = self._pause, 0.0
        return pause

    def request(
        self,
        method: str,
        site: str,
        path: str,
        template: str,
        expect: tuple[int, ...] = (200,),
        api: bool = False,
        **kwargs: Any,
    ) -> Any:
        name = f"{site} {template}"
        headers = dict(kwargs.pop("headers", None) or {})
        if api:
            headers["Authorization"] = f"Bearer {self.api_key}"
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", TIMEOUT_SECONDS)
        with self.session.request(
            method,
            self.urls[site] + path,
            name=name,
            catch_response=True,
            headers=headers,
            **kwargs,
        ) as answer:
            code = answer.status_code
            if code == 429:
                LIMITED[f"{method} {name}"] += 1
                self._pause = max(self._pause, retry_after(answer.headers.get("Retry-After")))
                answer.failure(RATE_LIMITED)
                return None
            if code not in expect:
                if code == 0:
                    answer.failure(f"no answer ({type(answer.error).__name__})")
                else:
                    wanted = " or ".join(map(str, expect))
                    answer.failure(f"{code} instead of {wanted}")
                return None
            answer.success()
            return answer
