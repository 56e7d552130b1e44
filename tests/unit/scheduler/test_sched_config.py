"""KubeSchedulerConfiguration-style files."""

from __future__ import annotations

import pytest
import yaml

from timonel.scheduler.config import ConfigError, load_config, parse_config

DOC = """
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 40
podInitialBackoffSeconds: 2
profiles:
- schedulerName: default-scheduler
- schedulerName: bin-packer
  percentageOfNodesToScore: 100
  plugins:
    multiPoint:
      disabled: [{name: PodTopologySpread}]
    filter:
      disabled: [{name: NodePorts}]
    score:
      disabled: [{name: NodeResourcesBalancedAllocation}]
      enabled: [{name: NodeResourcesFit, weight: 5}]
    postFilter:
      disabled: [{name: DefaultPreemption}]
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy: {type: MostAllocated}
"""


def test_profiles_plugins_weights_and_args(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "c.yaml"
    f.write_text(DOC)
    cfg = load_config(str(f))
    assert cfg.pod_initial_backoff_seconds == 2
    default, packer = cfg.build_profiles()
    assert default.percentage_of_nodes_to_score == 40 and default.preemption
    assert "NodePorts" in [p.name for p in default.filters]
    assert packer.scheduler_name == "bin-packer" and not packer.preemption
    assert packer.percentage_of_nodes_to_score == 100
    names = [p.name for p in packer.filters]
    assert "NodePorts" not in names and "PodTopologySpread" not in names
    weights = {p.name: w for p, w in packer.scorers}
    assert weights["NodeResourcesFit"] == 5
    assert "NodeResourcesBalancedAllocation" not in weights and "PodTopologySpread" not in weights


@pytest.mark.parametrize(("doc", "message"), [
    ({"profiles": [{"plugins": {"filter": {"enabled": [{"name": "Nope"}]}}}]},
     "profiles[0].plugins.filter.enabled[0].name: unknown plugin 'Nope'"),
    ({"profiles": [{"schedulerName": "a"}, {"schedulerName": "a"}]}, "more than one profile"),
    ({"profiles": [{"percentageOfNodesToScore": 200}]}, "must be an integer 0..100"),
    ({"profiles": [{"pluginConfig": [{"name": "NodeResourcesFit", "args": {
        "scoringStrategy": {"type": "Bogus"}}}]}]}, "unknown scoring strategy"),
    ({"kind": "Deployment"}, "expected KubeSchedulerConfiguration"),
    ({"podMaxBackoffSeconds": "ten"}, "podMaxBackoffSeconds must be a non-negative number"),
])
def test_bad_configs_say_where(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_config(yaml.safe_load(yaml.safe_dump(doc)))


def test_missing_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="cannot read scheduler configuration"):
        load_config(str(tmp_path / "nope.yaml"))
