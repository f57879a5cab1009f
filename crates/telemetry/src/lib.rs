//! The telemetry event model and its decoders.
