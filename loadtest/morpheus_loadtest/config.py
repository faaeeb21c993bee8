"""What one run is: the file the runner writes (``run.json``, in the results folder) and
the secrets beside it (``secrets.json``, the document playbooks/loadtest.yml fetched:
API keys and the dashboard login; mounted read-only, never in the results).

Both sides read it through :class:`RunConfig`: the runner builds it, the load
generator's container (the generator, the locustfile) reads it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import LoadTestError

RESULTS = Path("/results")  # in the container
SECRETS = Path("/run/loadtest/secrets.json")  # in the container
CA_FILE = "/etc/morpheus-loadtest/ca.pem"  # in the container, when the run has a CA file

# The share of each kind of user (Locust weights).
WEIGHTS = {"reader": 7, "api_client": 2, "operator": 1}


@dataclass(frozen=True)
class CapacityPlan:
    counts: list[int]
    step_seconds: float = 60.0
    settle_seconds: float = 10.0
    api_p95_ms: float = 2000.0
    error_ratio: float = 0.01


@dataclass(frozen=True)
class RunConfig:
    run: str
    users: int  # the users of a plain run; the capacity search's last step otherwise
    spawn_rate: float
    duration: float  # seconds of load (a plain run), the cap of a capacity search
    addresses: list[str]  # one per user, the first the container's own
    prefix: int  # the network's prefix length
    names: dict[str, str]  # site -> public host name (storefront, dashboard, api)
    metrics_urls: list[str]  # the API hosts' /metrics, for the queue
    ca_file: str | None = None  # None: the system's trust store
    drain_seconds: float = 300.0  # how long to follow unfinished comics after the load
    think_seconds: tuple[float, float] = (1.0, 3.0)
    weights: dict[str, int] = field(default_factory=lambda: dict(WEIGHTS))
    api_submissions: int = 2  # novels each API client submits
    capacity: CapacityPlan | None = None

    def url(self, site: str) -> str:
        return f"https://{self.names[site]}"

    def address(self, number: int) -> str:
        if not 0 <= number < len(self.addresses):
            raise LoadTestError(
                f"user {number} has no client address (the run has {len(self.addresses)})",
                "start no more users than the run was given addresses for.",
            )
        return self.addresses[number]

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        data = json.loads(text)
        capacity = data.pop("capacity", None)
        think = tuple(data.pop("think_seconds", (1.0, 3.0)))
        return cls(
            **data,
            think_seconds=think,  # type: ignore[arg-type]
            capacity=CapacityPlan(**capacity) if capacity else None,
        )


@dataclass(frozen=True)
class Secrets:
    api_keys: list[str]
    username: str
    password: str

    def api_key(self, number: int) -> str:
        if not 0 <= number < len(self.api_keys):
            raise LoadTestError(
                f"user {number} has no API key (the run made {len(self.api_keys)})",
                "start no more users than the run made keys for.",
            )
        return self.api_keys[number]

    @classmethod
    def from_json(cls, text: str) -> Secrets:
        data = json.loads(text)
        return cls(
            api_keys=list(data["api_keys"]),
            username=data["dashboard"]["username"],
            password=data["dashboard"]["password"],
        )


def load(results: Path = RESULTS, secrets: Path = SECRETS) -> tuple[RunConfig, Secrets]:
    try:
        config = RunConfig.from_json((results / "run.json").read_text())
        found = Secrets.from_json(secrets.read_text())
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise LoadTestError(
            f"cannot read the run's files ({error})",
            "start the load generator through scripts/loadtest, which writes them.",
        ) from None
    return config, found
