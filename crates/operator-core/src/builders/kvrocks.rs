//! Builders of the kvrocks objects of KvrocksStandard and KvrocksCluster (being written).
