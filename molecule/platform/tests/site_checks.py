"""What the platform scenario's verify modules share: the instance's names and
addresses, and the ways they reach it (playbooks, docker docker_inspect, SQL as the service).

The modules run in the order of their names, on one converge: the converged state
(10), the smoke test (20), fault drills that break a service and restore it (50), check
mode proving that nothing drifted (80), and refusals of bad input (90)."""

import json

from conftest import PROJECT, ansible_playbook

ADDRESS = "172.30.20.10"
DOMAIN = "morpheus.localhost"
NAMES = [f"app.{DOMAIN}", f"dashboard.{DOMAIN}", f"api.{DOMAIN}"]
ROOT_CA = "/etc/pebble/issuing-root.pem"
APP_PASSWORD = "local-only-postgresql-app"  # test-only value (inventories/local)
BACKEND = "morpheus-backend-0"
WORKER = "morpheus-worker-0"


def playbook(name, extra_vars=None, tags=None, options=None):
    return ansible_playbook(
        PROJECT / "playbooks" / name, extra_vars, tags, timeout=1200, options=options
    )


def docker_inspect(host, container):
    result = host.run(f"docker inspect {container}")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)[0]


def sql(host, sql):
    """As the service: through PgBouncer on the private address."""
    result = host.run(
        f"PGPASSWORD={APP_PASSWORD} psql -X -At -v ON_ERROR_STOP=1 -h {ADDRESS} -p 6432 "
        f"-U morpheus -d morpheus -c {json.dumps(sql)}"
    )
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def release_id(host):
    return docker_inspect(host, BACKEND)["Config"]["Labels"]["org.morpheus.release"]
