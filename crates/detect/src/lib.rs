//! The AN1289 sequence engine over telemetry events.
