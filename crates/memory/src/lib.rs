//! One address-space interface over a process, with its sources (minidumps, live Wine processes).
