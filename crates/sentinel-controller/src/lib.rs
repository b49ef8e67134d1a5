//! kvrocks-sentinel-controller
