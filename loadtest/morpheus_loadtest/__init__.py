"""Morpheus's load test: simulated readers, operators and API clients against a running
platform, each from its own client address with its own API key, and the report.

Two sides, one package:

- on the machine that runs `make loadtest` (`scripts/loadtest`, the project's .venv):
  `cli` and `runner` read the inventory through `playbooks/loadtest.yml` (which also
  creates the run's API keys and revokes them after), build the load generator's image
  (`image`) and run it on the platform's network;
- in the load generator's container (`generator`, the image's Python): the client
  addresses are added to its interface, Locust runs `loadtest/locustfile.py`, the
  comics still in the queue are followed to their end, and the report is written.

The pure parts (address allocation, the capacity search's steps, the report's figures,
reading pages and metrics) import nothing outside the standard library and have unit
tests in tests/loadtest/.
"""
