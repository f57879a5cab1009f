//! Runs the Wine attack lab's scenarios for tests.
