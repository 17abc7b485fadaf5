import ClusterState
import IPAddressing
import ServiceProxy

/// NetworkPolicy (`PolicyEngine`) and the cluster-wide tiers (`TierEngine`) together: what the
/// policy actor programs and `nodenet policy check` explains. The tiers read the NetworkPolicy
/// engine's identities, local addresses and isolation, so every change goes to it first.
public struct EnforcementEngine: Sendable {
    public private(set) var policies: PolicyEngine
    public private(set) var tiers = TierEngine()

    public init(everyNodeLocal: Bool = false, dnsAddresses: [IPAddress] = []) {
        policies = PolicyEngine(everyNodeLocal: everyNodeLocal, dnsAddresses: dnsAddresses)
        if !dnsAddresses.isEmpty { tiers.rebuild([:], np: policies) }
    }

    public var desired: PolicyDesired { policies.desired }
    public var tierDesired: TierDesired { tiers.desired }

    public var inputs: PolicyInputs {
        var i = policies.inputs
        i.clusterPolicies = tiers.desired.policies
        return i
    }

    /// The tables as they must be in the kernel.
    public var model: RulesetModel {
        var m = policies.model
        TierTables.merge(tiers.part, into: &m)
        return m
    }

    public mutating func seedNumbers(from kernel: RulesetModel, for all: PolicyInputs) {
        policies.seedNumbers(from: kernel, for: all)
    }

    public mutating func load(_ all: PolicyInputs, recordOperations: Bool = true) {
        policies.load(all, recordOperations: recordOperations)
        tiers.rebuild(all.clusterPolicies, np: policies, recordOperations: recordOperations)
    }

    public mutating func apply(_ changes: PolicyChanges) {
        var old: [NamespacedName: PolicyInputs.PodInfo?] = [:]
        for id in changes.pods.keys { old[id] = .some(policies.inputs.pods[id]) }
        policies.apply(changes)
        tiers.apply(changes, oldPods: old, np: policies)
    }

    public mutating func setLocalSubnets(_ subnets: [IPPrefix]) { policies.setLocalSubnets(subnets) }

    public mutating func setDNSAddresses(_ addresses: [IPAddress]) {
        policies.setDNSAddresses(addresses)
        tiers.rebuild(tiers.desired.policies, np: policies)
    }

    public mutating func takeOperations() -> [RulesetOperation] {
        policies.takeOperations() + tiers.takeOperations()
    }

    public mutating func discardOperations() {
        policies.discardOperations()
        tiers.discardOperations()
    }

    /// A new connection's verdict through the tiers and NetworkPolicy, as the tables give it.
    public func verdict(from source: IPAddress, to destination: IPAddress, proto: L4Protocol, port: UInt16) -> TieredVerdict {
        tiers.desired.verdict(from: source, to: destination, proto: proto, port: port, np: policies.desired)
    }
}
