//! kvrocks-standard-controller
