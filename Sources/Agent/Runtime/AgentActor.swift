import ServiceLifecycle

/// A long-running part of the agent, run by the ServiceGroup. (ClusterState has a `Service`
/// too: the Kubernetes kind; this name keeps the two apart.)
public typealias AgentActor = ServiceLifecycle.Service
