//! The node agent (plays kubelet for the testbed's virtual nodes); being written.
