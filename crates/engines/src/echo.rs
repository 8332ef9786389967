//! Echo engine (to be written).
