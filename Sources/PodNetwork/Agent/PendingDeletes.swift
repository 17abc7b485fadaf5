#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// CNI DELs that could not reach the agent. The shim tears down the pod's interface itself
/// and leaves one small file per attachment under `runDir/pending-deletes`; the agent releases
/// the addresses and forgets the attachment when it starts (and whenever it scans again).
/// Files are written to a temporary name and renamed, so a crash never leaves half a record.
public struct PendingDeletes: Sendable {
    public struct Entry: Codable, Sendable, Equatable {
        public var containerID: String
        public var ifname: String
        public var network: String

        public init(containerID: String, ifname: String, network: String) {
            self.containerID = containerID
            self.ifname = ifname
            self.network = network
        }
    }

    public let directory: String

    public init(runDir: String) {
        directory = runDir + "/pending-deletes"
    }

    public func enqueue(_ entry: Entry) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let name = HostInterfaceName.forAttachment(containerID: entry.containerID, ifname: entry.ifname)
        let tmp = "\(directory)/.\(name).\(getpid()).tmp"
        let data = try JSONEncoder().encode(entry)
        guard FileManager.default.createFile(atPath: tmp, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown)
        }
        guard rename(tmp, "\(directory)/\(name).json") == 0 else {
            unlink(tmp)
            throw CocoaError(.fileWriteUnknown)
        }
    }

    /// Every queued entry with its file, oldest first. Unreadable files are returned as nil
    /// entries so the caller can log and remove them.
    public func list() -> [(path: String, entry: Entry?)] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        return names.filter { $0.hasSuffix(".json") && !$0.hasPrefix(".") }.sorted().map { name in
            let path = "\(directory)/\(name)"
            let entry = FileManager.default.contents(atPath: path).flatMap { try? JSONDecoder().decode(Entry.self, from: $0) }
            return (path, entry)
        }
    }

    public func remove(_ path: String) {
        unlink(path)
    }
}
