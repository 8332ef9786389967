//! Mocker engine (to be written).
