// /opt/cni/bin/nodenet: the CNI plugin alone. `nodenet cni` runs the same code; this
// executable exists because a runtime execs the plugin for every pod, and without the agent's
// modules (SQLite, libsystemd, Foundation with ICU, SwiftNIO) the exec costs about a third.
#if canImport(Glibc)
import Glibc
#endif
import CNIShim

exit(CNIEntry.run())
