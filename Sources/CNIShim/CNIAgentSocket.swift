import CNIProtocol
#if canImport(Glibc)
import Glibc
#endif

/// Where the plugin sends a request, and what it sends with it. The agent serves CNI on
/// `cni.sock` beside its control socket (the `socket` key of the network config), where a
/// request may carry the pod's network namespace as an open descriptor (SCM_RIGHTS): the
/// plugin runs in the runtime's mount namespace and sees CNI_NETNS, the agent may not (a
/// DaemonSet, or a runtime with a private mount namespace), so nothing depends on mount
/// propagation.
public enum CNIAgentSocket {
    public static let fileName = "cni.sock"

    /// `cni.sock` in the directory of the control socket `controlSocket`.
    public static func path(besides controlSocket: String) -> String {
        guard let slash = controlSocket.lastIndex(of: "/") else { return fileName }
        return controlSocket[...slash] + fileName
    }

    /// CNI_NETNS opened read-only for the commands the agent does inside the pod's namespace
    /// (ADD, CHECK); nil for the others, or when it cannot be opened (the agent then tries the
    /// path itself and says what is missing). The caller closes it.
    public static func openNamespace(command: String, environment: [String: String]) -> Int32? {
        guard command == "ADD" || command == "CHECK", let path = environment["CNI_NETNS"], !path.isEmpty else { return nil }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        return fd >= 0 ? fd : nil
    }
}
