//! kvrocks-cluster-controller
