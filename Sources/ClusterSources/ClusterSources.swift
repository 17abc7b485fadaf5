// ClusterSources: where cluster objects come from besides the embedded store.
//
// - `EtcdSource`, `EtcdWriter`, `SubnetLeaser`: several nodes sharing one etcd (Etcd/).
// - `KubernetesSource`: list and watch of the Kubernetes API (Kubernetes/).
// Both feed the `ClusterStore` through one reconciler shape (Common/Reconciler.swift):
// list, apply the difference, mark synced, watch from the list's position, re-list on
// expiry or a broken stream. See README.md in this folder.
