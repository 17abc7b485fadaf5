/// The host side of a pod's veth: `nn` + 8 hex digits of a hash of (container id, ifname).
/// Stable, so DEL and GC find the interface from the attachment alone, even when the agent is
/// down and the shim tears it down by itself; 10 bytes, well under IFNAMSIZ.
public enum HostInterfaceName {
    public static func forAttachment(containerID: String, ifname: String) -> String {
        // FNV-1a, 64 bits: tiny, no Foundation, and collisions within one node's few hundred
        // pods are negligible (ADD refuses an existing name rather than reusing it).
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in containerID.utf8 + [0] + ifname.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        let hex = String(hash >> 32, radix: 16)
        return "nn" + String(repeating: "0", count: 8 - hex.count) + hex
    }
}
