//! Builders of the KvrocksSentinel objects (being written).
