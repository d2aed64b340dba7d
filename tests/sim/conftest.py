from tests.sim.fixtures import pod_cluster

__all__ = ["pod_cluster"]
