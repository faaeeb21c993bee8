"""The local default: the whole Morpheus platform on this machine, in containers.

    scripts/local up [--layout single|multihost]   start it (make up, make up LAYOUT=multihost)
    scripts/local down                             remove it (make down)
    scripts/local status                           what runs, and whether the edge answers

`up` starts the Docker engine and the base images (scripts/harness up), creates
one Debian 12 container per host of the layout's inventory (systemd as PID 1, a
Docker engine inside) on the Docker network morpheus-local, converges them with
playbooks/site.yml, and prints the URLs, the local CA and the dashboard login.
It is idempotent: a second run reuses the containers and converges again.

Everything it creates carries the label org.morpheus.local=1; `down` removes
exactly that and nothing else (not the harness images, not other containers).

    MORPHEUS_LOCAL_HTTPS_PORT   host port for the edge's HTTPS (default 443)
    MORPHEUS_LOCAL_HTTP_PORT    host port for the edge's HTTP (default 80)

Standard library only, like scripts/harness; the Ansible tools come from .venv.
"""
