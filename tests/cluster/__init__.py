# A package so that the node (conftest.py's package-scoped `kube_node`) stops when the last test
# here is done, instead of idling beside the rest of the suite until the session ends.
