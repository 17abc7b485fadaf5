// ClusterSources: etcd and Kubernetes API sources. See ARCHITECTURE.md.
