"""The linear strategy run through Mitogen, for the test harness only.

Ansible starts a Python process on the host for every task of every host: with the
Docker connection that is a `docker exec`, an interpreter and the module's imports each
time, most of a scenario's CPU. Mitogen keeps one interpreter a host and sends each task
to it. The harness's Molecule configuration and playbook runs name this strategy and
the `docker` connection (Mitogen's own `mitogen_docker` stands in for it); the
platform's own ansible.cfg, inventories and roles know nothing of it.

This is the strategy Mitogen ships (ansible_mitogen/plugins/strategy), found through the
installed package rather than a path inside the virtualenv, with one change: a play that
runs on the controller only (`connection: local`, as Molecule's create and destroy
playbooks) runs as plain linear. Mitogen's local connection loses track of `async`
jobs, which those playbooks wait on.
"""

import ansible_mitogen.loaders
import ansible_mitogen.strategy

DOCUMENTATION = """
name: mitogen_linear
short_description: the linear strategy, each host's tasks run by one Mitogen interpreter
description:
  - Ansible's linear strategy with Mitogen's connection and module runner.
"""

Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Base):
    def run(self, iterator, play_context, result=0):
        if iterator._play.connection == "local":
            return Base.run(self, iterator, play_context)
        return super().run(iterator, play_context, result)
