"""What the exporter keeps per target is shared when equal."""

from __future__ import annotations

from sandbox_exporter.config import parse_config

CONFIG = """
defaults:
  canaries:
    - {name: shell, commands: ["echo 4"], expect_stdout: "4"}
    - {name: options, commands: [{command: "echo 5", timeout: 3}]}
targets:
  - {name: a, url: "http://127.0.0.1:1/"}
  - {name: b, url: "http://127.0.0.1:2/"}
  - {name: c, url: "http://127.0.0.1:3/", timeouts: {canary: 5s}}
  - name: d
    url: "http://127.0.0.1:4/"
    canaries: [{name: shell, commands: ["echo 4"], expect_stdout: "4", timeout: 10s}]
"""


def test_targets_with_equal_settings_share_them() -> None:
    a, b, c, d = parse_config(CONFIG).targets
    assert a.timeouts is b.timeouts
    assert a.canaries[0] is b.canaries[0]
    # A shorter canary deadline fits the inherited canaries differently.
    assert c.timeouts != a.timeouts and c.canaries[0].timeout == 5.0
    assert a.canaries[0].timeout == 10.0
    # A canary written with the timeout the others were fitted to is the same.
    assert d.canaries[0] is a.canaries[0]
    assert d.canaries is not a.canaries
